package pool

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/klambda/klambda/api/contract"
)

var key = contract.PoolKey{Runtime: "provided.al2023", Architecture: "x86_64", MemoryMB: 128}

func genericPod(name string, age time.Duration, ready bool) *corev1.Pod {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID("uid-" + name), ResourceVersion: "7",
			CreationTimestamp: metav1.NewTime(time.Now().Add(-age)),
			Labels:            map[string]string{contract.LabelPool: key.LabelValue(), contract.LabelPoolEnvironment: "true"},
			Annotations:       map[string]string{contract.AnnotationPoolKey: key.String(), contract.AnnotationInvokeSecret: contract.PoolSecretName},
			OwnerReferences:   []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "pool-rs", UID: "rs-uid"}}},
		Status: corev1.PodStatus{PodIP: "10.0.0.1", Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}},
	}
}

// Each ready generic pod is handed out once, oldest first; an empty pool is a miss; the
// metrics say so.
func TestIndexHandsOutEachPodOnce(t *testing.T) {
	x := NewIndex(nil)
	old, young, starting := genericPod("old", time.Hour, true), genericPod("young", time.Minute, true), genericPod("starting", 0, false)
	x.Update([]*corev1.Pod{young, starting, old})
	if got := testutil.ToFloat64(x.Metrics.Size.WithLabelValues("ns", key.LabelValue())); got != 2 {
		t.Fatalf("size %v, want 2", got)
	}
	if p := x.Take("other-ns", key); p != nil {
		t.Fatal("a pod of another namespace was handed out")
	}
	if p := x.Take("ns", key); p == nil || p.Name != "old" {
		t.Fatalf("first take %v", p)
	}
	// The informer has not seen the claim yet: the pod still looks generic.
	x.Update([]*corev1.Pod{young, starting, old})
	if p := x.Take("ns", key); p == nil || p.Name != "young" {
		t.Fatalf("second take %v", p)
	}
	if p := x.Take("ns", key); p != nil {
		t.Fatalf("third take %v: a pod handed out twice or one not ready", p.Name)
	}
	if h, m := testutil.ToFloat64(x.Metrics.Hits.WithLabelValues("ns", key.LabelValue())), testutil.ToFloat64(x.Metrics.Misses.WithLabelValues("ns", key.LabelValue())); h != 2 || m != 1 {
		t.Fatalf("hits %v misses %v", h, m)
	}
	if got := testutil.ToFloat64(x.Metrics.Size.WithLabelValues("ns", key.LabelValue())); got != 0 {
		t.Fatalf("size %v, want 0", got)
	}
}

func TestBuildFillsInTheTemplate(t *testing.T) {
	st := &contract.SpecializationTemplate{Pool: key, Command: []string{"/bin/sh", "-c", "exec /var/task/bootstrap"}, Code: "https://code.test/x.zip#sha256=ab",
		Env: []contract.TemplateEnvVar{
			{Name: "KLAMBDA_POD_UID", PodUID: true},
			{Name: "AWS_LAMBDA_LOG_STREAM_NAME", Value: "[$$LATEST]$(KLAMBDA_POD_UID)"},
			{Name: "PASSWORD", SecretKeyRef: &contract.SecretKeyRef{Name: "db", Key: "password"}},
			{Name: "MAYBE", SecretKeyRef: &contract.SecretKeyRef{Name: "db", Key: "absent", Optional: true}},
			{Name: "GREETING", Value: "hi $(PASSWORD) $$(HOME)"},
		}}
	secrets := func(_ context.Context, ns, name, k string) (string, bool, error) {
		if ns == "ns" && name == "db" && k == "password" {
			return "s3cr3t", true, nil
		}
		return "", false, nil
	}
	spec, err := Build(context.Background(), st, genericPod("p", 0, true), "fn-token", secrets)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(spec.Env)
	want := `[{"name":"KLAMBDA_POD_UID","value":"uid-p"},{"name":"AWS_LAMBDA_LOG_STREAM_NAME","value":"[$LATEST]uid-p"},{"name":"PASSWORD","value":"s3cr3t"},{"name":"GREETING","value":"hi s3cr3t $(HOME)"}]`
	if string(b) != want {
		t.Fatalf("env\n got %s\nwant %s", b, want)
	}
	if spec.InvokeSecret != "fn-token" || spec.Code != st.Code || len(spec.Command) != 3 {
		t.Fatalf("spec %+v", spec)
	}
	st.Env = append(st.Env, contract.TemplateEnvVar{Name: "MUST", SecretKeyRef: &contract.SecretKeyRef{Name: "db", Key: "absent"}})
	if _, err := Build(context.Background(), st, genericPod("p", 0, true), "t", secrets); err == nil || !strings.Contains(err.Error(), "no key absent") {
		t.Fatalf("a missing required Secret key: %v", err)
	}
}

// The claim takes the pod out of its pool and makes it the version's, owned by its
// Deployment, with the version's invoke Secret and its pod template's labels.
func TestClaimMakesThePodTheVersions(t *testing.T) {
	pod := genericPod("p", time.Minute, true)
	pod.Labels["app.kubernetes.io/name"] = "klambda-pool"
	pod.Labels["app.kubernetes.io/component"] = "pool"
	pod.Labels["app.kubernetes.io/part-of"] = "klambda"
	c := fake.NewClientset(pod)
	selector := map[string]string{contract.LabelFunction: "fn", contract.LabelVersion: "latest", contract.LabelRevision: "r1"}
	template := map[string]string{contract.LabelFunction: "fn", contract.LabelVersion: "latest", contract.LabelRevision: "r1",
		"app.kubernetes.io/name": "klambda-function", "app.kubernetes.io/instance": "fn", "app.kubernetes.io/component": "function"}
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "fn-latest", Namespace: "ns", UID: "dep-uid"},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: selector},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: template, Annotations: map[string]string{
				contract.AnnotationFunctionName: "fn", contract.AnnotationQualifier: "$LATEST", contract.AnnotationCodeSha256: "abc="}}},
		}}
	st := &contract.SpecializationTemplate{Pool: key, InvokeSecretName: "fn-invoke"}
	got, err := Claim(context.Background(), c, pod, dep, st)
	if err != nil {
		t.Fatal(err)
	}
	// It leaves the pool's ReplicaSet (LabelPool), and stays selected by the pool's
	// NetworkPolicy (LabelPoolEnvironment) while its function's catches up.
	if _, ok := got.Labels[contract.LabelPool]; ok || got.Labels[contract.LabelPoolEnvironment] != "true" || got.Labels[contract.LabelFunction] != "fn" || got.Labels[contract.LabelVersion] != "latest" {
		t.Fatalf("labels %v", got.Labels)
	}
	// It looks like the template's pods: the recommended labels say function, not pool;
	// those the template lacks stay.
	for k, v := range template {
		if got.Labels[k] != v {
			t.Errorf("label %s=%q, want %q (the template's)", k, got.Labels[k], v)
		}
	}
	if got.Labels["app.kubernetes.io/part-of"] != "klambda" {
		t.Errorf("labels %v: app.kubernetes.io/part-of is gone", got.Labels)
	}
	if got.Annotations[contract.AnnotationInvokeSecret] != "fn-invoke" || got.Annotations[contract.AnnotationSpecializedFrom] != key.String() ||
		got.Annotations[contract.AnnotationQualifier] != "$LATEST" || got.Annotations[contract.AnnotationCodeSha256] != "abc=" {
		t.Fatalf("annotations %v", got.Annotations)
	}
	if _, ok := got.Annotations[contract.AnnotationPoolKey]; ok {
		t.Fatal("the pod still names its pool key")
	}
	if o := got.OwnerReferences; len(o) != 1 || o[0].UID != "dep-uid" || o[0].Kind != "Deployment" || o[0].Controller == nil || !*o[0].Controller {
		t.Fatalf("owners %+v", o)
	}
}

// Specialize sends the pool's secret and the specialization, and reports a refusal.
func TestSpecializePostsToTheShim(t *testing.T) {
	var got contract.Specialization
	var secret string
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != contract.SpecializePath || r.Method != http.MethodPost {
			http.NotFound(w, r)
			return
		}
		secret = r.Header.Get(contract.HeaderPoolSecret)
		b, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(b, &got)
		w.WriteHeader(status)
		_, _ = w.Write([]byte(`{"message":"already belongs to a function"}`))
	}))
	defer srv.Close()
	host, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	// The shim's port is fixed: reach the test server through a dialer that maps every
	// address to it.
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, net.JoinHostPort(host, port))
	}}}
	pod := genericPod("p", 0, true)
	spec := &contract.Specialization{InvokeSecret: "t", Command: []string{"/x"}, Env: []contract.EnvVar{{Name: "A", Value: "1"}}}
	if err := Specialize(context.Background(), client, pod, "pool-token", spec); err != nil {
		t.Fatal(err)
	}
	if secret != "pool-token" || got.InvokeSecret != "t" || len(got.Env) != 1 {
		t.Fatalf("shim got secret %q spec %+v", secret, got)
	}
	status = http.StatusConflict
	if err := Specialize(context.Background(), client, pod, "pool-token", spec); err == nil || !strings.Contains(err.Error(), "409") {
		t.Fatalf("a refused specialization: %v", err)
	}
}
