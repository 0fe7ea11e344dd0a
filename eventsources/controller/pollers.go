package controller

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	"github.com/klambda/klambda/eventsources/poller"
)

// Pollers runs this replica's pollers. Which replica runs a mapping is decided by a
// coordination.k8s.io Lease per mapping ("esm-<uuid>" in LeaseNamespace): every replica
// competes for every mapping, the holder runs its poller, and when it dies or is partitioned
// the Lease expires and another replica takes over. So a mapping is never consumed twice at
// once — which SQS (visibility timeouts) would survive, but RabbitMQ ordering and NATS
// ordering would not — and mappings spread over replicas as they are acquired.
//
// Kafka mappings are the exception: every replica runs their poller, as a member of the
// mapping's consumer group, so the topic's partitions are spread over all replicas by
// Kafka's group assignment (and move within the session timeout when a replica dies). Their
// Lease then only chooses the replica that writes the settled status.
type Pollers struct {
	Kube           kubernetes.Interface
	LeaseNamespace string
	Identity       string
	// Lease timings; zero takes 15 s / 10 s / 2 s.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	Build                                     func(ctx context.Context, esm *lambdav1alpha1.EventSourceMapping, log logr.Logger) (*Built, error)
	// Notify asks for a reconcile of the mapping (a slot's state changed).
	Notify func(types.NamespacedName)
	Log    logr.Logger

	mu    sync.Mutex
	slots map[types.NamespacedName]*slot
}

// SlotStatus is what this replica knows of a mapping's poller.
type SlotStatus struct {
	// Leading: this replica holds the mapping's Lease.
	Leading bool
	// Applied is the generation the poller runs (or is stopped) with.
	Applied int64
	Running bool
	// Err is the last failure to start the poller.
	Err error
	// LastResult is the poller's LastProcessingResult.
	LastResult string
}

type slot struct {
	key types.NamespacedName
	// shared: every replica polls (Kafka); the Lease holder writes the status.
	shared  bool
	leader  atomic.Bool
	cancel  context.CancelFunc
	done    chan struct{}
	changed chan struct{}

	mu      sync.Mutex
	desired *lambdav1alpha1.EventSourceMapping
	status  SlotStatus
	poller  *poller.Poller
}

func (s *slot) get() SlotStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.status
	if s.shared {
		st.Leading = s.leader.Load()
	}
	if s.poller != nil {
		st.LastResult = s.poller.LastProcessingResult()
	}
	return st
}

// Apply records the mapping's desired state, starting its slot on first sight, and returns
// the slot's status.
func (p *Pollers) Apply(esm *lambdav1alpha1.EventSourceMapping) SlotStatus {
	key := types.NamespacedName{Namespace: esm.Namespace, Name: esm.Name}
	p.mu.Lock()
	if p.slots == nil {
		p.slots = map[types.NamespacedName]*slot{}
	}
	s := p.slots[key]
	if s == nil || s.desired.UID != esm.UID {
		if s != nil {
			p.mu.Unlock()
			p.Remove(key)
			p.mu.Lock()
		}
		ctx, cancel := context.WithCancel(context.Background())
		s = &slot{key: key, cancel: cancel, done: make(chan struct{}), changed: make(chan struct{}, 1), desired: esm.DeepCopy(),
			shared: esm.Spec.SelfManagedEventSource != nil}
		p.slots[key] = s
		go func() {
			defer close(s.done)
			if s.shared {
				p.share(ctx, s, string(esm.UID))
			} else {
				p.compete(ctx, s, string(esm.UID))
			}
		}()
	}
	p.mu.Unlock()
	s.mu.Lock()
	if esm.Generation > s.desired.Generation { // a stale cached object never rolls back
		s.desired = esm.DeepCopy()
		select {
		case s.changed <- struct{}{}:
		default:
		}
	}
	s.mu.Unlock()
	return s.get()
}

// Remove stops the mapping's poller on this replica and gives up its Lease.
func (p *Pollers) Remove(key types.NamespacedName) {
	p.mu.Lock()
	s := p.slots[key]
	delete(p.slots, key)
	p.mu.Unlock()
	if s != nil {
		s.cancel()
		<-s.done
	}
}

// DeleteLease removes a deleted mapping's Lease, so Leases don't outlive their mappings.
func (p *Pollers) DeleteLease(ctx context.Context, uid string) error {
	err := p.Kube.CoordinationV1().Leases(p.LeaseNamespace).Delete(ctx, "esm-"+uid, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// StopAll stops every poller (shutdown).
func (p *Pollers) StopAll() {
	p.mu.Lock()
	keys := make([]types.NamespacedName, 0, len(p.slots))
	for k := range p.slots {
		keys = append(keys, k)
	}
	p.mu.Unlock()
	for _, k := range keys {
		p.Remove(k)
	}
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// compete holds the mapping's Lease whenever it can, and runs the poller while it does.
func (p *Pollers) compete(ctx context.Context, s *slot, uid string) {
	log := p.Log.WithValues("eventSourceMapping", s.key)
	p.elect(ctx, s, uid, log, func(ctx context.Context) {
		log.Info("acquired the mapping's Lease: this replica polls it")
		p.lead(ctx, s, log)
	}, func() {
		s.mu.Lock()
		s.status, s.poller = SlotStatus{}, nil
		s.mu.Unlock()
		p.Notify(s.key)
	})
}

// share runs the poller on this replica whatever the Lease, which only decides who writes
// the mapping's settled status.
func (p *Pollers) share(ctx context.Context, s *slot, uid string) {
	log := p.Log.WithValues("eventSourceMapping", s.key)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.elect(ctx, s, uid, log, func(ctx context.Context) {
			log.Info("acquired the mapping's Lease: this replica writes its status")
			s.leader.Store(true)
			p.Notify(s.key)
			<-ctx.Done()
		}, func() {
			s.leader.Store(false)
			p.Notify(s.key)
		})
	}()
	p.lead(ctx, s, log)
	wg.Wait()
}

// elect competes for the mapping's Lease until ctx ends, calling started while holding it.
func (p *Pollers) elect(ctx context.Context, s *slot, uid string, log logr.Logger, started func(context.Context), stopped func()) {
	for ctx.Err() == nil {
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock: &resourcelock.LeaseLock{
				LeaseMeta:  metav1.ObjectMeta{Namespace: p.LeaseNamespace, Name: "esm-" + uid},
				Client:     p.Kube.CoordinationV1(),
				LockConfig: resourcelock.ResourceLockConfig{Identity: p.Identity},
			},
			LeaseDuration:   orDefault(p.LeaseDuration, 15*time.Second),
			RenewDeadline:   orDefault(p.RenewDeadline, 10*time.Second),
			RetryPeriod:     orDefault(p.RetryPeriod, 2*time.Second),
			ReleaseOnCancel: true,
			Name:            "esm-" + uid,
			Callbacks:       leaderelection.LeaderCallbacks{OnStartedLeading: started, OnStoppedLeading: stopped},
		})
		if err != nil {
			log.Error(err, "building the Lease elector")
			return
		}
		le.Run(ctx)
	}
}

// lead runs the poller as desired until leadership ends: restarted on every spec change,
// stopped while disabled, retried when it can't start.
func (p *Pollers) lead(ctx context.Context, s *slot, log logr.Logger) {
	s.mu.Lock()
	s.status.Leading = true
	s.mu.Unlock()
	for ctx.Err() == nil {
		s.mu.Lock()
		esm := s.desired.DeepCopy()
		s.mu.Unlock()
		enabled := esm.Spec.Enabled == nil || *esm.Spec.Enabled
		var (
			stop   context.CancelFunc
			exited chan struct{}
			retry  <-chan time.Time
		)
		st := SlotStatus{Leading: true, Applied: esm.Generation}
		var pl *poller.Poller
		if enabled {
			built, err := p.Build(ctx, esm, log)
			if err != nil {
				log.Error(err, "starting the poller")
				st.Err = err
				retry = time.After(10 * time.Second)
			} else {
				pl = built.Poller
				pl.OnResult(func(string) { p.Notify(s.key) })
				var runCtx context.Context
				runCtx, stop = context.WithCancel(ctx)
				exited = make(chan struct{})
				go func() {
					defer close(exited)
					defer built.Close()
					if err := pl.Run(runCtx); err != nil {
						log.Error(err, "poller stopped")
					}
				}()
				st.Running = true
				log.Info("poller started", "generation", esm.Generation)
			}
		}
		s.mu.Lock()
		s.status, s.poller = st, pl
		s.mu.Unlock()
		p.Notify(s.key)
		select {
		case <-ctx.Done():
		case <-s.changed:
		case <-retry:
		case <-exited:
			time.Sleep(time.Second) // the poller gave up (broker gone): start a fresh one
		}
		if stop != nil {
			stop()
			<-exited
			log.Info("poller stopped", "generation", esm.Generation)
		}
	}
}

// isConfigError reports whether err means the mapping's configuration is invalid.
func isConfigError(err error) bool {
	var ce *ConfigError
	return errors.As(err, &ce)
}
