//go:build e2e

package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	"github.com/klambda/klambda/internal/derivedimage"
)

// TestImageFunctionKeepsItsDigestAcrossAManagerRestart: issue 18's "restart the manager
// with a re-pointed image tag: $LATEST still runs the pinned digest", on the local cluster,
// in the one-container shape (issue 23): the function runs the image the manager derived
// from the pinned digest (status.derivedImageUri), and the restarted manager keeps it.
// An Image function's tag is pushed to the node's registry (hack/cluster/up.sh: plain HTTP,
// known to containerd and to the manager's plainHTTPRegistries) and resolved to its digest;
// the tag is then re-pointed at an image that answers differently, the manager is
// restarted, and the function, scaled to zero meanwhile, cold-starts again: it still runs
// the first image, by digest. A tag the registry does not have is Failed/InvalidImage, not
// a pod in ImagePullBackOff.
func TestImageFunctionKeepsItsDigestAcrossAManagerRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	reg, err := cluster.Registry()
	if err != nil {
		t.Skip(err)
	}
	ns := cluster.Namespace(t)
	tag := reg + "/e2e/" + ns + "-image:live"
	digestA := pushAnswerImage(t, tag, "A")

	fn := &lambdav1alpha1.Function{}
	fn.Namespace, fn.Name = ns, "image"
	fn.Annotations = map[string]string{contract.AnnotationIdleTimeout: "2s"}
	fn.Spec.PackageType = lambdav1alpha1.PackageTypeImage
	fn.Spec.Timeout = 5
	fn.Spec.Code.ImageURI = tag
	if err := cluster.Client.Create(ctx, fn); err != nil {
		t.Fatal(err)
	}
	active, err := cluster.WaitForFunctionActive(ctx, ns, fn.Name, 3*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if want := "@" + digestA; !strings.HasSuffix(active.Status.ResolvedImageURI, want) {
		t.Fatalf("status.resolvedImageUri %q, want the tag's digest %s", active.Status.ResolvedImageURI, digestA)
	}
	// The local install derives Image functions' one-container images (hack/cluster/install.sh
	// sets config.imageFunctions): the runtime-shim added to the image, in the node's registry.
	derived := active.Status.DerivedImageURI
	if derived == "" {
		t.Fatalf("status.derivedImageUri is empty: the local install derives Image functions' images (imageFunctions); state %s %q", active.Status.State, active.Status.StateReason)
	}
	checkDerivedFrom(t, derived, active.Status.ResolvedImageURI)
	lc := cluster.LambdaClient(ctx, t, ns, cluster.InvokerToken(ctx, t, ns))
	invoke := func() string {
		t.Helper()
		out, err := lc.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(fn.Name), Payload: []byte(`{}`)})
		if err != nil {
			t.Fatalf("invoke: %v", err)
		}
		if out.FunctionError != nil {
			t.Fatalf("invoke: %s %s", *out.FunctionError, out.Payload)
		}
		var r struct{ Code string }
		if err := json.Unmarshal(out.Payload, &r); err != nil {
			t.Fatalf("invoke: %s: %v", out.Payload, err)
		}
		return r.Code
	}
	if got := invoke(); got != "A" {
		t.Fatalf("first invocation answered %q, want A", got)
	}

	// Re-point the tag, restart the manager, and let the function go back to zero.
	digestB := pushAnswerImage(t, tag, "B")
	if digestB == digestA {
		t.Fatal("the two images have the same digest")
	}
	restartManager(ctx, t)
	if err := waitAtZero(ctx, ns, fn.Name); err != nil {
		t.Fatalf("function %s did not scale to zero: %v", fn.Name, err)
	}
	// The manager has reconciled the function since its restart (status written again).
	if err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		var f lambdav1alpha1.Function
		if err := cluster.Client.Get(ctx, client.ObjectKeyFromObject(fn), &f); err != nil {
			return false, nil
		}
		return f.Status.State == lambdav1alpha1.StateActive && f.Status.ObservedGeneration == f.Generation, nil
	}); err != nil {
		t.Fatal(err)
	}
	d, err := cluster.FunctionDeployment(ctx, ns, fn.Name, VersionLatest)
	if err != nil {
		t.Fatal(err)
	}
	// One container, the derived image recorded before the restart (made from digest A).
	if pod := d.Spec.Template.Spec; len(pod.InitContainers) != 0 || len(pod.Containers) != 1 || pod.Containers[0].Image != derived {
		t.Fatalf("after the restart the pod has %d init containers and %d containers, image %q; want one container of the derived image %s (from %s)",
			len(pod.InitContainers), len(pod.Containers), pod.Containers[0].Image, derived, digestA)
	}
	if got := invoke(); got != "A" {
		t.Fatalf("after the tag moved and the manager restarted, a cold start answered %q, want A (the pinned digest)", got)
	}
	var f lambdav1alpha1.Function
	if err := cluster.Client.Get(ctx, client.ObjectKeyFromObject(fn), &f); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(f.Status.ResolvedImageURI, "@"+digestA) || f.Status.DerivedImageURI != derived {
		t.Fatalf("status.resolvedImageUri moved to %q, derivedImageUri to %q (was %s)", f.Status.ResolvedImageURI, f.Status.DerivedImageURI, derived)
	}

	// A tag the registry does not have: Failed with Lambda's reason, no pod waiting for it.
	missing := &lambdav1alpha1.Function{}
	missing.Namespace, missing.Name = ns, "missing-image"
	missing.Spec.PackageType = lambdav1alpha1.PackageTypeImage
	missing.Spec.Code.ImageURI = reg + "/e2e/" + ns + "-missing:v1"
	if err := cluster.Client.Create(ctx, missing); err != nil {
		t.Fatal(err)
	}
	if err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		err := cluster.Client.Get(ctx, client.ObjectKeyFromObject(missing), missing)
		return err == nil && missing.Status.State == lambdav1alpha1.StateFailed, nil
	}); err != nil {
		t.Fatalf("a missing image's function is not Failed: %+v", missing.Status)
	}
	if missing.Status.StateReasonCode != lambdav1alpha1.StateReasonInvalidImage {
		t.Fatalf("a missing image's function: %s (%s), want InvalidImage", missing.Status.StateReasonCode, missing.Status.StateReason)
	}
}

// pushAnswerImage pushes, as ref (a tag in the node's plain-HTTP registry), a one-layer
// image for this machine's architecture whose entrypoint is a shell custom runtime
// answering {"code":code}: busybox-static as /bin/sh and its applets, the bootstrap at
// /var/runtime/bootstrap. It returns the image's digest.
func pushAnswerImage(t testing.TB, ref, code string) string {
	t.Helper()
	busybox, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Skipf("busybox-static is needed for the image: %v", err)
	}
	out, err := exec.Command("/bin/busybox", "--list").Output()
	if err != nil {
		t.Fatalf("busybox --list: %v", err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dir := func(name string, mode int64) {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode}); err != nil {
			t.Fatal(err)
		}
	}
	file := func(name string, mode int64, b []byte) {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(b))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	dir("bin", 0o755)
	dir("tmp", 0o1777)
	dir("var", 0o755)
	dir("var/runtime", 0o755)
	dir("var/task", 0o755)
	file("bin/busybox", 0o755, busybox)
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" {
			continue
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: filepath.Join("bin", applet), Linkname: "busybox", Mode: 0o777}); err != nil {
			t.Fatal(err)
		}
	}
	file("var/runtime/bootstrap", 0o755, []byte(answerBootstrap(code)))
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	layer, err := tarball.LayerFromReader(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config.Entrypoint = []string{"/bin/sh", "/var/runtime/bootstrap"}
	cf.Config.Env = []string{"PATH=/bin", "LAMBDA_TASK_ROOT=/var/task"}
	cf.Config.WorkingDir = "/var/task"
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// checkDerivedFrom checks that the derived image (in the node's registry) was made from
// source: its config's label says so, and it carries the runtime-shim's layer on top of
// source's layers.
func checkDerivedFrom(t testing.TB, derived, source string) {
	t.Helper()
	dref, err := name.NewDigest(derived, name.Insecure)
	if err != nil {
		t.Fatalf("status.derivedImageUri %q: %v", derived, err)
	}
	img, err := remote.Image(dref)
	if err != nil {
		t.Fatalf("reading the derived image %s: %v", derived, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if got := cf.Config.Labels[derivedimage.LabelSource]; got != source {
		t.Fatalf("the derived image %s was made from %q, want %s", derived, got, source)
	}
	if len(cf.Config.Entrypoint) == 0 || cf.Config.Entrypoint[0] != derivedimage.ShimPath {
		t.Fatalf("the derived image's entrypoint is %q, want the runtime-shim first", cf.Config.Entrypoint)
	}
	sref, _ := name.NewDigest(source, name.Insecure)
	src, err := remote.Image(sref, remote.WithPlatform(v1.Platform{OS: "linux", Architecture: runtime.GOARCH}))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := src.Layers()
	got, _ := img.Layers()
	if len(got) != len(want)+1 {
		t.Fatalf("the derived image has %d layers, want the source's %d + the shim's", len(got), len(want))
	}
}

// restartManager deletes the manager's pod and waits for its replacement to be Ready.
func restartManager(ctx context.Context, t *testing.T) {
	t.Helper()
	sel := client.MatchingLabels{"app.kubernetes.io/component": "manager"}
	var before corev1.PodList
	if err := cluster.Client.List(ctx, &before, client.InNamespace("klambda-system"), sel); err != nil || len(before.Items) == 0 {
		t.Fatalf("the manager's pods: %v (%d)", err, len(before.Items))
	}
	old := map[string]bool{}
	for i := range before.Items {
		old[string(before.Items[i].UID)] = true
		if err := cluster.Client.Delete(ctx, &before.Items[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		var pods corev1.PodList
		if err := cluster.Client.List(ctx, &pods, client.InNamespace("klambda-system"), sel); err != nil {
			return false, nil
		}
		for _, p := range pods.Items {
			if old[string(p.UID)] || p.DeletionTimestamp != nil {
				return false, nil
			}
			if !podReady(&p) {
				return false, nil
			}
		}
		return len(pods.Items) > 0, nil
	}); err != nil {
		t.Fatalf("the manager did not come back: %v", err)
	}
}

// Registry is the local node's OCI registry (host:port, plain HTTP; hack/cluster/up.sh).
func (c *Cluster) Registry() (string, error) {
	if !c.Local {
		return "", fmt.Errorf("the node's registry exists only on the local cluster")
	}
	ip, err := c.NodeIP()
	if err != nil {
		return "", err
	}
	out, err := exec.Command("bash", "-c", "source "+filepath.Join(c.RepoRoot, "hack/cluster/lib.sh")+" && echo $REGISTRY_PORT").Output()
	if err != nil {
		return "", fmt.Errorf("reading REGISTRY_PORT: %w", err)
	}
	return ip + ":" + strings.TrimSpace(string(out)), nil
}
