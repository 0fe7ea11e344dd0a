package invoke

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/go-logr/logr"

	"github.com/klambda/klambda/activator/dispatch"
	"github.com/klambda/klambda/activator/fnkey"
	"github.com/klambda/klambda/activator/metrics"
	"github.com/klambda/klambda/activator/router"
	"github.com/klambda/klambda/activator/shimclient"
	"github.com/klambda/klambda/api/contract"
	"github.com/klambda/klambda/internal/jsonvalid"
)

// Invoker runs invocations: the Core here, or anything that stands in for it (an
// activator replica forwarding to the one that owns a namespace). Errors are *Error
// (Lambda's type, status and reason); any other error is the invoker's own failure.
type Invoker interface {
	Invoke(ctx context.Context, in *Input) (*Output, error)
}

// Input is one invocation, as plain data: what the caller asked, whoever the caller is
// (the Invoke API, an async worker, a peer activator).
type Input struct {
	Namespace string
	// Function is the bare name (metadata.name of the Function).
	Function string
	// Qualifier is "" for an unqualified call ($LATEST), else $LATEST, a version or an alias.
	Qualifier string
	// InvocationType is RequestResponse (also ""), Event or DryRun.
	InvocationType string
	// Payload is the event (empty or JSON). It must not change until Invoke has returned
	// an error or the Output's Body is closed.
	Payload []byte
	// ClientContext is X-Amz-Client-Context as sent (base64 JSON).
	ClientContext string
	// TraceID is X-Amzn-Trace-Id.
	TraceID string
	// LogTail asks for the tail of the invocation's log (X-Amz-Log-Type: Tail).
	LogTail bool
	// ResponseStream asks for the function's response as it writes it
	// (InvokeWithResponseStream): a function that streams gives an Output with Streamed.
	ResponseStream bool
	// RequestID is the invocation's id when the caller has one (an async event's: Lambda
	// keeps one id from the 202 to the function); "" and the core makes one. An Event
	// invocation gets its id from the queue and takes none.
	RequestID string
}

// Output is a successful invocation's result: 200 with the function's response or
// function error, 202 for an accepted Event, 204 for a DryRun.
type Output struct {
	StatusCode      int
	RequestID       string
	ExecutedVersion string
	// FunctionError is X-Amz-Function-Error ("Unhandled"), "" when the function succeeded.
	FunctionError string
	// LogResult is X-Amz-Log-Result (base64 log tail), when asked for.
	LogResult string
	// ContentLength of Body; -1 when unknown.
	ContentLength int64
	// Body is the response (200 only; nil otherwise), streamed from the environment. Close
	// it once read (or not): closing ends the invocation and frees the environment.
	Body io.ReadCloser

	// ContentType is the response's media type (the function's, when it streams).
	ContentType string
	// ErrorType is the function error's type (with FunctionError).
	ErrorType string
	// Streamed: the function streamed its response and Input.ResponseStream asked for it.
	// Body is then the function's bytes as it writes them (not JSON, any length), read
	// from the environment without buffering; the environment stays leased until Body is
	// closed. FunctionError, ErrorType, ErrorBody and LogResult are known only once Body
	// has been read to its end: Complete tells that they are.
	Streamed bool
	// Complete: a streamed Body was read to its end and the outcome fields are set; false
	// when the stream was cut off (the environment could not finish it).
	Complete bool
	// ErrorBody is a streamed response's error object (JSON), set with FunctionError.
	ErrorBody []byte
}

// Close closes the Body, if any.
func (o *Output) Close() {
	if o.Body != nil {
		o.Body.Close()
	}
}

// Router resolves name + qualifier to a version (router.Table).
type Router interface {
	Resolve(namespace, function, qualifier string) (router.Route, error)
}

// Dispatcher hands out environments within every concurrency limit (dispatch.Dispatcher).
type Dispatcher interface {
	AcquireWithin(ctx context.Context, key fnkey.Key, reserved int32, maxWait time.Duration) (*dispatch.Lease, error)
}

// Shim sends one invocation to one environment (shimclient.Client).
type Shim interface {
	Do(ctx context.Context, c *shimclient.Call) (*http.Response, error)
}

// EventQueue stores asynchronous (Event) invocations durably before the 202
// (activator/async.Acceptor).
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

// Core is the typed invoke core: resolve → limits → lease → call the shim → result. It
// trusts its caller (authorization is the caller's: the Invoke API checks tokens, and an
// async event was authorized when it was accepted).
type Core struct {
	Region     string
	AccountID  string
	Router     Router
	Dispatcher Dispatcher
	Shim       Shim
	// Async stores Event invocations; nil refuses them.
	Async EventQueue
	// WaitDeadline bounds how long an invocation waits for an environment.
	WaitDeadline time.Duration
	// ShimGrace is added to the function timeout for the call to the shim (init, reset).
	ShimGrace time.Duration
	// Admission bounds the invocations waiting for an environment; nil: no bound.
	Admission *Admission
	Metrics   *metrics.Metrics
	Log       logr.Logger
	// Synced, when set, is closed once the router knows every Function, Version and Alias
	// the activator's informers first listed. Until then an invocation waits for it (at
	// most WaitDeadline, then ServiceException): a starting activator that is reached
	// before it is Ready (the endpoints still name its pod after a container restart, or
	// a caller uses its address) never answers 404 for a function that exists.
	Synced <-chan struct{}
}

var _ Invoker = (*Core)(nil)

// waitSynced waits until Synced is closed, ctx ends or WaitDeadline passes.
func (c *Core) waitSynced(ctx context.Context) *Error {
	return WaitSynced(ctx, c.Synced, c.WaitDeadline)
}

// WaitSynced waits until synced is closed (nil: it does not wait), ctx ends or wait passes
// (0: 30 s); then a retryable ServiceException says the activator is still starting.
func WaitSynced(ctx context.Context, synced <-chan struct{}, wait time.Duration) *Error {
	if synced == nil {
		return nil
	}
	select {
	case <-synced:
		return nil
	default:
	}
	if wait <= 0 {
		wait = 30 * time.Second
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-synced:
		return nil
	case <-ctx.Done():
		return ErrService("request cancelled while the activator was starting: " + ctx.Err().Error())
	case <-t.C:
		return ErrService("The activator is starting: it does not know the functions yet; retry.")
	}
}

// Invoke runs in. Errors are *Error.
func (c *Core) Invoke(ctx context.Context, in *Input) (*Output, error) {
	if err := c.waitSynced(ctx); err != nil {
		c.countFailure(metrics.Unresolved, metrics.Unresolved, err)
		return nil, err
	}
	route, err := c.resolve(in)
	if err != nil {
		c.countFailure(metrics.Unresolved, metrics.Unresolved, err)
		return nil, err
	}
	out, err := c.dispatch(ctx, in, &route)
	if err != nil {
		c.countFailure(route.Namespace, route.Function, err)
		return nil, err
	}
	return out, nil
}

// dispatch runs in on route by its invocation type.
func (c *Core) dispatch(ctx context.Context, in *Input, route *router.Route) (*Output, *Error) {
	switch in.InvocationType {
	case RequestResponse, "":
		if e := checkPayload(in.Payload, contract.MaxSyncPayload); e != nil {
			return nil, e
		}
		return c.run(ctx, in, route)
	case Event:
		return c.enqueue(ctx, in)
	case DryRun:
		return &Output{StatusCode: http.StatusNoContent, ExecutedVersion: route.Version, ContentLength: -1}, nil
	}
	return nil, errInvocationType(in.InvocationType)
}

// resolve asks the router for the version the call runs.
func (c *Core) resolve(in *Input) (router.Route, *Error) {
	route, err := c.Router.Resolve(in.Namespace, in.Function, in.Qualifier)
	if err == nil {
		return route, nil
	}
	var na *router.NotActiveError
	switch {
	case errors.Is(err, router.ErrFunctionNotFound):
		return route, ErrFunctionNotFound(contract.FunctionARN(c.Region, c.AccountID, in.Function))
	case errors.Is(err, router.ErrQualifierNotFound):
		return route, ErrFunctionNotFound(c.arn(in.Function, in.Qualifier))
	case errors.As(err, &na):
		return route, ErrNotActive(na.State)
	default:
		return route, ErrService(err.Error())
	}
}

// arn is the function's ARN, qualified when qualifier is not "".
func (c *Core) arn(fn, qualifier string) string {
	if qualifier == "" {
		return contract.FunctionARN(c.Region, c.AccountID, fn)
	}
	return contract.QualifiedFunctionARN(c.Region, c.AccountID, fn, qualifier)
}

// checkPayload refuses a payload over limit bytes or not JSON.
func checkPayload(p []byte, limit int) *Error {
	if len(p) > limit {
		return ErrRequestTooLarge(limit)
	}
	if len(p) > 0 && !jsonvalid.Valid(p) {
		var v any
		detail := "the payload is not valid JSON"
		if err := json.Unmarshal(p, &v); err != nil {
			detail = err.Error()
		}
		return ErrInvalidJSON(detail)
	}
	return nil
}

// enqueue accepts an Event invocation: stored durably, then 202. Without a queue it is
// refused rather than pretended.
func (c *Core) enqueue(ctx context.Context, in *Input) (*Output, *Error) {
	if c.Async == nil {
		return nil, ErrInvalidParameter("Asynchronous invocation (X-Amz-Invocation-Type: Event) is not enabled on this klambda activator; use RequestResponse.")
	}
	if in.RequestID != "" {
		return nil, ErrInvalidParameter("An Event invocation's request id is assigned when it is queued; send none.")
	}
	if e := checkPayload(in.Payload, contract.MaxAsyncPayload); e != nil {
		return nil, e
	}
	id, err := c.Async.Enqueue(ctx, AsyncEvent{
		Namespace: in.Namespace, Function: in.Function, Qualifier: in.Qualifier, Payload: in.Payload,
		ClientContext: in.ClientContext, TraceID: in.TraceID, Received: time.Now(),
	})
	if err != nil {
		var refused *Error // the queue refused the event for the caller (429 over a quota)
		if errors.As(err, &refused) {
			return nil, refused
		}
		c.Log.Error(err, "storing an asynchronous event failed", "namespace", in.Namespace, "function", in.Function)
		return nil, ErrService("The event could not be queued; retry.")
	}
	return &Output{StatusCode: http.StatusAccepted, RequestID: id, ContentLength: -1}, nil
}

func (c *Core) countFailure(namespace, function string, e *Error) {
	countFailure(c.Metrics, namespace, function, e)
}
