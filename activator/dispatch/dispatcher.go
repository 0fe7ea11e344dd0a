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
	"sync"
	"sync/atomic"
	"time"

	"github.com/klambda/klambda/activator/router"
)

// Environment is one ready pod of a version: where its shim's invoke endpoint listens and
// the secret that endpoint wants.
type Environment struct {
	Name   string // pod name
	Addr   string // host:port
	Secret string
}

// Limits are a function's concurrency limits for one Acquire.
type Limits struct {
	// Reserved is the function's reserved concurrency; -1 when it has none.
	Reserved int32
	// Unreserved is the namespace pool shared by functions without a reservation;
	// -1 for no limit.
	Unreserved int32
}

// Throttle reasons, as Lambda names them in TooManyRequestsException.Reason.
const (
	ReasonReserved = "ReservedFunctionConcurrentInvocationLimitExceeded"
	ReasonAccount  = "ConcurrentInvocationLimitExceeded"
)

// ThrottleError is a request refused at a concurrency limit.
type ThrottleError struct{ Reason string }

func (e *ThrottleError) Error() string { return "throttled: " + e.Reason }

// ErrNoEnvironment: no environment became free before the wait deadline.
var ErrNoEnvironment = errors.New("no execution environment became available in time")

// Waker is told that a version has a request waiting (the scaler).
type Waker interface{ Wake(router.Key) }

type nopWaker struct{}

func (nopWaker) Wake(router.Key) {}

// Dispatcher holds every version's pool.
type Dispatcher struct {
	mu    sync.RWMutex
	fns   map[fnKey]*function
	ns    map[string]*atomic.Int32
	waker Waker
	now   func() time.Time
}

type fnKey struct{ ns, name string }

type function struct {
	mu sync.Mutex
	// active is in-flight + waiting over all versions: Lambda's concurrency.
	active int32
	pools  map[string]*pool
	ns     *atomic.Int32
}

type pool struct {
	key      router.Key
	envs     map[string]*env
	idle     []*env // a stack: the most recently used is reused first, so the rest can age out
	waiters  []*waiter
	inflight int
}

type env struct {
	Environment
	busy      bool
	gone      bool
	draining  bool
	used      bool
	idleSince time.Time
}

type waiter struct{ ch chan handoff }

// handoff is an environment given to a waiter; first is decided under the lock.
type handoff struct {
	e     *env
	first bool
}

// New returns a Dispatcher that wakes waker when requests wait.
func New(waker Waker) *Dispatcher {
	if waker == nil {
		waker = nopWaker{}
	}
	return &Dispatcher{fns: map[fnKey]*function{}, ns: map[string]*atomic.Int32{}, waker: waker, now: time.Now}
}

// SetWaker replaces the waker (wiring: the scaler is built after the dispatcher).
func (d *Dispatcher) SetWaker(w Waker) { d.mu.Lock(); d.waker = w; d.mu.Unlock() }

func (d *Dispatcher) function(k router.Key) *function {
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

func (f *function) pool(k router.Key) *pool {
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
// Errors: *ThrottleError at a limit (at once), ErrNoEnvironment when ctx ends first.
func (d *Dispatcher) Acquire(ctx context.Context, key router.Key, lim Limits) (*Lease, error) {
	return d.AcquireWithin(ctx, key, lim, 0)
}

// AcquireWithin is Acquire that waits at most maxWait (0: until ctx ends). The timer
// exists only when the request has to wait: a warm acquisition costs no allocation of it.
func (d *Dispatcher) AcquireWithin(ctx context.Context, key router.Key, lim Limits, maxWait time.Duration) (*Lease, error) {
	f := d.function(key)
	f.mu.Lock()
	if lim.Reserved >= 0 && f.active >= lim.Reserved {
		f.mu.Unlock()
		return nil, &ThrottleError{Reason: ReasonReserved}
	}
	countedNS := false
	if lim.Reserved < 0 && lim.Unreserved >= 0 {
		if f.ns.Add(1) > lim.Unreserved {
			f.ns.Add(-1)
			f.mu.Unlock()
			return nil, &ThrottleError{Reason: ReasonAccount}
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
	w := &waiter{ch: make(chan handoff, 1)}
	p.waiters = append(p.waiters, w)
	f.mu.Unlock()

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
		l.bind(h)
		l.Waited = d.now().Sub(start)
		return l, nil
	case <-ctx.Done():
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	select {
	case h := <-w.ch:
		// Handed over just as the deadline passed: give it back.
		p.inflight--
		p.putBack(h.e, d.now())
	default:
		p.removeWaiter(w)
	}
	f.active--
	if countedNS {
		f.ns.Add(-1)
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return nil, ErrNoEnvironment
	}
	return nil, ctx.Err()
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
	if l.countedNS {
		f.ns.Add(-1)
	}
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
	for i, x := range p.waiters {
		if x == w {
			copy(p.waiters[i:], p.waiters[i+1:])
			p.waiters[len(p.waiters)-1] = nil
			p.waiters = p.waiters[:len(p.waiters)-1]
			return
		}
	}
}

// SetEnvironments replaces version key's ready environments (from the pod informer).
// New ones serve waiting requests first; missing ones leave (a busy one when its
// invocation ends).
func (d *Dispatcher) SetEnvironments(key router.Key, envs []Environment) {
	f := d.function(key)
	now := d.now()
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.pool(key)
	keep := make(map[string]struct{}, len(envs))
	for _, ne := range envs {
		keep[ne.Name] = struct{}{}
		if e, ok := p.envs[ne.Name]; ok {
			if e.Addr == ne.Addr {
				e.Secret = ne.Secret
				continue
			}
			p.drop(e) // same pod name, new address: a new environment
		}
		e := &env{Environment: ne}
		p.envs[ne.Name] = e
		p.putBack(e, now)
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
	Name      string
	Busy      bool
	Draining  bool
	IdleSince time.Time
}

// PoolStats describes one version's demand and capacity.
type PoolStats struct {
	Key          router.Key
	InFlight     int
	Waiting      int
	Environments []EnvironmentStats
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
				s.Environments = append(s.Environments, EnvironmentStats{Name: e.Name, Busy: e.busy, Draining: e.draining, IdleSince: e.idleSince})
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
// answers the ones it took (a busy one stays).
func (d *Dispatcher) Drain(key router.Key, names []string) []string {
	f := d.function(key)
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.pool(key)
	var out []string
	for _, n := range names {
		e, ok := p.envs[n]
		if !ok || e.busy || e.draining {
			continue
		}
		p.removeIdle(e)
		e.draining = true
		out = append(out, n)
	}
	return out
}

// Undrain puts drained environments back (the scale-down did not happen).
func (d *Dispatcher) Undrain(key router.Key, names []string) {
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
