// Package shim is klambda's runtime shim: it gives one execution environment (one pod, or
// one child process tree) the Lambda Runtime API (2018-06-01), the Extensions API
// (2020-01-01) and the Logs API (2020-08-15), and serves the invoke endpoint the activator
// calls.
//
// The environment is a state machine (environment.go): every Runtime API call is a
// transition, and a call that is illegal in the current state fails with a named error
// (errors.go). The HTTP servers (runtimeapi.go, invoke.go) are thin layers over it, as in
// the runtime interface emulator's rapi/rapid split. A Supervisor (supervisor_*.go) owns
// the runtime's processes: it starts them (exec mode) or finds them in /proc (sidecar
// mode), and kills them when the environment is reset.
package shim
