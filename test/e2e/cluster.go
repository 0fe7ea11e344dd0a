//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/util/retry"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// VersionLatest is the version label value of $LATEST, which the tests name most.
const VersionLatest = contract.LatestLabelValue

// Cluster is the cluster the tests run against.
type Cluster struct {
	Kubeconfig string
	REST       *rest.Config
	Client     client.Client // knows klambda's kinds
	Kube       kubernetes.Interface
	// Local is true for the cluster of hack/cluster (pods' IPs route from here, the node
	// serves code packages at CodeBaseURL).
	Local bool
	// RepoRoot is the repository's top folder.
	RepoRoot string
	stateDir string
	lock     *os.File // held for the life of the process (lockCluster)

	activatorMu  sync.Mutex
	activatorURL string // ActivatorServiceURL's answer, once found
}

// RepoRoot is the repository's top folder (two up from this file).
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// StateDir is where hack/cluster keeps the local cluster.
func StateDir() string {
	if d := os.Getenv("KLAMBDA_CLUSTER_DIR"); d != "" {
		return d
	}
	cache := os.Getenv("KLAMBDA_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "klambda")
	}
	return filepath.Join(cache, "cluster")
}

// Start brings up (or reuses) the local cluster with klambda installed from the working
// tree: hack/cluster/up.sh, images.sh and install.sh, each idempotent and quick when
// nothing changed. With E2E_CLUSTER=existing it only connects to KUBECONFIG's cluster.
func Start(ctx context.Context) (*Cluster, error) {
	c := &Cluster{RepoRoot: RepoRoot(), stateDir: StateDir()}
	var err error
	if c.lock, err = lockCluster(ctx, c.stateDir); err != nil {
		return nil, err
	}
	if os.Getenv("E2E_CLUSTER") == "existing" {
		c.Kubeconfig = os.Getenv("KUBECONFIG")
		if c.Kubeconfig == "" {
			return nil, fmt.Errorf("E2E_CLUSTER=existing needs KUBECONFIG")
		}
	} else {
		c.Local = true
		c.Kubeconfig = filepath.Join(c.stateDir, "kubeconfig")
		for _, script := range []string{"up.sh", "images.sh", "install.sh"} {
			if err := c.run(ctx, filepath.Join(c.RepoRoot, "hack", "cluster", script)); err != nil {
				return nil, fmt.Errorf("hack/cluster/%s: %w", script, err)
			}
		}
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", c.Kubeconfig, err)
	}
	c.REST = cfg
	scheme := clientgoscheme.Scheme
	if err := lambdav1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	ctrllog.SetLogger(logr.Discard()) // the client's own log lines are noise in test output
	if c.Client, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		return nil, err
	}
	if c.Kube, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, err
	}
	return c, nil
}

// lockCluster takes an exclusive lock on the local cluster for the life of this test
// process: two suites (from two work trees, say) would otherwise install their own builds
// of klambda over each other mid-run. The kernel drops the lock when the process ends.
// The file is returned to be kept reachable: os.File's finalizer would close it, and unlock.
func lockCluster(ctx context.Context, stateDir string) (*os.File, error) {
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(stateDir, "e2e.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	for {
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err == nil {
			return f, nil
		}
		fmt.Fprintln(os.Stderr, "e2e: another test run holds", f.Name(), "- waiting")
		select {
		case <-ctx.Done():
			_ = f.Close()
			return nil, fmt.Errorf("waiting for %s: %w", f.Name(), ctx.Err())
		case <-time.After(10 * time.Second):
		}
	}
}

func (c *Cluster) run(ctx context.Context, script string, args ...string) error {
	cmd := exec.CommandContext(ctx, script, args...)
	cmd.Dir = c.RepoRoot
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.Env = append(os.Environ(), "KUBECONFIG="+c.Kubeconfig)
	return cmd.Run()
}

// Namespace creates a fresh namespace for one test and deletes it when the test ends.
func (c *Cluster) Namespace(t testing.TB) string {
	t.Helper()
	name := "e2e-" + rand.String(6)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := c.Client.Create(context.Background(), ns); err != nil {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
	t.Cleanup(func() {
		if os.Getenv("E2E_KEEP") == "" {
			_ = c.Client.Delete(context.Background(), ns)
		}
	})
	// Pods need the namespace's default ServiceAccount, which the controller manager adds.
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := c.Kube.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
	if err != nil {
		t.Fatalf("namespace %s has no default ServiceAccount: %v", name, err)
	}
	return name
}

// WaitForFunctionActive waits until the Function's status.state is Active and returns it;
// Failed ends the wait early.
func (c *Cluster) WaitForFunctionActive(ctx context.Context, ns, name string, timeout time.Duration) (*lambdav1alpha1.Function, error) {
	fn := &lambdav1alpha1.Function{}
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		if err := c.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, fn); err != nil {
			return false, nil
		}
		switch fn.Status.State {
		case lambdav1alpha1.StateActive:
			return true, nil
		case lambdav1alpha1.StateFailed:
			return false, fmt.Errorf("function %s/%s Failed: %s: %s", ns, name, fn.Status.StateReasonCode, fn.Status.StateReason)
		}
		return false, nil
	})
	if err != nil {
		return fn, fmt.Errorf("waiting for function %s/%s to be Active (state %q): %w", ns, name, fn.Status.State, err)
	}
	return fn, nil
}

// versionSelector selects the Deployment and pods of one version of a function
// (version "latest" for $LATEST, or a number).
func versionSelector(name, version string) client.MatchingLabels {
	return client.MatchingLabels{contract.LabelFunction: name, contract.LabelVersion: version}
}

// FunctionDeployment is the Deployment of one version of a function.
func (c *Cluster) FunctionDeployment(ctx context.Context, ns, name, version string) (*appsv1.Deployment, error) {
	var list appsv1.DeploymentList
	if err := c.Client.List(ctx, &list, client.InNamespace(ns), versionSelector(name, version)); err != nil {
		return nil, err
	}
	if len(list.Items) > 1 && version == VersionLatest {
		// During an update $LATEST has two revisions: the one serving is the Function's
		// status.servingDeployment.
		var fn lambdav1alpha1.Function
		if err := c.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &fn); err != nil {
			return nil, err
		}
		for i := range list.Items {
			if list.Items[i].Name == fn.Status.ServingDeployment {
				return &list.Items[i], nil
			}
		}
	}
	if len(list.Items) != 1 {
		return nil, fmt.Errorf("%d Deployments for function %s/%s version %s, want 1", len(list.Items), ns, name, version)
	}
	return &list.Items[0], nil
}

// ScaleFunction sets the replicas of a function version's Deployment. The activator owns
// replicas; tests that run without it (or want a fixed count) set them here.
func (c *Cluster) ScaleFunction(ctx context.Context, ns, name, version string, replicas int32) error {
	d, err := c.FunctionDeployment(ctx, ns, name, version)
	if err != nil {
		return err
	}
	// The scale subresource carries the Deployment's resourceVersion, which the Deployment
	// controller's status writes move (right after creation, too): retry on a conflict.
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		scale, err := c.Kube.AppsV1().Deployments(ns).GetScale(ctx, d.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		scale.Spec.Replicas = replicas
		_, err = c.Kube.AppsV1().Deployments(ns).UpdateScale(ctx, d.Name, scale, metav1.UpdateOptions{})
		return err
	})
}

// WaitForReadyPod waits for a Ready pod of a function version and returns it.
func (c *Cluster) WaitForReadyPod(ctx context.Context, ns, name, version string, timeout time.Duration) (*corev1.Pod, error) {
	var ready *corev1.Pod
	var last string
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		var pods corev1.PodList
		if err := c.Client.List(ctx, &pods, client.InNamespace(ns), versionSelector(name, version)); err != nil {
			return false, nil
		}
		for i := range pods.Items {
			p := &pods.Items[i]
			last = fmt.Sprintf("%s: %s", p.Name, podSummary(p))
			if p.DeletionTimestamp == nil && podReady(p) && p.Status.PodIP != "" {
				ready = p
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return nil, fmt.Errorf("no Ready pod for function %s/%s version %s (last seen %s): %w", ns, name, version, last, err)
	}
	return ready, nil
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func podSummary(p *corev1.Pod) string {
	var b strings.Builder
	b.WriteString(string(p.Status.Phase))
	for _, s := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		switch {
		case s.State.Waiting != nil:
			fmt.Fprintf(&b, " %s=waiting(%s: %s)", s.Name, s.State.Waiting.Reason, s.State.Waiting.Message)
		case s.State.Terminated != nil:
			fmt.Fprintf(&b, " %s=terminated(%s, exit %d)", s.Name, s.State.Terminated.Reason, s.State.Terminated.ExitCode)
		default:
			fmt.Fprintf(&b, " %s=running ready=%v", s.Name, s.Ready)
		}
	}
	return b.String()
}

// InvokeSecret is the per-function secret a pod's shim wants on its invoke endpoint: the
// value of its contract.InvokeSecretEnv, read from the Secret it references.
func (c *Cluster) InvokeSecret(ctx context.Context, pod *corev1.Pod) (string, error) {
	containers := append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...)
	for _, ctr := range containers {
		for _, e := range ctr.Env {
			if e.Name != contract.InvokeSecretEnv {
				continue
			}
			if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
				return e.Value, nil
			}
			ref := e.ValueFrom.SecretKeyRef
			s, err := c.Kube.CoreV1().Secrets(pod.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
			if err != nil {
				return "", fmt.Errorf("reading the invoke secret %s: %w", ref.Name, err)
			}
			return string(s.Data[ref.Key]), nil
		}
	}
	return "", nil
}

// InvokeResult is what a shim's invoke endpoint answered.
type InvokeResult struct {
	Status int
	Header http.Header
	Body   []byte
}

// InvokePod invokes a function version in its Ready pod through the shim's invoke endpoint
// (as the activator does), with the per-function secret. The pod's IP must route from here
// (true on the local cluster).
func (c *Cluster) InvokePod(ctx context.Context, pod *corev1.Pod, payload []byte, header http.Header) (*InvokeResult, error) {
	secret, err := c.InvokeSecret(ctx, pod)
	if err != nil {
		return nil, err
	}
	url := fmt.Sprintf("http://%s:%d%s", pod.Status.PodIP, contract.ShimPort, contract.InvokePath)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(payload))
	if err != nil {
		return nil, err
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	req.Header.Set("Content-Type", "application/json")
	if secret != "" {
		req.Header.Set(contract.HeaderInvokeSecret, secret)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("invoking %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return &InvokeResult{Status: resp.StatusCode, Header: resp.Header, Body: body}, err
}

// ServeCode publishes a .zip package on the local node's code server (for code.url) and
// returns its URL and hex sha256.
func (c *Cluster) ServeCode(name string, zip []byte) (url, sha string, err error) {
	if !c.Local {
		return "", "", fmt.Errorf("ServeCode needs the local cluster")
	}
	dir := filepath.Join(c.stateDir, "www")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(filepath.Join(dir, name), zip, 0o644); err != nil {
		return "", "", err
	}
	sum := sha256.Sum256(zip)
	ip, err := exec.Command("bash", "-c", "source "+filepath.Join(c.RepoRoot, "hack/cluster/lib.sh")+" && node_ip && echo $CODE_PORT").Output()
	if err != nil {
		return "", "", fmt.Errorf("finding the node IP: %w", err)
	}
	f := strings.Fields(string(ip))
	if len(f) != 2 {
		return "", "", fmt.Errorf("finding the node IP and code port: got %q", ip)
	}
	return fmt.Sprintf("http://%s:%s/%s", f[0], f[1], name), hex.EncodeToString(sum[:]), nil
}

// HelloGoFunction returns (does not create) Function ns/name running examples/hello-go
// (aws-lambda-go on provided.al2023, 10 s timeout), its package served from the node; tests
// adjust the spec before creating it.
func (c *Cluster) HelloGoFunction(ctx context.Context, t testing.TB, ns, name string) *lambdav1alpha1.Function {
	t.Helper()
	zip, err := BuildGoExample(ctx)
	if err != nil {
		t.Fatal(err)
	}
	url, sha, err := c.ServeCode(ns+"-"+name+".zip", zip)
	if err != nil {
		t.Fatal(err)
	}
	return &lambdav1alpha1.Function{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: lambdav1alpha1.FunctionSpec{FunctionConfiguration: lambdav1alpha1.FunctionConfiguration{
			Runtime: "provided.al2023",
			Handler: "bootstrap",
			Timeout: 10,
			Code:    lambdav1alpha1.FunctionCode{CodeSource: lambdav1alpha1.CodeSource{URL: url, SHA256: sha}},
		}},
	}
}

// BuildGoExample builds examples/hello-go's function.zip (aws-lambda-go, provided.al2023).
func BuildGoExample(ctx context.Context) ([]byte, error) {
	out := filepath.Join(os.TempDir(), fmt.Sprintf("klambda-e2e-hello-go-%d.zip", os.Getpid()))
	defer os.Remove(out)
	cmd := exec.CommandContext(ctx, filepath.Join(RepoRoot(), "examples", "hello-go", "build.sh"), out)
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building examples/hello-go: %w: %s", err, b)
	}
	return os.ReadFile(out)
}
