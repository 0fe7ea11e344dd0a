// Package invoke serves the Lambda Invoke API:
// POST [/namespaces/{ns}]/2015-03-31/functions/{FunctionName}/invocations. It parses the
// call, authorizes it, asks the router for a version and the dispatcher for an
// environment, and relays the call to that environment's shim.
package invoke

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/go-logr/logr"

	"github.com/klambda/klambda/activator/auth"
	"github.com/klambda/klambda/activator/dispatch"
	"github.com/klambda/klambda/activator/fnkey"
	"github.com/klambda/klambda/activator/metrics"
	"github.com/klambda/klambda/activator/router"
	"github.com/klambda/klambda/activator/shimclient"
	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// Router resolves name + qualifier to a version (router.Table).
type Router interface {
	Resolve(namespace, function, qualifier string) (router.Route, error)
	UnreservedLimit(namespace string, namespaceLimit int32) int32
}

// Dispatcher hands out environments (dispatch.Dispatcher).
type Dispatcher interface {
	AcquireWithin(ctx context.Context, key fnkey.Key, lim dispatch.Limits, maxWait time.Duration) (*dispatch.Lease, error)
}

// Shim sends one invocation to one environment (shimclient.Client).
type Shim interface {
	Do(ctx context.Context, c *shimclient.Call) (*http.Response, error)
}

// Authorizer decides whether a token, presented from source (the client's IP), may invoke
// a function (auth.Checker).
type Authorizer interface {
	CheckFrom(ctx context.Context, source, token, namespace, function string) (auth.Decision, error)
}

// EventQueue stores asynchronous (Event) invocations durably before the 202
// (activator/async.Queue, adapted in cmd/activator).
type EventQueue interface {
	Enqueue(ctx context.Context, ev AsyncEvent) (requestID string, err error)
}

// AsyncEvent is one accepted Event invocation.
type AsyncEvent struct {
	Namespace, Function, Qualifier string
	// Payload is only valid during Enqueue (a pooled buffer).
	Payload       []byte
	ClientContext string
	TraceID       string
	Received      time.Time
}

// HeaderAsyncRequestID carries a queued event's request id from the in-process async
// worker (activator/async.HTTPInvoker); honoured only by a handler without Auth.
const HeaderAsyncRequestID = "X-Klambda-Async-Request-Id"

// Handler is the Invoke API.
type Handler struct {
	DefaultNamespace string
	Region           string
	AccountID        string
	Router           Router
	Dispatcher       Dispatcher
	Shim             Shim
	// Auth nil turns authorization off (local development, and the in-process copy the
	// async workers call: their events were authorized when accepted).
	Auth Authorizer
	// Async stores Event invocations; nil answers them with an error.
	Async EventQueue
	// WaitDeadline bounds how long a request waits for an environment.
	WaitDeadline time.Duration
	// NamespaceLimit is the concurrency a namespace's functions share (Lambda's account
	// limit); -1 for none.
	NamespaceLimit int32
	// ShimGrace is added to the function timeout for the call to the shim (init, reset).
	ShimGrace time.Duration
	// Admission bounds the request bytes held and the requests waiting for an
	// environment (NewAdmission); nil: no bound.
	Admission *Admission
	Metrics   *metrics.Metrics
	Log       logr.Logger
}

var bufPool = sync.Pool{New: func() any { return bytes.NewBuffer(make([]byte, 0, 4096)) }}

const maxPooledBuffer = 1 << 20

// arn is the function's ARN, qualified when qualifier is not "".
func (h *Handler) arn(fn, qualifier string) string {
	if qualifier == "" {
		return lambdav1alpha1.FunctionARN(h.Region, h.AccountID, fn)
	}
	return lambdav1alpha1.QualifiedFunctionARN(h.Region, h.AccountID, fn, qualifier)
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req, perr := ParseRequest(r.Method, r.URL.EscapedPath(), r.URL.RawQuery, r.Header, h.DefaultNamespace)
	if perr != nil {
		h.countFailure(resolved{metrics.Unresolved, metrics.Unresolved}, perr)
		perr.Write(w)
		return
	}
	// The failure metric names a function only once the router resolved it: a name the
	// caller made up (before or without authentication) must not become a series.
	at := resolved{namespace: metrics.Unresolved, function: metrics.Unresolved}
	if e := h.invoke(w, r, &req, &at); e != nil {
		h.countFailure(at, e)
		e.Write(w)
	}
}

// resolved is the function a request was routed to, for metric labels.
type resolved struct{ namespace, function string }

func (h *Handler) countFailure(at resolved, e *Error) {
	if h.Metrics == nil {
		return
	}
	if e.Type != "TooManyRequestsException" {
		h.Metrics.InvokeFailure.WithLabelValues(at.namespace, at.function, metrics.ErrorType(e.Type)).Inc()
		return
	}
	// Concurrency throttles are counted where they happen, with their version; the
	// activator's own (review budget, request bytes, waiters) here.
	switch e.Reason {
	case contract.ReasonCallerRate:
		h.Metrics.Throttles.WithLabelValues(at.namespace, at.function, "", "", contract.ReasonCallerRate).Inc()
	case "":
		h.Metrics.Throttles.WithLabelValues(at.namespace, at.function, "", "", ReasonActivatorBusy).Inc()
	}
}

// invoke answers the call, or returns the invocation error to answer; it fills at once the
// function is resolved.
func (h *Handler) invoke(w http.ResponseWriter, r *http.Request, req *Request, at *resolved) *Error {
	if e := h.authorize(r, req); e != nil {
		return e
	}
	route, e := h.resolve(req)
	if e != nil {
		return e
	}
	at.namespace, at.function = route.Namespace, route.Function
	if req.InvocationType == DryRun {
		w.Header()[contract.HeaderExecutedVersion] = []string{route.Version}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	payload, done, e := h.readPayload(r, route.Namespace)
	if e != nil {
		return e
	}
	defer done()
	if req.InvocationType == Event {
		return h.enqueue(w, r, req, payload)
	}
	return h.run(w, r, req, route, payload)
}

// authorize reviews the caller's token and its permission to invoke the function (nil
// when the handler has no Auth).
func (h *Handler) authorize(r *http.Request, req *Request) *Error {
	if h.Auth == nil {
		return nil
	}
	d, err := h.Auth.CheckFrom(r.Context(), clientIP(r), auth.TokenFrom(r.Header), req.Namespace, req.FunctionName)
	if err != nil {
		h.Log.Error(err, "authorization review failed", "namespace", req.Namespace, "function", req.FunctionName)
		return ErrService("could not review the caller's token or permission")
	}
	switch d.Outcome {
	case auth.NoToken:
		return ErrMissingToken()
	case auth.InvalidToken:
		return ErrInvalidToken()
	case auth.Denied:
		return ErrAccessDenied(d.User, h.arn(req.FunctionName, req.Qualifier))
	case auth.RateLimited:
		return ErrThrottled(contract.ReasonCallerRate)
	}
	return nil
}

// resolve asks the router for the version the call runs.
func (h *Handler) resolve(req *Request) (router.Route, *Error) {
	route, err := h.Router.Resolve(req.Namespace, req.FunctionName, req.Qualifier)
	if err == nil {
		return route, nil
	}
	var na *router.NotActiveError
	switch {
	case errors.Is(err, router.ErrFunctionNotFound):
		return route, ErrFunctionNotFound(h.arn(req.FunctionName, ""))
	case errors.Is(err, router.ErrQualifierNotFound):
		return route, ErrFunctionNotFound(h.arn(req.FunctionName, req.Qualifier))
	case errors.As(err, &na):
		return route, ErrNotActive(na.State)
	default:
		return route, ErrService(err.Error())
	}
}

// readPayload reads the request body (at most contract.MaxSyncPayload bytes, reserved with the
// Admission for namespace ns before a byte is read) and checks it is JSON. done releases
// the reservation and the buffer; call it once the payload is no longer used.
func (h *Handler) readPayload(r *http.Request, ns string) (payload []byte, done func(), e *Error) {
	if r.ContentLength > contract.MaxSyncPayload {
		return nil, nil, ErrRequestTooLarge(contract.MaxSyncPayload)
	}
	var cleanups []func()
	done = func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}
	if h.Admission != nil {
		// The body's bytes are reserved before a byte of it is read, for as long as the
		// request holds them; past the budget the body is never read.
		n := r.ContentLength
		if n < 0 {
			n = contract.MaxSyncPayload
		}
		if !h.Admission.reserve(ns, n) {
			return nil, nil, ErrBusy("the activator holds as many request bytes as it may (" + ns + "'s share or all namespaces'); retry")
		}
		cleanups = append(cleanups, func() { h.Admission.release(ns, n) })
	}
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	cleanups = append(cleanups, func() {
		if buf.Cap() <= maxPooledBuffer {
			bufPool.Put(buf)
		}
	})
	if e := readBody(r, buf); e != nil {
		done()
		return nil, nil, e
	}
	return buf.Bytes(), done, nil
}

// readBody reads r's body into buf: at most contract.MaxSyncPayload bytes, empty or valid JSON.
func readBody(r *http.Request, buf *bytes.Buffer) *Error {
	if r.ContentLength > 0 {
		// Room for the whole body at once, so that reading it does not grow the buffer
		// past what was reserved.
		buf.Grow(int(r.ContentLength) + bytes.MinRead)
	}
	if _, err := buf.ReadFrom(io.LimitReader(r.Body, contract.MaxSyncPayload+1)); err != nil {
		return ErrInvalidParameter("could not read the request body: " + err.Error())
	}
	if buf.Len() > contract.MaxSyncPayload {
		return ErrRequestTooLarge(contract.MaxSyncPayload)
	}
	payload := buf.Bytes()
	if len(payload) > 0 && !json.Valid(payload) {
		var v any
		detail := "the payload is not valid JSON"
		if err := json.Unmarshal(payload, &v); err != nil {
			detail = err.Error()
		}
		return ErrInvalidJSON(detail)
	}
	return nil
}

// run sends a synchronous invocation to an environment of the route's version and relays
// the answer.
func (h *Handler) run(w http.ResponseWriter, r *http.Request, req *Request, route router.Route, payload []byte) *Error {
	key := fnkey.Key{Namespace: route.Namespace, Function: route.Function, Version: route.Version}
	resource := route.Qualifier
	if resource == "" {
		resource = contract.Latest
	}
	lease, e := h.acquire(r.Context(), key, route, resource)
	if e != nil {
		return e
	}
	defer lease.Release()
	var ms *metrics.Series
	if h.Metrics != nil {
		ms = h.Metrics.For(key.Namespace, key.Function, key.Version, resource)
		ms.Concurrent.Inc()
		defer ms.Concurrent.Dec()
		ms.QueueWait.Observe(lease.Waited.Seconds())
	}

	// The call to the shim outlives the client: an environment is busy until its
	// invocation ends, whether or not anyone waits for the answer.
	shimCtx, cancelShim := context.WithTimeout(context.WithoutCancel(r.Context()), route.Timeout+h.ShimGrace)
	defer cancelShim()
	requestID := ""
	if h.Auth == nil {
		requestID = r.Header.Get(HeaderAsyncRequestID)
	}
	if requestID == "" {
		requestID = contract.NewRequestID()
	}
	call := shimclient.Call{
		RequestID:     requestID,
		InvokedARN:    h.arn(route.Function, route.Qualifier),
		Deadline:      time.Now().Add(route.Timeout),
		ClientContext: req.ClientContext,
		TraceID:       r.Header.Get(contract.HeaderTraceID),
		LogTail:       req.LogTail,
		ContentLength: int64(len(payload)),
	}
	resp, e := h.callShim(r.Context(), shimCtx, key, lease, &call, payload)
	if e != nil {
		return e
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return h.shimError(resp, key, lease.Env.Name, requestID)
	}
	relay(w, resp, route.Version, requestID, ms)
	return nil
}

// acquire leases an environment of key within the function's and the namespace's
// concurrency, waiting up to WaitDeadline.
func (h *Handler) acquire(ctx context.Context, key fnkey.Key, route router.Route, resource string) (*dispatch.Lease, *Error) {
	lim := dispatch.Limits{Reserved: route.ReservedConcurrency, Unreserved: -1}
	if route.ReservedConcurrency < 0 && h.NamespaceLimit >= 0 {
		lim.Unreserved = h.Router.UnreservedLimit(route.Namespace, h.NamespaceLimit)
	}
	if h.Admission != nil {
		if !h.Admission.enterWait() {
			return nil, ErrBusy("too many requests are waiting for an execution environment; retry")
		}
	}
	lease, err := h.Dispatcher.AcquireWithin(ctx, key, lim, h.WaitDeadline)
	if h.Admission != nil {
		h.Admission.leaveWait()
	}
	if err == nil {
		return lease, nil
	}
	var te *dispatch.ThrottleError
	var ce *dispatch.CapacityError
	switch {
	case errors.As(err, &te):
		if h.Metrics != nil {
			h.Metrics.Throttles.WithLabelValues(key.Namespace, key.Function, key.Version, resource, te.Reason).Inc()
		}
		return nil, ErrThrottled(te.Reason)
	case errors.As(err, &ce):
		// No environment can be added (cluster full, quota, scaling rate): Lambda's 429.
		if h.Metrics != nil {
			h.Metrics.Throttles.WithLabelValues(key.Namespace, key.Function, key.Version, resource, ce.Cause).Inc()
		}
		h.Log.V(1).Info("throttled: no environment can be added", "key", key.String(), "cause", ce.Cause, "detail", ce.Detail)
		e := ErrThrottled(ce.Reason)
		e.Message += " " + ce.Hint()
		return nil, e
	case errors.Is(err, dispatch.ErrNoEnvironment):
		return nil, h.errNotReady(key)
	default:
		// The caller went away while waiting; nobody reads this answer.
		return nil, ErrService("request cancelled: " + err.Error())
	}
}

func (h *Handler) errNotReady(key fnkey.Key) *Error {
	return ErrService("No execution environment of " + key.String() + " became ready within " + h.WaitDeadline.String() + "; the function is scaling up, retry.")
}

// callShim sends call with payload to the lease's environment (under shimCtx); an
// environment busy with an invocation this activator did not send is traded for another
// (waiting, under ctx, at most WaitDeadline for all the trades together).
func (h *Handler) callShim(ctx, shimCtx context.Context, key fnkey.Key, lease *dispatch.Lease, call *shimclient.Call, payload []byte) (*http.Response, *Error) {
	call.Addr, call.Secret = lease.Env.Addr, lease.Env.Secret
	call.Body = bytes.NewReader(payload)
	resp, err := h.Shim.Do(shimCtx, call)
	busyUntil := time.Now().Add(h.WaitDeadline) // bounds all the moves below together
	for err == nil && shimclient.IsBusy(resp) {
		// The environment runs an invocation we did not send (a previous activator's): it
		// counts as busy, and this request takes another environment (or waits for one).
		h.Log.Info("environment busy with an invocation this activator did not send; trying another", "key", key.String(), "environment", lease.Env.Name, "requestId", call.RequestID)
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		wait := time.Duration(0)
		if h.WaitDeadline > 0 {
			if wait = time.Until(busyUntil); wait <= 0 {
				wait = time.Nanosecond // no time left: an idle environment, or none
			}
		}
		if err := lease.Reassign(ctx, wait); err != nil {
			if errors.Is(err, dispatch.ErrNoEnvironment) {
				return nil, h.errNotReady(key)
			}
			return nil, ErrService("request cancelled: " + err.Error())
		}
		call.Addr, call.Secret = lease.Env.Addr, lease.Env.Secret
		call.Body = bytes.NewReader(payload)
		resp, err = h.Shim.Do(shimCtx, call)
	}
	if err != nil {
		h.Log.Error(err, "invoking environment failed", "key", key.String(), "environment", lease.Env.Name, "requestId", call.RequestID)
		return nil, ErrService("RequestId: " + call.RequestID + " The execution environment could not be reached.")
	}
	return resp, nil
}

// relay answers the caller with the shim's 200 and counts the invocation in ms (may be nil).
func relay(w http.ResponseWriter, resp *http.Response, version, requestID string, ms *metrics.Series) {
	out := w.Header()
	out[contract.HeaderRequestID] = []string{requestID}
	out[contract.HeaderExecutedVersion] = []string{version}
	out["Content-Type"] = []string{"application/json"}
	rh := resp.Header
	fnErr := rh.Get(contract.HeaderFunctionError)
	if fnErr != "" {
		out[contract.HeaderFunctionError] = []string{fnErr}
	}
	if lr, ok := rh[contract.HeaderLogResult]; ok {
		out[contract.HeaderLogResult] = lr
	}
	if cl, ok := rh["Content-Length"]; ok {
		out["Content-Length"] = cl
	}
	w.WriteHeader(http.StatusOK)
	copyBody(w, resp.Body)

	if ms != nil {
		ms.Invocations.Inc()
		if fnErr != "" {
			ms.Errors.Inc()
		}
		if d := shimclient.Millis(rh, contract.HeaderDuration); d > 0 {
			ms.Duration.Observe(d.Seconds())
		}
		if d := shimclient.Millis(rh, contract.HeaderInitDuration); d > 0 {
			ms.InitDuration.Observe(d.Seconds())
		}
	}
}

// enqueue accepts an Event invocation: stored durably, then 202. Without a queue it is
// refused rather than pretended.
func (h *Handler) enqueue(w http.ResponseWriter, r *http.Request, req *Request, payload []byte) *Error {
	if h.Async == nil {
		return ErrInvalidParameter("Asynchronous invocation (X-Amz-Invocation-Type: Event) is not enabled on this klambda activator; use RequestResponse.")
	}
	if len(payload) > contract.MaxAsyncPayload {
		return ErrRequestTooLarge(contract.MaxAsyncPayload)
	}
	id, err := h.Async.Enqueue(r.Context(), AsyncEvent{
		Namespace: req.Namespace, Function: req.FunctionName, Qualifier: req.Qualifier, Payload: payload,
		ClientContext: req.ClientContext, TraceID: r.Header.Get(contract.HeaderTraceID), Received: time.Now(),
	})
	if err != nil {
		var refused *Error // the queue refused the event for the caller (429 over a quota)
		if errors.As(err, &refused) {
			return refused
		}
		h.Log.Error(err, "storing an asynchronous event failed", "namespace", req.Namespace, "function", req.FunctionName)
		return ErrService("The event could not be queued; retry.")
	}
	w.Header()[contract.HeaderRequestID] = []string{id}
	w.WriteHeader(http.StatusAccepted)
	return nil
}

var copyBufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// copyBody relays the shim's answer; when the client has gone it still reads the body
// to its end, so the connection to the shim stays reusable.
func copyBody(w io.Writer, body io.Reader) {
	bp := copyBufPool.Get().(*[]byte)
	if _, err := io.CopyBuffer(w, body, *bp); err != nil {
		_, _ = io.CopyBuffer(io.Discard, body, *bp)
	}
	copyBufPool.Put(bp)
}

// shimError turns a refusal by the shim into an invocation error. Its caller errors
// (400, 413) are the caller's; a wrong secret or a busy environment is ours.
func (h *Handler) shimError(resp *http.Response, key fnkey.Key, env, requestID string) *Error {
	typ := resp.Header.Get(contract.HeaderErrorType)
	var body struct {
		Message string `json:"message"`
	}
	_ = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&body)
	h.Log.Info("environment refused an invocation", "key", key.String(), "environment", env,
		"status", resp.StatusCode, "errorType", typ, "message", body.Message, "requestId", requestID)
	switch {
	case resp.StatusCode == http.StatusUnauthorized, resp.StatusCode == http.StatusTooManyRequests, typ == "":
		return ErrService("RequestId: " + requestID + " The execution environment refused the invocation.")
	case resp.StatusCode >= 500:
		return &Error{Status: resp.StatusCode, Type: typ, Fault: "Service", Message: body.Message}
	default:
		return &Error{Status: resp.StatusCode, Type: typ, Fault: "User", Message: body.Message}
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
