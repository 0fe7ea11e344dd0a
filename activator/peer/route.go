package peer

import (
	"context"
	"errors"
	"time"

	"github.com/klambda/klambda/activator/invoke"
)

// Ownership is activator/ownership.Manager's side the Router needs.
type Ownership interface {
	OwnsNamespace(namespace string) bool
	Owner(namespace string) (addr string, ok bool)
}

// Router is the Invoker the Invoke API, the async workers and the function URLs call: it
// runs an invocation here when this replica owns its namespace, and forwards it to the
// owner otherwise. While a namespace's shard changes hands (no live owner, or the one asked
// no longer owns it), it looks again every Retry, at most Wait in all. Event invocations
// are stored here (the queue is shared by every replica); only their runs are owned.
type Router struct {
	Local     invoke.Invoker
	Ownership Ownership
	Client    *Client
	Wait      time.Duration
	Retry     time.Duration
	// Steer, if set, closes the connections of callers that keep reaching this replica
	// for namespaces another owns (Steering).
	Steer *Steering
	// Forwarded, if set, is called for each invocation the owner answered (a metric).
	Forwarded func()
}

var _ invoke.Invoker = (*Router)(nil)

// Invoke runs in where its namespace is owned.
func (r *Router) Invoke(ctx context.Context, in *invoke.Input) (*invoke.Output, error) {
	if in.InvocationType == invoke.Event {
		return r.Local.Invoke(ctx, in)
	}
	deadline := time.Now().Add(r.Wait)
	for {
		var last string // why this round did not run it, for the answer when time is up
		if r.Ownership.OwnsNamespace(in.Namespace) {
			out, err := r.Local.Invoke(ctx, in)
			if !errors.Is(err, ErrNotOwner) {
				r.Steer.routed(ctx, "")
				return out, err
			}
			last = "this replica was giving its shard up"
		} else if addr, ok := r.Ownership.Owner(in.Namespace); ok {
			out, answered, err := r.Client.forward(ctx, addr, in)
			if !errors.Is(err, ErrNotOwner) && !errors.Is(err, ErrUnreachable) {
				if !answered {
					addr = "" // this replica's own error: no reason to move
				} else if r.Forwarded != nil {
					r.Forwarded()
				}
				r.Steer.routed(ctx, addr)
				return out, err
			}
			last = "the holder at " + addr + ": " + err.Error()
		} else {
			last = "no live holder"
		}
		if !time.Now().Before(deadline) {
			r.Steer.routed(ctx, "")
			return nil, invoke.ErrService("No activator replica owns namespace " + in.Namespace + " yet (its shard is changing hands; " + last + "); retry.")
		}
		select {
		case <-ctx.Done():
			r.Steer.routed(ctx, "")
			return nil, invoke.ErrService("request cancelled: " + ctx.Err().Error())
		case <-time.After(r.Retry):
		}
	}
}
