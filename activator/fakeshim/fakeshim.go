// Package fakeshim is an in-memory stand-in for the runtime shim's invoke endpoint
// (runtime-shim/invoke.go), for the activator's tests and benchmarks. It keeps the
// shim's contract: the invoke secret, one invocation at a time (a second concurrent
// one is refused with 429, which a correct activator sees only from an environment busy
// with someone else's invocation: Hold), /healthz with X-Klambda-Busy, function errors as
// 200 + X-Amz-Function-Error, the log tail, duration and init-duration headers.
//
// The function it runs echoes its payload, and obeys a few fields of a JSON object
// payload: {"sleep_ms": N} sleeps, {"fail": "msg"} returns a function error,
// {"stream": ["a","b"]} streams those pieces (as the shim answers a function in the
// Runtime API's streaming mode, to a caller that asked for a stream; "fail" then ends
// the stream with an error in the trailers).
package fakeshim

import (
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klambda/klambda/api/contract"
)

// Shim is one fake environment.
type Shim struct {
	Secret  string
	Version string
	// InitDuration is reported on the first invocation.
	InitDuration time.Duration

	busy     atomic.Bool
	inited   atomic.Bool
	Calls    atomic.Int64
	Overlaps atomic.Int64 // concurrent invocations refused: a dispatcher bug
	// Gauge, when set, counts this shim's invocations with those of the other shims that
	// share it (a function's concurrency over all its environments).
	Gauge      *Gauge
	Server     *httptest.Server
	mu         sync.Mutex
	LastHeader http.Header
	// StreamGate, when set, is waited on before each streamed piece after the first:
	// a test proves a piece arrived before the next one is written.
	StreamGate chan struct{}
}

// Gauge counts invocations running at once over several shims, and the most seen.
type Gauge struct {
	running, peak atomic.Int64
}

// Peak is the most invocations that ran at once.
func (g *Gauge) Peak() int64 { return g.peak.Load() }

func (g *Gauge) enter() {
	n := g.running.Add(1)
	for p := g.peak.Load(); n > p && !g.peak.CompareAndSwap(p, n); p = g.peak.Load() {
	}
}

// Start serves a Shim on a local port.
func Start(secret, version string) *Shim {
	s := &Shim{Secret: secret, Version: version, InitDuration: 120 * time.Millisecond}
	s.Server = httptest.NewServer(s)
	return s
}

// Addr is host:port.
func (s *Shim) Addr() string { return s.Server.Listener.Addr().String() }

// Close stops the server.
func (s *Shim) Close() { s.Server.Close() }

func fail(w http.ResponseWriter, status int, typ, msg string) {
	w.Header().Set(contract.HeaderErrorType, typ)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b, _ := json.Marshal(map[string]string{"Type": "User", "message": msg})
	_, _ = w.Write(b)
}

// Hold makes the shim busy as if it ran an invocation nobody here sent (a previous
// activator's): invocations get 429 until Free.
func (s *Shim) Hold() bool { return s.busy.CompareAndSwap(false, true) }

// Free ends Hold.
func (s *Shim) Free() { s.busy.Store(false) }

func (s *Shim) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == contract.HealthPath && r.Method == http.MethodGet {
		// As the real shim: whether an invocation is running.
		w.Header().Set(contract.HeaderBusy, strconv.FormatBool(s.busy.Load()))
		w.WriteHeader(200)
		return
	}
	if r.URL.Path != contract.InvokePath || r.Method != http.MethodPost {
		fail(w, 404, "ResourceNotFoundException", "no such endpoint")
		return
	}
	if s.Secret != "" && subtle.ConstantTimeCompare([]byte(r.Header.Get(contract.HeaderInvokeSecret)), []byte(s.Secret)) != 1 {
		fail(w, 401, "UnauthorizedException", "missing or wrong X-Klambda-Invoke-Secret")
		return
	}
	if !s.busy.CompareAndSwap(false, true) {
		s.Overlaps.Add(1)
		fail(w, 429, "TooManyRequestsException", "This execution environment is already processing an invocation")
		return
	}
	defer s.busy.Store(false)
	if g := s.Gauge; g != nil {
		g.enter()
		defer g.running.Add(-1)
	}
	s.Calls.Add(1)
	s.mu.Lock()
	s.LastHeader = r.Header.Clone()
	s.mu.Unlock()
	start := time.Now()
	payload, _ := io.ReadAll(r.Body)
	var ctl struct {
		SleepMs int      `json:"sleep_ms"`
		Fail    string   `json:"fail"`
		Stream  []string `json:"stream"`
	}
	if len(payload) > 0 && payload[0] == '{' {
		_ = json.Unmarshal(payload, &ctl)
	}
	if ctl.SleepMs > 0 {
		time.Sleep(time.Duration(ctl.SleepMs) * time.Millisecond)
	}
	h := w.Header()
	h[contract.HeaderRequestID] = []string{r.Header.Get(contract.HeaderRequestID)}
	h[contract.HeaderExecutedVersion] = []string{s.Version}
	h["Content-Type"] = []string{"application/json"}
	if !s.inited.Swap(true) && s.InitDuration > 0 {
		h[contract.HeaderInitDuration] = []string{strconv.FormatFloat(float64(s.InitDuration)/1e6, 'f', 2, 64)}
	}
	if ctl.Stream != nil && r.Header.Get(contract.HeaderResponseStream) == "1" {
		s.stream(w, r, ctl.Stream, ctl.Fail, start)
		return
	}
	body := payload
	if len(body) == 0 {
		body = []byte("null")
	}
	if ctl.Fail != "" {
		h[contract.HeaderFunctionError] = []string{"Unhandled"}
		body, _ = json.Marshal(map[string]any{"errorMessage": ctl.Fail, "errorType": "errorString"})
	}
	if r.Header.Get(contract.HeaderLogType) == contract.LogTypeTail {
		log := "START RequestId: " + r.Header.Get(contract.HeaderRequestID) + " Version: " + s.Version + "\nEND\n"
		h[contract.HeaderLogResult] = []string{base64.StdEncoding.EncodeToString([]byte(log))}
	}
	h[contract.HeaderDuration] = []string{strconv.FormatFloat(float64(time.Since(start))/1e6, 'f', 2, 64)}
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(200)
	_, _ = w.Write(body)
}

// stream answers as the shim does for a function that streams its response: the head at
// once, each piece flushed as written, the outcome in trailers.
func (s *Shim) stream(w http.ResponseWriter, r *http.Request, pieces []string, fail string, start time.Time) {
	h := w.Header()
	h["Content-Type"] = []string{"text/plain"}
	h[contract.HeaderResponseStream] = []string{contract.ResponseStreamMode}
	w.WriteHeader(200)
	w.(http.Flusher).Flush()
	for i, p := range pieces {
		if i > 0 && s.StreamGate != nil {
			select {
			case <-s.StreamGate:
			case <-r.Context().Done(): // the caller left (a failed test): Close must not wait for the gate
				return
			}
		}
		_, _ = io.WriteString(w, p)
		w.(http.Flusher).Flush()
	}
	if fail != "" {
		body, _ := json.Marshal(map[string]any{"errorMessage": fail, "errorType": "errorString"})
		h[http.TrailerPrefix+contract.TrailerFunctionError] = []string{"Unhandled"}
		h[http.TrailerPrefix+contract.TrailerFunctionErrorType] = []string{"errorString"}
		h[http.TrailerPrefix+contract.TrailerFunctionErrorBody] = []string{base64.StdEncoding.EncodeToString(body)}
	}
	if r.Header.Get(contract.HeaderLogType) == contract.LogTypeTail {
		log := "START RequestId: " + r.Header.Get(contract.HeaderRequestID) + " Version: " + s.Version + "\nEND\n"
		h[http.TrailerPrefix+contract.TrailerLogResult] = []string{base64.StdEncoding.EncodeToString([]byte(log))}
	}
	h[http.TrailerPrefix+contract.TrailerDuration] = []string{strconv.FormatFloat(float64(time.Since(start))/1e6, 'f', 2, 64)}
}
