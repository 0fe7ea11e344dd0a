package transport

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// diffHandler is one handler served by both net/http's server and Server in the
// differential tests: the request path picks what it does, and the answer describes the
// request as the handler saw it.
func diffHandler(w http.ResponseWriter, r *http.Request) {
	describe := func() string {
		keys := make([]string, 0, len(r.Header))
		for k := range r.Header {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var b strings.Builder
		fmt.Fprintf(&b, "%s %s %q proto=%s host=%q close=%v cl=%d te=%v\n", r.Method, r.URL.Path, r.URL.RawQuery, r.Proto, r.Host, r.Close, r.ContentLength, r.TransferEncoding)
		for _, k := range keys {
			fmt.Fprintf(&b, "%s=%q\n", k, r.Header[k])
		}
		return b.String()
	}
	switch {
	case strings.HasPrefix(r.URL.Path, "/echo"):
		body, err := io.ReadAll(r.Body)
		w.Header().Set("X-Body-Err", fmt.Sprint(err != nil))
		_, _ = io.WriteString(w, describe())
		_, _ = w.Write(body)
	case r.URL.Path == "/ignore-body": // the body is left for the server to discard
		_, _ = io.WriteString(w, "ignored\n")
	case r.URL.Path == "/sized":
		w.Header().Set("Content-Length", "5")
		_, _ = io.WriteString(w, "hello")
	case r.URL.Path == "/short": // declares more than it writes
		w.Header().Set("Content-Length", "10")
		_, _ = io.WriteString(w, "hello")
	case r.URL.Path == "/big": // unsized and long: chunked
		_, _ = w.Write(bytes.Repeat([]byte("0123456789"), 1000))
	case r.URL.Path == "/big-sized":
		b := bytes.Repeat([]byte("abcdefghij"), 100000)
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		_, _ = w.Write(b)
	case r.URL.Path == "/flush": // sized, flushed before the handler returns
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", "2")
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, "{}")
		w.(http.Flusher).Flush()
	case r.URL.Path == "/flush-unsized":
		_, _ = io.WriteString(w, "part one,")
		w.(http.Flusher).Flush()
		_, _ = io.WriteString(w, "part two")
	case r.URL.Path == "/nocontent":
		w.WriteHeader(http.StatusNoContent)
		_, _ = io.WriteString(w, "dropped")
	case r.URL.Path == "/close":
		w.Header().Set("Connection", "close")
		_, _ = io.WriteString(w, "bye")
	case r.URL.Path == "/empty":
	case r.URL.Path == "/trailer-prefix": // short, but a trailer makes it chunked
		w.Header().Set(http.TrailerPrefix+"X-T", "t")
		_, _ = io.WriteString(w, "body")
	case r.URL.Path == "/trailer-declared":
		// (Set after the head went out: net/http sends the header map as it was at the
		// first Write, Server as it is when the head goes out.)
		w.Header().Set("Trailer", "X-Declared, x-other")
		_, _ = io.WriteString(w, "body")
		w.(http.Flusher).Flush()
		w.Header().Set("X-Declared", "d")
		w.Header().Set("X-Other", "o")
	case r.URL.Path == "/trailer-streamed":
		_, _ = io.WriteString(w, "piece")
		w.(http.Flusher).Flush()
		w.Header().Set(http.TrailerPrefix+"X-Done", "true")
	case r.URL.Path == "/abort": // a stream cut: the client must not see a whole body
		_, _ = io.WriteString(w, "piece")
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	case r.URL.Path == "/badheader":
		w.Header()["Bad Name"] = []string{"x"}
		w.Header().Set("X-Split", "a\r\nInjected: yes")
		_, _ = io.WriteString(w, "ok")
	default:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"errorMessage":"no such endpoint"}`)
	}
}

// exchange sends raw on a new connection to addr (in pieces split by "|PAUSE|", with a
// pause between them), half-closes, and returns every answer until the server closes.
func exchange(t testing.TB, addr, raw string) []string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	pieces := strings.Split(raw, "|PAUSE|")
	for i, p := range pieces {
		if i > 0 {
			time.Sleep(30 * time.Millisecond)
		}
		if _, err := io.WriteString(c, p); err != nil {
			break
		}
	}
	_ = c.(*net.TCPConn).CloseWrite()
	all, _ := io.ReadAll(c)
	method := "GET"
	if strings.HasPrefix(raw, "HEAD ") {
		method = "HEAD" // (the cases with HEAD have nothing else)
	}
	return parseAnswers(string(all), method)
}

// parseAnswers reads HTTP answers off a byte stream with net/http's client parser and
// describes each one (status, headers but Date, body), and what could not be parsed.
func parseAnswers(stream, method string) []string {
	var out []string
	br := bufio.NewReader(strings.NewReader(stream))
	for {
		if _, err := br.Peek(1); err != nil {
			return out
		}
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			rest, _ := io.ReadAll(br)
			return append(out, fmt.Sprintf("unparsable: %v %q", err, rest))
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		keys := make([]string, 0, len(resp.Header))
		for k := range resp.Header {
			if k != "Date" {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		var b strings.Builder
		fmt.Fprintf(&b, "%s %s chunked=%v cl=%d close=%v bodyErr=%v\n", resp.Proto, resp.Status, resp.TransferEncoding, resp.ContentLength, resp.Close, err)
		for _, k := range keys {
			fmt.Fprintf(&b, "%s: %q\n", k, resp.Header[k])
		}
		if len(resp.Header["Date"]) != 1 {
			b.WriteString("(no Date)\n")
		}
		if len(body) > 200 {
			fmt.Fprintf(&b, "%d bytes, crc %08x, starting %q", len(body), crc32.ChecksumIEEE(body), body[:40])
		} else {
			b.Write(body)
		}
		tkeys := make([]string, 0, len(resp.Trailer))
		for k := range resp.Trailer {
			tkeys = append(tkeys, k)
		}
		sort.Strings(tkeys)
		for _, k := range tkeys {
			fmt.Fprintf(&b, "\ntrailer %s: %q", k, resp.Trailer[k])
		}
		out = append(out, b.String())
	}
}

// diffServers starts net/http's server and Server with diffHandler.
func diffServers(t testing.TB) (std, lean string) {
	t.Helper()
	s := httptest.NewUnstartedServer(http.HandlerFunc(diffHandler))
	s.Config.ReadHeaderTimeout = 2 * time.Second
	s.Config.ErrorLog = nil
	s.Start()
	t.Cleanup(s.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &Server{Handler: http.HandlerFunc(diffHandler), ReadHeaderTimeout: 2 * time.Second}
	go func() { _ = srv.Serve(Listener{ln}) }()
	t.Cleanup(func() { _ = srv.Close() })
	return s.Listener.Addr().String(), ln.Addr().String()
}

// TestHTTPServerMatchesNetHTTP sends the same bytes to net/http's server and to
// Server and expects the same answers.
func TestHTTPServerMatchesNetHTTP(t *testing.T) {
	std, lean := diffServers(t)
	const h = "Host: x\r\n"
	cases := map[string]string{
		"keep-alive, two requests":    "GET /echo HTTP/1.1\r\n" + h + "\r\n|PAUSE|POST /echo?a=1 HTTP/1.1\r\n" + h + "Content-Length: 5\r\n\r\nhello",
		"pipelined in one write":      "GET /echo HTTP/1.1\r\n" + h + "\r\nGET /sized HTTP/1.1\r\n" + h + "\r\nGET /big HTTP/1.1\r\n" + h + "\r\n",
		"chunked request body":        "POST /echo HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET /sized HTTP/1.1\r\n" + h + "\r\n",
		"chunked with trailer":        "POST /echo HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n",
		"bad chunk":                   "POST /echo HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
		"expect 100-continue":         "POST /echo HTTP/1.1\r\n" + h + "Expect: 100-continue\r\nContent-Length: 3\r\n\r\n|PAUSE|abc",
		"expect 100-continue unread":  "POST /ignore-body HTTP/1.1\r\n" + h + "Expect: 100-continue\r\nContent-Length: 3\r\n\r\n",
		"expect something else":       "POST /echo HTTP/1.1\r\n" + h + "Expect: teapot\r\nContent-Length: 3\r\n\r\nabc",
		"HTTP/1.0":                    "GET /echo HTTP/1.0\r\n\r\nGET /echo HTTP/1.0\r\n\r\n",
		"HTTP/1.0 keep-alive":         "GET /sized HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /big HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
		"HTTP/1.0 unsized keep-alive": "GET /echo HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /sized HTTP/1.0\r\n\r\n",
		"connection close":            "GET /echo HTTP/1.1\r\n" + h + "Connection: close\r\n\r\nGET /sized HTTP/1.1\r\n" + h + "\r\n",
		"handler closes":              "GET /close HTTP/1.1\r\n" + h + "\r\nGET /sized HTTP/1.1\r\n" + h + "\r\n",
		"missing host":                "GET /echo HTTP/1.1\r\n\r\n",
		"empty host":                  "GET /echo HTTP/1.1\r\nHost:\r\n\r\n",
		"two hosts":                   "GET /echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		"malformed host":              "GET /echo HTTP/1.1\r\nHost: a b\r\n\r\n",
		"absolute form":               "GET http://other/echo HTTP/1.1\r\nHost: x\r\n\r\n",
		"absolute form, no host":      "GET http://other/echo HTTP/1.1\r\n\r\n",
		"HTTP/2 preface":              "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		"HTTP/3.0":                    "GET / HTTP/3.0\r\n" + h + "\r\n",
		"garbage":                     "hello there\r\n\r\n",
		"bad header line":             "GET /echo HTTP/1.1\r\n" + h + "no colon here\r\n\r\n",
		"space before colon":          "GET /echo HTTP/1.1\r\n" + h + "X-A : 1\r\n\r\n",
		"obs-fold":                    "GET /echo HTTP/1.1\r\n" + h + "X-A: 1\r\n  continued\r\n\r\n",
		"bare LF":                     "GET /echo HTTP/1.1\n" + h[:7] + "\n\n",
		"duplicate CL":                "POST /echo HTTP/1.1\r\n" + h + "Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
		"conflicting CL":              "POST /echo HTTP/1.1\r\n" + h + "Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
		"CL and TE":                   "POST /echo HTTP/1.1\r\n" + h + "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"unknown TE":                  "POST /echo HTTP/1.1\r\n" + h + "Transfer-Encoding: gzip\r\n\r\nabc",
		"negative CL":                 "POST /echo HTTP/1.1\r\n" + h + "Content-Length: -1\r\n\r\n",
		"short body then EOF":         "POST /echo HTTP/1.1\r\n" + h + "Content-Length: 10\r\n\r\nabc",
		"unread small body":           "POST /ignore-body HTTP/1.1\r\n" + h + "Content-Length: 5\r\n\r\nhelloGET /sized HTTP/1.1\r\n" + h + "\r\n",
		"unread large body":           "POST /ignore-body HTTP/1.1\r\n" + h + "Content-Length: 300000\r\n\r\n" + strings.Repeat("a", 300000) + "GET /sized HTTP/1.1\r\n" + h + "\r\n",
		"CRLF after POST":             "POST /echo HTTP/1.1\r\n" + h + "Content-Length: 1\r\n\r\na\r\nGET /sized HTTP/1.1\r\n" + h + "\r\n",
		"HEAD":                        "HEAD /echo HTTP/1.1\r\n" + h + "\r\nHEAD /sized HTTP/1.1\r\n" + h + "\r\n",
		"204 drops the body":          "GET /nocontent HTTP/1.1\r\n" + h + "\r\nGET /sized HTTP/1.1\r\n" + h + "\r\n",
		"short answer closes":         "GET /short HTTP/1.1\r\n" + h + "\r\nGET /sized HTTP/1.1\r\n" + h + "\r\n",
		"large sized answer":          "GET /big-sized HTTP/1.1\r\n" + h + "\r\n",
		"flush":                       "GET /flush HTTP/1.1\r\n" + h + "\r\nGET /flush-unsized HTTP/1.1\r\n" + h + "\r\nGET /empty HTTP/1.1\r\n" + h + "\r\n",
		"header sanitising":           "GET /badheader HTTP/1.1\r\n" + h + "\r\n",
		"trailers":                    "GET /trailer-prefix HTTP/1.1\r\n" + h + "\r\nGET /trailer-declared HTTP/1.1\r\n" + h + "\r\nGET /trailer-streamed HTTP/1.1\r\n" + h + "\r\n",
		"trailers, HTTP/1.0":          "GET /trailer-prefix HTTP/1.0\r\n\r\n",
		"handler aborts":              "GET /abort HTTP/1.1\r\n" + h + "\r\nGET /sized HTTP/1.1\r\n" + h + "\r\n",
		"404":                         "DELETE /nope HTTP/1.1\r\n" + h + "\r\n",
		"head split over writes":      "POST /echo HTTP/1.1\r\n" + h + "|PAUSE|Content-Length: 2\r\n|PAUSE|\r\nok",
		"long header line":            "GET /echo HTTP/1.1\r\n" + h + "X-Long: " + strings.Repeat("v", 9000) + "\r\n\r\n",
		"head over the limit":         "GET /echo HTTP/1.1\r\n" + h + strings.Repeat("X-Filler: "+strings.Repeat("f", 1000)+"\r\n", 1100) + "\r\n",
		"head slightly over 1 MB":     "GET /echo HTTP/1.1\r\n" + h + "X-A: " + strings.Repeat("f", 1<<20) + "\r\n\r\n",
		"lowercase method":            "get /echo HTTP/1.1\r\n" + h + "\r\n",
		"query and escapes":           "GET /echo%20x?q=%41&b HTTP/1.1\r\n" + h + "\r\n",
		"bad escape":                  "GET /echo%zz HTTP/1.1\r\n" + h + "\r\n",
		"CONNECT":                     "CONNECT x:80 HTTP/1.1\r\n\r\n",
	}
	for name, raw := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			want := exchange(t, std, raw)
			got := exchange(t, lean, raw)
			if strings.Join(got, "\n---\n") != strings.Join(want, "\n---\n") {
				t.Errorf("answers differ\nnet/http:\n%s\nhttpServer:\n%s", strings.Join(want, "\n---\n"), strings.Join(got, "\n---\n"))
			}
		})
	}
}

// FuzzHTTPServer sends arbitrary bytes to both servers and expects the same answers.
func FuzzHTTPServer(f *testing.F) {
	for _, s := range []string{
		"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /sized HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"GET /echo HTTP/1.0\r\nConnection: keep-alive\r\n\r\nHEAD /sized HTTP/1.1\r\nHost: y\r\n\r\n",
		"POST /ignore-body HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
		"GET /flush-unsized HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n",
	} {
		f.Add(s)
	}
	std, lean := diffServers(f)
	f.Fuzz(func(t *testing.T, raw string) {
		raw = strings.ReplaceAll(raw, "|PAUSE|", "")
		want := exchange(t, std, raw)
		got := exchange(t, lean, raw)
		if strings.Join(got, "\n---\n") != strings.Join(want, "\n---\n") {
			t.Errorf("answers to %q differ\nnet/http:\n%s\nhttpServer:\n%s", raw, strings.Join(want, "\n---\n"), strings.Join(got, "\n---\n"))
		}
	})
}

// TestHTTPServerContextCanceledOnHangUp: a handler waiting on the request's context sees
// it canceled when the client goes away (the /next long-poll), and when it returns.
func TestHTTPServerContextCanceledOnHangUp(t *testing.T) {
	waiting, canceled := make(chan struct{}), make(chan error, 1)
	keptCh := make(chan context.Context, 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/quick" {
			keptCh <- r.Context()
			_, _ = io.WriteString(w, "quick")
			return
		}
		close(waiting)
		select {
		case <-r.Context().Done():
			canceled <- r.Context().Err()
		case <-time.After(5 * time.Second):
			canceled <- nil
		}
	})}
	go func() { _ = srv.Serve(Listener{ln}) }()
	defer srv.Close()

	resp, err := http.Get("http://" + ln.Addr().String() + "/quick")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	kept := <-keptCh
	select {
	case <-kept.Done():
	default:
		t.Fatal("the context of a finished request is not canceled")
	}

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(c, "GET /wait HTTP/1.1\r\nHost: x\r\n\r\n")
	<-waiting
	time.Sleep(20 * time.Millisecond)
	c.Close()
	if err := <-canceled; err != context.Canceled {
		t.Fatalf("context after hang-up: %v, want canceled", err)
	}
}

// TestHTTPServerShutdown: Shutdown closes idle connections, lets a running request
// finish, and refuses new connections.
func TestHTTPServerShutdown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	started := make(chan struct{})
	srv := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(started)
			<-release
		}
		_, _ = io.WriteString(w, "done")
	})}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(Listener{ln}) }()
	addr := ln.Addr().String()
	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	_, _ = io.WriteString(idle, "GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, err := http.ReadResponse(bufio.NewReader(idle), nil); err != nil {
		t.Fatal(err)
	}
	busy, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	_, _ = io.WriteString(busy, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	<-started
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(context.Background()) }()
	_ = idle.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, err := idle.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("idle connection still open after Shutdown: %d %v", n, err)
	}
	close(release)
	resp, err := http.ReadResponse(bufio.NewReader(busy), nil)
	if err != nil {
		t.Fatalf("the running request was cut: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "done" || !resp.Close {
		t.Fatalf("running request answered %q (close=%v), want done and Connection: close", body, resp.Close)
	}
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != http.ErrServerClosed {
		t.Fatalf("Serve returned %v", err)
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatal("still accepting after Shutdown")
	}
}

// TestHTTPServerCloseCancelsWaitingHandlers: closing the server ends the contexts of
// handlers waiting on them (as net/http's background read does).
func TestHTTPServerCloseCancelsWaitingHandlers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	waiting, canceled := make(chan struct{}), make(chan error, 1)
	srv := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		done := r.Context().Done()
		close(waiting)
		select {
		case <-done:
			canceled <- r.Context().Err()
		case <-time.After(5 * time.Second):
			canceled <- nil
		}
	})}
	go func() { _ = srv.Serve(Listener{ln}) }()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = io.WriteString(c, "GET /wait HTTP/1.1\r\nHost: x\r\n\r\n")
	<-waiting
	time.Sleep(20 * time.Millisecond)
	_ = srv.Close()
	if err := <-canceled; err != context.Canceled {
		t.Fatalf("context after Close: %v, want canceled", err)
	}
}

// TestHTTPServerIdleAndSilentConnectionsClosed: a kept-alive connection is closed once it
// has waited IdleTimeout for its next request, and a new one that sends nothing once
// ReadHeaderTimeout has passed; not before.
func TestHTTPServerIdleAndSilentConnectionsClosed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	const idle, header = 300 * time.Millisecond, 200 * time.Millisecond
	srv := &Server{Handler: http.HandlerFunc(diffHandler), IdleTimeout: idle, ReadHeaderTimeout: header}
	go func() { _ = srv.Serve(Listener{ln}) }()
	defer srv.Close()
	closedAfter := func(c net.Conn, start time.Time) time.Duration {
		t.Helper()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.Read(make([]byte, 1))
		var ne net.Error
		if n != 0 || err == nil || errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("read %d bytes, %v: want the connection closed", n, err)
		}
		return time.Since(start)
	}

	kept, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer kept.Close()
	silent, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	silentStart := time.Now()
	_, _ = io.WriteString(kept, "GET /sized HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(kept)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	// Still usable within the idle time.
	time.Sleep(idle / 3)
	_, _ = io.WriteString(kept, "GET /sized HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, err = http.ReadResponse(br, nil); err != nil {
		t.Fatalf("a request within the idle time: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	idleStart := time.Now()
	if d := closedAfter(silent, silentStart); d < header {
		t.Errorf("a silent connection was closed after %v, before ReadHeaderTimeout %v", d, header)
	}
	if d := closedAfter(kept, idleStart); d < idle {
		t.Errorf("an idle connection was closed after %v, before IdleTimeout %v", d, idle)
	}
}

// TestHTTPServerStreamsWithTrailersUntilTheHandlerEnds: a flushed answer reaches the
// client piece by piece, and its trailers come after the last piece.
func TestHTTPServerStreamsWithTrailersUntilTheHandlerEnds(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	next := make(chan struct{})
	srv := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, p := range []string{"one", "two"} {
			_, _ = io.WriteString(w, p)
			w.(http.Flusher).Flush()
			<-next
		}
		w.Header()[http.TrailerPrefix+"X-Outcome"] = []string{"done"}
	})}
	go func() { _ = srv.Serve(Listener{ln}) }()
	defer srv.Close()
	resp, err := http.Get("http://" + ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 16)
	for _, want := range []string{"one", "two"} {
		n, err := resp.Body.Read(buf)
		if string(buf[:n]) != want || err != nil {
			t.Fatalf("read %q, %v: want %q before the handler goes on", buf[:n], err, want)
		}
		next <- struct{}{}
	}
	if rest, err := io.ReadAll(resp.Body); len(rest) != 0 || err != nil {
		t.Fatalf("after the pieces: %q, %v", rest, err)
	}
	if got := resp.Trailer.Get("X-Outcome"); got != "done" {
		t.Fatalf("trailer X-Outcome = %q, want done", got)
	}
}
