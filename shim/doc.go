// Package shim is klambda's runtime shim: it gives one execution environment (one pod, or
// one child process tree) the Lambda Runtime API (2018-06-01), the Extensions API
// (2020-01-01) and the Logs API (2020-08-15), and serves the invoke endpoint the activator
// calls.
//
// It is built in layers, as the runtime interface emulator's rapid/rapi split:
// internal/environment is the environment's state machine (every Runtime API call and
// invoke is a transition, checked against one table; an illegal call fails with a named
// error), internal/api the Runtime, Extensions and Logs API and invoke handlers over their
// route tables, internal/transport the HTTP/1.1 server beneath them. This package
// assembles them (New, Run) and holds the Supervisors (supervisor_*.go), which own the
// runtime's processes: they start them (exec mode) or find them in /proc (sidecar mode),
// and kill them when the environment is reset.
package shim
