package feeder_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/activator/dispatch"
	"github.com/klambda/klambda/activator/feeder"
	"github.com/klambda/klambda/activator/fnkey"
	"github.com/klambda/klambda/activator/invokesecret"
	"github.com/klambda/klambda/activator/router"
	"github.com/klambda/klambda/api/contract"
)

// acquireAsync starts a request for an environment of key that may wait 30 s (the
// activator's default), and answers its error (nil: it got one) and how long it took.
func acquireAsync(d *dispatch.Dispatcher, key fnkey.Key) chan acquired {
	ch := make(chan acquired, 1)
	go func() {
		start := time.Now()
		l, err := d.AcquireWithin(context.Background(), key, -1, 30*time.Second)
		if err == nil {
			l.Release()
		}
		ch <- acquired{err, time.Since(start)}
	}()
	return ch
}

type acquired struct {
	err  error
	took time.Duration
}

// refusedFor waits for ch's result and checks it is a CapacityError of cause, well
// before the 30 s wait ends.
func refusedFor(t *testing.T, ch chan acquired, cause string) {
	t.Helper()
	select {
	case a := <-ch:
		var ce *dispatch.CapacityError
		if !errors.As(a.err, &ce) || ce.Cause != cause || ce.Reason != contract.ReasonAccountConcurrency {
			t.Fatalf("after %s: %v, want a CapacityError %s", a.took, a.err, cause)
		}
		t.Logf("refused (%s) after waiting %s", cause, a.took)
	case <-time.After(10 * time.Second):
		t.Fatalf("still waiting after 10 s, want refused (%s)", cause)
	}
}

func waitingRequests(d *dispatch.Dispatcher, key fnkey.Key) int {
	for _, s := range d.Stats() {
		if s.Key == key {
			return s.Waiting
		}
	}
	return 0
}

// A version whose new pod the scheduler cannot place, or whose ReplicaSet cannot create
// pods (quota): requests waiting for an environment are refused at once with Lambda's
// 429 reason instead of waiting 30 s, and new ones too while it lasts.
func TestUnplaceableEnvironmentsRefuseWaitingRequests(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := namespace(t, "unplaceable")
	disp := dispatch.New(nil)
	c := startCache(t, ctx)
	f := &feeder.Feeder{Cache: c, Table: router.NewTable(), Dispatcher: disp, Secrets: &invokesecret.Reader{Client: cs}, Log: logr.Discard()}
	runFeeder(t, ctx, c, f)
	fn := mkFunction(t, ns, "f")
	fref := ownedBy(fn)
	lbl := map[string]string{contract.LabelFunction: "f", contract.LabelVersion: contract.LatestLabelValue}
	rsRef := workload(t, ns, "f-latest", &fref, lbl)
	key := fnkey.Key{Namespace: ns, Function: "f", Version: contract.Latest}

	// Two requests wait (scaling from zero); the new pod is Unschedulable.
	first, second := acquireAsync(disp, key), acquireAsync(disp, key)
	eventually(t, "2 waiting", func() bool { return waitingRequests(disp, key) == 2 })
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "f-latest-5d8f-x", Namespace: ns, Labels: lbl, OwnerReferences: []metav1.OwnerReference{rsRef}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "function", Image: "x"}}}}
	if err := srv.Client.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	pod.Status.Phase = corev1.PodPending
	pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse,
		Reason: corev1.PodReasonUnschedulable, Message: "0/3 nodes are available: 3 Insufficient cpu."}}
	if err := srv.Client.Status().Update(ctx, pod); err != nil {
		t.Fatal(err)
	}
	refusedFor(t, first, dispatch.CauseUnschedulable)
	refusedFor(t, second, dispatch.CauseUnschedulable)
	refusedFor(t, acquireAsync(disp, key), dispatch.CauseUnschedulable)

	// The scheduler places it: requests wait for it again.
	pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}}
	if err := srv.Client.Status().Update(ctx, pod); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a request waits again", func() bool {
		ch := acquireAsync(disp, key)
		time.Sleep(100 * time.Millisecond)
		select {
		case <-ch:
			return false
		default:
			return waitingRequests(disp, key) >= 1
		}
	})

	// The pod goes; the ReplicaSet wants one and cannot create it (a ResourceQuota): the
	// waiting requests are refused.
	if err := srv.Client.Delete(ctx, pod); err != nil {
		t.Fatal(err)
	}
	w := waitingRequests(disp, key)
	waiters := []chan acquired{acquireAsync(disp, key)}
	eventually(t, "one more waiting", func() bool { return waitingRequests(disp, key) == w+1 })
	failCreate(t, ctx, ns, rsRef.Name)
	refusedFor(t, waiters[0], dispatch.CauseFailedCreate)
	eventually(t, "every waiting request refused", func() bool { return waitingRequests(disp, key) == 0 })
}

// failCreate makes ReplicaSet name want one pod it failed to create, as the ReplicaSet
// controller reports a ResourceQuota refusal.
func failCreate(t *testing.T, ctx context.Context, ns, name string) {
	t.Helper()
	var rs appsv1.ReplicaSet
	if err := srv.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &rs); err != nil {
		t.Fatal(err)
	}
	one := int32(1)
	rs.Spec.Replicas = &one
	if err := srv.Client.Update(ctx, &rs); err != nil {
		t.Fatal(err)
	}
	rs.Status.Conditions = []appsv1.ReplicaSetCondition{{Type: appsv1.ReplicaSetReplicaFailure, Status: corev1.ConditionTrue,
		Reason: "FailedCreate", Message: `pods "f-latest-5d8f-y" is forbidden: exceeded quota: pods, requested: pods=1, used: pods=10, limited: pods=10`}}
	if err := srv.Client.Status().Update(ctx, &rs); err != nil {
		t.Fatal(err)
	}
}
