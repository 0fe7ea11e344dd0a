package controlapi_test

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/klambda/klambda/activator/controlapi"
	"github.com/klambda/klambda/activator/testrig"
	"github.com/klambda/klambda/internal/codestore"
	"github.com/klambda/klambda/internal/sdkbody"
	"github.com/klambda/klambda/test/ziptest"
)

// countingStore counts the reads of the code store.
type countingStore struct {
	codestore.Store
	reads atomic.Int32
}

func (s *countingStore) Get(ctx context.Context, hx string) (io.ReadCloser, error) {
	s.reads.Add(1)
	return s.Store.Get(ctx, hx)
}

func (s *countingStore) Stat(ctx context.Context, hx string) (codestore.Ref, error) {
	s.reads.Add(1)
	return s.Store.Stat(ctx, hx)
}

// download GETs link with plain net/http (no token) and answers its status and body (for
// an error, X-Amzn-ErrorType and the body).
func download(t *testing.T, link string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		b = append([]byte(resp.Header.Get("X-Amzn-Errortype")+" "), b...)
	}
	return resp.StatusCode, b
}

// want403 fails unless link is refused with 403 AccessDeniedException saying msg, and the
// store was not read.
func want403(t *testing.T, what, link, msg string, st *countingStore) {
	t.Helper()
	before := st.reads.Load()
	code, body := download(t, link)
	if code != http.StatusForbidden || !strings.Contains(string(body), "AccessDeniedException") || !strings.Contains(string(body), msg) {
		t.Errorf("%s: %d %s, want 403 AccessDeniedException saying %q", what, code, body, msg)
	}
	if n := st.reads.Load() - before; n != 0 {
		t.Errorf("%s: the code store was read %d times", what, n)
	}
}

func sha256B64(b []byte) string {
	s := sha256.Sum256(b)
	return base64.StdEncoding.EncodeToString(s[:])
}

// GetFunction's Code.Location (of $LATEST and of a published version) and
// GetLayerVersion's Content.Location are links, valid 10 minutes, that download the exact
// archive from the code store with plain net/http; an expired link, a changed signature,
// expiry or namespace are 403 without a read of the store; without a code store,
// Code.Location is the code's own URL as before.
func TestCodeLocation(t *testing.T) {
	r := newRig(t)
	st := &countingStore{Store: r.store}
	r.handler.Store = st
	var skew atomic.Int64 // the handler's clock runs this far ahead
	r.handler.Now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	api := r.sdk("")
	ctx := context.Background()
	zip1, zip2 := ziptest.Bootstrap(t, "code v1"), ziptest.Bootstrap(t, "code v2")
	if _, err := api.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("dl"), Role: aws.String(role),
		Runtime: types.RuntimeProvidedal2023, Handler: aws.String("bootstrap"), Code: &types.FunctionCode{ZipFile: zip1}}); err != nil {
		t.Fatal(err)
	}
	if err := lambda.NewFunctionActiveV2Waiter(api).Wait(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("dl")}, time.Minute); err != nil {
		t.Fatal(err)
	}
	got, err := api.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("dl")})
	if err != nil {
		t.Fatal(err)
	}
	link := aws.ToString(got.Code.Location)
	prefix := r.server.URL + "/namespaces/" + r.ns + "/klambda/code/"
	if !strings.HasPrefix(link, prefix) || aws.ToString(got.Code.RepositoryType) != "S3" {
		t.Fatalf("Code %s %s, want a link under %s", aws.ToString(got.Code.RepositoryType), link, prefix)
	}
	code, body := download(t, link)
	if code != http.StatusOK || sha256B64(body) != aws.ToString(got.Configuration.CodeSha256) || !bytes.Equal(body, zip1) {
		t.Fatalf("downloading Code.Location: %d, %d bytes, sha256 %s, want CodeSha256 %s", code, len(body), sha256B64(body), aws.ToString(got.Configuration.CodeSha256))
	}
	head, err := http.Head(link)
	if err != nil || head.StatusCode != http.StatusOK || head.ContentLength != int64(len(zip1)) || head.Header.Get("Content-Type") != "application/zip" {
		t.Fatalf("HEAD Code.Location: %v %+v", err, head)
	}
	_ = head.Body.Close()
	u, err := url.Parse(link)
	if err != nil {
		t.Fatal(err)
	}
	exp := u.Query().Get("X-Klambda-Expires")
	if exp == "" {
		t.Fatalf("no expiry in %s", link)
	}

	// Changed: the signature, the expiry, the namespace (another namespace's path).
	q := u.Query()
	// Another valid character of the signature's alphabet (flipping a bit could make it
	// unreadable, which is a different refusal).
	sig := []byte(q.Get("X-Klambda-Signature"))
	if sig[0] == 'A' {
		sig[0] = 'B'
	} else {
		sig[0] = 'A'
	}
	q.Set("X-Klambda-Signature", string(sig))
	tampered := *u
	tampered.RawQuery = q.Encode()
	want403(t, "a changed signature", tampered.String(), "signature of this code link does not match", st)
	q = u.Query()
	q.Set("X-Klambda-Expires", exp+"0")
	tampered.RawQuery = q.Encode()
	want403(t, "a later expiry", tampered.String(), "signature of this code link does not match", st)
	q = u.Query()
	q.Del("X-Klambda-Signature")
	tampered.RawQuery = q.Encode()
	want403(t, "no signature", tampered.String(), "X-Klambda-Signature", st)

	// Another namespace's function: its link does not open this namespace's path, nor
	// does this namespace's link with its digest.
	other := srv.NewNamespace(t, "api")
	oapi := lambda.New(lambda.Options{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("klambda", "unused", ""),
		BaseEndpoint: aws.String(r.server.URL + "/namespaces/" + other), RetryMaxAttempts: 1, HTTPClient: sdkbody.Client(0)})
	if _, err := oapi.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("theirs"), Role: aws.String(role),
		Runtime: types.RuntimeProvidedal2023, Handler: aws.String("bootstrap"), Code: &types.FunctionCode{ZipFile: zip2}}); err != nil {
		t.Fatal(err)
	}
	theirs, err := oapi.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("theirs")})
	if err != nil {
		t.Fatal(err)
	}
	tlink := aws.ToString(theirs.Code.Location)
	if !strings.HasPrefix(tlink, r.server.URL+"/namespaces/"+other+"/klambda/code/") {
		t.Fatalf("the other namespace's Code.Location %s is not a link", tlink)
	}
	if code, body := download(t, tlink); code != http.StatusOK || !bytes.Equal(body, zip2) {
		t.Fatalf("the other namespace's link: %d %d bytes", code, len(body))
	}
	want403(t, "another namespace's link in this namespace", strings.Replace(tlink, "/namespaces/"+other+"/", "/namespaces/"+r.ns+"/", 1),
		"its namespace ("+r.ns+")", st)
	tu, err := url.Parse(tlink)
	if err != nil {
		t.Fatal(err)
	}
	mixed := *u
	mixed.Path = prefix[len(r.server.URL):] + tu.Path[len(tu.Path)-64:]
	want403(t, "another namespace's digest with this namespace's signature", mixed.String(), "does not match", st)

	// A published version keeps its code: its link downloads zip1 after $LATEST got zip2.
	if _, err := api.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String("dl")}); err != nil {
		t.Fatal(err)
	}
	if _, err := api.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{FunctionName: aws.String("dl"), ZipFile: zip2}); err != nil {
		t.Fatal(err)
	}
	r.waitUpdated(t, api, "dl")
	for qual, want := range map[string][]byte{"1": zip1, "$LATEST": zip2} {
		g, err := api.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("dl"), Qualifier: aws.String(qual)})
		if err != nil {
			t.Fatal(err)
		}
		if code, body := download(t, aws.ToString(g.Code.Location)); code != http.StatusOK || !bytes.Equal(body, want) ||
			sha256B64(body) != aws.ToString(g.Configuration.CodeSha256) {
			t.Errorf("Qualifier %s: %d, %d bytes, not its code (CodeSha256 %s)", qual, code, len(body), aws.ToString(g.Configuration.CodeSha256))
		}
	}

	// A layer version's Content.Location, from PublishLayerVersion and GetLayerVersion.
	layerZip := ziptest.Bootstrap(t, "layer")
	lv, err := api.PublishLayerVersion(ctx, &lambda.PublishLayerVersionInput{LayerName: aws.String("libs"), Content: &types.LayerVersionContentInput{ZipFile: layerZip}})
	if err != nil {
		t.Fatal(err)
	}
	glv, err := api.GetLayerVersion(ctx, &lambda.GetLayerVersionInput{LayerName: aws.String("libs"), VersionNumber: aws.Int64(lv.Version)})
	if err != nil {
		t.Fatal(err)
	}
	for what, c := range map[string]*types.LayerVersionContentOutput{"PublishLayerVersion": lv.Content, "GetLayerVersion": glv.Content} {
		if code, body := download(t, aws.ToString(c.Location)); code != http.StatusOK || !bytes.Equal(body, layerZip) || sha256B64(body) != aws.ToString(c.CodeSha256) {
			t.Errorf("%s Content.Location %s: %d, %d bytes", what, aws.ToString(c.Location), code, len(body))
		}
	}

	// Expiry: valid until 10 minutes (Lambda's) after GetFunction, then 403.
	const lambdaLinkTTL = 10 * time.Minute
	skew.Store(int64(lambdaLinkTTL - 5*time.Second))
	if code, body := download(t, link); code != http.StatusOK || !bytes.Equal(body, zip1) {
		t.Fatalf("5 s before its expiry: %d %s", code, body)
	}
	skew.Store(int64(lambdaLinkTTL + time.Second))
	want403(t, "an expired link", link, "This code link expired at", st)

	// Without a code store Code.Location is where the code comes from (the Function's
	// code.url), and no link is served.
	plain := &controlapi.Handler{DefaultNamespace: "default", Region: "us-east-1", AccountID: "000000000000", Client: k8s,
		NamespaceConcurrency: 100, Log: logr.Discard(), Next: http.NotFoundHandler()}
	ps := testrig.NewServer(plain)
	t.Cleanup(ps.Close)
	papi := lambda.New(lambda.Options{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("klambda", "unused", ""),
		BaseEndpoint: aws.String(ps.URL + "/namespaces/" + r.ns), RetryMaxAttempts: 1, HTTPClient: sdkbody.Client(0)})
	pg, err := papi.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("dl")})
	if err != nil {
		t.Fatal(err)
	}
	if loc := aws.ToString(pg.Code.Location); loc != r.function(t, "dl").Spec.Code.URL || strings.Contains(loc, "X-Klambda-Signature") {
		t.Errorf("without a code store Code.Location is %s, want the Function's code.url", loc)
	}
	if code, body := download(t, ps.URL+strings.TrimPrefix(link, r.server.URL)); code != http.StatusNotFound || !strings.Contains(string(body), "no code store") {
		t.Errorf("a link on an activator without a code store: %d %s", code, body)
	}
}

// The key that signs code links is one Secret's: the first activator creates it, the
// others (here: eight at once) and restarts read it; a Secret with a short key is refused.
func TestLoadCodeLocationKey(t *testing.T) {
	ns := newNamespace(t)
	ctx := context.Background()
	keys := make([][]byte, 8)
	errs := make([]error, 8)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			keys[i], errs[i] = controlapi.LoadCodeLocationKey(ctx, clientset, ns, "code-location")
		}()
	}
	wg.Wait()
	for i := range keys {
		if errs[i] != nil || len(keys[i]) != controlapi.CodeLocationKeyBytes || !bytes.Equal(keys[i], keys[0]) {
			t.Fatalf("replica %d: key %x, %v; replica 0: %x", i, keys[i], errs[i], keys[0])
		}
	}
	sec, err := clientset.CoreV1().Secrets(ns).Get(ctx, "code-location", metav1.GetOptions{})
	if err != nil || !bytes.Equal(sec.Data["key"], keys[0]) {
		t.Fatalf("the Secret: %v %v", err, sec)
	}
	again, err := controlapi.LoadCodeLocationKey(ctx, clientset, ns, "code-location")
	if err != nil || !bytes.Equal(again, keys[0]) {
		t.Fatalf("a restart read %x, %v", again, err)
	}
	short := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "short"}, Data: map[string][]byte{"key": []byte("0123456789")}}
	if _, err := clientset.CoreV1().Secrets(ns).Create(ctx, short, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := controlapi.LoadCodeLocationKey(ctx, clientset, ns, "short"); err == nil || !strings.Contains(err.Error(), "at least 32 bytes") {
		t.Fatalf("a 10-byte key: %v", err)
	}
}

// Code downloads held at once are bounded (MaxDownloads): past it 429
// TooManyRequestsException; a slot is free again once its client went away.
func TestCodeDownloadsBounded(t *testing.T) {
	r := newRig(t)
	r.handler.MaxDownloads = 1
	api := r.sdk("")
	ctx := context.Background()
	// More than loopback's socket buffers hold: the first download stays in flight while
	// its client reads nothing.
	big := make([]byte, 24<<20)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	var zb bytes.Buffer
	zw := zip.NewWriter(&zb)
	w, err := zw.CreateHeader(&zip.FileHeader{Name: "blob", Method: zip.Store})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(big); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	lv, err := api.PublishLayerVersion(ctx, &lambda.PublishLayerVersionInput{LayerName: aws.String("big"), Content: &types.LayerVersionContentInput{ZipFile: zb.Bytes()}})
	if err != nil {
		t.Fatal(err)
	}
	link := aws.ToString(lv.Content.Location)
	held, err := http.Get(link)
	if err != nil || held.StatusCode != http.StatusOK || held.ContentLength != int64(zb.Len()) {
		t.Fatalf("the first download: %v %+v", err, held)
	}
	if code, body := download(t, link); code != http.StatusTooManyRequests || !strings.Contains(string(body), "TooManyRequestsException") {
		t.Fatalf("a second download at once: %d %s", code, body)
	}
	_ = held.Body.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := download(t, link)
		if code == http.StatusOK {
			if !bytes.Equal(body, zb.Bytes()) {
				t.Fatalf("the download after: %d bytes, not the layer", len(body))
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the slot is still held 10 s after its client went away: %d %s", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
