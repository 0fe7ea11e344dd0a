package shim

import (
	"bytes"

	"golang.org/x/net/http/httpguts"
)

// The event loop's request parser (see eventLoop). It reads only a strict subset of
// HTTP/1.1, on which it agrees with net/http's http.ReadRequest and httpServer's checks
// (FuzzLoopParser holds it to that): a GET or POST request line ending in CRLF with an
// origin-form target of plain characters and HTTP/1.1, header lines without folding,
// exactly one valid Host, at most one Content-Length of digits, and no Transfer-Encoding,
// Expect or Connection other than keep-alive, and a chunked body (Transfer-Encoding:
// chunked alone) only with chunk sizes of plain hex digits, no extensions and no
// trailers. Anything else, valid or not, is left to
// httpServer, which then serves the connection (loopHandOver).

const (
	loopIncomplete = iota // the head, or the body, has not all arrived
	loopParsed            // a request the loop can serve
	loopHandOver          // not in the subset: httpServer serves it
)

// loopMaxFields bounds the header lines of a request the loop serves.
const loopMaxFields = 64

// loopRequest is a parsed request; its slices point into the connection's buffer, valid
// until the request is consumed.
type loopRequest struct {
	post     bool
	path     []byte
	rawQuery []byte
	header   loopHeaders
	// body is a Content-Length body; chunks are a chunked one's pieces.
	body    []byte
	chunked bool
	chunks  [][]byte
	// size is the length of the whole request (head and body) in the buffer, once known.
	size int
	// headDone: the head is complete (an incomplete request waits for its body only);
	// headLen is then its length.
	headDone bool
	headLen  int
	// bodyLen is the body's length: the declared Content-Length, or the chunks so far.
	bodyLen int
}

// bodyBytes is the whole body (a copy when it came in more than one chunk).
func (r *loopRequest) bodyBytes() []byte {
	switch {
	case !r.chunked:
		return r.body
	case len(r.chunks) == 1:
		return r.chunks[0]
	}
	b := make([]byte, 0, r.bodyLen)
	for _, c := range r.chunks {
		b = append(b, c...)
	}
	return b
}

// writeBody appends the body to buf.
func (r *loopRequest) writeBody(buf *bytes.Buffer) {
	buf.Grow(r.bodyLen)
	if !r.chunked {
		buf.Write(r.body)
		return
	}
	for _, c := range r.chunks {
		buf.Write(c)
	}
}

type loopField struct{ name, value []byte }

// loopHeaders are a request's header fields in their order; Get is http.Header.Get.
type loopHeaders struct{ fields []loopField }

func (h *loopHeaders) Get(name string) string {
	for _, f := range h.fields {
		if asciiEqualFold(f.name, name) {
			return string(f.value)
		}
	}
	return ""
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		x, y := b[i], s[i]
		if x == y {
			continue
		}
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

var crlfcrlf = []byte("\r\n\r\n")

// parseLoopRequest parses the request at the start of b into r (reusing its field
// slice): loopIncomplete, loopParsed or loopHandOver. A head that is complete but whose
// body is not yet is loopIncomplete with r.size set to the length to wait for.
func parseLoopRequest(b []byte, r *loopRequest) int {
	end := bytes.Index(b, crlfcrlf)
	if end < 0 {
		r.size = 0
		return loopIncomplete
	}
	head := b[:end+2] // every line with its CRLF
	fields, chunks := r.header.fields[:0], r.chunks[:0]
	*r = loopRequest{chunks: chunks}
	defer func() { r.header.fields = fields }()

	// The request line.
	line, rest, ok := cutLine(head)
	if !ok {
		return loopHandOver
	}
	switch {
	case bytes.HasPrefix(line, []byte("GET ")):
		line = line[4:]
	case bytes.HasPrefix(line, []byte("POST ")):
		line, r.post = line[5:], true
	default:
		return loopHandOver
	}
	target, proto, ok := bytes.Cut(line, []byte(" "))
	if !ok || string(proto) != "HTTP/1.1" || len(target) == 0 || target[0] != '/' {
		return loopHandOver
	}
	path, query, hasQuery := bytes.Cut(target, []byte("?"))
	for _, c := range path {
		if !plainPathByte(c) {
			return loopHandOver
		}
	}
	if hasQuery {
		for _, c := range query {
			if !plainPathByte(c) && c != '%' && c != '?' {
				return loopHandOver
			}
		}
	}
	r.path, r.rawQuery = path, query

	hosts, lengths, encodings := 0, 0, 0
	cl := 0
	for len(rest) > 0 {
		line, rest, ok = cutLine(rest)
		if !ok || len(line) == 0 || len(fields) == loopMaxFields {
			return loopHandOver
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return loopHandOver // also a folded line (leading blank): no token before ':'
		}
		name := line[:colon]
		for _, c := range name {
			if !httpguts.IsTokenRune(rune(c)) {
				return loopHandOver
			}
		}
		value := bytes.Trim(line[colon+1:], " \t")
		for _, c := range value {
			if c < ' ' && c != '\t' || c == 0x7f {
				return loopHandOver
			}
		}
		switch {
		case asciiEqualFold(name, "Host"):
			hosts++
			if !httpguts.ValidHostHeader(string(value)) {
				return loopHandOver
			}
		case asciiEqualFold(name, "Content-Length"):
			lengths++
			if len(value) == 0 || len(value) > 9 {
				return loopHandOver
			}
			for _, c := range value {
				if c < '0' || c > '9' {
					return loopHandOver
				}
				cl = cl*10 + int(c-'0')
			}
		case asciiEqualFold(name, "Transfer-Encoding"):
			encodings++
			if !asciiEqualFold(value, "chunked") {
				return loopHandOver
			}
		case asciiEqualFold(name, "Expect"):
			return loopHandOver
		case asciiEqualFold(name, "Trailer"):
			// Declared trailers (aws-lambda-go declares two on every answer; the loop
			// serves only bodies that end without them): net/http refuses these keys.
			for _, k := range bytes.Split(value, []byte(",")) {
				k = bytes.Trim(k, " \t")
				if asciiEqualFold(k, "Transfer-Encoding") || asciiEqualFold(k, "Trailer") || asciiEqualFold(k, "Content-Length") {
					return loopHandOver
				}
			}
		case asciiEqualFold(name, "Connection"):
			if !asciiEqualFold(value, "keep-alive") {
				return loopHandOver
			}
		}
		fields = append(fields, loopField{name, value})
	}
	if hosts != 1 || lengths > 1 || !r.post && (cl > 0 || encodings > 0) || encodings > 1 || encodings == 1 && lengths > 0 {
		return loopHandOver
	}
	r.headDone, r.headLen = true, end+4
	if encodings == 1 {
		r.chunked = true
		return parseChunks(b, end+4, r)
	}
	r.bodyLen = cl
	r.size = end + 4 + cl
	if len(b) < r.size {
		return loopIncomplete
	}
	r.body = b[end+4 : r.size]
	return loopParsed
}

// parseChunks parses a chunked body starting at b[off:] into r.chunks, r.bodyLen and
// r.size.
func parseChunks(b []byte, off int, r *loopRequest) int {
	for {
		i := bytes.IndexByte(b[off:], '\n')
		if i < 0 {
			if len(b)-off > 9 {
				return loopHandOver // longer than a chunk size the loop reads
			}
			return loopIncomplete
		}
		line := b[off : off+i]
		if len(line) < 2 || len(line) > 8 || line[len(line)-1] != '\r' {
			return loopHandOver
		}
		size := 0
		for _, c := range line[:len(line)-1] {
			switch {
			case '0' <= c && c <= '9':
				size = size<<4 | int(c-'0')
			case 'a' <= c && c <= 'f':
				size = size<<4 | int(c-'a'+10)
			case 'A' <= c && c <= 'F':
				size = size<<4 | int(c-'A'+10)
			default:
				return loopHandOver
			}
		}
		off += i + 1
		if size == 0 {
			if len(b) < off+2 {
				return loopIncomplete
			}
			if b[off] != '\r' || b[off+1] != '\n' {
				return loopHandOver // trailers
			}
			r.size = off + 2
			return loopParsed
		}
		r.bodyLen += size
		if len(b) < off+size+2 {
			return loopIncomplete
		}
		if b[off+size] != '\r' || b[off+size+1] != '\n' {
			return loopHandOver
		}
		r.chunks = append(r.chunks, b[off:off+size])
		off += size + 2
	}
}

// cutLine cuts the line before the first CRLF; false when a CR or LF stands alone.
func cutLine(b []byte) (line, rest []byte, ok bool) {
	i := bytes.IndexByte(b, '\n')
	if i < 1 || b[i-1] != '\r' {
		return nil, nil, false
	}
	line = b[:i-1]
	if bytes.IndexByte(line, '\r') >= 0 {
		return nil, nil, false
	}
	return line, b[i+1:], true
}

// plainPathByte: a character a request path may hold as it is (RFC 3986 unreserved,
// sub-delims, ':', '@', '/'); a path with anything else, '%' included, goes to httpServer.
func plainPathByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '-', '.', '_', '~', '/', ':', '@', '!', '$', '&', '\'', '(', ')', '*', '+', ',', ';', '=':
		return true
	}
	return false
}
