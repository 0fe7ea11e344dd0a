package feeder

import (
	"context"
	"net"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/activator/dispatch"
	"github.com/klambda/klambda/activator/fnkey"
	"github.com/klambda/klambda/activator/internal/ownerchain"
	"github.com/klambda/klambda/activator/scaleclient"
	"github.com/klambda/klambda/api/contract"
)

// fnLabel is a function's pods' contract.LabelFunction value in a namespace.
type fnLabel struct{ ns, value string }

// syncEnvironments recomputes the ready environments of the changed pod's function.
func (f *Feeder) syncEnvironments(ctx context.Context, changed *corev1.Pod) {
	if l := changed.Labels[contract.LabelFunction]; l != "" {
		f.syncLabel(ctx, changed.Namespace, l, changed)
	}
}

// syncLabel recomputes the ready environments of every version whose pods carry function
// label value l in ns. Only a pod whose owner chain leads to klambda's workload serves:
// pod → ReplicaSet → Deployment → the Function ($LATEST) or a Version of it, each link
// the controller reference with the UID of the object in the cache; its labels must be
// those of that version. The key is the owner's (the function's full name, also when the
// label value is shortened), never the labels'. A pod anyone else made with the same
// labels gets no invocations. changed (may be nil) is the pod whose event this is.
func (f *Feeder) syncLabel(ctx context.Context, ns, l string, changed *corev1.Pod) {
	f.syncMu.Lock()
	defer f.syncMu.Unlock()
	var pods corev1.PodList
	if err := f.Cache.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels{contract.LabelFunction: l}); err != nil {
		f.Log.Error(err, "listing pods", "namespace", ns, "function label", l)
		return
	}
	if f.Probe != nil && changed != nil {
		listed := false
		for i := range pods.Items {
			listed = listed || pods.Items[i].UID == changed.UID
		}
		if !listed {
			f.forget(changed.UID)
		}
	}
	envs := map[fnkey.Key][]dispatch.Environment{}
	pls := map[fnkey.Key]*placement{}
	secretsMissing := false
	for i := range pods.Items {
		p := &pods.Items[i]
		key, fnUID, err := f.owner(ctx, p)
		if err != nil {
			f.Log.V(1).Info("pod gets no invocations: "+err.Error(), "pod", p.Name, "namespace", p.Namespace)
			continue
		}
		if _, ok := envs[key]; !ok {
			envs[key] = nil
		}
		if PodReady(p) {
			f.kubeletReady(p.UID)
		} else if !f.earlyReady(ctx, p) {
			if pls[key] == nil {
				pls[key] = &placement{}
			}
			pls[key].countNotReady(p)
			continue
		}
		secret, err := f.Secrets.ForPod(ctx, p, fnUID)
		if err != nil {
			f.Log.Error(err, "reading the invoke secret; leaving the pod out for now", "pod", p.Name)
			secretsMissing = true
			continue
		}
		f.resizeAfterInit(ctx, p)
		envs[key] = append(envs[key], dispatch.Environment{
			Name:   p.Name,
			Addr:   net.JoinHostPort(p.Status.PodIP, strconv.Itoa(contract.ShimPort)),
			Secret: secret,
			// Creation times have whole seconds: a pod of the start's second counts as older.
			Unverified: p.CreationTimestamp.Time.Before(f.started.Add(time.Second)),
			Marked:     p.Annotations[scaleclient.PodDeletionCost] == scaleclient.RemovalCost,
			Claimed:    p.Annotations[contract.AnnotationSpecializedFrom] != "",
		})
	}
	f.retrySecrets(ctx, fnLabel{ns, l}, secretsMissing)
	f.replicaFailures(ctx, ns, l, pls)
	for k := range pls {
		if _, ok := envs[k]; !ok {
			envs[k] = nil
		}
	}
	fl := fnLabel{ns, l}
	if f.fed == nil {
		f.fed = map[fnLabel]map[fnkey.Key]bool{}
	}
	for k := range f.fed[fl] {
		if _, ok := envs[k]; !ok {
			f.Dispatcher.SetEnvironments(k, nil)
			f.Dispatcher.SetPlacement(k, 0, nil)
		}
	}
	keys := make(map[fnkey.Key]bool, len(envs))
	for k, e := range envs {
		keys[k] = true
		f.Dispatcher.SetEnvironments(k, e)
	}
	f.setPlacements(keys, pls)
	if len(keys) == 0 {
		delete(f.fed, fl)
	} else {
		f.fed[fl] = keys
	}
}

// owner follows p's owner chain to the version it belongs to (see syncLabel), from the
// cache; it answers the version's key and its Function's UID (the invoke Secret's owner).
func (f *Feeder) owner(ctx context.Context, p *corev1.Pod) (fnkey.Key, types.UID, error) {
	return ownerchain.OfPod(ctx, f.Cache, p)
}

// Retry delays for pods left out because their invoke secret could not be read: no pod
// event may come again (the pod is Ready and stays so), so a timer looks again, from
// retryFirst doubling to retryMax, for as long as a pod of the label is left out.
const (
	retryFirst = 500 * time.Millisecond
	retryMax   = 30 * time.Second
)

// retrySecrets arranges for label fl to be looked at again when missing (some pod was left
// out for its invoke secret), and forgets it when not; one timer per label at a time.
func (f *Feeder) retrySecrets(ctx context.Context, fl fnLabel, missing bool) {
	f.retryMu.Lock()
	defer f.retryMu.Unlock()
	r, known := f.retries[fl]
	if !missing {
		if known && !r.timerSet {
			delete(f.retries, fl)
		}
		return
	}
	if r.timerSet {
		return
	}
	if f.retries == nil {
		f.retries = map[fnLabel]retry{}
	}
	delay := min(retryFirst<<min(r.attempts, 6), retryMax)
	f.retries[fl] = retry{attempts: r.attempts + 1, timerSet: true}
	time.AfterFunc(delay, func() {
		if ctx.Err() != nil {
			return
		}
		f.retryMu.Lock()
		r := f.retries[fl]
		r.timerSet = false
		f.retries[fl] = r
		f.retryMu.Unlock()
		f.syncLabel(ctx, fl.ns, fl.value, nil)
	})
}

// retry is a label's state in Feeder.retries.
type retry struct {
	attempts int
	timerSet bool
}
