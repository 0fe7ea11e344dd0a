package dispatch

import (
	"github.com/klambda/klambda/activator/fnkey"
)

// Why a version may get no new environment now (CapacityError.Cause; the throttle
// metric's reason label, since Lambda's reason does not tell them apart).
const (
	// CauseUnschedulable: a pod of the version is Pending, PodScheduled=False, reason
	// Unschedulable: no node has room for it.
	CauseUnschedulable = "Unschedulable"
	// CauseFailedCreate: the version's ReplicaSet cannot create pods (condition
	// ReplicaFailure, e.g. a ResourceQuota is exhausted).
	CauseFailedCreate = "FailedCreate"
	// CauseScalingRate: the function's (or namespace's) scaling rate is spent: the scaler
	// may add no environment for the request before the next interval.
	CauseScalingRate = "ScalingRate"
)

// CapacityError is a request refused because no new environment of its version can be
// added now, as Lambda throttles when it cannot scale: 429 TooManyRequestsException with
// Reason. Detail is what the cluster said (for the log, not the caller).
type CapacityError struct {
	Reason string // Lambda's TooManyRequestsException reason (contract.Reason*)
	Cause  string // Cause*
	Detail string
}

func (e *CapacityError) Error() string {
	return "throttled: " + e.Reason + " (" + e.Cause + "): " + e.Detail
}

// Hint says in a sentence, for the caller, why the request was refused.
func (e *CapacityError) Hint() string {
	if e.Cause == CauseScalingRate {
		return "The function is scaling at its maximum rate of new execution environments; retry."
	}
	return "The cluster cannot place another execution environment of this function now; retry."
}

// SetPlacement tells the dispatcher what the cluster says of version key's environments
// that are not ready yet (the feeder, after SetEnvironments): starting are placed and
// starting, each will serve a waiting request; refused, when not nil, says no further
// environment can be placed. While refused holds, the requests waiting beyond the
// starting environments are refused with it at once (the newest first), and so is a new
// request that finds no idle environment and none starting for it. refused nil clears it.
func (d *Dispatcher) SetPlacement(key fnkey.Key, starting int, refused *CapacityError) {
	f := d.function(key)
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.pool(key)
	p.starting, p.refused = max(starting, 0), refused
	if refused != nil {
		p.refuseNewest(len(p.waiters)-p.starting, refused)
	}
}

// Refuse refuses the n requests of version key that began waiting last, with err (the
// scaler: they wait beyond what it may add at the scaling rate). It answers how many
// it refused.
func (d *Dispatcher) Refuse(key fnkey.Key, n int, err *CapacityError) int {
	f := d.function(key)
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pool(key).refuseNewest(n, err)
}

// refuseNewest hands err to the n newest waiters (f.mu held); the waiters undo their
// counts (see wait).
func (p *pool) refuseNewest(n int, err *CapacityError) int {
	n = min(n, len(p.waiters))
	for i := 0; i < n; i++ {
		last := len(p.waiters) - 1
		p.waiters[last].ch <- handoff{err: err}
		p.waiters[last] = nil
		p.waiters = p.waiters[:last]
	}
	return max(n, 0)
}

// refusal is the error a request that found no idle environment gets at once, or nil
// when it may wait: one is refused while the cluster cannot place a new environment and
// those starting are all spoken for (f.mu held).
func (p *pool) refusal() *CapacityError {
	if p.refused != nil && len(p.waiters) >= p.starting {
		return p.refused
	}
	return nil
}

// unwait undoes the counts of a lease that got no environment (f.mu held).
func (l *Lease) unwait() {
	l.f.active--
	l.f.admitSlotWaiters()
	if l.countedNS {
		l.f.ns.Add(-1)
	}
}
