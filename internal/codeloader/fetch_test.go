package codeloader

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klambda/klambda/internal/netguard"
)

// loopbackOK: the test servers listen on loopback, which the default policy refuses.
var loopbackOK = Limits{Policy: &netguard.Policy{AllowLoopback: true}}

// streamServer serves size bytes in 64 KB writes (with a Content-Length when sized) and
// counts what it managed to send; done closes when the handler returns.
func streamServer(t *testing.T, size int64, sized bool) (srv *httptest.Server, sent *atomic.Int64, done chan struct{}) {
	t.Helper()
	sent, done = &atomic.Int64{}, make(chan struct{}, 1)
	chunk := make([]byte, 64<<10)
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() { done <- struct{}{} }()
		if sized {
			w.Header().Set("Content-Length", fmt.Sprint(size))
		}
		for left := size; left > 0; {
			n, err := w.Write(chunk[:min(left, int64(len(chunk)))])
			sent.Add(int64(n))
			left -= int64(n)
			if err != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	return srv, sent, done
}

// TestFetchRefusesTooLargeWithoutReadingItAll: a 150 MB archive over a 1 MB limit is
// refused after about 1 MB (announced or not), with memory that does not grow with it.
func TestFetchRefusesTooLargeWithoutReadingItAll(t *testing.T) {
	for _, sized := range []bool{false, true} {
		t.Run(fmt.Sprintf("content-length=%v", sized), func(t *testing.T) {
			srv, sent, done := streamServer(t, 150<<20, sized)
			src, _ := ParseSource(srv.URL + "/big.zip")
			lim := loopbackOK
			lim.MaxBytes = 1 << 20
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			_, _, err := FetchLimited(t.Context(), src, nil, t.TempDir(), lim)
			runtime.ReadMemStats(&after)
			var fe *FetchError
			if !errors.As(err, &fe) || fe.Kind != FetchTooLarge {
				t.Fatalf("err = %v, want %q", err, FetchTooLarge)
			}
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("the server is still sending: the download was not abandoned")
			}
			// Socket buffers take a few MB before the server notices.
			if s := sent.Load(); s > 32<<20 {
				t.Errorf("the server sent %d MB of a 150 MB archive refused at 1 MB", s>>20)
			}
			if a := after.TotalAlloc - before.TotalAlloc; a > 16<<20 {
				t.Errorf("allocated %d MB for a download refused at 1 MB", a>>20)
			}
		})
	}
}

// TestFetchTimesOutATricklingServer: a server that sends a byte now and then, or only its
// headers, or nothing at all, is abandoned after StallTimeout, well before Timeout.
func TestFetchTimesOutATricklingServer(t *testing.T) {
	cases := map[string]http.HandlerFunc{
		"trickle": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "100000")
			for i := 0; i < 100000; i++ {
				if _, err := w.Write([]byte{'x'}); err != nil {
					return
				}
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
		},
		"no answer": func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() },
	}
	for name, h := range cases {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(h)
			defer srv.Close()
			src, _ := ParseSource(srv.URL + "/slow.zip")
			lim := loopbackOK
			lim.StallTimeout, lim.MinProgress, lim.Timeout = 300*time.Millisecond, 1024, time.Minute
			start := time.Now()
			_, _, err := FetchLimited(t.Context(), src, nil, t.TempDir(), lim)
			var fe *FetchError
			if !errors.As(err, &fe) || fe.Kind != FetchTimedOut {
				t.Fatalf("err = %v, want %q", err, FetchTimedOut)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Fatalf("took %v with a 300 ms stall timeout", d)
			}
		})
	}
	// The overall deadline holds for a server that makes just enough progress.
	srv := httptest.NewServer(cases["trickle"])
	defer srv.Close()
	src, _ := ParseSource(srv.URL + "/slow.zip")
	lim := loopbackOK
	lim.StallTimeout, lim.MinProgress, lim.Timeout = 300*time.Millisecond, 1, 700*time.Millisecond
	start := time.Now()
	_, _, err := FetchLimited(t.Context(), src, nil, t.TempDir(), lim)
	var fe *FetchError
	if !errors.As(err, &fe) || fe.Kind != FetchTimedOut || time.Since(start) > 3*time.Second {
		t.Fatalf("err = %v after %v, want %q after 700 ms", err, time.Since(start), FetchTimedOut)
	}
}

// localAddress is an address of this machine that is not loopback (the default policy lets
// it through), or skips the test.
func localAddress(t *testing.T) string {
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

// serveOn serves h on ip (port chosen).
func serveOn(t *testing.T, ip string, h http.Handler) string {
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

// TestFetchRefusesInternalAddresses: loopback and link-local addresses are refused with the
// default policy, also when a public-looking server redirects there; a redirect to another
// scheme is refused, and so are too many redirects.
func TestFetchRefusesInternalAddresses(t *testing.T) {
	var hit atomic.Int32
	internal := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hit.Add(1)
		_, _ = io.WriteString(w, "internal secret")
	}))
	defer internal.Close()
	public := serveOn(t, localAddress(t), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/to-loopback":
			http.Redirect(w, r, internal.URL+"/x", http.StatusFound)
		case "/to-metadata":
			http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusFound)
		case "/to-file":
			http.Redirect(w, r, "file:///etc/passwd", http.StatusFound)
		default: // /loop/N redirects to /loop/N+1
			var n int
			_, _ = fmt.Sscanf(r.URL.Path, "/loop/%d", &n)
			http.Redirect(w, r, fmt.Sprintf("/loop/%d", n+1), http.StatusFound)
		}
	}))
	cases := map[string]struct {
		url  string
		kind FetchErrorKind
	}{
		"loopback":                  {internal.URL + "/x", FetchDenied},
		"redirect to loopback":      {public + "/to-loopback", FetchDenied},
		"redirect to link-local":    {public + "/to-metadata", FetchDenied},
		"link-local":                {"http://169.254.169.254/latest/meta-data/", FetchDenied},
		"redirect to file":          {public + "/to-file", FetchDenied},
		"too many redirects":        {public + "/loop/0", FetchFailed},
		"IPv6 loopback":             {"http://[::1]:1/x", FetchDenied},
		"loopback by name":          {"http://localhost:" + strings.TrimPrefix(internal.URL, "http://127.0.0.1:") + "/x", FetchDenied},
		"unspecified, 0.0.0.0":      {"http://0.0.0.0:" + strings.TrimPrefix(internal.URL, "http://127.0.0.1:") + "/x", FetchDenied},
		"IPv4-mapped IPv6 loopback": {"http://[::ffff:127.0.0.1]:" + strings.TrimPrefix(internal.URL, "http://127.0.0.1:") + "/x", FetchDenied},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			src, err := ParseSource(c.url)
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = FetchLimited(t.Context(), src, nil, t.TempDir(), Limits{StallTimeout: 5 * time.Second})
			var fe *FetchError
			if !errors.As(err, &fe) || fe.Kind != c.kind {
				t.Fatalf("err = %v, want %q", err, c.kind)
			}
		})
	}
	if n := hit.Load(); n != 0 {
		t.Fatalf("the internal server was reached %d times", n)
	}
}

// TestFetchErrorsDoNotEchoTheServer: a failed download's message is a fixed category: not
// the server's status line, body or a dial error, and not the digest of what it served.
func TestFetchErrorsDoNotEchoTheServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
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
				_, _ = io.WriteString(c, "HTTP/1.1 404 SECRET-REASON\r\nContent-Length: 11\r\nX-Leak: SECRET-HEADER\r\n\r\nSECRET-BODY")
			}()
		}
	}()
	content := []byte("the internal document")
	good := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(content) }))
	defer good.Close()
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedURL := "http://" + closed.Addr().String() + "/x"
	closed.Close()
	cases := map[string]struct {
		url, sha string
		kind     FetchErrorKind
	}{
		"status and body": {"http://" + ln.Addr().String() + "/x", "", FetchFailed},
		"refused":         {closedURL, "", FetchFailed},
		"digest":          {good.URL + "/x", strings.Repeat("0", 64), FetchChecksum},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			src, _ := ParseSource(c.url)
			src.SHA256 = c.sha
			_, _, err := FetchLimited(t.Context(), src, nil, t.TempDir(), loopbackOK)
			var fe *FetchError
			if !errors.As(err, &fe) || fe.Kind != c.kind {
				t.Fatalf("err = %v, want %q", err, c.kind)
			}
			// The URL is the caller's own (its random port may hold "404"): only what
			// the server said may not come back.
			msg := strings.ReplaceAll(err.Error(), c.url, "<url>")
			for _, leak := range []string{"SECRET", "404", "refused", DigestOf(content).Hex, DigestOf(content).Base64} {
				if strings.Contains(msg, leak) {
					t.Errorf("message %q contains %q", msg, leak)
				}
			}
		})
	}
}

// TestLoadCodeAllowLoopback: load-code refuses a loopback source unless --allow-loopback.
func TestLoadCodeAllowLoopback(t *testing.T) {
	zip := writeZip(t, zentry{name: "index.js", body: "code"})
	srv := httptest.NewServer(http.FileServer(http.Dir(strings.TrimSuffix(zip, "/a.zip"))))
	defer srv.Close()
	b, _ := DigestOfFile(zip)
	src := srv.URL + "/a.zip#sha256=" + b.Hex
	err := run(context.Background(), []string{"--task-root=" + t.TempDir(), "--code=" + src}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), string(FetchDenied)) {
		t.Fatalf("without --allow-loopback: %v, want %q", err, FetchDenied)
	}
	if err := run(context.Background(), []string{"--allow-loopback", "--task-root=" + t.TempDir(), "--code=" + src}, io.Discard); err != nil {
		t.Fatalf("with --allow-loopback: %v", err)
	}
}
