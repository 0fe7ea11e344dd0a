package controllers

import (
	"archive/zip"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	"github.com/klambda/klambda/internal/codeloader"
)

// Issue #15, finding 4: a Function author must not be able to exhaust the manager or use
// it to reach or read the cluster's internal addresses. These tests use the manager's
// default configuration and a server on a non-loopback address of this machine (which
// the default policy lets through, as it would a public server).

func localIPv4(t *testing.T) string {
	t.Helper()
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && n.IP.IsGlobalUnicast() {
			return n.IP.String()
		}
	}
	t.Skip("no non-loopback IPv4 address on this machine")
	return ""
}

func serveAt(t *testing.T, ip string, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Skipf("listening on %s: %v", ip, err)
	}
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: h}}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL
}

func resolveURL(t *testing.T, r *Resolver, url, sha string) error {
	t.Helper()
	fn := &lambdav1alpha1.Function{ObjectMeta: metav1.ObjectMeta{Name: "fn", Namespace: "tenant"}}
	_, err := r.ResolveZip(context.Background(), fn, "code", lambdav1alpha1.CodeSource{URL: url, SHA256: sha}, taskRoot)
	return err
}

// TestResolveZipDownloadsInBoundedMemory: a 150 MB download does not go through the
// manager's memory (it peaked at 375 MB RSS against a 256Mi limit).
func TestResolveZipDownloadsInBoundedMemory(t *testing.T) {
	chunk := make([]byte, 256<<10)
	url := serveAt(t, localIPv4(t), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i < 600; i++ { // 150 MB, not announced
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	r := &Resolver{Config: DefaultConfig()}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	err := resolveURL(t, r, url+"/big.zip", "")
	runtime.ReadMemStats(&after)
	if err == nil { // not a .zip archive
		t.Fatal("a 150 MB file of zeros was accepted as code")
	}
	if a := after.TotalAlloc - before.TotalAlloc; a > 32<<20 {
		t.Fatalf("downloading 150 MB allocated %d MB", a>>20)
	}
}

// TestResolveZipRefusesRedirectToLoopback: a public-looking URL that redirects to the
// manager's own loopback (or to link-local) is not followed.
func TestResolveZipRefusesRedirectToLoopback(t *testing.T) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, _ := zw.Create("bootstrap")
	_, _ = w.Write([]byte("#!/bin/sh\n"))
	_ = zw.Close()
	pkg := buf.Bytes()
	hits := 0
	internal := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits++
		_, _ = w.Write(pkg)
	}))
	defer internal.Close()
	public := serveAt(t, localIPv4(t), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/metadata.zip" {
			http.Redirect(w, r, "http://169.254.169.254/latest/user-data", http.StatusFound)
			return
		}
		http.Redirect(w, r, internal.URL+"/fn.zip", http.StatusFound)
	}))
	r := &Resolver{Config: DefaultConfig()}
	for _, path := range []string{"/fn.zip", "/metadata.zip"} {
		err := resolveURL(t, r, public+path, codeloader.DigestOf(pkg).Hex)
		if err == nil || !strings.Contains(err.Error(), "address not allowed") {
			t.Errorf("%s: %v, want address not allowed", path, err)
		}
	}
	if hits != 0 {
		t.Fatalf("the loopback server was fetched %d times", hits)
	}
}

// TestResolveZipStatusDoesNotEchoTheServer: what an internal server says (its status line,
// its body, the digest of what it serves) does not reach the Function's status.
func TestResolveZipStatusDoesNotEchoTheServer(t *testing.T) {
	ip := localIPv4(t)
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Skip(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = c.Read(make([]byte, 4096))
				_, _ = io.WriteString(c, "HTTP/1.1 403 SECRET-REASON\r\nContent-Length: 11\r\n\r\nSECRET-BODY")
			}()
		}
	}()
	content := []byte("an internal document")
	doc := serveAt(t, ip, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(content) }))
	r := &Resolver{Config: DefaultConfig()}
	for name, c := range map[string][2]string{
		"status line":      {fmt.Sprintf("http://%s/x.zip", ln.Addr()), ""},
		"digest of a body": {doc + "/x.zip", strings.Repeat("0", 64)},
	} {
		err := resolveURL(t, r, c[0], c[1])
		if err == nil {
			t.Fatalf("%s: accepted", name)
		}
		for _, leak := range []string{"SECRET", "403", codeloader.DigestOf(content).Hex, codeloader.DigestOf(content).Base64} {
			if strings.Contains(err.Error(), leak) {
				t.Errorf("%s: the message %q echoes %q", name, err, leak)
			}
		}
	}
}

// TestResolveZipFetchLimits: codeFetch bounds a download's time (a trickling server no
// longer holds the Function worker for 5 minutes), its size, and how many run at once; the
// egress policy's denyCIDRs refuse the cluster's ranges.
func TestResolveZipFetchLimits(t *testing.T) {
	ip := localIPv4(t)
	release := make(chan struct{})
	var running, most atomic.Int32
	url := serveAt(t, ip, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/trickle.zip":
			w.Header().Set("Content-Length", "1000000")
			for {
				if _, err := w.Write([]byte{'x'}); err != nil {
					return
				}
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
		case "/big.zip":
			_, _ = w.Write(make([]byte, 2<<20))
		default: // held until released
			n := running.Add(1)
			defer running.Add(-1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
	}))
	cfg, err := ParseConfig([]byte(`
codeFetch: {maxConcurrent: 2, stallTimeout: 300ms, minProgressBytes: 4096, timeout: 3s, maxBytes: 1048576}
egress: {allowLoopback: false}
`))
	if err != nil {
		t.Fatal(err)
	}
	r := &Resolver{Config: cfg}
	start := time.Now()
	err = resolveURL(t, r, url+"/trickle.zip", "")
	if err == nil || !strings.Contains(err.Error(), "timed out") || time.Since(start) > 2*time.Second {
		t.Errorf("trickle: %v after %v, want timed out within the 300 ms stall timeout", err, time.Since(start))
	}
	if err := resolveURL(t, r, url+"/big.zip", ""); err == nil || !strings.Contains(err.Error(), "too large") {
		t.Errorf("2 MB over a 1 MB limit: %v", err)
	}
	// Four held downloads: two at a time.
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_ = resolveURL(t, r, fmt.Sprintf("%s/held-%d.zip", url, i), "")
		}(i)
	}
	time.Sleep(200 * time.Millisecond)
	close(release)
	wg.Wait()
	if m := most.Load(); m != 2 {
		t.Errorf("%d downloads ran at once, want maxConcurrent 2", m)
	}
	// denyCIDRs: the server's own address, as a cluster CIDR would be.
	cfg, err = ParseConfig([]byte("egress: {denyCIDRs: [" + ip + "/32]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := resolveURL(t, &Resolver{Config: cfg}, url+"/big.zip", ""); err == nil || !strings.Contains(err.Error(), "address not allowed") {
		t.Errorf("a denied CIDR: %v", err)
	}
}
