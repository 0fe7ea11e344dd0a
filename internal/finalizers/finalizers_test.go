package finalizers_test

import (
	"context"
	"fmt"
	"os"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	"github.com/klambda/klambda/internal/finalizers"
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

// TestStuckFinalizersAreRemoved: with no klambda controller running (uninstalled), Versions,
// LayerVersions and EventSourceMappings that carry klambda's finalizers can't be deleted; the
// cleanup removes exactly klambda's finalizers and the objects go, while another
// component's finalizer stays and live objects are left alone unless asked.
func TestStuckFinalizersAreRemoved(t *testing.T) {
	ctx := context.Background()
	c := srv.Client
	const ns = "tenant-gone"
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	om := func(name string, fin ...string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Namespace: ns, Name: name, Finalizers: fin}
	}
	objs := []client.Object{
		&lambdav1alpha1.Version{ObjectMeta: om("fn-1", "lambda.klambda.dev/version-in-use"), Spec: lambdav1alpha1.VersionSpec{FunctionName: "fn"}},
		&lambdav1alpha1.LayerVersion{ObjectMeta: om("layer-1", "lambda.klambda.dev/layer-in-use"), Spec: lambdav1alpha1.LayerVersionSpec{
			Content: lambdav1alpha1.CodeSource{ConfigMapRef: &lambdav1alpha1.ConfigMapCodeSource{Name: "cm", Key: "code.zip"}}}},
		&lambdav1alpha1.EventSourceMapping{ObjectMeta: om("orders", "lambda.klambda.dev/event-source-poller"), Spec: lambdav1alpha1.EventSourceMappingSpec{
			FunctionName: "fn", StartingPosition: lambdav1alpha1.StartingPositionTrimHorizon,
			NATSJetStream: &lambdav1alpha1.NATSJetStreamSource{Servers: []string{"nats://nats:4222"}, Stream: "S"}}},
		// Another component's finalizer next to ours: it stays.
		&lambdav1alpha1.Version{ObjectMeta: om("fn-2", "lambda.klambda.dev/version-in-use", "example.com/backup"), Spec: lambdav1alpha1.VersionSpec{FunctionName: "fn"}},
		// Not being deleted: left alone by default.
		&lambdav1alpha1.Version{ObjectMeta: om("fn-3", "lambda.klambda.dev/version-in-use"), Spec: lambdav1alpha1.VersionSpec{FunctionName: "fn"}},
	}
	for _, o := range objs {
		if err := c.Create(ctx, o); err != nil {
			t.Fatalf("creating %s: %v", o.GetName(), err)
		}
	}
	for _, o := range objs[:4] {
		if err := c.Delete(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	exists := func(o client.Object) bool {
		err := c.Get(ctx, client.ObjectKeyFromObject(o), o.DeepCopyObject().(client.Object))
		if err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
		return err == nil
	}
	// Stuck: deleted, still there.
	for _, o := range objs {
		if !exists(o) {
			t.Fatalf("%s went without its finalizer being removed", o.GetName())
		}
	}

	dry, err := finalizers.Remove(ctx, c, finalizers.Options{Namespace: ns, DryRun: true})
	if err != nil || len(dry) != 4 {
		t.Fatalf("dry run: %+v, %v", dry, err)
	}
	if !exists(objs[0]) {
		t.Fatal("the dry run changed something")
	}
	cleaned, err := finalizers.Remove(ctx, c, finalizers.Options{Namespace: ns})
	if err != nil || len(cleaned) != 4 {
		t.Fatalf("cleanup: %+v, %v", cleaned, err)
	}
	for _, o := range objs[:3] {
		if exists(o) {
			t.Errorf("%s is still there after the cleanup", o.GetName())
		}
	}
	var v lambdav1alpha1.Version
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "fn-2"}, &v); err != nil || len(v.Finalizers) != 1 || v.Finalizers[0] != "example.com/backup" {
		t.Errorf("fn-2: finalizers %v, %v; want only example.com/backup", v.Finalizers, err)
	}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "fn-3"}, &v); err != nil || len(v.Finalizers) != 1 {
		t.Errorf("a live Version lost its finalizer without -include-live: %v, %v", v.Finalizers, err)
	}
	// Before removing klambda for good: live objects too; then the namespace's contents
	// delete at once.
	if cleaned, err := finalizers.Remove(ctx, c, finalizers.Options{Namespace: ns, IncludeLive: true}); err != nil || len(cleaned) != 1 {
		t.Fatalf("include-live: %+v, %v", cleaned, err)
	}
	if err := c.Delete(ctx, objs[4]); err != nil {
		t.Fatal(err)
	}
	if exists(objs[4]) {
		t.Error("fn-3 still there after its finalizer was removed and it was deleted")
	}
}
