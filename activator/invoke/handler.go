// Package invoke is the activator's invoke path. Core (core.go, run.go) is the typed
// invoke core: Invoke(ctx, *Input) (*Output, error) resolves the function, leases an
// environment within every concurrency limit (the dispatcher's) and calls its shim; the
// async workers call it directly. Handler (this file) is the Lambda Invoke API around
// any Invoker, POST [/namespaces/{ns}]/2015-03-31/functions/{FunctionName}/invocations:
// a chain of small handlers that count refusals, parse the call, authorize it, then
// read the payload, invoke and encode the answer.
package invoke

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"

	"github.com/go-logr/logr"

	"github.com/klambda/klambda/activator/auth"
	"github.com/klambda/klambda/activator/dispatch"
	"github.com/klambda/klambda/activator/metrics"
	"github.com/klambda/klambda/api/contract"
)

// Authorizer decides whether a token, presented from source (the client's IP), may invoke
// a function (auth.Checker).
type Authorizer interface {
	CheckFrom(ctx context.Context, source, token, namespace, function string) (auth.Decision, error)
}

// Handler is the Invoke API over HTTP: parse and encode around an Invoker. Fields are
// read at each request.
type Handler struct {
	DefaultNamespace string
	// Region and AccountID make the ARNs of AccessDeniedException.
	Region    string
	AccountID string
	Invoker   Invoker
	// Auth nil turns authorization off (local development).
	Auth Authorizer
	// Admission bounds the request bytes held (NewAdmission); nil: no bound.
	Admission *Admission
	// Metrics counts the requests this layer refuses itself (the core counts the rest).
	Metrics *metrics.Metrics
	Log     logr.Logger

	once  sync.Once
	chain step
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.once.Do(func() { h.chain = h.countRefusals(h.parse(h.authorize(h.invoke))) })
	h.chain(w, r, nil)
}

// step is a handler of the chain: it gets the request and the call's state, which the
// first step (countRefusals) makes. (The state is handed along, not carried in the
// request's context: that would copy the request.)
type step func(w http.ResponseWriter, r *http.Request, c *call)

// call is one request's state along the chain.
type call struct {
	req     Request
	in      Input
	refused *Error // answered by a handler of the chain (not the Invoker)
	// headers backs the answer's header values (writeOutput): one array, not a slice
	// allocated per header.
	headers [6]string
}

// refuse answers e on behalf of a handler of the chain.
func refuse(w http.ResponseWriter, c *call, e *Error) {
	c.refused = e
	e.Write(w)
}

// countRefusals starts the call's state and counts the refusals of the handlers it wraps
// (they name no function: it was not resolved).
func (h *Handler) countRefusals(next step) step {
	return func(w http.ResponseWriter, r *http.Request, _ *call) {
		c := &call{}
		next(w, r, c)
		if c.refused != nil {
			countFailure(h.Metrics, metrics.Unresolved, metrics.Unresolved, c.refused)
		}
	}
}

// parse reads the call's path, query and headers (ParseRequest).
func (h *Handler) parse(next step) step {
	return func(w http.ResponseWriter, r *http.Request, c *call) {
		req, e := ParseRequest(r.Method, r.URL.EscapedPath(), r.URL.RawQuery, r.Header, h.DefaultNamespace)
		if e != nil {
			refuse(w, c, e)
			return
		}
		c.req = req
		next(w, r, c)
	}
}

// authorize reviews the caller's token and its permission to invoke the function (none
// when the handler has no Auth).
func (h *Handler) authorize(next step) step {
	return func(w http.ResponseWriter, r *http.Request, c *call) {
		if _, e := h.Authorize(r, c.req.Namespace, c.req.FunctionName, c.req.Qualifier); e != nil {
			refuse(w, c, e)
			return
		}
		next(w, r, c)
	}
}

// Authorize reviews r's caller (its token: Bearer, else the SigV4 session token) and its
// permission to invoke fn in ns, as the Invoke API does; it answers the caller's user
// name when allowed ("" without Auth), else the error to answer. Function URLs with
// authType AWS_IAM/KUBERNETES call it too.
func (h *Handler) Authorize(r *http.Request, ns, fn, qualifier string) (string, *Error) {
	if h.Auth == nil {
		return "", nil
	}
	d, err := h.Auth.CheckFrom(r.Context(), clientIP(r), auth.TokenFrom(r.Header), ns, fn)
	switch {
	case err != nil:
		h.Log.Error(err, "authorization review failed", "namespace", ns, "function", fn)
		return "", ErrService("could not review the caller's token or permission")
	case d.Outcome == auth.NoToken:
		return "", ErrMissingToken()
	case d.Outcome == auth.InvalidToken:
		return "", ErrInvalidToken()
	case d.Outcome == auth.Denied:
		arn := contract.FunctionARN(h.Region, h.AccountID, fn)
		if qualifier != "" {
			arn = contract.QualifiedFunctionARN(h.Region, h.AccountID, fn, qualifier)
		}
		return "", ErrAccessDenied(d.User, arn)
	case d.Outcome == auth.RateLimited:
		return "", ErrThrottled(contract.ReasonCallerRate)
	}
	return d.User, nil
}

// ReadBody reads r's body for namespace ns within the Invoke API's bounds (6 MB, the
// request bytes the activator and the namespace may hold: reserved before a byte is
// read). Call release once the body is no longer used. Function URLs read theirs so.
func (h *Handler) ReadBody(r *http.Request, ns string) (body []byte, release func(), e *Error) {
	p, e := h.readPayload(r, ns)
	if e != nil {
		return nil, nil, e
	}
	return p.buf.Bytes(), func() { h.releasePayload(ns, p) }, nil
}

// CountRefusal counts a request refused before its function was resolved, as the Invoke
// API's own refusals are counted.
func (h *Handler) CountRefusal(e *Error) {
	countFailure(h.Metrics, metrics.Unresolved, metrics.Unresolved, e)
}

// invoke reads the payload, runs the call and answers it.
func (h *Handler) invoke(w http.ResponseWriter, r *http.Request, c *call) {
	in := &c.in
	*in = Input{Namespace: c.req.Namespace, Function: c.req.FunctionName, Qualifier: c.req.Qualifier,
		InvocationType: c.req.InvocationType, ClientContext: c.req.ClientContext,
		TraceID: headerGet(r.Header, contract.HeaderTraceID), LogTail: c.req.LogTail, ResponseStream: c.req.ResponseStream}
	if in.InvocationType != DryRun { // a DryRun's body is never read
		p, e := h.readPayload(r, in.Namespace)
		if e != nil {
			refuse(w, c, e)
			return
		}
		defer h.releasePayload(in.Namespace, p)
		in.Payload = p.buf.Bytes()
	}
	out, err := h.Invoker.Invoke(r.Context(), in)
	if err != nil {
		AsError(err).Write(w)
		return
	}
	if in.ResponseStream {
		writeStream(w, out)
		return
	}
	writeOutput(w, out, &c.headers)
}

// writeOutput answers out, relaying its body as it comes, and closes it. The header
// values are slices of vals.
func writeOutput(w http.ResponseWriter, out *Output, vals *[6]string) {
	hd := w.Header()
	n := 0
	set := func(k, v string) {
		if v != "" {
			vals[n] = v
			hd[k] = vals[n : n+1 : n+1]
			n++
		}
	}
	set(contract.HeaderRequestID, out.RequestID)
	set(contract.HeaderExecutedVersion, out.ExecutedVersion)
	if out.Body == nil {
		w.WriteHeader(out.StatusCode)
		return
	}
	defer out.Body.Close() // reads what the client did not take: the shim connection is reused
	set("Content-Type", "application/json")
	set(contract.HeaderFunctionError, out.FunctionError)
	set(contract.HeaderLogResult, out.LogResult)
	if out.ContentLength >= 0 {
		set("Content-Length", strconv.FormatInt(out.ContentLength, 10))
	}
	w.WriteHeader(out.StatusCode)
	bp := copyBufPool.Get().(*[]byte)
	_, _ = io.CopyBuffer(w, out.Body, *bp)
	copyBufPool.Put(bp)
}

// payload is a request body read into a pooled buffer, with the bytes reserved for it.
type payload struct {
	buf      *bytes.Buffer
	reserved int64
	limit    io.LimitedReader // the body's reader, kept here so that reading it allocates nothing
}

var bufPool = sync.Pool{New: func() any { return &payload{buf: bytes.NewBuffer(make([]byte, 0, 4096))} }}

const maxPooledBuffer = 1 << 20

// readPayload reads the request body: at most contract.MaxSyncPayload bytes, reserved
// with the Admission for namespace ns before a byte is read (past the budget the body
// is never read). Give it back with releasePayload once the payload is no longer used.
func (h *Handler) readPayload(r *http.Request, ns string) (*payload, *Error) {
	if r.ContentLength > contract.MaxSyncPayload {
		return nil, ErrRequestTooLarge(contract.MaxSyncPayload)
	}
	n := int64(0)
	if h.Admission != nil {
		if n = r.ContentLength; n < 0 {
			n = contract.MaxSyncPayload
		}
		if !h.Admission.reserve(ns, n) {
			return nil, ErrBusy("the activator holds as many request bytes as it may (" + ns + "'s share or all namespaces'); retry")
		}
	}
	p := bufPool.Get().(*payload)
	p.buf.Reset()
	p.reserved = n
	if r.ContentLength > 0 {
		// Room for the whole body at once, so that reading it does not grow the buffer
		// past what was reserved.
		p.buf.Grow(int(r.ContentLength) + bytes.MinRead)
	}
	p.limit = io.LimitedReader{R: r.Body, N: contract.MaxSyncPayload + 1}
	_, err := p.buf.ReadFrom(&p.limit)
	p.limit.R = nil
	switch {
	case err != nil:
		h.releasePayload(ns, p)
		return nil, ErrInvalidParameter("could not read the request body: " + err.Error())
	case p.buf.Len() > contract.MaxSyncPayload:
		h.releasePayload(ns, p)
		return nil, ErrRequestTooLarge(contract.MaxSyncPayload)
	}
	return p, nil
}

func (h *Handler) releasePayload(ns string, p *payload) {
	p.limit.R = nil
	if p.reserved > 0 {
		h.Admission.release(ns, p.reserved)
	}
	if p.buf.Cap() <= maxPooledBuffer {
		bufPool.Put(p)
	}
}

// countFailure counts an invocation error in m (nil: nothing) under the function it was
// routed to (metrics.Unresolved before that: a name the caller made up must not become a
// series). Concurrency throttles are counted where they happen, with their version;
// the callers' rate and the activator's own bounds here.
func countFailure(m *metrics.Metrics, namespace, function string, e *Error) {
	if m == nil || errors.Is(e, dispatch.ErrNotOwner) {
		return // not a failure: the invocation is sent to the namespace's owner
	}
	switch {
	case e.Type != "TooManyRequestsException":
		m.InvokeFailure.WithLabelValues(namespace, function, metrics.ErrorType(e.Type)).Inc()
	case e.Reason == contract.ReasonCallerRate:
		m.Throttles.WithLabelValues(namespace, function, "", "", contract.ReasonCallerRate).Inc()
	case e.Reason == "":
		m.Throttles.WithLabelValues(namespace, function, "", "", ReasonActivatorBusy).Inc()
	}
}

// clientIP is the request's peer address without the port: the source whose token
// reviews are rate-limited together.
func clientIP(r *http.Request) string {
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}
