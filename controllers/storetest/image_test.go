package storetest

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	"github.com/klambda/klambda/controllers"
	"github.com/klambda/klambda/internal/codestore/registrytest"
	"github.com/klambda/klambda/internal/derivedimage"
)

// servingPod is the pod template of the function's serving revision.
func servingPod(t *testing.T, ns, fn string) *corev1.PodSpec {
	t.Helper()
	name := getFn(t, ns, fn).Status.ServingDeployment
	if name == "" {
		name = controllers.WorkloadName(fn, "$LATEST")
	}
	var dep appsv1.Deployment
	if err := k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, &dep); err != nil {
		return nil
	}
	return &dep.Spec.Template.Spec
}

// TestImageFunctionRunsItsDerivedImageInOneContainer: with imageFunctions configured, an
// Image function is Pending while its image is derived (the registry holds the writes
// back), then Active with status.derivedImageUri, which its one container runs (no init
// containers); status.resolvedImageUri stays the user's digest. A restarted manager
// (nothing in memory) keeps the same derived digest and writes nothing. A function whose
// architecture has no shim configured keeps the sidecar shape. A published Version runs the
// derived image (its status copies it). The garbage collection of
// derived images deletes an unreferenced one after the grace period, never the function's.
func TestImageFunctionRunsItsDerivedImageInOneContainer(t *testing.T) {
	ctx := context.Background()
	var writes atomic.Int64 // writes into klambda/derived
	hold := make(chan struct{})
	var release sync.Once
	t.Cleanup(func() { release.Do(func() { close(hold) }) })
	host := registrytest.StartOn(t, "127.0.0.2:0", func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet && r.Method != http.MethodHead && strings.HasPrefix(r.URL.Path, "/v2/klambda/derived/") {
				writes.Add(1)
				<-hold
			}
			h.ServeHTTP(w, r)
		})
	})
	shim := filepath.Join(t.TempDir(), "runtime-shim")
	if err := os.WriteFile(shim, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	// arm64's shim is missing from the manager's container: its functions are not derived.
	imageFunctions := fmt.Sprintf("imageFunctions: {repository: %q, shims: {x86_64: %q, arm64: /nonexistent/runtime-shim}}", host+"/klambda/derived", shim)
	stop := startManager(t, host+"/klambda/code", imageFunctions)
	ns := newNamespace(t)

	img, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	cf.OS, cf.Architecture, cf.Config.Entrypoint, cf.Config.Cmd = "linux", "amd64", []string{"/app/main"}, []string{"handler"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	tag, _ := name.NewTag(host+"/team/fn:v1", name.Insecure)
	if err := remote.Write(tag, img); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	resolved := host + "/team/fn@" + d.String()
	fn := &lambdav1alpha1.Function{
		ObjectMeta: metav1.ObjectMeta{Name: "img", Namespace: ns},
		Spec: lambdav1alpha1.FunctionSpec{FunctionConfiguration: lambdav1alpha1.FunctionConfiguration{
			PackageType: lambdav1alpha1.PackageTypeImage,
			Code:        lambdav1alpha1.FunctionCode{ImageURI: host + "/team/fn:v1"},
		}},
	}
	if err := k8s.Create(ctx, fn); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Pending while the image is derived", func() (bool, string) {
		st := getFn(t, ns, "img").Status
		return st.State == lambdav1alpha1.StatePending && strings.Contains(st.StateReason, "one container") && writes.Load() > 0 && servingPod(t, ns, "img") == nil,
			fmt.Sprintf("state %s %q, %d writes", st.State, st.StateReason, writes.Load())
	})
	release.Do(func() { close(hold) })
	var derived string
	eventually(t, "Active in one container", func() (bool, string) {
		st := getFn(t, ns, "img").Status
		pod := servingPod(t, ns, "img")
		if pod == nil || st.State != lambdav1alpha1.StateActive {
			return false, fmt.Sprintf("state %s %s", st.State, st.StateReason)
		}
		derived = st.DerivedImageURI
		c := pod.Containers[0]
		return st.ResolvedImageURI == resolved && strings.HasPrefix(derived, host+"/klambda/derived@sha256:") &&
				len(pod.Containers) == 1 && len(pod.InitContainers) == 0 && c.Image == derived && c.Command == nil && c.Args == nil && len(c.Ports) == 1,
			fmt.Sprintf("resolved %q derived %q containers %d inits %d image %s command %q", st.ResolvedImageURI, derived, len(pod.Containers), len(pod.InitContainers), c.Image, c.Command)
	})
	// The derived image: the user's layers, the shim, the shim in front of the entrypoint.
	dref, _ := name.NewDigest(derived, name.Insecure)
	got, err := remote.Image(dref)
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := got.Layers()
	base, _ := img.Layers()
	if len(layers) != len(base)+1 {
		t.Errorf("derived image has %d layers; want %d + the shim's", len(layers), len(base))
	}
	gcf, _ := got.ConfigFile()
	if want := append(derivedimage.ShimEntrypoint(":9000", "127.0.0.1:9001"), "/app/main"); !slices.Equal(gcf.Config.Entrypoint, want) || !slices.Equal(gcf.Config.Cmd, []string{"handler"}) {
		t.Errorf("derived config entrypoint %q cmd %q; want %q [handler]", gcf.Config.Entrypoint, gcf.Config.Cmd, want)
	}

	stop()
	writes.Store(0)
	startManager(t, host+"/klambda/code", imageFunctions)
	f := getFn(t, ns, "img")
	f.Spec.MemorySize = 256 // a new generation: resolved again by the new manager
	if err := k8s.Update(ctx, f); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the update after the restart is applied", func() (bool, string) {
		f := getFn(t, ns, "img")
		pod := servingPod(t, ns, "img")
		return f.Status.ObservedGeneration == f.Generation && f.Status.LastUpdateStatus == lambdav1alpha1.LastUpdateSuccessful && pod != nil &&
				pod.Containers[0].Resources.Limits.Memory().Value() == (256+32)<<20,
			fmt.Sprintf("generation %d observed %d update %s", f.Generation, f.Status.ObservedGeneration, f.Status.LastUpdateStatus)
	})
	if st := getFn(t, ns, "img").Status; st.DerivedImageURI != derived || servingPod(t, ns, "img").Containers[0].Image != derived {
		t.Errorf("after a restart: derived %q, pod image %q; want %s", st.DerivedImageURI, servingPod(t, ns, "img").Containers[0].Image, derived)
	}
	if n := writes.Load(); n != 0 {
		t.Errorf("the restarted manager wrote %d times into the derived repository", n)
	}

	// A published Version runs the derived image too, in its own Deployment.
	v := &lambdav1alpha1.Version{ObjectMeta: metav1.ObjectMeta{Name: "img-1", Namespace: ns}, Spec: lambdav1alpha1.VersionSpec{FunctionName: "img"}}
	if err := k8s.Create(ctx, v); err != nil {
		t.Fatal(err)
	}
	eventually(t, "version 1 runs the derived image", func() (bool, string) {
		var ver lambdav1alpha1.Version
		if err := k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "img-1"}, &ver); err != nil || ver.Status.Version == "" {
			return false, fmt.Sprintf("version %q: %v", ver.Status.Version, err)
		}
		var dep appsv1.Deployment
		if err := k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: controllers.WorkloadName("img", ver.Status.Version)}, &dep); err != nil {
			return false, err.Error()
		}
		pod := dep.Spec.Template.Spec
		return ver.Status.DerivedImageURI == derived && ver.Status.ResolvedImageURI == resolved && len(pod.InitContainers) == 0 && pod.Containers[0].Image == derived,
			fmt.Sprintf("derived %q resolved %q inits %d image %s", ver.Status.DerivedImageURI, ver.Status.ResolvedImageURI, len(pod.InitContainers), pod.Containers[0].Image)
	})

	// Garbage collection: an image in the repository that nothing references goes after
	// the grace period; the function's derived image and other tags stay.
	cfg, err := controllers.ParseConfig([]byte(fmt.Sprintf("plainHTTPRegistries: [%q]\n%s", host, imageFunctions)))
	if err != nil {
		t.Fatal(err)
	}
	deriver, err := controllers.NewImageDeriver(cfg)
	if err != nil {
		t.Fatal(err)
	}
	garbage, _ := random.Image(32, 1)
	other, _ := random.Image(32, 1)
	for tag, img := range map[string]v1.Image{derivedimage.TagPrefix + strings.Repeat("ab", 32): garbage, "kept-by-hand": other} {
		ref, _ := name.NewTag(host+"/klambda/derived:"+tag, name.Insecure)
		if err := remote.Write(ref, img); err != nil {
			t.Fatal(err)
		}
	}
	gd, _ := garbage.Digest()
	clock := time.Now()
	gc := controllers.NewDerivedImageGC(k8s, deriver)
	gc.Now = func() time.Time { return clock }
	if d, err := gc.Collect(ctx); err != nil || len(d) != 0 {
		t.Fatalf("first collection deleted %v, %v; want nothing before the grace period", d, err)
	}
	clock = clock.Add(61 * time.Minute)
	if d, err := gc.Collect(ctx); err != nil || !slices.Equal(d, []string{gd.String()}) {
		t.Fatalf("after the grace period deleted %v, %v; want the unreferenced %s", d, err, gd)
	}
	for _, ref := range []string{derived, host + "/klambda/derived:kept-by-hand"} {
		r, _ := name.ParseReference(ref, name.Insecure)
		if _, err := remote.Head(r); err != nil {
			t.Errorf("%s after the collection: %v", ref, err)
		}
	}

	// arm64's shim can't be read: the sidecar shape, with the user's image, and a Warning
	// Event saying why.
	arm := fn.DeepCopy()
	arm.ObjectMeta = metav1.ObjectMeta{Name: "img-arm", Namespace: ns}
	arm.Spec.Architectures = []lambdav1alpha1.Architecture{lambdav1alpha1.ArchitectureArm64}
	if err := k8s.Create(ctx, arm); err != nil {
		t.Fatal(err)
	}
	eventually(t, "arm64 without a shim: the sidecar shape, told", func() (bool, string) {
		st := getFn(t, ns, "img-arm").Status
		pod := servingPod(t, ns, "img-arm")
		var evs eventsv1.EventList
		if err := k8s.List(ctx, &evs, client.InNamespace(ns)); err != nil {
			return false, err.Error()
		}
		told := ""
		for _, ev := range evs.Items {
			if ev.Regarding.Name == "img-arm" && ev.Reason == "ImageNotDerived" && ev.Type == corev1.EventTypeWarning {
				told = ev.Note
			}
		}
		return st.State == lambdav1alpha1.StateActive && st.DerivedImageURI == "" && pod != nil && pod.Containers[0].Image == resolved && len(pod.InitContainers) == 1 &&
				strings.Contains(told, "runtime-shim for arm64") && strings.Contains(told, "sidecar"),
			fmt.Sprintf("state %s derived %q event %q", st.State, st.DerivedImageURI, told)
	})
}
