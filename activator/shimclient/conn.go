package shimclient

import (
	"bufio"
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/klambda/klambda/activator/internal/keepalive"
	"github.com/klambda/klambda/api/contract"
)

// An environment runs one invocation at a time, so an invocation needs none of what
// net/http's Transport does for concurrent requests on shared connections: Do writes the
// request and reads the answer on the caller's goroutine, over keep-alive connections
// kept per environment address (activator/internal/keepalive).

// do sends c over a pooled connection and reads the answer's head; the body returns the
// connection to the pool once read to its end (closing it earlier closes the connection).
func do(ctx context.Context, p *keepalive.Pool, c *Call) (*http.Response, error) {
	if err := validHeaders(c); err != nil {
		return nil, err
	}
	return p.Do(ctx, &keepalive.Request{Addr: c.Addr, Head: c, Body: c.Body, ContentLength: c.ContentLength, Until: c.Until})
}

// validHeaders refuses a header value with a control character (it would split the
// request).
func validHeaders(c *Call) error {
	if c.Body != nil && c.ContentLength < 0 {
		return errors.New("shimclient: a body needs its ContentLength")
	}
	for _, v := range [...]string{c.Addr, c.Secret, c.RequestID, c.InvokedARN, c.ClientContext, c.TraceID} {
		if !keepalive.ValidHeaderValue(v) {
			return errors.New("shimclient: a header value holds a control character")
		}
	}
	return nil
}

// WriteHead writes c's request line and headers into w (no allocation).
func (c *Call) WriteHead(w *bufio.Writer) {
	_, _ = w.WriteString("POST " + contract.InvokePath + " HTTP/1.1\r\nHost: ")
	_, _ = w.WriteString(c.Addr)
	_, _ = w.WriteString("\r\nContent-Type: application/json\r\nContent-Length: ")
	// (Appended to the writer's free space: a number on the stack would escape.)
	_, _ = w.Write(strconv.AppendInt(w.AvailableBuffer(), max(c.ContentLength, 0), 10))
	_, _ = w.WriteString("\r\n")
	keepalive.WriteHeader(w, contract.HeaderInvokeSecret, c.Secret)
	keepalive.WriteHeader(w, contract.HeaderRequestID, c.RequestID)
	keepalive.WriteHeader(w, contract.HeaderInvokedARN, c.InvokedARN)
	if !c.Deadline.IsZero() {
		_, _ = w.WriteString(contract.HeaderDeadlineMs + ": ")
		_, _ = w.Write(strconv.AppendInt(w.AvailableBuffer(), c.Deadline.UnixMilli(), 10))
		_, _ = w.WriteString("\r\n")
	}
	keepalive.WriteHeader(w, contract.HeaderClientContext, c.ClientContext)
	keepalive.WriteHeader(w, contract.HeaderTraceID, c.TraceID)
	if c.LogTail {
		keepalive.WriteHeader(w, contract.HeaderLogType, contract.LogTypeTail)
	}
	if c.ResponseStream {
		keepalive.WriteHeader(w, contract.HeaderResponseStream, "1")
	}
	_, _ = w.WriteString("\r\n")
}
