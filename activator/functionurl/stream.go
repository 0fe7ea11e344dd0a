package functionurl

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"sync"

	"github.com/klambda/klambda/activator/invoke"
	"github.com/klambda/klambda/api/contract"
)

// The RESPONSE_STREAM mode (Lambda invokes the function with InvokeWithResponseStream and
// relays the stream to the HTTP client as it comes).
const (
	// PreludeContentType is the content type awslambda.HttpResponseStream.from (aws-lambda-ric)
	// gives a stream whose first bytes are the HTTP answer's metadata: a JSON object
	// {statusCode, headers, cookies}, then PreludeDelimiterLen NUL bytes, then the body.
	PreludeContentType = "application/vnd.awslambda.http-integration-response"
	// PreludeDelimiterLen is the number of NUL bytes that end the prelude.
	PreludeDelimiterLen = 8
	// MaxPrelude bounds the prelude (metadata and delimiter) klambda reads before the body;
	// a longer one answers 502. klambda's bound: Lambda documents none.
	MaxPrelude = 64 << 10
	// defaultStreamContentType is the body's type when neither the function nor its
	// prelude names one (aws-lambda-ric's default for a response stream).
	defaultStreamContentType = "application/octet-stream"
)

var (
	preludeDelimiter = make([]byte, PreludeDelimiterLen)
	streamBufPool    = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}
)

// WriteStream is the RESPONSE_STREAM mode: the function's bytes reach the client as the
// function writes them (each read from the environment is written and flushed).
//   - A stream with PreludeContentType: its prelude gives the status, headers and cookies
//     (statusCode absent: 200; no content-type: application/octet-stream); the rest is the
//     body. A prelude that is not a JSON object of those fields, or longer than MaxPrelude,
//     answers 502.
//   - Any other stream: 200 with the function's content type and its bytes as the body.
//     A function that does not stream (a whole response) is relayed the same way, its
//     payload as written: Lambda streams every response of a RESPONSE_STREAM URL.
//   - The head is sent with the first byte of the body (or at the stream's end): a
//     function error (or a stream cut off) before it answers
//     502 Internal Server Error, as BUFFERED. After it, the answer is aborted (HTTP/1.1:
//     the connection closes without the last chunk; HTTP/2: the stream is reset), so the
//     client sees an incomplete response rather than a complete one.
func WriteStream(w http.ResponseWriter, r *http.Request, t *Target, out *invoke.Output) {
	defer out.Close()
	if out.Body == nil || (!out.Streamed && out.FunctionError != "") {
		writeResponse(w, r, t, out, InternalServerError())
		return
	}
	bp := streamBufPool.Get().(*[]byte)
	defer streamBufPool.Put(bp)
	head, pending, err := streamHead(out, *bp)
	failed := func(err error) bool {
		return (err != nil && !errors.Is(err, io.EOF)) || out.FunctionError != "" || (out.Streamed && !out.Complete)
	}
	if head == nil || (err != nil && len(pending) == 0 && failed(err)) {
		writeResponse(w, r, t, out, InternalServerError())
		return
	}
	setHeader(w.Header(), r, t, out, head)
	w.WriteHeader(head.StatusCode)
	if r.Method == http.MethodHead {
		return
	}
	rc := http.NewResponseController(w)
	if len(pending) > 0 {
		if _, werr := w.Write(pending); werr != nil {
			return // the client went away; Close reads the rest
		}
	}
	_ = rc.Flush()
	buf := *bp
	for err == nil {
		var n int
		n, err = out.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			_ = rc.Flush()
		}
	}
	if failed(err) {
		// The function failed after the answer began: abort it, so the client cannot
		// take a cut-off body for a whole one.
		panic(http.ErrAbortHandler)
	}
}

// streamHead reads the start of out's body: the prelude when there is one, else the
// first piece of the body. It answers the head (nil: an unreadable prelude), the body
// bytes read with it (in buf or a buffer of its own), and the read error that ended the
// reading (io.EOF: the body ended), nil when more may come.
func streamHead(out *invoke.Output, buf []byte) (*Response, []byte, error) {
	ct := out.ContentType
	mt, _, _ := mime.ParseMediaType(ct)
	if mt != PreludeContentType {
		if ct == "" {
			ct = defaultStreamContentType
			if !out.Streamed {
				ct = "application/json" // a whole response: the function's JSON
			}
		}
		head := &Response{StatusCode: http.StatusOK, Header: http.Header{"Content-Type": {ct}}}
		n, err := readSome(out.Body, buf)
		return head, buf[:n], err
	}
	var pre bytes.Buffer
	for {
		n, err := readSome(out.Body, buf)
		pre.Write(buf[:n])
		if i := bytes.Index(pre.Bytes(), preludeDelimiter); i >= 0 {
			if i+PreludeDelimiterLen > MaxPrelude {
				return nil, nil, err
			}
			head := parsePrelude(pre.Bytes()[:i])
			body := pre.Bytes()[i+PreludeDelimiterLen:]
			if len(body) == 0 && err == nil { // the answer begins with its first body byte
				n, err := readSome(out.Body, buf)
				return head, buf[:n], err
			}
			return head, body, err
		}
		if pre.Len() > MaxPrelude {
			return nil, nil, err
		}
		if err != nil {
			if pre.Len() == 0 && errors.Is(err, io.EOF) {
				// HttpResponseStream.from writes its prelude before the first write: a
				// stream ended without one has neither metadata nor body.
				return &Response{StatusCode: http.StatusOK, Header: http.Header{"Content-Type": {defaultStreamContentType}}}, nil, err
			}
			return nil, nil, err
		}
	}
}

// parsePrelude reads HttpResponseStream's metadata: a JSON object with statusCode
// (default 200), headers and cookies, as a response object's; nil when unreadable.
func parsePrelude(b []byte) *Response {
	var obj map[string]json.RawMessage
	if json.Unmarshal(b, &obj) != nil || obj == nil {
		return nil
	}
	delete(obj, "body") // the body is the stream's
	delete(obj, "isBase64Encoded")
	sc, ok := obj["statusCode"]
	if !ok || isNull(sc) {
		sc = json.RawMessage("200")
	}
	resp, ok := responseObject(obj, sc, defaultStreamContentType)
	if !ok {
		return nil
	}
	return resp
}

// readSome reads until it has some bytes or an error.
func readSome(r io.Reader, buf []byte) (int, error) {
	for {
		n, err := r.Read(buf)
		if n > 0 || err != nil {
			return n, err
		}
	}
}

// setHeader puts resp's headers, the request id and the URL's CORS headers on h.
func setHeader(h http.Header, r *http.Request, t *Target, out *invoke.Output, resp *Response) {
	for k, v := range resp.Header {
		h[k] = v
	}
	if out.RequestID != "" {
		h.Set(contract.HeaderRequestID, out.RequestID)
	}
	if t.CORS != nil {
		t.CORS.Apply(h, r)
	}
}
