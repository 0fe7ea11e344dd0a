package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
)

type connNumber struct{}

// setConnContext reaches the requests of both servers of a listener (the lean one for
// plain HTTP, net/http's for TLS, over HTTP/1.1 and HTTP/2): what connection steering
// keeps its per-connection state in.
func TestListenerConnContext(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := writeCert(t, dir, "localhost")
	fd := testFrontDoor()
	fd.tlsCert, fd.tlsKey = certFile, keyFile
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tc, err := fd.tlsConfig(ctx, true, nil, "", logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		tc   *tls.Config
		h2   bool
	}{{"plain", nil, false}, {"TLS HTTP/1.1", tc, false}, {"TLS HTTP/2", tc, true}} {
		t.Run(c.name, func(t *testing.T) {
			var n atomic.Int64
			l := newListener("", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				v, _ := r.Context().Value(connNumber{}).(int64)
				_, _ = fmt.Fprintf(w, "%d %d", r.ProtoMajor, v)
			}), c.tc, httpTimeouts{readHeader: time.Second, idle: time.Minute})
			l.setConnContext(func(ctx context.Context, _ net.Conn) context.Context {
				return context.WithValue(ctx, connNumber{}, n.Add(1))
			})
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			go func() { _ = l.serveOn(ln) }()
			defer func() { _ = l.Close() }()
			tr := &http.Transport{ForceAttemptHTTP2: c.h2}
			url := "http://" + ln.Addr().String()
			want := "1 1"
			if c.tc != nil {
				tr.TLSClientConfig = &tls.Config{RootCAs: pool, ServerName: "localhost"}
				if !c.h2 {
					tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
				}
				url = "https://" + ln.Addr().String()
			}
			if c.h2 {
				want = "2 1"
			}
			hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			defer hc.CloseIdleConnections()
			for range 2 {
				resp, err := hc.Get(url) //nolint:noctx // a test client
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if string(b) != want {
					t.Fatalf("protocol and connection: %q, want %q", b, want)
				}
			}
		})
	}
}
