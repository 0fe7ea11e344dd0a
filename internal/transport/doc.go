// Package transport carries HTTP/1.1 for the runtime shim (between the activator, the
// runtime and extensions, and the shim's handlers in shim/internal/api) and for the
// activator's plain-HTTP listeners (the Invoke API with --plain-http, the peer port):
// handlers that know nothing of connections. Server parses requests as net/http's own
// parser does (the common head by parsePlainRequest, any other by http.ReadRequest) and
// hands each to one http.Handler; Listener's connections (and RawDial's, the activator's
// to environments) read and write with raw system calls inside Go's network poller (see
// Server and rawConn for why).
// NewRawFileReader and NewNowaitWriter do the same for the runtime's output pipe and the
// shim's stdout.
package transport
