package klambda_test

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
)

// TestChartCodeStore: codeStore values become the manager's codeStore configuration (which
// the manager accepts), and credentialsSecret is mounted where credentialsDir points;
// without a repository there is no store and no mount; inconsistent values are refused.
func TestChartCodeStore(t *testing.T) {
	objs, errOut := render(t, "codeStore.bundled.enabled=false", "codeStore.repository=registry.example.com:5000/klambda/code", "codeStore.readRepository=registry-ro.example.com:5001/klambda/code",
		"codeStore.plainHTTP=true", "codeStore.credentialsSecret=store-writer", "codeStore.gcGrace=2h")
	if errOut != "" {
		t.Fatal(errOut)
	}
	cfg := managerConfig(t, objs)
	cs := cfg.CodeStore
	if !slices.Equal(cfg.PlainHTTPRegistries, []string{"registry.example.com:5000", "registry-ro.example.com:5001"}) {
		t.Errorf("plainHTTPRegistries = %v; want both of the code store's registries", cfg.PlainHTTPRegistries)
	}
	if cs.Repository != "registry.example.com:5000/klambda/code" || cs.ReadRepository != "registry-ro.example.com:5001/klambda/code" ||
		cs.CredentialsDir != "/etc/klambda/code-store" || cs.GCGrace.Duration != 2*time.Hour || cs.GCInterval.Duration != 10*time.Minute {
		t.Fatalf("manager codeStore = %+v", cs)
	}
	dep := decode[appsv1.Deployment](t, objs, "Deployment/klambda-manager")
	mounted := false
	for _, m := range dep.Spec.Template.Spec.Containers[0].VolumeMounts {
		if m.MountPath == cs.CredentialsDir {
			for _, v := range dep.Spec.Template.Spec.Volumes {
				if v.Name == m.Name && v.Secret != nil && v.Secret.SecretName == "store-writer" {
					mounted = true
				}
			}
		}
	}
	if !mounted {
		t.Errorf("Secret store-writer is not mounted at %s", cs.CredentialsDir)
	}

	if _, ok := objs["Deployment/klambda-code-store"]; ok {
		t.Error("with a registry of the user's, the bundled store is rendered too")
	}

	objs, errOut = render(t, "codeStore.bundled.enabled=false")
	if errOut != "" {
		t.Fatal(errOut)
	}
	if cs := managerConfig(t, objs).CodeStore; cs.Repository != "" {
		t.Errorf("with neither a bundled store nor a repository the manager has a code store: %+v", cs)
	}
	for set, want := range map[string]string{
		"codeStore.bundled.enabled=false,codeStore.credentialsSecret=x": "set codeStore.repository",
		"config.codeStore.repository=r.io/code":                         "use codeStore",
		"codeStore.gcMaxDeletes=0":                                      "gcMaxDeletes",
		// The bundled store is on by default: a registry of the user's needs it off.
		"codeStore.repository=r.io/code":            "set codeStore.bundled.enabled=false",
		"codeStore.credentialsSecret=x":             "set codeStore.bundled.enabled=false",
		"codeStore.bundled.persistence.size=lots":   "size",
		"codeStore.bundled.image.digest=sha256:abc": "digest",
		"codeStore.bundled.replicas=2":              "replicas",
	} {
		if _, errOut := render(t, set); !strings.Contains(errOut, want) {
			t.Errorf("--set %s: helm said %q, want an error naming %s", set, errOut, want)
		}
	}
}

// TestChartBundledCodeStore: by default the chart runs its own code store, and the manager
// and the activator's control-plane API write its read-write port while function pods
// read its read-only port; only the manager and the activator reach the write port.
func TestChartBundledCodeStore(t *testing.T) {
	objs, errOut := render(t, "activator.controlAPI.enabled=true")
	if errOut != "" {
		t.Fatal(errOut)
	}
	const svc = "klambda-code-store." + releaseNS + ".svc"
	cfg := managerConfig(t, objs)
	cs := cfg.CodeStore
	if cs.Repository != svc+":5000/klambda/code" || cs.ReadRepository != svc+":5001/klambda/code" || cs.CredentialsDir != "" {
		t.Fatalf("manager codeStore = %+v", cs)
	}
	if !cfg.PlainHTTP(svc+":5000") || !cfg.PlainHTTP(svc+":5001") || len(cfg.PlainHTTPRegistries) != 2 {
		t.Errorf("plainHTTPRegistries = %v; want the bundled store's two ports", cfg.PlainHTTPRegistries)
	}
	act := decode[appsv1.Deployment](t, objs, "Deployment/klambda-activator")
	args := strings.Join(act.Spec.Template.Spec.Containers[0].Args, " ")
	if !strings.Contains(args, "--code-store-repository="+svc+":5000/klambda/code") || !strings.Contains(args, "--code-store-plain-http=true") {
		t.Errorf("activator args %s: want the bundled store's write port over plain HTTP", args)
	}
	// The control API keeps each upload in a file under /tmp while it is put into the store:
	// the root filesystem is read-only, so /tmp is an emptyDir sized for maxUploads of 50 MB
	// (e2e TestAWSCLIDeployAndInvoke failed with "read-only file system" without it).
	tmp := false
	for _, m := range act.Spec.Template.Spec.Containers[0].VolumeMounts {
		if m.MountPath == "/tmp" {
			for _, v := range act.Spec.Template.Spec.Volumes {
				if v.Name == m.Name && v.EmptyDir != nil && v.EmptyDir.SizeLimit.String() == "256Mi" {
					tmp = true
				}
			}
		}
	}
	if !tmp {
		t.Errorf("the activator has no writable /tmp of 4 × 64Mi for the control API's uploads: %+v", act.Spec.Template.Spec.Volumes)
	}

	dep := decode[appsv1.Deployment](t, objs, "Deployment/klambda-code-store")
	pod := dep.Spec.Template.Spec
	c := pod.Containers[0]
	if *dep.Spec.Replicas != 1 || dep.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Errorf("code store: %d replicas, strategy %s; want one pod, Recreate (one process owns the directory)", *dep.Spec.Replicas, dep.Spec.Strategy.Type)
	}
	if c.Image != "ghcr.io/klambda/code-store:0.1.0" || !slices.Equal(c.Args, []string{"--root=/var/lib/code-store", "--listen=:5000", "--read-listen=:5001"}) {
		t.Errorf("code store container: %s %v", c.Image, c.Args)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken || pod.SecurityContext.FSGroup == nil || *pod.SecurityContext.FSGroup != 65532 {
		t.Errorf("code store pod: automount %v, fsGroup %v; want no token, fsGroup 65532", pod.AutomountServiceAccountToken, pod.SecurityContext.FSGroup)
	}
	if len(pod.Volumes) != 1 || pod.Volumes[0].PersistentVolumeClaim == nil || pod.Volumes[0].PersistentVolumeClaim.ClaimName != "klambda-code-store" {
		t.Fatalf("code store volumes %+v, want the claim klambda-code-store", pod.Volumes)
	}
	pvc := decode[corev1.PersistentVolumeClaim](t, objs, "PersistentVolumeClaim/klambda-code-store")
	if q := pvc.Spec.Resources.Requests[corev1.ResourceStorage]; q.String() != "10Gi" || pvc.Annotations["helm.sh/resource-policy"] != "keep" {
		t.Errorf("claim: %s, annotations %v; want 10Gi, kept", q.String(), pvc.Annotations)
	}
	s := decode[corev1.Service](t, objs, "Service/klambda-code-store")
	if len(s.Spec.Ports) != 2 || s.Spec.Ports[0].Port != 5000 || s.Spec.Ports[1].Port != 5001 {
		t.Errorf("Service ports %+v", s.Spec.Ports)
	}

	np := decode[networkingv1.NetworkPolicy](t, objs, "NetworkPolicy/klambda-code-store")
	if !selects(t, np, dep.Spec.Template.Labels) {
		t.Error("the code store's NetworkPolicy does not select its pod")
	}
	ports := ingressPorts(t, np)
	if len(ports) != 2 {
		t.Fatalf("code store admits ports %v, want 5000 and 5001", ports)
	}
	var writers []string
	for _, p := range ports[5000] {
		if p.PodSelector == nil || p.NamespaceSelector != nil || p.IPBlock != nil {
			t.Errorf("write port peer %+v: want pods of the release namespace only", p)
			continue
		}
		writers = append(writers, p.PodSelector.MatchLabels["app.kubernetes.io/component"])
	}
	if slices.Sort(writers); !slices.Equal(writers, []string{"activator", "manager"}) {
		t.Errorf("write port admits %v, want the activator and the manager", writers)
	}
	if r, ok := ports[5001]; !ok || r != nil {
		t.Errorf("read port peers %+v: want any source (a new function pod loads its code before an IP-set policy knows it)", r)
	}

	// Without persistence, an emptyDir of persistence.size and no claim; an existing claim
	// is used as it is.
	objs, errOut = render(t, "codeStore.bundled.persistence.enabled=false", "codeStore.bundled.persistence.size=2Gi")
	if errOut != "" {
		t.Fatal(errOut)
	}
	if _, ok := objs["PersistentVolumeClaim/klambda-code-store"]; ok {
		t.Error("a claim without persistence")
	}
	v := decode[appsv1.Deployment](t, objs, "Deployment/klambda-code-store").Spec.Template.Spec.Volumes[0]
	if v.EmptyDir == nil || v.EmptyDir.SizeLimit.String() != "2Gi" {
		t.Errorf("volume without persistence: %+v", v)
	}
	objs, errOut = render(t, "codeStore.bundled.persistence.existingClaim=mine", "codeStore.bundled.nodeSelector.disk=ssd", "codeStore.bundled.podLabels.team=a")
	if errOut != "" {
		t.Fatal(errOut)
	}
	if _, ok := objs["PersistentVolumeClaim/klambda-code-store"]; ok {
		t.Error("a claim made although existingClaim names one")
	}
	d := decode[appsv1.Deployment](t, objs, "Deployment/klambda-code-store")
	if d.Spec.Template.Spec.Volumes[0].PersistentVolumeClaim.ClaimName != "mine" || d.Spec.Template.Spec.NodeSelector["disk"] != "ssd" || d.Spec.Template.Labels["team"] != "a" {
		t.Errorf("existingClaim/nodeSelector/podLabels not applied: %+v", d.Spec.Template)
	}
}

// TestChartCodeLocationKey: with the control-plane API and a code store, the activator
// takes the key of its code links from Secret <release>-activator-code-location (created
// by the first activator when missing), and a Role lets it get that Secret and create
// Secrets, nothing more; without a code store neither flag nor Role.
func TestChartCodeLocationKey(t *testing.T) {
	set := []string{"activator.controlAPI.enabled=true", "codeStore.bundled.enabled=false", "codeStore.repository=registry.example.com:5000/klambda/code"}
	if args := activatorArgs(t, set...); !slices.Contains(args, "--code-location-key-secret=klambda-activator-code-location") {
		t.Fatalf("activator args %v", args)
	}
	objs, errOut := render(t, append([]string{"activator.enabled=true", "activator.tls.secretName=activator-tls"}, set...)...)
	if errOut != "" {
		t.Fatal(errOut)
	}
	role := decode[rbacv1.Role](t, objs, "Role/klambda-activator-code-location")
	want := []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{"klambda-activator-code-location"}, Verbs: []string{"get"}},
		{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"create"}},
	}
	if !reflect.DeepEqual(role.Rules, want) || role.Namespace != releaseNS {
		t.Fatalf("Role rules %+v in %s", role.Rules, role.Namespace)
	}
	rb := decode[rbacv1.RoleBinding](t, objs, "RoleBinding/klambda-activator-code-location")
	if rb.RoleRef.Name != role.Name || len(rb.Subjects) != 1 || rb.Subjects[0].Name != "klambda-activator" || rb.Subjects[0].Namespace != releaseNS {
		t.Fatalf("RoleBinding %+v", rb)
	}
	if args := activatorArgs(t, "activator.controlAPI.enabled=true", "codeStore.bundled.enabled=false"); slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--code-location-key-secret") }) {
		t.Fatalf("without a code store: %v", args)
	}
	objs, _ = render(t, "activator.enabled=true", "activator.tls.secretName=activator-tls", "activator.controlAPI.enabled=true", "codeStore.bundled.enabled=false")
	if _, ok := objs["Role/klambda-activator-code-location"]; ok {
		t.Fatal("the code-location Role without a code store")
	}
}

// TestChartPlainHTTPRegistries: config.plainHTTPRegistries reaches the manager next to the
// code store's registries (one list: the manager's only way to learn that a registry
// speaks plain HTTP); a registry over TLS is not listed; an entry with a scheme or a path
// is refused by the schema.
func TestChartPlainHTTPRegistries(t *testing.T) {
	objs, errOut := render(t, "config.plainHTTPRegistries={registry.registry.svc:5000,10.0.0.7}")
	if errOut != "" {
		t.Fatal(errOut)
	}
	const svc = "klambda-code-store." + releaseNS + ".svc"
	if got := managerConfig(t, objs).PlainHTTPRegistries; !slices.Equal(got, []string{"registry.registry.svc:5000", "10.0.0.7", svc + ":5000", svc + ":5001"}) {
		t.Errorf("plainHTTPRegistries = %v", got)
	}
	objs, errOut = render(t, "codeStore.bundled.enabled=false", "codeStore.repository=registry.example.com/klambda/code")
	if errOut != "" {
		t.Fatal(errOut)
	}
	if cfg := managerConfig(t, objs); len(cfg.PlainHTTPRegistries) != 0 || cfg.PlainHTTP("registry.example.com") {
		t.Errorf("a code store over TLS: plainHTTPRegistries = %v", cfg.PlainHTTPRegistries)
	}
	for _, bad := range []string{"http://registry:5000", "registry:5000/team", "registry:port"} {
		if _, errOut := render(t, "config.plainHTTPRegistries={"+bad+"}"); !strings.Contains(errOut, "plainHTTPRegistries") {
			t.Errorf("config.plainHTTPRegistries={%s}: helm said %q, want a refusal", bad, errOut)
		}
	}
}
