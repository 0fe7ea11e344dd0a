package statuspatch

import (
	"context"
	"errors"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

func setup(t *testing.T) (client.Client, *int) {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := lambdav1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	a := &lambdav1alpha1.Alias{ObjectMeta: metav1.ObjectMeta{Name: "a", Namespace: "ns", Generation: 2}}
	patches := 0
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(a).WithStatusSubresource(a).
		WithInterceptorFuncs(interceptor.Funcs{SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, p client.Patch, opts ...client.SubResourcePatchOption) error {
			patches++
			return c.SubResource(sub).Patch(ctx, obj, p, opts...)
		}}).Build()
	return c, &patches
}

func get(t *testing.T, c client.Client) *lambdav1alpha1.Alias {
	t.Helper()
	var a lambdav1alpha1.Alias
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: "ns", Name: "a"}, &a); err != nil {
		t.Fatal(err)
	}
	return &a
}

// One patch at the end, with observedGeneration, only when the status changed.
func TestCloseObservesAndPatchesOnce(t *testing.T) {
	ctx := context.Background()
	c, patches := setup(t)
	a := get(t, c)
	p := New(c, a)
	a.Status.Name = "prod"
	var err error
	p.Close(ctx, &err, func(error) { a.Status.ObservedGeneration = a.Generation })
	if err != nil || *patches != 1 {
		t.Fatalf("err %v, patches %d", err, *patches)
	}
	if got := get(t, c); got.Status.Name != "prod" || got.Status.ObservedGeneration != 2 {
		t.Errorf("status %+v", got.Status)
	}
	// Nothing changed: no patch.
	a = get(t, c)
	p = New(c, a)
	p.Close(ctx, &err, func(error) { a.Status.ObservedGeneration = a.Generation })
	if err != nil || *patches != 1 {
		t.Errorf("unchanged status patched: err %v, patches %d", err, *patches)
	}
}

// A failed reconcile still observes its generation, and observe learns the error; a
// Pending one (an object being deleted) writes its status without observing.
func TestCloseObservesFailuresButNotPending(t *testing.T) {
	ctx := context.Background()
	c, _ := setup(t)
	a := get(t, c)
	p := New(c, a)
	a.Status.Name = "failing"
	err := errors.New("boom")
	var seen error
	p.Close(ctx, &err, func(rerr error) { seen = rerr; a.Status.ObservedGeneration = a.Generation })
	if got := get(t, c); got.Status.Name != "failing" || got.Status.ObservedGeneration != 2 || seen == nil || seen.Error() != "boom" {
		t.Errorf("status %+v, observe saw %v", got.Status, seen)
	}
	a = get(t, c)
	a.Status.ObservedGeneration = 0
	p = New(c, a)
	p.Pending()
	a.Status.Name = "deleting"
	err = nil
	p.Close(ctx, &err, func(error) { a.Status.ObservedGeneration = 7 })
	if got := get(t, c); err != nil || got.Status.Name != "deleting" || got.Status.ObservedGeneration != 2 {
		t.Errorf("err %v, status %+v", err, got.Status)
	}
}

// A copy older than the server's object is a conflict, not a diff that misses fields.
func TestStaleCopyConflicts(t *testing.T) {
	ctx := context.Background()
	c, _ := setup(t)
	stale := get(t, c)
	fresh := stale.DeepCopy()
	fresh.Status.Name = "other"
	if err := c.Status().Update(ctx, fresh); err != nil {
		t.Fatal(err)
	}
	p := New(c, stale)
	stale.Status.FunctionVersion = "1"
	var err error
	p.Close(ctx, &err, func(error) {})
	if !apierrors.IsConflict(err) {
		t.Errorf("err %v, want a conflict", err)
	}
}
