package klambda_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/klambda/klambda/controllers"
)

// all renders every component (the activator over plain HTTP) with extra helm arguments.
var all = []string{"--set", "activator.enabled=true", "--set", "activator.tls.plainHTTP=true", "--set", "eventsources.enabled=true"}

// values.schema.json refuses unknown keys and wrong types, and helm says which.
func TestChartSchemaRefusesBadValues(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--set", "replicas=2"}, "additional properties 'replicas' not allowed"},
		{[]string{"--set", "manager.replicaz=2"}, "at '/manager': additional properties 'replicaz' not allowed"},
		{[]string{"--set", "activator.async.workers=many"}, "at '/activator/async/workers': got string, want integer"},
		{[]string{"--set", "activator.config.concurrency.unreservedMinimum=100"}, "additional properties 'unreservedMinimum' not allowed"},
		{[]string{"--set", "config.shimImage=x"}, "at '/config': additional properties 'shimImage' not allowed"},
		{[]string{"--set", "config.codeFetch.timeout=3 minutes"}, "at '/config/codeFetch/timeout'"},
		{[]string{"--set", "config.imagePullPolicy=Sometimes"}, "at '/config/imagePullPolicy'"},
		{[]string{"--set-json", `config.embeddedShim={"provided.al2023":{"pth":"/klambda/runtime-shim"}}`}, "additional properties 'pth' not allowed"},
		{[]string{"--set", "manager.image.digest=sha256:abc"}, "at '/manager/image/digest'"},
		{[]string{"--set-json", `config.pools=[{"runtime":"provided.al2023","size":21}]`}, "at '/config/pools/0/size'"},
		{[]string{"--set-json", `config.pools=[{"runtime":"provided.al2023","size":1,"memorySize":64}]`}, "at '/config/pools/0/memorySize'"},
		{[]string{"--set-json", `config.pools=[{"runtime":"provided.al2023","size":1,"architecture":"x86"}]`}, "at '/config/pools/0/architecture'"},
		{[]string{"--set-json", `config.pools=[{"runtime":"provided.al2023","sizes":1}]`}, "additional properties 'sizes' not allowed"},
		{[]string{"--set", "eventsources.tokenExpirationSeconds=60"}, "at '/eventsources/tokenExpirationSeconds'"},
		{[]string{"--set", "manager.podDisruptionBudget.minAvailable=half"}, "at '/manager/podDisruptionBudget/minAvailable'"},
		{[]string{"--set", "activator.podLabels.team=1"}, "at '/activator/podLabels/team': got number, want string"},
		{[]string{"--set-json", `eventsources.topologySpreadConstraints=[{"maxSkew":1}]`}, "missing properties 'topologyKey', 'whenUnsatisfiable'"},
	} {
		_, errOut := renderArgs(t, tc.args...)
		if !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: helm said %q, want %q", tc.args, errOut, tc.want)
		}
	}
}

// The schema's config properties are the manager's configuration (controllers.Config),
// less shimImage, which the chart sets from runtimeShim.image.
func TestChartSchemaKnowsManagerConfig(t *testing.T) {
	b, err := os.ReadFile("values.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var schema struct {
		Properties map[string]struct {
			Properties map[string]any `json:"properties"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(b, &schema); err != nil {
		t.Fatal(err)
	}
	var inSchema, inConfig []string
	for k := range schema.Properties["config"].Properties {
		inSchema = append(inSchema, k)
	}
	ty := reflect.TypeFor[controllers.Config]()
	for i := range ty.NumField() {
		if name, _, _ := strings.Cut(ty.Field(i).Tag.Get("json"), ","); name != "" && name != "-" && name != "shimImage" {
			inConfig = append(inConfig, name)
		}
	}
	sort.Strings(inSchema)
	sort.Strings(inConfig)
	if !slices.Equal(inSchema, inConfig) {
		t.Errorf("values.schema.json config keys %v, controllers.Config %v", inSchema, inConfig)
	}
}

// The defaults render, every object carries the app.kubernetes.io labels, pods too, and
// images are by tag; one replica each gets no PodDisruptionBudget.
func TestChartDefaultsAndLabels(t *testing.T) {
	for _, args := range [][]string{nil, all} {
		objs, errOut := renderArgs(t, args...)
		if errOut != "" {
			t.Fatalf("%v: %s", args, errOut)
		}
		for key, doc := range objs {
			var o struct {
				Metadata metav1.ObjectMeta `json:"metadata"`
				Spec     struct {
					Template *corev1.PodTemplateSpec `json:"template"`
				} `json:"spec"`
			}
			if err := yaml.Unmarshal(doc, &o); err != nil {
				t.Fatal(err)
			}
			checkLabels(t, key, o.Metadata.Labels)
			if o.Spec.Template != nil {
				checkLabels(t, key+" pods", o.Spec.Template.Labels)
			}
			// The activator's two replicas and the NATS cluster's servers have budgets by
			// default; the other components run one replica.
			if strings.HasPrefix(key, "PodDisruptionBudget/") && key != "PodDisruptionBudget/klambda-activator" &&
				key != "PodDisruptionBudget/klambda-nats" {
				t.Errorf("%v: %s rendered for one replica", args, key)
			}
		}
	}
	objs, _ := renderArgs(t, all...)
	for _, c := range []string{"manager", "activator", "eventsources"} {
		d := decode[appsv1.Deployment](t, objs, "Deployment/klambda-"+c)
		if img := d.Spec.Template.Spec.Containers[0].Image; img != "ghcr.io/klambda/"+c+":0.1.0" {
			t.Errorf("%s image %s", c, img)
		}
	}
	if img := managerConfig(t, objs).ShimImage; img != "ghcr.io/klambda/runtime-shim:0.1.0" {
		t.Errorf("shim image %s", img)
	}
	if d := decode[appsv1.Deployment](t, objs, "Deployment/klambda-activator"); *d.Spec.Replicas != 2 {
		t.Errorf("activator replicas %d by default, want 2", *d.Spec.Replicas)
	}
	if img := decode[appsv1.StatefulSet](t, objs, "StatefulSet/klambda-nats").Spec.Template.Spec.Containers[0].Image; img != "nats:2.15.2" {
		t.Errorf("nats image %s", img)
	}
}

func checkLabels(t *testing.T, what string, l map[string]string) {
	t.Helper()
	want := map[string]string{"app.kubernetes.io/name": "klambda", "app.kubernetes.io/instance": "klambda",
		"app.kubernetes.io/managed-by": "Helm", "app.kubernetes.io/version": "0.1.0"}
	for k, v := range want {
		if l[k] != v {
			t.Errorf("%s: label %s=%q, want %q (labels %v)", what, k, l[k], v, l)
		}
	}
}

// priorityClassName, topologySpreadConstraints, podLabels, podAnnotations and image
// digests reach each component's pods.
func TestChartPodValues(t *testing.T) {
	const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	args := slices.Clone(all)
	for _, c := range []string{"manager", "activator", "eventsources"} {
		args = append(args, "--set", c+".priorityClassName=klambda-critical", "--set", c+".podLabels.team=platform",
			"--set", c+".podAnnotations.note=hi", "--set", c+".image.digest="+digest,
			"--set-json", c+`.topologySpreadConstraints=[{"maxSkew":1,"topologyKey":"topology.kubernetes.io/zone","whenUnsatisfiable":"ScheduleAnyway"},`+
				`{"maxSkew":2,"topologyKey":"kubernetes.io/hostname","whenUnsatisfiable":"DoNotSchedule","labelSelector":{"matchLabels":{"x":"y"}}}]`)
	}
	objs, errOut := renderArgs(t, append(args, "--set", "runtimeShim.image.digest="+digest)...)
	if errOut != "" {
		t.Fatal(errOut)
	}
	for _, c := range []string{"manager", "activator", "eventsources"} {
		d := decode[appsv1.Deployment](t, objs, "Deployment/klambda-"+c)
		pod := d.Spec.Template
		if pod.Spec.PriorityClassName != "klambda-critical" || pod.Labels["team"] != "platform" || pod.Annotations["note"] != "hi" {
			t.Errorf("%s: priorityClassName %q, labels %v, annotations %v", c, pod.Spec.PriorityClassName, pod.Labels, pod.Annotations)
		}
		if _, ok := d.Spec.Selector.MatchLabels["team"]; ok {
			t.Errorf("%s: podLabels in the selector %v", c, d.Spec.Selector.MatchLabels)
		}
		if img := pod.Spec.Containers[0].Image; img != "ghcr.io/klambda/"+c+"@"+digest {
			t.Errorf("%s image %s", c, img)
		}
		tsc := pod.Spec.TopologySpreadConstraints
		if len(tsc) != 2 || tsc[0].TopologyKey != "topology.kubernetes.io/zone" ||
			!reflect.DeepEqual(tsc[0].LabelSelector, &metav1.LabelSelector{MatchLabels: d.Spec.Selector.MatchLabels}) ||
			!reflect.DeepEqual(tsc[1].LabelSelector.MatchLabels, map[string]string{"x": "y"}) || tsc[1].MaxSkew != 2 {
			t.Errorf("%s topologySpreadConstraints %+v", c, tsc)
		}
	}
	if img := managerConfig(t, objs).ShimImage; img != "ghcr.io/klambda/runtime-shim@"+digest {
		t.Errorf("shim image %s", img)
	}
	if _, errOut := renderArgs(t, "--set", "manager.podLabels.app\\.kubernetes\\.io/component=x"); !strings.Contains(errOut,
		"manager.podLabels.app.kubernetes.io/component: the chart sets this label") {
		t.Errorf("a podLabel replacing a selector label: helm said %q", errOut)
	}
}

// A PodDisruptionBudget per component with more than one replica, selecting its pods.
func TestChartPodDisruptionBudget(t *testing.T) {
	objs, errOut := renderArgs(t, append(slices.Clone(all), "--set", "eventsources.replicas=3", "--set", "manager.replicas=2",
		"--set", "manager.podDisruptionBudget.minAvailable=50%")...)
	if errOut != "" {
		t.Fatal(errOut)
	}
	for c, want := range map[string]policyv1.PodDisruptionBudgetSpec{
		"eventsources": {MaxUnavailable: ptr(intstr.FromInt32(1))},
		"manager":      {MinAvailable: ptr(intstr.FromString("50%"))},
	} {
		pdb := decode[policyv1.PodDisruptionBudget](t, objs, "PodDisruptionBudget/klambda-"+c)
		pods := decode[appsv1.Deployment](t, objs, "Deployment/klambda-"+c).Spec.Template.Labels
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil || !sel.Matches(labels.Set(pods)) || !reflect.DeepEqual(pdb.Spec.MinAvailable, want.MinAvailable) ||
			!reflect.DeepEqual(pdb.Spec.MaxUnavailable, want.MaxUnavailable) {
			t.Errorf("%s: budget %+v (selector error %v), pods %v", c, pdb.Spec, err, pods)
		}
		checkLabels(t, "PodDisruptionBudget/klambda-"+c, pdb.Labels)
	}
	// The chart's default activator replicas (2) and NATS servers (3) have budgets of one
	// pod unavailable at a time.
	for key, pods := range map[string]map[string]string{
		"activator": decode[appsv1.Deployment](t, objs, "Deployment/klambda-activator").Spec.Template.Labels,
		"nats":      decode[appsv1.StatefulSet](t, objs, "StatefulSet/klambda-nats").Spec.Template.Labels,
	} {
		pdb := decode[policyv1.PodDisruptionBudget](t, objs, "PodDisruptionBudget/klambda-"+key)
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil || !sel.Matches(labels.Set(pods)) || !reflect.DeepEqual(pdb.Spec.MaxUnavailable, ptr(intstr.FromInt32(1))) {
			t.Errorf("%s: budget %+v (selector error %v), pods %v", key, pdb.Spec, err, pods)
		}
	}
	objs, _ = renderArgs(t, append(slices.Clone(all), "--set", "activator.replicas=1", "--set", "nats.enabled=false")...)
	if _, ok := objs["PodDisruptionBudget/klambda-activator"]; ok {
		t.Error("a budget for the single activator")
	}
	objs, _ = renderArgs(t, "--set", "manager.replicas=2", "--set", "manager.podDisruptionBudget.enabled=false")
	if _, ok := objs["PodDisruptionBudget/klambda-manager"]; ok {
		t.Error("podDisruptionBudget.enabled=false rendered one")
	}
	if _, errOut := renderArgs(t, "--set", "manager.podDisruptionBudget.maxUnavailable=1"); !strings.Contains(errOut,
		"manager.podDisruptionBudget.minAvailable/maxUnavailable: a budget is made with replicas > 1 only") {
		t.Errorf("a budget for one manager: helm said %q", errOut)
	}
	for _, tc := range []struct{ set, want string }{
		{"eventsources.podDisruptionBudget.minAvailable=3", "eventsources.podDisruptionBudget.minAvailable 3 with 3 replicas would block every eviction"},
		{"eventsources.podDisruptionBudget.maxUnavailable=1", "set minAvailable or maxUnavailable, not both"},
	} {
		args := append(slices.Clone(all), "--set", "eventsources.replicas=3", "--set", "eventsources.podDisruptionBudget.minAvailable=1", "--set", tc.set)
		if _, errOut := renderArgs(t, args...); !strings.Contains(errOut, tc.want) {
			t.Errorf("%s: helm said %q, want %q", tc.set, errOut, tc.want)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// The defaults alone make an install that invokes (issue #16): the activator (over TLS,
// with authorization) and the pollers run, and each runtime klambda ships an image for gets
// the one-container shape with that image, tagged with the chart's appVersion.
func TestChartDefaultsInvoke(t *testing.T) {
	objs, errOut := renderArgs(t)
	if errOut != "" {
		t.Fatal(errOut)
	}
	for _, c := range []string{"manager", "activator", "eventsources"} {
		decode[appsv1.Deployment](t, objs, "Deployment/klambda-"+c)
	}
	a := decode[appsv1.Deployment](t, objs, "Deployment/klambda-activator")
	for _, arg := range a.Spec.Template.Spec.Containers[0].Args {
		if arg == "--plain-http" || arg == "--auth=false" {
			t.Errorf("activator by default: %s", arg)
		}
	}
	cfg := managerConfig(t, objs)
	shipped := []string{"provided.al2023", "provided.al2", "nodejs20.x", "nodejs22.x", "python3.12", "python3.13"}
	if len(cfg.EmbeddedShim) != len(shipped) {
		t.Errorf("embeddedShim %v, want exactly %v", cfg.EmbeddedShim, shipped)
	}
	for _, rt := range shipped {
		if _, ok := cfg.EmbeddedShim[rt]; !ok {
			t.Errorf("embeddedShim lacks %s", rt)
		}
		img := cfg.RuntimeImages[rt]
		if !strings.HasPrefix(img, "ghcr.io/klambda/runtime-") || !strings.HasSuffix(img, "-0.1.0") {
			t.Errorf("%s image %q: want klambda's runtime image tagged with appVersion 0.1.0", rt, img)
		}
	}
	for rt, img := range cfg.RuntimeImages {
		if _, ok := cfg.EmbeddedShim[rt]; !ok && strings.HasPrefix(img, "ghcr.io/klambda/") {
			t.Errorf("%s runs klambda's image %s without embeddedShim", rt, img)
		}
	}
	// Pollers without an activator to call are refused.
	if _, errOut := renderArgs(t, "--set", "activator.enabled=false"); !strings.Contains(errOut, "eventsources.enabled") {
		t.Errorf("pollers without an activator: %q", errOut)
	}
}

// config.pools: none by default; set, it reaches the manager's configuration, which takes
// it (LoadConfig, with its defaults filled in); a runtime without the shim is the
// manager's refusal.
func TestChartPools(t *testing.T) {
	objs, errOut := renderArgs(t)
	if errOut != "" {
		t.Fatal(errOut)
	}
	if p := managerConfig(t, objs).Pools; len(p) != 0 {
		t.Errorf("pools by default: %+v", p)
	}
	objs, errOut = renderArgs(t, "--set-json", `config.pools=[{"runtime":"provided.al2023","size":2},{"runtime":"nodejs22.x","architecture":"arm64","memorySize":512,"size":1}]`)
	if errOut != "" {
		t.Fatal(errOut)
	}
	cm := decode[corev1.ConfigMap](t, objs, "ConfigMap/klambda-config")
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(cm.Data["config.yaml"]), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := controllers.LoadConfig(path)
	if err != nil {
		t.Fatalf("the manager refuses the chart's pools: %v", err)
	}
	want := []controllers.PoolConfig{{Runtime: "provided.al2023", Architecture: "x86_64", MemorySize: 128, Size: 2},
		{Runtime: "nodejs22.x", Architecture: "arm64", MemorySize: 512, Size: 1}}
	if !reflect.DeepEqual(cfg.Pools, want) {
		t.Errorf("pools %+v, want %+v", cfg.Pools, want)
	}
	objs, errOut = renderArgs(t, "--set-json", `config.pools=[{"runtime":"java21","size":1}]`)
	if errOut != "" {
		t.Fatal(errOut)
	}
	cm = decode[corev1.ConfigMap](t, objs, "ConfigMap/klambda-config")
	if _, err := controllers.ParseConfig([]byte(cm.Data["config.yaml"])); err == nil || !strings.Contains(err.Error(), "not in embeddedShim") {
		t.Errorf("a pool of a runtime without the shim: %v", err)
	}
}

// config.imageFunctions as hack/cluster/install.sh sets it reaches the manager, which
// accepts it; the schema refuses an unknown architecture before the manager sees it.
func TestChartPassesImageFunctions(t *testing.T) {
	objs, errOut := renderArgs(t, "--set-json", `config.imageFunctions={"repository":"10.0.0.1:15000/klambda/derived","shims":{"x86_64":"/klambda/shims/x86_64/runtime-shim"}}`)
	if errOut != "" {
		t.Fatal(errOut)
	}
	c := managerConfig(t, objs).ImageFunctions
	if c.Repository != "10.0.0.1:15000/klambda/derived" || c.Shims["x86_64"] != "/klambda/shims/x86_64/runtime-shim" {
		t.Errorf("imageFunctions %+v", c)
	}
	if _, errOut := renderArgs(t, "--set-json", `config.imageFunctions={"repository":"r.test/d","shims":{"amd64":"/s"}}`); !strings.Contains(errOut, "imageFunctions") {
		t.Errorf("an unknown architecture: %q", errOut)
	}
}

// config.tolerations reaches the manager, which puts them on the pods of that
// architecture; the schema refuses an unknown architecture or operator before it.
func TestChartPassesTolerations(t *testing.T) {
	objs, errOut := renderArgs(t, "--set-json", `config.tolerations={"arm64":[{"key":"kubernetes.io/arch","operator":"Equal","value":"arm64","effect":"NoSchedule"}]}`)
	if errOut != "" {
		t.Fatal(errOut)
	}
	got := managerConfig(t, objs).Tolerations
	if len(got) != 1 || len(got["arm64"]) != 1 || got["arm64"][0].Key != "kubernetes.io/arch" || got["arm64"][0].Value != "arm64" || got["arm64"][0].Effect != "NoSchedule" {
		t.Errorf("tolerations %+v", got)
	}
	for _, bad := range []string{`config.tolerations={"amd64":[]}`, `config.tolerations={"arm64":[{"key":"a","operator":"In"}]}`} {
		if _, errOut := renderArgs(t, "--set-json", bad); !strings.Contains(errOut, "tolerations") {
			t.Errorf("%s: %q", bad, errOut)
		}
	}
}
