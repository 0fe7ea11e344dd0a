// Package scaler owns spec.replicas of every function version's Deployment. The
// activator sees all demand, so it decides: desired = clamp(in-flight + waiting,
// provisioned, reserved). Scale-up happens at once (a waiting request wakes the scaler);
// scale-down only removes environments idle longer than the idle timeout, and marks
// them (pod-deletion-cost) so the ReplicaSet removes those and not busy ones.
package scaler

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/go-logr/logr"

	"github.com/klambda/klambda/activator/dispatch"
	"github.com/klambda/klambda/activator/fnkey"
	"github.com/klambda/klambda/activator/router"
)

// ErrNoDeployment: the version has no Deployment (yet).
var ErrNoDeployment = errors.New("no Deployment for this version")

// Pools is the dispatcher's side: demand, environments, draining, and the namespace
// limit it enforces.
type Pools interface {
	Stats() []dispatch.PoolStats
	// NamespaceLimit caps a version without reserved concurrency; <= 0 for none.
	NamespaceLimit() int32
	Drain(key fnkey.Key, names []string) []string
	Undrain(key fnkey.Key, names []string)
	// Refuse refuses the n requests of key that began waiting last (see Rate).
	Refuse(key fnkey.Key, n int, err *dispatch.CapacityError) int
}

// Floors is the router's side: provisioned floors and reserved ceilings.
type Floors interface {
	LimitsFor(fnkey.Key) router.Limits
	ProvisionedKeys() []fnkey.Key
}

// Deployments is the cluster's side.
type Deployments interface {
	// Replicas is the Deployment's spec.replicas (from a cache); ErrNoDeployment if none.
	Replicas(key fnkey.Key) (int32, error)
	// Scale sets spec.replicas.
	Scale(ctx context.Context, key fnkey.Key, replicas int32) error
	// MarkForRemoval makes pods the ReplicaSet's first choice to remove.
	MarkForRemoval(ctx context.Context, key fnkey.Key, pods []string) error
	// Unmark takes the mark away again (pods that stay).
	Unmark(ctx context.Context, key fnkey.Key, pods []string) error
}

// Prewarmed serves cold starts from pools of generic environments (activator/pool,
// docs/pools.md). A pod it takes becomes one of the version's environments without being
// one of its Deployment's replicas: the scaler counts it with them and removes it itself.
type Prewarmed interface {
	// Start takes up to n of key's pool pods for requests waiting now and prepares each in
	// the background: it joins the dispatcher, or, failing, is removed and the scaler is
	// woken (the next pass scales the Deployment instead). It answers how many it took.
	Start(key fnkey.Key, n int) int
	// Starting is how many of key's pool pods are being prepared.
	Starting(key fnkey.Key) int
	// Remove deletes claimed pods (drained, idle past the timeout).
	Remove(ctx context.Context, key fnkey.Key, pods []string) error
}

// Scaler decides replicas.
type Scaler struct {
	Pools       Pools
	Floors      Floors
	Deployments Deployments
	// IdleTimeout is how long an idle environment stays warm.
	IdleTimeout time.Duration
	// Interval between passes when nothing wakes the scaler.
	Interval time.Duration
	// Rate bounds how fast environments are added (rate.go); DefaultRate unless set.
	Rate Rate
	// Owns, when set, tells which namespaces this activator replica serves
	// (activator/ownership): the scaler sizes only their functions; the owners of the
	// others size theirs.
	Owns func(namespace string) bool
	// Prewarmed, when set, takes pool pods for waiting requests before the Deployment is
	// scaled up.
	Prewarmed Prewarmed
	Log       logr.Logger
	now       func() time.Time

	wake    chan struct{}
	buckets buckets
	mu      sync.Mutex
	applied map[fnkey.Key]applied
}

// applied is the replicas the scaler last set, and when: the cache may not show them yet.
type applied struct {
	replicas int32
	at       time.Time
}

// cacheLag bounds how long the informer cache may lag behind the scaler's own writes.
const cacheLag = 2 * time.Second

// New returns a Scaler with Lambda-like defaults (10 minutes idle, 1 s passes, Lambda's
// scaling rate).
func New(p Pools, f Floors, d Deployments) *Scaler {
	return &Scaler{Pools: p, Floors: f, Deployments: d, IdleTimeout: 10 * time.Minute, Interval: time.Second,
		Rate: DefaultRate, Log: logr.Discard(), now: time.Now, wake: make(chan struct{}, 1), applied: map[fnkey.Key]applied{}}
}

// Wake asks for a pass now (a request is waiting).
func (s *Scaler) Wake(fnkey.Key) {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run makes passes until ctx ends.
func (s *Scaler) Run(ctx context.Context) {
	t := time.NewTicker(s.Interval)
	defer t.Stop()
	for {
		s.Pass(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.wake:
		}
	}
}

// Pass looks at every version once and applies what changed.
func (s *Scaler) Pass(ctx context.Context) {
	now := s.now()
	stats := s.Pools.Stats()
	seen := make(map[fnkey.Key]bool, len(stats))
	for i := range stats {
		seen[stats[i].Key] = true
		if s.owns(stats[i].Key) {
			s.scaleOne(ctx, now, &stats[i])
		}
	}
	for _, k := range s.Floors.ProvisionedKeys() {
		if !seen[k] && s.owns(k) {
			seen[k] = true
			s.scaleOne(ctx, now, &dispatch.PoolStats{Key: k})
		}
	}
	s.buckets.prune(s.Rate, now)
	s.forgetApplied(now)
}

// owns: this replica sizes key's Deployment.
func (s *Scaler) owns(key fnkey.Key) bool { return s.Owns == nil || s.Owns(key.Namespace) }

// scaleOne sizes one version's Deployment: up to its demand (within its floor and
// ceiling, at the scaling rate), or down by its environments idle past the
// timeout. Pool pods claimed for the version (or being prepared) count as capacity
// beside the Deployment's replicas.
func (s *Scaler) scaleOne(ctx context.Context, now time.Time, st *dispatch.PoolStats) {
	key := st.Key
	replicas, err := s.Deployments.Replicas(key)
	if err != nil {
		if !errors.Is(err, ErrNoDeployment) {
			s.Log.Error(err, "reading replicas", "key", key.String())
		}
		return
	}
	replicas = s.lastApplied(key, now, replicas)
	claimed := s.claimed(st)
	s.unmarkStale(ctx, st)
	lim := s.Floors.LimitsFor(key)
	want := s.wanted(lim, st)
	if want > replicas+claimed {
		s.scaleUp(ctx, now, st, replicas, claimed, want)
		return
	}
	s.scaleDown(ctx, now, st, lim, replicas, claimed, want)
}

// claimed counts st's pool pods: environments and those being prepared.
func (s *Scaler) claimed(st *dispatch.PoolStats) int32 {
	if s.Prewarmed == nil {
		return 0
	}
	n := int32(s.Prewarmed.Starting(st.Key))
	for _, e := range st.Environments {
		if e.Claimed {
			n++
		}
	}
	return n
}

// wanted is the replicas st's demand asks for, within the version's provisioned floor and
// its concurrency ceiling.
func (s *Scaler) wanted(lim router.Limits, st *dispatch.PoolStats) int32 {
	ceiling := lim.Reserved
	if ceiling < 0 {
		ceiling = s.Pools.NamespaceLimit()
		if ceiling <= 0 {
			ceiling = 1 << 30
		}
	}
	floor := lim.Provisioned
	if floor > ceiling {
		floor = ceiling
	}
	// An environment busy with an invocation this activator did not send (after a
	// restart) is demand too: it is neither free nor to be removed.
	want := int32(st.InFlight + st.Waiting + st.BusyElsewhere)
	if want < floor {
		want = floor
	}
	if want > ceiling {
		want = ceiling
	}
	return want
}

// scaleUp adds what the scaling rate allows of want-(replicas+claimed) environments, and
// refuses the requests waiting beyond it. Pool pods serve waiting requests first; the
// Deployment adds the rest.
func (s *Scaler) scaleUp(ctx context.Context, now time.Time, st *dispatch.PoolStats, replicas, claimed, want int32) {
	key := st.Key
	current := replicas + claimed
	granted := int32(s.buckets.take(s.Rate, key, now, int(want-current)))
	if short := int(want - current - granted); short > 0 && st.Waiting > 0 {
		s.refuse(key, min(short, st.Waiting))
	}
	if granted == 0 {
		return
	}
	var pooled int32
	if s.Prewarmed != nil && st.Waiting > 0 {
		pooled = int32(s.Prewarmed.Start(key, min(int(granted), st.Waiting)))
	}
	if pooled == granted {
		s.Log.V(1).Info("took pool environments", "key", key.String(), "n", pooled, "waiting", st.Waiting)
		return
	}
	want = replicas + granted - pooled
	if err := s.Deployments.Scale(ctx, key, want); err != nil {
		s.buckets.giveBack(s.Rate, key, int(granted-pooled))
		s.Log.Error(err, "scaling up", "key", key.String(), "from", replicas, "to", want)
		return
	}
	s.setApplied(key, want, now)
	s.Log.V(1).Info("scaled up", "key", key.String(), "from", replicas, "to", want, "pooled", pooled, "inFlight", st.InFlight, "waiting", st.Waiting)
}

// scaleDown removes environments idle past the timeout, the longest idle first, down to
// want at the least: drained, then claimed pool pods deleted, and the others marked for
// removal and the Deployment's replicas applied.
func (s *Scaler) scaleDown(ctx context.Context, now time.Time, st *dispatch.PoolStats, lim router.Limits, replicas, claimed, want int32) {
	key := st.Key
	current := replicas + claimed
	idle := s.IdleTimeout
	if lim.IdleTimeout > 0 {
		idle = lim.IdleTimeout
	}
	var expired []dispatch.EnvironmentStats
	isClaimed := map[string]bool{}
	for _, e := range st.Environments {
		if !e.Busy && !e.Draining && !e.IdleSince.IsZero() && now.Sub(e.IdleSince) >= idle {
			expired = append(expired, e)
			isClaimed[e.Name] = e.Claimed
		}
	}
	target := current - int32(len(expired))
	if target < want {
		target = want
	}
	if target >= current {
		return
	}
	sort.Slice(expired, func(i, j int) bool { return expired[i].IdleSince.Before(expired[j].IdleSince) })
	names := make([]string, 0, current-target)
	for _, e := range expired[:current-target] {
		names = append(names, e.Name)
	}
	drained := s.Pools.Drain(key, names)
	var pooled, owned []string
	for _, n := range drained {
		if isClaimed[n] && s.Prewarmed != nil {
			pooled = append(pooled, n)
		} else {
			owned = append(owned, n)
		}
	}
	if len(pooled) > 0 {
		if err := s.Prewarmed.Remove(ctx, key, pooled); err != nil {
			s.Log.Error(err, "deleting idle pool environments", "key", key.String(), "pods", pooled)
			s.Pools.Undrain(key, pooled)
		} else {
			s.Log.V(1).Info("deleted idle pool environments", "key", key.String(), "pods", pooled)
		}
	}
	if len(owned) == 0 {
		return
	}
	target = replicas - int32(len(owned))
	if err := s.Deployments.MarkForRemoval(ctx, key, owned); err != nil {
		s.Log.Error(err, "marking idle pods for removal", "key", key.String(), "pods", owned)
		s.Pools.Undrain(key, owned)
		return
	}
	if err := s.Deployments.Scale(ctx, key, target); err != nil {
		s.Log.Error(err, "scaling down", "key", key.String(), "from", replicas, "to", target)
		s.Pools.Undrain(key, owned)
		if err := s.Deployments.Unmark(ctx, key, owned); err != nil {
			s.Log.Error(err, "unmarking pods that stay; the next pass tries again", "key", key.String(), "pods", owned)
		}
		return
	}
	s.setApplied(key, target, now)
	s.Log.V(1).Info("scaled down idle environments", "key", key.String(), "from", replicas, "to", target, "pods", owned)
}

// unmarkStale clears the removal mark of environments that are not being removed: marks a
// previous activator left (it stopped between marking and scaling down) or a scale-down
// that failed. A marked pod would be the ReplicaSet's first choice at the next scale-down,
// even while it runs an invocation.
func (s *Scaler) unmarkStale(ctx context.Context, st *dispatch.PoolStats) {
	var stale []string
	for _, e := range st.Environments {
		if e.Marked && !e.Draining {
			stale = append(stale, e.Name)
		}
	}
	if len(stale) == 0 {
		return
	}
	if err := s.Deployments.Unmark(ctx, st.Key, stale); err != nil {
		s.Log.Error(err, "unmarking pods that stay", "key", st.Key.String(), "pods", stale)
		return
	}
	s.Log.V(1).Info("cleared stale removal marks", "key", st.Key.String(), "pods", stale)
}

// refuse refuses n requests of key waiting beyond what the scaling rate lets the scaler
// add now.
func (s *Scaler) refuse(key fnkey.Key, n int) {
	err := &dispatch.CapacityError{Reason: s.Rate.reason(), Cause: dispatch.CauseScalingRate,
		Detail: fmt.Sprintf("scaling rate %d environments per %s (burst %d, per %s) spent", s.Rate.Per, s.Rate.Interval, s.Rate.Burst, s.Rate.Model)}
	if got := s.Pools.Refuse(key, n, err); got > 0 {
		s.Log.V(1).Info("refused requests waiting beyond the scaling rate", "key", key.String(), "refused", got)
	}
}

// lastApplied answers the replicas the scaler set for key within cacheLag, else current
// (the cache's).
func (s *Scaler) lastApplied(key fnkey.Key, now time.Time, current int32) int32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.applied[key]; ok && now.Sub(a.at) < cacheLag {
		return a.replicas
	}
	return current
}

func (s *Scaler) setApplied(key fnkey.Key, replicas int32, now time.Time) {
	s.mu.Lock()
	s.applied[key] = applied{replicas: replicas, at: now}
	s.mu.Unlock()
}

func (s *Scaler) forgetApplied(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, a := range s.applied {
		if now.Sub(a.at) >= cacheLag {
			delete(s.applied, k)
		}
	}
}
