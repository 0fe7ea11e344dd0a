package transport

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

// httpResponse is the http.ResponseWriter of Server. A connection reuses one for each
// of its requests. The answer's head is built once the handler writes (or returns) and
// goes out with the body in one system call: a body the handler writes at once is not
// copied, a short one is buffered.
type httpResponse struct {
	conn    *httpConn
	req     *http.Request
	reqBody *requestBody
	ecr     *expectContinueReader

	header      http.Header
	status      int
	wroteHeader bool // WriteHeader called (explicitly or by Write)
	headSent    bool // the head is on the wire
	handlerDone bool
	// contentLength is the declared Content-Length, -1 if none.
	contentLength int64
	written       int64 // body bytes accepted from the handler
	chunked       bool
	noBody        bool // 1xx, 204, 304: no body may be written
	isHEAD        bool // the body is counted (for Content-Length) but not sent
	closeAfter    bool // Connection: close (the connection ends after this answer)
	broken        bool // a write failed
	// canWriteContinue: the client expects 100 Continue and nothing was answered yet.
	canWriteContinue bool
	// declared: the trailer names the handler declared in a Trailer header before the
	// head went out (their values are sent after a chunked body, as net/http).
	declared []string

	head []byte // the head being built (reused)
	body []byte // body buffered before the head went out (reused)
	iov  [3][]byte
}

func (w *httpResponse) reset(req *http.Request) {
	if w.header == nil {
		w.header = make(http.Header, 8)
	} else {
		clear(w.header)
	}
	w.req, w.reqBody, w.ecr = req, nil, nil
	w.status, w.wroteHeader, w.headSent, w.handlerDone = 0, false, false, false
	w.contentLength, w.written, w.chunked, w.noBody = -1, 0, false, false
	w.isHEAD = req.Method == http.MethodHead
	w.closeAfter, w.broken = false, false
	w.declared = w.declared[:0]
	w.canWriteContinue = req.ProtoAtLeast(1, 1) && req.ContentLength != 0 && headerGet(req.Header, "Expect") != ""
	w.head, w.body = w.head[:0], w.body[:0]
	if cap(w.body) > 64<<10 {
		w.body = nil
	}
}

func (w *httpResponse) Header() http.Header { return w.header }

func (w *httpResponse) WriteHeader(code int) {
	if w.wroteHeader {
		return
	}
	if code < 100 || code > 999 {
		panic("invalid WriteHeader code " + strconv.Itoa(code))
	}
	w.canWriteContinue = false
	if code < 200 {
		// An informational answer goes out at once, with the headers set so far.
		if code != http.StatusSwitchingProtocols && !w.headSent && w.req.ProtoAtLeast(1, 1) {
			b := append(w.head[:0], "HTTP/1.1 "...)
			b = strconv.AppendInt(b, int64(code), 10)
			b = append(b, ' ')
			b = append(b, http.StatusText(code)...)
			b = append(b, "\r\n"...)
			for k, vv := range w.header {
				if k == "Content-Length" || k == "Transfer-Encoding" || !httpguts.ValidHeaderFieldName(k) {
					continue
				}
				for _, v := range vv {
					b = append(append(append(append(b, k...), ": "...), appendHeaderValue(nil, v)...), "\r\n"...)
				}
			}
			w.head = append(b, "\r\n"...)
			_ = w.sendData(nil)
		}
		return
	}
	w.wroteHeader = true
	w.status = code
	if cl := headerGet(w.header, "Content-Length"); cl != "" {
		if v, err := strconv.ParseInt(cl, 10, 64); err == nil && v >= 0 {
			w.contentLength = v
		} else {
			w.header.Del("Content-Length")
		}
	}
	w.noBody = !BodyAllowedForStatus(code)
}

func BodyAllowedForStatus(status int) bool {
	return !(status >= 100 && status <= 199 || status == http.StatusNoContent || status == http.StatusNotModified)
}

func (w *httpResponse) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if w.noBody {
		return 0, http.ErrBodyNotAllowed
	}
	if w.contentLength >= 0 && w.written+int64(len(p)) > w.contentLength {
		return 0, http.ErrContentLength
	}
	if w.broken {
		return 0, net.ErrClosed
	}
	w.written += int64(len(p))
	if w.headSent {
		return len(p), w.sendData(p)
	}
	if len(w.body)+len(p) <= httpBufferBeforeChunking {
		w.body = append(w.body, p...)
		return len(p), nil
	}
	// Too long to hold: the head goes out now, with what was held and p.
	if len(w.body) > 0 {
		w.body = append(w.body, p...)
		p = w.body
	}
	w.sendHead(p)
	err := w.sendData(p)
	w.body = w.body[:0]
	return len(p), err
}

// sendData sends w.head (the answer's head, or nothing) and body bytes p, framed as a
// chunk when the answer is chunked, in one system call; w.head is emptied.
func (w *httpResponse) sendData(p []byte) error {
	if w.broken {
		w.head = w.head[:0]
		return net.ErrClosed
	}
	if w.isHEAD {
		p = nil
	}
	var tail []byte
	if w.chunked && len(p) > 0 { // a chunk of size 0 would end the body
		w.head = strconv.AppendInt(w.head, int64(len(p)), 16)
		w.head = append(w.head, "\r\n"...)
		tail = crlf
	}
	var err error
	if len(p) <= httpBufferBeforeChunking {
		w.head = append(w.head, p...)
		w.head = append(w.head, tail...)
		if len(w.head) > 0 {
			_, err = w.conn.nc.Write(w.head)
		}
	} else {
		w.iov = [3][]byte{w.head, p, tail}
		err = writeBuffers(w.conn.nc, w.iov[:])
		w.iov = [3][]byte{}
	}
	w.head = w.head[:0]
	if err != nil {
		w.broken = true
	}
	return err
}

var crlf = []byte("\r\n")

// Flush sends what the handler wrote so far (the head at least).
func (w *httpResponse) Flush() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.headSent {
		w.sendHead(w.body)
		_ = w.sendData(w.body)
		w.body = w.body[:0]
	}
}

// sendHead builds the head into w.head, after the body-reading decisions net/http makes
// before it answers; the caller sends it, then first, the body's first bytes.
func (w *httpResponse) sendHead(first []byte) {
	w.headSent = true
	hasCL, te := w.decideKeepAlive(first)
	// A body left unread: unless the connection closes after this answer (as net/http,
	// which decides that first), read and drop up to 256 KB of it before answering (a
	// client that sends its whole request before reading could deadlock otherwise), or
	// close.
	w.settleBody()
	w.frameBody(first, hasCL, te)
	w.head = w.appendHead(w.head[:0])
}

// decideKeepAlive sets the Content-Length of a short answer the handler has finished,
// and whether the connection closes after this answer; it returns whether the answer
// has a Content-Length and its Transfer-Encoding.
func (w *httpResponse) decideKeepAlive(first []byte) (hasCL bool, te string) {
	req, h := w.req, w.header
	_, hasCL = h["Content-Length"]
	te = headerGet(h, "Transfer-Encoding")
	// An answer with trailers is not given a Content-Length: it goes chunked, so they can
	// follow (net/http's rule).
	trailers := w.declareTrailers()
	if w.handlerDone && !trailers && te == "" && BodyAllowedForStatus(w.status) && !hasCL && (req.Method != http.MethodHead || len(first) > 0) {
		w.contentLength = int64(len(first))
		h["Content-Length"] = []string{strconv.Itoa(len(first))}
		hasCL = true
	}
	conn := headerGet(req.Header, "Connection")
	keepAlive10 := req.ProtoMajor == 1 && req.ProtoMinor == 0 && hasToken(conn, "keep-alive")
	wantsClose := req.Close || hasToken(conn, "close")
	if keepAlive10 && (req.Method == http.MethodHead || hasCL || !BodyAllowedForStatus(w.status)) {
		if _, ok := h["Connection"]; !ok {
			h["Connection"] = []string{"keep-alive"}
		}
	} else if !req.ProtoAtLeast(1, 1) || wantsClose {
		w.closeAfter = true
	}
	if headerGet(h, "Connection") == "close" || w.conn.srv.shutdown.Load() || req.Method == "PRI" && req.ProtoMajor == 2 {
		w.closeAfter = true
	}
	return hasCL, te
}

// frameBody settles the headers that frame the body (Content-Type sniffing, Date,
// Content-Length or chunked encoding, Connection: close), as net/http does.
func (w *httpResponse) frameBody(first []byte, hasCL bool, te string) {
	req, h := w.req, w.header
	if BodyAllowedForStatus(w.status) {
		if _, ok := h["Content-Type"]; !ok && te == "" && headerGet(h, "Content-Encoding") == "" && len(first) > 0 {
			h["Content-Type"] = []string{http.DetectContentType(first)}
		}
	} else {
		delete(h, "Content-Length")
		delete(h, "Transfer-Encoding")
		if w.status == http.StatusNotModified {
			delete(h, "Content-Type")
		}
		hasCL, te = false, ""
	}
	if _, ok := h["Date"]; !ok {
		h["Date"] = httpDate()
	}
	if hasCL && te != "" && te != "identity" {
		delete(h, "Content-Length")
		hasCL = false
	}
	switch {
	case w.noBody || w.isHEAD:
		delete(h, "Transfer-Encoding")
	case hasCL:
		delete(h, "Transfer-Encoding")
	case req.ProtoAtLeast(1, 1) && te != "identity":
		w.chunked = true
		h["Transfer-Encoding"] = []string{"chunked"}
	default:
		// Unsized and not chunked: the end of the body is the end of the connection.
		w.closeAfter = true
		delete(h, "Transfer-Encoding")
	}
	if w.closeAfter && !hasToken(headerGet(h, "Connection"), "close") {
		if req.ProtoAtLeast(1, 1) {
			h["Connection"] = []string{"close"}
		} else {
			delete(h, "Connection")
		}
	}
}

// appendHead appends the status line and the header fields to b.
func (w *httpResponse) appendHead(b []byte) []byte {
	if w.req.ProtoAtLeast(1, 1) {
		b = append(b, "HTTP/1.1 "...)
	} else {
		b = append(b, "HTTP/1.0 "...)
	}
	b = strconv.AppendInt(b, int64(w.status), 10)
	b = append(b, ' ')
	if text := http.StatusText(w.status); text != "" {
		b = append(b, text...)
	} else {
		b = append(b, "status code "...)
		b = strconv.AppendInt(b, int64(w.status), 10)
	}
	b = append(b, "\r\n"...)
	for k, vv := range w.header {
		if !httpguts.ValidHeaderFieldName(k) {
			continue // as net/http: an invalid name is dropped
		}
		for _, v := range vv {
			b = append(b, k...)
			b = append(b, ": "...)
			b = appendHeaderValue(b, v)
			b = append(b, "\r\n"...)
		}
	}
	return append(b, "\r\n"...)
}

// appendHeaderValue appends v with CR and LF turned into spaces and surrounding blanks
// trimmed (net/http's sanitising of answer header values).
func appendHeaderValue(b []byte, v string) []byte {
	v = strings.Trim(v, " \t")
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == '\r' || c == '\n' {
			c = ' '
		}
		b = append(b, c)
	}
	return b
}

// declareTrailers records the trailer names declared in the Trailer header (net/http's
// declareTrailer: not Content-Length, Transfer-Encoding or Trailer) and tells whether the
// answer has trailers (declared, or set under http.TrailerPrefix).
func (w *httpResponse) declareTrailers() bool {
	trailers := false
	for k := range w.header {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			trailers = true
			break
		}
	}
	for _, v := range w.header["Trailer"] {
		trailers = true
		for _, name := range strings.Split(v, ",") {
			name = http.CanonicalHeaderKey(textproto.TrimString(name))
			switch name {
			case "", "Content-Length", "Transfer-Encoding", "Trailer":
				continue
			}
			w.declared = append(w.declared, name)
		}
	}
	return trailers
}

// appendTrailers appends the trailers of a chunked answer: the header fields the handler
// set under http.TrailerPrefix (net/http's convention; such names are never sent in the
// head, as they are not valid field names), then those it declared.
func (w *httpResponse) appendTrailers(b []byte) []byte {
	field := func(name string, vv []string) {
		for _, v := range vv {
			b = append(b, name...)
			b = append(b, ": "...)
			b = appendHeaderValue(b, v)
			b = append(b, "\r\n"...)
		}
	}
	for k, vv := range w.header {
		name, ok := strings.CutPrefix(k, http.TrailerPrefix)
		if !ok || !httpguts.ValidHeaderFieldName(name) {
			continue
		}
		field(name, vv)
	}
	for _, name := range w.declared {
		if httpguts.ValidHeaderFieldName(name) {
			field(name, w.header[name])
		}
	}
	return b
}

// finish completes the answer after the handler returned.
func (w *httpResponse) finish() {
	w.Flush() // the head, and the body so far, if not sent yet
	if w.chunked {
		w.head = append(w.appendTrailers(append(w.head[:0], "0\r\n"...)), "\r\n"...)
		_ = w.sendData(nil)
	}
	if w.contentLength >= 0 && w.written < w.contentLength && !w.noBody && !w.isHEAD {
		w.closeAfter = true // the client would wait for the rest
	}
	if w.req.MultipartForm != nil {
		_ = w.req.MultipartForm.RemoveAll()
	}
	w.settleBody()
	_ = w.reqBody.Close()
}

// settleBody reads and drops what the handler left of the request body, up to 256 KB,
// so that the next request can be read; when that cannot be done the connection closes
// after this answer (net/http's rules).
func (w *httpResponse) settleBody() {
	b := w.reqBody
	switch {
	case w.closeAfter || b.sawEOF || w.req.ContentLength == 0:
	case b.failed:
		w.closeAfter = true
	case w.ecr != nil:
		w.closeAfter = true // the client may still be waiting for 100 Continue
	case b.closed:
		w.closeAfter = true // closed by the handler before its end
	case w.req.ContentLength > 0 && w.req.ContentLength-b.n >= httpMaxDiscard:
		w.closeAfter = true // too much is left
	default:
		n, err := io.CopyN(io.Discard, b, httpMaxDiscard+1)
		if n > httpMaxDiscard || err != nil && !errors.Is(err, io.EOF) {
			w.closeAfter = true
		}
	}
}

// hasToken reports whether token is in v, in any case, between spaces, commas or tabs
// (net/http's reading of Connection).
func hasToken(v, token string) bool {
	for i := 0; i+len(token) <= len(v); i++ {
		if (i == 0 || isTokenBoundary(v[i-1])) && (i+len(token) == len(v) || isTokenBoundary(v[i+len(token)])) && strings.EqualFold(v[i:i+len(token)], token) {
			return true
		}
	}
	return false
}

func isTokenBoundary(b byte) bool { return b == ' ' || b == ',' || b == '\t' }

// headerGet is h.Get(key) for a key in canonical form (every one here is), without
// canonicalizing it again.
func headerGet(h http.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// httpDate is the Date header value, formatted once per second (read without a lock: the
// connections' goroutines all ask for it).
func httpDate() []string {
	now := time.Now().Unix()
	if d := dateCache.Load(); d != nil && d.unix == now {
		return d.v
	}
	d := &formattedDate{unix: now, v: []string{time.Unix(now, 0).UTC().Format(http.TimeFormat)}}
	dateCache.Store(d)
	return d.v
}

type formattedDate struct {
	unix int64
	v    []string
}

var dateCache atomic.Pointer[formattedDate]
