package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	certutil "k8s.io/client-go/util/cert"

	"github.com/klambda/klambda/activator/testrig"
)

func writeCert(t *testing.T, dir, host string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	certPEM, keyPEM, err := certutil.GenerateSelfSignedCertKey(host, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	// Write as a Secret volume update does: new files renamed over the old ones.
	for f, b := range map[string][]byte{certFile: certPEM, keyFile: keyPEM} {
		if err := os.WriteFile(f+".tmp", b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(f+".tmp", f); err != nil {
			t.Fatal(err)
		}
	}
	pool = x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	return certFile, keyFile, pool
}

func testFrontDoor() *frontDoor {
	fs := flagSetForTest()
	return bindFrontDoorFlags(fs)
}

// Issue 15, finding 8: the Invoke API is served over TLS with the given certificate,
// reloaded when the file changes; plain HTTP must be asked for explicitly.
func TestInvokeAPIServesTLSAndReloadsTheCertificate(t *testing.T) {
	r := testrig.New(testrig.Options{})
	defer r.Close()
	r.Function("f", -1, 0)
	r.Environments("f", "$LATEST", 1)

	dir := t.TempDir()
	fd := testFrontDoor()
	certFile, keyFile, pool := writeCert(t, dir, "localhost")
	fd.tlsCert, fd.tlsKey = certFile, keyFile
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tc, err := fd.tlsConfig(ctx, true, nil, "", logr.Discard())
	if err != nil || tc == nil {
		t.Fatalf("tlsConfig: %v %v", tc, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := fd.invokeServer("", r.Handler, tc)
	if srv.std == nil {
		t.Fatal("TLS is not served by net/http's server (HTTP/2, hang-ups noticed)")
	}
	go func() { _ = srv.serveOn(ln) }()
	defer func() { _ = srv.Close() }()
	url := fmt.Sprintf("https://localhost:%d/2015-03-31/functions/f/invocations", ln.Addr().(*net.TCPAddr).Port)

	client := func(pool *x509.CertPool) *http.Client {
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	}
	resp, err := client(pool).Post(url, "application/json", strings.NewReader(`{"a":1}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != `{"a":1}` {
		t.Fatalf("over TLS: %d %s", resp.StatusCode, b)
	}
	// Plain HTTP to the TLS port is not served.
	if resp, err := http.Post(strings.Replace(url, "https:", "http:", 1), "application/json", strings.NewReader(`{}`)); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("plain HTTP was served on the TLS port")
		}
	}

	// A renewed certificate is served without a restart.
	_, _, pool2 := writeCert(t, dir, "localhost")
	deadline := time.Now().Add(20 * time.Second)
	for {
		c := client(pool2)
		resp, err := c.Post(url, "application/json", strings.NewReader(`{}`))
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the renewed certificate was not served: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestPlainHTTPIsExplicit(t *testing.T) {
	fd := testFrontDoor()
	if _, err := fd.tlsConfig(context.Background(), true, nil, "", logr.Discard()); err == nil {
		t.Fatal("authorization on, no certificate, no --plain-http: want an error")
	}
	fd.plainHTTP = true
	if tc, err := fd.tlsConfig(context.Background(), true, nil, "", logr.Discard()); err != nil || tc != nil {
		t.Fatalf("--plain-http: %v %v", tc, err)
	}
	fd = testFrontDoor()
	if tc, err := fd.tlsConfig(context.Background(), false, nil, "", logr.Discard()); err != nil || tc != nil {
		t.Fatalf("--auth=false (no tokens travel): %v %v", tc, err)
	}
	fd.tlsCert = "/x"
	if _, err := fd.tlsConfig(context.Background(), true, nil, "", logr.Discard()); err == nil {
		t.Fatal("--tls-cert-file without --tls-key-file: want an error")
	}
	fd = testFrontDoor()
	fd.audiences = " , "
	if _, err := fd.checker(nil); err == nil {
		t.Fatal("empty --token-audiences: want an error")
	}
}

// Issue 15, finding 6: the Invoke API's server bounds how long a client may take to send
// its request (there was no ReadTimeout: a trickled body held its request forever), and
// that bound does not cut a synchronous invocation that runs longer than it.
func TestInvokeServerTimeouts(t *testing.T) {
	r := testrig.New(testrig.Options{})
	defer r.Close()
	r.Function("f", -1, 0)
	r.Environments("f", "$LATEST", 1)
	fd := testFrontDoor()
	fd.readTimeout = 500 * time.Millisecond
	fd.readHeaderTimeout = 300 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := fd.invokeServer("", r.Handler, nil)
	if srv.lean == nil {
		t.Fatal("plain HTTP is not served by the lean server")
	}
	go func() { _ = srv.serveOn(ln) }()
	defer func() { _ = srv.Close() }()
	base := "http://" + ln.Addr().String()

	// A function running 3x the read timeout answers.
	resp, err := http.Post(base+"/2015-03-31/functions/f/invocations", "application/json", strings.NewReader(`{"sleep_ms":1500}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Contains(b, []byte("sleep_ms")) {
		t.Fatalf("an invocation longer than the read timeout: %d %s", resp.StatusCode, b)
	}

	// A trickled body is cut at the read timeout.
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /2015-03-31/functions/f/invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
	start := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.ReadAll(c) // the answer to the failed read, then EOF when the server closes
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("a trickled body held its connection %v (read timeout %v)", el, fd.readTimeout)
	}
	if l := srv.lean; l.BodyTimeout != fd.readTimeout || l.IdleTimeout != fd.idleTimeout || l.ReadHeaderTimeout != fd.readHeaderTimeout {
		t.Fatalf("server timeouts: %+v", l)
	}
	// Over TLS (net/http's server), the same flags.
	if l := fd.invokeServer("", r.Handler, &tls.Config{}).std; l.ReadTimeout != fd.readTimeout || l.IdleTimeout != fd.idleTimeout ||
		l.ReadHeaderTimeout != fd.readHeaderTimeout || l.WriteTimeout != 0 {
		t.Fatalf("TLS server timeouts: %+v", l)
	}
}

func flagSetForTest() *flag.FlagSet { return flag.NewFlagSet("test", flag.ContinueOnError) }
