package ownership

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// leaseView watches the shard Leases and remembers, by this replica's clock, when each
// last changed: like client-go's elector, a Lease counts as expired when it has not
// changed for a lease duration as seen here, so clocks need not agree.
type leaseView struct {
	factory informers.SharedInformerFactory
	prefix  string

	mu     sync.RWMutex
	shards map[int]observed
	// freed, when set, is called (without the lock) when a shard's Lease is given up
	// (its holder cleared) or deleted: a replica may take it now.
	freed func()
}

type observed struct {
	holder          string
	resourceVersion string
	at              time.Time
}

func newLeaseView(cs kubernetes.Interface, namespace, prefix string) *leaseView {
	f := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = LeaseLabel + "=" + prefix }))
	return &leaseView{factory: f, prefix: prefix, shards: map[int]observed{}}
}

func leaseMeta(namespace, prefix string, s int) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: namespace, Name: LeaseName(prefix, s)}
}

// start runs the informer and waits for its first list.
func (v *leaseView) start(ctx context.Context) error {
	inf := v.factory.Coordination().V1().Leases().Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { v.record(o) },
		UpdateFunc: func(_, o any) { v.record(o) },
		DeleteFunc: func(o any) { v.forget(o) },
	}); err != nil {
		return err
	}
	v.factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return errors.New("ownership: the Lease informer did not sync")
	}
	return nil
}

func (v *leaseView) shard(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, v.prefix+"-shard-")
	if !ok {
		return 0, false
	}
	s, err := strconv.Atoi(rest)
	return s, err == nil
}

func (v *leaseView) record(o any) {
	l, ok := o.(*coordinationv1.Lease)
	if !ok {
		return
	}
	s, ok := v.shard(l.Name)
	if !ok {
		return
	}
	holder := ""
	if l.Spec.HolderIdentity != nil {
		holder = *l.Spec.HolderIdentity
	}
	v.mu.Lock()
	prev, seen := v.shards[s]
	if seen && prev.resourceVersion == l.ResourceVersion {
		v.mu.Unlock()
		return
	}
	v.shards[s] = observed{holder: holder, resourceVersion: l.ResourceVersion, at: time.Now()}
	v.mu.Unlock()
	if holder == "" && (!seen || prev.holder != "") && v.freed != nil {
		v.freed()
	}
}

func (v *leaseView) forget(o any) {
	if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o = d.Obj
	}
	if l, ok := o.(*coordinationv1.Lease); ok {
		if s, ok := v.shard(l.Name); ok {
			v.mu.Lock()
			delete(v.shards, s)
			v.mu.Unlock()
			if v.freed != nil {
				v.freed()
			}
		}
	}
}

// holder is shard s's holder while its Lease is live.
func (v *leaseView) holder(s int, leaseDuration time.Duration) (string, bool) {
	v.mu.RLock()
	o, ok := v.shards[s]
	v.mu.RUnlock()
	if !ok || o.holder == "" || time.Since(o.at) > leaseDuration {
		return "", false
	}
	return o.holder, true
}

// free: no Lease, no holder, or expired.
func (v *leaseView) free(s int, leaseDuration time.Duration) bool {
	_, held := v.holder(s, leaseDuration)
	return !held
}

// orphaned: a holder is named but has not renewed for staleAfter (it renews every retry
// period): it died or lost the API server, and the shard will need a new holder.
func (v *leaseView) orphaned(s int, staleAfter time.Duration, now time.Time) bool {
	v.mu.RLock()
	o, ok := v.shards[s]
	v.mu.RUnlock()
	return ok && o.holder != "" && now.Sub(o.at) > staleAfter
}
