// Package environment is the state machine of one Lambda execution environment, the
// shim's lowest Lambda layer: phases (Init, Idle, Invoke, InitFailed, Resetting,
// Shutdown) and the runtime's states (Started, Ready, Invoking, ResponseSent, InitError,
// Exited), changed only through the checked tables of transitions.go; invocations and
// their deadlines, extensions, the platform log lines and tails, Logs API subscriptions.
// It knows nothing of HTTP: its API takes callbacks (Invoke, Next) and never blocks a
// caller, and every call the state does not allow fails with a named error (errors.go).
package environment
