// Package transport is the bottom layer of the shim: it carries HTTP/1.1 between the
// shim's peers (the activator, the runtime, extensions) and the handlers of the layer
// above (shim/internal/api), which know nothing of connections. Server parses requests
// with net/http's own parser and hands each to one http.Handler; Listener's connections
// read and write with raw system calls inside Go's network poller (see Server and
// rawConn for why). NewRawFileReader and NewNowaitWriter do the same for the runtime's
// output pipe and the shim's stdout.
package transport
