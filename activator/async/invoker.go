package async

import "context"

// Invoker runs one invocation of an asynchronous event; the activator's dispatcher
// implements it, so that concurrency limits, throttling and scale from zero apply to
// asynchronous events as to synchronous ones.
//
// Invoke returns a result for everything the activator answered, and an error only when it
// could not answer (the worker treats that as a system error, 500, and retries):
//
//	success:         StatusCode 200, FunctionError "", Payload = response (may be empty)
//	function error:  StatusCode 200, FunctionError "Unhandled" (X-Amz-Function-Error),
//	                 Payload = error object; timeouts and crashes are function errors
//	throttle:        StatusCode 429 (TooManyRequestsException), Payload = error body
//	system error:    StatusCode 5xx (ServiceException, ResourceNotReadyException, ...)
//	other 4xx:       an invocation error that retrying cannot fix (the function is gone):
//	                 the event goes to the failure path; 409 (function Pending) is retried
//	                 like a throttle
type Invoker interface {
	Invoke(ctx context.Context, req InvokeRequest) (InvokeResult, error)
}

// InvokeRequest is an asynchronous event being invoked.
type InvokeRequest struct {
	// RequestID is the event's; the function should see it as its request id, as in Lambda.
	RequestID string
	Namespace string
	Function  string
	// Qualifier as the caller gave it ("" for unqualified).
	Qualifier     string
	Payload       []byte
	ClientContext string
	TraceID       string
}

// InvokeResult is what the activator answered.
type InvokeResult struct {
	StatusCode int
	// ExecutedVersion is X-Amz-Executed-Version ($LATEST or a number), when known.
	ExecutedVersion string
	// FunctionError is X-Amz-Function-Error ("Unhandled"), empty on success.
	FunctionError string
	// Payload is the response, the function's error object, or the invocation error body
	// ({"Type":…,"message":…}).
	Payload []byte
}

type outcome int

const (
	outcomeSuccess outcome = iota
	outcomeFunctionError
	outcomeRetryable // throttle, system error, function not ready
	outcomeInvocationError
)

func (r InvokeResult) outcome() outcome {
	switch {
	case r.StatusCode >= 200 && r.StatusCode < 300 && r.FunctionError == "":
		return outcomeSuccess
	case r.StatusCode >= 200 && r.StatusCode < 300:
		return outcomeFunctionError
	case r.StatusCode == 429 || r.StatusCode == 409 || r.StatusCode >= 500:
		return outcomeRetryable
	default:
		return outcomeInvocationError
	}
}
