package environment

import "fmt"

// The environment's two state variables change only through setPhaseLocked and
// setRuntimeLocked, which accept only the transitions of these tables: anything else is
// a bug in the state machine, and panics rather than run on in a state Lambda never has.
// The runtime's own calls that are illegal in its state never get here: they are refused
// with a StateError first (Next, CheckAnswer, Respond, ReportError, ReportInitError).

// phaseTransitions is every legal change of phase and what makes it.
var phaseTransitions = map[Phase][]Phase{
	// Init ends when the runtime and every extension call next (Idle), when init fails or
	// times out, or the runtime exits (InitFailed), when an invoke that retried a failed
	// init runs out of time (Resetting), or when the shim stops.
	PhaseInit: {PhaseIdle, PhaseInitFailed, PhaseResetting, PhaseShutdown},
	// An idle environment takes an invocation, or its runtime exits (InitFailed: the
	// next invoke starts it again).
	PhaseIdle: {PhaseInvoke, PhaseInitFailed, PhaseShutdown},
	// An invocation ends when the runtime and INVOKE extensions are back in next (Idle),
	// or on a timeout or crash (Resetting).
	PhaseInvoke: {PhaseIdle, PhaseResetting, PhaseShutdown},
	// A failed init is retried by the next invoke: by a reset (exec mode), or by
	// waiting for the runtime the kubelet restarts (sidecar mode, Init).
	PhaseInitFailed: {PhaseInit, PhaseResetting, PhaseShutdown},
	// A reset starts the next generation's init.
	PhaseResetting: {PhaseInit, PhaseShutdown},
	PhaseShutdown:  nil,
}

// runtimeTransitions is every legal change of the runtime's state and what makes it.
var runtimeTransitions = map[RuntimeState][]RuntimeState{
	// A started runtime calls next (Ready) or posts /init/error.
	RuntimeStarting: {RuntimeReady, RuntimeInitError, RuntimeExited},
	// A runtime in next is given an event (Invoking), or asks again after its
	// connection dropped (Ready).
	RuntimeReady: {RuntimeReady, RuntimeInvoking, RuntimeExited},
	// It answers its event (response or error).
	RuntimeInvoking: {RuntimeResponded, RuntimeExited},
	// It calls next for the next event.
	RuntimeResponded: {RuntimeReady, RuntimeExited},
	RuntimeInitError: {RuntimeExited},
	// A stopped runtime's generation is started again (Starting), or, in sidecar mode, a
	// runtime the kubelet restarted calls next (Ready); a reset marks a runtime that
	// already exited as exited again.
	RuntimeExited: {RuntimeStarting, RuntimeReady, RuntimeExited},
}

// legal tells whether table allows from → to.
func legal[S comparable](table map[S][]S, from, to S) bool {
	for _, s := range table[from] {
		if s == to {
			return true
		}
	}
	return false
}

// setPhaseLocked moves the environment to phase p (a legal transition: see
// phaseTransitions), wakes everything waiting for a phase change and dispatches a queued
// invocation once the previous one is over.
func (e *Environment) setPhaseLocked(p Phase) {
	if !legal(phaseTransitions, e.phase, p) {
		panic(fmt.Sprintf("environment: illegal phase transition %s → %s", e.phase, p))
	}
	e.phase = p
	e.phaseChangedLocked()
}

// setRuntimeLocked moves the runtime to state s (a legal transition: see
// runtimeTransitions).
func (e *Environment) setRuntimeLocked(s RuntimeState) {
	if !legal(runtimeTransitions, e.runtime, s) {
		panic(fmt.Sprintf("environment: illegal runtime transition %s → %s", e.runtime, s))
	}
	e.runtime = s
}
