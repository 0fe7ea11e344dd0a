package peer

import (
	"context"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klambda/klambda/activator/invoke"
	"github.com/klambda/klambda/activator/testrig"
	"github.com/klambda/klambda/api/contract"
)

// fakeCore answers by function name and records what it ran.
type fakeCore struct {
	mu  sync.Mutex
	ran []invoke.Input
}

// runs is what it ran so far (read under its lock: the peer port's goroutines write it).
func (c *fakeCore) runs() []invoke.Input {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]invoke.Input(nil), c.ran...)
}

func (c *fakeCore) Invoke(_ context.Context, in *invoke.Input) (*invoke.Output, error) {
	c.mu.Lock()
	cp := *in
	cp.Payload = append([]byte(nil), in.Payload...)
	c.ran = append(c.ran, cp)
	c.mu.Unlock()
	switch in.Function {
	case "throttled":
		return nil, invoke.ErrThrottled(contract.ReasonReservedConcurrency)
	case "missing":
		return nil, invoke.ErrFunctionNotFound("arn:aws:lambda:us-east-1:000000000000:function:missing")
	case "dry":
		return &invoke.Output{StatusCode: http.StatusNoContent, ExecutedVersion: "3", ContentLength: -1}, nil
	}
	body := `{"echo":` + string(in.Payload) + `}`
	return &invoke.Output{StatusCode: http.StatusOK, RequestID: in.RequestID, ExecutedVersion: "7",
		FunctionError: map[bool]string{true: "Unhandled"}[in.Function == "fails"], LogResult: "bG9n",
		ContentLength: int64(len(body)), Body: io.NopCloser(strings.NewReader(body))}, nil
}

type tokens map[string]bool

func (t tokens) IsPeer(_ context.Context, tok string) (bool, error) { return t[tok], nil }

type owns struct {
	mine  atomic.Bool
	owner atomic.Value // string
}

func (o *owns) OwnsNamespace(string) bool { return o.mine.Load() }
func (o *owns) Owner(string) (string, bool) {
	a, _ := o.owner.Load().(string)
	return a, a != ""
}

// peerServer is a replica's peer port with core behind it.
func peerServer(t *testing.T, core invoke.Invoker, owned *atomic.Bool) *testrig.Server {
	t.Helper()
	s := testrig.NewServer(&Handler{Core: core, Owns: func(string) bool { return owned.Load() }, Verify: tokens{"peer-token": true}})
	t.Cleanup(s.Close)
	return s
}

func client(tok string) *Client {
	return &Client{Token: func() (string, error) { return tok, nil }}
}

func TestForwardCarriesTheInputAndTheOutput(t *testing.T) {
	core := &fakeCore{}
	var owned atomic.Bool
	owned.Store(true)
	s := peerServer(t, core, &owned)
	in := &invoke.Input{Namespace: "team-a", Function: "fails", Qualifier: "live", InvocationType: invoke.RequestResponse,
		Payload: []byte(`{"k":1}`), ClientContext: "e30=", TraceID: "Root=1-abc", LogTail: true, RequestID: "req-1"}
	out, err := client("peer-token").Forward(context.Background(), strings.TrimPrefix(s.URL, "http://"), in)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(out.Body)
	out.Close()
	if string(body) != `{"echo":{"k":1}}` || out.StatusCode != 200 || out.RequestID != "req-1" || out.ExecutedVersion != "7" ||
		out.FunctionError != "Unhandled" || out.LogResult != "bG9n" {
		t.Fatalf("output: %+v body %s", out, body)
	}
	got := core.runs()[0]
	got.Payload = nil
	want := *in
	want.Payload = nil
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("the owner ran %+v, want %+v", got, want)
	}
}

func TestForwardedErrorsKeepLambdasTypeAndReason(t *testing.T) {
	var owned atomic.Bool
	owned.Store(true)
	s := peerServer(t, &fakeCore{}, &owned)
	addr := strings.TrimPrefix(s.URL, "http://")
	_, err := client("peer-token").Forward(context.Background(), addr, &invoke.Input{Namespace: "a", Function: "throttled"})
	var e *invoke.Error
	if !errors.As(err, &e) || e.Status != 429 || e.Type != "TooManyRequestsException" ||
		e.Reason != contract.ReasonReservedConcurrency || e.RetryAfterSeconds != 1 || e.Fault != "User" {
		t.Fatalf("throttle: %#v", err)
	}
	_, err = client("peer-token").Forward(context.Background(), addr, &invoke.Input{Namespace: "a", Function: "missing"})
	if !errors.As(err, &e) || e.Status != 404 || e.Type != "ResourceNotFoundException" || !strings.Contains(e.Message, "function:missing") {
		t.Fatalf("not found: %#v", err)
	}
	out, err := client("peer-token").Forward(context.Background(), addr, &invoke.Input{Namespace: "a", Function: "dry", InvocationType: invoke.DryRun})
	if err != nil || out.StatusCode != 204 || out.ExecutedVersion != "3" || out.Body != nil {
		t.Fatalf("dry run: %+v %v", out, err)
	}
}

func TestPeerPortRefusesStrangersAndMisdirectedCalls(t *testing.T) {
	core := &fakeCore{}
	var owned atomic.Bool
	owned.Store(true)
	s := peerServer(t, core, &owned)
	addr := strings.TrimPrefix(s.URL, "http://")
	_, err := client("tenant-token").Forward(context.Background(), addr, &invoke.Input{Namespace: "a", Function: "f"})
	var e *invoke.Error
	if !errors.As(err, &e) || e.Type != "UnrecognizedClientException" {
		t.Fatalf("a token that is not a peer's: %v", err)
	}
	owned.Store(false)
	if _, err = client("peer-token").Forward(context.Background(), addr, &invoke.Input{Namespace: "a", Function: "f"}); !errors.Is(err, ErrNotOwner) {
		t.Fatalf("a replica that does not own the namespace: %v", err)
	}
	if len(core.runs()) != 0 {
		t.Fatalf("ran %d invocations it should have refused", len(core.runs()))
	}
	if _, err = client("peer-token").Forward(context.Background(), "127.0.0.1:1", &invoke.Input{Namespace: "a", Function: "f"}); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("a closed port: %v", err)
	}
}

func TestRouterRunsHereForwardsOrWaitsForAnOwner(t *testing.T) {
	local, remote := &fakeCore{}, &fakeCore{}
	var remoteOwns atomic.Bool
	s := peerServer(t, remote, &remoteOwns)
	o := &owns{}
	r := &Router{Local: local, Ownership: o, Client: client("peer-token"), Wait: 2 * time.Second, Retry: 10 * time.Millisecond}
	ctx := context.Background()

	o.mine.Store(true)
	if out, err := r.Invoke(ctx, &invoke.Input{Namespace: "a", Function: "f"}); err != nil || len(local.runs()) != 1 {
		t.Fatalf("owned here: %v, local ran %d", err, len(local.runs()))
	} else {
		out.Close()
	}
	// Events are stored by whichever replica accepts them.
	o.mine.Store(false)
	if out, err := r.Invoke(ctx, &invoke.Input{Namespace: "a", Function: "f", InvocationType: invoke.Event}); err != nil || len(local.runs()) != 2 {
		t.Fatalf("event: %v", err)
	} else {
		out.Close()
	}
	// The shard is changing hands: no owner, then the peer that does not own it yet, then it does.
	go func() {
		time.Sleep(50 * time.Millisecond)
		o.owner.Store(strings.TrimPrefix(s.URL, "http://"))
		time.Sleep(50 * time.Millisecond)
		remoteOwns.Store(true)
	}()
	out, err := r.Invoke(ctx, &invoke.Input{Namespace: "a", Function: "f", Payload: []byte(`1`)})
	if err != nil {
		t.Fatal(err)
	}
	out.Close()
	if len(remote.runs()) != 1 || len(local.runs()) != 2 {
		t.Fatalf("after the handoff: remote ran %d, local %d", len(remote.runs()), len(local.runs()))
	}
	// Nobody ever owns it: a ServiceException after Wait, not a hang.
	o.owner.Store("")
	r.Wait = 100 * time.Millisecond
	_, err = r.Invoke(ctx, &invoke.Input{Namespace: "b", Function: "f"})
	var e *invoke.Error
	if !errors.As(err, &e) || e.Type != "ServiceException" {
		t.Fatalf("no owner: %v", err)
	}
}

// A streamed invocation that reaches a replica not owning its namespace is forwarded and
// relayed piece by piece: the first piece reaches the caller before the function writes
// the next (the owner's environment waits for the test's gate, opened only once the
// piece arrived), and the outcome (a function error after the pieces) arrives at the end.
func TestForwardedStreamArrivesAsWritten(t *testing.T) {
	rig := testrig.New(testrig.Options{})
	t.Cleanup(rig.Close)
	rig.Function("f", -1, 0)
	shims := rig.Environments("f", "$LATEST", 1)
	gate := make(chan struct{})
	shims[0].StreamGate = gate
	var owned atomic.Bool
	owned.Store(true)
	s := peerServer(t, rig.Core, &owned)
	var o owns
	o.owner.Store(strings.TrimPrefix(s.URL, "http://"))
	r := &Router{Local: &fakeCore{}, Ownership: &o, Client: client("peer-token"), Wait: time.Second, Retry: 10 * time.Millisecond}

	out, err := r.Invoke(context.Background(), &invoke.Input{Namespace: testrig.Namespace, Function: "f",
		Payload: []byte(`{"stream":["first ","second"],"fail":"boom"}`), ResponseStream: true, LogTail: true})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if !out.Streamed || out.ContentType != "text/plain" {
		t.Fatalf("forwarded output: streamed %v, content type %q", out.Streamed, out.ContentType)
	}
	buf := make([]byte, 64)
	got := make(chan string, 1)
	go func() { n, _ := io.ReadAtLeast(out.Body, buf, len("first ")); got <- string(buf[:n]) }()
	select {
	case p := <-got:
		if p != "first " {
			t.Fatalf("first piece %q", p)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the first piece did not arrive before the function wrote the next: the forward buffers")
	}
	close(gate)
	rest, err := io.ReadAll(out.Body)
	if err != nil || string(rest) != "second" {
		t.Fatalf("rest %q %v", rest, err)
	}
	if !out.Complete || out.FunctionError != "Unhandled" || out.ErrorType != "errorString" ||
		!strings.Contains(string(out.ErrorBody), "boom") || out.LogResult == "" {
		t.Fatalf("outcome: %+v", out)
	}
}

// A stream the owner could not finish is not relayed as complete.
func TestForwardedStreamCutOff(t *testing.T) {
	core := invokerFunc(func(_ context.Context, in *invoke.Input) (*invoke.Output, error) {
		pr, pw := io.Pipe()
		go func() { _, _ = pw.Write([]byte("part")); pw.CloseWithError(io.ErrUnexpectedEOF) }()
		return &invoke.Output{StatusCode: 200, Streamed: true, ContentLength: -1, Body: pr}, nil
	})
	var owned atomic.Bool
	owned.Store(true)
	s := peerServer(t, core, &owned)
	out, err := client("peer-token").Forward(context.Background(), strings.TrimPrefix(s.URL, "http://"),
		&invoke.Input{Namespace: "ns", Function: "f", ResponseStream: true})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	b, err := io.ReadAll(out.Body)
	if err == nil || out.Complete || string(b) != "part" {
		t.Fatalf("cut-off stream: %q %v complete %v", b, err, out.Complete)
	}
}

type invokerFunc func(context.Context, *invoke.Input) (*invoke.Output, error)

func (f invokerFunc) Invoke(ctx context.Context, in *invoke.Input) (*invoke.Output, error) {
	return f(ctx, in)
}
