// Package storetest runs the controllers with a code store (a real distribution registry,
// internal/codestore/registrytest) against a real kube-apiserver, in its own process: the
// controllers' main suite runs without a store.
package storetest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	"github.com/klambda/klambda/controllers"
	"github.com/klambda/klambda/internal/codestore"
	"github.com/klambda/klambda/internal/codestore/registrytest"
	"github.com/klambda/klambda/test/apiserver"
	"github.com/klambda/klambda/test/ziptest"
)

var (
	srv *apiserver.Server
	k8s client.Client
)

func TestMain(m *testing.M) {
	var err error
	if srv, err = apiserver.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	k8s = srv.Client
	code := m.Run()
	_ = srv.Stop()
	os.Exit(code)
}

// startManager runs the controllers with a code store in repo until the returned stop is
// called (or the test ends): each start is a manager with nothing in memory.
func startManager(t *testing.T, repo string, extra ...string) (stop func()) {
	t.Helper()
	host, _, _ := strings.Cut(repo, "/")
	cfg, err := controllers.ParseConfig([]byte(fmt.Sprintf(`shimImage: registry.test/runtime-shim:test
resolveImageTags: true
egress: {allowLoopback: true}
plainHTTPRegistries: [%q]
codeStore: {repository: %q, gcInterval: 0s}
`, host, repo) + strings.Join(extra, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	mgr, err := srv.NewManager()
	if err != nil {
		t.Fatal(err)
	}
	if err := controllers.Setup(mgr, cfg); err != nil {
		t.Fatal(err)
	}
	stop = apiserver.Run(mgr, func(err error) { t.Errorf("manager: %v", err) })
	t.Cleanup(stop)
	return stop
}

func ptr[T any](v T) *T { return &v }

// createURLFunction creates Function ns/name (provided.al2023) whose code is src's
// /code.zip with SHA-256 hex sha.
func createURLFunction(t *testing.T, ns, name string, src *source, sha string) {
	t.Helper()
	fn := &lambdav1alpha1.Function{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: lambdav1alpha1.FunctionSpec{FunctionConfiguration: lambdav1alpha1.FunctionConfiguration{
			PackageType: lambdav1alpha1.PackageTypeZip, Runtime: "provided.al2023", Handler: "bootstrap",
			Code: lambdav1alpha1.FunctionCode{CodeSource: lambdav1alpha1.CodeSource{URL: src.srv.URL + "/code.zip", SHA256: sha}},
		}},
	}
	if err := k8s.Create(context.Background(), fn); err != nil {
		t.Fatal(err)
	}
}

func newNamespace(t *testing.T) string { return srv.NewNamespace(t, "store") }

// source is an HTTP server whose /code.zip the test replaces or removes; it counts GETs.
type source struct {
	mu   sync.Mutex
	body []byte
	gets atomic.Int64
	srv  *httptest.Server
}

func newSource(t *testing.T, body []byte) *source {
	s := &source{body: body}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.gets.Add(1)
		s.mu.Lock()
		b := s.body
		s.mu.Unlock()
		if b == nil {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(b)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *source) set(b []byte) { s.mu.Lock(); s.body = b; s.mu.Unlock() }

func eventually(t *testing.T, what string, f func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		ok, msg := f()
		if ok {
			return
		}
		last = msg
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: not reached in 60 s; last: %s", what, last)
}

func getFn(t *testing.T, ns, name string) *lambdav1alpha1.Function {
	t.Helper()
	var fn lambdav1alpha1.Function
	if err := k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, &fn); err != nil {
		t.Fatal(err)
	}
	return &fn
}

// loadArgs is what the pods of a Deployment load: the load-code init container's sources.
func loadArgs(t *testing.T, ns, name string) []string {
	t.Helper()
	var dep appsv1.Deployment
	if err := k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, &dep); err != nil {
		return nil
	}
	var out []string
	for _, c := range dep.Spec.Template.Spec.InitContainers {
		for _, a := range c.Args {
			if strings.HasPrefix(a, "--code=") || strings.HasPrefix(a, "--layer=") {
				out = append(out, a)
			}
		}
	}
	return out
}

func readStore(t *testing.T, s codestore.Store, h string) []byte {
	t.Helper()
	rc, err := s.Get(context.Background(), h)
	if err != nil {
		t.Fatalf("the store does not serve sha256:%s: %v", h, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestVersionCodeOutlivesItsSource: a Function's URL code is copied into the code store once;
// $LATEST's and the published Version's pods load it from the store (not the URL); after
// the URL's content is deleted, a restarted manager (nothing in memory) keeps $LATEST
// Active on the same code without downloading; after the source is replaced by new code
// (and the Function updated to it), the Version still records and loads its own digest,
// and the store still serves both.
func TestVersionCodeOutlivesItsSource(t *testing.T) {
	ctx := context.Background()
	host := registrytest.Start(t)
	repo := host + "/klambda/code"
	store, err := codestore.NewOCI(codestore.OCIOptions{Repository: repo, PlainHTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	stop := startManager(t, repo)
	ns := newNamespace(t)

	v1zip := ziptest.Bootstrap(t, "#!/bin/sh\necho v1\n")
	h1, b1 := ziptest.Digest(v1zip)
	src := newSource(t, v1zip)
	createURLFunction(t, ns, "durable", src, h1)
	wantLoad := fmt.Sprintf("--code=oci://%s/klambda/code?plainHTTP=true#sha256=%s", host, h1)
	eventually(t, "$LATEST Active with its code in the store", func() (bool, string) {
		f := getFn(t, ns, "durable")
		st := f.Status
		args := loadArgs(t, ns, controllers.WorkloadName("durable", "$LATEST"))
		return st.State == lambdav1alpha1.StateActive && st.CodeSha256 == b1 && strings.HasPrefix(st.CodeStoreRef, repo+"@sha256:") && slices.Equal(args, []string{wantLoad}),
			fmt.Sprintf("state %s code %s ref %q load %v", st.State, st.CodeSha256, st.CodeStoreRef, args)
	})
	ref1 := getFn(t, ns, "durable").Status.CodeStoreRef
	if !bytes.Equal(readStore(t, store, h1), v1zip) {
		t.Fatal("the store's copy is not the source's archive")
	}

	v := &lambdav1alpha1.Version{ObjectMeta: metav1.ObjectMeta{Name: "durable-1", Namespace: ns}, Spec: lambdav1alpha1.VersionSpec{FunctionName: "durable"}}
	if err := k8s.Create(ctx, v); err != nil {
		t.Fatal(err)
	}
	var ver lambdav1alpha1.Version
	eventually(t, "version 1 published with the store reference, its pods loading from the store", func() (bool, string) {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(v), &ver); err != nil {
			return false, err.Error()
		}
		args := loadArgs(t, ns, controllers.WorkloadName("durable", "1"))
		return ver.Status.Version == "1" && ver.Status.CodeSha256 == b1 && ver.Status.CodeStoreRef == ref1 && slices.Equal(args, []string{wantLoad}),
			fmt.Sprintf("version %q code %s ref %q load %v", ver.Status.Version, ver.Status.CodeSha256, ver.Status.CodeStoreRef, args)
	})

	// The source disappears; the manager restarts with nothing in memory.
	stop()
	src.set(nil)
	gets := src.gets.Load()
	startManager(t, repo)
	f := getFn(t, ns, "durable")
	f.Labels = map[string]string{"touched": "1"} // a reconcile, same generation
	if err := k8s.Update(ctx, f); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	eventually(t, "$LATEST still Active on its stored code", func() (bool, string) {
		st := getFn(t, ns, "durable").Status
		args := loadArgs(t, ns, controllers.WorkloadName("durable", "$LATEST"))
		return st.State == lambdav1alpha1.StateActive && st.LastUpdateStatus != lambdav1alpha1.LastUpdateFailed && st.CodeSha256 == b1 && slices.Equal(args, []string{wantLoad}),
			fmt.Sprintf("state %s lastUpdate %s (%s) code %s load %v", st.State, st.LastUpdateStatus, st.LastUpdateStatusReason, st.CodeSha256, args)
	})
	if n := src.gets.Load() - gets; n != 0 {
		t.Fatalf("the restarted manager downloaded the source %d times; want 0", n)
	}

	// The source is replaced by new code, and the Function updated to it.
	v2zip := ziptest.Bootstrap(t, "#!/bin/sh\necho v2\n")
	h2, b2 := ziptest.Digest(v2zip)
	src.set(v2zip)
	f = getFn(t, ns, "durable")
	f.Spec.Code.SHA256 = h2
	if err := k8s.Update(ctx, f); err != nil {
		t.Fatal(err)
	}
	eventually(t, "$LATEST on the new code", func() (bool, string) {
		st := getFn(t, ns, "durable").Status
		return st.CodeSha256 == b2 && st.CodeStoreRef != "" && st.CodeStoreRef != ref1, fmt.Sprintf("code %s ref %s", st.CodeSha256, st.CodeStoreRef)
	})
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(v), &ver); err != nil {
		t.Fatal(err)
	}
	if ver.Status.CodeSha256 != b1 || ver.Status.CodeStoreRef != ref1 {
		t.Fatalf("version 1 after the source changed: code %s ref %s; want %s %s", ver.Status.CodeSha256, ver.Status.CodeStoreRef, b1, ref1)
	}
	if args := loadArgs(t, ns, controllers.WorkloadName("durable", "1")); !slices.Equal(args, []string{wantLoad}) {
		t.Fatalf("version 1 loads %v; want %s", args, wantLoad)
	}
	if !bytes.Equal(readStore(t, store, h1), v1zip) || !bytes.Equal(readStore(t, store, h2), v2zip) {
		t.Fatal("the store does not serve both archives")
	}
}

// TestGCDeletesOnlyUnreferenced: the collector deletes content that no Function, Version or
// LayerVersion references once it has stayed unreferenced for the grace period, at most
// MaxDeletes per collection, never what a Function runs; a deleted Function's code goes
// after the grace too.
func TestGCDeletesOnlyUnreferenced(t *testing.T) {
	ctx := context.Background()
	host := registrytest.Start(t)
	repo := host + "/klambda/code"
	store, err := codestore.NewOCI(codestore.OCIOptions{Repository: repo, PlainHTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	startManager(t, repo)
	ns := newNamespace(t)
	used := ziptest.Bootstrap(t, "#!/bin/sh\necho used\n")
	hUsed, bUsed := ziptest.Digest(used)
	if err := k8s.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "code", Namespace: ns}, BinaryData: map[string][]byte{"code.zip": used}}); err != nil {
		t.Fatal(err)
	}
	fn := &lambdav1alpha1.Function{
		ObjectMeta: metav1.ObjectMeta{Name: "gc", Namespace: ns},
		Spec: lambdav1alpha1.FunctionSpec{FunctionConfiguration: lambdav1alpha1.FunctionConfiguration{
			PackageType: lambdav1alpha1.PackageTypeZip, Runtime: "provided.al2023", Handler: "bootstrap",
			Code: lambdav1alpha1.FunctionCode{CodeSource: lambdav1alpha1.CodeSource{ConfigMapRef: &lambdav1alpha1.ConfigMapCodeSource{Name: "code", Key: "code.zip"}}},
		}},
	}
	if err := k8s.Create(ctx, fn); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the function's code in the store", func() (bool, string) {
		st := getFn(t, ns, "gc").Status
		return st.CodeSha256 == bUsed && st.CodeStoreRef != "", fmt.Sprintf("code %s ref %q", st.CodeSha256, st.CodeStoreRef)
	})
	var garbage []string
	for i := range 3 {
		z := ziptest.Bootstrap(t, fmt.Sprintf("garbage %d", i))
		h, _ := ziptest.Digest(z)
		p := t.TempDir() + "/z.zip"
		if err := os.WriteFile(p, z, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := store.Put(ctx, p, h); err != nil {
			t.Fatal(err)
		}
		garbage = append(garbage, h)
	}
	now := time.Unix(1_000_000, 0)
	gc := &controllers.CodeStoreGC{Reader: k8s, Store: store, Grace: time.Hour, MaxDeletes: 2, Now: func() time.Time { return now }}
	collect := func(after time.Duration) []string {
		t.Helper()
		now = now.Add(after)
		d, err := gc.Collect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	if d := collect(0); len(d) != 0 {
		t.Fatalf("first collection deleted %v; nothing has been unreferenced for the grace yet", d)
	}
	if d := collect(30 * time.Minute); len(d) != 0 {
		t.Fatalf("deleted %v within the grace", d)
	}
	d1 := collect(31 * time.Minute)
	if len(d1) != 2 {
		t.Fatalf("deleted %v after the grace; want 2 (MaxDeletes)", d1)
	}
	d2 := collect(time.Minute)
	all := append(d1, d2...)
	slices.Sort(all)
	slices.Sort(garbage)
	if !slices.Equal(all, garbage) {
		t.Fatalf("deleted %v; want the garbage %v", all, garbage)
	}
	if l, _ := store.List(ctx); !slices.Equal(l, []string{hUsed}) {
		t.Fatalf("store holds %v; want only the function's %s", l, hUsed)
	}

	if err := k8s.Delete(ctx, fn); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the function gone", func() (bool, string) {
		err := k8s.Get(ctx, client.ObjectKeyFromObject(fn), &lambdav1alpha1.Function{})
		return client.IgnoreNotFound(err) == nil && err != nil, fmt.Sprint(err)
	})
	if d := collect(time.Minute); len(d) != 0 {
		t.Fatalf("deleted %v at once; the grace applies", d)
	}
	if d := collect(61 * time.Minute); !slices.Equal(d, []string{hUsed}) {
		t.Fatalf("deleted %v; want the deleted function's code %s", d, hUsed)
	}
	if l, _ := store.List(ctx); len(l) != 0 {
		t.Fatalf("store holds %v; want nothing", l)
	}
}

// TestImageDigestSurvivesRestart: an Image function's tag is resolved once per code.imageUri
// (as Lambda resolves a tag only on a code update) and kept in status.resolvedImageUri:
// after the tag is re-pointed and the manager restarts with nothing in memory, $LATEST
// still runs the digest it had, and a configuration-only update does not ask the registry
// again; a change of code.imageUri resolves again. A tag the registry does not have fails
// the function with InvalidImage (Stalled), not a silently unpinned tag.
func TestImageDigestSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	var manifestQueries atomic.Int64 // the manager's questions about team/fn's tags
	// On 127.0.0.2, which go-containerregistry asks over TLS unless told otherwise: the
	// manager reaches it (as code store and as the image's registry) only because
	// startManager lists it in plainHTTPRegistries.
	host := registrytest.StartOn(t, "127.0.0.2:0", func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if (r.Method == http.MethodHead || r.Method == http.MethodGet) && strings.HasPrefix(r.URL.Path, "/v2/team/fn/manifests/") {
				manifestQueries.Add(1)
			}
			h.ServeHTTP(w, r)
		})
	})
	stop := startManager(t, host+"/klambda/code")
	ns := newNamespace(t)
	ref := host + "/team/fn:v1"
	push := func(ref string) string {
		img, err := random.Image(64, 1)
		if err != nil {
			t.Fatal(err)
		}
		tag, _ := name.NewTag(ref, name.Insecure)
		if err := remote.Write(tag, img); err != nil {
			t.Fatal(err)
		}
		d, _ := img.Digest()
		return host + "/team/fn@" + d.String()
	}
	first := push(ref)
	fn := &lambdav1alpha1.Function{
		ObjectMeta: metav1.ObjectMeta{Name: "img", Namespace: ns},
		Spec: lambdav1alpha1.FunctionSpec{FunctionConfiguration: lambdav1alpha1.FunctionConfiguration{
			PackageType: lambdav1alpha1.PackageTypeImage,
			Code:        lambdav1alpha1.FunctionCode{ImageURI: ref},
		}},
	}
	if err := k8s.Create(ctx, fn); err != nil {
		t.Fatal(err)
	}
	// The image of the serving revision's Deployment (an update runs a new revision beside
	// the old one and switches to it).
	image := func() string {
		name := getFn(t, ns, "img").Status.ServingDeployment
		if name == "" {
			name = controllers.WorkloadName("img", "$LATEST")
		}
		var dep appsv1.Deployment
		if err := k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &dep); err != nil {
			return ""
		}
		for _, c := range dep.Spec.Template.Spec.Containers {
			if c.Name == "function" {
				return c.Image
			}
		}
		return ""
	}
	eventually(t, "pinned to the first digest", func() (bool, string) {
		st := getFn(t, ns, "img").Status
		return st.ResolvedImageURI == first && st.ImageURI == ref && image() == first, fmt.Sprintf("resolved %q from %q image %q state %s %s", st.ResolvedImageURI, st.ImageURI, image(), st.State, st.StateReason)
	})
	stop()
	push(ref) // the tag is re-pointed while the manager is down
	startManager(t, host+"/klambda/code")
	f := getFn(t, ns, "img")
	f.Labels = map[string]string{"touched": "1"}
	if err := k8s.Update(ctx, f); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	if st := getFn(t, ns, "img").Status; st.ResolvedImageURI != first || image() != first {
		t.Fatalf("after a restart with a re-pointed tag: resolved %q, image %q; want %s", st.ResolvedImageURI, image(), first)
	}
	// A configuration-only update (a new generation, same code.imageUri): the digest is
	// kept and the registry is not asked.
	asked := manifestQueries.Load()
	f = getFn(t, ns, "img")
	f.Spec.MemorySize = 256
	if err := k8s.Update(ctx, f); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the configuration-only update is applied", func() (bool, string) {
		f := getFn(t, ns, "img")
		return f.Status.ObservedGeneration == f.Generation && f.Status.State == lambdav1alpha1.StateActive && f.Status.RevisionID != "",
			fmt.Sprintf("generation %d observed %d state %s", f.Generation, f.Status.ObservedGeneration, f.Status.State)
	})
	if st := getFn(t, ns, "img").Status; st.ResolvedImageURI != first || image() != first {
		t.Errorf("a configuration-only update re-resolved the tag: resolved %q, image %q; want %s", st.ResolvedImageURI, image(), first)
	}
	if n := manifestQueries.Load() - asked; n != 0 {
		t.Errorf("a configuration-only update asked the registry %d times; want 0", n)
	}
	// A code update (code.imageUri changes) resolves the new reference.
	third := push(host + "/team/fn:v2")
	f = getFn(t, ns, "img")
	f.Spec.Code.ImageURI = host + "/team/fn:v2"
	if err := k8s.Update(ctx, f); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the code update resolves the new tag", func() (bool, string) {
		st := getFn(t, ns, "img").Status
		return st.ResolvedImageURI == third && image() == third, fmt.Sprintf("resolved %q image %q", st.ResolvedImageURI, image())
	})
	bad := &lambdav1alpha1.Function{
		ObjectMeta: metav1.ObjectMeta{Name: "img-missing", Namespace: ns},
		Spec: lambdav1alpha1.FunctionSpec{FunctionConfiguration: lambdav1alpha1.FunctionConfiguration{
			PackageType: lambdav1alpha1.PackageTypeImage,
			Code:        lambdav1alpha1.FunctionCode{ImageURI: host + "/team/none:v1"},
		}},
	}
	if err := k8s.Create(ctx, bad); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a missing tag fails the function with InvalidImage", func() (bool, string) {
		st := getFn(t, ns, "img-missing").Status
		return st.State == lambdav1alpha1.StateFailed && st.StateReasonCode == lambdav1alpha1.StateReasonInvalidImage && image2(t, ns) == "",
			fmt.Sprintf("state %s %s %s", st.State, st.StateReasonCode, st.StateReason)
	})
}

func image2(t *testing.T, ns string) string {
	var dep appsv1.Deployment
	if err := k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: controllers.WorkloadName("img-missing", "$LATEST")}, &dep); err != nil {
		return ""
	}
	return "exists"
}
