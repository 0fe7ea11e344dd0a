package controllers

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/uuid"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	esmcontroller "github.com/klambda/klambda/eventsources/controller"
	"github.com/klambda/klambda/eventsources/invokeclient/invoketest"
	"github.com/klambda/klambda/test/apiserver"
)

// TestSamples applies config/samples as their comments say, with the objects those comments
// tell the user to create first, on a real kube-apiserver with the controllers (and the
// EventSourceMapping pollers' reconciler) running, and checks that each sample does what it
// is there to show. Pods do not run here: a Function is Active once its code is resolved and
// its Deployment applied, and the test plays the deployment controller where a state needs
// running environments (provisioned concurrency).
func TestSamples(t *testing.T) {
	ns := newNamespace(t)
	runEventSourceMappings(t, ns)

	// What the samples' comments say to create first.
	createBinaryConfigMap(t, ns, "my-function-code", "function.zip",
		makeZip(t, zf{name: "index.mjs", body: "export const handler = async () => 'hello';\n"}))
	createBinaryConfigMap(t, ns, "my-layer-1", "layer.zip",
		makeZip(t, zf{name: "nodejs/node_modules/greeting/index.js", body: "module.exports = 'hello';\n"}))
	createSecret(t, ns, "my-function-secrets", map[string]string{"token": "t0ken"})
	createSecret(t, ns, "minio-credentials", map[string]string{"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "secret"})
	createSecret(t, ns, "kafka-credentials", map[string]string{"username": "u", "password": "p"})
	createSecret(t, ns, "sqs-credentials", map[string]string{"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "secret"})
	createSecret(t, ns, "rabbitmq-credentials", map[string]string{"username": "u", "password": "p"})

	// Step 1: everything kustomization.yaml lists, at once (kubectl apply -k).
	var kustomization struct{ Resources []string }
	if err := yaml.Unmarshal(readSample(t, "kustomization.yaml"), &kustomization); err != nil {
		t.Fatal(err)
	}
	for _, file := range kustomization.Resources {
		applySample(t, ns, file)
	}

	lv := waitLayer(t, ns, "my-layer-1", layerReady)
	if lv.Status.LayerName != "my-layer" || lv.Status.Version != 1 {
		t.Errorf("my-layer-1: published as %s version %d, want my-layer version 1", lv.Status.LayerName, lv.Status.Version)
	}
	fn := waitFunction(t, ns, "my-function", functionServes)
	wantURL := "https://" + contract.FunctionURLID(string(fn.UID), ns, "my-function", "") + ".lambda-url.lambda.test/"
	if fn.Status.FunctionURL != wantURL {
		t.Errorf("my-function: status.functionUrl %q, want %q", fn.Status.FunctionURL, wantURL)
	}
	if len(fn.Status.Layers) != 1 || fn.Status.Layers[0].Name != "my-layer-1" {
		t.Errorf("my-function: layers %+v, want my-layer-1", fn.Status.Layers)
	}
	waitFunction(t, ns, "my-image-function", functionServes)

	v1 := waitVersion(t, ns, "my-function-v1", published)
	if v1.Status.Version != "1" || publishedReason(v1) != contract.ReasonPublished {
		t.Errorf("my-function-v1: version %q (%s), want 1 published", v1.Status.Version, publishedReason(v1))
	}

	// PROD routes to version 1 with its own URL; its 5 provisioned environments are being
	// started, and it is Ready once they are available.
	prod := waitAliasStatus(t, ns, "my-function-prod", func(a *lambdav1alpha1.Alias) bool {
		return a.Status.FunctionVersion == "1" && a.Status.ProvisionedConcurrency != nil
	})
	wantAliasURL := "https://" + contract.FunctionURLID(string(prod.UID), ns, "my-function", "PROD") + ".lambda-url.lambda.test/"
	if prod.Status.Name != "PROD" || prod.Status.FunctionURL != wantAliasURL {
		t.Errorf("my-function-prod: name %q, status.functionUrl %q, want PROD and %q", prod.Status.Name, prod.Status.FunctionURL, wantAliasURL)
	}
	if ps := prod.Status.ProvisionedConcurrency; ps.Status != lambdav1alpha1.ProvisionedConcurrencyInProgress || ps.RequestedProvisionedConcurrentExecutions != 5 {
		t.Errorf("my-function-prod before its environments run: provisioned concurrency %+v, want IN_PROGRESS of 5", ps)
	}
	deploymentReports(t, ns, WorkloadName("my-function", "1"), func(*appsv1.Deployment) bool { return true }, rolledOut(5))
	prod = waitAliasStatus(t, ns, "my-function-prod", aliasReady)
	if ps := prod.Status.ProvisionedConcurrency; ps == nil || ps.Status != lambdav1alpha1.ProvisionedConcurrencyReady {
		t.Errorf("my-function-prod: provisioned concurrency %+v, want READY", ps)
	}

	// "live" waits for version 2.
	live := waitAliasStatus(t, ns, "live", func(a *lambdav1alpha1.Alias) bool {
		_, reason, _ := readyReason(a.Status.Conditions)
		return reason != ""
	})
	if st, reason, msg := readyReason(live.Status.Conditions); st != metav1.ConditionFalse || reason != contract.ReasonVersionNotFound {
		t.Errorf("live before version 2: Ready %s %s (%s), want False %s", st, reason, msg, contract.ReasonVersionNotFound)
	}

	// The mappings: the paused one is Disabled; the others are Enabled, their permissions
	// (the sample's Role) and Secrets accepted. Their brokers do not exist here, so whether
	// a poller reaches one is not what they show.
	for _, name := range []string{"orders-from-kafka", "jobs-from-sqs", "pizzas-from-rabbitmq", "events-from-nats"} {
		esm := waitMapping(t, ns, name)
		wantState := lambdav1alpha1.EventSourceMappingEnabled
		if name == "events-from-nats" {
			wantState = lambdav1alpha1.EventSourceMappingDisabled
		}
		if esm.Status.State != wantState || esm.Status.StateTransitionReason != esmcontroller.ReasonUserInitiated {
			t.Errorf("%s: state %s (%s), want %s (%s)", name, esm.Status.State, esm.Status.StateTransitionReason, wantState, esmcontroller.ReasonUserInitiated)
		}
		if c := meta.FindStatusCondition(esm.Status.Conditions, contract.ConditionStalled); c != nil && c.Status == metav1.ConditionTrue {
			t.Errorf("%s: stalled: %s: %s", name, c.Reason, c.Message)
		}
		if esm.Status.UUID == "" || !strings.HasSuffix(esm.Status.FunctionARN, ":function:"+esm.Spec.FunctionName) {
			t.Errorf("%s: uuid %q, functionArn %q", name, esm.Status.UUID, esm.Status.FunctionARN)
		}
	}
	if st, reason, msg := readyReason(waitMapping(t, ns, "events-from-nats").Status.Conditions); st != metav1.ConditionTrue {
		t.Errorf("events-from-nats: Ready %s %s (%s), want True: disabled as its spec says", st, reason, msg)
	}

	// The S3 layer's bucket does not exist here: the controller got as far as downloading it
	// (its Secret was read) and retries.
	s3 := waitLayer(t, ns, "my-python-deps-3", func(lv *lambdav1alpha1.LayerVersion) bool {
		_, reason, _ := readyReason(lv.Status.Conditions)
		return reason != "" && reason != contract.ReasonInProgress
	})
	if st, reason, msg := readyReason(s3.Status.Conditions); st != metav1.ConditionFalse || !strings.Contains(msg, "downloading s3://layers/my_python_deps/3.zip") || !strings.Contains(msg, "minio.storage.svc") {
		t.Errorf("my-python-deps-3: Ready %s %s (%s), want False, failing to download from minio.storage.svc", st, reason, msg)
	}

	// Step 2, as lambda_v1alpha1_version_2.yaml says: change the function, wait until it
	// serves the change, apply the file.
	updateFunction(t, ns, "my-function", func(f *lambdav1alpha1.Function) { f.Spec.MemorySize = 512 })
	waitFunction(t, ns, "my-function", functionServes)
	applySample(t, ns, "lambda_v1alpha1_version_2.yaml")
	v2 := waitVersion(t, ns, "my-function-v2", published)
	if v2.Status.Version != "2" || publishedReason(v2) != contract.ReasonPublished {
		t.Errorf("my-function-v2: version %q (%s), want 2 published", v2.Status.Version, publishedReason(v2))
	}
	live = waitAliasStatus(t, ns, "live", aliasReady)
	if live.Status.FunctionVersion != "1" || len(live.Status.AdditionalVersionWeights) != 1 || live.Status.AdditionalVersionWeights["2"] != 0.1 {
		t.Errorf("live: routes to %q %v, want 1 and {2: 0.1}", live.Status.FunctionVersion, live.Status.AdditionalVersionWeights)
	}
	if live.Status.FunctionURL != "" {
		t.Errorf("live has no functionUrlConfig but status.functionUrl %q", live.Status.FunctionURL)
	}
	fn = getFunction(t, ns, "my-function")
	if fn.Status.FunctionURL != wantURL {
		t.Errorf("my-function after the update: status.functionUrl %q, want the same %q", fn.Status.FunctionURL, wantURL)
	}

	// Nothing else is stuck: a sample whose configuration Lambda would refuse (e.g. two
	// provisioned-concurrency configurations of one version) is Stalled.
	for _, kind := range []string{"Function", "Version", "Alias", "LayerVersion", "EventSourceMapping"} {
		list := &unstructured.UnstructuredList{}
		list.SetAPIVersion(lambdav1alpha1.GroupVersion.String())
		list.SetKind(kind + "List")
		if err := k8s.List(context.Background(), list, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		for _, o := range list.Items {
			if kind == "LayerVersion" && o.GetName() == "my-python-deps-3" {
				continue // its bucket, above
			}
			conds, _, _ := unstructured.NestedSlice(o.Object, "status", "conditions")
			for _, c := range conds {
				c, _ := c.(map[string]any)
				if c["type"] == contract.ConditionStalled && c["status"] == string(metav1.ConditionTrue) {
					t.Errorf("%s %s is stalled: %v: %v", kind, o.GetName(), c["reason"], c["message"])
				}
			}
		}
	}
}

// functionServes: Active, the last update Successful and Ready (its generation serves).
func functionServes(fn *lambdav1alpha1.Function) bool {
	return isActive(fn) && meta.IsStatusConditionTrue(fn.Status.Conditions, contract.ConditionReady)
}

func aliasReady(a *lambdav1alpha1.Alias) bool {
	return meta.IsStatusConditionTrue(a.Status.Conditions, contract.ConditionReady)
}

func readSample(t *testing.T, file string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(apiserver.RepoRoot(), "config", "samples", file))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// applySample creates every object of a sample file in ns, as kubectl apply -f would.
func applySample(t *testing.T, ns, file string) {
	t.Helper()
	dec := k8syaml.NewYAMLOrJSONDecoder(bytes.NewReader(readSample(t, file)), 4096)
	for {
		obj := &unstructured.Unstructured{}
		if err := dec.Decode(&obj.Object); errors.Is(err, io.EOF) {
			return
		} else if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if len(obj.Object) == 0 {
			continue
		}
		obj.SetNamespace(ns)
		if err := k8s.Create(context.Background(), obj); err != nil {
			t.Fatalf("%s: %s %s: %v", file, obj.GetKind(), obj.GetName(), err)
		}
	}
}

func createBinaryConfigMap(t *testing.T, ns, name, key string, data []byte) {
	t.Helper()
	create(t, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, BinaryData: map[string][]byte{key: data}})
}

func createSecret(t *testing.T, ns, name string, data map[string]string) {
	t.Helper()
	create(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, StringData: data})
}

// runEventSourceMappings runs the pollers' reconciler (cmd/eventsources) for the test, its
// Leases in ns; its invocations go to a fake activator.
func runEventSourceMappings(t *testing.T, ns string) {
	t.Helper()
	fake := invoketest.New(func(invoketest.Call) invoketest.Outcome { return invoketest.Outcome{} })
	t.Cleanup(fake.Close)
	mgr, err := testServer.NewManager()
	if err != nil {
		t.Fatal(err)
	}
	kube := kubernetes.NewForConfigOrDie(testRestConfig)
	b := &esmcontroller.Builder{Reader: mgr.GetAPIReader(), Invoker: fake.Invoker(), Authorizer: esmcontroller.KubeAuthorizer{Client: kube}}
	r := &esmcontroller.Reconciler{Client: mgr.GetClient(), Builder: b, Pollers: &esmcontroller.Pollers{
		Kube: kube, LeaseNamespace: ns, Identity: "replica-" + string(uuid.NewUUID()),
		LeaseDuration: 2 * time.Second, RenewDeadline: 1500 * time.Millisecond, RetryPeriod: 200 * time.Millisecond,
		Build: b.Build, Log: logr.Discard(),
	}}
	if err := r.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(apiserver.Run(mgr, nil)) // pollers stop before the apiserver does
}

// waitMapping waits for the mapping's status to describe its generation in a settled state.
func waitMapping(t *testing.T, ns, name string) *lambdav1alpha1.EventSourceMapping {
	t.Helper()
	var esm lambdav1alpha1.EventSourceMapping
	eventually(t, "EventSourceMapping "+name, func() string {
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &esm); err != nil {
			return err.Error()
		}
		switch esm.Status.State {
		case lambdav1alpha1.EventSourceMappingEnabled, lambdav1alpha1.EventSourceMappingDisabled:
			if esm.Status.ObservedGeneration == esm.Generation {
				return ""
			}
		}
		return "state " + string(esm.Status.State)
	})
	return &esm
}
