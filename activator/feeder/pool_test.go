package feeder_test

// Pre-warmed environments (docs/pools.md) against a real kube-apiserver: the feeder, the
// dispatcher, the scaler with the pools' Starter, and a fake generic shim; no kubelet, so
// the tests play the pods' status.

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus/testutil"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/activator/dispatch"
	"github.com/klambda/klambda/activator/feeder"
	"github.com/klambda/klambda/activator/fnkey"
	"github.com/klambda/klambda/activator/invokesecret"
	"github.com/klambda/klambda/activator/pool"
	"github.com/klambda/klambda/activator/router"
	"github.com/klambda/klambda/activator/scaleclient"
	"github.com/klambda/klambda/activator/scaler"
	"github.com/klambda/klambda/api/contract"
)

var poolKey = contract.PoolKey{Runtime: "provided.al2023", Architecture: "x86_64", MemoryMB: 128}

// genericShim plays runtime-shim generic: it records each specialization and answers with
// status (200 by default).
type genericShim struct {
	mu     sync.Mutex
	status int
	got    []contract.Specialization
	secret []string
	client *http.Client
}

func newGenericShim(t *testing.T) *genericShim {
	g := &genericShim{status: http.StatusOK}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var s contract.Specialization
		b, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(b, &s)
		g.mu.Lock()
		g.got = append(g.got, s)
		g.secret = append(g.secret, r.Header.Get(contract.HeaderPoolSecret))
		status := g.status
		g.mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "http://")
	// The shim's port is fixed and the pods' IPs made up: every address reaches srv.
	g.client = &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}}
	return g
}

func (g *genericShim) specializations() []contract.Specialization {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]contract.Specialization(nil), g.got...)
}

// eligibleFunction creates Function name with its invoke Secret and a $LATEST Deployment
// (0 replicas, with a ReplicaSet) carrying a specialization template of poolKey, as the
// manager makes them.
func eligibleFunction(t *testing.T, ns, name string) *appsv1.Deployment {
	t.Helper()
	ctx := context.Background()
	fn := mkFunction(t, ns, name)
	mustCreate(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name + "-invoke", Namespace: ns, OwnerReferences: []metav1.OwnerReference{ownedBy(fn)}},
		Data: map[string][]byte{contract.InvokeSecretKey: []byte(name + "-token")}})
	st := contract.SpecializationTemplate{Pool: poolKey, Command: []string{"/var/task/bootstrap"}, InvokeSecretName: name + "-invoke",
		Env: []contract.TemplateEnvVar{{Name: "FN", Value: name}, {Name: "PASSWORD", SecretKeyRef: &contract.SecretKeyRef{Name: "db", Key: "password"}}}}
	raw, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	lbl := map[string]string{contract.LabelFunction: contract.FunctionLabelValue(name), contract.LabelVersion: contract.LatestLabelValue}
	fref := ownedBy(fn)
	workload(t, ns, name+"-latest", &fref, lbl)
	dep, err := cs.AppsV1().Deployments(ns).Get(ctx, name+"-latest", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dep.Annotations = map[string]string{contract.AnnotationSpecialization: string(raw)}
	dep.Spec.Template.Annotations = map[string]string{contract.AnnotationFunctionName: name, contract.AnnotationQualifier: contract.Latest}
	if dep, err = cs.AppsV1().Deployments(ns).Update(ctx, dep, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	return dep
}

func mustCreate(t *testing.T, o client.Object) {
	t.Helper()
	if err := srv.Client.Create(context.Background(), o); err != nil {
		t.Fatal(err)
	}
}

// genericPod creates a Ready generic pod of poolKey's pool at ip.
func genericPod(t *testing.T, ns, name, ip string) *corev1.Pod {
	t.Helper()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns,
		Labels:      map[string]string{contract.LabelPool: poolKey.LabelValue()},
		Annotations: map[string]string{contract.AnnotationPoolKey: poolKey.String(), contract.AnnotationInvokeSecret: contract.PoolSecretName}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "function", Image: "runtime:1"}}}}
	mustCreate(t, pod)
	pod.Status.Phase = corev1.PodRunning
	pod.Status.PodIP = ip
	pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	if err := srv.Client.Status().Update(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	return pod
}

// poolRig runs the activator's parts over namespace ns: feeder, dispatcher, scaler (its
// passes every 20 ms) with a Starter over a generic pods' cache.
type poolRig struct {
	disp    *dispatch.Dispatcher
	deps    *scaleclient.Deployments
	starter *pool.Starter
	shim    *genericShim
}

func startPoolRig(t *testing.T, ctx context.Context, ns string, idle time.Duration) *poolRig {
	t.Helper()
	mustCreate(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: contract.PoolSecretName, Namespace: ns},
		Data: map[string][]byte{contract.InvokeSecretKey: []byte("pool-token")}})
	mustCreate(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: ns}, Data: map[string][]byte{"password": []byte("s3cret")}})
	r := &poolRig{disp: dispatch.New(nil), shim: newGenericShim(t)}
	c := startCache(t, ctx)
	r.deps = &scaleclient.Deployments{Reader: c, Client: cs}
	runFeeder(t, ctx, c, &feeder.Feeder{Cache: c, Table: router.NewTable(), Dispatcher: r.disp, Secrets: &invokesecret.Reader{Client: cs}, Log: logr.Discard()})
	podCache, err := pool.NewCache(srv.Config, scheme.Scheme)
	if err != nil {
		t.Fatal(err)
	}
	idx := pool.NewIndex(nil)
	if err := idx.Register(ctx, podCache); err != nil {
		t.Fatal(err)
	}
	go func() { _ = podCache.Start(ctx) }()
	podCache.WaitForCacheSync(ctx)
	sc := scaler.New(r.disp, router.NewTable(), r.deps)
	sc.Interval, sc.IdleTimeout = 20*time.Millisecond, idle
	r.starter = &pool.Starter{Index: idx, Client: cs, HTTP: r.shim.client, Versions: r.deps, InvokeSecrets: &invokesecret.Reader{Client: cs},
		Environments: r.disp, Wake: sc.Wake, Log: logr.Discard()}
	sc.Prewarmed = r.starter
	r.disp.SetWaker(sc)
	go sc.Run(ctx)
	return r
}

func (r *poolRig) poolSize(ns string) float64 {
	return testutil.ToFloat64(r.starter.Index.Metrics.Size.WithLabelValues(ns, poolKey.LabelValue()))
}

// acquire waits (30 s at most) for an environment of key; the lease is kept.
func acquire(t *testing.T, d *dispatch.Dispatcher, key fnkey.Key) *dispatch.Lease {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := d.Acquire(ctx, key, -1)
	if err != nil {
		t.Fatalf("acquiring an environment of %s: %v", key.String(), err)
	}
	return l
}

func replicasOf(t *testing.T, ns, name string) int32 {
	t.Helper()
	dep, err := cs.AppsV1().Deployments(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return *dep.Spec.Replicas
}

// A cold start of an eligible version takes the pool's generic pod: claimed for the
// version's Deployment, specialized with the function's values (the Secret's value
// resolved, the function's invoke secret), and handed to the waiting request; the
// Deployment is not scaled. Once idle past the timeout, the pod is deleted (never returned
// to the pool), still without touching the Deployment.
func TestColdStartTakesAPoolEnvironment(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := namespace(t, "pool-hit")
	dep := eligibleFunction(t, ns, "f")
	r := startPoolRig(t, ctx, ns, 300*time.Millisecond)
	genericPod(t, ns, "generic-1", "10.0.0.7")
	eventually(t, "the generic pod in the index", func() bool { return r.poolSize(ns) == 1 })

	key := fnkey.Key{Namespace: ns, Function: "f", Version: contract.Latest}
	l := acquire(t, r.disp, key)
	if l.Env.Name != "generic-1" || l.Env.Addr != "10.0.0.7:9000" || l.Env.Secret != "f-token" || !l.FirstUse {
		t.Fatalf("the cold start got %+v (first use %v), want the generic pod with f's invoke secret", l.Env, l.FirstUse)
	}
	got := r.shim.specializations()
	if len(got) != 1 || got[0].InvokeSecret != "f-token" || r.shim.secret[0] != "pool-token" {
		t.Fatalf("specializations %+v (pool secrets %q)", got, r.shim.secret)
	}
	env := map[string]string{}
	for _, v := range got[0].Env {
		env[v.Name] = v.Value
	}
	if env["FN"] != "f" || env["PASSWORD"] != "s3cret" {
		t.Fatalf("the shim was given variables %v", env)
	}
	p, err := cs.CoreV1().Pods(ns).Get(ctx, "generic-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, inPool := p.Labels[contract.LabelPool]; inPool || p.Labels[contract.LabelFunction] != "f" || len(p.OwnerReferences) != 1 || p.OwnerReferences[0].UID != dep.UID {
		t.Fatalf("claimed pod: labels %v owners %+v", p.Labels, p.OwnerReferences)
	}
	hits := testutil.ToFloat64(r.starter.Index.Metrics.Hits.WithLabelValues(ns, poolKey.LabelValue()))
	if hits != 1 || r.poolSize(ns) != 0 {
		t.Fatalf("hits %v size %v", hits, r.poolSize(ns))
	}
	// The feeder sees the claimed pod (Ready, the version's labels, owned by its
	// Deployment) and keeps it as the same environment.
	time.Sleep(200 * time.Millisecond)
	if n := replicasOf(t, ns, "f-latest"); n != 0 {
		t.Fatalf("the Deployment was scaled to %d for a cold start a pool served", n)
	}
	if envs := environmentsOf(r.disp, key); len(envs) != 1 || envs[0] != "generic-1" {
		t.Fatalf("environments %v", envs)
	}
	l.Release()
	l2 := acquire(t, r.disp, key)
	if l2.Env.Name != "generic-1" || l2.FirstUse {
		t.Fatalf("a warm request got %+v", l2.Env)
	}
	l2.Release()

	eventually(t, "the idle pool environment deleted", func() bool {
		_, err := cs.CoreV1().Pods(ns).Get(ctx, "generic-1", metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
	eventually(t, "no environment left", func() bool { return len(environmentsOf(r.disp, key)) == 0 })
	if n := replicasOf(t, ns, "f-latest"); n != 0 {
		t.Fatalf("the scale-down set the Deployment to %d", n)
	}
}

// An empty pool is a miss: the Deployment scales as without pools. A version without a
// template (ineligible) never takes a pool pod.
func TestPoolMissScalesTheDeployment(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := namespace(t, "pool-miss")
	eligibleFunction(t, ns, "f")
	r := startPoolRig(t, ctx, ns, time.Hour)

	key := fnkey.Key{Namespace: ns, Function: "f", Version: contract.Latest}
	acquireAsync(r.disp, key)
	eventually(t, "the Deployment scaled for the miss", func() bool { return replicasOf(t, ns, "f-latest") == 1 })
	if m := testutil.ToFloat64(r.starter.Index.Metrics.Misses.WithLabelValues(ns, poolKey.LabelValue())); m < 1 {
		t.Fatalf("misses %v", m)
	}

	// An ineligible version: its Deployment has no template; a generic pod waits unused.
	fn := mkFunction(t, ns, "plain")
	fref := ownedBy(fn)
	workload(t, ns, "plain-latest", &fref, map[string]string{contract.LabelFunction: "plain", contract.LabelVersion: contract.LatestLabelValue})
	genericPod(t, ns, "generic-1", "10.0.0.8")
	eventually(t, "the generic pod in the index", func() bool { return r.poolSize(ns) == 1 })
	plain := fnkey.Key{Namespace: ns, Function: "plain", Version: contract.Latest}
	acquireAsync(r.disp, plain)
	eventually(t, "the ineligible Deployment scaled", func() bool { return replicasOf(t, ns, "plain-latest") == 1 })
	if r.poolSize(ns) != 1 || len(r.shim.specializations()) != 0 {
		t.Fatalf("an ineligible version took a pool pod (size %v, specializations %d)", r.poolSize(ns), len(r.shim.specializations()))
	}
}

// A specialization the shim refuses: the claimed pod is deleted and never becomes an
// environment; the waiting request is not failed — the Deployment scales and its pod
// serves it.
func TestFailedSpecializationFallsBack(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := namespace(t, "pool-fail")
	eligibleFunction(t, ns, "f")
	r := startPoolRig(t, ctx, ns, time.Hour)
	r.shim.status = http.StatusInternalServerError
	genericPod(t, ns, "generic-1", "10.0.0.9")
	eventually(t, "the generic pod in the index", func() bool { return r.poolSize(ns) == 1 })

	key := fnkey.Key{Namespace: ns, Function: "f", Version: contract.Latest}
	type result struct {
		l   *dispatch.Lease
		err error
	}
	got := make(chan result, 1)
	go func() { l, err := r.disp.AcquireWithin(ctx, key, -1, 30*time.Second); got <- result{l, err} }()
	eventually(t, "the Deployment scaled after the failed specialization", func() bool { return replicasOf(t, ns, "f-latest") == 1 })
	eventually(t, "the failed pod deleted", func() bool {
		_, err := cs.CoreV1().Pods(ns).Get(ctx, "generic-1", metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
	// The ReplicaSet's pod starts (played here) and serves the waiting request.
	var rs appsv1.ReplicaSet
	if err := srv.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "f-latest-5d8f"}, &rs); err != nil {
		t.Fatal(err)
	}
	rsRef := controllerOf("apps/v1", "ReplicaSet", rs.Name, rs.UID)
	readyPod(t, ns, "f-latest-5d8f-a", "10.0.1.1", rs.Spec.Selector.MatchLabels, &rsRef, "f-invoke")
	select {
	case res := <-got:
		if res.err != nil {
			t.Fatalf("the waiting request failed: %v", res.err)
		}
		if res.l.Env.Name != "f-latest-5d8f-a" {
			t.Fatalf("the request ran on %s", res.l.Env.Name)
		}
		res.l.Release()
	case <-time.After(20 * time.Second):
		t.Fatal("the waiting request got no environment")
	}
	if len(r.shim.specializations()) != 1 {
		t.Fatalf("%d specializations", len(r.shim.specializations()))
	}
}

// A cold start whose Secrets cannot be read (here the namespace's pool Secret is gone)
// claims the pod while it reads them (at once, to save a round trip), but never
// specializes it: the claimed pod is deleted, the Deployment scales, and the shim never
// received the function's secrets.
func TestUnreadableSecretsFallBackWithoutSpecializing(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := namespace(t, "pool-nosecret")
	eligibleFunction(t, ns, "f")
	r := startPoolRig(t, ctx, ns, time.Hour)
	if err := cs.CoreV1().Secrets(ns).Delete(ctx, contract.PoolSecretName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	genericPod(t, ns, "generic-1", "10.0.0.9")
	eventually(t, "the generic pod in the index", func() bool { return r.poolSize(ns) == 1 })

	key := fnkey.Key{Namespace: ns, Function: "f", Version: contract.Latest}
	go func() {
		if l, err := r.disp.AcquireWithin(ctx, key, -1, 30*time.Second); err == nil {
			l.Release()
		}
	}()
	eventually(t, "the Deployment scaled instead", func() bool { return replicasOf(t, ns, "f-latest") == 1 })
	eventually(t, "the claimed pod deleted", func() bool {
		_, err := cs.CoreV1().Pods(ns).Get(ctx, "generic-1", metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
	if n := len(r.shim.specializations()); n != 0 {
		t.Fatalf("%d specializations: the pod got the function without its Secrets read", n)
	}
}

// A pod claimed for one function never serves another: f's cold start takes the pool's
// only pod; g's (same pool key) finds the pool empty and scales its own Deployment, and
// the pod never appears among g's environments; a claim of it for g (from the view before
// f's claim) is refused by its resourceVersion.
func TestClaimedPodNeverServesAnotherFunction(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := namespace(t, "pool-two")
	eligibleFunction(t, ns, "f")
	gDep := eligibleFunction(t, ns, "g")
	r := startPoolRig(t, ctx, ns, time.Hour)
	before := genericPod(t, ns, "generic-1", "10.0.0.10")
	eventually(t, "the generic pod in the index", func() bool { return r.poolSize(ns) == 1 })

	fk := fnkey.Key{Namespace: ns, Function: "f", Version: contract.Latest}
	gk := fnkey.Key{Namespace: ns, Function: "g", Version: contract.Latest}
	lf := acquire(t, r.disp, fk)
	if lf.Env.Name != "generic-1" {
		t.Fatalf("f ran on %s", lf.Env.Name)
	}
	lf.Release()
	acquireAsync(r.disp, gk)
	eventually(t, "g's Deployment scaled", func() bool { return replicasOf(t, ns, "g-latest") == 1 })
	time.Sleep(200 * time.Millisecond)
	for _, e := range environmentsOf(r.disp, gk) {
		if e == "generic-1" {
			t.Fatal("f's pod is one of g's environments")
		}
	}
	if sp := r.shim.specializations(); len(sp) != 1 || sp[0].InvokeSecret != "f-token" {
		t.Fatalf("specializations %+v", sp)
	}
	var st contract.SpecializationTemplate
	if err := json.Unmarshal([]byte(gDep.Annotations[contract.AnnotationSpecialization]), &st); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Claim(ctx, cs, before, gDep, &st); !apierrors.IsConflict(err) {
		t.Fatalf("claiming f's pod for g: %v, want a conflict", err)
	}
	p, err := cs.CoreV1().Pods(ns).Get(ctx, "generic-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Labels[contract.LabelFunction] != "f" {
		t.Fatalf("the pod's labels %v", p.Labels)
	}
}
