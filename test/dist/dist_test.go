// Package dist applies dist/install.yaml, and a rendering of the chart with every
// component and its scheduling values, to a real kube-apiserver (server-side apply with
// strict field validation, as `kubectl apply --server-side` does): every object is
// accepted as written and the CRDs become Established. KUBEBUILDER_ASSETS must be set
// (make test).
package dist

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/klambda/klambda/test/apiserver"
)

var srv *apiserver.Server

func TestMain(m *testing.M) {
	var err error
	if srv, err = apiserver.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	_ = srv.Stop()
	os.Exit(code)
}

// objects are the YAML documents of a manifest stream.
func objects(t *testing.T, manifest []byte) []*unstructured.Unstructured {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(manifest)))
	var out []*unstructured.Unstructured
	for {
		doc, err := r.Read()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(doc, &u.Object); err != nil {
			t.Fatalf("%v\n%s", err, doc)
		}
		if len(u.Object) > 0 {
			out = append(out, u)
		}
	}
}

// apply server-side applies each object with strict field validation.
func apply(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := client.WithFieldValidation(srv.Client, metav1.FieldValidationStrict)
	for _, u := range objs {
		if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner("kubectl"), client.ForceOwnership); err != nil {
			t.Errorf("apply %s %s/%s: %v", u.GetKind(), u.GetNamespace(), u.GetName(), err)
		}
	}
}

func read(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(apiserver.RepoRoot(), "dist", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestInstallManifestApplies(t *testing.T) {
	objs := objects(t, read(t, "install.yaml"))
	kinds := map[string]int{}
	for _, u := range objs {
		kinds[u.GetKind()]++
		if u.GetLabels()["app.kubernetes.io/name"] != "klambda" {
			t.Errorf("%s %s: labels %v lack app.kubernetes.io/name=klambda", u.GetKind(), u.GetName(), u.GetLabels())
		}
		if ns := u.GetNamespace(); ns != "" && ns != "klambda-system" {
			t.Errorf("%s %s in namespace %s", u.GetKind(), u.GetName(), ns)
		}
	}
	if objs[0].GetKind() != "Namespace" || objs[0].GetName() != "klambda-system" || kinds["CustomResourceDefinition"] != 5 || kinds["Deployment"] < 1 {
		t.Fatalf("dist/install.yaml holds %v, first %s %s; want Namespace klambda-system first, the 5 CRDs, the manager", kinds, objs[0].GetKind(), objs[0].GetName())
	}
	apply(t, objs)
	ctx := context.Background()
	for _, u := range objs {
		if u.GetKind() != "CustomResourceDefinition" {
			continue
		}
		var crd apiextensionsv1.CustomResourceDefinition
		if err := srv.Client.Get(ctx, client.ObjectKey{Name: u.GetName()}, &crd); err != nil {
			t.Fatal(err)
		}
		established := false
		for _, c := range crd.Status.Conditions {
			established = established || (c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue)
		}
		if !established {
			t.Errorf("CRD %s not established: %+v", crd.Name, crd.Status.Conditions)
		}
	}
}

// dist/crds.yaml is the CRDs of dist/install.yaml, alone.
func TestCRDManifest(t *testing.T) {
	var want []string
	for _, u := range objects(t, read(t, "install.yaml")) {
		if u.GetKind() == "CustomResourceDefinition" {
			want = append(want, u.GetName())
		}
	}
	var got []string
	for _, u := range objects(t, read(t, "crds.yaml")) {
		got = append(got, u.GetKind()+"/"+u.GetName())
	}
	if strings.Join(got, " ") != "CustomResourceDefinition/"+strings.Join(want, " CustomResourceDefinition/") {
		t.Errorf("dist/crds.yaml holds %v, want the CRDs %v", got, want)
	}
}

// The chart with every component, several replicas and its scheduling values renders
// objects the API server accepts as written (PodDisruptionBudgets, spread constraints).
func TestChartWithEveryValueApplies(t *testing.T) {
	helm := os.Getenv("HELM")
	if helm == "" {
		home, _ := os.UserHomeDir()
		helm = filepath.Join(home, ".cache", "klambda", "bin", "helm-v3.22.0")
	}
	if _, err := os.Stat(helm); err != nil {
		t.Skip("no helm binary (set HELM, or run make chart-check once)")
	}
	args := []string{"template", "klambda", filepath.Join(apiserver.RepoRoot(), "charts", "klambda"), "--namespace", "klambda-system",
		"--kube-version", "1.37.2", "--set", "activator.enabled=true", "--set", "activator.tls.plainHTTP=true",
		"--set", "eventsources.enabled=true", "--set", "eventsources.replicas=3", "--set", "manager.replicas=2",
		"--set", "manager.podDisruptionBudget.minAvailable=1", "--set", "eventsources.podDisruptionBudget.maxUnavailable=34%"}
	for _, c := range []string{"manager", "activator", "eventsources"} {
		args = append(args, "--set", c+".priorityClassName=system-cluster-critical", "--set", c+".podLabels.team=platform",
			"--set", c+".image.digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
			"--set-json", c+`.topologySpreadConstraints=[{"maxSkew":1,"topologyKey":"topology.kubernetes.io/zone","whenUnsatisfiable":"ScheduleAnyway"}]`)
	}
	out, err := exec.Command(helm, args...).Output()
	if err != nil {
		t.Fatalf("helm template: %v", err)
	}
	objs := objects(t, out)
	var pdbs []string
	for _, u := range objs {
		if u.GetKind() == "PodDisruptionBudget" {
			pdbs = append(pdbs, u.GetName())
		}
	}
	// The manager's and the pollers' (replicas > 1 here), the activator's (2 replicas by
	// default) and the NATS cluster's (on by default with them).
	if len(pdbs) != 4 {
		t.Errorf("PodDisruptionBudgets rendered: %v, want the manager's, the pollers', the activator's and the NATS cluster's", pdbs)
	}
	apply(t, append(objects(t, read(t, "install.yaml"))[:1], objs...))
}
