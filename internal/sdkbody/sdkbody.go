// Package sdkbody is an http.RoundTripper for aws-sdk-go-v2 clients that hands net/http a
// copy of the request body of its own.
//
// aws-sdk-go-v2 closes its request body stream once the answer's head has come. net/http's
// write loop reads a body of known length once more after its last byte, to find EOF;
// when the SDK's close beats that read (a fast server on the same host or cluster, a
// loaded machine), the read fails, the write loop closes the connection, and the answer
// still being read ends in "use of closed network connection" (aws/aws-sdk-go-v2#1825,
// #2737; seen here in TestInvokeWithResponseStreamSDK and the e2e TestPayloadSizes, the
// close coming from persistConn.writeLoop). The copy costs one read of the body before
// sending it, which clients of a Lambda payload (≤ 6 MB) can afford.
package sdkbody

import (
	"bytes"
	"io"
	"net/http"
	"time"
)

// Transport gives Base each request with a body of its own (Base: http.DefaultTransport
// when nil).
type Transport struct{ Base http.RoundTripper }

// RoundTrip reads req's body whole, closes it, and sends a copy.
func (t Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	if req.Body == nil || req.Body == http.NoBody {
		return base.RoundTrip(req)
	}
	b, err := io.ReadAll(req.Body)
	_ = req.Body.Close()
	if err != nil {
		return nil, err
	}
	out := req.Clone(req.Context())
	out.Body = io.NopCloser(bytes.NewReader(b))
	out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	out.ContentLength = int64(len(b))
	return base.RoundTrip(out)
}

// Client is an *http.Client over Transport with a transport of its own (a clone of
// http.DefaultTransport) and the given overall timeout (0: none).
func Client(timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: Transport{Base: http.DefaultTransport.(*http.Transport).Clone()}}
}
