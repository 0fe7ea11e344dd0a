package peer

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"

	"github.com/klambda/klambda/activator/invoke"
)

// Client forwards invocations to peer replicas.
type Client struct {
	HTTP *http.Client
	// Token is this replica's credential for the peer port (its ServiceAccount token made
	// for the peer audience; a projected token file is re-read as the kubelet rotates it).
	Token func() (string, error)
	// Scheme is "http" or "https" (the peer port serves the Invoke API's certificate).
	Scheme string
}

// ErrUnreachable: the request could not be sent to the peer; nothing ran there.
var ErrUnreachable = errors.New("peer: the owning replica could not be reached")

// Forward runs in on the replica at addr. Errors: ErrNotOwner and ErrUnreachable (nothing
// ran: look the owner up again), *invoke.Error (the invocation's answer), anything else (the
// call failed after it was sent: the invocation may have run).
func (c *Client) Forward(ctx context.Context, addr string, in *invoke.Input) (*invoke.Output, error) {
	tok, err := c.Token()
	if err != nil {
		return nil, invoke.ErrService("this activator has no peer credential: " + err.Error())
	}
	scheme := c.Scheme
	if scheme == "" {
		scheme = "http"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, scheme+"://"+addr+Path, bytes.NewReader(in.Payload))
	if err != nil {
		return nil, invoke.ErrService(err.Error())
	}
	encode(req.Header, in)
	req.Header["Authorization"] = []string{"Bearer " + tok}
	var sent atomic.Bool // headers written: the peer may have started the invocation
	req = req.WithContext(httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{WroteHeaders: func() { sent.Store(true) }}))
	resp, err := c.HTTP.Do(req) //nolint:bodyclose // readOutput closes it, or hands it to the Output whose Close does
	if err != nil {
		if !sent.Load() {
			return nil, errors.Join(ErrUnreachable, err)
		}
		return nil, invoke.ErrService("the owning activator did not answer: " + err.Error())
	}
	return readOutput(resp)
}
