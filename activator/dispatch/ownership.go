package dispatch

import (
	"context"
	"errors"
	"time"
)

// Several activator replicas share the work by namespace (activator/ownership): each
// namespace is served by the one replica that owns its shard, so that replica's counts
// are the namespace's (reserved and namespace concurrency exact) and only it leases the
// namespace's environments. The dispatcher refuses the namespaces it does not own, and
// the ownership hooks call Take and Give as shards change hands.

// ErrNotOwner: this replica does not serve the namespace (any more); nothing ran. The
// caller looks the owner up again (activator/peer).
var ErrNotOwner = errors.New("this activator replica does not own the namespace")

// SetOwnership makes the dispatcher serve only the namespaces owns reports: Acquire
// refuses the others with ErrNotOwner. Set it before use; nil serves every namespace.
func (d *Dispatcher) SetOwnership(owns func(namespace string) bool) {
	d.mu.Lock()
	d.owns = owns
	d.mu.Unlock()
}

// functions lists the functions of the namespaces match selects.
func (d *Dispatcher) functions(match func(namespace string) bool) []*function {
	d.mu.RLock()
	defer d.mu.RUnlock()
	var out []*function
	for k, f := range d.fns {
		if match(k.ns) {
			out = append(out, f)
		}
	}
	return out
}

// Take is for a shard this replica has just taken: the environments of its namespaces may
// still run invocations the previous owner sent (it died, or its Lease expired), so each
// idle one is unverified and its shim asked (Check) whether it is busy; one that is stays
// out of rotation until its shim is free, as after a restart. A request that meets one
// busy before the answer moves to another environment (Lease.Reassign).
func (d *Dispatcher) Take(match func(namespace string) bool) {
	for _, f := range d.functions(match) {
		f.mu.Lock()
		for _, p := range f.pools {
			for _, e := range p.envs {
				if e.busy || e.gone || e.elsewhere {
					continue
				}
				e.verified = false
				if d.Check != nil {
					go d.verify(f, p, e)
				}
			}
		}
		f.mu.Unlock()
	}
}

// Give is for a shard this replica is giving up, once the ownership no longer reports
// it (so Acquire refuses its namespaces): the requests of its namespaces still waiting
// for an environment are refused with ErrNotOwner (their callers go to the next owner),
// and Give returns when no invocation admitted here holds an environment of them any
// more (or ctx ends, with its error): the next owner then finds those environments as
// this replica leaves them.
func (d *Dispatcher) Give(ctx context.Context, match func(namespace string) bool) error {
	fns := d.functions(match)
	for _, f := range fns {
		f.mu.Lock()
		for _, p := range f.pools {
			for i, w := range p.waiters {
				w.ch <- handoff{err: ErrNotOwner}
				p.waiters[i] = nil
			}
			p.waiters = p.waiters[:0]
		}
		f.mu.Unlock()
	}
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		busy := false
		for _, f := range fns {
			f.mu.Lock()
			busy = busy || f.active > 0
			f.mu.Unlock()
		}
		if !busy {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
