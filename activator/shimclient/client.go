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

	"github.com/klambda/klambda/api/contract"
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
	Body          io.Reader
	ContentLength int64
}

// Client sends Calls over a keep-alive transport sized for many concurrent environments.
type Client struct {
	HTTP *http.Client
}

// New returns a Client whose transport keeps enough idle connections per environment
// that a warm invocation never dials.
func New() *Client {
	t := &http.Transport{
		Proxy: nil,
		DialContext: (&net.Dialer{
			Timeout:   5 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConns:        4096,
		MaxIdleConnsPerHost: 16, // one invocation at a time per pod; a few spare for overlap
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
		WriteBufferSize:     32 << 10,
		ReadBufferSize:      32 << 10,
	}
	return &Client{HTTP: &http.Client{Transport: t}}
}

// Do sends c and returns the shim's response; the caller closes its body.
func (cl *Client) Do(ctx context.Context, c *Call) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+c.Addr+contract.InvokePath, c.Body)
	if err != nil {
		return nil, err
	}
	req.ContentLength = c.ContentLength
	h := req.Header
	h["Content-Type"] = []string{"application/json"}
	if c.Secret != "" {
		h[contract.HeaderInvokeSecret] = []string{c.Secret}
	}
	if c.RequestID != "" {
		h[contract.HeaderRequestID] = []string{c.RequestID}
	}
	if c.InvokedARN != "" {
		h[contract.HeaderInvokedARN] = []string{c.InvokedARN}
	}
	if !c.Deadline.IsZero() {
		h[contract.HeaderDeadlineMs] = []string{strconv.FormatInt(c.Deadline.UnixMilli(), 10)}
	}
	if c.ClientContext != "" {
		h[contract.HeaderClientContext] = []string{c.ClientContext}
	}
	if c.TraceID != "" {
		h[contract.HeaderTraceID] = []string{c.TraceID}
	}
	if c.LogTail {
		h[contract.HeaderLogType] = []string{contract.LogTypeTail}
	}
	return cl.HTTP.Do(req)
}

// Millis reads one of the shim's *-Ms headers as a duration; 0 when absent.
func Millis(h http.Header, name string) time.Duration {
	v := h.Get(name)
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
