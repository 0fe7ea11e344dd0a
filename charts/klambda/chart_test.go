// Package klambda_test renders the Helm chart with `helm template` and checks what it
// makes. The helm binary: $HELM, else ~/.cache/klambda/bin/helm-v3.22.0 (make chart-check
// installs it and runs these tests); without one the tests are skipped.
package klambda_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/klambda/klambda/controllers"
)

const releaseNS = "tenant-platform"

func helm(t *testing.T) string {
	t.Helper()
	if h := os.Getenv("HELM"); h != "" {
		return h
	}
	home, _ := os.UserHomeDir()
	h := filepath.Join(home, ".cache", "klambda", "bin", "helm-v3.22.0")
	if _, err := os.Stat(h); err != nil {
		t.Skip("no helm binary (set HELM, or run make chart-check)")
	}
	return h
}

// render runs helm template with --set arguments; it returns the objects by kind/name, or
// helm's error output.
func render(t *testing.T, set ...string) (map[string][]byte, string) {
	t.Helper()
	var args []string
	for _, s := range set {
		args = append(args, "--set", s)
	}
	return renderArgs(t, args...)
}

// renderArgs is render with helm's own arguments (--set-json, -f, ...).
func renderArgs(t *testing.T, extra ...string) (map[string][]byte, string) {
	t.Helper()
	args := append([]string{"template", "klambda", ".", "--kube-version", "1.37.2", "--namespace", releaseNS}, extra...)
	cmd := exec.Command(helm(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, stderr.String()
	}
	objs := map[string][]byte{}
	for _, doc := range strings.Split(stdout.String(), "\n---") {
		var meta struct {
			Kind     string            `json:"kind"`
			Metadata metav1.ObjectMeta `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatalf("rendered YAML: %v\n%s", err, doc)
		}
		if meta.Kind != "" {
			objs[meta.Kind+"/"+meta.Metadata.Name] = []byte(doc)
		}
	}
	return objs, ""
}

func decode[T any](t *testing.T, objs map[string][]byte, key string) *T {
	t.Helper()
	doc, ok := objs[key]
	if !ok {
		t.Fatalf("%s was not rendered", key)
	}
	var v T
	if err := yaml.UnmarshalStrict(doc, &v); err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	return &v
}

func networkPolicies(objs map[string][]byte) []string {
	var out []string
	for k := range objs {
		if strings.HasPrefix(k, "NetworkPolicy/") {
			out = append(out, k)
		}
	}
	return out
}

// managerConfig parses the manager's rendered --config with the manager's own parser.
func managerConfig(t *testing.T, objs map[string][]byte) controllers.Config {
	t.Helper()
	cm := decode[corev1.ConfigMap](t, objs, "ConfigMap/klambda-config")
	cfg, err := controllers.ParseConfig([]byte(cm.Data["config.yaml"]))
	if err != nil {
		t.Fatalf("the manager refuses the chart's configuration: %v\n%s", err, cm.Data["config.yaml"])
	}
	return cfg
}

func selects(t *testing.T, np *networkingv1.NetworkPolicy, podLabels map[string]string) bool {
	t.Helper()
	sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
	if err != nil {
		t.Fatal(err)
	}
	return !sel.Empty() && sel.Matches(labels.Set(podLabels))
}

// ingressPorts maps each admitted TCP port to its peers (nil: from anywhere).
func ingressPorts(t *testing.T, np *networkingv1.NetworkPolicy) map[int][]networkingv1.NetworkPolicyPeer {
	t.Helper()
	if !reflect.DeepEqual(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}) {
		t.Errorf("%s: policyTypes %v, want [Ingress]", np.Name, np.Spec.PolicyTypes)
	}
	out := map[int][]networkingv1.NetworkPolicyPeer{}
	for _, r := range np.Spec.Ingress {
		if len(r.Ports) == 0 {
			t.Errorf("%s: a rule admits every port: %+v", np.Name, r)
		}
		for _, p := range r.Ports {
			if p.Protocol == nil || *p.Protocol != corev1.ProtocolTCP || p.Port == nil || p.EndPort != nil {
				t.Errorf("%s: port %+v, want one TCP port", np.Name, p)
				continue
			}
			out[p.Port.IntValue()] = r.From
		}
	}
	return out
}

// By default the chart closes klambda's own pods to everything but the activator's Invoke
// API, and tells the manager to guard function pods for this release's activator.
func TestChartNetworkPoliciesByDefault(t *testing.T) {
	objs, errOut := render(t, "activator.enabled=true", "activator.tls.plainHTTP=true", "eventsources.enabled=true")
	if errOut != "" {
		t.Fatal(errOut)
	}
	activator := decode[appsv1.Deployment](t, objs, "Deployment/klambda-activator").Spec.Template.Labels
	manager := decode[appsv1.Deployment](t, objs, "Deployment/klambda-manager").Spec.Template.Labels
	pollers := decode[appsv1.Deployment](t, objs, "Deployment/klambda-eventsources").Spec.Template.Labels

	np := decode[networkingv1.NetworkPolicy](t, objs, "NetworkPolicy/klambda-activator")
	if np.Namespace != releaseNS || !selects(t, np, activator) || selects(t, np, manager) || selects(t, np, pollers) {
		t.Errorf("the activator's policy selects %v in %s", np.Spec.PodSelector, np.Namespace)
	}
	got := ingressPorts(t, np)
	if len(got) != 2 || got[8080] != nil || len(np.Spec.Ingress[0].From) != 0 || len(got[8082]) != 1 ||
		!reflect.DeepEqual(got[8082][0].PodSelector.MatchLabels, decode[appsv1.Deployment](t, objs, "Deployment/klambda-activator").Spec.Selector.MatchLabels) {
		t.Errorf("the activator admits %v, want the Invoke API (8080) from anywhere, the peer port (8082) from activator pods, and nothing else", got)
	}
	for key, pods := range map[string]map[string]string{"NetworkPolicy/klambda-manager": manager, "NetworkPolicy/klambda-eventsources": pollers} {
		np := decode[networkingv1.NetworkPolicy](t, objs, key)
		if !selects(t, np, pods) || selects(t, np, activator) {
			t.Errorf("%s selects %v", key, np.Spec.PodSelector)
		}
		if got := ingressPorts(t, np); len(got) != 0 {
			t.Errorf("%s admits %v, want nothing (metricsFrom is empty)", key, got)
		}
	}

	// Function policies admit the activator's pods by the labels its Deployment selects
	// on (podLabels and the version label are not among them).
	cfg := managerConfig(t, objs).NetworkPolicy
	sel := decode[appsv1.Deployment](t, objs, "Deployment/klambda-activator").Spec.Selector.MatchLabels
	if !*cfg.Enabled || cfg.ActivatorNamespace != releaseNS || !reflect.DeepEqual(cfg.ActivatorPodLabels, sel) ||
		!labels.SelectorFromSet(cfg.ActivatorPodLabels).Matches(labels.Set(activator)) {
		t.Errorf("the manager's networkPolicy %+v; want enabled, namespace %s, the activator's selector %v", cfg, releaseNS, sel)
	}
}

func TestChartNetworkPoliciesMetricsFrom(t *testing.T) {
	objs, errOut := render(t, "activator.enabled=true", "activator.tls.plainHTTP=true", "eventsources.enabled=true", "metrics.serviceMonitor.enabled=true",
		"networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name=monitoring")
	if errOut != "" {
		t.Fatal(errOut)
	}
	want := []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "monitoring"}}}}
	for key, port := range map[string]int{"NetworkPolicy/klambda-activator": 9090, "NetworkPolicy/klambda-manager": 8080, "NetworkPolicy/klambda-eventsources": 8080} {
		np := decode[networkingv1.NetworkPolicy](t, objs, key)
		got := ingressPorts(t, np)
		if !reflect.DeepEqual(got[port], want) {
			t.Errorf("%s: metrics port %d admits %+v, want %+v", key, port, got[port], want)
		}
	}
}

// A ServiceMonitor without metricsFrom: Prometheus must connect, so any pod may (the
// endpoint's own authentication and authorization still apply with metrics.secure).
func TestChartNetworkPoliciesSecureMetricsScrapedFromAnyPod(t *testing.T) {
	objs, errOut := render(t, "activator.enabled=true", "activator.tls.plainHTTP=true", "metrics.serviceMonitor.enabled=true")
	if errOut != "" {
		t.Fatal(errOut)
	}
	np := decode[networkingv1.NetworkPolicy](t, objs, "NetworkPolicy/klambda-activator")
	want := []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{}}}
	if got := ingressPorts(t, np); len(got) != 3 || got[8080] != nil || len(got[8082]) != 1 || !reflect.DeepEqual(got[9090], want) {
		t.Errorf("the activator admits %+v, want 8080 from anywhere, 8082 from activators and 9090 from any pod", got)
	}
}

func TestChartNetworkPoliciesOff(t *testing.T) {
	objs, errOut := render(t, "activator.enabled=true", "activator.tls.plainHTTP=true", "eventsources.enabled=true", "networkPolicy.enabled=false", "metrics.serviceMonitor.enabled=true")
	if errOut != "" {
		t.Fatal(errOut)
	}
	if nps := networkPolicies(objs); len(nps) != 0 {
		t.Errorf("networkPolicy.enabled=false rendered %v", nps)
	}
	if cfg := managerConfig(t, objs).NetworkPolicy; *cfg.Enabled {
		t.Errorf("networkPolicy.enabled=false, the manager's networkPolicy %+v", cfg)
	}
}

func TestChartRefusesNetworkPolicyMisconfiguration(t *testing.T) {
	for set, want := range map[string]string{
		"config.networkPolicy.enabled=false": "use networkPolicy.enabled",
	} {
		if _, errOut := render(t, set); !strings.Contains(errOut, want) {
			t.Errorf("--set %s: helm said %q, want an error naming %s", set, errOut, want)
		}
	}
}

// activatorArgs are the activator container's arguments as rendered with set.
func activatorArgs(t *testing.T, set ...string) []string {
	t.Helper()
	objs, errOut := render(t, append([]string{"activator.enabled=true", "activator.tls.secretName=activator-tls"}, set...)...)
	if errOut != "" {
		t.Fatalf("--set %v: %s", set, errOut)
	}
	d := decode[appsv1.Deployment](t, objs, "Deployment/klambda-activator")
	return d.Spec.Template.Spec.Containers[0].Args
}

// The async queue's stream replicas: 1 for one activator replica on an external NATS, as
// given otherwise; never above 1 on the embedded server. (3 by default for several
// replicas: TestChartSeveralActivatorsShareShards.)
func TestChartAsyncStreamReplicas(t *testing.T) {
	url := []string{"activator.async.natsUrl=nats://nats.nats:4222", "nats.enabled=false", "activator.replicas=1"}
	for _, c := range []struct {
		set  []string
		want string
	}{
		{url, "--async-stream-replicas=1"},
		{append(slices.Clone(url), "activator.async.streamReplicas=5"), "--async-stream-replicas=5"},
		{append(slices.Clone(url), "activator.async.streamReplicas=3"), "--async-stream-replicas=3"},
		// The chart's NATS cluster: R3 by default, even for one activator replica.
		{[]string{"activator.replicas=1"}, "--async-stream-replicas=3"},
	} {
		args := activatorArgs(t, c.set...)
		found := 0
		for _, a := range args {
			if strings.HasPrefix(a, "--async-stream-replicas=") {
				found++
				if a != c.want {
					t.Errorf("--set %v: %s, want %s", c.set, a, c.want)
				}
			}
		}
		if found != 1 {
			t.Errorf("--set %v: %d --async-stream-replicas arguments, want one (%s)", c.set, found, c.want)
		}
	}
	for _, a := range activatorArgs(t, "activator.replicas=1", "nats.enabled=false") {
		if strings.HasPrefix(a, "--async-stream-replicas") {
			t.Errorf("embedded NATS: %s rendered (the flag's default, 1, is the only valid value)", a)
		}
	}
}

// Several activator replicas share the namespaces by shard: the chart renders the shard
// flags, the peer port (and its NetworkPolicy rule, from activator pods only), the peer
// token and the Role of the Leases; a clustered queue gets 3 stream replicas by default.
func TestChartSeveralActivatorsShareShards(t *testing.T) {
	base := []string{"activator.enabled=true", "activator.tls.secretName=activator-tls", "activator.async.natsUrl=nats://n:4222", "nats.enabled=false", "activator.replicas=3"}
	objs, errOut := render(t, base...)
	if errOut != "" {
		t.Fatal(errOut)
	}
	d := decode[appsv1.Deployment](t, objs, "Deployment/klambda-activator")
	if *d.Spec.Replicas != 3 {
		t.Errorf("replicas %d, want 3", *d.Spec.Replicas)
	}
	c := d.Spec.Template.Spec.Containers[0]
	args := strings.Join(c.Args, " ")
	for _, want := range []string{"--shards=8", "--peer-listen-address=:8082", "--members-service=klambda-activator",
		"--peer-service-account=system:serviceaccount:" + releaseNS + ":klambda-activator", "--peer-token-file=/var/run/secrets/klambda/peer/token",
		"--async-stream-replicas=3"} {
		if !strings.Contains(args, want) {
			t.Errorf("activator args lack %s: %s", want, args)
		}
	}
	env := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			env[e.Name] = e.ValueFrom.FieldRef.FieldPath
		}
	}
	if env["POD_NAME"] != "metadata.name" || env["POD_IP"] != "status.podIP" {
		t.Errorf("downward API env %v, want POD_NAME and POD_IP", env)
	}
	var audience string
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Name == "peer-token" && v.Projected != nil && len(v.Projected.Sources) == 1 && v.Projected.Sources[0].ServiceAccountToken != nil {
			audience = v.Projected.Sources[0].ServiceAccountToken.Audience
		}
	}
	if audience != "klambda-activator-peer" {
		t.Errorf("peer token audience %q, want klambda-activator-peer", audience)
	}
	role := decode[rbacv1.Role](t, objs, "Role/klambda-activator-shards")
	if len(role.Rules) != 2 || role.Rules[0].Resources[0] != "leases" || role.Rules[1].Resources[0] != "endpointslices" {
		t.Errorf("shard Role rules %+v, want leases and endpointslices", role.Rules)
	}
	np := decode[networkingv1.NetworkPolicy](t, objs, "NetworkPolicy/klambda-activator")
	peerRule := false
	for _, r := range np.Spec.Ingress {
		if len(r.Ports) == 1 && r.Ports[0].Port.IntValue() == 8082 {
			peerRule = len(r.From) == 1 && r.From[0].PodSelector != nil && r.From[0].PodSelector.MatchLabels["app.kubernetes.io/component"] == "activator"
		}
	}
	if !peerRule {
		t.Errorf("the activator's NetworkPolicy does not admit the peer port from activator pods only: %+v", np.Spec.Ingress)
	}
}

// Several replicas without shards would each count concurrency and lease environments
// alone: refused, as are shard counts out of range.
func TestChartRefusesSeveralActivatorsWithoutShards(t *testing.T) {
	base := []string{"activator.enabled=true", "activator.tls.secretName=activator-tls", "activator.async.natsUrl=nats://n:4222", "nats.enabled=false"}
	for want, set := range map[string][]string{
		"activator.replicas > 1 needs activator.shards": {"activator.replicas=2", "activator.shards=0"},
		"activator.shards must be 0":                    {"activator.shards=300"},
	} {
		if _, errOut := render(t, append(base, set...)...); !strings.Contains(errOut, want) {
			t.Errorf("--set %v: helm said %q, want an error containing %q", set, errOut, want)
		}
	}
	// One replica without shards renders no ownership at all.
	for _, a := range activatorArgs(t, "activator.shards=0", "activator.replicas=1") {
		if strings.HasPrefix(a, "--shards") || strings.HasPrefix(a, "--peer") || strings.HasPrefix(a, "--steer") {
			t.Errorf("activator.shards=0 rendered %s", a)
		}
	}
}

// Connection steering: on by default with shards at 10 closes a second; the rate is given
// only when steering is on (the activator refuses it otherwise); bad rates are refused.
func TestChartConnectionSteering(t *testing.T) {
	for set, want := range map[string][]string{
		"":                                 {"--steer-connections=true", "--steer-rate=10"},
		"activator.steerRate=2.5":          {"--steer-connections=true", "--steer-rate=2.5"},
		"activator.steerConnections=false": {"--steer-connections=false"},
	} {
		args := []string{"--set", "activator.enabled=true", "--set", "activator.tls.secretName=activator-tls"}
		if set != "" {
			args = append(args, "--set-json", set) // a number as such (--set makes 2.5 a string)
		}
		objs, errOut := renderArgs(t, args...)
		if errOut != "" {
			t.Fatalf("%s: %s", set, errOut)
		}
		var got []string
		for _, a := range decode[appsv1.Deployment](t, objs, "Deployment/klambda-activator").Spec.Template.Spec.Containers[0].Args {
			if strings.HasPrefix(a, "--steer") {
				got = append(got, a)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("--set-json %q: %v, want %v", set, got, want)
		}
	}
	for _, bad := range []string{"activator.steerRate=0", "activator.steerRate=-1", "activator.steerRate=\"fast\"", "activator.steerConnections=\"maybe\""} {
		if _, errOut := renderArgs(t, "--set", "activator.enabled=true", "--set", "activator.tls.secretName=activator-tls", "--set-json", bad); errOut == "" {
			t.Errorf("--set-json %s: accepted", bad)
		}
	}
}

func TestChartRefusesAsyncReplicationItCannotHave(t *testing.T) {
	base := []string{"activator.enabled=true", "activator.tls.secretName=activator-tls", "nats.enabled=false"}
	for want, set := range map[string][]string{
		"activator.replicas > 1 needs a NATS cluster for the async queue": {"activator.replicas=2"},
		"streamReplicas > 1 needs a NATS JetStream cluster":               {"activator.replicas=1", "activator.async.streamReplicas=3"},
		"streamReplicas must be at least 3":                               {"activator.async.natsUrl=nats://n:4222", "activator.replicas=2", "activator.async.streamReplicas=1"},
		"must be 0 (chosen by the chart) or 1 to 5":                       {"activator.async.natsUrl=nats://n:4222", "activator.async.streamReplicas=7"},
	} {
		if _, errOut := render(t, append(base, set...)...); !strings.Contains(errOut, want) {
			t.Errorf("--set %v: helm said %q, want an error containing %q", set, errOut, want)
		}
	}
}
