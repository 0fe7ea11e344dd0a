// Package shimclient calls a runtime shim's invoke endpoint (runtime-shim/README.md,
// "Invoke endpoint"). The header names and paths of that contract are in api/contract.
package shimclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/klambda/klambda/activator/internal/keepalive"
	"github.com/klambda/klambda/api/contract"
	"github.com/klambda/klambda/internal/transport"
)

// ErrStateUnknown: the shim's /healthz did not say whether it is busy (an older shim).
var ErrStateUnknown = errors.New("the shim does not report whether it is busy")

// Call is one invocation sent to one environment.
type Call struct {
	Addr          string // host:port
	Secret        string
	RequestID     string
	InvokedARN    string
	Deadline      time.Time
	ClientContext string
	TraceID       string
	LogTail       bool
	// ResponseStream asks for a function's streamed response as a stream
	// (contract.HeaderResponseStream): the answer's body then carries the function's
	// bytes as it writes them, and its outcome comes in the trailers.
	ResponseStream bool
	Body           io.Reader
	ContentLength  int64
	// Until, when not zero, bounds the whole exchange, body included, besides the
	// context (the function's timeout and a grace, without a context of its own).
	Until time.Time
}

// Client sends Calls over keep-alive connections kept per environment (conn.go), and
// asks shims their state over HTTP. Make it with New.
type Client struct {
	HTTP  *http.Client
	conns *keepalive.Pool
}

// New returns a Client: a warm invocation reuses its environment's idle connection.
func New() *Client {
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	// The state checks (Busy) are rare: one idle connection per shim is plenty.
	t := &http.Transport{
		Proxy:               nil,
		DialContext:         dialer.DialContext,
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     keepalive.IdleTimeout,
		DisableCompression:  true,
	}
	// The invocations' connections read and write as the lean server's do (raw system
	// calls inside the poller: transport.RawDial).
	return &Client{HTTP: &http.Client{Transport: t}, conns: keepalive.New(transport.RawDial(dialer.DialContext))}
}

// Do sends c and returns the shim's response; the caller closes its body (reading it to
// its end first keeps the connection for the next invocation). ctx's deadline and
// cancellation bound the whole exchange, body included.
func (cl *Client) Do(ctx context.Context, c *Call) (*http.Response, error) {
	return do(ctx, cl.conns, c)
}

// Millis reads one of the shim's *-Ms headers (or trailers) as a duration; 0 when absent.
// name is one of contract's names, which are in canonical form, so it is looked up as is
// (h.Get would canonicalize it again).
func Millis(h http.Header, name string) time.Duration {
	var v string
	if vv := h[name]; len(vv) > 0 {
		v = vv[0]
	}
	if v == "" {
		return 0
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 0 {
		return 0
	}
	return time.Duration(f * float64(time.Millisecond))
}

// IsBusy tells whether resp is the shim's refusal of an invocation because it is running
// another one (429 TooManyRequestsException). The activator sends one invocation at a
// time per environment, so this means an invocation it did not send (a previous
// activator's, before a restart). It does not read the body.
func IsBusy(resp *http.Response) bool {
	return resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get(contract.HeaderErrorType) == "TooManyRequestsException"
}

// NotSent tells whether err, from Do, means the shim cannot have received the invocation
// (the connection was refused — also how a NetworkPolicy's REJECT shows — or the request's
// last bytes never left): it is safe to send it to another environment.
func NotSent(err error) bool { return errors.Is(err, keepalive.ErrNotSent) }

// Busy asks the shim at addr whether it is running an invocation (GET /healthz,
// contract.HeaderBusy). ErrStateUnknown when the answer does not say; other errors when the shim
// could not be asked.
func (cl *Client) Busy(ctx context.Context, addr string) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+contract.HealthPath, nil)
	if err != nil {
		return false, err
	}
	resp, err := cl.HTTP.Do(req)
	if err != nil {
		return false, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("shim %s: %s answered %d", addr, contract.HealthPath, resp.StatusCode)
	}
	switch resp.Header.Get(contract.HeaderBusy) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, ErrStateUnknown
}
