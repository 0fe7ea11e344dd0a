// Package codeloader fetches a function's .zip package and its layers, checks them, and
// unpacks them: the code into /var/task, the layers in order into /opt (the last layer
// wins). The runtime-shim's `load-code` subcommand (Main) runs it in the init container of
// every function pod; the controllers use the same Fetch and Check when they resolve code,
// so that a package that would fail to unpack fails the Function instead of its pods.
package codeloader

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/klambda/klambda/internal/netguard"
)

// MaxArchiveSize bounds a downloaded archive (Lambda: 250 MB unzipped for code and layers;
// an archive is never larger than what it unpacks to, give or take its directory).
const MaxArchiveSize = 250 << 20

// Defaults of Limits.
const (
	DefaultFetchTimeout = 3 * time.Minute
	DefaultStallTimeout = 20 * time.Second
	DefaultMinProgress  = 16 << 10
	DefaultMaxRedirects = 3
)

// Limits bound one download: its size, its time, its progress, its redirects, and the
// addresses it may dial. The zero value is the defaults.
type Limits struct {
	// MaxBytes: a larger archive is refused as soon as that is known (Content-Length, or
	// the byte past it), without reading the rest (0: MaxArchiveSize).
	MaxBytes int64
	// Timeout bounds the whole download (0: DefaultFetchTimeout).
	Timeout time.Duration
	// StallTimeout and MinProgress: every StallTimeout from the start (connecting and
	// waiting for the answer included) must bring at least MinProgress bytes, else the
	// download is abandoned as timed out: a server that trickles holds nothing for long
	// (0: DefaultStallTimeout, DefaultMinProgress).
	StallTimeout time.Duration
	MinProgress  int64
	// MaxRedirects followed (0: DefaultMaxRedirects; negative: none). A redirect to
	// anything but http or https is refused; every redirect dials again through Policy.
	MaxRedirects int
	// Policy decides which addresses may be dialed, checked on the IP after DNS and on
	// every redirect (nil: netguard's zero policy, which refuses loopback, link-local,
	// multicast and unspecified addresses). Proxies from the environment are not used: a
	// proxy would make the proxy's address the only one checked.
	Policy *netguard.Policy
}

func (l Limits) withDefaults() Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = MaxArchiveSize
	}
	if l.Timeout <= 0 {
		l.Timeout = DefaultFetchTimeout
	}
	if l.StallTimeout <= 0 {
		l.StallTimeout = DefaultStallTimeout
	}
	if l.MinProgress <= 0 {
		l.MinProgress = DefaultMinProgress
	}
	switch {
	case l.MaxRedirects == 0:
		l.MaxRedirects = DefaultMaxRedirects
	case l.MaxRedirects < 0:
		l.MaxRedirects = 0
	}
	if l.Policy == nil {
		l.Policy = &netguard.Policy{}
	}
	return l
}

// Source is where one .zip archive comes from, written as a URL:
//
//	file:///klambda/sources/code/code.zip#sha256=<hex>
//	https://example.com/fn.zip#sha256=<hex>
//	s3://bucket/key?endpoint=http://minio:9000&region=us-east-1&versionId=v&credentials=KLAMBDA_CODE#sha256=<hex>
//	oci://registry:5000/klambda/code?plainHTTP=true#sha256=<hex>
//
// The fragment pins the SHA-256 (hex) the archive must have. For s3, credentials names an
// environment prefix: <prefix>_AWS_ACCESS_KEY_ID, <prefix>_AWS_SECRET_ACCESS_KEY and
// optionally <prefix>_AWS_SESSION_TOKEN; without it the bucket is read anonymously.
//
// oci is klambda's code store (internal/codestore): the blob whose digest is the pinned
// SHA-256, in a repository of an OCI registry, read anonymously (plainHTTP: without TLS).
type Source struct {
	// Scheme is file, http, https, s3 or oci.
	Scheme string
	// Path of a file, or the URL to download (without fragment).
	Path string
	URL  string
	// S3 location.
	Bucket, Key, Endpoint, Region, ObjectVersion string
	// CredentialsEnv is the environment prefix of the S3 credentials (loader side).
	CredentialsEnv string
	// Registry (host[:port]) and Repository of an oci source; PlainHTTP reaches it
	// without TLS.
	Registry, Repository string
	PlainHTTP            bool
	// SHA256 is the expected hex digest; empty means unchecked (the controller, which
	// computes it).
	SHA256 string
}

// Credentials for an S3-compatible store.
type Credentials struct {
	AccessKeyID, SecretAccessKey, SessionToken string
}

// ParseSource parses the URL form of a Source.
func ParseSource(s string) (Source, error) {
	u, err := url.Parse(s)
	if err != nil {
		return Source{}, fmt.Errorf("source %q: %w", s, err)
	}
	src := Source{Scheme: u.Scheme}
	if frag := u.Fragment; frag != "" {
		v, err := url.ParseQuery(frag)
		if err != nil {
			return Source{}, fmt.Errorf("source %q: fragment: %w", s, err)
		}
		src.SHA256 = strings.ToLower(v.Get("sha256"))
	}
	u.Fragment = ""
	switch u.Scheme {
	case "file":
		src.Path = u.Path
	case "http", "https":
		src.URL = u.String()
	case "s3":
		q := u.Query()
		src.Bucket = u.Host
		src.Key = strings.TrimPrefix(u.Path, "/")
		src.Endpoint, src.Region, src.ObjectVersion = q.Get("endpoint"), q.Get("region"), q.Get("versionId")
		src.CredentialsEnv = q.Get("credentials")
	case "oci":
		src.Registry, src.Repository = u.Host, strings.TrimPrefix(u.Path, "/")
		src.PlainHTTP = u.Query().Get("plainHTTP") == "true"
		if src.Registry == "" || src.Repository == "" {
			return Source{}, fmt.Errorf("source %q: oci wants oci://registry/repository", s)
		}
	default:
		return Source{}, fmt.Errorf("source %q: unsupported scheme %q (want file, http, https, s3 or oci)", s, u.Scheme)
	}
	return src, nil
}

// String is the URL form that ParseSource reads.
func (s Source) String() string {
	var out string
	switch s.Scheme {
	case "file":
		out = (&url.URL{Scheme: "file", Path: s.Path}).String()
		if !strings.HasPrefix(out, "file://") {
			out = "file://" + strings.TrimPrefix(out, "file:")
		}
	case "http", "https":
		out = s.URL
	case "s3":
		q := url.Values{}
		for k, v := range map[string]string{"endpoint": s.Endpoint, "region": s.Region, "versionId": s.ObjectVersion, "credentials": s.CredentialsEnv} {
			if v != "" {
				q.Set(k, v)
			}
		}
		u := url.URL{Scheme: "s3", Host: s.Bucket, Path: "/" + s.Key, RawQuery: q.Encode()}
		out = u.String()
	case "oci":
		u := url.URL{Scheme: "oci", Host: s.Registry, Path: "/" + s.Repository}
		if s.PlainHTTP {
			u.RawQuery = "plainHTTP=true"
		}
		out = u.String()
	}
	if s.SHA256 != "" {
		out += "#sha256=" + s.SHA256
	}
	return out
}

// Digest is an archive's SHA-256 as hex and as Lambda shows it (base64), and its size.
type Digest struct {
	Hex    string
	Base64 string
	Size   int64
}

// DigestOf computes the Digest of some bytes.
func DigestOf(data []byte) Digest {
	sum := sha256.Sum256(data)
	return Digest{Hex: hex.EncodeToString(sum[:]), Base64: base64.StdEncoding.EncodeToString(sum[:]), Size: int64(len(data))}
}

// DigestMismatchError: the archive isn't the one the source pins. Its message names the
// pinned digest only: the digest of what was downloaded instead would tell the author
// whether an address they cannot read holds a content they guess (Got is for the caller's
// own use, never shown).
type DigestMismatchError struct {
	Source    string
	Got, Want string
}

func (e *DigestMismatchError) Error() string {
	return fmt.Sprintf("%s: the archive's SHA-256 is not the pinned %s", e.Source, e.Want)
}

// FetchErrorKind is the fixed category of a failed download: all a status message says
// about it.
type FetchErrorKind string

// The categories of FetchError.
const (
	FetchDenied   FetchErrorKind = "address not allowed"
	FetchFailed   FetchErrorKind = "download failed"
	FetchTooLarge FetchErrorKind = "too large"
	FetchTimedOut FetchErrorKind = "timed out"
	FetchChecksum FetchErrorKind = "checksum mismatch"
)

// FetchError is a download that failed. Error says the source (redacted) and the category
// only, never what the server answered (its status, its body, a dial error naming a port):
// the manager downloads from inside the cluster, and a message that echoes what an internal
// address said makes it a port scanner and a content oracle for whoever writes code.url.
// Err, for logs, holds what happened.
type FetchError struct {
	Kind   FetchErrorKind
	Source string
	// Limit is the size limit a FetchTooLarge exceeded.
	Limit int64
	Err   error
}

func (e *FetchError) Error() string {
	switch e.Kind {
	case FetchTooLarge:
		return fmt.Sprintf("downloading %s: %s (over %d bytes)", e.Source, e.Kind, e.Limit)
	case FetchChecksum:
		var dm *DigestMismatchError
		if errors.As(e.Err, &dm) {
			return fmt.Sprintf("downloading %s: %s: the archive's SHA-256 is not the pinned %s", e.Source, e.Kind, dm.Want)
		}
	}
	return fmt.Sprintf("downloading %s: %s", e.Source, e.Kind)
}

func (e *FetchError) Unwrap() error { return e.Err }

// Detail is Error with what happened (a server's answer included): for logs of whoever may
// see it, never for a status message.
func (e *FetchError) Detail() string {
	if e.Err == nil {
		return e.Error()
	}
	return e.Error() + ": " + e.Err.Error()
}

var (
	errTimedOut = errors.New("the download took longer than its time limit")
	errStalled  = errors.New("the download made too little progress")
)

// Fetch downloads the archive of a source into a temporary file in dir (os.TempDir when
// empty) within the default Limits, checks the pinned digest, and returns the file's path
// (the caller removes it) and its Digest. creds, when not nil, overrides the credentials
// from the environment.
func Fetch(ctx context.Context, src Source, creds *Credentials, dir string) (string, Digest, error) {
	return FetchLimited(ctx, src, creds, dir, Limits{})
}

// FetchLimited is Fetch within lim. The archive is streamed to the file while it is
// hashed: memory use does not depend on its size. Every failure is a *FetchError.
func FetchLimited(ctx context.Context, src Source, creds *Credentials, dir string, lim Limits) (string, Digest, error) {
	lim = lim.withDefaults()
	name := src.redacted()
	fail := func(kind FetchErrorKind, err error) (string, Digest, error) {
		return "", Digest{}, &FetchError{Kind: kind, Source: name, Limit: lim.MaxBytes, Err: err}
	}
	ctx, cancelTimeout := context.WithTimeoutCause(ctx, lim.Timeout, errTimedOut)
	defer cancelTimeout()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	w := &progressWatch{lim: lim, cancel: cancel}
	w.start()
	defer w.stop()
	classify := func(err error) (string, Digest, error) {
		switch cause := context.Cause(ctx); {
		case netguard.Denied(err):
			return fail(FetchDenied, err)
		case errors.Is(err, errRedirectScheme):
			return fail(FetchDenied, err)
		case errors.Is(cause, errTimedOut) || errors.Is(cause, errStalled):
			return fail(FetchTimedOut, fmt.Errorf("%w (%w)", cause, err))
		case isTimeout(err):
			return fail(FetchTimedOut, err) // the dial's, the TLS handshake's
		}
		return fail(FetchFailed, err)
	}

	body, size, err := open(ctx, src, creds, lim)
	if err != nil {
		return classify(err)
	}
	defer body.Close()
	if size > lim.MaxBytes {
		return fail(FetchTooLarge, fmt.Errorf("the server announces %d bytes", size))
	}
	f, err := os.CreateTemp(dir, "klambda-*.zip")
	if err != nil {
		return fail(FetchFailed, fmt.Errorf("creating a temporary file: %w", err))
	}
	keep := false
	defer func() {
		if !keep {
			_ = os.Remove(f.Name())
		}
	}()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h, w), io.LimitReader(body, lim.MaxBytes+1))
	if cerr := f.Close(); err == nil && cerr != nil {
		return fail(FetchFailed, fmt.Errorf("writing the temporary file: %w", cerr))
	}
	if err != nil {
		return classify(err)
	}
	if n > lim.MaxBytes {
		return fail(FetchTooLarge, fmt.Errorf("more than %d bytes", lim.MaxBytes))
	}
	sum := h.Sum(nil)
	d := Digest{Hex: hex.EncodeToString(sum), Base64: base64.StdEncoding.EncodeToString(sum), Size: n}
	if src.SHA256 != "" && !strings.EqualFold(src.SHA256, d.Hex) {
		return fail(FetchChecksum, &DigestMismatchError{Source: name, Got: d.Hex, Want: src.SHA256})
	}
	keep = true
	return f.Name(), d, nil
}

// progressWatch cancels a download when a StallTimeout window brings fewer than
// MinProgress bytes. It is the io.Writer the downloaded bytes are counted by.
type progressWatch struct {
	lim    Limits
	cancel context.CancelCauseFunc
	mu     sync.Mutex
	got    int64 // bytes so far
	seen   int64 // at the last window's end
	t      *time.Timer
	done   bool
}

func (w *progressWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.got += int64(len(p))
	w.mu.Unlock()
	return len(p), nil
}

func (w *progressWatch) start() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t = time.AfterFunc(w.lim.StallTimeout, w.tick)
}

func (w *progressWatch) tick() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return
	}
	if w.got-w.seen < w.lim.MinProgress {
		w.cancel(errStalled)
		return
	}
	w.seen = w.got
	w.t.Reset(w.lim.StallTimeout)
}

func (w *progressWatch) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.done = true
	w.t.Stop()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

var errRedirectScheme = errors.New("redirected to a scheme other than http or https")

// httpClient is a client for one download within lim: every dial through lim.Policy, no
// proxy, redirects bounded, headers bounded in time and size.
func httpClient(lim Limits) (*http.Client, func()) {
	tr := &http.Transport{
		Proxy:                  nil,
		DialContext:            lim.Policy.Dialer(min(lim.StallTimeout, 10*time.Second)).DialContext,
		TLSHandshakeTimeout:    min(lim.StallTimeout, 10*time.Second),
		MaxResponseHeaderBytes: 64 << 10,
		DisableCompression:     true, // the bytes counted are the archive's
		ForceAttemptHTTP2:      true,
	}
	c := &http.Client{Transport: tr, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
			return errRedirectScheme
		}
		if len(via) > lim.MaxRedirects {
			return fmt.Errorf("more than %d redirects", lim.MaxRedirects)
		}
		return nil
	}}
	return c, tr.CloseIdleConnections
}

func (s Source) redacted() string {
	c := s
	c.SHA256 = ""
	if c.Scheme == "http" || c.Scheme == "https" {
		if u, err := url.Parse(c.URL); err == nil {
			u.RawQuery, u.User = "", nil // presigned URLs carry credentials in the query
			c.URL = u.String()
		}
	}
	return c.String()
}

// open starts a download: the body, and its size when known (-1 otherwise).
func open(ctx context.Context, src Source, creds *Credentials, lim Limits) (io.ReadCloser, int64, error) {
	switch src.Scheme {
	case "file":
		f, err := os.Open(src.Path)
		if err != nil {
			return nil, 0, fmt.Errorf("opening %s: %w", src.Path, err)
		}
		size := int64(-1)
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
			size = fi.Size()
		}
		return f, size, nil
	case "http", "https":
		client, done := httpClient(lim)
		return get(ctx, client, done, src.URL)
	case "s3":
		return openS3(ctx, src, creds, lim)
	case "oci":
		return openOCI(ctx, src, lim)
	}
	return nil, 0, fmt.Errorf("unsupported source scheme %q", src.Scheme)
}

// get downloads url with client: the body (closing it releases the client through done) and
// its size when known. A non-200 answer is an error; done is called on every failure.
func get(ctx context.Context, client *http.Client, done func(), url string) (io.ReadCloser, int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		done()
		return nil, 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		done()
		return nil, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		done()
		return nil, 0, fmt.Errorf("HTTP %s", resp.Status)
	}
	return closeBoth{resp.Body, done}, resp.ContentLength, nil
}

// closeBoth closes a body, then releases its client's connections.
type closeBoth struct {
	io.ReadCloser
	done func()
}

func (c closeBoth) Close() error {
	err := c.ReadCloser.Close()
	c.done()
	return err
}

func openS3(ctx context.Context, src Source, creds *Credentials, lim Limits) (io.ReadCloser, int64, error) {
	if creds == nil && src.CredentialsEnv != "" {
		p := src.CredentialsEnv + "_"
		creds = &Credentials{os.Getenv(p + "AWS_ACCESS_KEY_ID"), os.Getenv(p + "AWS_SECRET_ACCESS_KEY"), os.Getenv(p + "AWS_SESSION_TOKEN")}
		if creds.AccessKeyID == "" {
			return nil, 0, fmt.Errorf("s3://%s/%s: %sAWS_ACCESS_KEY_ID is not set", src.Bucket, src.Key, p)
		}
	}
	region := src.Region
	if region == "" {
		region = "us-east-1"
	}
	client, done := httpClient(lim)
	opts := s3.Options{Region: region, UsePathStyle: src.Endpoint != "", HTTPClient: client, Retryer: aws.NopRetryer{}}
	if src.Endpoint != "" {
		opts.BaseEndpoint = aws.String(src.Endpoint)
	}
	if creds != nil && creds.AccessKeyID != "" {
		opts.Credentials = credentials.NewStaticCredentialsProvider(creds.AccessKeyID, creds.SecretAccessKey, creds.SessionToken)
	} else {
		opts.Credentials = aws.AnonymousCredentials{}
	}
	in := &s3.GetObjectInput{Bucket: aws.String(src.Bucket), Key: aws.String(src.Key)}
	if src.ObjectVersion != "" {
		in.VersionId = aws.String(src.ObjectVersion)
	}
	out, err := s3.New(opts).GetObject(ctx, in)
	if err != nil {
		done()
		return nil, 0, fmt.Errorf("getting s3://%s/%s: %w", src.Bucket, src.Key, err)
	}
	size := int64(-1)
	if out.ContentLength != nil {
		size = *out.ContentLength
	}
	return closeBoth{out.Body, done}, size, nil
}

// ErrUnsafeArchive is wrapped by every error about an entry that would land outside its
// folder (zip-slip, absolute paths, symlinks that point out).
var ErrUnsafeArchive = errors.New("unsafe archive")

// DigestOfFile computes the Digest of a file's content.
func DigestOfFile(p string) (Digest, error) {
	f, err := os.Open(p)
	if err != nil {
		return Digest{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return Digest{}, err
	}
	sum := h.Sum(nil)
	return Digest{Hex: hex.EncodeToString(sum), Base64: base64.StdEncoding.EncodeToString(sum), Size: n}, nil
}
