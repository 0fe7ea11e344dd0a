package klambda_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// By default the activator runs two replicas, spread over nodes, on the chart's NATS
// JetStream cluster: three nats-server pods (a StatefulSet started in parallel, a headless
// Service published before readiness) routed to each other, whose rendered configuration
// nats-server itself accepts; the activator gets one client URL per server, the activator
// user's password from the generated Secret, and an R3 stream.
func TestChartNATSCluster(t *testing.T) {
	objs, errOut := renderArgs(t, all...)
	if errOut != "" {
		t.Fatal(errOut)
	}
	sts := decode[appsv1.StatefulSet](t, objs, "StatefulSet/klambda-nats")
	if *sts.Spec.Replicas != 3 || sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement || sts.Spec.ServiceName != "klambda-nats-headless" {
		t.Errorf("StatefulSet replicas %d, policy %s, service %s", *sts.Spec.Replicas, sts.Spec.PodManagementPolicy, sts.Spec.ServiceName)
	}
	if len(sts.Spec.VolumeClaimTemplates) != 1 || sts.Spec.VolumeClaimTemplates[0].Name != "data" {
		t.Errorf("volumeClaimTemplates %+v, want one named data (nats.persistence.enabled)", sts.Spec.VolumeClaimTemplates)
	}
	pod := sts.Spec.Template.Spec
	if tsc := pod.TopologySpreadConstraints; len(tsc) != 1 || tsc[0].TopologyKey != "kubernetes.io/hostname" ||
		tsc[0].LabelSelector.MatchLabels["app.kubernetes.io/component"] != "nats" {
		t.Errorf("nats topologySpreadConstraints %+v", tsc)
	}
	headless := decode[corev1.Service](t, objs, "Service/klambda-nats-headless")
	if headless.Spec.ClusterIP != "None" || !headless.Spec.PublishNotReadyAddresses {
		t.Errorf("headless Service clusterIP %q publishNotReadyAddresses %v", headless.Spec.ClusterIP, headless.Spec.PublishNotReadyAddresses)
	}

	auth := decode[corev1.Secret](t, objs, "Secret/klambda-nats-auth")
	password := string(auth.Data["activator-password"])
	conf := string(decode[corev1.Secret](t, objs, "Secret/klambda-nats-config").Data["nats.conf"])
	if len(password) < 32 || !strings.Contains(conf, `password: "`+password+`"`) {
		t.Errorf("the activator's password (%d characters) is not the configuration's:\n%s", len(password), conf)
	}
	file := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("POD_NAME", "klambda-nats-1")
	opts, err := server.ProcessConfigFile(file)
	if err != nil {
		t.Fatalf("nats-server refuses the rendered configuration: %v\n%s", err, conf)
	}
	if opts.ServerName != "klambda-nats-1" || !opts.JetStream || opts.JetStreamMaxStore != 1<<30 || opts.Cluster.Port != 6222 ||
		opts.Cluster.Username != "route" || len(opts.Routes) != 3 {
		t.Errorf("options: name %q, jetstream %v, max store %d, cluster port %d user %q, %d routes",
			opts.ServerName, opts.JetStream, opts.JetStreamMaxStore, opts.Cluster.Port, opts.Cluster.Username, len(opts.Routes))
	}
	for i, r := range opts.Routes {
		if want := "klambda-nats-" + string(rune('0'+i)) + ".klambda-nats-headless." + releaseNS + ".svc:6222"; r.Host != want {
			t.Errorf("route %d to %s, want %s", i, r.Host, want)
		}
	}
	if len(opts.Accounts) != 1 || opts.Accounts[0].Name != "KLAMBDA" || len(opts.Users) != 1 || opts.Users[0].Username != "klambda-activator" {
		t.Errorf("accounts %v, users %v: want the activator alone in account KLAMBDA", opts.Accounts, opts.Users)
	}

	d := decode[appsv1.Deployment](t, objs, "Deployment/klambda-activator")
	if *d.Spec.Replicas != 2 {
		t.Errorf("activator replicas %d, want 2", *d.Spec.Replicas)
	}
	if tsc := d.Spec.Template.Spec.TopologySpreadConstraints; len(tsc) != 1 || tsc[0].TopologyKey != "kubernetes.io/hostname" ||
		tsc[0].LabelSelector.MatchLabels["app.kubernetes.io/component"] != "activator" {
		t.Errorf("activator topologySpreadConstraints %+v", tsc)
	}
	args := strings.Join(d.Spec.Template.Spec.Containers[0].Args, " ")
	url := "nats://klambda-nats-0.klambda-nats-headless." + releaseNS + ".svc:4222,nats://klambda-nats-1.klambda-nats-headless." + releaseNS +
		".svc:4222,nats://klambda-nats-2.klambda-nats-headless." + releaseNS + ".svc:4222"
	for _, want := range []string{"--async-nats-url=" + url, "--async-stream-replicas=3", "--async-nats-user=klambda-activator",
		"--async-nats-password-file=/var/run/secrets/klambda/nats-cluster/activator-password",
		"--async-signing-key-file=/var/run/secrets/klambda/signing/signing-key"} {
		if !strings.Contains(args, want) {
			t.Errorf("activator args lack %s: %s", want, args)
		}
	}
	if strings.Contains(args, "--async-store-dir") {
		t.Errorf("the embedded queue's store with the NATS cluster: %s", args)
	}
	mounted := false
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Name == "nats-cluster" && v.Secret != nil && v.Secret.SecretName == "klambda-nats-auth" &&
			len(v.Secret.Items) == 1 && v.Secret.Items[0].Key == "activator-password" {
			mounted = true
		}
	}
	if !mounted {
		t.Error("the activator does not mount its NATS password (and only it) from klambda-nats-auth")
	}

	// Clients from activator pods only, routes from the servers only.
	np := decode[networkingv1.NetworkPolicy](t, objs, "NetworkPolicy/klambda-nats")
	from := map[int]string{}
	for _, r := range np.Spec.Ingress {
		if len(r.Ports) == 1 && len(r.From) == 1 && r.From[0].PodSelector != nil {
			from[r.Ports[0].Port.IntValue()] = r.From[0].PodSelector.MatchLabels["app.kubernetes.io/component"]
		}
	}
	if from[4222] != "activator" || from[6222] != "nats" || len(np.Spec.Ingress) != 2 {
		t.Errorf("nats NetworkPolicy ingress %+v", np.Spec.Ingress)
	}

	// emptyDir stores without persistence; five servers.
	objs, errOut = renderArgs(t, append(slices.Clone(all), "--set", "nats.persistence.enabled=false", "--set", "nats.replicas=5",
		"--set", "activator.async.streamReplicas=5")...)
	if errOut != "" {
		t.Fatal(errOut)
	}
	sts = decode[appsv1.StatefulSet](t, objs, "StatefulSet/klambda-nats")
	if *sts.Spec.Replicas != 5 || len(sts.Spec.VolumeClaimTemplates) != 0 {
		t.Errorf("replicas %d, %d claim templates", *sts.Spec.Replicas, len(sts.Spec.VolumeClaimTemplates))
	}
	if args := activatorArgs(t, "nats.replicas=5", "activator.async.streamReplicas=5"); !slices.Contains(args, "--async-stream-replicas=5") ||
		!strings.Contains(strings.Join(args, " "), "nats://klambda-nats-4.") {
		t.Errorf("five servers: %v", args)
	}

	// One replica with the embedded queue, or an external NATS: no NATS cluster.
	for _, set := range [][]string{{"activator.replicas=1", "nats.enabled=false"}, {"activator.async.natsUrl=nats://n:4222", "nats.enabled=false"}} {
		objs, errOut := render(t, append([]string{"activator.enabled=true", "activator.tls.plainHTTP=true"}, set...)...)
		if errOut != "" {
			t.Fatal(errOut)
		}
		for key := range objs {
			if strings.Contains(key, "klambda-nats") {
				t.Errorf("--set %v rendered %s", set, key)
			}
		}
	}
}

func TestChartRefusesNATSClusterMisconfiguration(t *testing.T) {
	base := []string{"activator.enabled=true", "activator.tls.plainHTTP=true"}
	for want, set := range map[string][]string{
		"activator.async.natsUrl names an external NATS: set nats.enabled=false":       {"activator.async.natsUrl=nats://n:4222"},
		"activator.async.enabled=false turns off; set nats.enabled=false":              {"activator.async.enabled=false"},
		"the chart's NATS cluster has nats.replicas=3 servers":                         {"activator.async.streamReplicas=5"},
		"/nats/replicas': value must be one of 3, 5":                                   {"nats.replicas=4"},
		"activator.async.nats.* applies to an external NATS only":                      {"activator.async.nats.user=x"},
		"activator.replicas > 1 needs a NATS cluster for the async queue: the chart's": {"nats.enabled=false"},
	} {
		if _, errOut := render(t, append(base, set...)...); !strings.Contains(errOut, want) {
			t.Errorf("--set %v: helm said %q, want an error containing %q", set, errOut, want)
		}
	}
}

// The chart's nats-server image is the version klambda is built and tested with (go.mod's,
// which hack/cluster/images.sh builds for the local cluster under the same tag).
func TestChartNATSImageIsGoModVersion(t *testing.T) {
	mod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	var version string
	for _, line := range strings.Split(string(mod), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "github.com/nats-io/nats-server/v2" {
			version = strings.TrimPrefix(f[1], "v")
		}
	}
	objs, errOut := renderArgs(t, all...)
	if errOut != "" {
		t.Fatal(errOut)
	}
	img := decode[appsv1.StatefulSet](t, objs, "StatefulSet/klambda-nats").Spec.Template.Spec.Containers[0].Image
	if version == "" || img != "nats:"+version {
		t.Errorf("nats image %s, go.mod's nats-server %q: set nats.image.tag in values.yaml to it", img, version)
	}
}

// Switching from the embedded queue to NATS with persistence.drainIntoNATS: the activator
// keeps the embedded store's claim mounted (the chart's, still rendered so that the
// upgrade does not delete it, or existingClaim) at its store directory, with a Recreate
// strategy for the ReadWriteOnce volume, beside the NATS URL; without it the store is not
// mounted. Refused where there is nothing to drain or the claim cannot be shared.
func TestChartDrainIntoNATSKeepsTheEmbeddedStore(t *testing.T) {
	base := []string{"activator.enabled=true", "activator.tls.plainHTTP=true", "activator.replicas=1"}
	data := func(d *appsv1.Deployment) corev1.Volume {
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Name == "data" {
				return v
			}
		}
		t.Fatal("no data volume")
		return corev1.Volume{}
	}
	for _, c := range []struct {
		set        []string
		claim      string
		renderedPV bool
	}{
		{[]string{"activator.async.persistence.drainIntoNATS=true"}, "klambda-activator-async", true},
		{[]string{"activator.async.persistence.drainIntoNATS=true", "activator.async.persistence.existingClaim=old-store"}, "old-store", false},
		{[]string{"activator.async.persistence.drainIntoNATS=true", "nats.enabled=false", "activator.async.natsUrl=nats://n:4222"}, "klambda-activator-async", true},
		{nil, "", false},
	} {
		objs, errOut := render(t, append(slices.Clone(base), c.set...)...)
		if errOut != "" {
			t.Fatalf("--set %v: %s", c.set, errOut)
		}
		d := decode[appsv1.Deployment](t, objs, "Deployment/klambda-activator")
		args := strings.Join(d.Spec.Template.Spec.Containers[0].Args, " ")
		v := data(d)
		_, pvc := objs["PersistentVolumeClaim/klambda-activator-async"]
		if c.claim == "" {
			if v.PersistentVolumeClaim != nil || strings.Contains(args, "--async-store-dir") || pvc {
				t.Errorf("--set %v: data volume %+v, store dir in %q, PVC rendered %v; want no store", c.set, v, args, pvc)
			}
			continue
		}
		if v.PersistentVolumeClaim == nil || v.PersistentVolumeClaim.ClaimName != c.claim {
			t.Errorf("--set %v: data volume %+v, want claim %s", c.set, v.VolumeSource, c.claim)
		}
		if !strings.Contains(args, "--async-store-dir=/var/lib/klambda/async") || !strings.Contains(args, "--async-nats-url=") {
			t.Errorf("--set %v: args %s, want the store dir and the NATS URL", c.set, args)
		}
		if d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
			t.Errorf("--set %v: strategy %s, want Recreate", c.set, d.Spec.Strategy.Type)
		}
		if pvc != c.renderedPV {
			t.Errorf("--set %v: PVC klambda-activator-async rendered %v, want %v", c.set, pvc, c.renderedPV)
		}
	}
	for want, set := range map[string][]string{
		"set activator.replicas=1 until":            {"activator.replicas=2", "activator.async.persistence.drainIntoNATS=true"},
		"with the embedded queue, leave it false":   {"nats.enabled=false", "activator.async.persistence.drainIntoNATS=true"},
		"persistence.enabled=false), which did not": {"activator.async.persistence.enabled=false", "activator.async.persistence.drainIntoNATS=true"},
	} {
		if _, errOut := render(t, append(slices.Clone(base), set...)...); !strings.Contains(errOut, want) {
			t.Errorf("--set %v: helm said %q, want an error containing %q", set, errOut, want)
		}
	}
}

// Without shards (0) one activator counts concurrency in its memory, so a rolling update's
// two overlapping pods would each count alone: the Deployment is Recreate. With shards the
// replicas hand their shards over, and a rolling update (the default strategy) is kept.
func TestChartActivatorWithoutShardsIsRecreated(t *testing.T) {
	for _, c := range []struct {
		set  []string
		want appsv1.DeploymentStrategyType
	}{
		{[]string{"activator.shards=0", "activator.replicas=1", "nats.enabled=false", "activator.async.persistence.enabled=false"}, appsv1.RecreateDeploymentStrategyType},
		{[]string{"activator.replicas=1", "nats.enabled=false", "activator.async.persistence.enabled=false"}, ""},
		{nil, ""},
	} {
		objs, errOut := render(t, append([]string{"activator.enabled=true", "activator.tls.plainHTTP=true"}, c.set...)...)
		if errOut != "" {
			t.Fatalf("--set %v: %s", c.set, errOut)
		}
		if got := decode[appsv1.Deployment](t, objs, "Deployment/klambda-activator").Spec.Strategy.Type; got != c.want {
			t.Errorf("--set %v: strategy %q, want %q", c.set, got, c.want)
		}
	}
}
