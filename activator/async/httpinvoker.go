package async

import (
	"bytes"
	"context"
	"net/http"
	"net/url"

	"github.com/klambda/klambda/activator/invoke"
	"github.com/klambda/klambda/api/contract"
)

// HTTPInvoker is an Invoker over the activator's own Invoke API handler, called in
// process: each event becomes a RequestResponse call, so routing, concurrency limits,
// throttling and scale from zero apply unchanged. Handler must not check the caller's
// token (the permission was checked when the event was accepted): give it a copy of the
// Invoke handler with authorization off.
type HTTPInvoker struct {
	Handler http.Handler
}

var _ Invoker = HTTPInvoker{}

// Invoke builds the call, runs the handler and reads the answer.
func (h HTTPInvoker) Invoke(ctx context.Context, req InvokeRequest) (InvokeResult, error) {
	u := "/namespaces/" + url.PathEscape(req.Namespace) + contract.InvokePathPrefix + url.PathEscape(req.Function) + "/invocations"
	if req.Qualifier != "" {
		u += "?Qualifier=" + url.QueryEscape(req.Qualifier)
	}
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(req.Payload))
	if err != nil {
		return InvokeResult{}, err
	}
	r.Header.Set(contract.HeaderInvocationType, contract.InvocationRequestResponse)
	r.Header.Set("Content-Type", "application/json")
	// The event's request id becomes the invocation's (Lambda keeps one id from the 202 to
	// the function's context); the handler honours it only without Auth.
	r.Header.Set(invoke.HeaderAsyncRequestID, req.RequestID)
	if req.ClientContext != "" {
		r.Header.Set(contract.HeaderClientContext, req.ClientContext)
	}
	if req.TraceID != "" {
		r.Header.Set(contract.HeaderTraceID, req.TraceID)
	}
	w := &answer{header: http.Header{}}
	h.Handler.ServeHTTP(w, r)
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return InvokeResult{
		StatusCode:      w.status,
		ExecutedVersion: w.header.Get(contract.HeaderExecutedVersion),
		FunctionError:   w.header.Get(contract.HeaderFunctionError),
		Payload:         w.body.Bytes(),
	}, nil
}

// answer records what the handler wrote.
type answer struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (a *answer) Header() http.Header { return a.header }

func (a *answer) WriteHeader(status int) {
	if a.status == 0 {
		a.status = status
	}
}

func (a *answer) Write(b []byte) (int, error) {
	if a.status == 0 {
		a.status = http.StatusOK
	}
	if a.body.Len()+len(b) > maxPayload { // keep what a record can carry
		b = b[:max(0, maxPayload-a.body.Len())]
	}
	return a.body.Write(b)
}

// Flush lets a handler that streams call http.Flusher.
func (a *answer) Flush() {}
