// Package rbac_test checks klambda's generated roles against a real kube-apiserver (its RBAC
// authorizer and admission): every ServiceAccount can do what its binary calls, and cannot do
// what would widen a tenant's blast radius — the activator cannot rewrite a pod or a
// Deployment nor list Secrets, the pollers cannot list Secrets nor touch other components'
// Leases, and so on. The roles are read from the files the Helm chart embeds
// (charts/klambda/files/*-role.yaml, generated from +kubebuilder:rbac markers by `make
// manifests`; `make chart-check` fails when the chart's copies are stale).
package rbac_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/klambda/klambda/activator/feeder"
	"github.com/klambda/klambda/activator/fnkey"
	"github.com/klambda/klambda/activator/invokesecret"
	"github.com/klambda/klambda/activator/pool"
	"github.com/klambda/klambda/activator/scaleclient"
	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	"github.com/klambda/klambda/controllers"
	"github.com/klambda/klambda/internal/codeloader"
	"github.com/klambda/klambda/test/apiserver"
)

const (
	system = "klambda-system"
	tenant = "tenant-a"
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

func user(component string) string {
	return "system:serviceaccount:" + system + ":klambda-" + component
}

// impersonate is a rest.Config acting as the component's ServiceAccount.
func impersonate(component string) *rest.Config {
	cfg := rest.CopyConfig(srv.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user(component),
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + system, "system:authenticated"}}
	return cfg
}

// docs reads the YAML documents of one of the chart's files.
func docs(t *testing.T, file string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(apiserver.RepoRoot(), "charts", "klambda", "files", file))
	if err != nil {
		t.Fatal(err)
	}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	var out [][]byte
	for {
		d, err := r.Read()
		if err != nil {
			break
		}
		if len(bytes.TrimSpace(d)) > 0 && strings.Contains(string(d), "kind:") {
			out = append(out, d)
		}
	}
	return out
}

// install creates the component's ServiceAccount and binds the roles of its file: a
// ClusterRole cluster-wide, a Role in the release namespace (where the chart puts it).
func install(t *testing.T, ctx context.Context, component string) {
	t.Helper()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: system, Name: "klambda-" + component}}
	if err := srv.Client.Create(ctx, sa); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	subject := []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa.Name, Namespace: system}}
	for i, d := range docs(t, component+"-role.yaml") {
		var head metav1.TypeMeta
		if err := yaml.Unmarshal(d, &head); err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("klambda-%s-%d", component, i)
		switch head.Kind {
		case "ClusterRole":
			var cr rbacv1.ClusterRole
			if err := yaml.UnmarshalStrict(d, &cr); err != nil {
				t.Fatal(err)
			}
			cr.ObjectMeta = metav1.ObjectMeta{Name: name}
			mustCreate(t, ctx, &cr)
			mustCreate(t, ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name}, Subjects: subject,
				RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name}})
		case "Role":
			var r rbacv1.Role
			if err := yaml.UnmarshalStrict(d, &r); err != nil {
				t.Fatal(err)
			}
			r.ObjectMeta = metav1.ObjectMeta{Name: name, Namespace: system}
			mustCreate(t, ctx, &r)
			mustCreate(t, ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: system}, Subjects: subject,
				RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name}})
		default:
			t.Fatalf("%s-role.yaml: unexpected kind %s", component, head.Kind)
		}
	}
}

func mustCreate(t *testing.T, ctx context.Context, o client.Object) {
	t.Helper()
	if err := srv.Client.Create(ctx, o); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
	}
}

// access is one question to the authorizer: may component do verb on resource?
type access struct {
	component, verb, group, resource, subresource, namespace string
	allowed                                                  bool
}

func (a access) String() string {
	r := a.resource
	if a.subresource != "" {
		r += "/" + a.subresource
	}
	if a.group != "" {
		r += "." + a.group
	}
	ns := a.namespace
	if ns == "" {
		ns = "(cluster)"
	}
	return fmt.Sprintf("%s %s %s in %s", a.component, a.verb, r, ns)
}

// TestRolesGrantWhatTheCodeCallsAndNothingMore asks the kube-apiserver's authorizer
// (SubjectAccessReview, as `kubectl auth can-i --as=system:serviceaccount:klambda-system:…`
// does) about each component's ServiceAccount.
func TestRolesGrantWhatTheCodeCallsAndNothingMore(t *testing.T) {
	ctx := context.Background()
	for _, ns := range []string{system, tenant} {
		mustCreate(t, ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	}
	for _, c := range []string{"manager", "activator", "eventsources"} {
		install(t, ctx, c)
	}
	const L = "lambda.klambda.dev"
	checks := []access{
		// The activator: informers, the scale subresource, the deletion-cost annotation,
		// in-place resize, a named Secret, TokenReview and SubjectAccessReview.
		{"activator", "list", L, "functions", "", "", true},
		{"activator", "watch", L, "aliases", "", "", true},
		{"activator", "watch", L, "versions", "", "", true},
		{"activator", "list", "", "pods", "", "", true},
		{"activator", "watch", "apps", "deployments", "", "", true},
		{"activator", "list", "apps", "replicasets", "", "", true},
		{"activator", "patch", "apps", "deployments", "scale", tenant, true},
		{"activator", "patch", "", "pods", "", tenant, true},
		{"activator", "patch", "", "pods", "resize", tenant, true},
		{"activator", "get", "", "secrets", "", tenant, true},
		{"activator", "create", "authentication.k8s.io", "tokenreviews", "", "", true},
		{"activator", "create", "authorization.k8s.io", "subjectaccessreviews", "", "", true},
		// ... and not: rewriting a Deployment's pod template, creating or deleting pods,
		// reading every Secret, editing functions.
		{"activator", "patch", "apps", "deployments", "", tenant, false},
		{"activator", "update", "apps", "deployments", "", tenant, false},
		{"activator", "update", "", "pods", "", tenant, false},
		{"activator", "create", "", "pods", "", tenant, false},
		// (pods it took from a pool only: the ValidatingAdmissionPolicy, TestActivatorChangesOnlyTheDeletionCostOfPods)
		{"activator", "delete", "", "pods", "", tenant, true},
		{"activator", "patch", "", "pods", "ephemeralcontainers", tenant, false},
		{"activator", "create", "", "pods", "exec", tenant, false},
		{"activator", "list", "", "secrets", "", "", false},
		{"activator", "watch", "", "secrets", "", tenant, false},
		{"activator", "list", "", "secrets", "", tenant, false},
		{"activator", "patch", L, "functions", "", tenant, false},
		{"activator", "list", "discovery.k8s.io", "endpointslices", "", "", false},
		// The pollers: their mappings (cached), a named Secret and Function (uncached),
		// invoke, SubjectAccessReview for the mapping's ServiceAccount, their Leases.
		{"eventsources", "watch", L, "eventsourcemappings", "", "", true},
		{"eventsources", "patch", L, "eventsourcemappings", "", tenant, true},
		{"eventsources", "patch", L, "eventsourcemappings", "status", tenant, true},
		{"eventsources", "get", "", "secrets", "", tenant, true},
		{"eventsources", "get", L, "functions", "", tenant, true},
		{"eventsources", "invoke", L, "functions", "", tenant, true},
		{"eventsources", "create", "authorization.k8s.io", "subjectaccessreviews", "", "", true},
		{"eventsources", "create", "coordination.k8s.io", "leases", "", system, true},
		{"eventsources", "update", "coordination.k8s.io", "leases", "", system, true},
		{"eventsources", "delete", "coordination.k8s.io", "leases", "", system, true},
		// ... and not: every Secret, other namespaces' Leases (kube-system's leader
		// elections), anything else of functions.
		{"eventsources", "list", "", "secrets", "", "", false},
		{"eventsources", "watch", "", "secrets", "", tenant, false},
		{"eventsources", "list", "", "secrets", "", tenant, false},
		{"eventsources", "update", "coordination.k8s.io", "leases", "", "kube-system", false},
		{"eventsources", "create", "coordination.k8s.io", "leases", "", tenant, false},
		{"eventsources", "update", L, "functions", "", tenant, false},
		// The manager reads the Secrets Functions name (code credentials) and creates the
		// invoke Secret; it never lists them.
		{"manager", "get", "", "secrets", "", tenant, true},
		{"manager", "create", "", "secrets", "", tenant, true},
		{"manager", "list", "", "secrets", "", "", false},
		{"manager", "watch", "", "secrets", "", tenant, false},
		{"manager", "delete", "", "secrets", "", tenant, false},
		{"manager", "update", "", "secrets", "", tenant, false},
		// PoolReconciler deletes pool Deployments no version needs any more.
		{"manager", "delete", "apps", "deployments", "", tenant, true},
	}
	for _, c := range checks {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User:   user(c.component),
			Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + system, "system:authenticated"},
			ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: c.namespace, Verb: c.verb,
				Group: c.group, Resource: c.resource, Subresource: c.subresource},
		}}
		res, err := cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if res.Status.Allowed != c.allowed {
			want := "allowed"
			if !c.allowed {
				want = "denied"
			}
			t.Errorf("%s: must be %s, is not (%s)", c, want, res.Status.Reason)
		}
	}
}

// TestActivatorChangesOnlyTheDeletionCostOfPods: RBAC lets the activator patch pods (the
// pod-deletion-cost annotation); the chart's ValidatingAdmissionPolicy keeps it from
// changing anything else, above all a container's image.
func TestActivatorChangesOnlyTheDeletionCostOfPods(t *testing.T) {
	ctx := context.Background()
	for _, ns := range []string{system, tenant} {
		mustCreate(t, ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	}
	install(t, ctx, "activator")
	for _, d := range docs(t, "activator-pod-policy.yaml") {
		var head metav1.TypeMeta
		if err := yaml.Unmarshal(d, &head); err != nil {
			t.Fatal(err)
		}
		switch head.Kind {
		case "ValidatingAdmissionPolicy":
			var p admissionregistrationv1.ValidatingAdmissionPolicy
			if err := yaml.UnmarshalStrict(d, &p); err != nil {
				t.Fatal(err)
			}
			mustCreate(t, ctx, &p)
		case "ValidatingAdmissionPolicyBinding":
			var b admissionregistrationv1.ValidatingAdmissionPolicyBinding
			if err := yaml.UnmarshalStrict(d, &b); err != nil {
				t.Fatal(err)
			}
			mustCreate(t, ctx, &b)
		default:
			t.Fatalf("activator-pod-policy.yaml: unexpected kind %s", head.Kind)
		}
	}
	act := kubernetes.NewForConfigOrDie(impersonate("activator"))
	newPod := func(name string) {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: name,
			Labels: map[string]string{"lambda.klambda.dev/function": "f"}, Annotations: map[string]string{"keep": "me"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "function", Image: "registry.test/fn:1"}}}}
		mustCreate(t, ctx, p)
	}
	patch := func(name, body string) error {
		_, err := act.CoreV1().Pods(tenant).Patch(ctx, name, types.StrategicMergePatchType, []byte(body), metav1.PatchOptions{})
		return err
	}
	// The policy takes a moment to load: wait until it denies an image change on a probe
	// pod (each attempt a new image, so an attempt that got through doesn't make the next
	// one a no-op).
	newPod("probe")
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; ; i++ {
		err := patch("probe", fmt.Sprintf(`{"spec":{"containers":[{"name":"function","image":"evil.test/x:%d"}]}}`, i))
		if apierrors.IsForbidden(err) || apierrors.IsInvalid(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the activator's ServiceAccount still changes a pod's image after 20 s (last answer: %v)", err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	newPod("env")
	denied := map[string]string{
		"image":      `{"spec":{"containers":[{"name":"function","image":"evil.test/x:1"}]}}`,
		"label":      `{"metadata":{"labels":{"lambda.klambda.dev/function":"other"}}}`,
		"new label":  `{"metadata":{"labels":{"extra":"x"}}}`,
		"annotation": `{"metadata":{"annotations":{"keep":"changed"}}}`,
		"removal":    `{"metadata":{"annotations":{"keep":null}}}`,
		"finalizer":  `{"metadata":{"finalizers":["example.test/hold"]}}`,
		"owner":      `{"metadata":{"ownerReferences":[{"apiVersion":"v1","kind":"ConfigMap","name":"x","uid":"0b2b5a8e-7e1a-4a0e-9e55-6b1c2f3a4d5e"}]}}`,
	}
	for what, body := range denied {
		if err := patch("env", body); !apierrors.IsForbidden(err) && !apierrors.IsInvalid(err) {
			t.Errorf("activator changing a pod's %s: %v, want Forbidden", what, err)
		}
	}
	// What it needs: the deletion cost, set and changed.
	for _, cost := range []string{"-1000", "0"} {
		if err := patch("env", `{"metadata":{"annotations":{"controller.kubernetes.io/pod-deletion-cost":"`+cost+`"}}}`); err != nil {
			t.Errorf("activator setting the deletion cost %s: %v", cost, err)
		}
	}
	var p corev1.Pod
	if err := srv.Client.Get(ctx, client.ObjectKey{Namespace: tenant, Name: "env"}, &p); err != nil {
		t.Fatal(err)
	}
	if p.Spec.Containers[0].Image != "registry.test/fn:1" || p.Labels["lambda.klambda.dev/function"] != "f" || p.Annotations["keep"] != "me" {
		t.Errorf("the pod changed: image %s labels %v annotations %v", p.Spec.Containers[0].Image, p.Labels, p.Annotations)
	}
	// A pool's generic pod: the claim (activator/pool Claim) is admitted, and then the
	// deletion; neither on a function's own pod. The generic pod and the version's
	// Deployment carry the manager's labels, so the claim also changes the pod's recommended
	// labels from the pool's to the function's (controllers/README.md, "Recommended labels").
	gen, version := managersPoolPodAndVersion(t)
	mustCreate(t, ctx, gen)
	tmpl := &contract.SpecializationTemplate{InvokeSecretName: "f-invoke"}
	if err := act.CoreV1().Pods(tenant).Delete(ctx, "env", metav1.DeleteOptions{}); !apierrors.IsForbidden(err) && !apierrors.IsInvalid(err) {
		t.Errorf("activator deleting a function's own pod: %v, want Forbidden", err)
	}
	if _, err := pool.Claim(ctx, act, &p, version, tmpl); !apierrors.IsForbidden(err) && !apierrors.IsInvalid(err) {
		t.Errorf("activator claiming a pod that is in no pool: %v, want Forbidden", err)
	}
	if err := act.CoreV1().Pods(tenant).Delete(ctx, "generic", metav1.DeleteOptions{}); !apierrors.IsForbidden(err) && !apierrors.IsInvalid(err) {
		t.Errorf("activator deleting a generic pod it did not claim: %v, want Forbidden", err)
	}
	if err := patch("generic", `{"metadata":{"labels":{"lambda.klambda.dev/pool":null},"annotations":{"lambda.klambda.dev/specialized-from":"k"}},"spec":{"containers":[{"name":"function","image":"evil.test/x:1"}]}}`); !apierrors.IsForbidden(err) && !apierrors.IsInvalid(err) {
		t.Errorf("activator changing a generic pod's image with its claim: %v, want Forbidden", err)
	}
	claimed, err := pool.Claim(ctx, act, gen, version, tmpl)
	if err != nil {
		t.Fatalf("activator claiming a generic pod: %v", err)
	}
	if claimed.Labels["lambda.klambda.dev/function"] != "f" || claimed.Spec.Containers[0].Image != "registry.test/runtime:1" {
		t.Errorf("claimed pod: labels %v image %s", claimed.Labels, claimed.Spec.Containers[0].Image)
	}
	// It looks like the version's own pods: every recommended label is the template's
	// (none of the pool's stays behind), and it has them all.
	recommended := 0
	for k, v := range claimed.Labels {
		if strings.HasPrefix(k, "app.kubernetes.io/") {
			recommended++
			if version.Spec.Template.Labels[k] != v {
				t.Errorf("claimed pod: label %s=%q, the version's pods have %q", k, v, version.Spec.Template.Labels[k])
			}
		}
	}
	if recommended != 5 || claimed.Labels["app.kubernetes.io/component"] != "function" {
		t.Errorf("claimed pod: labels %v, want the version's five recommended labels", claimed.Labels)
	}
	if err := act.CoreV1().Pods(tenant).Delete(ctx, "generic", metav1.DeleteOptions{}); err != nil {
		t.Errorf("activator deleting a pod it claimed: %v", err)
	}

	// Others (an administrator, the ReplicaSet controller) are not limited by the policy.
	if _, err := cs.CoreV1().Pods(tenant).Patch(ctx, "env", types.StrategicMergePatchType, []byte(`{"metadata":{"labels":{"extra":"x"}}}`), metav1.PatchOptions{}); err != nil {
		t.Errorf("an administrator's label change: %v", err)
	}

	// And a Deployment's template stays out of reach: only its scale.
	lbl := map[string]string{"lambda.klambda.dev/function": "f"}
	one := int32(1)
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: "f-latest", Labels: lbl},
		Spec: appsv1.DeploymentSpec{Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: lbl},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: lbl},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "function", Image: "registry.test/fn:1"}}}}}}
	mustCreate(t, ctx, dep)
	_, err = act.AppsV1().Deployments(tenant).Patch(ctx, "f-latest", types.StrategicMergePatchType,
		[]byte(`{"spec":{"template":{"spec":{"containers":[{"name":"function","image":"evil.test/x:1"}]}}}}`), metav1.PatchOptions{})
	if !apierrors.IsForbidden(err) {
		t.Errorf("activator patching a Deployment's template: %v, want Forbidden", err)
	}
}

// TestActivatorCodeRunsWithItsRole runs the activator's own Kubernetes code (its informer
// cache, Deployments.Scale and MarkForRemoval, the invoke-secret reader) as its
// ServiceAccount, so the role cannot drift below what the code calls.
func TestActivatorCodeRunsWithItsRole(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, ns := range []string{system, tenant} {
		mustCreate(t, ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	}
	install(t, ctx, "activator")
	// Function g, its $LATEST Deployment and invoke Secret, as the manager makes them (the
	// activator follows the owner chain).
	fn := &lambdav1alpha1.Function{ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: "g"}}
	fn.Spec.PackageType = lambdav1alpha1.PackageTypeImage
	fn.Spec.Code.ImageURI = "registry.test/fn:1"
	mustCreate(t, ctx, fn)
	yes := true
	owner := []metav1.OwnerReference{{APIVersion: lambdav1alpha1.GroupVersion.String(), Kind: "Function", Name: "g", UID: fn.UID, Controller: &yes}}
	fnUID := fn.UID
	lbl := map[string]string{contract.LabelFunction: "g", contract.LabelVersion: contract.LatestLabelValue}
	one := int32(1)
	mustCreate(t, ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: "g-latest", Labels: lbl, OwnerReferences: owner},
		Spec: appsv1.DeploymentSpec{Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: lbl},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: lbl},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "function", Image: "registry.test/fn:1"}}}}}})
	mustCreate(t, ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: "g-pod", Labels: lbl},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "function", Image: "registry.test/fn:1"}}}})
	mustCreate(t, ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: "g-invoke", OwnerReferences: owner},
		Data: map[string][]byte{"token": []byte("s3cret")}})

	cfg := impersonate("activator")
	act := kubernetes.NewForConfigOrDie(cfg)
	c, err := feeder.NewCache(cfg, scheme.Scheme)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []client.Object{&lambdav1alpha1.Function{}, &lambdav1alpha1.Version{}, &lambdav1alpha1.Alias{}, &corev1.Pod{}, &appsv1.Deployment{}, &appsv1.ReplicaSet{}} {
		if _, err := c.GetInformer(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	go func() { _ = c.Start(ctx) }()
	if !c.WaitForCacheSync(ctx) {
		t.Fatal("the activator's informers did not sync with its role")
	}
	d := &scaleclient.Deployments{Reader: c, Client: act}
	key := fnkey.Key{Namespace: tenant, Function: "g", Version: contract.Latest}
	for {
		if _, err := d.Replicas(key); err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("the Deployment never reached the cache")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := d.Scale(ctx, key, 3); err != nil {
		t.Fatalf("scaling as the activator: %v", err)
	}
	if err := d.MarkForRemoval(ctx, key, []string{"g-pod"}); err != nil {
		t.Fatalf("marking a pod for removal as the activator: %v", err)
	}
	sr := &invokesecret.Reader{Client: act}
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Annotations: map[string]string{contract.AnnotationInvokeSecret: "g-invoke"}}}
	if s, err := sr.ForPod(ctx, p, fnUID); err != nil || s != "s3cret" {
		t.Fatalf("reading the invoke secret as the activator: %q, %v", s, err)
	}
	var dep appsv1.Deployment
	if err := srv.Client.Get(ctx, client.ObjectKey{Namespace: tenant, Name: "g-latest"}, &dep); err != nil || *dep.Spec.Replicas != 3 {
		t.Fatalf("replicas after Scale: %v, %v", dep.Spec.Replicas, err)
	}
}

// managersPoolPodAndVersion are a generic pod as the manager's pool makes it (labels and
// annotations of controllers.PoolPodTemplate) and the $LATEST Deployment of function "f"
// as the manager makes it, for a claim.
func managersPoolPodAndVersion(t *testing.T) (*corev1.Pod, *appsv1.Deployment) {
	t.Helper()
	cfg, err := controllers.ParseConfig([]byte(`
runtimeImages: {provided.al2023: registry.test/runtime:1}
embeddedShim: {provided.al2023: {path: /klambda/runtime-shim}}
pools: [{runtime: provided.al2023, size: 1}]
`))
	if err != nil {
		t.Fatal(err)
	}
	key := contract.PoolKey{Runtime: "provided.al2023", Architecture: "x86_64", MemoryMB: 128}
	tpl, err := controllers.PoolPodTemplate(cfg, key)
	if err != nil {
		t.Fatal(err)
	}
	w := &controllers.Workload{Function: "f", Qualifier: contract.Latest, InvokeSecret: "f-invoke", CodeDigest: codeloader.DigestOf([]byte("code"))}
	w.Config.Runtime, w.Config.Handler, w.Config.MemorySize = "provided.al2023", "bootstrap", 128
	w.Config.Code.URL = "https://code.test/f.zip"
	version, err := w.Deployment(cfg, tenant)
	if err != nil {
		t.Fatal(err)
	}
	version.UID = "5a1b0c3e-0000-4000-8000-000000000001"
	if version.Spec.Template.Labels["app.kubernetes.io/component"] != "function" || tpl.Labels["app.kubernetes.io/component"] != "pool" {
		t.Fatalf("the manager's labels: version %v, pool %v", version.Spec.Template.Labels, tpl.Labels)
	}
	gen := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: "generic", Labels: tpl.Labels, Annotations: tpl.Annotations},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "function", Image: "registry.test/runtime:1"}}}}
	return gen, version
}
