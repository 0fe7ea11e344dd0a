package feeder_test

// Against a real kube-apiserver (test/apiserver): the scaler's server-side apply owns
// spec.replicas and leaves the manager's fields alone; the router and the dispatcher
// follow Functions, Versions, Aliases and pods through the informers.

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/activator/dispatch"
	"github.com/klambda/klambda/activator/feeder"
	"github.com/klambda/klambda/activator/fnkey"
	"github.com/klambda/klambda/activator/invokesecret"
	"github.com/klambda/klambda/activator/router"
	"github.com/klambda/klambda/activator/scaleclient"
	"github.com/klambda/klambda/activator/scaler"
	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	"github.com/klambda/klambda/test/apiserver"
)

var (
	srv *apiserver.Server
	cs  kubernetes.Interface
)

func TestMain(m *testing.M) {
	var err error
	srv, err = apiserver.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cs = kubernetes.NewForConfigOrDie(srv.Config)
	code := m.Run()
	_ = srv.Stop()
	os.Exit(code)
}

func namespace(t *testing.T, name string) string {
	t.Helper()
	if err := srv.Client.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		t.Fatal(err)
	}
	return name
}

// mkFunction creates Function name in ns (an image function).
func mkFunction(t *testing.T, ns, name string) *lambdav1alpha1.Function {
	t.Helper()
	fn := &lambdav1alpha1.Function{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
	fn.Spec.PackageType = lambdav1alpha1.PackageTypeImage
	fn.Spec.Code.ImageURI = "example/fn:1"
	if err := srv.Client.Create(context.Background(), fn); err != nil {
		t.Fatal(err)
	}
	return fn
}

func controllerOf(apiVersion, kind, name string, uid types.UID) metav1.OwnerReference {
	yes := true
	return metav1.OwnerReference{APIVersion: apiVersion, Kind: kind, Name: name, UID: uid, Controller: &yes}
}

// ownedBy is a controller reference to a klambda object (a Function or a Version).
func ownedBy(o client.Object) metav1.OwnerReference {
	kind := "Function"
	if _, ok := o.(*lambdav1alpha1.Version); ok {
		kind = "Version"
	}
	return controllerOf(lambdav1alpha1.GroupVersion.String(), kind, o.GetName(), o.GetUID())
}

// workload creates what the controllers and the Deployment controller make for a version:
// Deployment name controlled by owner (nil: nobody, as a tenant's own), and a ReplicaSet
// controlled by that Deployment. It answers the controller reference of that ReplicaSet's
// pods.
func workload(t *testing.T, ns, name string, owner *metav1.OwnerReference, lbl map[string]string) metav1.OwnerReference {
	t.Helper()
	ctx := context.Background()
	zero := int32(0)
	tpl := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: lbl},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "function", Image: "x"}}}}
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: lbl},
		Spec: appsv1.DeploymentSpec{Replicas: &zero, Selector: &metav1.LabelSelector{MatchLabels: lbl}, Template: tpl}}
	if owner != nil {
		dep.OwnerReferences = []metav1.OwnerReference{*owner}
	}
	if err := srv.Client.Create(ctx, dep); err != nil {
		t.Fatal(err)
	}
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: name + "-5d8f", Namespace: ns, Labels: lbl,
		OwnerReferences: []metav1.OwnerReference{controllerOf("apps/v1", "Deployment", dep.Name, dep.UID)}},
		Spec: appsv1.ReplicaSetSpec{Replicas: &zero, Selector: &metav1.LabelSelector{MatchLabels: lbl}, Template: tpl}}
	if err := srv.Client.Create(ctx, rs); err != nil {
		t.Fatal(err)
	}
	return controllerOf("apps/v1", "ReplicaSet", rs.Name, rs.UID)
}

// readyPod creates a Ready pod at ip with labels, controller reference owner (nil: none)
// and the invoke secret from Secret secretName.
func readyPod(t *testing.T, ns, name, ip string, lbl map[string]string, owner *metav1.OwnerReference, secretName string) *corev1.Pod {
	t.Helper()
	ctx := context.Background()
	c := corev1.Container{Name: "function", Image: "x"}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: lbl}, Spec: corev1.PodSpec{Containers: []corev1.Container{c}}}
	if secretName != "" {
		pod.Annotations = map[string]string{contract.AnnotationInvokeSecret: secretName}
	}
	if owner != nil {
		pod.OwnerReferences = []metav1.OwnerReference{*owner}
	}
	if err := srv.Client.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	pod.Status.Phase = corev1.PodRunning
	pod.Status.PodIP = ip
	pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	if err := srv.Client.Status().Update(ctx, pod); err != nil {
		t.Fatal(err)
	}
	return pod
}

// managerApply applies a Deployment the way the manager does: everything but replicas,
// controlled by Function f (created on first use).
func managerApply(t *testing.T, ns, image string) {
	t.Helper()
	var fn lambdav1alpha1.Function
	if err := srv.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "f"}, &fn); err != nil {
		fn = *mkFunction(t, ns, "f")
	}
	lbl := map[string]string{contract.LabelFunction: "f", contract.LabelVersion: contract.LatestLabelValue}
	ac := appsv1ac.Deployment("f-latest", ns).WithLabels(lbl).WithOwnerReferences(metav1ac.OwnerReference().
		WithAPIVersion(lambdav1alpha1.GroupVersion.String()).WithKind("Function").WithName("f").WithUID(fn.UID).WithController(true)).
		WithSpec(appsv1ac.DeploymentSpec().
			WithSelector(metav1ac.LabelSelector().WithMatchLabels(lbl)).
			WithTemplate(corev1ac.PodTemplateSpec().WithLabels(lbl).WithSpec(corev1ac.PodSpec().
				WithContainers(corev1ac.Container().WithName("function").WithImage(image)))))
	if _, err := cs.AppsV1().Deployments(ns).Apply(context.Background(), ac, metav1.ApplyOptions{FieldManager: "klambda-manager", Force: true}); err != nil {
		t.Fatal(err)
	}
}

func startCache(t *testing.T, ctx context.Context) cache.Cache {
	t.Helper()
	c, err := feeder.NewCache(srv.Config, scheme.Scheme)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// runFeeder registers the feeder's handlers on c, starts c and waits for its first sync.
func runFeeder(t *testing.T, ctx context.Context, c cache.Cache, f *feeder.Feeder) {
	t.Helper()
	if err := f.Register(ctx); err != nil {
		t.Fatal(err)
	}
	go func() { _ = c.Start(ctx) }()
	c.WaitForCacheSync(ctx)
}

func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestScaleOwnsReplicasOnly(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := namespace(t, "scale")
	managerApply(t, ns, "fn:1")
	c := startCache(t, ctx)
	// The scaler reads Deployments from the cache.
	if _, err := c.GetInformer(ctx, &appsv1.Deployment{}); err != nil {
		t.Fatal(err)
	}
	go func() { _ = c.Start(ctx) }()
	c.WaitForCacheSync(ctx)
	d := &scaleclient.Deployments{Reader: c, Client: cs}
	key := fnkey.Key{Namespace: ns, Function: "f", Version: contract.Latest}
	eventually(t, "the Deployment in the cache", func() bool { _, err := d.Replicas(key); return err == nil })
	if err := d.Scale(ctx, key, 3); err != nil {
		t.Fatal(err)
	}
	dep, err := cs.AppsV1().Deployments(ns).Get(ctx, "f-latest", metav1.GetOptions{})
	if err != nil || *dep.Spec.Replicas != 3 {
		t.Fatalf("replicas %v %v", dep.Spec.Replicas, err)
	}
	owners := map[string]string{}
	for _, mf := range dep.ManagedFields {
		owners[mf.Manager] = string(mf.FieldsV1.Raw)
	}
	if got := owners[scaleclient.FieldManager]; got == "" || !contains(got, `"f:replicas"`) || contains(got, "f:template") {
		t.Fatalf("activator owns %s", got)
	}
	if got := owners["klambda-manager"]; contains(got, "f:replicas") || !contains(got, "f:template") {
		t.Fatalf("manager owns %s", got)
	}
	// The manager re-applies its Deployment (new image): replicas stay the activator's.
	managerApply(t, ns, "fn:2")
	dep, _ = cs.AppsV1().Deployments(ns).Get(ctx, "f-latest", metav1.GetOptions{})
	if *dep.Spec.Replicas != 3 || dep.Spec.Template.Spec.Containers[0].Image != "fn:2" {
		t.Fatalf("after the manager's apply: replicas %d image %s", *dep.Spec.Replicas, dep.Spec.Template.Spec.Containers[0].Image)
	}
	eventually(t, "cache sees 3", func() bool { n, _ := d.Replicas(key); return n == 3 })
	if err := d.Scale(ctx, key, 0); err != nil {
		t.Fatal(err)
	}
	dep, _ = cs.AppsV1().Deployments(ns).Get(ctx, "f-latest", metav1.GetOptions{})
	if *dep.Spec.Replicas != 0 || dep.Spec.Template.Spec.Containers[0].Image != "fn:2" {
		t.Fatalf("scale to zero: %d", *dep.Spec.Replicas)
	}

	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p1", Namespace: ns, Labels: map[string]string{contract.LabelFunction: "f"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "x"}}}}
	if err := srv.Client.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	if err := d.MarkForRemoval(ctx, key, []string{"p1"}); err != nil {
		t.Fatal(err)
	}
	got, _ := cs.CoreV1().Pods(ns).Get(ctx, "p1", metav1.GetOptions{})
	if got.Annotations[scaleclient.PodDeletionCost] != "-1000" || got.Labels[contract.LabelFunction] != "f" {
		t.Fatalf("pod %v %v", got.Annotations, got.Labels)
	}
}

func contains(s, sub string) bool {
	return len(s) >= len(sub) && (func() bool { return indexOf(s, sub) >= 0 })()
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

// publishedVersion creates Version <fn>-<n> of fn, owned by it, with the status the
// version controller gives a published version n.
func publishedVersion(t *testing.T, ctx context.Context, fn *lambdav1alpha1.Function, n string) *lambdav1alpha1.Version {
	t.Helper()
	v := &lambdav1alpha1.Version{ObjectMeta: metav1.ObjectMeta{Name: fn.Name + "-" + n, Namespace: fn.Namespace, OwnerReferences: []metav1.OwnerReference{ownedBy(fn)}},
		Spec: lambdav1alpha1.VersionSpec{FunctionName: fn.Name}}
	if err := srv.Client.Create(ctx, v); err != nil {
		t.Fatal(err)
	}
	v.Status.Version = n
	v.Status.State = lambdav1alpha1.StateActive
	if err := srv.Client.Status().Update(ctx, v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestFeederFollowsObjectsAndPods(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := namespace(t, "feed")
	table := router.NewTable()
	disp := dispatch.New(nil)
	c := startCache(t, ctx)
	f := &feeder.Feeder{Cache: c, Table: table, Dispatcher: disp, Secrets: &invokesecret.Reader{Client: cs}, Log: logr.Discard()}
	runFeeder(t, ctx, c, f)

	k := srv.Client
	fn := mkFunction(t, ns, "f")
	eventually(t, "Pending function", func() bool {
		_, err := table.Resolve(ns, "f", "")
		var na *router.NotActiveError
		return asNotActive(err, &na) && na.State == "Pending"
	})
	fn.Status.State = lambdav1alpha1.StateActive
	if err := k.Status().Update(ctx, fn); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Active function", func() bool { _, err := table.Resolve(ns, "f", ""); return err == nil })

	v := publishedVersion(t, ctx, fn, "1")
	a := &lambdav1alpha1.Alias{ObjectMeta: metav1.ObjectMeta{Name: "f-live", Namespace: ns},
		Spec: lambdav1alpha1.AliasSpec{FunctionName: "f", Name: "live", FunctionVersion: "1"}}
	if err := k.Create(ctx, a); err != nil {
		t.Fatal(err)
	}
	// Routed once the alias controller has validated it (its status), not before.
	time.Sleep(200 * time.Millisecond)
	if _, err := table.Resolve(ns, "f", "live"); err == nil {
		t.Error("an alias the controller has not validated is routed")
	}
	a.Status.FunctionVersion = "1"
	if err := k.Status().Update(ctx, a); err != nil {
		t.Fatal(err)
	}
	eventually(t, "alias live → 1", func() bool { r, err := table.Resolve(ns, "f", "live"); return err == nil && r.Version == "1" })
	a.Spec.FunctionVersion = "$LATEST"
	if err := k.Update(ctx, a); err != nil {
		t.Fatal(err)
	}
	a.Status.FunctionVersion = "$LATEST"
	if err := k.Status().Update(ctx, a); err != nil {
		t.Fatal(err)
	}
	eventually(t, "alias live → $LATEST", func() bool {
		r, err := table.Resolve(ns, "f", "live")
		return err == nil && r.Version == contract.Latest
	})
	if err := k.Delete(ctx, a); err != nil {
		t.Fatal(err)
	}
	eventually(t, "alias gone", func() bool { _, err := table.Resolve(ns, "f", "live"); return err != nil })

	// A Ready pod of version 1 becomes an environment, with the secret from its Secret.
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "f-invoke", Namespace: ns, OwnerReferences: []metav1.OwnerReference{ownedBy(fn)}},
		Data: map[string][]byte{"token": []byte("t0k")}}
	if err := k.Create(ctx, sec); err != nil {
		t.Fatal(err)
	}
	lbl1 := map[string]string{contract.LabelFunction: "f", contract.LabelVersion: "1"}
	vref := ownedBy(v)
	rs := workload(t, ns, "f-v1", &vref, lbl1)
	pod := readyPod(t, ns, "f-1-abc", "10.0.0.7", lbl1, &rs, "f-invoke")
	key := fnkey.Key{Namespace: ns, Function: "f", Version: "1"}
	lim := int32(-1) // no reserved concurrency
	var lease *dispatch.Lease
	eventually(t, "environment of version 1", func() bool {
		c, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
		defer cancel()
		l, err := disp.Acquire(c, key, lim)
		lease = l
		return err == nil
	})
	if lease.Env.Addr != "10.0.0.7:9000" || lease.Env.Secret != "t0k" || lease.Env.Name != "f-1-abc" {
		t.Fatalf("environment %+v", lease.Env)
	}
	lease.Release()
	if err := k.Delete(ctx, pod); err != nil {
		t.Fatal(err)
	}
	eventually(t, "environment gone", func() bool {
		for _, s := range disp.Stats() {
			if s.Key == key {
				return len(s.Environments) == 0
			}
		}
		return false
	})
	_ = client.ObjectKeyFromObject
}

func asNotActive(err error, target **router.NotActiveError) bool {
	na, ok := err.(*router.NotActiveError)
	if ok {
		*target = na
	}
	return ok
}

// The scaler against the real API server: a waiting request scales a Deployment from
// zero; once its environment has been idle past the timeout, the pod is marked and the
// Deployment goes back to zero.
func TestScalerFromZeroAndBack(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := namespace(t, "scaler")
	managerApply(t, ns, "fn:1")
	c := startCache(t, ctx)
	if _, err := c.GetInformer(ctx, &appsv1.Deployment{}); err != nil {
		t.Fatal(err)
	}
	go func() { _ = c.Start(ctx) }()
	c.WaitForCacheSync(ctx)
	deps := &scaleclient.Deployments{Reader: c, Client: cs}
	key := fnkey.Key{Namespace: ns, Function: "f", Version: contract.Latest}
	eventually(t, "the Deployment in the cache", func() bool { _, err := deps.Replicas(key); return err == nil })
	if err := deps.Scale(ctx, key, 0); err != nil {
		t.Fatal(err)
	}
	eventually(t, "zero in the cache", func() bool { n, _ := deps.Replicas(key); return n == 0 })

	disp := dispatch.New(nil)
	sc := scaler.New(disp, router.NewTable(), deps)
	sc.IdleTimeout = 50 * time.Millisecond
	got := make(chan *dispatch.Lease)
	go func() {
		l, err := disp.Acquire(ctx, key, -1)
		if err != nil {
			t.Error(err)
		}
		got <- l
	}()
	eventually(t, "a waiting request", func() bool { s := disp.Stats(); return len(s) == 1 && s[0].Waiting == 1 })
	sc.Pass(ctx)
	dep, _ := cs.AppsV1().Deployments(ns).Get(ctx, "f-latest", metav1.GetOptions{})
	if *dep.Spec.Replicas != 1 {
		t.Fatalf("scale from zero: replicas %d", *dep.Spec.Replicas)
	}
	// The pod the ReplicaSet would start becomes Ready (no kubelet here: we play it).
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "f-latest-1", Namespace: ns,
		Labels: map[string]string{contract.LabelFunction: "f", contract.LabelVersion: contract.LatestLabelValue}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "x"}}}}
	if err := srv.Client.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	disp.SetEnvironments(key, []dispatch.Environment{{Name: "f-latest-1", Addr: "10.0.0.1:9000"}})
	l := <-got
	l.Release()
	eventually(t, "cache sees 1", func() bool { n, _ := deps.Replicas(key); return n == 1 })
	time.Sleep(60 * time.Millisecond)
	sc.Pass(ctx)
	dep, _ = cs.AppsV1().Deployments(ns).Get(ctx, "f-latest", metav1.GetOptions{})
	p, _ := cs.CoreV1().Pods(ns).Get(ctx, "f-latest-1", metav1.GetOptions{})
	if *dep.Spec.Replicas != 0 || p.Annotations[scaleclient.PodDeletionCost] != "-1000" {
		t.Fatalf("scale to zero: replicas %d, pod annotations %v", *dep.Spec.Replicas, p.Annotations)
	}
}

// A starting pod whose shim answers its readiness probe becomes an environment before
// the kubelet reports it Ready; once the kubelet has, its Ready condition alone counts.
func TestFeederProbesStartingPods(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := namespace(t, "probe")
	disp := dispatch.New(nil)
	c := startCache(t, ctx)
	var shimReady atomic.Bool
	var probed atomic.Int32
	f := &feeder.Feeder{Cache: c, Table: router.NewTable(), Dispatcher: disp, Secrets: &invokesecret.Reader{Client: cs},
		Log: logr.Discard(), ProbeInterval: 5 * time.Millisecond,
		Probe: func(_ context.Context, addr string) bool {
			probed.Add(1)
			return addr == "10.0.0.9:9000" && shimReady.Load()
		}}
	runFeeder(t, ctx, c, f)

	k := srv.Client
	gref := ownedBy(mkFunction(t, ns, "g"))
	glbl := map[string]string{contract.LabelFunction: "g", contract.LabelVersion: contract.LatestLabelValue}
	rs := workload(t, ns, "g-latest", &gref, glbl)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "g-abc", Namespace: ns, Labels: glbl, OwnerReferences: []metav1.OwnerReference{rs}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "function", Image: "x"}}}}
	if err := k.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	pod.Status.Phase = corev1.PodRunning
	pod.Status.PodIP = "10.0.0.9"
	pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse, Reason: "ContainersNotReady"}}
	if err := k.Status().Update(ctx, pod); err != nil {
		t.Fatal(err)
	}
	key := fnkey.Key{Namespace: ns, Function: "g", Version: contract.Latest}
	environments := func() int {
		for _, s := range disp.Stats() {
			if s.Key == key {
				return len(s.Environments)
			}
		}
		return 0
	}
	eventually(t, "the starting pod probed", func() bool { return probed.Load() >= 3 })
	if n := environments(); n != 0 {
		t.Fatalf("%d environments while the shim is not ready", n)
	}
	shimReady.Store(true)
	eventually(t, "environment before the kubelet's Ready", func() bool { return environments() == 1 })

	// The kubelet reports Ready, then NotReady (say the shim reset): the environment goes,
	// although the probe would still answer ready.
	pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	if err := k.Status().Update(ctx, pod); err != nil {
		t.Fatal(err)
	}
	eventually(t, "environment while Ready", func() bool { return environments() == 1 })
	pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse, Reason: "ContainersNotReady"}}
	if err := k.Status().Update(ctx, pod); err != nil {
		t.Fatal(err)
	}
	eventually(t, "no environment once the kubelet says NotReady", func() bool { return environments() == 0 })
	before := probed.Load()
	time.Sleep(100 * time.Millisecond)
	if environments() != 0 || probed.Load() != before {
		t.Fatalf("the pod came back by probe after the kubelet's NotReady (%d environments, %d probes since)", environments(), probed.Load()-before)
	}
}

// An environment that started with the init CPU is resized through pods/resize to the
// CPU limit its annotation names once it is ready, and only then; one without the
// annotation is left alone.
func TestFeederResizesReadyEnvironmentsToTheirShare(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := namespace(t, "resize")
	disp := dispatch.New(nil)
	c := startCache(t, ctx)
	var calls atomic.Int32
	resize := feeder.PodResizer(cs)
	f := &feeder.Feeder{Cache: c, Table: router.NewTable(), Dispatcher: disp, Secrets: &invokesecret.Reader{Client: cs},
		Log: logr.Discard(),
		Resize: func(ctx context.Context, p *corev1.Pod, container, cpu string) error {
			calls.Add(1)
			return resize(ctx, p, container, cpu)
		}}
	runFeeder(t, ctx, c, f)

	k := srv.Client
	rref := ownedBy(mkFunction(t, ns, "r"))
	rs := workload(t, ns, "r-latest", &rref, map[string]string{contract.LabelFunction: "r", contract.LabelVersion: contract.LatestLabelValue})
	mkPod := func(name string, annotations map[string]string) *corev1.Pod {
		res := corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("18m"), corev1.ResourceMemory: resource.MustParse("160Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("160Mi")}}
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: annotations, OwnerReferences: []metav1.OwnerReference{rs},
			Labels: map[string]string{contract.LabelFunction: "r", contract.LabelVersion: contract.LatestLabelValue}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: contract.FunctionContainerName, Image: "x", Resources: res}}}}
		if err := k.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cpuLimit := func(name string) string {
		var p corev1.Pod
		if err := k.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &p); err != nil {
			t.Fatal(err)
		}
		q := p.Spec.Containers[0].Resources.Limits[corev1.ResourceCPU]
		return q.String()
	}
	boosted := mkPod("r-boosted", map[string]string{contract.AnnotationCPULimit: "72m"})
	plain := mkPod("r-plain", nil)
	time.Sleep(200 * time.Millisecond)
	if calls.Load() != 0 || cpuLimit("r-boosted") != "1" {
		t.Fatalf("resized before ready: %d calls, limit %s", calls.Load(), cpuLimit("r-boosted"))
	}
	for _, p := range []*corev1.Pod{boosted, plain} {
		p.Status.Phase = corev1.PodRunning
		p.Status.PodIP = "10.0.0.7"
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
		if err := k.Status().Update(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "the ready environment resized to 72m", func() bool { return cpuLimit("r-boosted") == "72m" })
	time.Sleep(200 * time.Millisecond)
	if got := cpuLimit("r-plain"); got != "1" {
		t.Fatalf("the pod without the annotation was resized to %s", got)
	}
	if n := calls.Load(); n < 1 || n > 2 {
		t.Fatalf("%d resize calls, want one (two if the cache lagged)", n)
	}
}

// A GitOps tool deletes a function's objects and applies them again: the Function, its
// invoke Secret and its Version come back under the same names with new UIDs and a new
// token. The new pod gets invocations with the new token, though its Secret appears after
// the pod is Ready (no pod event follows) and the reader still holds the old Secret.
func TestFeederTakesTheSecretOfARecreatedFunction(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := namespace(t, "recreate")
	disp := dispatch.New(nil)
	c := startCache(t, ctx)
	f := &feeder.Feeder{Cache: c, Table: router.NewTable(), Dispatcher: disp, Secrets: &invokesecret.Reader{Client: cs}, Log: logr.Discard()}
	runFeeder(t, ctx, c, f)
	k := srv.Client
	key := fnkey.Key{Namespace: ns, Function: "f", Version: "1"}
	envSecret := func() string {
		c, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
		defer cancel()
		l, err := disp.Acquire(c, key, -1)
		if err != nil {
			return ""
		}
		defer l.Release()
		return l.Env.Secret
	}
	lbl := map[string]string{contract.LabelFunction: "f", contract.LabelVersion: "1"}
	var objs []client.Object
	round := func(token string) {
		t.Helper()
		fn := mkFunction(t, ns, "f")
		v := publishedVersion(t, ctx, fn, "1")
		vref := ownedBy(v)
		rs := workload(t, ns, "f-v1", &vref, lbl)
		pod := readyPod(t, ns, "f-1-abc", "10.0.0.7", lbl, &rs, "f-invoke")
		time.Sleep(300 * time.Millisecond)
		if s := envSecret(); s != "" {
			t.Fatalf("an environment with secret %q before its Secret exists", s)
		}
		sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "f-invoke", Namespace: ns, OwnerReferences: []metav1.OwnerReference{ownedBy(fn)}},
			Data: map[string][]byte{contract.InvokeSecretKey: []byte(token)}}
		if err := k.Create(ctx, sec); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the environment with token "+token, func() bool { return envSecret() == token })
		var dep appsv1.Deployment
		var set appsv1.ReplicaSet
		if err := k.Get(ctx, client.ObjectKey{Namespace: ns, Name: "f-v1"}, &dep); err != nil {
			t.Fatal(err)
		}
		if err := k.Get(ctx, client.ObjectKey{Namespace: ns, Name: rs.Name}, &set); err != nil {
			t.Fatal(err)
		}
		objs = []client.Object{pod, &set, &dep, v, sec, fn}
	}
	round("t0k")
	// No garbage collector here: delete what it would.
	for _, o := range objs {
		if err := k.Delete(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "the environment gone", func() bool { return envSecret() == "" })
	round("t1k")
}

// HasSynced is what a starting activator waits for before it invokes (invoke.Core.Synced):
// once it is true, every Function that existed when the informers started resolves in
// the router's table, none is missing (a 404 for a function that exists). The cache's
// own sync is reported too: it may come before the handlers have run.
func TestHasSyncedMeansTheTableKnowsEveryFunction(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := namespace(t, "feeder-synced")
	const n = 150
	for i := range n {
		fn := mkFunction(t, ns, fmt.Sprintf("f-%03d", i))
		fn.Status.State = lambdav1alpha1.StateActive
		if err := srv.Client.Status().Update(ctx, fn); err != nil {
			t.Fatal(err)
		}
	}
	c := startCache(t, ctx)
	table := router.NewTable()
	f := &feeder.Feeder{Cache: c, Table: table, Dispatcher: dispatch.New(nil), Secrets: &invokesecret.Reader{Client: cs}, Log: logr.Discard()}
	if f.HasSynced() {
		t.Fatal("synced before any handler was registered")
	}
	if err := f.Register(ctx); err != nil {
		t.Fatal(err)
	}
	if f.HasSynced() {
		t.Fatal("synced before the cache started")
	}
	resolved := func() int {
		k := 0
		for i := range n {
			if _, err := table.Resolve(ns, fmt.Sprintf("f-%03d", i), ""); err == nil {
				k++
			}
		}
		return k
	}
	go func() { _ = c.Start(ctx) }()
	if !c.WaitForCacheSync(ctx) {
		t.Fatal("the cache did not sync")
	}
	t.Logf("at the cache's sync the table resolved %d of %d functions", resolved(), n)
	deadline := time.Now().Add(15 * time.Second)
	for !f.HasSynced() {
		if time.Now().After(deadline) {
			t.Fatal("the feeder's handlers never synced")
		}
		time.Sleep(time.Millisecond)
	}
	if k := resolved(); k != n {
		t.Fatalf("HasSynced, but the table resolves %d of %d functions", k, n)
	}
}
