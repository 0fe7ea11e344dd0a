package async

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/klambda/klambda/activator/invoke"
	"github.com/klambda/klambda/api/contract"
)

// scriptedCore answers with a scripted Output or error and records the Input.
type scriptedCore struct {
	got    *invoke.Input
	out    *invoke.Output
	err    error
	closed bool
}

func (s *scriptedCore) Invoke(_ context.Context, in *invoke.Input) (*invoke.Output, error) {
	s.got = in
	if s.out != nil && s.out.Body != nil {
		s.out.Body = closeNoter{s.out.Body, &s.closed}
	}
	return s.out, s.err
}

type closeNoter struct {
	io.Reader
	closed *bool
}

func (c closeNoter) Close() error { *c.closed = true; return nil }

func TestCoreInvokerMapsTheCore(t *testing.T) {
	ok := &scriptedCore{out: &invoke.Output{StatusCode: 200, ExecutedVersion: "$LATEST", ContentLength: -1,
		Body: io.NopCloser(strings.NewReader(`{"ok":1}`))}}
	res, err := CoreInvoker{ok}.Invoke(context.Background(), InvokeRequest{RequestID: "r-1", Namespace: "team-a", Function: "fn",
		Qualifier: "live", Payload: []byte(`{"x":1}`), ClientContext: "e30=", TraceID: "Root=1-abc"})
	if err != nil {
		t.Fatal(err)
	}
	want := invoke.Input{Namespace: "team-a", Function: "fn", Qualifier: "live", InvocationType: contract.InvocationRequestResponse,
		Payload: []byte(`{"x":1}`), ClientContext: "e30=", TraceID: "Root=1-abc", RequestID: "r-1"}
	if g := ok.got; g.Namespace != want.Namespace || g.Function != want.Function || g.Qualifier != want.Qualifier ||
		g.InvocationType != want.InvocationType || string(g.Payload) != string(want.Payload) || g.ClientContext != want.ClientContext ||
		g.TraceID != want.TraceID || g.RequestID != want.RequestID || g.LogTail {
		t.Errorf("input %+v, want %+v", *g, want)
	}
	if res.StatusCode != 200 || res.ExecutedVersion != "$LATEST" || res.FunctionError != "" || string(res.Payload) != `{"ok":1}` ||
		res.outcome() != outcomeSuccess || !ok.closed {
		t.Errorf("success %+v (body closed: %v)", res, ok.closed)
	}

	fnErr := &scriptedCore{out: &invoke.Output{StatusCode: 200, ExecutedVersion: "3", FunctionError: "Unhandled", ContentLength: -1,
		Body: io.NopCloser(strings.NewReader(`{"errorMessage":"boom"}`))}}
	res, _ = CoreInvoker{fnErr}.Invoke(context.Background(), InvokeRequest{Namespace: "n", Function: "fn"})
	if res.StatusCode != 200 || res.ExecutedVersion != "3" || res.FunctionError != "Unhandled" || res.outcome() != outcomeFunctionError {
		t.Errorf("function error %+v", res)
	}

	// A response larger than a record is cut to what a record carries.
	big := &scriptedCore{out: &invoke.Output{StatusCode: 200, ContentLength: -1,
		Body: io.NopCloser(strings.NewReader(`"` + strings.Repeat("x", maxPayload+10) + `"`))}}
	if res, _ = (CoreInvoker{big}).Invoke(context.Background(), InvokeRequest{}); len(res.Payload) != maxPayload || !big.closed {
		t.Errorf("big answer: %d bytes kept", len(res.Payload))
	}

	for _, c := range []struct {
		err     *invoke.Error
		outcome outcome
	}{
		{invoke.ErrThrottled(contract.ReasonReservedConcurrency), outcomeRetryable},
		{invoke.ErrService("no environment"), outcomeRetryable},
		{invoke.ErrNotActive("Pending"), outcomeRetryable},
		{invoke.ErrFunctionNotFound("arn"), outcomeInvocationError},
	} {
		res, err := CoreInvoker{&scriptedCore{err: c.err}}.Invoke(context.Background(), InvokeRequest{})
		if err != nil || res.StatusCode != c.err.Status || string(res.Payload) != string(c.err.Body()) || res.outcome() != c.outcome {
			t.Errorf("%s: %+v %v", c.err.Type, res, err)
		}
	}
	// An invoker that could not answer (a peer unreachable): a system error, retried.
	boom := errors.New("peer unreachable")
	if _, err := (CoreInvoker{&scriptedCore{err: boom}}).Invoke(context.Background(), InvokeRequest{}); !errors.Is(err, boom) {
		t.Errorf("failure: %v", err)
	}
}
