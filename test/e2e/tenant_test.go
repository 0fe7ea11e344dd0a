//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// The tenant scenario of issue #15: a tenant who administers namespace a (every namespaced
// right there, through the built-in ClusterRole admin, and invoke on a's functions) attacks
// the function of namespace b, by every way observable on the cluster:
//
//   - reaching the shim's invoke port of b's function pod from a pod of a: refused by the
//     NetworkPolicy the manager keeps next to b's Function (needs a network plugin that
//     enforces NetworkPolicy: the local cluster runs kube-router's policy controller),
//     while the activator still invokes it;
//   - invoking b's function through the activator with a's token, synchronously and as an
//     Event: AccessDeniedException (403) from the activator's SubjectAccessReview;
//   - a pod of a carrying b's function labels, Ready on port 9000: b's invocations never
//     reach it (the activator keys environments by namespace);
//   - reading b's invoke Secret, editing b's NetworkPolicy, creating a pod in b with a's
//     token: Forbidden;
//
// and nothing of b changes (its objects' identities, specs and data), and b's function
// still answers b's callers.
func TestTenantCannotReachAnotherNamespace(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	if !cluster.Local {
		t.Skip("needs the local cluster (pod IPs must route from the test, images are local)")
	}
	nsA, nsB := cluster.Namespace(t), cluster.Namespace(t)
	tenant := tenantOf(ctx, t, nsA)

	// b's function, warm, with its own caller.
	victim := cluster.HelloGoFunction(ctx, t, nsB, "victim")
	if err := cluster.Client.Create(ctx, victim); err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.WaitForFunctionActive(ctx, nsB, victim.Name, 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	bClient := cluster.LambdaClient(ctx, t, nsB, cluster.InvokerToken(ctx, t, nsB))
	invokeOK(ctx, t, bClient, victim.Name, "b warm-up")
	bPod, err := cluster.WaitForReadyPod(ctx, nsB, victim.Name, VersionLatest, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	before := namespaceState(ctx, t, nsB)

	t.Run("ShimPortFromAnotherNamespace", func(t *testing.T) {
		activator := cluster.ActivatorPod(ctx, t)
		// From a pod of a: the activator's Invoke API (admitted: it proves the probe and
		// the pod network work), then b's shim, with a health check and an unauthenticated
		// invocation.
		out := runProbePod(ctx, t, tenant, nsA, "attacker", map[string]string{
			"activator": activator.Status.PodIP + ":8080 GET /readyz",
			"shim":      bPod.Status.PodIP + fmt.Sprintf(":%d GET %s", contract.ShimPort, contract.HealthPath),
			"invoke":    bPod.Status.PodIP + fmt.Sprintf(":%d POST %s", contract.ShimPort, contract.InvokePath),
		})
		if !out["activator"] {
			t.Fatalf("the attacker pod could not reach the activator's Invoke API (the probe itself is broken?)")
		}
		for _, target := range []string{"shim", "invoke"} {
			if out[target] {
				t.Errorf("a pod of namespace %s reached port %d of b's function pod (%s): no NetworkPolicy is enforced on it", nsA, contract.ShimPort, target)
			}
		}
		// The activator still reaches it.
		invokeOK(ctx, t, bClient, victim.Name, "b after the attack")
	})

	t.Run("InvokeWithAnotherNamespacesToken", func(t *testing.T) {
		aClient := cluster.LambdaClient(ctx, t, nsB, tenant.token)
		for _, typ := range []lambdatypes.InvocationType{lambdatypes.InvocationTypeRequestResponse, lambdatypes.InvocationTypeEvent} {
			_, err := aClient.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(victim.Name), InvocationType: typ, Payload: []byte(`{"name":"a"}`)})
			wantSDKError(t, "a's token invoking b's function ("+string(typ)+")", err, "AccessDeniedException", http.StatusForbidden)
		}
	})

	t.Run("PodWithAnotherNamespacesFunctionLabels", func(t *testing.T) {
		imp := startImpostor(ctx, t, tenant, nsA, "impostor", victim.Name)
		for i := 0; i < 10; i++ {
			out := invokeOK(ctx, t, bClient, victim.Name, fmt.Sprintf("b invocation %d with an impostor in a", i))
			if out.Function != victim.Name {
				t.Errorf("invocation %d answered by %q", i, out.Function)
			}
		}
		if got := imp.invocations(ctx, t); len(got) != 0 {
			t.Errorf("the impostor pod in %s received b's invocations: %v", nsA, got)
		}
	})

	t.Run("ObjectsOfAnotherNamespace", func(t *testing.T) {
		var s corev1.Secret
		err := tenant.client.Get(ctx, client.ObjectKey{Namespace: nsB, Name: victim.Name + "-invoke"}, &s)
		if !apierrors.IsForbidden(err) {
			t.Errorf("a's token reading b's invoke Secret: %v, want Forbidden", err)
		}
		open := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: nsB, Name: "let-me-in"},
			Spec: networkingv1.NetworkPolicySpec{Ingress: []networkingv1.NetworkPolicyIngressRule{{}}}}
		if err := tenant.client.Create(ctx, open); !apierrors.IsForbidden(err) {
			t.Errorf("a's token creating a NetworkPolicy in b: %v, want Forbidden", err)
		}
		pod := probePod(nsB, "intruder", "sleep 1", nil)
		if err := tenant.client.Create(ctx, pod); !apierrors.IsForbidden(err) {
			t.Errorf("a's token creating a pod in b: %v, want Forbidden", err)
		}
	})

	after := namespaceState(ctx, t, nsB)
	if !reflect.DeepEqual(before, after) {
		for k, v := range before {
			if after[k] != v {
				t.Errorf("b's %s changed:\n before %s\n after  %s", k, v, after[k])
			}
		}
		for k, v := range after {
			if _, ok := before[k]; !ok {
				t.Errorf("b has a new %s: %s", k, v)
			}
		}
	}
	invokeOK(ctx, t, bClient, victim.Name, "b at the end")
}

// A pod that carries a function's labels but was not made by its Deployment receives
// none of its invocations, even in the function's own namespace (issue #15: "any pod
// carrying a function's labels receives invocations (require the owner chain)"). This is
// the activator's owner-chain check; it fails until that check is in.
func TestTenantImpostorInOwnNamespaceGetsNoInvocations(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if !cluster.Local {
		t.Skip("needs the local cluster")
	}
	ns := cluster.Namespace(t)
	tenant := tenantOf(ctx, t, ns)
	fn := cluster.HelloGoFunction(ctx, t, ns, "mirror")
	if err := cluster.Client.Create(ctx, fn); err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.WaitForFunctionActive(ctx, ns, fn.Name, 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	// At zero replicas, a Ready impostor is the only environment the labels find.
	imp := startImpostor(ctx, t, tenant, ns, "mirror-impostor", fn.Name)
	c := cluster.LambdaClient(ctx, t, ns, tenant.token)
	out := invokeOK(ctx, t, c, fn.Name, "invocation with an impostor Ready")
	if out.Function != fn.Name {
		t.Errorf("answered by %q", out.Function)
	}
	if got := imp.invocations(ctx, t); len(got) != 0 {
		t.Errorf("the impostor pod received the function's invocations: %v", got)
	}
}

// tenantIdentity is a namespace administrator: ServiceAccount tenant in the namespace, bound
// to ClusterRole admin there, allowed to invoke the namespace's functions.
type tenantIdentity struct {
	token  string
	client client.Client
}

func tenantOf(ctx context.Context, t *testing.T, ns string) tenantIdentity {
	t.Helper()
	token := cluster.ServiceAccountToken(ctx, t, ns, "tenant", true)
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "tenant-admin"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "admin"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "tenant", Namespace: ns}},
	}
	if err := cluster.Client.Create(ctx, rb); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	// The token above is for the activator (audience klambda), which the API server refuses;
	// the tenant's API client gets a token of the API server's own audience.
	secs := int64(3600)
	tr, err := cluster.Kube.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "tenant",
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &secs}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("requesting an API token of %s/tenant: %v", ns, err)
	}
	cfg := rest.AnonymousClientConfig(cluster.REST)
	cfg.BearerToken = tr.Status.Token
	c, err := client.New(cfg, client.Options{Scheme: cluster.Client.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	// RBAC caches settle quickly; wait until the binding is in force.
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		var pods corev1.PodList
		return c.List(ctx, &pods, client.InNamespace(ns)) == nil, nil
	})
	if err != nil {
		t.Fatalf("the tenant of %s cannot list its pods: %v", ns, err)
	}
	return tenantIdentity{token: token, client: c}
}

// helloResponse is examples/hello-go's answer.
type helloResponse struct {
	Message  string `json:"message"`
	Function string `json:"function"`
}

func invokeOK(ctx context.Context, t *testing.T, c *lambda.Client, fn, what string) helloResponse {
	t.Helper()
	out, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(fn), Payload: []byte(`{"name":"tenant-test"}`)})
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	var r helloResponse
	if out.StatusCode != 200 || out.FunctionError != nil || json.Unmarshal(out.Payload, &r) != nil {
		t.Fatalf("%s: %d %s %s", what, out.StatusCode, aws.ToString(out.FunctionError), out.Payload)
	}
	return r
}

// The local base image: busybox (sh, nc, httpd), present on the node.
const busyboxImage = "klambda.local/provided:al2023"

func probePod(ns, name, script string, labels map[string]string) *corev1.Pod {
	f, tr := false, true
	uid := int64(65532)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{
				Name: "main", Image: busyboxImage, ImagePullPolicy: corev1.PullNever,
				Command:      []string{"/bin/sh", "-c", script},
				VolumeMounts: []corev1.VolumeMount{{Name: "tmp", MountPath: "/tmp"}},
				SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: &f, RunAsNonRoot: &tr, RunAsUser: &uid,
					Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}},
			}},
			Volumes:                       []corev1.Volume{{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
			TerminationGracePeriodSeconds: ptrTo(int64(1)),
		},
	}
}

func ptrTo[T any](v T) *T { return &v }

var probeLine = regexp.MustCompile(`^PROBE (\S+) (reached|blocked)`)

// runProbePod runs, as the tenant, a pod in ns that opens a TCP connection to each target
// ("IP:PORT METHOD PATH") and sends one HTTP request; a target is reached when any HTTP
// answer came back (a 401 too: the connection was made).
func runProbePod(ctx context.Context, t *testing.T, tenant tenantIdentity, ns, name string, targets map[string]string) map[string]bool {
	t.Helper()
	var script strings.Builder
	for label, target := range targets {
		f := strings.Fields(target)
		hostPort := strings.Split(f[0], ":")
		fmt.Fprintf(&script, "if printf '%s %s HTTP/1.0\\r\\nContent-Length: 2\\r\\n\\r\\n{}' | nc -w 3 %s %s 2>&1 | grep -q '^HTTP/1'; then echo 'PROBE %s reached'; else echo 'PROBE %s blocked'; fi\n",
			f[1], f[2], hostPort[0], hostPort[1], label, label)
	}
	pod := probePod(ns, name, script.String(), nil)
	if err := tenant.client.Create(ctx, pod); err != nil {
		t.Fatalf("the tenant creating pod %s/%s: %v", ns, name, err)
	}
	var last corev1.Pod
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		if err := cluster.Client.Get(ctx, client.ObjectKeyFromObject(pod), &last); err != nil {
			return false, nil
		}
		return last.Status.Phase == corev1.PodSucceeded || last.Status.Phase == corev1.PodFailed, nil
	})
	if err != nil {
		t.Fatalf("probe pod %s/%s did not finish: %s: %v", ns, name, podSummary(&last), err)
	}
	logs := podLogs(ctx, t, ns, name)
	got := map[string]bool{}
	seen := map[string]bool{}
	for _, line := range strings.Split(logs, "\n") {
		if m := probeLine.FindStringSubmatch(line); m != nil {
			got[m[1]], seen[m[1]] = m[2] == "reached", true
		}
	}
	for label := range targets {
		if !seen[label] {
			t.Fatalf("probe pod %s/%s printed no result for %s: %q", ns, name, label, logs)
		}
	}
	t.Logf("probes from %s/%s: %v", ns, name, got)
	return got
}

func podLogs(ctx context.Context, t *testing.T, ns, name string) string {
	t.Helper()
	rc, err := cluster.Kube.CoreV1().Pods(ns).GetLogs(name, &corev1.PodLogOptions{}).Stream(ctx)
	if err != nil {
		t.Fatalf("logs of %s/%s: %v", ns, name, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// impostor is a pod that carries a function's labels and answers on the shim's port (busybox
// httpd, logging every request it gets).
type impostor struct{ ns, name string }

func startImpostor(ctx context.Context, t *testing.T, tenant tenantIdentity, ns, name, function string) impostor {
	t.Helper()
	script := fmt.Sprintf("mkdir -p /tmp/www && echo ok >/tmp/www/readyz && echo ok >/tmp/www/healthz && exec httpd -f -vv -p %d -h /tmp/www", contract.ShimPort)
	pod := probePod(ns, name, script, map[string]string{contract.LabelFunction: function, contract.LabelVersion: contract.LatestLabelValue})
	pod.Annotations = map[string]string{contract.AnnotationFunctionName: function, contract.AnnotationQualifier: contract.Latest}
	pod.Spec.RestartPolicy = corev1.RestartPolicyAlways
	c := &pod.Spec.Containers[0]
	c.Ports = []corev1.ContainerPort{{Name: "invoke", ContainerPort: contract.ShimPort}}
	c.Env = []corev1.EnvVar{{Name: contract.InvokeSecretEnv, Value: "impostor"}}
	c.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: contract.ReadyPath, Port: intstr.FromInt32(contract.ShimPort)}}, PeriodSeconds: 1}
	if err := tenant.client.Create(ctx, pod); err != nil {
		t.Fatalf("the tenant creating the impostor %s/%s: %v", ns, name, err)
	}
	var last corev1.Pod
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		if err := cluster.Client.Get(ctx, client.ObjectKeyFromObject(pod), &last); err != nil {
			return false, nil
		}
		return podReady(&last) && last.Status.PodIP != "", nil
	})
	if err != nil {
		t.Fatalf("the impostor %s/%s is not Ready: %s: %v", ns, name, podSummary(&last), err)
	}
	// Give the activator's informers time to see it.
	time.Sleep(2 * time.Second)
	return impostor{ns: ns, name: name}
}

// invocations are the request lines the impostor logged other than probes.
func (i impostor) invocations(ctx context.Context, t *testing.T) []string {
	t.Helper()
	var out []string
	for _, line := range strings.Split(podLogs(ctx, t, i.ns, i.name), "\n") {
		if _, url, ok := strings.Cut(line, "url:"); ok && url != "/readyz" && url != "/healthz" {
			out = append(out, line)
		}
	}
	return out
}

// namespaceState is what must not change in a namespace under attack: every object of the
// kinds klambda and its tenants use, by identity, spec and data (not status, nor the
// replicas the activator owns, nor the Deployment's generation, which they move).
func namespaceState(ctx context.Context, t *testing.T, ns string) map[string]string {
	t.Helper()
	out := map[string]string{}
	add := func(kind string, o metav1.Object, v any) {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		out[kind+"/"+o.GetName()] = string(o.GetUID()) + " " + string(b)
	}
	in := client.InNamespace(ns)
	var fns lambdav1alpha1.FunctionList
	var deps appsv1.DeploymentList
	var svcs corev1.ServiceList
	var secrets corev1.SecretList
	var cms corev1.ConfigMapList
	var nps networkingv1.NetworkPolicyList
	var sas corev1.ServiceAccountList
	var roles rbacv1.RoleList
	var rbs rbacv1.RoleBindingList
	for _, l := range []client.ObjectList{&fns, &deps, &svcs, &secrets, &cms, &nps, &sas, &roles, &rbs} {
		if err := cluster.Client.List(ctx, l, in); err != nil {
			t.Fatal(err)
		}
	}
	for i := range fns.Items {
		o := &fns.Items[i]
		add("Function", o, []any{o.Generation, o.Spec})
	}
	for i := range deps.Items {
		o := &deps.Items[i]
		add("Deployment", o, []any{o.Spec.Template, o.Spec.Selector})
	}
	for i := range svcs.Items {
		add("Service", &svcs.Items[i], svcs.Items[i].Spec)
	}
	for i := range secrets.Items {
		add("Secret", &secrets.Items[i], secrets.Items[i].Data)
	}
	for i := range cms.Items {
		add("ConfigMap", &cms.Items[i], []any{cms.Items[i].Data, cms.Items[i].BinaryData})
	}
	for i := range nps.Items {
		add("NetworkPolicy", &nps.Items[i], nps.Items[i].Spec)
	}
	for i := range sas.Items {
		add("ServiceAccount", &sas.Items[i], nil)
	}
	for i := range roles.Items {
		add("Role", &roles.Items[i], roles.Items[i].Rules)
	}
	for i := range rbs.Items {
		add("RoleBinding", &rbs.Items[i], []any{rbs.Items[i].RoleRef, rbs.Items[i].Subjects})
	}
	return out
}
