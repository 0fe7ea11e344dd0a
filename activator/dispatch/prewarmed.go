package dispatch

import (
	"time"

	"github.com/klambda/klambda/activator/fnkey"
)

// Pre-warmed environments (docs/pools.md): a generic pod taken from a pool becomes one of a
// version's environments once its shim has been specialized. Between the claim (when the
// pod first carries the version's labels) and the specialization, the pod informer may
// already show it Ready: it is held out of SetEnvironments until it joins, and handed to
// the version's first waiting request directly (Join), not after the kubelet's readiness.

// FailedHold is how long a pod whose specialization failed stays out of SetEnvironments:
// longer than the informer takes to see it deleted, or its kubelet to see its shim fail.
const FailedHold = time.Minute

// Hold keeps pod name out of version key's environments until Join or Fail.
func (d *Dispatcher) Hold(key fnkey.Key, name string) {
	f := d.function(key)
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.pool(key)
	if p.held == nil {
		p.held = map[string]time.Time{}
	}
	p.held[name] = time.Time{}
}

// Join makes e (a held pod, now specialized) one of key's environments: the first waiting
// request gets it at once. Nothing else ever ran there, so it is verified.
func (d *Dispatcher) Join(key fnkey.Key, e Environment) {
	f := d.function(key)
	now := d.now()
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.pool(key)
	delete(p.held, e.Name)
	if old, ok := p.envs[e.Name]; ok {
		if old.Addr == e.Addr {
			return
		}
		p.drop(old)
	}
	ne := &env{Environment: e, verified: true, added: now}
	p.envs[e.Name] = ne
	p.putBack(ne, now)
}

// Fail: the held pod name did not become an environment of key; it stays out of
// SetEnvironments for FailedHold (it is being deleted, or its shim refuses to serve).
func (d *Dispatcher) Fail(key fnkey.Key, name string) {
	f := d.function(key)
	now := d.now()
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.pool(key)
	if p.held == nil {
		p.held = map[string]time.Time{}
	}
	p.held[name] = now
}

// forgetFailed ends the holds of failed pods older than FailedHold (f.mu held).
func (p *pool) forgetFailed(now time.Time) {
	for name, at := range p.held {
		if !at.IsZero() && now.Sub(at) >= FailedHold {
			delete(p.held, name)
		}
	}
}
