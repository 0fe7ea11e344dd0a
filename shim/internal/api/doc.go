// Package api is the shim's HTTP layer: the Runtime API (2018-06-01), Extensions API
// (2020-01-01) and Logs API (2020-08-15) handlers (RuntimeAPI) and the invoke endpoint
// with /healthz and /readyz (InvokeServer), each dispatching through one route table
// (routes.go) to thin handlers over an environment.Environment. The wire contract with
// the activator is api/contract's.
package api
