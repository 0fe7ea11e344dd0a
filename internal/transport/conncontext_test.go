package transport

import (
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
)

type connKey struct{}

// ConnContext is called once per connection, its values reach every request of the
// connection, and a handler's "Connection: close" ends the connection after a complete
// answer (the client's next request opens a new one).
func TestHTTPServerConnContextAndHandlerClose(t *testing.T) {
	var conns atomic.Int64
	srv := &Server{
		ConnContext: func(ctx context.Context, _ net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, conns.Add(1))
		},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Query().Get("close") != "" {
				w.Header()["Connection"] = []string{"close"}
			}
			_, _ = io.WriteString(w, strconv.FormatInt(r.Context().Value(connKey{}).(int64), 10))
		}),
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(Listener{ln}) }()
	defer srv.Close()
	c := &http.Client{Transport: &http.Transport{}}
	get := func(q string) string {
		t.Helper()
		resp, err := c.Post("http://"+ln.Addr().String()+"/"+q, "text/plain", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	for i, want := range []string{"1", "1", "1", "2", "2"} {
		q := ""
		if i == 2 {
			q = "?close=1"
		}
		if got := get(q); got != want {
			t.Fatalf("request %d: served on connection %s, want %s", i, got, want)
		}
	}
	// Without ConnContext a request's context has no values.
	plain := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Context().Value(connKey{}) != nil {
			w.WriteHeader(http.StatusInternalServerError)
		}
	})}
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = plain.Serve(Listener{ln2}) }()
	defer plain.Close()
	resp, err := c.Get("http://" + ln2.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("a value without ConnContext: %d", resp.StatusCode)
	}
}
