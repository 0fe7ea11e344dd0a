// Package invokeclient is how a poller calls its function: synchronously (RequestResponse)
// through the activator's Lambda Invoke API, with the AWS SDK's Lambda client, exactly as any
// Lambda client would. It also turns the activator's answer into the batch package's Result:
// 200 is a success (or a partial failure under ReportBatchItemFailures), 200 with
// X-Amz-Function-Error a function error, 429 TooManyRequestsException a throttle, anything
// else a system error (the batch never reached the function).
package invokeclient

import (
	"context"
	"errors"

	"github.com/klambda/klambda/eventsources/batch"
	"github.com/klambda/klambda/eventsources/events"
)

// Request is one synchronous invocation.
type Request struct {
	// Namespace of the function.
	Namespace string
	// FunctionName as the mapping names it: name, name:qualifier or an ARN.
	FunctionName string
	// Payload is the event JSON.
	Payload []byte
	// Async invokes with InvocationType Event (on-failure destinations that are Functions).
	Async bool
	// Release, if set, is called once the invoker will never read Payload again, so that the
	// caller may reuse its buffer. An invoker that cannot tell never calls it (the buffer is
	// then left to the garbage collector).
	Release func()
}

// Response is the activator's answer to an invocation that reached it.
type Response struct {
	StatusCode      int
	FunctionError   string // X-Amz-Function-Error: "Unhandled", "Handled", or empty
	ExecutedVersion string
	Payload         []byte
	RequestID       string
}

// Invoker invokes functions. Tests use a fake activator (an httptest server speaking the
// Invoke API) behind the real SDK client, or any other implementation.
type Invoker interface {
	Invoke(ctx context.Context, req Request) (Response, error)
}

// ThrottledError is a 429 from the activator: the function's concurrency is exhausted.
type ThrottledError struct{ Message string }

func (e *ThrottledError) Error() string { return "throttled: " + e.Message }

// Classify maps an invocation's outcome to what Delivery needs. With
// reportBatchItemFailures, a successful response is parsed for batchItemFailures; known
// tells whether an identifier belongs to the batch (an unknown one fails the whole batch, as
// in Lambda).
func Classify(resp Response, err error, reportBatchItemFailures bool, known func(string) bool) batch.Result {
	if err != nil {
		var t *ThrottledError
		if errors.As(err, &t) {
			return batch.Throttled()
		}
		return batch.SystemError()
	}
	if resp.FunctionError != "" {
		return batch.FunctionError()
	}
	if !reportBatchItemFailures {
		return batch.Success()
	}
	ids, perr := events.ParseBatchItemFailures(resp.Payload, known)
	if perr != nil {
		return batch.FunctionError()
	}
	if len(ids) == 0 {
		return batch.Success()
	}
	return batch.PartialFailure(ids...)
}
