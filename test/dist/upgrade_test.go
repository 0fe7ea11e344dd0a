package dist

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// kubectl is the real kubectl: $KUBECTL, the one built next to the envtest kube-apiserver
// (hack/kube-binaries.sh), or the one on PATH.
func kubectl(t *testing.T) string {
	t.Helper()
	if k := os.Getenv("KUBECTL"); k != "" {
		return k
	}
	if api, err := filepath.EvalSymlinks(filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kube-apiserver")); err == nil {
		if k := filepath.Join(filepath.Dir(api), "kubectl"); fileExists(k) {
			return k
		}
	}
	k, err := exec.LookPath("kubectl")
	if err != nil {
		t.Fatal("no kubectl: set KUBECTL, or build it next to kube-apiserver (hack/kube-binaries.sh kubectl)")
	}
	return k
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// upgradeCluster is a kube-apiserver without klambda's CRDs, and kubectl pointed at it.
type upgradeCluster struct {
	c          client.Client
	kubectl    string
	kubeconfig string
}

func startBareAPIServer(t *testing.T) *upgradeCluster {
	t.Helper()
	env := &envtest.Environment{}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting kube-apiserver: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	sch := runtime.NewScheme()
	if err := apiextensionsv1.AddToScheme(sch); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: sch})
	if err != nil {
		t.Fatal(err)
	}
	user, err := env.AddUser(envtest.User{Name: "upgrader", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	return &upgradeCluster{c: c, kubectl: kubectl(t), kubeconfig: path}
}

// run runs kubectl with stdin and returns its combined output.
func (u *upgradeCluster) run(stdin []byte, args ...string) (string, error) {
	cmd := exec.Command(u.kubectl, append([]string{"--kubeconfig", u.kubeconfig}, args...)...)
	if stdin != nil {
		cmd.Stdin = strings.NewReader(string(stdin))
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (u *upgradeCluster) mustRun(t *testing.T, stdin []byte, args ...string) string {
	t.Helper()
	out, err := u.run(stdin, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// waitEstablished waits until every CRD of objs serves.
func (u *upgradeCluster) waitEstablished(t *testing.T, crds []*unstructured.Unstructured) {
	t.Helper()
	args := []string{"wait", "--for=condition=Established", "--timeout=120s"}
	for _, o := range crds {
		args = append(args, "crd/"+o.GetName())
	}
	u.mustRun(t, nil, args...)
}

func previous(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "previous", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCRDUpgradeFromPreviousRelease installs the previous release's CRDs (testdata/previous:
// dist/crds.yaml and config/samples at 4085e3b, the last main before function URLs, the
// code store and the tumbling-window refusal changed the schemas) on a real kube-apiserver,
// creates the previous release's sample objects, then upgrades the CRDs the way README
// documents, for each way the previous CRDs got there:
//   - `helm install` (Helm 3 creates crds/ itself, field manager "helm"), then
//     `kubectl apply --server-side --force-conflicts -f crds.yaml` (without
//     --force-conflicts kubectl refuses: .spec.versions belongs to "helm"; checked);
//   - `kubectl apply --server-side`, then the same command;
//   - `kubectl apply -f` (client-side, as `kubectl apply -f install.yaml`), then
//     `kubectl apply -f` of the new CRDs.
//
// After the upgrade every object is still served with its spec unchanged, can still be
// updated (the tumbling window the new schema refuses is ratcheted on an object that
// already had it), and the new schema is the one in force: authType AWS_IAM accepted
// (refused before), status.codeStoreRef kept, a new mapping with a tumbling window refused
// with the CRD's message.
func TestCRDUpgradeFromPreviousRelease(t *testing.T) {
	oldCRDs := objects(t, previous(t, "crds.yaml"))
	newCRDManifest := read(t, "crds.yaml")
	newCRDs := objects(t, newCRDManifest)
	if len(oldCRDs) != 5 || len(newCRDs) != 5 {
		t.Fatalf("%d previous and %d current CRDs, want 5 each", len(oldCRDs), len(newCRDs))
	}
	serverSide := []string{"apply", "--server-side", "--force-conflicts", "-f", "-"}
	for _, tc := range []struct {
		install string
		upgrade []string
	}{
		{"helm install", serverSide},
		{"kubectl apply --server-side", serverSide},
		{"kubectl apply", []string{"apply", "-f", "-"}},
	} {
		how := tc.install
		t.Run(strings.ReplaceAll(how, " ", "_"), func(t *testing.T) {
			u := startBareAPIServer(t)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			switch how {
			case "helm install":
				for _, o := range oldCRDs {
					if err := u.c.Create(ctx, o.DeepCopy(), client.FieldOwner("helm")); err != nil {
						t.Fatalf("creating previous CRD %s: %v", o.GetName(), err)
					}
				}
			case "kubectl apply --server-side":
				u.mustRun(t, previous(t, "crds.yaml"), "apply", "--server-side", "-f", "-")
			default:
				u.mustRun(t, previous(t, "crds.yaml"), "apply", "-f", "-")
			}
			u.waitEstablished(t, oldCRDs)
			samples := objects(t, previous(t, "samples.yaml"))
			u.mustRun(t, previous(t, "samples.yaml"), "apply", "--server-side", "-n", "default", "-f", "-")
			before := map[string]any{}
			for _, s := range samples {
				before[s.GetKind()+"/"+s.GetName()] = u.get(t, ctx, s)["spec"]
			}
			// The previous schema refuses AWS_IAM.
			iam := functionWithAuthType("iam-fn", "AWS_IAM")
			if out, err := u.run(iam, "create", "--dry-run=server", "-n", "default", "-f", "-"); err == nil || !strings.Contains(out, "AWS_IAM") {
				t.Fatalf("previous CRDs accepted authType AWS_IAM (err %v): %s", err, out)
			}

			// The upgrade, as README documents it.
			if how == "helm install" {
				if out, err := u.run(newCRDManifest, "apply", "--server-side", "-f", "-"); err == nil || !strings.Contains(out, `conflict with "helm"`) {
					t.Errorf("kubectl apply --server-side without --force-conflicts over Helm's CRDs: %v\n%s", err, out)
				}
			}
			u.mustRun(t, newCRDManifest, tc.upgrade...)
			u.waitEstablished(t, newCRDs)
			for _, n := range newCRDs {
				var crd apiextensionsv1.CustomResourceDefinition
				if err := u.c.Get(ctx, client.ObjectKey{Name: n.GetName()}, &crd); err != nil {
					t.Fatal(err)
				}
				want, _, _ := unstructured.NestedSlice(n.Object, "spec", "versions")
				gotU, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&crd)
				if err != nil {
					t.Fatal(err)
				}
				got, _, _ := unstructured.NestedSlice(gotU, "spec", "versions")
				if !reflect.DeepEqual(schemaOf(want), schemaOf(got)) {
					t.Errorf("CRD %s: the served schema is not dist/crds.yaml's after the upgrade", n.GetName())
				}
			}

			// Every previous object is still served, spec unchanged.
			for _, s := range samples {
				key := s.GetKind() + "/" + s.GetName()
				if got := u.get(t, ctx, s)["spec"]; !reflect.DeepEqual(got, before[key]) {
					t.Errorf("%s: spec changed by the upgrade:\nbefore %v\nafter  %v", key, before[key], got)
				}
			}
			if out := u.mustRun(t, nil, "get", "-n", "default", "-o", "name",
				"functions.lambda.klambda.dev,versions.lambda.klambda.dev,aliases.lambda.klambda.dev,layerversions.lambda.klambda.dev,eventsourcemappings.lambda.klambda.dev"); strings.Count(out, "\n") != len(samples) {
				t.Errorf("kubectl get lists %d objects, want the %d samples:\n%s", strings.Count(out, "\n"), len(samples), out)
			}
			// ... and can still be changed, the mapping with a tumbling window included.
			u.mustRun(t, previous(t, "samples.yaml"), "label", "-n", "default", "-f", "-", "upgraded=yes")
			u.mustRun(t, nil, "patch", "-n", "default", "eventsourcemapping.lambda.klambda.dev/events-from-nats",
				"--type=merge", "-p", `{"spec":{"batchSize":20}}`)

			// The new schema is in force.
			u.mustRun(t, iam, "create", "-n", "default", "-f", "-")
			tw := []byte(`apiVersion: lambda.klambda.dev/v1alpha1
kind: EventSourceMapping
metadata: {name: new-window}
spec:
  functionName: my-function
  natsJetStream: {servers: ["nats://nats:4222"], stream: EVENTS, subject: "events.>"}
  startingPosition: LATEST
  tumblingWindowInSeconds: 60
`)
			if out, err := u.run(tw, "create", "-n", "default", "-f", "-"); err == nil || !strings.Contains(out, "tumblingWindowInSeconds is not supported") {
				t.Errorf("a new mapping with a tumbling window (err %v): %s", err, out)
			}
			fn := &unstructured.Unstructured{}
			fn.SetAPIVersion("lambda.klambda.dev/v1alpha1")
			fn.SetKind("Function")
			fn.SetNamespace("default")
			fn.SetName("my-function")
			ref := "registry.example/klambda/code@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
			if err := u.c.Status().Patch(ctx, fn, client.RawPatch(types.MergePatchType, []byte(`{"status":{"codeStoreRef":"`+ref+`"}}`))); err != nil {
				t.Fatalf("status.codeStoreRef: %v", err)
			}
			if got, _, _ := unstructured.NestedString(u.get(t, ctx, fn), "status", "codeStoreRef"); got != ref {
				t.Errorf("status.codeStoreRef after the upgrade = %q, want %q (pruned: old schema still served?)", got, ref)
			}
		})
	}
}

func (u *upgradeCluster) get(t *testing.T, ctx context.Context, o *unstructured.Unstructured) map[string]any {
	t.Helper()
	got := &unstructured.Unstructured{}
	got.SetGroupVersionKind(o.GroupVersionKind())
	ns := o.GetNamespace()
	if ns == "" {
		ns = "default"
	}
	if err := u.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: o.GetName()}, got); err != nil {
		t.Fatalf("%s %s after the upgrade: %v", o.GetKind(), o.GetName(), err)
	}
	return got.Object
}

// schemaOf keeps each version's name and openAPIV3Schema, as JSON values (numbers
// float64 whichever way they were read).
func schemaOf(versions []any) any {
	var out []any
	for _, v := range versions {
		m, _ := v.(map[string]any)
		s, _, _ := unstructured.NestedFieldNoCopy(m, "schema", "openAPIV3Schema")
		out = append(out, []any{m["name"], s})
	}
	b, _ := json.Marshal(out)
	var norm any
	_ = json.Unmarshal(b, &norm)
	return norm
}

func functionWithAuthType(name, authType string) []byte {
	return []byte(`apiVersion: lambda.klambda.dev/v1alpha1
kind: Function
metadata: {name: ` + name + `}
spec:
  runtime: provided.al2023
  handler: bootstrap
  code: {configMapRef: {name: code, key: function.zip}}
  functionUrlConfig: {authType: ` + authType + `}
`)
}
