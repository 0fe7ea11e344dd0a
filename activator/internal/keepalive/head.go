package keepalive

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// readResponse reads an answer's head from br: the common plain answer (HTTP/1.1, a
// status that has a body, a Content-Length, no Transfer-Encoding, Trailer or Connection
// header, all of the head already buffered) by a parse that allocates the head once,
// anything else by http.ReadResponse. Both give the same Response (TestFastHeadMatches).
func readResponse(br *bufio.Reader) (*http.Response, error) {
	resp, _, err := readAnswer(br)
	return resp, err
}

// readAnswer is readResponse that also answers, for a plain answer, room for the pooled
// body that wraps its own (Pool.Do) in the same allocation; nil for any other.
func readAnswer(br *bufio.Reader) (*http.Response, *body, error) {
	// Wait for the answer's first bytes (an error is met again, and answered, by
	// http.ReadResponse).
	if _, err := br.Peek(1); err == nil {
		if p := parsePlainHead(br); p != nil {
			return &p.resp, &p.pooled, nil
		}
	}
	resp, err := http.ReadResponse(br, nil)
	return resp, nil, err
}

// plainResponse holds what parsePlainHead makes of an answer, allocated together.
type plainResponse struct {
	resp   http.Response
	body   plainBody
	pooled body      // Pool.Do's wrapper of body
	vals   [8]string // the header values of an answer of up to 8 header lines
}

// parsePlainHead parses and consumes the head when it is plain (see readResponse), else
// answers nil and consumes nothing.
func parsePlainHead(br *bufio.Reader) *plainResponse {
	buf, _ := br.Peek(br.Buffered())
	end := bytes.Index(buf, []byte("\r\n\r\n"))
	if end < 0 {
		return nil
	}
	head := string(buf[:end+2]) // one allocation: every string below is a part of it
	line, rest, ok := cutLine(head)
	// "HTTP/1.1 ddd reason": a reason of visible characters and spaces (what net/http
	// writes); anything else goes to http.ReadResponse.
	if !ok || len(line) < 12 || line[:9] != "HTTP/1.1 " || len(line) > 12 && line[12] != ' ' {
		return nil
	}
	code, err := strconv.Atoi(line[9:12])
	if err != nil || code < 200 || code > 599 || code == http.StatusNoContent || code == http.StatusNotModified {
		return nil
	}
	for i := 12; i < len(line); i++ {
		if c := line[i]; c < ' ' || c == 0x7f {
			return nil
		}
	}
	n := 0
	for r := rest; r != ""; n++ {
		_, r, _ = cutLine(r)
	}
	p := new(plainResponse)
	vals := p.vals[:]
	if n > len(p.vals) {
		vals = make([]string, n)
	}
	h := make(http.Header, n)
	length := int64(-1)
	for i := 0; rest != ""; i++ {
		line, rest, _ = cutLine(rest)
		colon := strings.IndexByte(line, ':')
		if colon <= 0 {
			return nil
		}
		name := line[:colon]
		for j := 0; j < len(name); j++ {
			if !httpguts.IsTokenRune(rune(name[j])) {
				return nil
			}
		}
		value := textproto.TrimString(line[colon+1:])
		if !httpguts.ValidHeaderFieldValue(value) {
			return nil
		}
		key := textproto.CanonicalMIMEHeaderKey(name)
		switch key {
		case "Transfer-Encoding", "Trailer", "Connection":
			return nil
		case "Content-Length":
			if length >= 0 {
				return nil
			}
			u, err := strconv.ParseUint(value, 10, 63)
			if err != nil {
				return nil
			}
			length = int64(u)
		}
		vals[i] = value
		if prev, ok := h[key]; ok {
			h[key] = append(prev, value)
		} else {
			h[key] = vals[i : i+1 : i+1]
		}
	}
	if length < 0 {
		return nil
	}
	_, _ = br.Discard(end + 4)
	p.resp = http.Response{Status: line0(head)[9:], StatusCode: code, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, ContentLength: length, Body: http.NoBody}
	if length > 0 {
		p.body = plainBody{r: br, n: length}
		p.resp.Body = &p.body
	}
	return p
}

func line0(head string) string {
	l, _, _ := cutLine(head)
	return l
}

// cutLine splits s at its first CRLF (a head's lines end so; a bare LF does not count).
func cutLine(s string) (line, rest string, ok bool) {
	for i := 0; i+1 < len(s); i++ {
		if s[i] == '\r' && s[i+1] == '\n' {
			return s[:i], s[i+2:], true
		}
		if s[i] == '\n' || s[i] == '\r' {
			return "", "", false
		}
	}
	return s, "", false
}

// plainBody reads the n bytes of a body with a Content-Length; an answer that ends
// before is io.ErrUnexpectedEOF (as net/http's).
type plainBody struct {
	r *bufio.Reader
	n int64
}

func (b *plainBody) Read(p []byte) (int, error) {
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

func (b *plainBody) Close() error { return nil }
