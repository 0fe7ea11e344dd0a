package feeder_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/klambda/klambda/activator/dispatch"
	"github.com/klambda/klambda/activator/feeder"
	"github.com/klambda/klambda/activator/fnkey"
	"github.com/klambda/klambda/activator/invokesecret"
	"github.com/klambda/klambda/activator/router"
	"github.com/klambda/klambda/activator/scaleclient"
	"github.com/klambda/klambda/api/contract"
)

func environmentsOf(d *dispatch.Dispatcher, key fnkey.Key) []string {
	for _, s := range d.Stats() {
		if s.Key == key {
			var out []string
			for _, e := range s.Environments {
				out = append(out, e.Name)
			}
			return out
		}
	}
	return nil
}

func startFeeder(t *testing.T, ctx context.Context) *dispatch.Dispatcher {
	disp := dispatch.New(nil)
	c := startCache(t, ctx)
	runFeeder(t, ctx, c, &feeder.Feeder{Cache: c, Table: router.NewTable(), Dispatcher: disp, Secrets: &invokesecret.Reader{Client: cs},
		Log: logr.Discard()})
	return disp
}

// A pod serves only when its owner chain is klambda's: pod → ReplicaSet → Deployment →
// the Function (or its Version), with the UIDs of those objects. Pods a tenant makes with
// the function's labels — bare, or under their own ReplicaSet and Deployment, or under a
// Deployment that names the Function with another UID — get no invocations.
func TestFeederRequiresOwnerChain(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := namespace(t, "chain")
	disp := startFeeder(t, ctx)
	fn := mkFunction(t, ns, "o")
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "o-invoke", Namespace: ns, OwnerReferences: []metav1.OwnerReference{ownedBy(fn)}},
		Data: map[string][]byte{"token": []byte("t0k")}}
	if err := srv.Client.Create(ctx, sec); err != nil {
		t.Fatal(err)
	}
	lbl := map[string]string{contract.LabelFunction: "o", contract.LabelVersion: contract.LatestLabelValue}
	fref := ownedBy(fn)
	good := workload(t, ns, "o-latest", &fref, lbl)
	tenants := workload(t, ns, "tenant", nil, lbl)
	forged := fref
	forged.UID = "00000000-0000-0000-0000-000000000000"
	forgedRS := workload(t, ns, "forged", &forged, lbl)
	readyPod(t, ns, "bare", "10.0.1.1", lbl, nil, "o-invoke")
	readyPod(t, ns, "tenant-pod", "10.0.1.2", lbl, &tenants, "o-invoke")
	readyPod(t, ns, "forged-pod", "10.0.1.3", lbl, &forgedRS, "o-invoke")
	readyPod(t, ns, "o-latest-abc", "10.0.1.4", lbl, &good, "o-invoke")
	key := fnkey.Key{Namespace: ns, Function: "o", Version: contract.Latest}
	eventually(t, "the Function's pod as an environment", func() bool { return len(environmentsOf(disp, key)) > 0 })
	time.Sleep(200 * time.Millisecond) // the other pods' events have arrived too
	if got := environmentsOf(disp, key); len(got) != 1 || got[0] != "o-latest-abc" {
		t.Fatalf("environments %v: want only o-latest-abc", got)
	}
	l, err := disp.Acquire(ctx, key, -1)
	if err != nil || l.Env.Addr != "10.0.1.4:9000" || l.Env.Secret != "t0k" {
		t.Fatalf("lease %+v %v", l, err)
	}
	l.Release()

	// The scaler's Deployment lookup also takes only klambda's Deployment: "tenant" and
	// "forged" carry the same labels.
	deps := &scaleclient.Deployments{Reader: srv.Client, Client: cs}
	for i := 0; i < 5; i++ {
		if err := deps.Scale(ctx, key, int32(2+i)); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"tenant", "forged"} {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil || *d.Spec.Replicas != 0 {
			t.Fatalf("Deployment %s scaled by the activator: %v %v", name, d.Spec.Replicas, err)
		}
	}
}

// A function name of 64 characters (Lambda's longest) has a shortened label value; its
// pods are found and serve under the full name.
func TestFeederFindsPodsOfLongFunctionName(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := namespace(t, "long")
	disp := startFeeder(t, ctx)
	name := strings.Repeat("l", 64)
	fn := mkFunction(t, ns, name)
	lv := contract.FunctionLabelValue(name)
	if len(lv) > 63 || lv == name {
		t.Fatalf("label value %q", lv)
	}
	lbl := map[string]string{contract.LabelFunction: lv, contract.LabelVersion: contract.LatestLabelValue}
	fref := ownedBy(fn)
	rs := workload(t, ns, "long-latest", &fref, lbl)
	readyPod(t, ns, "long-latest-abc", "10.0.2.1", lbl, &rs, "")
	key := fnkey.Key{Namespace: ns, Function: name, Version: contract.Latest}
	eventually(t, "the long-named function's pod as an environment of "+name, func() bool {
		c, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
		defer cancel()
		l, err := disp.Acquire(c, key, -1)
		if err != nil {
			return false
		}
		l.Release()
		return l.Env.Name == "long-latest-abc"
	})
	deps := &scaleclient.Deployments{Reader: srv.Client, Client: cs}
	if n, err := deps.Replicas(key); err != nil || n != 0 {
		t.Fatalf("the scaler does not find the long-named function's Deployment: %d %v", n, err)
	}
}

// A Secret named like the invoke Secret that the Function does not control (made before
// the function, by anyone) is never used: the pod gets no invocations.
func TestFeederRefusesForeignInvokeSecret(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := namespace(t, "foreign")
	disp := startFeeder(t, ctx)
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s-invoke", Namespace: ns}, Data: map[string][]byte{"token": []byte("known-to-the-tenant")}}
	if err := srv.Client.Create(ctx, sec); err != nil {
		t.Fatal(err)
	}
	fn := mkFunction(t, ns, "s")
	lbl := map[string]string{contract.LabelFunction: "s", contract.LabelVersion: contract.LatestLabelValue}
	fref := ownedBy(fn)
	rs := workload(t, ns, "s-latest", &fref, lbl)
	readyPod(t, ns, "s-latest-abc", "10.0.3.1", lbl, &rs, "s-invoke")
	// Its twin with a Function-owned Secret shows when the events have been handled.
	fn2 := mkFunction(t, ns, "s2")
	sec2 := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s2-invoke", Namespace: ns, OwnerReferences: []metav1.OwnerReference{ownedBy(fn2)}},
		Data: map[string][]byte{"token": []byte("t0k")}}
	if err := srv.Client.Create(ctx, sec2); err != nil {
		t.Fatal(err)
	}
	lbl2 := map[string]string{contract.LabelFunction: "s2", contract.LabelVersion: contract.LatestLabelValue}
	fref2 := ownedBy(fn2)
	rs2 := workload(t, ns, "s2-latest", &fref2, lbl2)
	readyPod(t, ns, "s2-latest-abc", "10.0.3.2", lbl2, &rs2, "s2-invoke")
	eventually(t, "the twin's environment", func() bool {
		return len(environmentsOf(disp, fnkey.Key{Namespace: ns, Function: "s2", Version: contract.Latest})) == 1
	})
	time.Sleep(200 * time.Millisecond)
	if got := environmentsOf(disp, fnkey.Key{Namespace: ns, Function: "s", Version: contract.Latest}); len(got) != 0 {
		t.Fatalf("environments %v with a Secret the Function does not own", got)
	}
}
