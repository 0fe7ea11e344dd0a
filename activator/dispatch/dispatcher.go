// Package dispatch gives each invocation an execution environment of its own: one
// invocation at a time per environment, as Lambda runs them. An idle environment takes
// the request at once; otherwise the request waits (bounded by the caller's context)
// while the scaler adds capacity. A function at its concurrency limit (reserved
// concurrency, or the namespace's unreserved pool) is throttled at once, not queued.
//
// Locks are held only for bookkeeping, never across a network call.
package dispatch

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klambda/klambda/activator/fnkey"
	"github.com/klambda/klambda/api/contract"
)

// Environment is one ready pod of a version: where its shim's invoke endpoint listens and
// the secret that endpoint wants.
type Environment struct {
	Name   string // pod name
	Addr   string // host:port
	Secret string
	// Unverified: the environment existed before this activator started, so it may still
	// run an invocation a previous activator sent. It serves requests at once (a shim that
	// answers busy moves the request elsewhere, see Lease.Reassign), but is scaled away only
	// once its shim says it is idle, it has served one of ours, or MaxInvocation has passed.
	Unverified bool
	// Marked: the pod carries the scaler's removal mark (pod-deletion-cost), e.g. left by a
	// previous activator; the scaler clears it from an environment it is not removing.
	Marked bool
	// Claimed: a pod taken from a pool (docs/pools.md), owned by the version's Deployment
	// but not one of its replicas: the scaler deletes it instead of scaling down.
	Claimed bool
}

// MaxInvocation bounds how long an invocation this dispatcher did not send may still run
// (Lambda's 900 s timeout plus the shim's grace): an unverified environment is known idle
// after it.
const MaxInvocation = 15*time.Minute + 30*time.Second

// StateChecker asks an environment's shim whether it is running an invocation
// (shimclient.Client.Busy). An error means the state is unknown.
type StateChecker func(ctx context.Context, e Environment) (busy bool, err error)

// Reservations knows the reserved concurrency a namespace's functions hold (the router's
// table): what the namespace limit leaves to the functions without a reservation.
type Reservations interface {
	// UnreservedLimit is namespaceLimit minus every reservation in namespace, at least 0.
	UnreservedLimit(namespace string, namespaceLimit int32) int32
}

// ThrottleError is a request refused at a concurrency limit; Reason is
// contract.ReasonReservedConcurrency or contract.ReasonAccountConcurrency.
type ThrottleError struct{ Reason string }

func (e *ThrottleError) Error() string { return "throttled: " + e.Reason }

// ErrNoEnvironment: no environment became free before the wait deadline.
var ErrNoEnvironment = errors.New("no execution environment became available in time")

// Waker is told that a version has a request waiting (the scaler).
type Waker interface{ Wake(fnkey.Key) }

type nopWaker struct{}

func (nopWaker) Wake(fnkey.Key) {}

// Dispatcher holds every version's pool.
type Dispatcher struct {
	mu    sync.RWMutex
	fns   map[fnKey]*function
	ns    map[string]*atomic.Int32
	waker Waker
	now   func() time.Time

	// namespaceLimit is the concurrency a namespace's functions share (Lambda's account
	// limit), -1 for none; reservations splits it (SetNamespaceLimit).
	namespaceLimit atomic.Int32
	reservations   Reservations

	// Check, when set, asks a shim whether it is busy: before an unverified environment
	// is drained, and while an environment that answered busy is watched (set before use).
	Check StateChecker
	// RecheckMin and RecheckMax bound the back-off between checks of an environment busy
	// with an invocation this dispatcher did not send (default 100 ms, 5 s).
	RecheckMin, RecheckMax time.Duration

	// owns, when set, tells which namespaces this replica serves (ownership.go).
	owns func(namespace string) bool

	// HandoverGrace: how long after taking a namespace (Take) its requests past a
	// concurrency limit wait for an environment instead of being throttled at once
	// (default DefaultHandoverGrace). Set before use.
	HandoverGrace time.Duration
	graceMu       sync.Mutex
	graces        []grace
}

type fnKey struct{ ns, name string }

type function struct {
	mu sync.Mutex
	// active is in-flight + waiting over all versions: Lambda's concurrency.
	active int32
	// slotWaiters: requests at the reserved limit during a hand-over's grace, waiting
	// (FIFO) for active to drop below it (ownership.go).
	slotWaiters []*slotWaiter
	pools       map[string]*pool
	ns          *atomic.Int32
}

type pool struct {
	key      fnkey.Key
	envs     map[string]*env
	idle     []*env // a stack: the most recently used is reused first, so the rest can age out
	waiters  []*waiter
	inflight int
	// starting and refused: what the cluster says of environments not ready yet (capacity.go).
	starting int
	refused  *CapacityError
	// held: pods being specialized for this version (prewarmed.go), kept out of
	// SetEnvironments until they join; a failed one (time set) stays out a while longer.
	held map[string]time.Time
}

type env struct {
	Environment
	busy     bool
	gone     bool
	draining bool
	used     bool
	// elsewhere: the shim answered busy (an invocation this dispatcher did not send, e.g.
	// a previous activator's); busy is also set, and a watcher puts it back when free.
	elsewhere bool
	// verified: known not to run an invocation of someone else (see Environment.Unverified).
	verified  bool
	added     time.Time
	idleSince time.Time
}

type waiter struct{ ch chan handoff }

// handoff is an environment given to a waiter; first is decided under the lock. Or,
// with err, the waiter is refused: a *CapacityError (capacity.go) or ErrNotOwner
// (ownership.go).
type handoff struct {
	e     *env
	first bool
	err   error
}

// New returns a Dispatcher that wakes waker when requests wait.
func New(waker Waker) *Dispatcher {
	if waker == nil {
		waker = nopWaker{}
	}
	d := &Dispatcher{fns: map[fnKey]*function{}, ns: map[string]*atomic.Int32{}, waker: waker, now: time.Now}
	d.namespaceLimit.Store(-1)
	return d
}

// SetNamespaceLimit sets the concurrency a namespace's functions share (Lambda's account
// limit; -1 for none). Functions with reserved concurrency take theirs out of it: the
// rest, r.UnreservedLimit, is the pool of the functions without one. Set it before use.
func (d *Dispatcher) SetNamespaceLimit(limit int32, r Reservations) {
	d.mu.Lock()
	d.reservations = r
	d.mu.Unlock()
	if limit < 0 || r == nil {
		limit = -1
	}
	d.namespaceLimit.Store(limit)
}

// NamespaceLimit is the limit SetNamespaceLimit set; -1 for none.
func (d *Dispatcher) NamespaceLimit() int32 { return d.namespaceLimit.Load() }

// unreserved is the pool namespace's functions without reserved concurrency share; -1 for
// no limit.
func (d *Dispatcher) unreserved(namespace string) int32 {
	limit := d.namespaceLimit.Load()
	if limit < 0 {
		return -1
	}
	return d.reservations.UnreservedLimit(namespace, limit)
}

// SetWaker replaces the waker (wiring: the scaler is built after the dispatcher).
func (d *Dispatcher) SetWaker(w Waker) { d.mu.Lock(); d.waker = w; d.mu.Unlock() }

func (d *Dispatcher) function(k fnkey.Key) *function {
	fk := fnKey{k.Namespace, k.Function}
	d.mu.RLock()
	f := d.fns[fk]
	d.mu.RUnlock()
	if f != nil {
		return f
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if f = d.fns[fk]; f == nil {
		c := d.ns[k.Namespace]
		if c == nil {
			c = new(atomic.Int32)
			d.ns[k.Namespace] = c
		}
		f = &function{pools: map[string]*pool{}, ns: c}
		d.fns[fk] = f
	}
	return f
}

func (f *function) pool(k fnkey.Key) *pool {
	p := f.pools[k.Version]
	if p == nil {
		p = &pool{key: k, envs: map[string]*env{}}
		f.pools[k.Version] = p
	}
	return p
}

// Lease is one environment held by one invocation. Release it when the shim has
// answered (not when the client went away: the environment is busy until then).
type Lease struct {
	Env Environment
	// Waited is how long the request waited for the environment.
	Waited time.Duration
	// FirstUse is true when this is the environment's first invocation here.
	FirstUse bool

	d         *Dispatcher
	f         *function
	p         *pool
	e         *env
	countedNS bool
	released  atomic.Bool
}

// Acquire gives the request an environment of version key, waiting until ctx is done.
// reserved is the function's reserved concurrency (-1: none; it then shares the
// namespace's unreserved pool, SetNamespaceLimit). Errors: *ThrottleError at a limit (at
// once), *CapacityError when no environment can be added (capacity.go), ErrNoEnvironment
// when ctx ends first.
func (d *Dispatcher) Acquire(ctx context.Context, key fnkey.Key, reserved int32) (*Lease, error) {
	return d.AcquireWithin(ctx, key, reserved, 0)
}

// AcquireWithin is Acquire that waits at most maxWait (0: until ctx ends). The timer
// exists only when the request has to wait: a warm acquisition costs no allocation of it.
func (d *Dispatcher) AcquireWithin(ctx context.Context, key fnkey.Key, reserved int32, maxWait time.Duration) (*Lease, error) {
	unreserved := int32(-1)
	if reserved < 0 {
		unreserved = d.unreserved(key.Namespace)
	}
	f := d.function(key)
	f.mu.Lock()
	if d.owns != nil && !d.owns(key.Namespace) {
		f.mu.Unlock()
		return nil, ErrNotOwner
	}
	if reserved >= 0 && f.active >= reserved {
		// Throttled at once, unless the namespace changed hands moments ago (Take): then
		// the request waits a while for another invocation of the function to end.
		graceEnds, ok := d.handoverGrace(key.Namespace)
		if !ok {
			f.mu.Unlock()
			return nil, &ThrottleError{Reason: contract.ReasonReservedConcurrency}
		}
		if err := d.waitForSlot(ctx, f, key.Namespace, reserved, graceEnds, maxWait); err != nil {
			return nil, err // f.mu released
		}
		// f.mu held again, and the freed slot counted for this request (f.active).
		f.active--
	}
	countedNS := false
	if unreserved >= 0 {
		if f.ns.Add(1) > unreserved {
			f.ns.Add(-1)
			f.mu.Unlock()
			return nil, &ThrottleError{Reason: contract.ReasonAccountConcurrency}
		}
		countedNS = true
	}
	f.active++
	p := f.pool(key)
	l := &Lease{d: d, f: f, p: p, countedNS: countedNS}
	if e := p.popIdle(); e != nil {
		l.bind(p.claim(e))
		f.mu.Unlock()
		return l, nil
	}
	if err := p.refusal(); err != nil {
		l.unwait()
		f.mu.Unlock()
		return nil, err
	}
	w := &waiter{ch: make(chan handoff, 1)}
	p.waiters = append(p.waiters, w)
	f.mu.Unlock()
	if err := d.wait(ctx, l, w, maxWait); err != nil {
		return nil, err
	}
	return l, nil
}

// wait waits for w's handoff to l (w is queued in l.p); when ctx ends first it undoes
// l's counts, as if it never acquired.
func (d *Dispatcher) wait(ctx context.Context, l *Lease, w *waiter, maxWait time.Duration) error {
	f, p, key := l.f, l.p, l.p.key
	d.mu.RLock()
	wk := d.waker
	d.mu.RUnlock()
	wk.Wake(key)

	if maxWait > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, maxWait)
		defer cancel()
	}
	start := d.now()
	select {
	case h := <-w.ch:
		if h.err == nil {
			l.bind(h)
			l.Waited += d.now().Sub(start)
			return nil
		}
		f.mu.Lock()
		l.unwait()
		f.mu.Unlock()
		return h.err
	case <-ctx.Done():
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	l.unwait()
	select {
	case h := <-w.ch:
		if h.err != nil {
			return h.err
		}
		// Handed over just as the deadline passed: give it back.
		p.inflight--
		p.putBack(h.e, d.now())
	default:
		p.removeWaiter(w)
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return ErrNoEnvironment
	}
	return ctx.Err()
}

// Reassign is for a lease whose environment answered that it is busy (its shim runs an
// invocation this dispatcher did not send: a previous activator's), or could not be
// reached at all (nothing was sent). That environment is kept busy and watched until its
// shim is free (or, with no answer, until a back-off has passed); the lease gets another environment of
// the same version, waiting (and waking the scaler) as Acquire does, at most maxWait
// (0: until ctx ends). The request keeps its place in the concurrency counts. On an
// error (ErrNoEnvironment, ctx's) the lease holds nothing and Release does nothing.
func (d *Dispatcher) reassign(ctx context.Context, l *Lease, maxWait time.Duration) error {
	f, p := l.f, l.p
	f.mu.Lock()
	old := l.e
	p.inflight--
	if !old.gone && !old.elsewhere {
		old.elsewhere, old.verified = true, false
		go d.watch(f, p, old)
	}
	l.e, l.Env = nil, Environment{}
	if d.owns != nil && !d.owns(p.key.Namespace) {
		// The namespace moved to another replica meanwhile: nothing ran; the request goes there.
		l.unwait()
		f.mu.Unlock()
		l.released.Store(true)
		return ErrNotOwner
	}
	if e := p.popIdle(); e != nil {
		l.bind(p.claim(e))
		f.mu.Unlock()
		return nil
	}
	w := &waiter{ch: make(chan handoff, 1)}
	p.waiters = append(p.waiters, w)
	f.mu.Unlock()
	if err := d.wait(ctx, l, w, maxWait); err != nil {
		l.released.Store(true)
		return err
	}
	return nil
}

// Reassign: see Dispatcher.reassign.
func (l *Lease) Reassign(ctx context.Context, maxWait time.Duration) error {
	if l == nil || l.released.Load() {
		return errors.New("dispatch: Reassign of a released lease")
	}
	return l.d.reassign(ctx, l, maxWait)
}

// verify asks an unverified environment's shim once, as it joins, whether it runs an
// invocation: the dispatcher's view of busy environments is rebuilt from the shims after a
// restart, before a request meets one busy. (It serves meanwhile; a request that finds it
// busy first moves on, see Reassign.)
func (d *Dispatcher) verify(f *function, p *pool, e *env) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	busy, err := d.Check(ctx, e.Environment)
	cancel()
	if err != nil {
		return // unknown: Drain and Reassign still guard it
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if e.gone || e.verified || e.elsewhere {
		return
	}
	switch {
	case !busy:
		e.verified = true
	case !e.busy && !e.draining:
		// Idle here, busy at its shim: out of rotation until the shim is free.
		p.removeIdle(e)
		e.busy, e.elsewhere = true, true
		go d.watch(f, p, e)
	}
}

// watch checks an environment busy elsewhere, with back-off, until its shim is free (then
// it serves again), it leaves, or MaxInvocation has passed. Without a checker, or while
// the state is unknown, it is put back after each back-off: a request that meets it busy
// again moves on (Reassign) and the watch starts over.
func (d *Dispatcher) watch(f *function, p *pool, e *env) {
	lo, hi := d.RecheckMin, d.RecheckMax
	if lo <= 0 {
		lo = 100 * time.Millisecond
	}
	if hi < lo {
		hi = max(lo, 5*time.Second)
	}
	deadline := time.Now().Add(MaxInvocation)
	for delay := lo; ; delay = min(2*delay, hi) {
		time.Sleep(delay)
		f.mu.Lock()
		gone := e.gone || !e.elsewhere
		env := e.Environment
		f.mu.Unlock()
		if gone {
			return
		}
		busy, known := true, false
		if d.Check != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			b, err := d.Check(ctx, env)
			cancel()
			busy, known = b, err == nil
		}
		if known && busy && time.Now().Before(deadline) {
			continue
		}
		f.mu.Lock()
		if !e.gone && e.elsewhere {
			e.elsewhere = false
			e.verified = known // free by its shim's word (or the back-off: unknown)
			p.putBack(e, d.now())
		}
		f.mu.Unlock()
		return
	}
}

func (l *Lease) bind(h handoff) {
	l.e = h.e
	l.Env = h.e.Environment
	l.FirstUse = h.first
}

// claim marks e busy (f.mu held).
func (p *pool) claim(e *env) handoff {
	e.busy = true
	p.inflight++
	h := handoff{e: e, first: !e.used}
	e.used = true
	return h
}

// Release returns the environment; a second call does nothing.
func (l *Lease) Release() {
	if l == nil || l.released.Swap(true) {
		return
	}
	f := l.f
	f.mu.Lock()
	l.p.inflight--
	f.active--
	f.admitSlotWaiters()
	if l.countedNS {
		f.ns.Add(-1)
	}
	l.e.verified = true // it ran ours: nobody else's invocation is running there
	l.p.putBack(l.e, l.d.now())
	f.mu.Unlock()
}

// putBack makes e available: to the first waiter, else to the idle stack (f.mu held).
func (p *pool) putBack(e *env, now time.Time) {
	e.busy = false
	if e.gone || e.draining {
		return
	}
	if len(p.waiters) > 0 {
		w := p.waiters[0]
		p.waiters[0] = nil
		p.waiters = p.waiters[1:]
		w.ch <- p.claim(e)
		return
	}
	e.idleSince = now
	p.idle = append(p.idle, e)
}

func (p *pool) popIdle() *env {
	n := len(p.idle)
	if n == 0 {
		return nil
	}
	e := p.idle[n-1]
	p.idle[n-1] = nil
	p.idle = p.idle[:n-1]
	return e
}

func (p *pool) removeIdle(e *env) bool {
	for i, x := range p.idle {
		if x == e {
			copy(p.idle[i:], p.idle[i+1:])
			p.idle[len(p.idle)-1] = nil
			p.idle = p.idle[:len(p.idle)-1]
			return true
		}
	}
	return false
}

func (p *pool) removeWaiter(w *waiter) {
	p.waiters = removeOne(p.waiters, w)
}

// removeOne removes x's first occurrence from s, in order, and clears the slot it leaves
// (slices.Delete), so that a removed waiter is not kept alive by the backing array.
func removeOne[T comparable](s []T, x T) []T {
	if i := slices.Index(s, x); i >= 0 {
		return slices.Delete(s, i, i+1)
	}
	return s
}

// SetEnvironments replaces version key's ready environments (from the pod informer).
// New ones serve waiting requests first; missing ones leave (a busy one when its
// invocation ends).
func (d *Dispatcher) SetEnvironments(key fnkey.Key, envs []Environment) {
	f := d.function(key)
	now := d.now()
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.pool(key)
	keep := make(map[string]struct{}, len(envs))
	p.forgetFailed(now)
	for _, ne := range envs {
		if _, ok := p.held[ne.Name]; ok {
			continue
		}
		keep[ne.Name] = struct{}{}
		if e, ok := p.envs[ne.Name]; ok {
			if e.Addr == ne.Addr {
				e.Secret, e.Marked, e.Claimed = ne.Secret, ne.Marked, ne.Claimed
				continue
			}
			p.drop(e) // same pod name, new address: a new environment
		}
		e := &env{Environment: ne, verified: !ne.Unverified, added: now}
		p.envs[ne.Name] = e
		p.putBack(e, now)
		if !e.verified && d.Check != nil {
			go d.verify(f, p, e)
		}
	}
	for name, e := range p.envs {
		if _, ok := keep[name]; !ok {
			p.drop(e)
		}
	}
}

func (p *pool) drop(e *env) {
	e.gone = true
	delete(p.envs, e.Name)
	if !e.busy {
		p.removeIdle(e)
	}
}

// EnvironmentStats describes one environment for the scaler.
type EnvironmentStats struct {
	Name string
	// Busy: running an invocation, ours or (BusyElsewhere) one this dispatcher did not send.
	Busy          bool
	BusyElsewhere bool
	Draining      bool
	// Marked: the pod carries the removal mark (Environment.Marked).
	Marked bool
	// Claimed: taken from a pool (Environment.Claimed).
	Claimed   bool
	IdleSince time.Time
}

// PoolStats describes one version's demand and capacity.
type PoolStats struct {
	Key      fnkey.Key
	InFlight int
	Waiting  int
	// BusyElsewhere counts environments whose shim answered busy with an invocation this
	// dispatcher did not send: capacity that is not free, as if in flight.
	BusyElsewhere int
	Environments  []EnvironmentStats
}

// Stats reports every pool.
func (d *Dispatcher) Stats() []PoolStats {
	d.mu.RLock()
	fns := make([]*function, 0, len(d.fns))
	for _, f := range d.fns {
		fns = append(fns, f)
	}
	d.mu.RUnlock()
	var out []PoolStats
	for _, f := range fns {
		f.mu.Lock()
		for _, p := range f.pools {
			s := PoolStats{Key: p.key, InFlight: p.inflight, Waiting: len(p.waiters)}
			for _, e := range p.envs {
				if e.elsewhere {
					s.BusyElsewhere++
				}
				s.Environments = append(s.Environments, EnvironmentStats{Name: e.Name, Busy: e.busy, BusyElsewhere: e.elsewhere, Draining: e.draining, Marked: e.Marked, Claimed: e.Claimed, IdleSince: e.idleSince})
			}
			out = append(out, s)
		}
		f.mu.Unlock()
	}
	return out
}

// Concurrency is a function's in-flight + waiting requests.
func (d *Dispatcher) Concurrency(namespace, function string) int {
	d.mu.RLock()
	f := d.fns[fnKey{namespace, function}]
	d.mu.RUnlock()
	if f == nil {
		return 0
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return int(f.active)
}

// Drain takes idle environments out of rotation before the scaler removes them, and
// answers the ones it took (a busy one stays). An unverified environment (one that may run
// an invocation a previous activator sent) is taken only once its shim says it is idle
// (Check) or MaxInvocation has passed since it joined: one whose shim answers busy becomes
// busy elsewhere, and one whose state is unknown goes back into rotation.
func (d *Dispatcher) Drain(key fnkey.Key, names []string) []string {
	f := d.function(key)
	now := d.now()
	f.mu.Lock()
	p := f.pool(key)
	var out []string
	var unsure []*env
	for _, n := range names {
		e, ok := p.envs[n]
		if !ok || e.busy || e.draining {
			continue
		}
		p.removeIdle(e)
		e.draining = true
		if e.verified || now.Sub(e.added) >= MaxInvocation {
			out = append(out, n)
		} else {
			unsure = append(unsure, e)
		}
	}
	f.mu.Unlock()
	if len(unsure) == 0 {
		return out
	}
	// Ask the shims with no lock held; the environments are out of rotation meanwhile.
	busy := make([]bool, len(unsure))
	known := make([]bool, len(unsure))
	if d.Check != nil {
		for i, e := range unsure {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			b, err := d.Check(ctx, e.Environment)
			cancel()
			busy[i], known[i] = b, err == nil
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, e := range unsure {
		switch {
		case e.gone:
			e.draining = false
		case known[i] && !busy[i]:
			e.verified = true
			out = append(out, e.Name)
		case known[i]:
			e.draining, e.busy, e.elsewhere = false, true, true
			go d.watch(f, p, e)
		default:
			e.draining = false
			p.putBack(e, e.idleSince) // still idle since then; asked again next time
		}
	}
	return out
}

// Undrain puts drained environments back (the scale-down did not happen).
func (d *Dispatcher) Undrain(key fnkey.Key, names []string) {
	f := d.function(key)
	now := d.now()
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.pool(key)
	for _, n := range names {
		if e, ok := p.envs[n]; ok && e.draining {
			e.draining = false
			p.putBack(e, now)
		}
	}
}
