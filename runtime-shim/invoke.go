package shim

import (
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Header names of the invoke endpoint's contract (README.md, "Invoke endpoint"). The
// X-Amz-* and X-Amzn-* names are Lambda's and the emulator's; X-Klambda-* are ours.
const (
	HeaderRequestID       = "X-Amzn-Requestid" // canonical form of X-Amzn-RequestId
	HeaderTraceID         = "X-Amzn-Trace-Id"
	HeaderClientContext   = "X-Amz-Client-Context"
	HeaderCognitoIdentity = "X-Amz-Cognito-Identity"
	HeaderLogType         = "X-Amz-Log-Type"
	HeaderInvocationType  = "X-Amz-Invocation-Type"
	HeaderLogResult       = "X-Amz-Log-Result"
	HeaderFunctionError   = "X-Amz-Function-Error"
	HeaderExecutedVersion = "X-Amz-Executed-Version"
	HeaderErrorType       = "X-Amzn-Errortype"

	HeaderInvokeSecret      = "X-Klambda-Invoke-Secret"
	HeaderInvokedARN        = "X-Klambda-Invoked-Function-Arn"
	HeaderDeadlineMs        = "X-Klambda-Deadline-Ms"
	HeaderDuration          = "X-Klambda-Duration-Ms"
	HeaderInitDuration      = "X-Klambda-Init-Duration-Ms"
	HeaderEnvReset          = "X-Klambda-Environment-Reset"
	HeaderFunctionErrorType = "X-Klambda-Function-Error-Type"
)

const invokePathPrefix = "/2015-03-31/functions/"

// maxClientContext is Lambda's limit on X-Amz-Client-Context (base64 bytes).
const maxClientContext = 3583

// InvokeServer is the invoke endpoint (:9000) plus /healthz and /readyz.
type InvokeServer struct {
	env    *Environment
	cfg    *Config
	secret []byte
}

// NewInvokeServer serves env.
func NewInvokeServer(env *Environment) *InvokeServer {
	return &InvokeServer{env: env, cfg: env.cfg, secret: []byte(env.cfg.InvokeSecret)}
}

// invokeError answers an invocation error in the AWS REST-JSON shape the SDKs read.
func invokeError(w http.ResponseWriter, status int, errType, msg string) {
	b, _ := json.Marshal(map[string]string{"Type": "User", "message": msg})
	h := w.Header()
	h.Set(HeaderErrorType, errType)
	h.Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func (s *InvokeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/healthz":
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("ok\n"))
		return
	case r.URL.Path == "/readyz":
		if s.env.Ready() {
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write([]byte("ready\n"))
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("not ready: " + s.env.Phase().String() + "\n"))
		return
	case strings.HasPrefix(r.URL.Path, invokePathPrefix) && strings.HasSuffix(r.URL.Path, "/invocations"):
		if r.Method != http.MethodPost {
			invokeError(w, http.StatusMethodNotAllowed, "InvalidRequestContentException", "invoke with POST")
			return
		}
		s.invoke(w, r)
	default:
		invokeError(w, http.StatusNotFound, "ResourceNotFoundException", "no such endpoint: "+r.URL.Path)
	}
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

func (s *InvokeServer) invoke(w http.ResponseWriter, r *http.Request) {
	h := r.Header
	if len(s.secret) > 0 {
		got := h.Get(HeaderInvokeSecret)
		if subtle.ConstantTimeCompare([]byte(got), s.secret) != 1 {
			invokeError(w, http.StatusUnauthorized, "UnauthorizedException", "missing or wrong "+HeaderInvokeSecret)
			return
		}
	}
	if h.Get(HeaderInvocationType) == "DryRun" {
		w.Header().Set(HeaderExecutedVersion, s.cfg.FunctionVersion)
		w.WriteHeader(http.StatusNoContent)
		return
	}
	inv := NewInvocation()
	defer inv.Release()
	_, over, err := readBodyInto(r, inv.Payload, MaxRequestPayload)
	if err != nil {
		invokeError(w, http.StatusBadRequest, "InvalidRequestContentException", "could not read the request body: "+err.Error())
		return
	}
	if over {
		invokeError(w, http.StatusRequestEntityTooLarge, "RequestTooLargeException", "Request must be smaller than "+strconv.Itoa(MaxRequestPayload)+" bytes for the InvokeFunction operation")
		return
	}
	if p := inv.Payload.Bytes(); len(p) > 0 && !json.Valid(p) {
		invokeError(w, http.StatusBadRequest, "InvalidRequestContentException", "Could not parse request body into json: the payload is not valid JSON")
		return
	}
	if cc := h.Get(HeaderClientContext); cc != "" {
		raw, err := base64.StdEncoding.DecodeString(cc)
		if err != nil || len(cc) > maxClientContext || !json.Valid(raw) {
			invokeError(w, http.StatusBadRequest, "InvalidParameterValueException", "Client context must be a valid Base64-encoded JSON object of at most 3583 bytes.")
			return
		}
		inv.ClientContext = string(raw)
	}
	if ci := h.Get(HeaderCognitoIdentity); ci != "" {
		if !json.Valid([]byte(ci)) {
			invokeError(w, http.StatusBadRequest, "InvalidParameterValueException", HeaderCognitoIdentity+" must be a JSON object")
			return
		}
		inv.CognitoIdentity = ci
	}
	if id := h.Get(HeaderRequestID); id != "" {
		if !validRequestID(id) {
			invokeError(w, http.StatusBadRequest, "InvalidParameterValueException", "request id must be 1-128 characters of [A-Za-z0-9._-]")
			return
		}
		inv.ID = id
	} else {
		inv.ID = newRequestID()
	}
	if d := h.Get(HeaderDeadlineMs); d != "" {
		ms, err := strconv.ParseInt(d, 10, 64)
		if err != nil || ms <= 0 {
			invokeError(w, http.StatusBadRequest, "InvalidParameterValueException", HeaderDeadlineMs+" must be epoch milliseconds")
			return
		}
		inv.DeadlineHint = time.UnixMilli(ms)
	}
	inv.InvokedARN = h.Get(HeaderInvokedARN)
	if inv.InvokedARN == "" {
		inv.InvokedARN = s.cfg.defaultInvokedARN()
		if q := r.URL.Query().Get("Qualifier"); q != "" {
			inv.InvokedARN += ":" + q
		}
	}
	inv.TraceID = h.Get(HeaderTraceID)
	inv.WantTail = h.Get(HeaderLogType) == "Tail"

	switch err := s.env.Invoke(inv); {
	case errors.Is(err, ErrBusy):
		invokeError(w, http.StatusTooManyRequests, "TooManyRequestsException",
			"Rate Exceeded. This execution environment is already processing an invocation; klambda runs one invocation per environment at a time (the activator never sends a second one).")
		return
	case err != nil:
		invokeError(w, http.StatusBadGateway, "ResourceNotReadyException", err.Error())
		return
	}
	res := inv.Result()
	if res.Err != nil {
		invokeError(w, http.StatusBadGateway, "ResourceNotReadyException", res.Err.Error())
		return
	}
	out := w.Header()
	out[HeaderRequestID] = []string{inv.ID}
	out[HeaderExecutedVersion] = []string{s.cfg.FunctionVersion}
	out["Content-Type"] = []string{"application/json"}
	out[HeaderDuration] = []string{strconv.FormatFloat(float64(res.Duration)/float64(time.Millisecond), 'f', 2, 64)}
	if res.InitDuration > 0 {
		out[HeaderInitDuration] = []string{strconv.FormatFloat(float64(res.InitDuration)/float64(time.Millisecond), 'f', 2, 64)}
	}
	if res.FunctionError != "" {
		out[HeaderFunctionError] = []string{res.FunctionError}
		out[HeaderFunctionErrorType] = []string{res.ErrorType}
	}
	if res.Reset != "" {
		out[HeaderEnvReset] = []string{res.Reset}
	}
	if inv.WantTail {
		out[HeaderLogResult] = []string{base64.StdEncoding.EncodeToString(res.Tail)}
	}
	body := res.ResultBody()
	out["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}
