package feeder_test

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/activator/fnkey"
	"github.com/klambda/klambda/activator/scaleclient"
	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// setServing records the switch the manager makes: status.servingDeployment.
func setServing(t *testing.T, fn *lambdav1alpha1.Function, deployment string) {
	t.Helper()
	ctx := context.Background()
	if err := srv.Client.Get(ctx, client.ObjectKeyFromObject(fn), fn); err != nil {
		t.Fatal(err)
	}
	fn.Status.ServingDeployment = deployment
	if err := srv.Client.Status().Update(ctx, fn); err != nil {
		t.Fatal(err)
	}
}

// During an update two revisions of $LATEST run side by side; the activator routes only to
// the one the Function's status.servingDeployment names, and switches with it. An
// invocation in flight on the old revision at the switch finishes there; its environment
// is never given another one. The scaler sizes only the serving revision.
func TestFeederRoutesOnlyToTheServingRevision(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := namespace(t, "revisions")
	disp := startFeeder(t, ctx)
	fn := mkFunction(t, ns, "r")
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "r-invoke", Namespace: ns, OwnerReferences: []metav1.OwnerReference{ownedBy(fn)}},
		Data: map[string][]byte{"token": []byte("t0k")}}
	if err := srv.Client.Create(ctx, sec); err != nil {
		t.Fatal(err)
	}
	fref := ownedBy(fn)
	oldLbl := map[string]string{contract.LabelFunction: "r", contract.LabelVersion: contract.LatestLabelValue, contract.LabelRevision: "aaaa"}
	newLbl := map[string]string{contract.LabelFunction: "r", contract.LabelVersion: contract.LatestLabelValue, contract.LabelRevision: "bbbb"}
	setServing(t, fn, "r-latest")
	oldRS := workload(t, ns, "r-latest", &fref, oldLbl)
	newRS := workload(t, ns, "r-latest-bbbb", &fref, newLbl)
	readyPod(t, ns, "old-1", "10.0.3.1", oldLbl, &oldRS, "r-invoke")
	readyPod(t, ns, "old-2", "10.0.3.2", oldLbl, &oldRS, "r-invoke")
	readyPod(t, ns, "new-1", "10.0.3.3", newLbl, &newRS, "r-invoke")
	key := fnkey.Key{Namespace: ns, Function: "r", Version: contract.Latest}
	want := func(what string, names ...string) {
		t.Helper()
		eventually(t, what, func() bool {
			got := environmentsOf(disp, key)
			if len(got) != len(names) {
				return false
			}
			for _, n := range names {
				found := false
				for _, g := range got {
					found = found || g == n
				}
				if !found {
					return false
				}
			}
			return true
		})
	}
	want("only the serving revision's environments", "old-1", "old-2")
	time.Sleep(200 * time.Millisecond) // every pod's event has arrived
	want("still only the serving revision's environments", "old-1", "old-2")
	deps := &scaleclient.Deployments{Reader: srv.Client, Client: cs}
	if err := deps.Scale(ctx, key, 2); err != nil {
		t.Fatal(err)
	}

	// One invocation in flight on the old revision, then the switch.
	inFlight, err := disp.Acquire(ctx, key, -1)
	if err != nil || inFlight.Env.Name[:4] != "old-" {
		t.Fatalf("lease before the switch: %+v %v", inFlight, err)
	}
	setServing(t, fn, "r-latest-bbbb")
	want("only the new revision's environment after the switch", "new-1")
	for i := 0; i < 20; i++ {
		c, cancelAcquire := context.WithTimeout(ctx, time.Second)
		l, err := disp.Acquire(c, key, -1)
		cancelAcquire()
		if err != nil || l.Env.Name != "new-1" {
			t.Fatalf("invocation %d after the switch went to %+v (%v), want new-1", i, l, err)
		}
		l.Release()
	}
	// The old invocation ends after the switch; its environment gets no other.
	inFlight.Release()
	for i := 0; i < 5; i++ {
		c, cancelAcquire := context.WithTimeout(ctx, time.Second)
		l, err := disp.Acquire(c, key, -1)
		cancelAcquire()
		if err != nil || l.Env.Name != "new-1" {
			t.Fatalf("after the old invocation ended: %+v (%v)", l, err)
		}
		l.Release()
	}

	// The scaler now sizes the new revision; the old one keeps what it had (the manager
	// removes it once drained).
	if err := deps.Scale(ctx, key, 4); err != nil {
		t.Fatal(err)
	}
	for name, replicas := range map[string]int32{"r-latest": 2, "r-latest-bbbb": 4} {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil || *d.Spec.Replicas != replicas {
			t.Fatalf("Deployment %s: replicas %v (%v), want %d", name, d.Spec.Replicas, err, replicas)
		}
	}
	if n, err := deps.Replicas(key); err != nil || n != 4 {
		t.Fatalf("the scaler reads %d (%v), want the serving revision's 4", n, err)
	}
}
