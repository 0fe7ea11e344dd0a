package api

import (
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/klambda/klambda/api/contract"
	"github.com/klambda/klambda/internal/jsonvalid"
	"github.com/klambda/klambda/internal/transport"
	"github.com/klambda/klambda/shim/internal/environment"
)

// InvokeServer is the invoke endpoint (:9000) plus /healthz and /readyz.
type InvokeServer struct {
	env    *environment.Environment
	cfg    *environment.Config
	secret []byte
	routes *routeTable
	// defaultARN is the ARN the runtime sees when the caller names none (built once).
	defaultARN string
}

// NewInvokeServer serves env.
func NewInvokeServer(env *environment.Environment) *InvokeServer {
	s := &InvokeServer{env: env, cfg: env.Config(), secret: []byte(env.Config().InvokeSecret), defaultARN: env.Config().DefaultInvokedARN()}
	s.routes = newRouteTable(
		func(w http.ResponseWriter, r *http.Request) {
			invokeError(w, http.StatusNotFound, "ResourceNotFoundException", "no such endpoint: "+r.URL.Path)
		},
		func(w http.ResponseWriter, _ *http.Request) {
			invokeError(w, http.StatusMethodNotAllowed, "InvalidRequestContentException", "invoke with POST")
		},
		route{path: contract.HealthPath, handle: s.health},
		route{path: contract.ReadyPath, handle: s.ready},
		// functions/{name}/invocations, as Lambda's Invoke API; any name is this function.
		route{methods: []string{http.MethodPost}, path: contract.InvokePathPrefix + "{name...}/invocations", handle: s.invoke},
	)
	return s
}

// answer is a reply of the shim's own endpoints, written by writeReply: a status, headers
// in canonical form, a body (Content-Length is added by writeReply, Date by the transport).
type answer struct {
	status int
	hdr    []headerField
	body   []byte
}

type headerField struct{ k, v string }

func (r *answer) set(k, v string) { r.hdr = append(r.hdr, headerField{k, v}) }

// writeReply writes r through an http.ResponseWriter.
func writeReply(w http.ResponseWriter, r *answer) {
	h := w.Header()
	for _, f := range r.hdr {
		h[f.k] = []string{f.v}
	}
	if r.body != nil || transport.BodyAllowedForStatus(r.status) {
		h["Content-Length"] = []string{strconv.Itoa(len(r.body))}
	}
	w.WriteHeader(r.status)
	if len(r.body) > 0 {
		_, _ = w.Write(r.body)
	}
}

// invokeErrorReply is an invocation error in the AWS REST-JSON shape the SDKs read.
func invokeErrorReply(status int, errType, msg string) *answer {
	b, _ := json.Marshal(map[string]string{"Type": "User", "message": msg})
	r := &answer{status: status, body: b}
	r.set(contract.HeaderErrorType, errType)
	r.set("Content-Type", "application/json")
	return r
}

// invokeError answers an invocation error.
func invokeError(w http.ResponseWriter, status int, errType, msg string) {
	writeReply(w, invokeErrorReply(status, errType, msg))
}

// headerGetter is what the invoke code reads of a request's headers (an http.Header).
type headerGetter interface{ Get(string) string }

func (s *InvokeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.routes.ServeHTTP(w, r) }

// health answers /healthz with whether an invocation is running: an activator that
// restarted rebuilds its view of busy environments from this (activator/README.md).
func (s *InvokeServer) health(w http.ResponseWriter, _ *http.Request, _ string) {
	w.Header()[contract.HeaderBusy] = []string{strconv.FormatBool(s.env.Busy())}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte("ok\n"))
}

// ready answers /readyz: 200 once init is done and while the environment can take (or
// runs) an invocation.
func (s *InvokeServer) ready(w http.ResponseWriter, _ *http.Request, _ string) {
	if s.env.Ready() {
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("ready\n"))
		return
	}
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = w.Write([]byte("not ready: " + s.env.Phase().String() + "\n"))
}

func validRequestID(id string) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func (s *InvokeServer) invoke(w http.ResponseWriter, r *http.Request, _ string) {
	if f := s.authorize(r.Header); f != nil {
		writeReply(w, f)
		return
	}
	inv := environment.NewInvocation()
	defer inv.Release()
	buf, over, err := readBodyInto(r, inv.Payload, contract.MaxSyncPayload)
	inv.Payload = buf
	if errors.Is(err, os.ErrDeadlineExceeded) {
		writeReply(w, s.bodyTimedOut()) // transport.Server's BodyTimeout
		return
	}
	if err != nil {
		invokeError(w, http.StatusBadRequest, "InvalidRequestContentException", "could not read the request body: "+err.Error())
		return
	}
	if over {
		writeReply(w, requestTooLarge())
		return
	}
	if f := s.fill(inv, r.Header, r.URL.RawQuery); f != nil {
		writeReply(w, f)
		return
	}
	err = runInvocation(s.env, inv)
	if err == nil && inv.Result().Stream != nil {
		s.streamAnswer(w, inv)
		return
	}
	writeReply(w, s.result(inv, err))
}

// runInvocation runs inv and waits until its result is known; the error is why it did
// not run (environment.ErrBusy, environment.ErrShuttingDown).
func runInvocation(env *environment.Environment, inv *environment.Invocation) error {
	done := make(chan error, 1)
	env.Invoke(inv, func(err error) { done <- err })
	return <-done
}

// requestTooLarge answers a payload over contract.MaxSyncPayload.
func requestTooLarge() *answer {
	return invokeErrorReply(http.StatusRequestEntityTooLarge, "RequestTooLargeException", "Request must be smaller than "+strconv.Itoa(contract.MaxSyncPayload)+" bytes for the InvokeFunction operation")
}

// unauthorized checks the invoke secret, from the request's head alone: nil when it is
// right (or none is configured), else the 401 to answer at once, before reading (or
// making room for) the body. The answer closes the connection: what the client sends
// after it is not wanted.
func (s *InvokeServer) unauthorized(h headerGetter) *answer {
	if len(s.secret) == 0 {
		return nil
	}
	if subtle.ConstantTimeCompare([]byte(h.Get(contract.HeaderInvokeSecret)), s.secret) == 1 {
		return nil
	}
	r := invokeErrorReply(http.StatusUnauthorized, "UnauthorizedException", "missing or wrong "+contract.HeaderInvokeSecret)
	r.set("Connection", "close")
	return r
}

// bodyTimedOut answers an invoke whose body did not arrive within the body timeout (the
// connection closes).
func (s *InvokeServer) bodyTimedOut() *answer {
	r := invokeErrorReply(http.StatusRequestTimeout, "RequestTimeoutException", "the request body did not arrive within "+s.cfg.EffectiveBodyTimeout().String()+" of its headers")
	r.set("Connection", "close")
	return r
}

// authorize checks the invoke secret and answers a dry run; nil when the invocation
// may go on.
func (s *InvokeServer) authorize(h headerGetter) *answer {
	if a := s.unauthorized(h); a != nil {
		return a
	}
	return s.dryRun(h)
}

// dryRun answers a dry run (nil for any other invocation type).
func (s *InvokeServer) dryRun(h headerGetter) *answer {
	if h.Get(contract.HeaderInvocationType) == "DryRun" {
		r := &answer{status: http.StatusNoContent}
		r.set(contract.HeaderExecutedVersion, s.cfg.FunctionVersion)
		return r
	}
	return nil
}

// fill checks inv's payload (read into inv.Payload) and sets the rest of it from the
// request's headers and query; nil when it can run, else the error to answer.
func (s *InvokeServer) fill(inv *environment.Invocation, h headerGetter, rawQuery string) *answer {
	if p := inv.Payload.Bytes(); len(p) > 0 && !jsonvalid.Valid(p) {
		return invokeErrorReply(http.StatusBadRequest, "InvalidRequestContentException", "Could not parse request body into json: the payload is not valid JSON")
	}
	if cc := h.Get(contract.HeaderClientContext); cc != "" {
		raw, err := base64.StdEncoding.DecodeString(cc)
		if err != nil || len(cc) > contract.MaxClientContext || !json.Valid(raw) {
			return invokeErrorReply(http.StatusBadRequest, "InvalidParameterValueException", "Client context must be a valid Base64-encoded JSON object of at most "+strconv.Itoa(contract.MaxClientContext)+" bytes.")
		}
		inv.ClientContext = string(raw)
	}
	if ci := h.Get(contract.HeaderCognitoIdentity); ci != "" {
		if !json.Valid([]byte(ci)) {
			return invokeErrorReply(http.StatusBadRequest, "InvalidParameterValueException", contract.HeaderCognitoIdentity+" must be a JSON object")
		}
		inv.CognitoIdentity = ci
	}
	if id := h.Get(contract.HeaderRequestID); id != "" {
		if !validRequestID(id) {
			return invokeErrorReply(http.StatusBadRequest, "InvalidParameterValueException", "request id must be 1-128 characters of [A-Za-z0-9._-]")
		}
		inv.ID = id
	} else {
		inv.ID = contract.NewRequestID()
	}
	if d := h.Get(contract.HeaderDeadlineMs); d != "" {
		ms, err := strconv.ParseInt(d, 10, 64)
		if err != nil || ms <= 0 {
			return invokeErrorReply(http.StatusBadRequest, "InvalidParameterValueException", contract.HeaderDeadlineMs+" must be epoch milliseconds")
		}
		inv.DeadlineHint = time.UnixMilli(ms)
	}
	inv.InvokedARN = h.Get(contract.HeaderInvokedARN)
	if inv.InvokedARN == "" {
		inv.InvokedARN = s.defaultARN
		if rawQuery != "" {
			v, _ := url.ParseQuery(rawQuery)
			if q := v.Get("Qualifier"); q != "" {
				inv.InvokedARN += ":" + q
			}
		}
	}
	inv.TraceID = h.Get(contract.HeaderTraceID)
	inv.WantTail = h.Get(contract.HeaderLogType) == "Tail"
	inv.WantStream = h.Get(contract.HeaderResponseStream) == "1"
	return nil
}

// result is the answer to an invocation that Invoke ran, or refused
// with err. Its body is inv's: it is valid until inv is released.
func (s *InvokeServer) result(inv *environment.Invocation, err error) *answer {
	switch {
	case errors.Is(err, environment.ErrBusy):
		// Never expected (the activator sends one invocation per environment): said in the
		// environment's log, where the e2e tests count these lines (contract.BusyRefusalLog).
		s.env.Logs().Platform(nil, contract.BusyRefusalLog+" "+inv.ID)
		return invokeErrorReply(http.StatusTooManyRequests, "TooManyRequestsException",
			"Rate Exceeded. This execution environment is already processing an invocation; klambda runs one invocation per environment at a time (the activator never sends a second one).")
	case err != nil:
		return invokeErrorReply(http.StatusBadGateway, "ResourceNotReadyException", err.Error())
	}
	res := inv.Result()
	if res.Err != nil {
		return invokeErrorReply(http.StatusBadGateway, "ResourceNotReadyException", res.Err.Error())
	}
	out := &answer{status: http.StatusOK, hdr: make([]headerField, 0, 10), body: res.ResultBody()}
	out.set(contract.HeaderRequestID, inv.ID)
	out.set(contract.HeaderExecutedVersion, s.cfg.FunctionVersion)
	out.set("Content-Type", "application/json")
	out.set(contract.HeaderDuration, strconv.FormatFloat(float64(res.Duration)/float64(time.Millisecond), 'f', 2, 64))
	if res.InitDuration > 0 {
		out.set(contract.HeaderInitDuration, strconv.FormatFloat(float64(res.InitDuration)/float64(time.Millisecond), 'f', 2, 64))
	}
	if res.FunctionError != "" {
		out.set(contract.HeaderFunctionError, res.FunctionError)
		out.set(contract.HeaderFunctionErrorType, res.ErrorType)
	}
	if res.Reset != "" {
		out.set(contract.HeaderEnvReset, res.Reset)
	}
	if inv.WantTail {
		out.set(contract.HeaderLogResult, base64.StdEncoding.EncodeToString(res.Tail))
	}
	return out
}

// InvokeMaxHeaderBytes bounds the head of a request to the invoke endpoint: what an
// unauthenticated client can make the shim hold (the activator's heads are a few KB; a
// client context is at most 3583 bytes).
const InvokeMaxHeaderBytes = 64 << 10
