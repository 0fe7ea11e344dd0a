// Package ownership divides the activator's work among its replicas. Namespaces hash into
// a fixed number of shards, and each shard is a coordination.k8s.io Lease held by at most
// one replica at a time (client-go's leader election, one elector per shard). The replica
// holding a shard's Lease is the only one that leases environments to invocations of the
// functions in that shard's namespaces and scales their Deployments; the others forward
// those invocations to it. So an environment serves one invocation at a time cluster-wide,
// and a function's reserved concurrency and its namespace's limit are counted in one place.
//
// Replicas balance the shards: each aims at ceil(shards / members) and gives up the extra
// one shard per retry period. A shard whose Lease stops being renewed (its holder died or
// lost the API server) is taken by another replica once the Lease has expired, whatever
// the balance says; see activator/README.md for the timings and the alternatives.
package ownership

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// LeaseLabel marks the shard Leases (value: the lease name prefix).
const LeaseLabel = "lambda.klambda.dev/activator-shards"

// ShardOf is the shard of a namespace (FNV-1a).
func ShardOf(namespace string, shards int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(namespace))
	return int(h.Sum32() % uint32(shards))
}

// Members tells how many activator replicas share the shards (e.g. the ready endpoints of
// the activator's Service). Less than 1 counts as 1.
type Members func() int

// Hooks let the activator prepare and wind down a shard's work.
type Hooks struct {
	// Acquired runs when the replica has just taken a shard's Lease, before Owns reports
	// it: e.g. mark the shard's environments unverified (a previous holder's invocations may
	// still run in them).
	Acquired func(shard int)
	// Releasing runs after Owns stopped reporting the shard and before its Lease is given
	// up (or, when the Lease was lost, right after): it returns once no invocation admitted
	// here is still on its way to an environment, so the next holder never finds an
	// environment idle that this replica is about to use.
	Releasing func(shard int)
}

// Config configures a Manager.
type Config struct {
	Client kubernetes.Interface
	// Namespace holds the Leases (the activator's own).
	Namespace string
	// Name prefixes the Lease names: <Name>-shard-<i>.
	Name string
	// Identity names this replica (its pod name); Address is where peers forward to it
	// (host:port). Both are written in the Lease's holderIdentity.
	Identity, Address string
	Shards            int
	Members           Members
	// LeaseDuration, RenewDeadline and RetryPeriod as in client-go's leader election.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	Hooks                                     Hooks
	Log                                       logr.Logger

	// abandon, set by tests, stops without giving the Leases up (a replica that died).
	abandon bool
}

// Defaults: 8 shards; a dead replica's shards move after about LeaseDuration + 2 retry
// periods (8 s).
const (
	DefaultShards        = 8
	DefaultLeaseDuration = 6 * time.Second
	DefaultRenewDeadline = 4 * time.Second
	DefaultRetryPeriod   = time.Second
)

func (c *Config) validate() error {
	switch {
	case c.Client == nil || c.Members == nil:
		return errors.New("ownership: Client and Members are required")
	case c.Namespace == "" || c.Name == "" || c.Identity == "" || c.Address == "":
		return errors.New("ownership: Namespace, Name, Identity and Address are required")
	case strings.Contains(c.Identity, "@"):
		return fmt.Errorf("ownership: identity %q must not contain '@'", c.Identity)
	case c.Shards < 1 || c.Shards > 256:
		return fmt.Errorf("ownership: shards must be between 1 and 256, not %d", c.Shards)
	case c.RetryPeriod <= 0 || c.RenewDeadline <= c.RetryPeriod || c.LeaseDuration <= c.RenewDeadline:
		return errors.New("ownership: need 0 < retry period < renew deadline < lease duration")
	case c.LeaseDuration < time.Second:
		return errors.New("ownership: the lease duration is at least 1s (Leases count whole seconds)")
	}
	return nil
}

// Manager takes, holds, balances and gives up this replica's shards.
type Manager struct {
	cfg    Config
	holder string // Identity@Address
	owned  []atomic.Bool
	view   *leaseView

	mu       sync.Mutex
	electors map[int]*elector
	leaving  bool
	stopView context.CancelFunc
	// kick asks Run for a balance step before the next retry period (Kick).
	kick chan struct{}
}

// Close stops watching the Leases, once Run has returned and nothing asks Owner any more.
func (m *Manager) Close() {
	m.mu.Lock()
	stop := m.stopView
	m.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// elector is one shard's leader election, running or winding down.
type elector struct {
	cancel  context.CancelFunc
	started time.Time
	leading atomic.Bool
	done    chan struct{}

	mu    sync.Mutex // orders acquired and lost (client-go runs OnStartedLeading in a goroutine)
	ended bool
}

// New checks cfg and returns a Manager; Run starts it.
func New(cfg Config) (*Manager, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Log.GetSink() == nil {
		cfg.Log = logr.Discard()
	}
	m := &Manager{
		cfg:      cfg,
		holder:   cfg.Identity + "@" + cfg.Address,
		owned:    make([]atomic.Bool, cfg.Shards),
		view:     newLeaseView(cfg.Client, cfg.Namespace, cfg.Name),
		electors: map[int]*elector{},
		kick:     make(chan struct{}, 1),
	}
	// A shard given up is taken at once, not at the next retry period: its namespaces'
	// invocations wait for a holder meanwhile (a rollout's hand-over).
	m.view.freed = m.Kick
	return m, nil
}

// Kick asks for a balance step now rather than at the next retry period: a shard was
// given up, or the replicas sharing the shards changed (Members would answer anew). While
// a shard has no holder its invocations wait, and with them the callers; the wait is what
// a rollout costs, so it is kept to the API's round trips.
func (m *Manager) Kick() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// Shards is the number of shards.
func (m *Manager) Shards() int { return m.cfg.Shards }

// Owns tells whether this replica serves shard now.
func (m *Manager) Owns(shard int) bool { return m.owned[shard].Load() }

// OwnsNamespace tells whether this replica serves namespace's shard now.
func (m *Manager) OwnsNamespace(namespace string) bool {
	return m.Owns(ShardOf(namespace, m.cfg.Shards))
}

// Owned lists the shards this replica serves.
func (m *Manager) Owned() []int {
	var out []int
	for i := range m.owned {
		if m.owned[i].Load() {
			out = append(out, i)
		}
	}
	return out
}

// Owner is the peer address of the replica that holds namespace's shard, as the Lease
// says; ok is false while no live replica holds it (or this one does: see Owns).
func (m *Manager) Owner(namespace string) (addr string, ok bool) {
	h, ok := m.view.holder(ShardOf(namespace, m.cfg.Shards), m.cfg.LeaseDuration)
	if !ok || h == m.holder {
		return "", false
	}
	_, addr, found := strings.Cut(h, "@")
	return addr, found && addr != ""
}

// Run watches the Leases and balances the shards until ctx ends; then it gives up every
// shard it holds (Releasing runs for each) and returns. Owner keeps answering from the
// Leases until Close.
func (m *Manager) Run(ctx context.Context) error {
	// The view of the Leases outlives ctx (until Close): a replica shutting down still
	// forwards the invocations that reach it while it drains, to the shards' new holders.
	vctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	m.mu.Lock()
	m.stopView = stop
	m.mu.Unlock()
	if err := m.view.start(vctx); err != nil {
		return err
	}
	t := time.NewTicker(m.cfg.RetryPeriod)
	defer t.Stop()
	for {
		m.balance(ctx)
		select {
		case <-ctx.Done():
			m.stopAll()
			return nil
		case <-t.C:
		case <-m.kick:
		}
	}
}

// Leave stops taking shards and gives up the ones held, each once Releasing has returned;
// it returns when none is held or ctx ends. For a replica shutting down.
func (m *Manager) Leave(ctx context.Context) error {
	m.mu.Lock()
	m.leaving = true
	m.mu.Unlock()
	for {
		m.mu.Lock()
		held := m.heldLocked()
		m.mu.Unlock()
		var wg sync.WaitGroup
		for _, s := range held {
			wg.Add(1)
			go func() { defer wg.Done(); m.release(s) }()
		}
		wg.Wait()
		if len(m.Owned()) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(m.cfg.RetryPeriod / 4):
		}
	}
}

// balance makes one step towards this replica's share: give up one shard over the target,
// or stand for free shards under it; an orphaned shard (Lease expired) is stood for
// whatever the target.
func (m *Manager) balance(ctx context.Context) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.leaving {
		return
	}
	m.reapElectors()
	held, standing := 0, 0
	for _, e := range m.electors {
		if e.leading.Load() {
			held++
		} else {
			standing++
		}
	}
	members := max(1, m.cfg.Members())
	target := (m.cfg.Shards + members - 1) / members
	if held > target {
		if s, ok := m.extraShard(); ok {
			go m.release(s)
		}
		return
	}
	now := time.Now()
	for _, s := range m.candidates() {
		if _, running := m.electors[s]; running {
			continue
		}
		orphan := m.view.orphaned(s, 2*m.cfg.RetryPeriod, now)
		if orphan || (held+standing < target && m.view.free(s, m.cfg.LeaseDuration)) {
			m.stand(ctx, s)
			standing++
		}
	}
}

// candidates is every shard, starting at one that depends on the identity, so that
// replicas starting together stand for different shards first.
func (m *Manager) candidates() []int {
	start := ShardOf(m.cfg.Identity, m.cfg.Shards)
	out := make([]int, m.cfg.Shards)
	for i := range out {
		out[i] = (start + i) % m.cfg.Shards
	}
	return out
}

// heldLocked lists the shards whose elector leads (m.mu held).
func (m *Manager) heldLocked() []int {
	var held []int
	for s, e := range m.electors {
		if e.leading.Load() {
			held = append(held, s)
		}
	}
	return held
}

// extraShard picks a held shard to give up (m.mu held): the highest-numbered.
func (m *Manager) extraShard() (int, bool) {
	held := m.heldLocked()
	if len(held) == 0 {
		return 0, false
	}
	sort.Ints(held)
	return held[len(held)-1], true
}

// reapElectors stops standing for shards another replica holds (or kept for a while),
// and forgets electors that ended (m.mu held).
func (m *Manager) reapElectors() {
	for s, e := range m.electors {
		select {
		case <-e.done:
			delete(m.electors, s)
			continue
		default:
		}
		if e.leading.Load() {
			continue
		}
		// Another replica won the shard (it holds a live Lease): standing on would only
		// keep this replica from standing for a shard that is free, as during a rollout.
		h, live := m.view.holder(s, m.cfg.LeaseDuration)
		if live && h != m.holder || time.Since(e.started) > m.cfg.LeaseDuration+3*m.cfg.RetryPeriod {
			e.cancel()
		}
	}
}

// stand starts an elector for shard s (m.mu held).
func (m *Manager) stand(ctx context.Context, s int) {
	// Not ctx's child: when ctx ends, stopAll gives each Lease up only after its shard's
	// Releasing hook has returned (the invocations it admitted have ended).
	ectx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	e := &elector{cancel: cancel, started: time.Now(), done: make(chan struct{})}
	m.electors[s] = e
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  leaseMeta(m.cfg.Namespace, m.cfg.Name, s),
		Client:     m.cfg.Client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: m.holder},
		Labels:     map[string]string{LeaseLabel: m.cfg.Name},
	}
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: lock, Name: lock.LeaseMeta.Name, ReleaseOnCancel: !m.cfg.abandon,
		LeaseDuration: m.cfg.LeaseDuration, RenewDeadline: m.cfg.RenewDeadline, RetryPeriod: m.cfg.RetryPeriod,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(context.Context) { m.acquired(s, e) },
			OnStoppedLeading: func() { m.lost(s, e) },
		},
	})
	if err != nil { // validate() checked what NewLeaderElector checks
		m.cfg.Log.Error(err, "shard elector", "shard", s)
		cancel()
		close(e.done)
		return
	}
	go func() {
		defer close(e.done)
		le.Run(ectx)
	}()
}

// acquired: the Lease is ours. Over the target already (several shards came at once), it
// is given back at the next balance.
func (m *Manager) acquired(s int, e *elector) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ended {
		return
	}
	if m.cfg.Hooks.Acquired != nil {
		m.cfg.Hooks.Acquired(s)
	}
	e.leading.Store(true)
	m.owned[s].Store(true)
	m.cfg.Log.Info("took shard", "shard", s)
}

// lost: the elector stopped (released, or the Lease could not be renewed in time).
func (m *Manager) lost(s int, e *elector) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.ended = true
	wasOwned := m.owned[s].Swap(false)
	e.leading.Store(false)
	if wasOwned {
		m.cfg.Log.Info("lost shard (its Lease could not be renewed in time)", "shard", s)
		if m.cfg.Hooks.Releasing != nil {
			m.cfg.Hooks.Releasing(s)
		}
	}
}

// release gives shard s up: Owns stops reporting it, Releasing runs, then the Lease is
// given up (the elector's context ends; client-go clears the holder).
func (m *Manager) release(s int) {
	m.mu.Lock()
	e := m.electors[s]
	m.mu.Unlock()
	if e == nil || !m.owned[s].Swap(false) {
		return
	}
	if m.cfg.Hooks.Releasing != nil {
		m.cfg.Hooks.Releasing(s)
	}
	e.cancel()
	<-e.done
	e.leading.Store(false)
	m.cfg.Log.Info("gave up shard", "shard", s)
}

// stopAll ends every elector and waits for them: the shards held are given up together,
// each Lease once its Releasing hook has returned (unless abandoning).
func (m *Manager) stopAll() {
	m.mu.Lock()
	es := make(map[int]*elector, len(m.electors))
	for s, e := range m.electors {
		es[s] = e
	}
	m.mu.Unlock()
	var held []int
	for s := range es {
		if m.owned[s].Swap(false) {
			held = append(held, s)
		}
	}
	if !m.cfg.abandon && m.cfg.Hooks.Releasing != nil {
		var wg sync.WaitGroup
		for _, s := range held {
			wg.Add(1)
			go func() { defer wg.Done(); m.cfg.Hooks.Releasing(s) }()
		}
		wg.Wait()
	}
	for _, e := range es {
		e.cancel()
	}
	for _, e := range es {
		<-e.done
	}
}

// LeaseName is shard s's Lease name.
func LeaseName(prefix string, s int) string { return prefix + "-shard-" + strconv.Itoa(s) }
