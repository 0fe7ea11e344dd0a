// Package invoketest is a fake activator for tests: an HTTP server speaking the Lambda
// Invoke API (the subset a poller uses), so tests exercise the real SDK client, headers and
// status codes, with a Go function in place of the function.
package invoketest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"

	"github.com/google/uuid"

	"github.com/klambda/klambda/api/contract"
	"github.com/klambda/klambda/eventsources/invokeclient"
)

// Outcome is what the fake function does with one invocation.
type Outcome struct {
	// Status: 200 (default), 429 throttles, 5xx a service error.
	Status int
	// FunctionError sets X-Amz-Function-Error (e.g. "Unhandled").
	FunctionError string
	// Body is the response payload.
	Body []byte
}

// Call is a recorded invocation.
type Call struct {
	Namespace      string
	Function       string
	Qualifier      string
	InvocationType string
	Token          string // the bearer token
	Authorization  string // the header as sent
	Payload        []byte
}

// Handler is the fake function.
type Handler func(c Call) Outcome

// Server is a running fake activator.
type Server struct {
	*httptest.Server
	mu      sync.Mutex
	calls   []Call
	handler Handler
	// forget: calls are counted, not kept (benchmarks: no payloads piling up).
	forget bool
	count  int
	// reuse: payload buffers go back to payloads once the handler returned (benchmarks).
	reuse    bool
	payloads sync.Pool // of *[]byte
}

// Forget stops keeping calls (Calls returns none from now on; CallCount still counts).
func (s *Server) Forget() {
	s.mu.Lock()
	s.forget = true
	s.mu.Unlock()
}

// ReusePayloads stops keeping calls, as Forget, and reuses a call's payload buffer for a
// later call once the handler returned, so a benchmark's fake activator does not allocate
// (and collect) a buffer per invocation: the handler must not keep Call.Payload.
func (s *Server) ReusePayloads() {
	s.mu.Lock()
	s.forget, s.reuse = true, true
	s.mu.Unlock()
}

// payload is a buffer of n bytes, a reused one if the server reuses payloads.
func (s *Server) payload(n int) []byte {
	if p, ok := s.payloads.Get().(*[]byte); ok && cap(*p) >= n {
		return (*p)[:n]
	}
	return make([]byte, n)
}

// CallCount is the number of invocations so far.
func (s *Server) CallCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count
}

// New starts a fake activator calling h for every invocation (nil: always 200 "null").
func New(h Handler) *Server {
	s := &Server{handler: h}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// SetHandler replaces the fake function.
func (s *Server) SetHandler(h Handler) {
	s.mu.Lock()
	s.handler = h
	s.mu.Unlock()
}

// Calls returns the invocations so far.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.calls...)
}

// Invoker is the pollers' invoker (ConnInvoker) pointed at the fake.
func (s *Server) Invoker() *invokeclient.ConnInvoker {
	return invokeclient.NewConnInvoker(s.URL, invokeclient.StaticToken("test-token"), nil)
}

// HTTPInvoker is an HTTPInvoker (net/http's client) pointed at the fake.
func (s *Server) HTTPInvoker() *invokeclient.HTTPInvoker {
	return invokeclient.NewHTTPInvoker(s.URL, invokeclient.StaticToken("test-token"), nil)
}

// SDKInvoker is a LambdaInvoker (the AWS SDK's client) pointed at the fake.
func (s *Server) SDKInvoker() *invokeclient.LambdaInvoker {
	return &invokeclient.LambdaInvoker{ActivatorURL: s.URL, Tokens: invokeclient.StaticToken("test-token")}
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	// /namespaces/{ns}/2015-03-31/functions/{name}/invocations
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	c := Call{InvocationType: r.Header.Get(contract.HeaderInvocationType), Token: strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "), Authorization: r.Header.Get("Authorization"), Qualifier: r.URL.Query().Get("Qualifier")}
	if len(parts) >= 2 && parts[0] == "namespaces" {
		c.Namespace = parts[1]
		parts = parts[2:]
	}
	if r.Method != http.MethodPost || len(parts) != 4 || parts[1] != "functions" || parts[3] != "invocations" {
		w.Header().Set(contract.HeaderErrorType, "ResourceNotFoundException")
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"Type":"User","message":"unknown path"}`)
		return
	}
	c.Function = parts[2]
	var err error
	s.mu.Lock()
	reuse := s.reuse
	s.mu.Unlock()
	if r.ContentLength > 0 && r.ContentLength <= 7<<20 {
		if reuse {
			buf := s.payload(int(r.ContentLength))
			c.Payload = buf
			defer s.payloads.Put(&buf)
		} else {
			c.Payload = make([]byte, r.ContentLength)
		}
		_, err = io.ReadFull(r.Body, c.Payload)
	} else {
		c.Payload, err = io.ReadAll(r.Body)
	}
	if err != nil {
		// The caller left mid-body (a cancelled poller): as the activator, no invocation. A
		// short read used to reach the handler as a payload padded with NULs.
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.count++
	if !s.forget {
		s.calls = append(s.calls, c)
	}
	h := s.handler
	s.mu.Unlock()
	out := Outcome{Status: http.StatusOK, Body: []byte("null")}
	if h != nil {
		out = h(c)
	}
	if out.Status == 0 {
		out.Status = http.StatusOK
	}
	w.Header().Set(contract.HeaderRequestID, uuid.NewString())
	switch {
	case out.Status == http.StatusTooManyRequests:
		w.Header().Set(contract.HeaderErrorType, "TooManyRequestsException")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(out.Status)
		_ = json.NewEncoder(w).Encode(map[string]string{"Type": "User", "message": contract.ThrottleMessage, "Reason": contract.ReasonReservedConcurrency})
	case out.Status >= 300:
		w.Header().Set(contract.HeaderErrorType, "ServiceException")
		w.WriteHeader(out.Status)
		_, _ = io.WriteString(w, `{"Type":"Service","message":"fake service error"}`)
	default:
		if c.InvocationType == contract.InvocationEvent {
			w.WriteHeader(http.StatusAccepted)
			return
		}
		w.Header().Set(contract.HeaderExecutedVersion, contract.Latest)
		if out.FunctionError != "" {
			w.Header().Set(contract.HeaderFunctionError, out.FunctionError)
		}
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(out.Body)
	}
}
