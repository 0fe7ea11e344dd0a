package invoke

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/klambda/klambda/activator/dispatch"
	"github.com/klambda/klambda/activator/fnkey"
	"github.com/klambda/klambda/activator/metrics"
	"github.com/klambda/klambda/activator/router"
	"github.com/klambda/klambda/activator/shimclient"
	"github.com/klambda/klambda/api/contract"
)

// run sends a synchronous invocation to an environment of the route's version; the
// Output streams the environment's answer and holds the environment until it is closed.
func (c *Core) run(ctx context.Context, in *Input, route *router.Route) (*Output, *Error) {
	key := fnkey.Key{Namespace: route.Namespace, Function: route.Function, Version: route.Version}
	lease, e := c.acquire(ctx, key, route)
	if e != nil {
		return nil, e
	}
	r := &running{lease: lease}
	if c.Metrics != nil {
		r.ms = c.Metrics.For(key.Namespace, key.Function, key.Version, resourceOf(route))
		r.ms.Concurrent.Inc()
		r.ms.QueueWait.Observe(lease.Waited.Seconds())
	}
	// The call to the shim outlives the caller: an environment is busy until its
	// invocation ends, whether or not anyone waits for the answer. It is bounded by the
	// function's timeout and a grace (Call.Until, without a timer of its own).
	r.shimCtx.parent = ctx
	requestID := in.RequestID
	if requestID == "" {
		requestID = contract.NewRequestID()
	}
	now := time.Now()
	r.call = shimclient.Call{
		RequestID:      requestID,
		InvokedARN:     c.arn(route.Function, route.Qualifier),
		Deadline:       now.Add(route.Timeout),
		Until:          now.Add(route.Timeout + c.ShimGrace),
		ClientContext:  in.ClientContext,
		TraceID:        in.TraceID,
		LogTail:        in.LogTail,
		ResponseStream: in.ResponseStream,
		ContentLength:  int64(len(in.Payload)),
	}
	resp, e := c.callShim(ctx, &r.shimCtx, key, lease, &r.call, &r.payload, in.Payload)
	if e != nil {
		r.end()
		return nil, e
	}
	if resp.StatusCode != http.StatusOK {
		e := c.shimError(resp, key, lease.Env.Name, requestID)
		resp.Body.Close()
		r.end()
		return nil, e
	}
	r.body = resp.Body
	return r.output(resp, route.Version, requestID), nil
}

// resourceOf is the metric label of what the caller named: the alias, the version, or
// $LATEST.
func resourceOf(route *router.Route) string {
	if route.Qualifier == "" {
		return contract.Latest
	}
	return route.Qualifier
}

// acquire leases an environment of key within every concurrency limit (the
// dispatcher's), waiting up to WaitDeadline.
func (c *Core) acquire(ctx context.Context, key fnkey.Key, route *router.Route) (*dispatch.Lease, *Error) {
	if c.Admission != nil && !c.Admission.enterWait() {
		return nil, ErrBusy("too many requests are waiting for an execution environment; retry")
	}
	lease, err := c.Dispatcher.AcquireWithin(ctx, key, route.ReservedConcurrency, c.WaitDeadline)
	if c.Admission != nil {
		c.Admission.leaveWait()
	}
	if err == nil {
		return lease, nil
	}
	var te *dispatch.ThrottleError
	var ce *dispatch.CapacityError
	switch {
	case errors.As(err, &te):
		if c.Metrics != nil {
			c.Metrics.Throttles.WithLabelValues(key.Namespace, key.Function, key.Version, resourceOf(route), te.Reason).Inc()
		}
		return nil, ErrThrottled(te.Reason)
	case errors.As(err, &ce):
		// No environment can be added (cluster full, quota, scaling rate): Lambda's 429.
		if c.Metrics != nil {
			c.Metrics.Throttles.WithLabelValues(key.Namespace, key.Function, key.Version, resourceOf(route), ce.Cause).Inc()
		}
		c.Log.V(1).Info("throttled: no environment can be added", "key", key.String(), "cause", ce.Cause, "detail", ce.Detail)
		e := ErrThrottled(ce.Reason)
		e.Message += " " + ce.Hint()
		return nil, e
	case errors.Is(err, dispatch.ErrNoEnvironment):
		return nil, c.errNotReady(key)
	case errors.Is(err, dispatch.ErrNotOwner):
		return nil, ErrNotOwner()
	default:
		// The caller went away while waiting; nobody reads this answer.
		return nil, ErrService("request cancelled: " + err.Error())
	}
}

func (c *Core) errNotReady(key fnkey.Key) *Error {
	return ErrService("No execution environment of " + key.String() + " became ready within " + c.WaitDeadline.String() + "; the function is scaling up, retry.")
}

// callShim sends call with payload (read through body, the running invocation's reader)
// to the lease's environment (under shimCtx). An
// environment busy with an invocation this activator did not send, or one the invocation
// could not be sent to (a refused connection: a container restarting, or a NetworkPolicy
// that has not yet caught up with a pod's new labels), is traded for another (waiting,
// under ctx, at most WaitDeadline for all the trades together); the one left behind is
// watched and serves again when its shim answers (dispatch.Lease.Reassign).
func (c *Core) callShim(ctx, shimCtx context.Context, key fnkey.Key, lease *dispatch.Lease, call *shimclient.Call, body *bytes.Reader, payload []byte) (*http.Response, *Error) {
	call.Addr, call.Secret = lease.Env.Addr, lease.Env.Secret
	body.Reset(payload)
	call.Body = body
	resp, err := c.Shim.Do(shimCtx, call)
	var busyUntil time.Time // bounds all the moves below together (from the first)
	for c.retryElsewhere(resp, err, call) {
		if busyUntil.IsZero() {
			busyUntil = time.Now().Add(c.WaitDeadline)
		}
		if err != nil {
			// Nothing reached the shim: another environment (or this one, once it
			// answers again) runs the invocation.
			c.Log.Info("the invocation could not be sent to the environment; trying another", "key", key.String(), "environment", lease.Env.Name, "requestId", call.RequestID, "error", err.Error())
		} else {
			// The environment runs an invocation we did not send (a previous activator's):
			// it counts as busy, and this request takes another environment (or waits).
			c.Log.Info("environment busy with an invocation this activator did not send; trying another", "key", key.String(), "environment", lease.Env.Name, "requestId", call.RequestID)
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
		}
		wait := time.Duration(0)
		if c.WaitDeadline > 0 {
			if wait = time.Until(busyUntil); wait <= 0 {
				wait = time.Nanosecond // no time left: an idle environment, or none
			}
		}
		if err := lease.Reassign(ctx, wait); err != nil {
			if errors.Is(err, dispatch.ErrNoEnvironment) {
				return nil, c.errNotReady(key)
			}
			if errors.Is(err, dispatch.ErrNotOwner) {
				return nil, ErrNotOwner()
			}
			return nil, ErrService("request cancelled: " + err.Error())
		}
		call.Addr, call.Secret = lease.Env.Addr, lease.Env.Secret
		body.Reset(payload)
		call.Body = body
		resp, err = c.Shim.Do(shimCtx, call)
	}
	if err != nil {
		c.Log.Error(err, "invoking environment failed", "key", key.String(), "environment", lease.Env.Name, "requestId", call.RequestID)
		return nil, ErrService("RequestId: " + call.RequestID + " The execution environment could not be reached.")
	}
	return resp, nil
}

// retryElsewhere tells whether the invocation goes to another environment: the shim
// answered that it is busy with another invocation, or the invocation was not sent at all
// and the function's timeout has not passed.
func (c *Core) retryElsewhere(resp *http.Response, err error, call *shimclient.Call) bool {
	if err != nil {
		return shimclient.NotSent(err) && time.Now().Before(call.Deadline)
	}
	return shimclient.IsBusy(resp)
}

// shimError turns a refusal by the shim into an invocation error. Its caller errors
// (400, 413) are the caller's; a wrong secret or a busy environment is ours.
func (c *Core) shimError(resp *http.Response, key fnkey.Key, env, requestID string) *Error {
	typ := resp.Header.Get(contract.HeaderErrorType)
	var body struct {
		Message string `json:"message"`
	}
	_ = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&body)
	c.Log.Info("environment refused an invocation", "key", key.String(), "environment", env,
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

// running is one invocation holding an environment, from the lease to the end of the
// answer; it is the Output's Body (one allocation holds the Output, the call and the
// state).
type running struct {
	out     Output
	shimCtx detached // the call's context
	call    shimclient.Call
	payload bytes.Reader // the call's Body
	lease   *dispatch.Lease
	ms      *metrics.Series
	body    io.ReadCloser
	closed  bool
	// resp is the shim's answer of a streamed response, whose trailers carry its outcome.
	resp *http.Response
}

// output fills the Output of the shim's 200 and counts the invocation.
func (r *running) output(resp *http.Response, version, requestID string) *Output {
	rh := resp.Header
	r.out = Output{StatusCode: http.StatusOK, RequestID: requestID, ExecutedVersion: version,
		FunctionError: headerGet(rh, contract.HeaderFunctionError), LogResult: headerGet(rh, contract.HeaderLogResult),
		ContentLength: resp.ContentLength, Body: r,
		ContentType: headerGet(rh, "Content-Type"), ErrorType: headerGet(rh, contract.HeaderFunctionErrorType)}
	if headerGet(rh, contract.HeaderResponseStream) == contract.ResponseStreamMode {
		r.out.Streamed = true
		r.resp = resp
		if d := shimclient.Millis(rh, contract.HeaderInitDuration); d > 0 && r.ms != nil {
			r.ms.InitDuration.Observe(d.Seconds())
		}
		return &r.out // counted at its end (streamEnded)
	}
	if ms := r.ms; ms != nil {
		ms.Invocations.Inc()
		if r.out.FunctionError != "" {
			ms.Errors.Inc()
		}
		if d := shimclient.Millis(rh, contract.HeaderDuration); d > 0 {
			ms.Duration.Observe(d.Seconds())
		}
		if d := shimclient.Millis(rh, contract.HeaderInitDuration); d > 0 {
			ms.InitDuration.Observe(d.Seconds())
		}
	}
	return &r.out
}

func (r *running) Read(p []byte) (int, error) {
	if r.closed {
		return 0, errors.New("invoke: read of a closed Output body")
	}
	n, err := r.body.Read(p)
	if r.resp != nil && err != nil {
		r.streamEnded(errors.Is(err, io.EOF))
	}
	return n, err
}

// streamEnded fills in the outcome of a streamed response from the shim's trailers
// (atEOF: the stream was read to its end) and counts the invocation.
func (r *running) streamEnded(atEOF bool) {
	resp := r.resp
	r.resp = nil
	if atEOF {
		t := resp.Trailer
		r.out.Complete = true
		r.out.FunctionError = t.Get(contract.TrailerFunctionError)
		r.out.ErrorType = t.Get(contract.TrailerFunctionErrorType)
		r.out.LogResult = t.Get(contract.TrailerLogResult)
		if b := t.Get(contract.TrailerFunctionErrorBody); b != "" {
			r.out.ErrorBody, _ = base64.StdEncoding.DecodeString(b)
		}
	}
	if ms := r.ms; ms != nil {
		ms.Invocations.Inc()
		if r.out.FunctionError != "" || !atEOF {
			ms.Errors.Inc()
		}
		if d := shimclient.Millis(resp.Trailer, contract.TrailerDuration); d > 0 {
			ms.Duration.Observe(d.Seconds())
		}
	}
}

// Close reads what is left of the answer (so the connection to the shim is reused),
// then frees the environment. A second Close does nothing.
func (r *running) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	drain(r.body)
	r.body.Close()
	r.end()
	return nil
}

// end frees the environment.
func (r *running) end() {
	if r.ms != nil {
		r.ms.Concurrent.Dec()
	}
	r.lease.Release()
}

// headerGet is h.Get(key) for a key in canonical form (contract's names are:
// TestHeaderNamesAreCanonical), without canonicalizing it again.
func headerGet(h http.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// detached is its parent context without its cancellation and deadline, as
// context.WithoutCancel's, held in the running invocation instead of allocated apart
// (context.Cause, which nothing on this path asks, would see the parent's).
type detached struct{ parent context.Context }

func (d *detached) Deadline() (time.Time, bool) { return time.Time{}, false }
func (d *detached) Done() <-chan struct{}       { return nil }
func (d *detached) Err() error                  { return nil }
func (d *detached) Value(key any) any           { return d.parent.Value(key) }

var copyBufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// drain reads body to its end.
func drain(body io.Reader) {
	bp := copyBufPool.Get().(*[]byte)
	_, _ = io.CopyBuffer(io.Discard, body, *bp)
	copyBufPool.Put(bp)
}
