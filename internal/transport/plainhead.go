package transport

import (
	"bufio"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// parsePlainRequest parses the common request head (what the activator's clients, its
// peers and the shim's runtimes send) as http.ReadRequest would, with one allocation for
// the head's text instead of one per line, key and value, and one for the Request with its
// URL (parsePlainTarget), body, header values and the server's context for it (besides the
// header map): an HTTP/1.1 request line with an
// origin-form target, CRLF line ends, header names that are tokens, no continuation lines,
// no Transfer-Encoding, Trailer or Pragma, at most one Content-Length of plain digits.
// head is the whole head, through its blank line, still in br. For anything else it
// answers nil and consumes nothing: http.ReadRequest then reads it (and refuses it alike).
// TestPlainRequestMatchesReadRequest and FuzzPlainRequest hold the two to the same
// Request.
//
// hosts is the number of Host header lines (0 or 1: more go to http.ReadRequest), for the
// server's Host checks.
func parsePlainRequest(br *bufio.Reader, head []byte) (req *http.Request, hosts int) {
	pr, hosts := parsePlain(br, head)
	if pr == nil {
		return nil, 0
	}
	return &pr.req, hosts
}

// parsePlain is parsePlainRequest, answering all it allocated (nil for a head it leaves
// to http.ReadRequest).
func parsePlain(br *bufio.Reader, head []byte) (pr *plainRequest, hosts int) {
	if len(head) < 4 || string(head[len(head)-4:]) != "\r\n\r\n" {
		return nil, 0
	}
	text := string(head[:len(head)-2]) // every line ends in CRLF; the blank one dropped
	line, rest, ok := cutCRLF(text)
	if !ok {
		return nil, 0
	}
	method, target, ok1 := strings.Cut(line, " ")
	target, proto, ok2 := strings.Cut(target, " ")
	if !ok1 || !ok2 || proto != "HTTP/1.1" || method == "" || method == "CONNECT" || target == "" || target[0] != '/' {
		return nil, 0
	}
	for i := 0; i < len(method); i++ {
		if !httpguts.IsTokenRune(rune(method[i])) {
			return nil, 0
		}
	}
	n := 0
	for r := rest; r != ""; n++ {
		if _, r, ok = cutCRLF(r); !ok {
			return nil, 0
		}
	}
	pr = new(plainRequest) // the Request, its URL, body and context and (most often) its header values: one allocation
	vals := pr.vals[:]
	if n > len(pr.vals) {
		vals = make([]string, n)
	}
	h := make(http.Header, n)
	length := int64(0)
	sized := false
	for i := 0; rest != ""; i++ {
		line, rest, _ = cutCRLF(rest)
		colon := strings.IndexByte(line, ':')
		if colon <= 0 {
			return nil, 0
		}
		name := line[:colon]
		for j := 0; j < len(name); j++ {
			if !httpguts.IsTokenRune(rune(name[j])) {
				return nil, 0
			}
		}
		value := textproto.TrimString(line[colon+1:])
		for j := 0; j < len(value); j++ {
			if c := value[j]; c < ' ' && c != '\t' || c == 0x7f {
				return nil, 0
			}
		}
		key := textproto.CanonicalMIMEHeaderKey(name)
		switch key {
		case "Transfer-Encoding", "Trailer", "Pragma":
			return nil, 0
		case "Content-Length":
			if sized || value == "" || len(value) > 18 {
				return nil, 0
			}
			for j := 0; j < len(value); j++ {
				if value[j] < '0' || value[j] > '9' {
					return nil, 0
				}
				length = length*10 + int64(value[j]-'0')
			}
			sized = true
		}
		vals[i] = value
		if prev, ok := h[key]; ok {
			h[key] = append(prev, value)
		} else {
			h[key] = vals[i : i+1 : i+1]
		}
	}
	if hosts = len(h["Host"]); hosts > 1 {
		return nil, 0
	}
	u := &pr.url
	if !parsePlainTarget(target, u) {
		parsed, err := url.ParseRequestURI(target)
		if err != nil {
			return nil, 0
		}
		u = parsed
	}
	_, _ = br.Discard(len(head))
	req := &pr.req
	*req = http.Request{Method: method, URL: u, Proto: proto, ProtoMajor: 1, ProtoMinor: 1, Header: h,
		Body: http.NoBody, ContentLength: length, Host: u.Host, RequestURI: target}
	if req.Host == "" {
		if v := h["Host"]; len(v) > 0 {
			req.Host = v[0]
		}
	}
	delete(h, "Host") // (as http.ReadRequest)
	req.Close = httpguts.HeaderValuesContainsToken(h["Connection"], "close")
	if length > 0 {
		pr.body = sizedBody{r: br, n: length}
		req.Body = &pr.body
	}
	return pr, hosts
}

// plainRequest holds what parsePlainRequest makes of a request, allocated together.
type plainRequest struct {
	req  http.Request
	body sizedBody
	url  url.URL
	vals [8]string // the header values of a request of up to 8 header lines
	// ctx is room for the request's context (the server's serveRequest).
	ctx requestContext
}

// parsePlainTarget sets *u to url.ParseRequestURI(target) for the common origin-form
// target (a path of characters that are never escaped, no %-escapes, and a query that is
// not empty, of visible characters) and tells whether it did; for any other it leaves u
// alone and answers false. TestPlainTargetMatchesParseRequestURI and FuzzPlainTarget hold
// the two to the same URL.
func parsePlainTarget(target string, u *url.URL) bool {
	path, query, hasQuery := strings.Cut(target, "?")
	if path == "" || path[0] != '/' || hasQuery && query == "" {
		return false
	}
	for i := 0; i < len(path); i++ {
		if !pathByte[path[i]] {
			return false
		}
	}
	for i := 0; i < len(query); i++ {
		if c := query[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	*u = url.URL{Path: path, RawQuery: query}
	return true
}

// pathByte: the characters of a path that net/url leaves as they are (unreserved, and
// the sub-delimiters it does not escape in a path).
var pathByte = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "-_.~$&+,/:;=@" {
		t[c] = true
	}
	return t
}()

// cutCRLF splits s at its first CRLF; false when a CR or LF comes alone first, or there
// is no CRLF.
func cutCRLF(s string) (line, rest string, ok bool) {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\r':
			if i+1 < len(s) && s[i+1] == '\n' {
				return s[:i], s[i+2:], true
			}
			return "", "", false
		case '\n':
			return "", "", false
		}
	}
	return "", "", false
}

// sizedBody reads the n bytes of a request body with a Content-Length, as net/http's: the
// end of the stream before them is io.ErrUnexpectedEOF, a read after Close fails.
type sizedBody struct {
	r      *bufio.Reader
	n      int64
	closed bool
}

func (b *sizedBody) Read(p []byte) (int, error) {
	if b.closed {
		return 0, http.ErrBodyReadAfterClose
	}
	if b.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := b.r.Read(p)
	b.n -= int64(n)
	if b.n <= 0 {
		return n, io.EOF
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func (b *sizedBody) Close() error {
	b.closed = true
	return nil
}
