package environment

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/klambda/klambda/api/contract"
)

// Extension is one registered extension (Extensions API 2020-01-01).
type Extension struct {
	ID       string
	Name     string
	Events   []string
	invoke   bool
	shutdown bool
	// busy: the extension has work (an event, or its init) and has not called next since.
	busy   bool
	failed bool
	events chan []byte
}

func (x *Extension) deliver(ev []byte) {
	select {
	case x.events <- ev:
	default:
		// Never block the environment on an extension that does not read its events;
		// it cannot have more than one pending event in a correct lifecycle.
	}
}

type tracing struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

type invokeEventJSON struct {
	EventType          string   `json:"eventType"`
	DeadlineMs         int64    `json:"deadlineMs"`
	RequestID          string   `json:"requestId"`
	InvokedFunctionArn string   `json:"invokedFunctionArn"`
	Tracing            *tracing `json:"tracing,omitempty"`
}

func invokeEvent(inv *Invocation) []byte {
	ev := invokeEventJSON{EventType: "INVOKE", DeadlineMs: inv.Deadline.UnixMilli(), RequestID: inv.ID, InvokedFunctionArn: inv.InvokedARN}
	if inv.TraceID != "" {
		ev.Tracing = &tracing{Type: contract.HeaderTraceID, Value: inv.TraceID}
	}
	b, _ := json.Marshal(ev)
	return b
}

func shutdownEvent(reason string, deadline time.Time) []byte {
	return []byte(`{"eventType":"SHUTDOWN","shutdownReason":"` + reason + `","deadlineMs":` + strconv.FormatInt(deadline.UnixMilli(), 10) + `}`)
}

// RegisteredExtensions is how many extensions have registered (exec mode waits for the
// ones it started).
func (e *Environment) RegisteredExtensions() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.exts)
}

// RegisterExtension is POST /extension/register.
func (e *Environment) RegisterExtension(name string, events []string) (*Extension, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.phase != PhaseInit || e.resetting {
		return nil, ErrRegistrationClosed
	}
	if len(e.exts) >= MaxExtensions {
		return nil, ErrTooManyExtensions
	}
	for _, x := range e.exts {
		if x.Name == name {
			return nil, ErrExtensionNameCollision
		}
	}
	x := &Extension{ID: contract.NewRequestID(), Name: name, Events: events, busy: true, events: make(chan []byte, 2)}
	for _, ev := range events {
		switch ev {
		case "INVOKE":
			x.invoke = true
		case "SHUTDOWN":
			x.shutdown = true
		}
	}
	if x.Events == nil {
		x.Events = []string{}
	}
	e.exts = append(e.exts, x)
	e.extByID[x.ID] = x
	return x, nil
}

// ExtensionNext is GET /extension/event/next: it blocks until the extension's next event.
func (e *Environment) ExtensionNext(id string, done <-chan struct{}) ([]byte, error) {
	e.mu.Lock()
	x := e.extByID[id]
	if x == nil {
		e.mu.Unlock()
		return nil, ErrUnknownExtension
	}
	if x.failed {
		e.mu.Unlock()
		return nil, &StateError{Who: "extension " + x.Name, From: "Failed", To: "Ready", Why: "the extension reported an error and should exit"}
	}
	x.busy = false
	e.finishInitLocked()
	e.finishInvokeLocked()
	genDone := e.genDone
	e.mu.Unlock()
	select {
	case ev := <-x.events:
		e.mu.Lock()
		x.busy = true
		e.mu.Unlock()
		return ev, nil
	case <-genDone:
		return nil, ErrEnvironmentReset
	case <-done:
		return nil, ErrShuttingDown
	}
}

// ExtensionError is POST /extension/init/error and /extension/exit/error. An init error
// fails the environment's init; Lambda then resets the environment.
func (e *Environment) ExtensionError(id, errType string, initPhase bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	x := e.extByID[id]
	if x == nil {
		return ErrUnknownExtension
	}
	if x.failed {
		return &StateError{Who: "extension " + x.Name, From: "Failed", To: "Failed", Why: "an error was already reported"}
	}
	x.failed = true
	if initPhase {
		if e.phase != PhaseInit {
			return &StateError{Who: "extension " + x.Name, From: "Ready", To: "InitError", Why: "init errors are accepted only during Init"}
		}
		msg := "Extension " + x.Name + " failed to initialise: " + errType
		e.failInitLocked(&initFailure{errType: ErrorTypeExtensionInit, body: functionErrorJSON(ErrorTypeExtensionInit, msg)})
		return nil
	}
	x.busy = false
	return nil
}

// sendShutdownLocked delivers SHUTDOWN to every extension registered for it; it reports
// whether any was.
func (e *Environment) sendShutdownLocked(reason string) bool {
	any := false
	deadline := time.Now().Add(e.cfg.shutdownGrace(e.sup != nil && e.sup.HasExternalExtensions()))
	for _, x := range e.exts {
		if x.shutdown && !x.failed {
			x.busy = true
			x.deliver(shutdownEvent(reason, deadline))
			any = true
		}
	}
	return any
}

// waitExtensionsAcknowledged waits (up to grace) until every extension that got SHUTDOWN
// calls next again or the generation ends.
func (e *Environment) waitExtensionsAcknowledged(grace time.Duration) {
	until := time.Now().Add(grace)
	for time.Now().Before(until) {
		e.mu.Lock()
		pending := false
		for _, x := range e.exts {
			if x.shutdown && x.busy && !x.failed {
				pending = true
			}
		}
		e.mu.Unlock()
		if !pending {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}
