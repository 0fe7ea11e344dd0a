package api

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"runtime"
	"strings"

	"github.com/klambda/klambda/api/contract"
	"github.com/klambda/klambda/internal/transport"
	"github.com/klambda/klambda/shim/internal/environment"
)

// Paths the `runtime-shim pipe` wrapper uses to reach the sidecar (on the Runtime API's
// loopback address; not part of any Lambda API).
const (
	PipeLogsPath = "/klambda/v1/function-logs"
	PipeExitPath = "/klambda/v1/runtime-exit"
)

// Paths of the Runtime, Extensions and Logs APIs.
const (
	runtimePrefix    = "/2018-06-01/runtime/"
	extensionPrefix  = "/2020-01-01/extension/"
	logsPath         = "/2020-08-15/logs"
	logsPath20210318 = "/2021-03-18/logs"
)

// RuntimeAPI serves the Runtime, Extensions and Logs APIs for one environment.Environment.
type RuntimeAPI struct {
	env    *environment.Environment
	cfg    *environment.Config
	quit   <-chan struct{}
	routes *routeTable
}

// NewRuntimeAPI returns the handler; quit ends blocked /next calls at shutdown.
func NewRuntimeAPI(env *environment.Environment, quit <-chan struct{}) *RuntimeAPI {
	a := &RuntimeAPI{env: env, cfg: env.Config(), quit: quit}
	get, post, putOrPost := []string{http.MethodGet}, []string{http.MethodPost}, []string{http.MethodPut, http.MethodPost}
	noParam := func(h func(http.ResponseWriter, *http.Request)) func(http.ResponseWriter, *http.Request, string) {
		return func(w http.ResponseWriter, r *http.Request, _ string) { h(w, r) }
	}
	a.routes = newRouteTable(a.notFound, a.methodNotAllowed,
		route{methods: get, path: runtimePrefix + "invocation/next", handle: noParam(a.next)},
		route{methods: post, path: runtimePrefix + "init/error", handle: noParam(a.initError)},
		route{methods: post, path: runtimePrefix + "invocation/{id}/response", handle: a.response},
		route{methods: post, path: runtimePrefix + "invocation/{id}/error", handle: a.invocationError},
		route{methods: post, path: extensionPrefix + "register", handle: noParam(a.register)},
		route{methods: get, path: extensionPrefix + "event/next", handle: noParam(a.extensionNext)},
		route{methods: post, path: extensionPrefix + "init/error", handle: func(w http.ResponseWriter, r *http.Request, _ string) { a.extensionError(w, r, true) }},
		route{methods: post, path: extensionPrefix + "exit/error", handle: func(w http.ResponseWriter, r *http.Request, _ string) { a.extensionError(w, r, false) }},
		route{methods: post, path: PipeLogsPath, handle: noParam(a.pipeLogs)},
		route{methods: post, path: PipeExitPath, handle: noParam(a.pipeExit)},
		route{methods: putOrPost, path: logsPath, handle: noParam(a.subscribe)},
		route{methods: putOrPost, path: logsPath20210318, handle: noParam(a.subscribe)},
	)
	return a
}

func (a *RuntimeAPI) notFound(w http.ResponseWriter, r *http.Request) {
	writeAPIError(w, http.StatusNotFound, "NotFound", "no such endpoint: "+r.URL.Path)
}

func (a *RuntimeAPI) methodNotAllowed(w http.ResponseWriter, r *http.Request) {
	writeAPIError(w, http.StatusMethodNotAllowed, "MethodNotAllowed", r.Method+" is not allowed on "+r.URL.Path)
}

// apiError is an error answer of the Runtime, Extensions or Logs API.
func apiError(status int, errType, msg string) *answer {
	b, _ := json.Marshal(environment.ErrorBody{ErrorMessage: msg, ErrorType: errType})
	r := &answer{status: status, body: b}
	r.set("Content-Type", "application/json")
	return r
}

func writeAPIError(w http.ResponseWriter, status int, errType, msg string) {
	writeReply(w, apiError(status, errType, msg))
}

var (
	acceptedBody = []byte(`{"status":"OK"}`)
	// accepted is the 202 answer (shared: nothing may change it).
	accepted = &answer{status: http.StatusAccepted, hdr: []headerField{{"Content-Type", "application/json"}}, body: acceptedBody}
)

// writeAccepted answers 202 with a Content-Length, so that a Flush sends the whole
// answer (not the start of a chunked one).
func writeAccepted(w http.ResponseWriter) { writeReply(w, accepted) }

// writeStateMachineError maps the environment's named errors to Lambda's answers.
func writeStateMachineError(w http.ResponseWriter, err error) {
	writeReply(w, stateMachineError(err))
}

func stateMachineError(err error) *answer {
	var se *environment.StateError
	var lv *environment.LogsValidationError
	switch {
	case errors.As(err, &se):
		return apiError(http.StatusForbidden, "InvalidStateTransition", err.Error())
	case errors.As(err, &lv):
		return apiError(http.StatusBadRequest, "Logs.ValidationError", err.Error())
	case errors.Is(err, environment.ErrInvalidRequestID):
		return apiError(http.StatusBadRequest, "InvalidRequestID", err.Error())
	case errors.Is(err, environment.ErrResponseTooLarge):
		return apiError(http.StatusRequestEntityTooLarge, "RequestEntityTooLarge", err.Error())
	case errors.Is(err, environment.ErrUnknownExtension):
		return apiError(http.StatusForbidden, "Extension.UnknownExtensionIdentifier", err.Error())
	case errors.Is(err, environment.ErrRegistrationClosed):
		return apiError(http.StatusForbidden, "Extension.RegistrationClosed", err.Error())
	case errors.Is(err, environment.ErrTooManyExtensions):
		return apiError(http.StatusForbidden, "Extension.TooManyExtensions", err.Error())
	case errors.Is(err, environment.ErrExtensionNameCollision):
		return apiError(http.StatusForbidden, "Extension.InvalidExtensionState", err.Error())
	case errors.Is(err, environment.ErrSubscriptionClosed):
		return apiError(http.StatusForbidden, "Logs.SubscriptionClosed", err.Error())
	default:
		// Lambda's 500: "Non-recoverable state. Runtime should exit promptly."
		return apiError(http.StatusInternalServerError, "InternalServerError", err.Error())
	}
}

func (a *RuntimeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.routes.ServeHTTP(w, r) }

func (a *RuntimeAPI) next(w http.ResponseWriter, r *http.Request) {
	// Not r.Context().Done(): watching the connection would cost a goroutine and a system
	// call on every warm invocation; Next asks whether the runtime is gone only after a
	// long wait, and a runtime that asks again replaces its earlier call.
	var gone func() bool
	if pc, ok := r.Context().(transport.PeerChecker); ok {
		gone = pc.PeerGone
	}
	inv, err := awaitNext(a.env, gone, a.quit)
	if err != nil {
		if errors.Is(err, environment.ErrNextAbandoned) {
			return // the runtime went away; nobody to answer
		}
		writeStateMachineError(w, err)
		return
	}
	defer inv.Release()
	writeReply(w, nextEvent(inv))
}

// awaitNext waits (without limit) for env's next event; quit ends the wait with
// environment.ErrShuttingDown.
func awaitNext(env *environment.Environment, gone func() bool, quit <-chan struct{}) (*environment.Invocation, error) {
	type result struct {
		inv *environment.Invocation
		err error
	}
	ch := make(chan result, 1)
	inv, w, err := env.Next(gone, func(inv *environment.Invocation, err error) { ch <- result{inv, err} })
	if w == nil {
		return inv, err
	}
	select {
	case r := <-ch:
		return r.inv, r.err
	case <-quit:
		env.CancelNext(w)
		select {
		case r := <-ch: // delivered meanwhile: the shim is stopping, nobody takes it
			if r.inv != nil {
				r.inv.Release()
			}
		default:
		}
		return nil, environment.ErrShuttingDown
	}
}

// nextEvent is /next's answer: inv's event. Its body is inv's: it is valid until inv
// is released.
func nextEvent(inv *environment.Invocation) *answer {
	r := &answer{status: http.StatusOK, hdr: make([]headerField, 0, 7), body: inv.Payload.Bytes()}
	r.set("Lambda-Runtime-Aws-Request-Id", inv.ID)
	r.set("Lambda-Runtime-Deadline-Ms", inv.DeadlineMs())
	r.set("Lambda-Runtime-Invoked-Function-Arn", inv.InvokedARN)
	if inv.TraceID != "" {
		r.set("Lambda-Runtime-Trace-Id", inv.TraceID)
	}
	if inv.ClientContext != "" {
		r.set("Lambda-Runtime-Client-Context", inv.ClientContext)
	}
	if inv.CognitoIdentity != "" {
		r.set("Lambda-Runtime-Cognito-Identity", inv.CognitoIdentity)
	}
	r.set("Content-Type", "application/json")
	return r
}

// mergeDone is closed when either a or b is; it costs nothing when b is nil.
func mergeDone(a, b <-chan struct{}) <-chan struct{} {
	if b == nil {
		return a
	}
	c := make(chan struct{})
	go func() {
		select {
		case <-a:
		case <-b:
		}
		close(c)
	}()
	return c
}

// readBody reads at most limit bytes into a pooled buffer; over reports a larger body
// (which is drained so the connection stays usable).
func readBody(r *http.Request, limit int64) (buf *bytes.Buffer, over bool, err error) {
	return readBodyInto(r, environment.GetBuffer(), limit)
}

// bodyReadSize is the room an unsized (chunked) body starts with.
const bodyReadSize = 64 << 10

// readBodyInto reads the body into buf, which must be empty, or into a larger pooled
// buffer that replaces it (buf is then given back): the returned buffer is the one
// holding the body. A body with a Content-Length is read straight into a buffer of
// that size, in as few reads as the connection allows, never grown or copied;
// a chunked one into a buffer that doubles, from the pool.
func readBodyInto(r *http.Request, buf *bytes.Buffer, limit int64) (*bytes.Buffer, bool, error) {
	if r.ContentLength > limit {
		_, _ = io.Copy(io.Discard, r.Body)
		return buf, true, nil
	}
	// One byte more than the body: the read that finds its end has room.
	room := int64(bodyReadSize)
	if r.ContentLength >= 0 {
		room = r.ContentLength + 1
	}
	if int64(buf.Cap()) < room {
		environment.PutBuffer(buf)
		buf = environment.GetBufferCap(int(room))
	}
	b := buf.AvailableBuffer()
	b = b[:cap(b)]
	n := 0
	for {
		if n == len(b) {
			if int64(n) > limit {
				_, _ = io.Copy(io.Discard, r.Body)
				buf.Reset()
				return buf, true, nil
			}
			bigger := environment.GetBufferCap(int(min(2*int64(n), limit+1)))
			nb := bigger.AvailableBuffer()
			nb = append(nb, b[:n]...)
			environment.PutBuffer(buf)
			buf, b = bigger, nb[:cap(nb)]
		}
		k, err := r.Body.Read(b[n:])
		n += k
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			buf.Reset()
			return buf, false, err
		}
	}
	if int64(n) > limit {
		buf.Reset()
		return buf, true, nil
	}
	// b is buf's own (empty) storage: buf now holds what was read into it, not copied.
	*buf = *bytes.NewBuffer(b[:n])
	return buf, false, nil
}

func (a *RuntimeAPI) response(w http.ResponseWriter, r *http.Request, id string) {
	// A response posted in streaming mode, or chunked with trailers (aws-lambda-go's), is
	// streamed to a caller that asked for a stream; for any other caller it is read here
	// whole, within the same 6 MB as a response posted at once.
	if (isStreamingResponse(r) || r.ContentLength < 0 && r.Trailer != nil) && a.streamWanted(id) {
		a.streamedResponse(w, r, id)
		return
	}
	wantTail, err := a.env.CheckAnswer(id)
	if err != nil {
		writeStateMachineError(w, err)
		return
	}
	buf, over, err := readBody(r, environment.MaxResponsePayload)
	if err != nil {
		environment.PutBuffer(buf)
		writeReply(w, truncated(err))
		return
	}
	// The error trailers (read with the body's end) make it a function error.
	if errType, body := errorTrailers(r.Trailer); !over && (errType != "" || body != nil) {
		environment.PutBuffer(buf)
		if errType == "" {
			errType = environment.ErrorTypeUnknown
		}
		if err := a.takeError(id, errType, body, false); err != nil {
			writeStateMachineError(w, err)
			return
		}
		writeAccepted(w)
		return
	}
	if err := a.takeResponse(id, buf, over, wantTail); err != nil {
		writeStateMachineError(w, err)
		return
	}
	// Let the waiting invoke handler answer the caller before this 202: the caller is the
	// one waiting on the critical path. Then the runtime: the sooner it is back in next,
	// the sooner the environment takes the next invocation. END and REPORT come last.
	runtime.Gosched()
	writeAccepted(w)
	w.(http.Flusher).Flush()
	a.env.WritePendingReport()
}

// truncated answers a request whose body could not be read.
func truncated(err error) *answer {
	return apiError(http.StatusBadRequest, "TruncatedHTTPRequest", "HTTP request detected as truncated: "+err.Error())
}

// takeResponse is POST /response once its body is read into buf (a pooled buffer,
// whose ownership it takes), over telling that the body was longer than
// MaxResponsePayload: nil, or the error to answer.
func (a *RuntimeAPI) takeResponse(id string, buf *bytes.Buffer, over, wantTail bool) error {
	if over {
		a.env.Logs().Drain() // lines the function logged before answering belong before END
		environment.PutBuffer(buf)
		if err := a.env.RespondTooLarge(id); err != nil {
			return err
		}
		return environment.ErrResponseTooLarge
	}
	if wantTail {
		a.env.Logs().Drain()
	}
	if err := a.env.Respond(id, buf); err != nil {
		environment.PutBuffer(buf)
		return err
	}
	return nil
}

func (a *RuntimeAPI) invocationError(w http.ResponseWriter, r *http.Request, id string) {
	if _, err := a.env.CheckAnswer(id); err != nil {
		writeStateMachineError(w, err)
		return
	}
	buf, over, err := readBody(r, environment.MaxErrorPayload)
	defer environment.PutBuffer(buf)
	if err != nil {
		writeReply(w, truncated(err))
		return
	}
	if err := a.takeError(id, r.Header.Get("Lambda-Runtime-Function-Error-Type"), buf.Bytes(), over); err != nil {
		writeStateMachineError(w, err)
		return
	}
	writeAccepted(w)
}

// takeError is POST /error once its body is read (over: it was longer than
// environment.MaxErrorPayload): nil, or the error to answer.
func (a *RuntimeAPI) takeError(id, errType string, body []byte, over bool) error {
	a.env.Logs().Drain()
	if over {
		if err := a.env.RespondTooLarge(id); err != nil {
			return err
		}
		return environment.ErrResponseTooLarge
	}
	return a.env.ReportError(id, errType, append([]byte(nil), body...))
}

func (a *RuntimeAPI) initError(w http.ResponseWriter, r *http.Request) {
	buf, _, err := readBody(r, environment.MaxErrorPayload)
	defer environment.PutBuffer(buf)
	if err != nil {
		writeReply(w, truncated(err))
		return
	}
	a.env.Logs().Drain()
	body := append([]byte(nil), buf.Bytes()...)
	if err := a.env.ReportInitError(r.Header.Get("Lambda-Runtime-Function-Error-Type"), body); err != nil {
		writeStateMachineError(w, err)
		return
	}
	writeAccepted(w)
}

type registerRequest struct {
	Events []string `json:"events"`
}

func (a *RuntimeAPI) register(w http.ResponseWriter, r *http.Request) {
	name := r.Header.Get("Lambda-Extension-Name")
	if name == "" {
		writeAPIError(w, http.StatusForbidden, "Extension.InvalidExtensionName", "Empty extension name")
		return
	}
	buf, over, err := readBody(r, 64*1024)
	defer environment.PutBuffer(buf)
	if err != nil || over {
		writeAPIError(w, http.StatusBadRequest, "InvalidRequestFormat", "could not read the registration request")
		return
	}
	var req registerRequest
	if buf.Len() > 0 {
		if err := json.Unmarshal(buf.Bytes(), &req); err != nil {
			writeAPIError(w, http.StatusBadRequest, "InvalidRequestFormat", "could not parse the registration request: "+err.Error())
			return
		}
	}
	for _, ev := range req.Events {
		if ev != "INVOKE" && ev != "SHUTDOWN" {
			writeAPIError(w, http.StatusBadRequest, "Extension.InvalidEventType", "unknown event type "+ev+" (want INVOKE or SHUTDOWN)")
			return
		}
	}
	x, err := a.env.RegisterExtension(name, req.Events)
	if err != nil {
		writeStateMachineError(w, err)
		return
	}
	body, _ := json.Marshal(map[string]string{"functionName": a.cfg.FunctionName, "functionVersion": a.cfg.FunctionVersion, "handler": a.cfg.Handler})
	w.Header().Set("Lambda-Extension-Identifier", x.ID)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

func (a *RuntimeAPI) extensionNext(w http.ResponseWriter, r *http.Request) {
	id := r.Header.Get("Lambda-Extension-Identifier")
	ev, err := a.env.ExtensionNext(id, mergeDone(r.Context().Done(), a.quit))
	if err != nil {
		if r.Context().Err() != nil {
			return
		}
		writeStateMachineError(w, err)
		return
	}
	w.Header().Set("Lambda-Extension-Event-Identifier", contract.NewRequestID())
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(ev)
}

func (a *RuntimeAPI) extensionError(w http.ResponseWriter, r *http.Request, initPhase bool) {
	id := r.Header.Get("Lambda-Extension-Identifier")
	errType := r.Header.Get("Lambda-Extension-Function-Error-Type")
	if errType == "" {
		writeAPIError(w, http.StatusBadRequest, "InvalidRequestFormat", "missing header Lambda-Extension-Function-Error-Type")
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, environment.MaxErrorPayload))
	if err := a.env.ExtensionError(id, errType, initPhase); err != nil {
		writeStateMachineError(w, err)
		return
	}
	writeAccepted(w)
}

func (a *RuntimeAPI) subscribe(w http.ResponseWriter, r *http.Request) {
	id := r.Header.Get("Lambda-Extension-Identifier")
	buf, over, err := readBody(r, 64*1024)
	defer environment.PutBuffer(buf)
	if err != nil || over {
		writeAPIError(w, http.StatusBadRequest, "Logs.ValidationError", "could not read the subscription request")
		return
	}
	if err := a.env.Subscribe(id, buf.Bytes()); err != nil {
		writeStateMachineError(w, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte("OK"))
}

// pipeLogs reads the function's output streamed by `runtime-shim pipe` (sidecar mode),
// one line at a time, into the log sink as if the shim had captured it itself.
func (a *RuntimeAPI) pipeLogs(w http.ResponseWriter, r *http.Request) {
	br := bufio.NewReaderSize(r.Body, 64*1024)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			if line[len(line)-1] != '\n' {
				line = append(line, '\n')
			}
			a.env.Logs().Function(line)
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			break
		}
	}
	w.WriteHeader(http.StatusOK)
}

// pipeExit is `runtime-shim pipe` telling how the runtime exited (sidecar mode, where the
// exit status is otherwise invisible).
func (a *RuntimeAPI) pipeExit(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(io.LimitReader(r.Body, 256))
	a.env.ReportRuntimeExit(strings.TrimSpace(string(b)))
	writeAccepted(w)
}
