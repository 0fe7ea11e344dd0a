package environment

import (
	"bytes"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// These tests drive the state machine through its own API, without HTTP.

type fakeSupervisor struct {
	starts chan uint64
	stops  atomic.Int32
}

func (f *fakeSupervisor) Start(gen uint64) error      { f.starts <- gen; return nil }
func (f *fakeSupervisor) Stop(time.Duration)          { f.stops.Add(1) }
func (f *fakeSupervisor) MaxMemoryUsedMB() int        { return 20 }
func (f *fakeSupervisor) HasExternalExtensions() bool { return false }
func (f *fakeSupervisor) HasRestartingRuntime() bool  { return false }

func expect(t *testing.T, what string, got, want any) {
	t.Helper()
	if got != want {
		t.Fatalf("%s: got %v, want %v", what, got, want)
	}
}

// TestTransitionTables: setPhaseLocked and setRuntimeLocked accept exactly the
// transitions of their tables, and every state has an entry.
func TestTransitionTables(t *testing.T) {
	panics := func(f func()) (p bool) {
		defer func() { p = recover() != nil }()
		f()
		return false
	}
	for from := PhaseInit; from <= PhaseShutdown; from++ {
		if _, ok := phaseTransitions[from]; !ok {
			t.Errorf("phase %s has no entry", from)
		}
		for to := PhaseInit; to <= PhaseShutdown; to++ {
			e := &Environment{phase: from, changed: make(chan struct{})}
			if got := panics(func() { e.setPhaseLocked(to) }); got == legal(phaseTransitions, from, to) {
				t.Errorf("phase %s → %s: panicked %v, legal %v", from, to, got, !got)
			}
		}
	}
	for from := RuntimeStarting; from <= RuntimeExited; from++ {
		if _, ok := runtimeTransitions[from]; !ok {
			t.Errorf("runtime state %s has no entry", from)
		}
		for to := RuntimeStarting; to <= RuntimeExited; to++ {
			e := &Environment{runtime: from}
			if got := panics(func() { e.setRuntimeLocked(to) }); got == legal(runtimeTransitions, from, to) {
				t.Errorf("runtime %s → %s: panicked %v, legal %v", from, to, got, !got)
			}
		}
	}
}

// machine is an Environment under test with a fake supervisor.
type machine struct {
	t    *testing.T
	env  *Environment
	sup  *fakeSupervisor
	next chan nextResult // what waiting Next calls were given
}

type nextResult struct {
	inv *Invocation
	err error
}

func newMachine(t *testing.T) *machine {
	t.Helper()
	cfg := Config{FunctionName: "f", FunctionVersion: "1", MemorySizeMB: 128, Timeout: time.Minute,
		Region: "eu-west-1", AccountID: "1", InitTimeout: time.Minute, ShutdownGrace: 10 * time.Millisecond}
	m := &machine{t: t, sup: &fakeSupervisor{starts: make(chan uint64, 16)}, next: make(chan nextResult, 16)}
	m.env = NewEnvironment(&cfg, NewLogSink(&bytes.Buffer{}), m.sup)
	m.env.Begin()
	<-m.sup.starts
	t.Cleanup(m.env.Shutdown)
	return m
}

// callNext is the runtime's GET /next: the event at once, or nil (it waits).
func (m *machine) callNext() (*Invocation, error) {
	inv, _, err := m.env.Next(nil, func(inv *Invocation, err error) { m.next <- nextResult{inv, err} })
	return inv, err
}

func (m *machine) state() (Phase, RuntimeState) {
	m.env.mu.Lock()
	defer m.env.mu.Unlock()
	return m.env.phase, m.env.runtime
}

func (m *machine) want(phase Phase, rt RuntimeState) {
	m.t.Helper()
	if p, r := m.state(); p != phase || r != rt {
		m.t.Fatalf("state %s/%s, want %s/%s", p, r, phase, rt)
	}
}

// invoke starts an invocation with id; its done is reported on the returned channel.
func (m *machine) invoke(id string) (*Invocation, chan error) {
	inv := NewInvocation()
	inv.ID = id
	done := make(chan error, 1)
	m.env.Invoke(inv, func(err error) { done <- err })
	return inv, done
}

// into brings a new machine to the runtime state rt by legal calls.
func into(t *testing.T, rt RuntimeState) *machine {
	t.Helper()
	m := newMachine(t)
	switch rt {
	case RuntimeStarting:
	case RuntimeReady:
		if _, err := m.callNext(); err != nil {
			t.Fatal(err)
		}
	case RuntimeInvoking:
		if _, err := m.callNext(); err != nil {
			t.Fatal(err)
		}
		m.invoke("inv-1")
		if r := <-m.next; r.err != nil || r.inv.ID != "inv-1" {
			t.Fatalf("next gave %v, %v", r.inv, r.err)
		}
	case RuntimeResponded:
		m = into(t, RuntimeInvoking)
		if err := m.env.Respond("inv-1", GetBuffer()); err != nil {
			t.Fatal(err)
		}
	case RuntimeInitError:
		if err := m.env.ReportInitError("Runtime.X", []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	case RuntimeExited:
		m.env.RuntimeExited(1, errors.New("exit status 1"))
	}
	m.want(m.env.Phase(), rt)
	return m
}

// TestRuntimeCallsInEveryState: each of the runtime's calls (next, response, error,
// init/error) in each of its states either makes its transition (legal) or is refused
// with a StateError and changes nothing (illegal).
func TestRuntimeCallsInEveryState(t *testing.T) {
	calls := map[string]func(m *machine) error{
		"next":       func(m *machine) error { _, err := m.callNext(); return err },
		"response":   func(m *machine) error { return m.env.Respond("inv-1", GetBuffer()) },
		"error":      func(m *machine) error { return m.env.ReportError("inv-1", "Runtime.X", []byte(`{}`)) },
		"init/error": func(m *machine) error { return m.env.ReportInitError("Runtime.X", []byte(`{}`)) },
	}
	// legal: the state a call leads to, by the state it is made in; absent: refused.
	legalCalls := map[string]map[RuntimeState]RuntimeState{
		"next":       {RuntimeStarting: RuntimeReady, RuntimeReady: RuntimeReady, RuntimeResponded: RuntimeReady},
		"response":   {RuntimeInvoking: RuntimeResponded},
		"error":      {RuntimeInvoking: RuntimeResponded},
		"init/error": {RuntimeStarting: RuntimeInitError},
	}
	for name, call := range calls {
		for from := RuntimeStarting; from <= RuntimeExited; from++ {
			t.Run(fmt.Sprintf("%s in %s", name, from), func(t *testing.T) {
				m := into(t, from)
				phase, _ := m.state()
				err := call(m)
				to, ok := legalCalls[name][from]
				if !ok {
					var se *StateError
					if !errors.As(err, &se) {
						t.Fatalf("got %v, want a StateError", err)
					}
					m.want(phase, from)
					return
				}
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if !legal(runtimeTransitions, from, to) {
					t.Fatalf("%s → %s is not in the table", from, to)
				}
				if _, rt := m.state(); rt != to {
					t.Fatalf("runtime %s, want %s", rt, to)
				}
			})
		}
	}
}

// TestAnswerForAnotherInvocation: a response or error for another request id is refused
// with ErrInvalidRequestID, and the invocation can still be answered.
func TestAnswerForAnotherInvocation(t *testing.T) {
	m := into(t, RuntimeInvoking)
	if err := m.env.Respond("other", GetBuffer()); !errors.Is(err, ErrInvalidRequestID) {
		t.Fatalf("response: %v", err)
	}
	if err := m.env.ReportError("other", "", nil); !errors.Is(err, ErrInvalidRequestID) {
		t.Fatalf("error: %v", err)
	}
	m.want(PhaseInvoke, RuntimeInvoking)
	if err := m.env.Respond("inv-1", GetBuffer()); err != nil {
		t.Fatal(err)
	}
	m.want(PhaseInvoke, RuntimeResponded)
}

// TestPhasesOfAWarmInvocation: Init → Idle (the runtime calls next) → Invoke (an
// invocation) → Idle (answered, the runtime back in next); the invoke's done is called
// once the result is known.
func TestPhasesOfAWarmInvocation(t *testing.T) {
	m := newMachine(t)
	m.want(PhaseInit, RuntimeStarting)
	if inv, err := m.callNext(); inv != nil || err != nil {
		t.Fatalf("next during init: %v, %v", inv, err)
	}
	m.want(PhaseIdle, RuntimeReady)
	inv, done := m.invoke("a")
	r := <-m.next
	if r.inv != inv {
		t.Fatalf("next gave %v", r.inv)
	}
	m.want(PhaseInvoke, RuntimeInvoking)
	select {
	case err := <-done:
		t.Fatalf("done before the answer: %v", err)
	default:
	}
	buf := GetBuffer()
	buf.WriteString(`"ok"`)
	if err := m.env.Respond("a", buf); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	expect(t, "result", string(inv.Result().ResultBody()), `"ok"`)
	m.want(PhaseInvoke, RuntimeResponded)
	r.inv.Release()
	if _, err := m.callNext(); err != nil {
		t.Fatal(err)
	}
	m.want(PhaseIdle, RuntimeReady)
}

// TestInvokeRefusals: a second invoke while one runs is ErrBusy; after shutdown every
// invoke is ErrShuttingDown; neither changes the state.
func TestInvokeRefusals(t *testing.T) {
	m := into(t, RuntimeInvoking)
	if _, done := m.invoke("second"); !errors.Is(<-done, ErrBusy) {
		t.Fatal("second invoke not refused as busy")
	}
	m.want(PhaseInvoke, RuntimeInvoking)
	m.env.Shutdown()
	if _, done := m.invoke("late"); !errors.Is(<-done, ErrShuttingDown) {
		t.Fatal("invoke after shutdown not refused")
	}
	if p, _ := m.state(); p != PhaseShutdown {
		t.Fatalf("phase %s", p)
	}
}

// TestInvokeDuringInitWaits: an invoke that arrives during init is dispatched when the
// runtime first calls next.
func TestInvokeDuringInitWaits(t *testing.T) {
	m := newMachine(t)
	inv, _ := m.invoke("early")
	time.Sleep(20 * time.Millisecond)
	m.want(PhaseInit, RuntimeStarting)
	got, err := m.callNext()
	if err != nil {
		t.Fatal(err)
	}
	if got == nil {
		r := <-m.next
		got, err = r.inv, r.err
	}
	if err != nil || got != inv {
		t.Fatalf("next gave %v, %v", got, err)
	}
	m.want(PhaseInvoke, RuntimeInvoking)
}

// TestRuntimeExitDuringInvocationResets: the runtime exiting while it runs an
// invocation answers it with Runtime.ExitError and resets the environment (Resetting,
// then Init of the next generation).
func TestRuntimeExitDuringInvocationResets(t *testing.T) {
	m := into(t, RuntimeInvoking)
	m.env.mu.Lock()
	inv := m.env.current
	m.env.mu.Unlock()
	m.env.RuntimeExited(1, errors.New("exit status 2"))
	<-inv.Done()
	expect(t, "error type", inv.Result().ErrorType, ErrorTypeExit)
	select {
	case gen := <-m.sup.starts:
		expect(t, "generation", gen, uint64(2))
	case <-time.After(5 * time.Second):
		t.Fatal("the next generation never started")
	}
	m.want(PhaseInit, RuntimeStarting)
}
