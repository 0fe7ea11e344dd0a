package shim

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"strings"
)

// apiRoute is one endpoint of the Runtime, Extensions and Logs APIs.
type apiRoute int

const (
	routeNotFound apiRoute = iota
	routeNext
	routeResponse
	routeError
	routeInitError
	routeExtRegister
	routeExtNext
	routeExtInitError
	routeExtExitError
	routeLogsSubscribe
	routePipeLogs
	routePipeExit
)

const (
	runtimePrefix    = "/2018-06-01/runtime/"
	extensionPrefix  = "/2020-01-01/extension/"
	logsPath         = "/2020-08-15/logs"
	logsPath20210318 = "/2021-03-18/logs"
)

// errMethodNotAllowed: a known path with the wrong method.
var errMethodNotAllowed = errors.New("method not allowed")

// parseRuntimeAPIPath maps a request to its route and request id.
func parseRuntimeAPIPath(method, path string) (apiRoute, string, error) {
	want := func(r apiRoute, m string) (apiRoute, string, error) {
		if method != m {
			return r, "", errMethodNotAllowed
		}
		return r, "", nil
	}
	switch {
	case strings.HasPrefix(path, runtimePrefix):
		rest := path[len(runtimePrefix):]
		switch rest {
		case "invocation/next":
			return want(routeNext, http.MethodGet)
		case "init/error":
			return want(routeInitError, http.MethodPost)
		}
		if !strings.HasPrefix(rest, "invocation/") {
			return routeNotFound, "", nil
		}
		rest = rest[len("invocation/"):]
		slash := strings.IndexByte(rest, '/')
		if slash <= 0 {
			return routeNotFound, "", nil
		}
		id, verb := rest[:slash], rest[slash+1:]
		var r apiRoute
		switch verb {
		case "response":
			r = routeResponse
		case "error":
			r = routeError
		default:
			return routeNotFound, "", nil
		}
		if method != http.MethodPost {
			return r, "", errMethodNotAllowed
		}
		return r, id, nil
	case strings.HasPrefix(path, extensionPrefix):
		switch path[len(extensionPrefix):] {
		case "register":
			return want(routeExtRegister, http.MethodPost)
		case "event/next":
			return want(routeExtNext, http.MethodGet)
		case "init/error":
			return want(routeExtInitError, http.MethodPost)
		case "exit/error":
			return want(routeExtExitError, http.MethodPost)
		}
	case path == pipeLogsPath:
		return want(routePipeLogs, http.MethodPost)
	case path == pipeExitPath:
		return want(routePipeExit, http.MethodPost)
	case path == logsPath || path == logsPath20210318:
		if method != http.MethodPut && method != http.MethodPost {
			return routeLogsSubscribe, "", errMethodNotAllowed
		}
		return routeLogsSubscribe, "", nil
	}
	return routeNotFound, "", nil
}

// RuntimeAPI serves the Runtime, Extensions and Logs APIs for one Environment.
type RuntimeAPI struct {
	env  *Environment
	cfg  *Config
	quit <-chan struct{}
}

// NewRuntimeAPI returns the handler; quit ends blocked /next calls at shutdown.
func NewRuntimeAPI(env *Environment, quit <-chan struct{}) *RuntimeAPI {
	return &RuntimeAPI{env: env, cfg: env.cfg, quit: quit}
}

func writeAPIError(w http.ResponseWriter, status int, errType, msg string) {
	b, _ := json.Marshal(errorBody{ErrorMessage: msg, ErrorType: errType})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

var (
	acceptedBody   = []byte(`{"status":"OK"}`)
	acceptedLength = []string{strconv.Itoa(len(acceptedBody))}
)

// writeAccepted answers 202 with a Content-Length, so that a Flush sends the whole
// answer (not the start of a chunked one).
func writeAccepted(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h["Content-Length"] = acceptedLength
	w.WriteHeader(http.StatusAccepted)
	_, _ = w.Write(acceptedBody)
}

// writeStateMachineError maps the environment's named errors to Lambda's answers.
func writeStateMachineError(w http.ResponseWriter, err error) {
	var se *StateError
	var lv *LogsValidationError
	switch {
	case errors.As(err, &se):
		writeAPIError(w, http.StatusForbidden, "InvalidStateTransition", err.Error())
	case errors.As(err, &lv):
		writeAPIError(w, http.StatusBadRequest, "Logs.ValidationError", err.Error())
	case errors.Is(err, ErrInvalidRequestID):
		writeAPIError(w, http.StatusBadRequest, "InvalidRequestID", err.Error())
	case errors.Is(err, ErrResponseTooLarge):
		writeAPIError(w, http.StatusRequestEntityTooLarge, "RequestEntityTooLarge", err.Error())
	case errors.Is(err, ErrUnknownExtension):
		writeAPIError(w, http.StatusForbidden, "Extension.UnknownExtensionIdentifier", err.Error())
	case errors.Is(err, ErrRegistrationClosed):
		writeAPIError(w, http.StatusForbidden, "Extension.RegistrationClosed", err.Error())
	case errors.Is(err, ErrTooManyExtensions):
		writeAPIError(w, http.StatusForbidden, "Extension.TooManyExtensions", err.Error())
	case errors.Is(err, ErrExtensionNameCollision):
		writeAPIError(w, http.StatusForbidden, "Extension.InvalidExtensionState", err.Error())
	case errors.Is(err, ErrSubscriptionClosed):
		writeAPIError(w, http.StatusForbidden, "Logs.SubscriptionClosed", err.Error())
	default:
		// Lambda's 500: "Non-recoverable state. Runtime should exit promptly."
		writeAPIError(w, http.StatusInternalServerError, "InternalServerError", err.Error())
	}
}

func (a *RuntimeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	route, id, err := parseRuntimeAPIPath(r.Method, r.URL.Path)
	if err != nil {
		writeAPIError(w, http.StatusMethodNotAllowed, "MethodNotAllowed", r.Method+" is not allowed on "+r.URL.Path)
		return
	}
	switch route {
	case routeNext:
		a.next(w, r)
	case routeResponse:
		a.response(w, r, id)
	case routeError:
		a.invocationError(w, r, id)
	case routeInitError:
		a.initError(w, r)
	case routeExtRegister:
		a.register(w, r)
	case routeExtNext:
		a.extensionNext(w, r)
	case routeExtInitError, routeExtExitError:
		a.extensionError(w, r, route == routeExtInitError)
	case routeLogsSubscribe:
		a.subscribe(w, r)
	case routePipeLogs:
		a.pipeLogs(w, r)
	case routePipeExit:
		a.pipeExit(w, r)
	default:
		writeAPIError(w, http.StatusNotFound, "NotFound", "no such endpoint: "+r.URL.Path)
	}
}

func (a *RuntimeAPI) next(w http.ResponseWriter, r *http.Request) {
	// Not r.Context().Done(): watching the connection would cost a goroutine and a system
	// call on every warm invocation; Next asks whether the runtime is gone only after a
	// long wait, and a runtime that asks again replaces its earlier call.
	var gone func() bool
	if pc, ok := r.Context().(peerChecker); ok {
		gone = pc.PeerGone
	}
	inv, err := a.env.Next(gone, a.quit)
	if err != nil {
		if errors.Is(err, errNextAbandoned) {
			return // the runtime went away; nobody to answer
		}
		writeStateMachineError(w, err)
		return
	}
	defer inv.Release()
	h := w.Header()
	h["Lambda-Runtime-Aws-Request-Id"] = []string{inv.ID}
	h["Lambda-Runtime-Deadline-Ms"] = []string{inv.deadlineMs}
	h["Lambda-Runtime-Invoked-Function-Arn"] = []string{inv.InvokedARN}
	if inv.TraceID != "" {
		h["Lambda-Runtime-Trace-Id"] = []string{inv.TraceID}
	}
	if inv.ClientContext != "" {
		h["Lambda-Runtime-Client-Context"] = []string{inv.ClientContext}
	}
	if inv.CognitoIdentity != "" {
		h["Lambda-Runtime-Cognito-Identity"] = []string{inv.CognitoIdentity}
	}
	h["Content-Type"] = []string{"application/json"}
	// A known length: one write for any event, not chunks past net/http's 2 KB buffer.
	h["Content-Length"] = []string{strconv.Itoa(inv.Payload.Len())}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(inv.Payload.Bytes())
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
	return readBodyInto(r, getBuffer(), limit)
}

func readBodyInto(r *http.Request, buf *bytes.Buffer, limit int64) (*bytes.Buffer, bool, error) {
	if r.ContentLength > limit {
		_, _ = io.Copy(io.Discard, r.Body)
		return buf, true, nil
	}
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength))
	}
	n, err := buf.ReadFrom(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return buf, false, err
	}
	if n > limit {
		_, _ = io.Copy(io.Discard, r.Body)
		return buf, true, nil
	}
	return buf, false, nil
}

func (a *RuntimeAPI) response(w http.ResponseWriter, r *http.Request, id string) {
	wantTail, err := a.env.CheckAnswer(id)
	if err != nil {
		writeStateMachineError(w, err)
		return
	}
	buf, over, err := readBody(r, MaxResponsePayload)
	if err != nil {
		putBuffer(buf)
		writeAPIError(w, http.StatusBadRequest, "TruncatedHTTPRequest", "HTTP request detected as truncated: "+err.Error())
		return
	}
	if over {
		a.env.logs.Drain() // lines the function logged before answering belong before END
		putBuffer(buf)
		if err := a.env.RespondTooLarge(id); err != nil {
			writeStateMachineError(w, err)
			return
		}
		writeStateMachineError(w, ErrResponseTooLarge)
		return
	}
	if wantTail {
		a.env.logs.Drain()
	}
	if err := a.env.Respond(id, buf); err != nil {
		putBuffer(buf)
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

func (a *RuntimeAPI) invocationError(w http.ResponseWriter, r *http.Request, id string) {
	if _, err := a.env.CheckAnswer(id); err != nil {
		writeStateMachineError(w, err)
		return
	}
	buf, over, err := readBody(r, MaxErrorPayload)
	defer putBuffer(buf)
	if err != nil {
		writeAPIError(w, http.StatusBadRequest, "TruncatedHTTPRequest", "HTTP request detected as truncated: "+err.Error())
		return
	}
	a.env.logs.Drain()
	if over {
		if err := a.env.RespondTooLarge(id); err != nil {
			writeStateMachineError(w, err)
			return
		}
		writeStateMachineError(w, ErrResponseTooLarge)
		return
	}
	body := append([]byte(nil), buf.Bytes()...)
	if err := a.env.ReportError(id, r.Header.Get("Lambda-Runtime-Function-Error-Type"), body); err != nil {
		writeStateMachineError(w, err)
		return
	}
	writeAccepted(w)
}

func (a *RuntimeAPI) initError(w http.ResponseWriter, r *http.Request) {
	buf, _, err := readBody(r, MaxErrorPayload)
	defer putBuffer(buf)
	if err != nil {
		writeAPIError(w, http.StatusBadRequest, "TruncatedHTTPRequest", "HTTP request detected as truncated: "+err.Error())
		return
	}
	a.env.logs.Drain()
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
	defer putBuffer(buf)
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
	w.Header().Set("Lambda-Extension-Event-Identifier", newRequestID())
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
	_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, MaxErrorPayload))
	if err := a.env.ExtensionError(id, errType, initPhase); err != nil {
		writeStateMachineError(w, err)
		return
	}
	writeAccepted(w)
}

func (a *RuntimeAPI) subscribe(w http.ResponseWriter, r *http.Request) {
	id := r.Header.Get("Lambda-Extension-Identifier")
	buf, over, err := readBody(r, 64*1024)
	defer putBuffer(buf)
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
			a.env.logs.Function(line)
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
