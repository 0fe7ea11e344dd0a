package v1alpha1_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/test/apiserver"
)

// The tests in this package run against a real kube-apiserver with the CRDs in
// config/crd/bases installed: what the schema accepts and rejects is decided by the server.

var (
	k8s client.Client
	ctx = context.Background()
)

// validationNamespace holds the objects of the create checks, which are server-side dry runs.
const validationNamespace = "validation"

func TestMain(m *testing.M) {
	srv, err := apiserver.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	k8s = srv.Client
	code := 1
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: validationNamespace}}); err != nil {
		fmt.Fprintln(os.Stderr, "creating namespace:", err)
	} else {
		code = m.Run()
		fmt.Printf("validation cases run against the API server: %d\n", casesRun.Load())
	}
	if err := srv.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping kube-apiserver:", err)
	}
	os.Exit(code)
}

var namespaceCounter atomic.Int64

// newNamespace creates a namespace of its own for a test that persists objects.
func newNamespace(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("t%d-%s", namespaceCounter.Add(1), strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name())))
	if len(name) > 63 {
		name = strings.TrimRight(name[:63], "-")
	}
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
	return name
}

// with applies changes to a copy-free object, for building table rows from a valid base.
func with[T any](obj T, changes ...func(T)) T {
	for _, change := range changes {
		change(obj)
	}
	return obj
}

// createCheck is one row of a validation table: obj is created with a server-side dry run;
// want lists substrings the error must contain (the field path and the constraint's words),
// or is empty when the object must be accepted.
type createCheck struct {
	name string
	obj  client.Object
	want []string
}

func accept(name string, obj client.Object) createCheck { return createCheck{name, obj, nil} }

func reject(name string, obj client.Object, want ...string) createCheck {
	if len(want) == 0 {
		panic("reject needs the words of the error")
	}
	return createCheck{name, obj, want}
}

func runCreateChecks(t *testing.T, checks []createCheck) {
	t.Helper()
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			c.obj.SetNamespace(validationNamespace)
			err := k8s.Create(ctx, c.obj, client.DryRunAll)
			assertResult(t, err, c.want)
		})
	}
	countCases(len(checks))
}

func assertResult(t *testing.T, err error, want []string) {
	t.Helper()
	if len(want) == 0 {
		if err != nil {
			t.Fatalf("want accepted, got: %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("want rejected with %q, got accepted", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error does not contain %q:\n%v", w, err)
		}
	}
}

// updateCheck creates obj for real in a fresh namespace, applies change and updates it.
type updateCheck struct {
	name   string
	obj    client.Object
	change func(client.Object)
	want   []string
}

func updateTo[T client.Object](name string, obj T, change func(T), want ...string) updateCheck {
	return updateCheck{name, obj, func(o client.Object) { change(o.(T)) }, want}
}

func runUpdateChecks(t *testing.T, checks []updateCheck) {
	t.Helper()
	ns := newNamespace(t)
	for i, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			c.obj.SetNamespace(ns)
			c.obj.SetName(fmt.Sprintf("%s-%d", c.obj.GetName(), i))
			if err := k8s.Create(ctx, c.obj); err != nil {
				t.Fatalf("creating the original: %v", err)
			}
			c.change(c.obj)
			assertResult(t, k8s.Update(ctx, c.obj), c.want)
		})
	}
	countCases(len(checks))
}

var casesRun atomic.Int64

func countCases(n int) { casesRun.Add(int64(n)) }

func ptr[T any](v T) *T { return &v }
