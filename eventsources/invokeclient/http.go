package invokeclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klambda/klambda/api/contract"
)

// HTTPInvoker invokes through the activator's Invoke API
// (POST /namespaces/{ns}/2015-03-31/functions/{name}/invocations) with a plain keep-alive
// HTTP/1.1 client: the same requests and answers as LambdaInvoker, without the SDK's
// middleware stack, which was a third of the pollers' CPU per batch. Safe for concurrent use.
type HTTPInvoker struct {
	// ActivatorURL is the activator's base URL.
	ActivatorURL string
	// Tokens authenticates the poller; nil sends no token.
	Tokens TokenSource
	// TLS is the client's TLS configuration for an https ActivatorURL (nil: the system's).
	TLS *tls.Config
	// MaxConns bounds the connections to the activator (default 512): one per batch in
	// flight, kept alive between batches.
	MaxConns int
	// Client, if set, is used as is (tests).
	Client *http.Client

	once   sync.Once
	base   string
	client *http.Client
}

// NewHTTPInvoker builds an HTTPInvoker.
func NewHTTPInvoker(activatorURL string, tokens TokenSource, tlsCfg *tls.Config) *HTTPInvoker {
	return &HTTPInvoker{ActivatorURL: activatorURL, Tokens: tokens, TLS: tlsCfg}
}

func (h *HTTPInvoker) init() {
	h.base = strings.TrimSuffix(h.ActivatorURL, "/")
	if h.Client != nil {
		h.client = h.Client
		return
	}
	n := h.MaxConns
	if n <= 0 {
		n = 512
	}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          n,
		MaxIdleConnsPerHost:   n,
		MaxConnsPerHost:       n,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: 0,
		DisableCompression:    true,
		// HTTP/1.1: one batch per connection, no HTTP/2 flow control on 6 MB payloads.
		ForceAttemptHTTP2: false,
		TLSNextProto:      map[string]func(string, *tls.Conn) http.RoundTripper{},
	}
	if h.TLS != nil {
		tr.TLSClientConfig = h.TLS.Clone()
	}
	h.client = &http.Client{Transport: tr}
}

// Invoke calls the function synchronously (or asynchronously with req.Async).
func (h *HTTPInvoker) Invoke(ctx context.Context, req Request) (Response, error) {
	h.once.Do(h.init)
	u := h.base + invocationPath(req.Namespace, req.FunctionName)
	// The payload is read by the request body and by any copy the transport makes to retry
	// on a dead keep-alive connection (GetBody); it is released once those are closed and
	// Invoke has returned.
	pl := &payloadUse{payload: req.Payload, release: req.Release}
	pl.users.Store(2) // the body, and this call
	defer pl.done()
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, u, pl.body())
	if err != nil {
		pl.done() // the body was never handed over
		return Response{}, fmt.Errorf("invoking %s: %w", req.FunctionName, err)
	}
	hr.ContentLength = int64(len(req.Payload))
	hr.GetBody = func() (io.ReadCloser, error) {
		pl.users.Add(1)
		return pl.body(), nil
	}
	typ := contract.InvocationRequestResponse
	if req.Async {
		typ = contract.InvocationEvent
	}
	hr.Header[contract.HeaderInvocationType] = []string{typ}
	hr.Header["Content-Type"] = []string{"application/json"}
	if h.Tokens != nil {
		tok, err := h.Tokens.Token()
		if err != nil {
			return Response{}, fmt.Errorf("invoking %s: %w", req.FunctionName, err)
		}
		if tok != "" {
			hr.Header["Authorization"] = []string{"Bearer " + tok}
		}
	}
	res, err := h.client.Do(hr)
	if err != nil {
		return Response{}, fmt.Errorf("invoking %s: %w", req.FunctionName, err)
	}
	defer func() { _ = res.Body.Close() }()
	body, err := readBody(res)
	if err != nil {
		return Response{}, fmt.Errorf("invoking %s: reading the answer: %w", req.FunctionName, err)
	}
	return answer(req.FunctionName, res, body)
}

// invocationPath is the Invoke API's path (and query) for a function as a mapping names it:
// /namespaces/{ns}/2015-03-31/functions/{name}/invocations[?Qualifier=q]. A qualified name
// "fn:alias" goes as the Qualifier (the activator resolves it); an ARN goes whole.
func invocationPath(namespace, functionName string) string {
	name, qualifier := functionName, ""
	if !strings.HasPrefix(name, "arn:") {
		if n, q, ok := strings.Cut(name, ":"); ok {
			name, qualifier = n, q
		}
	}
	u := ""
	if namespace != "" {
		u += "/namespaces/" + url.PathEscape(namespace)
	}
	u += "/2015-03-31/functions/" + url.PathEscape(name) + "/invocations"
	if qualifier != "" {
		u += "?Qualifier=" + url.QueryEscape(qualifier)
	}
	return u
}

// answer turns the activator's answer into a Response, or the error it stands for: a 429
// is a *ThrottledError, any other status outside 2xx an error naming Lambda's error type.
func answer(functionName string, res *http.Response, body []byte) (Response, error) {
	if res.StatusCode < 200 || res.StatusCode > 299 {
		msg := errorMessage(body)
		if res.StatusCode == http.StatusTooManyRequests {
			return Response{StatusCode: http.StatusTooManyRequests}, &ThrottledError{Message: msg}
		}
		return Response{}, fmt.Errorf("invoking %s: %d %s: %s", functionName, res.StatusCode, res.Header.Get(contract.HeaderErrorType), msg)
	}
	return Response{
		StatusCode:      res.StatusCode,
		Payload:         body,
		FunctionError:   res.Header.Get(contract.HeaderFunctionError),
		ExecutedVersion: res.Header.Get(contract.HeaderExecutedVersion),
		RequestID:       res.Header.Get(contract.HeaderRequestID),
	}, nil
}

// payloadUse counts the readers of a request's payload; the last one to finish releases it.
type payloadUse struct {
	payload []byte
	release func()
	users   atomic.Int32
}

func (p *payloadUse) done() {
	if p.users.Add(-1) == 0 && p.release != nil {
		p.release()
	}
}

func (p *payloadUse) body() io.ReadCloser {
	return &payloadBody{Reader: bytes.NewReader(p.payload), use: p}
}

// payloadBody is one reader of the payload; Close (the transport closes every request body
// it is given, once) ends its use.
type payloadBody struct {
	*bytes.Reader
	use    *payloadUse
	closed atomic.Bool
}

func (b *payloadBody) Close() error {
	if b.closed.CompareAndSwap(false, true) {
		b.use.done()
	}
	return nil
}

// maxResponse bounds an answer read into memory: Lambda's 6 MB response limit, with room.
const maxResponse = 7 << 20

func readBody(res *http.Response) ([]byte, error) {
	if res.ContentLength >= 0 && res.ContentLength <= maxResponse {
		b := make([]byte, res.ContentLength)
		_, err := io.ReadFull(res.Body, b)
		return b, err
	}
	b, err := io.ReadAll(io.LimitReader(res.Body, maxResponse+1))
	if err == nil && len(b) > maxResponse {
		err = fmt.Errorf("answer over %d bytes", maxResponse)
	}
	return b, err
}

// errorMessage is the message of a Lambda error body ({"Type":…,"message":…}), else the
// body itself (bounded).
func errorMessage(body []byte) string {
	var e struct {
		Message  string `json:"message"`
		Message2 string `json:"Message"`
	}
	if json.Unmarshal(body, &e) == nil {
		if e.Message != "" {
			return e.Message
		}
		if e.Message2 != "" {
			return e.Message2
		}
	}
	if len(body) > 256 {
		body = body[:256]
	}
	return string(body)
}
