package environment

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/klambda/klambda/internal/jsonvalid"
)

// Phase is the execution environment's lifecycle phase (spec §7.2).
type Phase int

const (
	// PhaseInit: the runtime (and extensions) are initialising.
	PhaseInit Phase = iota
	// PhaseIdle: initialised; the runtime waits in /next and no invocation runs.
	PhaseIdle
	// PhaseInvoke: an invocation runs (or the runtime/extensions have not called next after it).
	PhaseInvoke
	// PhaseInitFailed: init failed; the next invoke retries it inside its own timeout.
	PhaseInitFailed
	// PhaseResetting: the runtime is being stopped after a timeout or crash.
	PhaseResetting
	// PhaseShutdown: the shim is stopping.
	PhaseShutdown
)

var phaseNames = [...]string{"Init", "Idle", "Invoke", "InitFailed", "Resetting", "Shutdown"}

func (p Phase) String() string { return phaseNames[p] }

// RuntimeState is where the runtime is in its Runtime API loop.
type RuntimeState int

const (
	// RuntimeStarting: started, has not called /next yet in this generation.
	RuntimeStarting RuntimeState = iota
	// RuntimeReady: blocked in /next.
	RuntimeReady
	// RuntimeInvoking: received an event, has not answered it.
	RuntimeInvoking
	// RuntimeResponded: answered, not back in /next yet.
	RuntimeResponded
	// RuntimeInitError: posted /init/error.
	RuntimeInitError
	// RuntimeExited: its process is gone (or being stopped).
	RuntimeExited
)

var runtimeStateNames = [...]string{"Started", "Ready", "Invoking", "ResponseSent", "InitError", "Exited"}

func (s RuntimeState) String() string { return runtimeStateNames[s] }

// Reasons for a reset, as Lambda's SHUTDOWN event names them.
const (
	ResetTimeout  = "timeout"
	ResetFailure  = "failure"
	ResetSpindown = "spindown"
)

// Supervisor owns the runtime's processes.
type Supervisor interface {
	// Start starts the runtime (and external extensions) of generation gen; exits are
	// reported with Environment.RuntimeExited(gen, err). Sidecar mode starts nothing.
	Start(gen uint64) error
	// Stop stops every runtime and extension process: SIGTERM, then SIGKILL after grace
	// (grace 0: SIGKILL at once).
	Stop(grace time.Duration)
	// MaxMemoryUsedMB is the peak memory of the runtime's processes (see README).
	MaxMemoryUsedMB() int
	// HasExternalExtensions tells whether the shim started extension processes.
	HasExternalExtensions() bool
	// HasRestartingRuntime: something else (the kubelet) restarts the runtime after it
	// exits, so a /next from a new process may arrive at any time (sidecar mode).
	HasRestartingRuntime() bool
}

// initFailure is why an init failed, kept to answer the invoke that retries it.
type initFailure struct {
	errType string
	body    []byte // the runtime's /init/error body, if it posted one
	exit    error  // the process exit, if it exited
	timeout bool
}

// Environment is the state machine of one execution environment.
type Environment struct {
	cfg  *Config
	logs *LogSink
	sup  Supervisor

	mu      sync.Mutex
	phase   Phase
	runtime RuntimeState
	gen     uint64
	genDone chan struct{} // closed when the generation ends
	changed chan struct{} // closed and replaced on every phase change

	initStart    time.Time
	initDuration time.Duration
	reportInit   bool
	failure      *initFailure

	busy    bool        // an invoke waits for its result
	current *Invocation // the invocation of PhaseInvoke
	// pending is current's event until the runtime takes it (see offerLocked).
	pending *Invocation
	// queued is the next invocation, waiting for the runtime to be back in next.
	queued *queuedInvoke

	exts      []*Extension
	extByID   map[string]*Extension
	resetting bool

	// waiter is the /next call waiting for an event (see Next), nil when none.
	waiter *NextWait

	// pendingReport writes END/REPORT of an invocation answered without a tail, once the
	// caller has its answer (see Respond); nil when there is none.
	pendingReport func()

	// peakLater: the supervisor is a PeakKeeper, so REPORT lines may read Max Memory Used
	// when they are written out.
	peakLater bool
}

// NewEnvironment returns an environment in PhaseInit of generation 1. The caller starts
// the supervisor (Begin).
func NewEnvironment(cfg *Config, logs *LogSink, sup Supervisor) *Environment {
	_, peakLater := sup.(PeakKeeper)
	e := &Environment{
		peakLater: peakLater,
		cfg:       cfg,
		logs:      logs,
		sup:       sup,
		phase:     PhaseInit,
		gen:       1,
		genDone:   make(chan struct{}),
		changed:   make(chan struct{}),
		initStart: time.Now(),
		extByID:   map[string]*Extension{},
	}
	logs.SetMaxMemoryUsed(e.maxMemoryUsedMB)
	return e
}

// Begin starts the first generation's runtime.
func (e *Environment) Begin() {
	e.mu.Lock()
	gen := e.gen
	e.initStart = time.Now()
	e.mu.Unlock()
	if e.sup != nil {
		if err := e.sup.Start(gen); err != nil {
			e.RuntimeExited(gen, err)
		}
	}
}

// Config is the environment's function configuration.
func (e *Environment) Config() *Config { return e.cfg }

// Logs is the environment's log sink.
func (e *Environment) Logs() *LogSink { return e.logs }

// Busy tells whether an invoke waits for its result (/healthz's HeaderBusy).
func (e *Environment) Busy() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.busy || e.current != nil && e.current.stream != nil && !e.current.answered
}

// Phase reports the current phase (for probes and tests).
func (e *Environment) Phase() Phase {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.phase
}

// Ready: init is done and the environment can take (or is running) an invocation.
func (e *Environment) Ready() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.phase == PhaseIdle || (e.phase == PhaseInvoke && !e.resetting)
}

// phaseChangedLocked wakes everything waiting for a phase change and dispatches a queued
// invocation once the previous one is over (see setPhaseLocked).
func (e *Environment) phaseChangedLocked() {
	p := e.phase
	close(e.changed)
	e.changed = make(chan struct{})
	if q := e.queued; q != nil && p != PhaseInvoke {
		e.queued = nil
		if p == PhaseIdle {
			e.dispatchLocked(q.inv, time.Time{})
		} else {
			e.runLaterLocked(q.inv, q.arrival, q.done)
		}
	}
}

// waitLocked releases the lock until the phase changes or until (zero: no limit) passes.
func (e *Environment) waitLocked(until time.Time) {
	ch := e.changed
	e.mu.Unlock()
	if until.IsZero() {
		<-ch
	} else if d := time.Until(until); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-ch:
		case <-t.C:
		}
		t.Stop()
	}
	e.mu.Lock()
}

// ---- invoke side ----

// runLocked is Invoke's slow path once busy is set, on a goroutine of its own: it waits
// for the environment to take inv (through init, a reset, the end of the previous
// invocation), runs it and waits for its result. It is called with e.mu held and returns
// with it released.
func (e *Environment) runLocked(inv *Invocation, arrival time.Time) error {
	// retryDeadline is set once a failed init is retried inside this invoke (Lambda's
	// "suppressed init"): from then on the init counts against the invoke's timeout.
	var retryDeadline time.Time
	for {
		switch e.phase {
		case PhaseIdle:
			// Free for the next invoke as soon as the result is known (not when this
			// goroutine comes to it): the runtime's 202 may reach a caller first.
			inv.onDone = func() { e.busy = false }
			e.dispatchLocked(inv, retryDeadline)
			e.mu.Unlock()
			<-inv.done
			return nil
		case PhaseInit:
			limit := e.initStart.Add(e.cfg.InitTimeout)
			if !retryDeadline.IsZero() {
				limit = retryDeadline
			}
			if !time.Now().Before(limit) {
				if retryDeadline.IsZero() {
					e.failInitLocked(&initFailure{errType: ErrorTypeTimeout, timeout: true})
					continue
				}
				e.answerUndispatchedLocked(inv, arrival, ErrorTypeTimeout, functionErrorJSON(ErrorTypeTimeout, timeoutMessage(inv.ID, e.cfg)))
				e.resetLocked(ResetTimeout)
				e.busy = false
				e.mu.Unlock()
				return nil
			}
			e.waitLocked(limit)
		case PhaseInitFailed:
			if !retryDeadline.IsZero() {
				// The retry failed too: the invoke is answered with why.
				errType, body := e.failedInitAnswer(inv)
				e.answerUndispatchedLocked(inv, arrival, errType, body)
				e.busy = false
				e.mu.Unlock()
				return nil
			}
			retryDeadline = e.retryInitLocked(inv)
		case PhaseInvoke, PhaseResetting:
			// The previous invocation's runtime or extensions are finishing (bounded by its
			// deadline), or a reset is under way.
			e.waitLocked(time.Time{})
		case PhaseShutdown:
			e.busy = false
			e.mu.Unlock()
			return ErrShuttingDown
		}
	}
}

// failedInitAnswer is the error type and body that answer inv when the init it retried
// failed (e.failure).
func (e *Environment) failedInitAnswer(inv *Invocation) (errType string, body []byte) {
	f := e.failure
	errType, body = f.errType, f.body
	var bad *EntrypointError
	switch {
	case f.exit != nil && errors.As(f.exit, &bad):
		errType = ErrorTypeEntrypoint
		body = functionErrorJSON(errType, "RequestId: "+inv.ID+" Error: "+bad.Error())
	case f.exit != nil || body == nil:
		if f.timeout {
			body = functionErrorJSON(ErrorTypeTimeout, timeoutMessage(inv.ID, e.cfg))
		} else {
			body = functionErrorJSON(ErrorTypeExit, exitMessage(inv.ID, f.exit))
		}
	}
	return errType, body
}

// retryInitLocked starts again the init that failed, inside inv (Lambda's "suppressed
// init"), and returns the deadline the retried init and inv share: inv's timeout.
func (e *Environment) retryInitLocked(inv *Invocation) time.Time {
	deadline := time.Now().Add(e.cfg.Timeout)
	if !inv.DeadlineHint.IsZero() && inv.DeadlineHint.Before(deadline) {
		deadline = inv.DeadlineHint
	}
	if e.sup != nil && e.sup.HasRestartingRuntime() && e.failure.exit != nil {
		// Sidecar mode: the kubelet is already restarting the runtime that exited;
		// killing the new one would only add a restart (and back-off).
		e.setRuntimeLocked(RuntimeStarting)
		e.setPhaseLocked(PhaseInit)
		return deadline
	}
	e.resetLocked(ResetFailure)
	return deadline
}

// Invoke runs inv without blocking: done is called once inv's result is known (inv.Done),
// or with ErrBusy or ErrShuttingDown when it was not run. An idle environment (the warm
// path) dispatches inv at once; one that waits for the runtime to come back from the
// previous invocation keeps it for when it does; anything else (init, a reset) is waited
// for on a goroutine (runLocked). The invocation never depends on the caller staying
// connected: a disconnected caller's invocation still completes or times out. done may be
// called with the environment locked, and must not block; it may also be called before
// Invoke returns.
func (e *Environment) Invoke(inv *Invocation, done func(error)) {
	e.mu.Lock()
	switch {
	case e.phase == PhaseShutdown:
		e.mu.Unlock()
		done(ErrShuttingDown)
		return
	case e.busy:
		e.mu.Unlock()
		done(ErrBusy)
		return
	}
	e.busy = true
	inv.onDone = func() {
		e.busy = false
		done(nil)
	}
	switch {
	case e.phase == PhaseIdle:
		e.dispatchLocked(inv, time.Time{})
	case e.phase == PhaseInvoke && !e.resetting:
		e.queued = &queuedInvoke{inv: inv, arrival: time.Now(), done: done}
	default:
		e.runLaterLocked(inv, time.Now(), done)
	}
	e.mu.Unlock()
}

// queuedInvoke is an Invoke waiting for the end of the previous invocation.
type queuedInvoke struct {
	inv     *Invocation
	arrival time.Time
	done    func(error)
}

// runLaterLocked runs inv through runLocked on its own goroutine.
func (e *Environment) runLaterLocked(inv *Invocation, arrival time.Time, done func(error)) {
	inv.onDone = nil // runLocked waits for the result itself
	go func() {
		e.mu.Lock()
		done(e.runLocked(inv, arrival))
	}()
}

func (e *Environment) dispatchLocked(inv *Invocation, retryDeadline time.Time) {
	now := time.Now()
	inv.start = now
	dl := now.Add(e.cfg.Timeout)
	if !retryDeadline.IsZero() {
		dl = retryDeadline
	}
	if !inv.DeadlineHint.IsZero() && inv.DeadlineHint.Before(dl) {
		dl = inv.DeadlineHint
	}
	inv.Deadline = dl
	inv.deadlineMs = strconv.FormatInt(dl.UnixMilli(), 10)
	if e.reportInit {
		inv.result.InitDuration = e.initDuration
		e.reportInit = false
	}
	inv.acquire() // the environment's reference, released when the phase ends
	e.current = inv
	e.setPhaseLocked(PhaseInvoke)
	e.writePendingReportLocked()
	e.logs.StartInvocation(inv, e.cfg.FunctionVersion)
	for _, x := range e.exts {
		if x.invoke {
			x.busy = true
			x.deliver(invokeEvent(inv))
		}
	}
	inv.timer = time.AfterFunc(dl.Sub(now), func() { e.deadlineExceeded(inv) })
	e.pending = inv
	e.offerLocked()
}

// answerLocked sets inv's result once, writes END/REPORT and wakes the invoke.
func (e *Environment) answerLocked(inv *Invocation, res Result) {
	if !e.settleLocked(inv, &res) {
		return
	}
	res.Tail = e.reportEnd(inv, &res)
	if inv.stream != nil { // the caller has the stream: its end carries the result
		endStreamLocked(inv, res)
		return
	}
	inv.result = res
	inv.markDoneLocked()
}

// settleLocked marks inv answered and fills in the result's durations; false if inv had
// been answered already.
func (e *Environment) settleLocked(inv *Invocation, res *Result) bool {
	if inv.answered {
		return false
	}
	inv.answered = true
	res.Duration = time.Since(inv.start)
	if res.ErrorType == ErrorTypeTimeout && res.Duration > e.cfg.Timeout {
		res.Duration = e.cfg.Timeout
	}
	res.InitDuration = inv.result.InitDuration
	return true
}

// reportEnd writes END and REPORT (and the Logs API records) of a settled invocation and
// returns its tail (nil unless asked for).
func (e *Environment) reportEnd(inv *Invocation, res *Result) []byte {
	return e.logs.EndInvocation(inv, res, e.cfg.MemorySizeMB, e.peakLater)
}

// maxMemoryUsedMB is REPORT's Max Memory Used (0 without a supervisor).
func (e *Environment) maxMemoryUsedMB() int {
	if e.sup == nil {
		return 0
	}
	return e.sup.MaxMemoryUsedMB()
}

// PeakKeeper is a Supervisor whose MaxMemoryUsedMB keeps describing the runtime process
// of a generation until the next Start, also after that process exited (exec mode: its
// rusage). Its REPORT lines may then read the figure when they are written out, not
// when the invocation ends (see LogSink.EndInvocation).
type PeakKeeper interface {
	KeepsPeakUntilStart()
}

// answerUndispatchedLocked answers an invocation that never reached the runtime (its
// init failed or timed out): START, END and REPORT are still written, as Lambda does.
func (e *Environment) answerUndispatchedLocked(inv *Invocation, arrival time.Time, errType string, body []byte) {
	if errType == "" {
		errType = ErrorTypeInit
	}
	inv.start = arrival
	if e.reportInit {
		inv.result.InitDuration = e.initDuration
		e.reportInit = false
	}
	e.writePendingReportLocked()
	e.logs.StartInvocation(inv, e.cfg.FunctionVersion)
	e.logs.Platform(inv, string(body))
	e.answerLocked(inv, Result{Body: body, FunctionError: "Unhandled", ErrorType: errType, Reset: ResetFailure})
}

func (e *Environment) deadlineExceeded(inv *Invocation) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.current != inv || e.phase != PhaseInvoke || e.resetting {
		return
	}
	if !inv.answered {
		msg := timeoutMessage(inv.ID, e.cfg)
		e.logs.Platform(inv, time.Now().UTC().Format("2006-01-02T15:04:05.000Z")+" "+inv.ID+" Task timed out after "+strconv.FormatFloat(e.cfg.Timeout.Seconds(), 'f', 2, 64)+" seconds")
		e.answerLocked(inv, Result{Body: functionErrorJSON(ErrorTypeTimeout, msg), FunctionError: "Unhandled", ErrorType: ErrorTypeTimeout, Reset: ResetTimeout})
	}
	e.resetLocked(ResetTimeout)
}

// finishInvokeLocked ends PhaseInvoke once the runtime and every INVOKE extension are
// back in next: the environment can take the next invocation.
func (e *Environment) finishInvokeLocked() {
	if e.phase != PhaseInvoke || e.resetting || e.runtime != RuntimeReady || e.current == nil || !e.current.answered {
		return
	}
	for _, x := range e.exts {
		if x.busy {
			return
		}
	}
	inv := e.current
	inv.timer.Stop()
	e.current = nil
	e.setPhaseLocked(PhaseIdle)
	inv.Release()
}

func (e *Environment) finishInitLocked() {
	if e.phase != PhaseInit || e.runtime != RuntimeReady {
		return
	}
	for _, x := range e.exts {
		if x.busy {
			return
		}
	}
	e.initDuration = time.Since(e.initStart)
	e.reportInit = true
	e.logs.InitDone(e.exts)
	e.setPhaseLocked(PhaseIdle)
}

func (e *Environment) failInitLocked(f *initFailure) {
	if e.phase != PhaseInit && e.phase != PhaseIdle {
		return
	}
	if f.errType == "" {
		f.errType = ErrorTypeInit
	}
	e.failure = f
	e.setPhaseLocked(PhaseInitFailed)
}

// resetLocked starts a reset: the invocation (if any) has been answered; extensions get
// SHUTDOWN, every runtime process is stopped, and (exec mode) started again as the next
// generation, which re-initialises and reports Init Duration again.
func (e *Environment) resetLocked(reason string) {
	if e.resetting || e.phase == PhaseShutdown {
		return
	}
	e.writePendingReportLocked()
	e.resetting = true
	e.setRuntimeLocked(RuntimeExited)
	e.setPhaseLocked(PhaseResetting)
	shutdownExts := e.sendShutdownLocked(reason)
	go e.completeReset(shutdownExts)
}

func (e *Environment) completeReset(shutdownExts bool) {
	grace := time.Duration(0)
	if shutdownExts {
		grace = e.cfg.shutdownGrace(e.sup != nil && e.sup.HasExternalExtensions())
		e.waitExtensionsAcknowledged(grace)
	}
	e.mu.Lock()
	e.endGenerationLocked()
	gen := e.gen
	e.mu.Unlock()
	if e.sup != nil {
		e.sup.Stop(e.cfg.shutdownGrace(e.sup.HasExternalExtensions()))
	}
	e.mu.Lock()
	if e.phase == PhaseShutdown {
		e.mu.Unlock()
		return
	}
	e.resetting = false
	e.setRuntimeLocked(RuntimeStarting)
	e.initStart = time.Now()
	e.setPhaseLocked(PhaseInit)
	e.mu.Unlock()
	if e.sup != nil {
		// REPORT lines still waiting read the old process's peak, before the new one
		// replaces it.
		e.logs.Flush()
		if err := e.sup.Start(gen); err != nil {
			e.RuntimeExited(gen, err)
		}
	}
}

// endGenerationLocked wakes every call blocked on the old generation and forgets its
// runtime, extensions and pending event.
func (e *Environment) endGenerationLocked() {
	e.writePendingReportLocked()
	close(e.genDone)
	e.genDone = make(chan struct{})
	e.gen++
	e.pending = nil
	e.endWaitLocked(ErrEnvironmentReset)
	if e.current != nil {
		e.current.timer.Stop()
		e.current.Release()
		e.current = nil
	}
	e.exts = nil
	e.extByID = map[string]*Extension{}
	e.logs.Unsubscribe()
}

// RuntimeExited is the supervisor's report that generation gen's runtime exited.
func (e *Environment) RuntimeExited(gen uint64, exit error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if gen != e.gen || e.resetting || e.phase == PhaseShutdown {
		return
	}
	e.runtimeGoneLocked(exit)
}

// ReportRuntimeExit is the runtime's wrapper (`runtime-shim pipe`) reporting its exit in
// sidecar mode, sooner and with the exit status the /proc watcher cannot see.
func (e *Environment) ReportRuntimeExit(status string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.resetting || e.phase == PhaseShutdown || e.runtime == RuntimeExited {
		return
	}
	if status == "" {
		status = "exit status unknown"
	}
	e.runtimeGoneLocked(errors.New(status))
}

func (e *Environment) runtimeGoneLocked(exit error) {
	e.setRuntimeLocked(RuntimeExited)
	if e.sup != nil && e.sup.HasRestartingRuntime() {
		e.initStart = time.Now() // the kubelet starts the next runtime now
	}
	switch e.phase {
	case PhaseInit, PhaseIdle:
		if e.failure == nil || e.phase == PhaseIdle || e.failure.body == nil {
			e.failure = nil
			e.failInitLocked(&initFailure{errType: ErrorTypeExit, exit: exit})
		} else {
			e.setPhaseLocked(PhaseInitFailed)
		}
	case PhaseInitFailed:
		// An init that failed already (e.g. /init/error, then exit): keep its reason.
		if e.failure != nil && e.failure.body == nil && !e.failure.timeout {
			e.failure.exit = exit
		}
	case PhaseInvoke:
		inv := e.current
		if !inv.answered {
			msg := exitMessage(inv.ID, exit)
			e.logs.Platform(inv, msg+"\n"+ErrorTypeExit)
			e.answerLocked(inv, Result{Body: functionErrorJSON(ErrorTypeExit, msg), FunctionError: "Unhandled", ErrorType: ErrorTypeExit, Reset: ResetFailure})
		}
		e.resetLocked(ResetFailure)
	}
}

// Shutdown ends the environment: SHUTDOWN (spindown) to extensions, SIGTERM to the
// runtime, SIGKILL after the grace period.
func (e *Environment) Shutdown() {
	e.mu.Lock()
	if e.phase == PhaseShutdown {
		e.mu.Unlock()
		return
	}
	e.writePendingReportLocked()
	if e.current != nil && !e.current.answered {
		e.answerLocked(e.current, Result{Err: ErrShuttingDown})
	}
	e.endWaitLocked(ErrShuttingDown)
	ext := e.sendShutdownLocked(ResetSpindown)
	e.setPhaseLocked(PhaseShutdown)
	e.mu.Unlock()
	grace := e.cfg.shutdownGrace(e.sup != nil && e.sup.HasExternalExtensions())
	if ext {
		e.waitExtensionsAcknowledged(grace)
	}
	e.mu.Lock()
	e.endGenerationLocked()
	e.mu.Unlock()
	if e.sup != nil {
		e.sup.Stop(grace)
	}
}

// ---- runtime side ----

// NextPeerCheckAfter: a /next that waited longer than this checks that the runtime is
// still connected (gone) before it takes an event. A shorter wait is the runtime asking
// right after its previous answer, the hot path, where the check would cost a system
// call on every warm invocation.
const NextPeerCheckAfter = 50 * time.Millisecond

// NextWait is a /next call waiting for an event (Next).
type NextWait struct {
	// deliver is given the event (taken: the runtime is invoking it) or why the call
	// ends without one; it runs with the environment locked, and must not block.
	deliver func(*Invocation, error)
	gone    func() bool
	since   time.Time
}

// Next is GET /runtime/invocation/next, without blocking: it returns the event at once (inv), or why the
// call fails (err), or, when the event is not there yet, the waiting call (w), whose
// deliver is called later, exactly once, unless CancelNext takes it back first.
//
// Only the newest call waits: a /next that arrives while another one waits replaces it
// (the earlier one is given a StateError), since a runtime asks again when its connection
// dropped, and an event handed to a dropped connection would be lost. gone, when not nil,
// tells whether the caller has hung up; it is asked before an event is given to a call
// that waited longer than NextPeerCheckAfter, and a caller that is gone leaves the event
// for the next /next.
func (e *Environment) Next(gone func() bool, deliver func(*Invocation, error)) (inv *Invocation, w *NextWait, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.writePendingReportLocked() // the invocation ends when the runtime asks for the next one
	if e.phase == PhaseShutdown || e.resetting {
		return nil, nil, ErrEnvironmentReset
	}
	switch e.runtime {
	case RuntimeStarting:
		e.setRuntimeLocked(RuntimeReady)
		e.finishInitLocked()
	case RuntimeResponded:
		e.setRuntimeLocked(RuntimeReady)
		e.finishInvokeLocked()
	case RuntimeReady:
		// A runtime whose /next connection dropped asks again.
	case RuntimeInvoking:
		if e.sup == nil || !e.sup.HasRestartingRuntime() {
			return nil, nil, &StateError{Who: "runtime", From: e.runtime.String(), To: RuntimeReady.String(), Why: "the invocation " + e.current.ID + " has not been answered"}
		}
		// Sidecar mode: a new runtime process (the kubelet restarted the container)
		// asks for work while the old one never answered: the old one crashed.
		e.runtimeGoneLocked(nil)
		return nil, nil, ErrEnvironmentReset
	case RuntimeExited:
		if e.phase == PhaseInitFailed && e.sup != nil && e.sup.HasRestartingRuntime() {
			// Sidecar mode: the restarted runtime initialised on its own (its init began
			// when the previous one exited).
			e.failure = nil
			e.setRuntimeLocked(RuntimeReady)
			e.setPhaseLocked(PhaseInit)
			e.finishInitLocked()
			break
		}
		fallthrough
	default:
		return nil, nil, &StateError{Who: "runtime", From: e.runtime.String(), To: RuntimeReady.String(), Why: "the runtime cannot ask for events in this state"}
	}
	e.endWaitLocked(errNextReplaced)
	if inv := e.takeLocked(); inv != nil {
		return inv, nil, nil
	}
	e.waiter = &NextWait{deliver: deliver, gone: gone, since: time.Now()}
	return nil, e.waiter, nil
}

// CancelNext takes back a waiting call (its caller hung up, or stops waiting), unless it
// was given its answer already.
func (e *Environment) CancelNext(w *NextWait) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.waiter == w {
		e.waiter = nil
	}
}

// takeLocked takes the pending event for the runtime, if there is one still to run.
func (e *Environment) takeLocked() *Invocation {
	inv := e.pending
	if inv == nil {
		return nil
	}
	e.pending = nil
	if !e.runnableLocked(inv) {
		return nil
	}
	e.setRuntimeLocked(RuntimeInvoking)
	inv.acquire()
	return inv
}

// runnableLocked: inv is the current invocation, still to be answered, and the
// environment is not being reset.
func (e *Environment) runnableLocked(inv *Invocation) bool {
	return inv == e.current && !inv.answered && e.phase == PhaseInvoke && !e.resetting
}

// offerLocked gives the pending event to the waiting call, if there are both.
func (e *Environment) offerLocked() {
	w := e.waiter
	if w == nil || e.pending == nil {
		return
	}
	if w.gone != nil && time.Since(w.since) > NextPeerCheckAfter && w.gone() {
		e.endWaitLocked(ErrNextAbandoned) // the event stays for the next call
		return
	}
	if inv := e.takeLocked(); inv != nil {
		e.waiter = nil
		w.deliver(inv, nil)
	}
}

// endWaitLocked ends the waiting call, if any, with err.
func (e *Environment) endWaitLocked(err error) {
	if w := e.waiter; w != nil {
		e.waiter = nil
		w.deliver(nil, err)
	}
}

// ErrNextAbandoned: the runtime hung up a /next before its event came (nobody to answer).
var ErrNextAbandoned = errors.New("the runtime hung up its call to next")

// errNextReplaced answers a /next that a newer one replaced while it waited.
var errNextReplaced = &StateError{Who: "runtime", From: RuntimeReady.String(), To: RuntimeReady.String(),
	Why: "a newer call to next is waiting; only the newest one is given the next event"}

// CheckAnswer is the cheap check before reading a response body: is id the invocation
// the runtime may answer now? wantTail tells whether its caller asked for the log tail.
func (e *Environment) CheckAnswer(id string) (wantTail bool, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.checkAnswerLocked(id); err != nil {
		return false, err
	}
	return e.current.WantTail, nil
}

func (e *Environment) checkAnswerLocked(id string) error {
	if e.runtime != RuntimeInvoking {
		return &StateError{Who: "runtime", From: e.runtime.String(), To: RuntimeResponded.String(), Why: "no invocation is waiting for an answer"}
	}
	if e.current == nil || e.current.ID != id {
		return ErrInvalidRequestID
	}
	if e.current.stream != nil {
		return &StateError{Who: "runtime", From: e.runtime.String(), To: RuntimeResponded.String(), Why: "the response is being streamed"}
	}
	return nil
}

// Respond is POST /runtime/invocation/{id}/response. buf is a pooled buffer whose
// ownership passes to the invocation on success. The caller is woken at once. Unless it
// asked for the log tail (which ends with them), END and REPORT are left pending, so that
// reading the runtime's peak memory and writing the lines stay off the caller's and the
// runtime's way: WritePendingReport writes them once both have their answers, and at the
// latest they are written when the runtime calls next (when Lambda ends the invocation)
// or the environment moves on, always before the next START.
func (e *Environment) Respond(id string, buf *bytes.Buffer) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.checkAnswerLocked(id); err != nil {
		return err
	}
	e.setRuntimeLocked(RuntimeResponded)
	inv := e.current
	if inv.WantTail {
		e.answerLocked(inv, Result{BodyBuf: buf})
		return nil
	}
	res := Result{BodyBuf: buf}
	e.settleLocked(inv, &res) // checkAnswerLocked: not answered yet
	inv.result = res
	inv.markDoneLocked()
	e.pendingReport = func() {
		e.logs.Drain() // lines the function logged before answering belong before END
		e.reportEnd(inv, &res)
	}
	return nil
}

// WritePendingReport writes END/REPORT left pending by Respond, if any.
func (e *Environment) WritePendingReport() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.writePendingReportLocked()
}

func (e *Environment) writePendingReportLocked() {
	if f := e.pendingReport; f != nil {
		e.pendingReport = nil
		f()
	}
}

// RespondTooLarge records a response over MaxResponsePayload: the caller gets
// Function.ResponseSizeTooLarge, the runtime 413, and the environment is not reset.
func (e *Environment) RespondTooLarge(id string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.checkAnswerLocked(id); err != nil {
		return err
	}
	e.setRuntimeLocked(RuntimeResponded)
	msg := "Response payload size exceeded maximum allowed payload size (" + strconv.Itoa(MaxResponsePayload) + " bytes)."
	e.logs.Platform(e.current, msg)
	e.answerLocked(e.current, Result{Body: functionErrorJSON(ErrorTypeResponseTooLarge, msg), FunctionError: "Unhandled", ErrorType: ErrorTypeResponseTooLarge})
	return nil
}

// ReportError is POST /runtime/invocation/{id}/error.
func (e *Environment) ReportError(id, errType string, body []byte) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.checkAnswerLocked(id); err != nil {
		return err
	}
	e.setRuntimeLocked(RuntimeResponded)
	errType, body = normalizeErrorBody(errType, body)
	e.answerLocked(e.current, Result{Body: body, FunctionError: "Unhandled", ErrorType: errType})
	return nil
}

// ReportInitError is POST /runtime/init/error.
func (e *Environment) ReportInitError(errType string, body []byte) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.runtime != RuntimeStarting || e.phase != PhaseInit {
		return &StateError{Who: "runtime", From: e.runtime.String(), To: RuntimeInitError.String(), Why: "init errors are accepted only during Init"}
	}
	e.setRuntimeLocked(RuntimeInitError)
	errType, body = normalizeErrorBody(errType, body)
	if errType == ErrorTypeUnknown {
		errType = ErrorTypeInit
	}
	e.logs.Platform(nil, "INIT_REPORT Phase: init Status: error Error Type: "+errType)
	e.failInitLocked(&initFailure{errType: errType, body: body})
	return nil
}

// normalizeErrorBody keeps a runtime's error object as it is when it is a JSON object
// (Lambda passes it through) and wraps anything else in Lambda's error shape so callers
// always get JSON. The error type comes from the header, else from the body.
func normalizeErrorBody(errType string, body []byte) (string, []byte) {
	var parsed struct {
		ErrorType string `json:"errorType"`
	}
	isObject := len(body) > 0 && jsonvalid.Valid(body) && firstNonSpace(body) == '{'
	if isObject {
		_ = json.Unmarshal(body, &parsed)
	}
	if errType == "" {
		errType = parsed.ErrorType
	}
	if errType == "" {
		errType = ErrorTypeUnknown
	}
	if !isObject {
		msg := string(body)
		if len(msg) > 256*1024 {
			msg = msg[:256*1024]
		}
		body = functionErrorJSON(errType, msg)
	}
	return errType, body
}

func firstNonSpace(b []byte) byte {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		}
		return c
	}
	return 0
}
