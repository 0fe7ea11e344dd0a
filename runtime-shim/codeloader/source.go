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
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// MaxArchiveSize bounds a downloaded archive (Lambda: 250 MB unzipped for code and layers).
const MaxArchiveSize = 250 << 20

// Source is where one .zip archive comes from, written as a URL:
//
//	file:///klambda/sources/code/code.zip#sha256=<hex>
//	https://example.com/fn.zip#sha256=<hex>
//	s3://bucket/key?endpoint=http://minio:9000&region=us-east-1&versionId=v&credentials=KLAMBDA_CODE#sha256=<hex>
//
// The fragment pins the SHA-256 (hex) the archive must have. For s3, credentials names an
// environment prefix: <prefix>_AWS_ACCESS_KEY_ID, <prefix>_AWS_SECRET_ACCESS_KEY and
// optionally <prefix>_AWS_SESSION_TOKEN; without it the bucket is read anonymously.
type Source struct {
	// Scheme is file, http, https or s3.
	Scheme string
	// Path of a file, or the URL to download (without fragment).
	Path string
	URL  string
	// S3 location.
	Bucket, Key, Endpoint, Region, ObjectVersion string
	// CredentialsEnv is the environment prefix of the S3 credentials (loader side).
	CredentialsEnv string
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
	default:
		return Source{}, fmt.Errorf("source %q: unsupported scheme %q (want file, http, https or s3)", s, u.Scheme)
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

// DigestMismatchError: the archive isn't the one the source pins.
type DigestMismatchError struct {
	Source    string
	Got, Want string
}

func (e *DigestMismatchError) Error() string {
	return fmt.Sprintf("%s: the archive's SHA-256 is %s, want %s", e.Source, e.Got, e.Want)
}

// Fetch downloads the archive of a source into a temporary file in dir (os.TempDir when
// empty), checks the pinned digest, and returns the file's path (the caller removes it)
// and its Digest. creds, when not nil, overrides the credentials from the environment.
func Fetch(ctx context.Context, src Source, creds *Credentials, dir string) (string, Digest, error) {
	body, err := open(ctx, src, creds)
	if err != nil {
		return "", Digest{}, err
	}
	defer body.Close()
	f, err := os.CreateTemp(dir, "klambda-*.zip")
	if err != nil {
		return "", Digest{}, fmt.Errorf("creating a temporary file: %w", err)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(body, MaxArchiveSize+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	fail := func(err error) (string, Digest, error) {
		_ = os.Remove(f.Name())
		return "", Digest{}, err
	}
	if err != nil {
		return fail(fmt.Errorf("reading %s: %w", src.redacted(), err))
	}
	if n > MaxArchiveSize {
		return fail(fmt.Errorf("%s: the archive is larger than %d bytes", src.redacted(), MaxArchiveSize))
	}
	sum := h.Sum(nil)
	d := Digest{Hex: hex.EncodeToString(sum), Base64: base64.StdEncoding.EncodeToString(sum), Size: n}
	if src.SHA256 != "" && !strings.EqualFold(src.SHA256, d.Hex) {
		return fail(&DigestMismatchError{Source: src.redacted(), Got: d.Hex, Want: src.SHA256})
	}
	return f.Name(), d, nil
}

// FetchBytes is Fetch into memory, for a process without a writable folder (the manager
// runs with a read-only root filesystem).
func FetchBytes(ctx context.Context, src Source, creds *Credentials) ([]byte, Digest, error) {
	body, err := open(ctx, src, creds)
	if err != nil {
		return nil, Digest{}, err
	}
	defer body.Close()
	data, err := io.ReadAll(io.LimitReader(body, MaxArchiveSize+1))
	if err != nil {
		return nil, Digest{}, fmt.Errorf("reading %s: %w", src.redacted(), err)
	}
	if len(data) > MaxArchiveSize {
		return nil, Digest{}, fmt.Errorf("%s: the archive is larger than %d bytes", src.redacted(), MaxArchiveSize)
	}
	d := DigestOf(data)
	if src.SHA256 != "" && !strings.EqualFold(src.SHA256, d.Hex) {
		return nil, Digest{}, &DigestMismatchError{Source: src.redacted(), Got: d.Hex, Want: src.SHA256}
	}
	return data, d, nil
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

func open(ctx context.Context, src Source, creds *Credentials) (io.ReadCloser, error) {
	switch src.Scheme {
	case "file":
		f, err := os.Open(src.Path)
		if err != nil {
			return nil, fmt.Errorf("opening %s: %w", src.Path, err)
		}
		return f, nil
	case "http", "https":
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, src.URL, nil)
		if err != nil {
			return nil, err
		}
		client := &http.Client{Timeout: 5 * time.Minute}
		resp, err := client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("downloading %s: %w", src.redacted(), err)
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return nil, fmt.Errorf("downloading %s: HTTP %s", src.redacted(), resp.Status)
		}
		return resp.Body, nil
	case "s3":
		return openS3(ctx, src, creds)
	}
	return nil, fmt.Errorf("unsupported source scheme %q", src.Scheme)
}

func openS3(ctx context.Context, src Source, creds *Credentials) (io.ReadCloser, error) {
	if creds == nil && src.CredentialsEnv != "" {
		p := src.CredentialsEnv + "_"
		creds = &Credentials{os.Getenv(p + "AWS_ACCESS_KEY_ID"), os.Getenv(p + "AWS_SECRET_ACCESS_KEY"), os.Getenv(p + "AWS_SESSION_TOKEN")}
		if creds.AccessKeyID == "" {
			return nil, fmt.Errorf("s3://%s/%s: %sAWS_ACCESS_KEY_ID is not set", src.Bucket, src.Key, p)
		}
	}
	region := src.Region
	if region == "" {
		region = "us-east-1"
	}
	opts := s3.Options{Region: region, UsePathStyle: src.Endpoint != ""}
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
		return nil, fmt.Errorf("getting s3://%s/%s: %w", src.Bucket, src.Key, err)
	}
	return out.Body, nil
}

// ErrUnsafeArchive is wrapped by every error about an entry that would land outside its
// folder (zip-slip, absolute paths, symlinks that point out).
var ErrUnsafeArchive = errors.New("unsafe archive")
