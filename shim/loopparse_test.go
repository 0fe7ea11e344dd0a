package shim

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"

	"golang.org/x/net/http/httpguts"
)

var loopParserSeeds = []string{
	// aws-lambda-go's /next and /response (chunked, a trailer declared but none sent).
	"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: 127.0.0.1:9001\r\nUser-Agent: aws-lambda-go/go1.26.8\r\nAccept-Encoding: gzip\r\n\r\n",
	"POST /2018-06-01/runtime/invocation/9f35/response HTTP/1.1\r\nHost: 127.0.0.1:9001\r\nUser-Agent: aws-lambda-go/go1.26.8\r\nTransfer-Encoding: chunked\r\nTrailer: Lambda-Runtime-Function-Error-Body,Lambda-Runtime-Function-Error-Type\r\nContent-Type: application/json\r\nAccept-Encoding: gzip\r\n\r\n18\r\n{\"hello\":\"world\",\"n\":42}\r\n0\r\n\r\n",
	// An invoke, as the activator and the SDKs send it, then another one pipelined.
	"POST /2015-03-31/functions/function/invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\nX-Amz-Log-Type: Tail\r\n\r\n{\"a\":1}POST /2015-03-31/functions/f/invocations?Qualifier=3 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
	"POST /2015-03-31/functions/function/invocations HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n3\r\n\":1\r\n1\r\n}\r\n0\r\n\r\n",
	// Each left to httpServer.
	"GET /healthz HTTP/1.0\r\n\r\n",
	"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
	"POST /x HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx",
	"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1;ext=1\r\nx\r\n0\r\nTrailer: v\r\n\r\n",
	"GET /a%20b HTTP/1.1\r\nHost: x\r\n Folded: y\r\n\r\n",
	"GET / HTTP/1.1\nHost: x\n\n",
}

// FuzzLoopParser holds the event loop's parser to net/http's: whatever it accepts,
// http.ReadRequest reads the same way (method, path, query, headers, body, length), and
// httpServer's own checks after parsing pass.
func FuzzLoopParser(f *testing.F) {
	for _, s := range loopParserSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var r loopRequest
		if parseLoopRequest(b, &r) != loopParsed {
			return
		}
		rd := bytes.NewReader(b)
		br := bufio.NewReader(rd)
		req, err := http.ReadRequest(br)
		if err != nil {
			t.Fatalf("the loop parsed %q, net/http refuses it: %v", b, err)
		}
		if want := map[bool]string{true: "POST", false: "GET"}[r.post]; req.Method != want {
			t.Fatalf("method %q, net/http %q", want, req.Method)
		}
		if req.URL.Path != string(r.path) || req.URL.RawQuery != string(r.rawQuery) {
			t.Fatalf("path %q query %q, net/http %q %q", r.path, r.rawQuery, req.URL.Path, req.URL.RawQuery)
		}
		for _, fl := range r.header.fields {
			want := req.Header.Get(string(fl.name))
			switch {
			case asciiEqualFold(fl.name, "Host"):
				want = req.Host // net/http moves it there
			case asciiEqualFold(fl.name, "Transfer-Encoding"):
				if len(req.TransferEncoding) != 1 || req.TransferEncoding[0] != "chunked" {
					t.Fatalf("the loop read a chunked body, net/http %q", req.TransferEncoding)
				}
				continue
			case asciiEqualFold(fl.name, "Trailer"):
				continue // net/http moves it to req.Trailer
			}
			if got := r.header.Get(string(fl.name)); got != want {
				t.Fatalf("header %q = %q, net/http %q", fl.name, got, want)
			}
		}
		body, err := io.ReadAll(req.Body)
		if err != nil {
			t.Fatalf("net/http cannot read the body the loop read (%q): %v", r.bodyBytes(), err)
		}
		if !bytes.Equal(body, r.bodyBytes()) {
			t.Fatalf("body %q, net/http %q", r.bodyBytes(), body)
		}
		if used := len(b) - br.Buffered() - rd.Len(); used != r.size {
			t.Fatalf("request length %d, net/http read %d", r.size, used)
		}
		end := headEnd(b)
		if hosts, host := hostHeaders(b[:end]); hosts != 1 || !httpguts.ValidHostHeader(host) {
			t.Fatalf("httpServer would refuse the Host of %q", b)
		}
		for k, vv := range req.Header {
			if !httpguts.ValidHeaderFieldName(k) {
				t.Fatalf("httpServer would refuse header name %q", k)
			}
			for _, v := range vv {
				if !httpguts.ValidHeaderFieldValue(v) {
					t.Fatalf("httpServer would refuse header value %q", v)
				}
			}
		}
	})
}

type loopParseCase struct {
	in   string
	want int
	body string
	size int
}

func TestLoopParser(t *testing.T) {
	cases := []loopParseCase{
		{loopParserSeeds[0], loopParsed, "", len(loopParserSeeds[0])},
		{loopParserSeeds[1], loopParsed, `{"hello":"world","n":42}`, len(loopParserSeeds[1])},
		{loopParserSeeds[2], loopParsed, `{"a":1}`, strings.Index(loopParserSeeds[2], "}POST") + 1},
		{loopParserSeeds[3], loopParsed, `{"a":1}`, len(loopParserSeeds[3])},
		// The head is there, the body is not all there yet: the loop waits for it.
		{loopParserSeeds[1][:strings.Index(loopParserSeeds[1], "\r\n\r\n")+4], loopIncomplete, "", 0},
		{"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345", loopIncomplete, "", 0},
		// Half a head: httpServer has the time limit for it (the loop hands it over).
		{"POST /x HTTP/1.1\r\nHost: x\r\n", loopIncomplete, "", 0},
	}
	for _, s := range loopParserSeeds[4:] {
		cases = append(cases, loopParseCase{s, loopHandOver, "", 0})
	}
	for _, c := range cases {
		var r loopRequest
		got := parseLoopRequest([]byte(c.in), &r)
		if got == loopIncomplete && !r.headDone && c.want == loopHandOver {
			got = loopHandOver // what the loop does with half a head
		}
		if got != c.want {
			t.Errorf("%q: %d, want %d", c.in, got, c.want)
			continue
		}
		if got == loopParsed && (string(r.bodyBytes()) != c.body || r.size != c.size) {
			t.Errorf("%q: body %q size %d, want %q %d", c.in, r.bodyBytes(), r.size, c.body, c.size)
		}
		if got == loopIncomplete && strings.Contains(c.in, "\r\n\r\n") != r.headDone {
			t.Errorf("%q: headDone %v", c.in, r.headDone)
		}
	}
}
