package dispatch

import (
	"context"
	"errors"
	"time"

	"github.com/klambda/klambda/api/contract"
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

// DefaultHandoverGrace is HandoverGrace's default.
const DefaultHandoverGrace = 2 * time.Second

// grace: the namespaces match selects were taken (Take) until until.
type grace struct {
	match func(namespace string) bool
	until time.Time
}

func (d *Dispatcher) handoverGraceLen() time.Duration {
	if d.HandoverGrace > 0 {
		return d.HandoverGrace
	}
	return DefaultHandoverGrace
}

// handoverGrace tells whether namespace was taken less than HandoverGrace ago, and until
// when its grace lasts.
func (d *Dispatcher) handoverGrace(namespace string) (time.Time, bool) {
	d.graceMu.Lock()
	defer d.graceMu.Unlock()
	now := d.now()
	for _, g := range d.graces {
		if now.Before(g.until) && g.match(namespace) {
			return g.until, true
		}
	}
	return time.Time{}, false
}

// slotWaiter is a request at its function's reserved limit during a hand-over's grace.
type slotWaiter struct {
	limit int32
	ns    string
	// ch gets nil once the request holds a slot (counted in active for it), or why not.
	ch chan error
}

// waitForSlot is for a request at its function's reserved limit (f.mu held, released on
// return, taken again when it returns nil): it waits, FIFO, until another invocation of
// the function ends and leaves it the slot (counted in f.active for it), at most until
// graceEnds (and maxWait; then the reserved-concurrency throttle), ctx's end, or until
// the namespace is given up (ErrNotOwner).
func (d *Dispatcher) waitForSlot(ctx context.Context, f *function, ns string, limit int32, graceEnds time.Time, maxWait time.Duration) error {
	w := &slotWaiter{limit: limit, ns: ns, ch: make(chan error, 1)}
	f.slotWaiters = append(f.slotWaiters, w)
	f.mu.Unlock()
	left := graceEnds.Sub(d.now())
	if maxWait > 0 {
		left = min(left, maxWait)
	}
	t := time.NewTimer(max(left, time.Millisecond))
	defer t.Stop()
	var why error
	select {
	case err := <-w.ch:
		if err != nil {
			return err
		}
		f.mu.Lock()
		return nil
	case <-t.C:
		why = &ThrottleError{Reason: contract.ReasonReservedConcurrency}
	case <-ctx.Done():
		why = ctx.Err()
	}
	f.mu.Lock()
	select {
	case err := <-w.ch: // answered as the wait ended
		if err == nil {
			return nil
		}
		why = err
	default:
		f.removeSlotWaiter(w)
	}
	f.mu.Unlock()
	return why
}

// admitSlotWaiters gives the slots below their limit to the requests waiting for one, in
// order (f.mu held).
func (f *function) admitSlotWaiters() {
	for len(f.slotWaiters) > 0 && f.active < f.slotWaiters[0].limit {
		w := f.slotWaiters[0]
		f.slotWaiters[0] = nil
		f.slotWaiters = f.slotWaiters[1:]
		f.active++
		w.ch <- nil
	}
}

func (f *function) removeSlotWaiter(w *slotWaiter) {
	f.slotWaiters = removeOne(f.slotWaiters, w)
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
//
// And for HandoverGrace from now, a request of these namespaces that finds its function
// at its reserved concurrency is not throttled at once: it waits (first come, first
// served), at most until the grace ends, for another invocation of the function to end
// and leave it the slot (then it is throttled after all).
// While the shard had no holder its invocations waited on every replica (the previous
// owner stopped admitting them, let its own finish and gave the Lease up; the others
// found no owner to forward to); they all reach this replica the moment it owns the
// shard, as one burst that Lambda, which never stops admitting, would have seen spread
// over the hand-over. Throttling that burst at the limit turned each rollout into failed
// requests (issue 17). The limit itself holds exactly: a waiting request counts only
// once it has the slot. (The namespace's unreserved pool throttles at once as before: a
// hand-over's burst reaches it only in a namespace that large.)
func (d *Dispatcher) Take(match func(namespace string) bool) {
	d.graceMu.Lock()
	now := d.now()
	kept := d.graces[:0]
	for _, g := range d.graces {
		if now.Before(g.until) {
			kept = append(kept, g)
		}
	}
	d.graces = append(kept, grace{match: match, until: now.Add(d.handoverGraceLen())})
	d.graceMu.Unlock()
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
		for i, w := range f.slotWaiters {
			w.ch <- ErrNotOwner
			f.slotWaiters[i] = nil
		}
		f.slotWaiters = f.slotWaiters[:0]
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
