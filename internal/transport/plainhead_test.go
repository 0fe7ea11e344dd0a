package transport

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
)

// plainRequests are request heads (and what follows them) as the activator's callers,
// peers and the shim's runtimes send them, and variations; plain tells whether
// parsePlainRequest must take them (the rest are left to http.ReadRequest).
var plainRequests = []struct {
	raw   string
	plain bool
}{
	{"POST /2015-03-31/functions/echo/invocations HTTP/1.1\r\nHost: 127.0.0.1:80\r\nUser-Agent: Go-http-client/1.1\r\nContent-Length: 7\r\nContent-Type: application/json\r\nAccept-Encoding: gzip\r\n\r\n{\"a\":1}", true},
	{"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n", true},
	{"POST /peer/v1/invoke HTTP/1.1\r\nHost: 10.0.0.1:9443\r\nContent-Type: application/json\r\nContent-Length: 2\r\nAuthorization: Bearer tok\r\nx-klambda-namespace: a\r\n\r\n{}GET / HTTP/1.1\r\n", true},
	{"GET /a%20b?q=%41&x HTTP/1.1\r\nhost: h\r\nA:  spaced value \t\r\nA: second\r\nEmpty:\r\nConnection: keep-alive, Close\r\n\r\n", true},
	{"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 007\r\n\r\n1234567extra", true},
	{"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nshort", true},
	{"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", true},
	{"DELETE /x HTTP/1.1\r\nHost: h\r\nX-Bin: caf\xc3\xa9\r\n\r\n", true},
	{"GET /x HTTP/1.1\r\n\r\n", true},
	// Left to http.ReadRequest (which takes or refuses them).
	{"GET /x HTTP/1.0\r\nHost: h\r\n\r\n", false},
	{"GET http://other/x HTTP/1.1\r\nHost: h\r\n\r\n", false},
	{"CONNECT /x HTTP/1.1\r\nHost: h\r\n\r\n", false},
	{"CONNECT h:80 HTTP/1.1\r\n\r\n", false},
	{"PRI * HTTP/2.0\r\n\r\n", false},
	{"GET * HTTP/1.1\r\nHost: h\r\n\r\n", false},
	{"GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", false},
	{"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", false},
	{"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", false},
	{"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", false},
	{"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: +3\r\n\r\nabc", false},
	{"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", false},
	{"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n", false},
	{"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999\r\n\r\n", false},
	{"GET /x HTTP/1.1\r\nHost: h\r\nPragma: no-cache\r\n\r\n", false},
	{"GET /x HTTP/1.1\r\nHost: h\r\nTrailer: X\r\n\r\n", false},
	{"GET /x HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n  continued\r\n\r\n", false},
	{"GET /x HTTP/1.1\r\n Host: h\r\n\r\n", false},
	{"GET /x HTTP/1.1\r\nX-A : 1\r\n\r\n", false},
	{"GET /x HTTP/1.1\r\nno colon\r\n\r\n", false},
	{"GET /x HTTP/1.1\r\n: empty name\r\n\r\n", false},
	{"GET /x HTTP/1.1\r\nX: a\x01b\r\n\r\n", false},
	{"GET /x HTTP/1.1\r\nX: a\x7fb\r\n\r\n", false},
	{"GET /x HTTP/1.1\nHost: h\n\n", false},
	{"GET /x HTTP/1.1\r\nHost: h\n\r\n", false},
	{"GET /x HTTP/1.1\r\nHost: h\rx\r\n\r\n", false},
	{"G(T /x HTTP/1.1\r\n\r\n", false},
	{" GET /x HTTP/1.1\r\n\r\n", false},
	{"GET /x  HTTP/1.1\r\n\r\n", false},
	{"GET /x%zz HTTP/1.1\r\n\r\n", false},
	{"GET /x HTTP/1.1 \r\n\r\n", false},
	{"GET /x\r\n\r\n", false},
}

// TestPlainRequestMatchesReadRequest: what parsePlainRequest takes, http.ReadRequest reads
// into the same Request (body and the bytes after it included).
func TestPlainRequestMatchesReadRequest(t *testing.T) {
	for _, c := range plainRequests {
		if took := checkPlainRequest(t, c.raw); took != c.plain {
			t.Errorf("%q: taken by the plain parse %v, want %v", c.raw, took, c.plain)
		}
	}
}

// FuzzPlainRequest: whatever parsePlainRequest takes, http.ReadRequest reads alike.
func FuzzPlainRequest(f *testing.F) {
	for _, c := range plainRequests {
		f.Add(c.raw)
	}
	f.Fuzz(func(t *testing.T, raw string) { checkPlainRequest(t, raw) })
}

// checkPlainRequest parses raw both ways and compares; it tells whether the plain parse
// took it.
func checkPlainRequest(t *testing.T, raw string) bool {
	t.Helper()
	end := headEnd([]byte(raw))
	if end < 0 {
		return false
	}
	fast := bufio.NewReaderSize(strings.NewReader(raw), 64<<10)
	buffered, _ := fast.Peek(len(raw))
	got, hosts := parsePlainRequest(fast, buffered[:end])
	if got == nil {
		if fast.Buffered() != len(raw) {
			t.Errorf("%q: refused by the plain parse after consuming %d bytes", raw, len(raw)-fast.Buffered())
		}
		return false
	}
	std := bufio.NewReader(strings.NewReader(raw))
	want, err := http.ReadRequest(std)
	if err != nil {
		t.Errorf("%q: the plain parse took what http.ReadRequest refuses (%v)", raw, err)
		return true
	}
	gotBody, gotErr := io.ReadAll(got.Body)
	wantBody, wantErr := io.ReadAll(want.Body)
	gotRest, _ := io.ReadAll(fast)
	wantRest, _ := io.ReadAll(std)
	if string(gotBody) != string(wantBody) || !errors.Is(gotErr, wantErr) && (gotErr == nil || wantErr == nil || gotErr.Error() != wantErr.Error()) || string(gotRest) != string(wantRest) {
		t.Errorf("%q: body %q (%v), then %q; http.ReadRequest: %q (%v), then %q", raw, gotBody, gotErr, gotRest, wantBody, wantErr, wantRest)
	}
	if (got.Body == http.NoBody) != (want.Body == http.NoBody) {
		t.Errorf("%q: NoBody %v, http.ReadRequest %v", raw, got.Body == http.NoBody, want.Body == http.NoBody)
	}
	for _, r := range []*http.Request{got, want} {
		_ = r.Body.Close()
		if _, err := r.Body.Read(make([]byte, 1)); r.ContentLength > 0 && !errors.Is(err, http.ErrBodyReadAfterClose) {
			t.Errorf("%q: a read after Close: %v", raw, err)
		}
		r.Body = nil
	}
	if n, v := hostHeaders(buffered[:end]); n != hosts || n == 1 && v != got.Host {
		t.Errorf("%q: %d Host lines (%q), hostHeaders: %d (%q)", raw, hosts, got.Host, n, v)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%q: requests differ\nplain:            %+v\nhttp.ReadRequest: %+v", raw, got, want)
	}
	return true
}

// plainTargets are request targets as the activator's and the shim's clients send them,
// and variations.
var plainTargets = []string{
	"/2015-03-31/functions/echo/invocations", "/namespaces/team-a/2015-03-31/functions/echo/invocations?Qualifier=live",
	"/2015-03-31/functions/arn:aws:lambda:us-east-1:123456789012:function:f:1/invocations",
	"/2018-06-01/runtime/invocation/next", "/", "//x", "/a?", "/a??", "/a?b?c", "/a?q=%41&x", "/a#b", "/a%20b",
	"/a b", "/a!b", "/a(b)*'", "/$&+,/:;=@-_.~", "/a?b c", "/a?b\x7f", "/caf\xc3\xa9", "x", "", "?", "*",
}

// TestPlainTargetMatchesParseRequestURI: what parsePlainTarget takes, url.ParseRequestURI
// reads into the same URL.
func TestPlainTargetMatchesParseRequestURI(t *testing.T) {
	took := 0
	for _, target := range plainTargets {
		if checkPlainTarget(t, target) {
			took++
		}
	}
	if took != 10 {
		t.Errorf("the plain parse took %d targets, want 10", took)
	}
}

// FuzzPlainTarget: whatever parsePlainTarget takes, url.ParseRequestURI reads alike.
func FuzzPlainTarget(f *testing.F) {
	for _, target := range plainTargets {
		f.Add(target)
	}
	f.Fuzz(func(t *testing.T, target string) { checkPlainTarget(t, target) })
}

func checkPlainTarget(t *testing.T, target string) bool {
	t.Helper()
	var got url.URL
	if !parsePlainTarget(target, &got) {
		if got != (url.URL{}) {
			t.Errorf("%q: refused, but the URL was set", target)
		}
		return false
	}
	want, err := url.ParseRequestURI(target)
	if err != nil {
		t.Errorf("%q: taken by the plain parse, refused by url.ParseRequestURI (%v)", target, err)
		return true
	}
	if !reflect.DeepEqual(&got, want) {
		t.Errorf("%q: %#v, url.ParseRequestURI: %#v", target, got, *want)
	}
	return true
}

// FuzzPlainRequestFieldsValid: a head the plain parse takes passes checkRequest's checks of
// the header fields, which the server therefore skips for it.
func FuzzPlainRequestFieldsValid(f *testing.F) {
	for _, c := range plainRequests {
		f.Add(c.raw)
	}
	f.Add("GET /x HTTP/1.1\r\nHost: h\r\nX\x80: 1\r\n\r\n")
	f.Add("GET /x HTTP/1.1\r\nHost: h\r\nX: caf\xc3\xa9\t\r\n\r\n")
	f.Fuzz(func(t *testing.T, raw string) {
		end := headEnd([]byte(raw))
		if end < 0 {
			return
		}
		br := bufio.NewReaderSize(strings.NewReader(raw), 64<<10)
		buffered, _ := br.Peek(len(raw))
		req, hosts := parsePlainRequest(br, buffered[:end])
		if req == nil {
			return
		}
		full, skipped := checkRequest(req, hosts, req.Host, false), checkRequest(req, hosts, req.Host, true)
		if full != skipped {
			t.Errorf("%q: checkRequest %v, without the fields' checks %v", raw, full, skipped)
		}
	})
}
