package async

import (
	"context"
	"errors"
	"io"

	"github.com/klambda/klambda/activator/invoke"
	"github.com/klambda/klambda/api/contract"
)

// CoreInvoker is an Invoker over the activator's typed invoke core (invoke.Core, or an
// invoke.Invoker that stands in for it): each event is a RequestResponse invocation
// with the event's request id, so routing, concurrency limits, throttling and scale from
// zero apply as to synchronous calls. The core checks no token: the permission was
// checked when the event was accepted.
type CoreInvoker struct {
	Core invoke.Invoker
}

var _ Invoker = CoreInvoker{}

// Invoke runs the event and reads the answer: the response (at most what a record
// carries), or the invocation error's status and body.
func (c CoreInvoker) Invoke(ctx context.Context, req InvokeRequest) (InvokeResult, error) {
	out, err := c.Core.Invoke(ctx, &invoke.Input{
		Namespace: req.Namespace, Function: req.Function, Qualifier: req.Qualifier,
		InvocationType: contract.InvocationRequestResponse, Payload: req.Payload,
		ClientContext: req.ClientContext, TraceID: req.TraceID, RequestID: req.RequestID,
	})
	if err != nil {
		var e *invoke.Error
		if errors.As(err, &e) {
			return InvokeResult{StatusCode: e.Status, Payload: e.Body()}, nil
		}
		return InvokeResult{}, err
	}
	res := InvokeResult{StatusCode: out.StatusCode, ExecutedVersion: out.ExecutedVersion, FunctionError: out.FunctionError}
	if out.Body != nil {
		defer out.Body.Close()
		if res.Payload, err = io.ReadAll(io.LimitReader(out.Body, maxPayload)); err != nil {
			// The environment's answer broke off: the invocation's outcome is unknown.
			return InvokeResult{}, err
		}
	}
	return res, nil
}
