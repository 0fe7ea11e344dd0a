package controllers

import (
	"archive/zip"
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	"github.com/klambda/klambda/test/apiserver"
)

var (
	k8s client.Client
	// testRestConfig reaches the test's kube-apiserver (for watches).
	testRestConfig *rest.Config
	testCfg        Config
	testServer     *apiserver.Server
)

func TestMain(m *testing.M) {
	srv, err := apiserver.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testServer = srv
	code := func() int {
		defer srv.Stop()
		ctrl.SetLogger(zap.New(zap.UseDevMode(true), zap.Level(zapcore.Level(zapLevel()))))
		mgr, err := srv.NewManager()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		f := false
		// The tests serve code on loopback, which the egress policy refuses by default.
		testCfg, _ = ParseConfig([]byte("shimImage: registry.test/runtime-shim:test\nimagePullPolicy: IfNotPresent\negress: {allowLoopback: true}\nfunctionUrls: {domain: lambda.test}\n"))
		testCfg.ResolveImageTags = &f
		if err := Setup(mgr, testCfg); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer apiserver.Run(mgr, func(err error) { fmt.Fprintln(os.Stderr, "manager:", err) })()
		testRestConfig = srv.Config
		k8s = srv.Client
		return m.Run()
	}()
	os.Exit(code)
}

func zapLevel() int8 {
	if os.Getenv("KLAMBDA_TEST_VERBOSE") != "" {
		return -1
	}
	return 2 // errors only
}

func ptrBool(b bool) *bool { return &b }

// newNamespace gives each test its own namespace.
func newNamespace(t *testing.T) string { return testServer.NewNamespace(t, "t") }

type zf struct {
	name, body string
	mode       fs.FileMode
}

func makeZip(t *testing.T, files ...zf) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range files {
		h := &zip.FileHeader{Name: f.name, Method: zip.Deflate}
		if f.mode == 0 {
			f.mode = 0o644
		}
		h.SetMode(f.mode)
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(f.body))
	}
	zw.Close()
	return buf.Bytes()
}

func createZipConfigMap(t *testing.T, ns, name string, data []byte) {
	t.Helper()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, BinaryData: map[string][]byte{"code.zip": data}}
	if err := k8s.Create(context.Background(), cm); err != nil {
		t.Fatal(err)
	}
}

func zipFunction(ns, name, cm string, layers ...string) *lambdav1alpha1.Function {
	return &lambdav1alpha1.Function{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: lambdav1alpha1.FunctionSpec{FunctionConfiguration: lambdav1alpha1.FunctionConfiguration{
			PackageType: lambdav1alpha1.PackageTypeZip,
			Runtime:     "provided.al2023",
			Handler:     "bootstrap",
			Code:        lambdav1alpha1.FunctionCode{CodeSource: lambdav1alpha1.CodeSource{ConfigMapRef: &lambdav1alpha1.ConfigMapCodeSource{Name: cm, Key: "code.zip"}}},
			Layers:      layers,
		}},
	}
}

func create(t *testing.T, obj client.Object) {
	t.Helper()
	if err := k8s.Create(context.Background(), obj); err != nil {
		t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
	}
}

// eventually polls cond until it returns "" (success) or the deadline passes.
func eventually(t *testing.T, what string, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		if last = cond(); last == "" {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: still %s", what, last)
}

func getFunction(t *testing.T, ns, name string) *lambdav1alpha1.Function {
	t.Helper()
	var fn lambdav1alpha1.Function
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &fn); err != nil {
		t.Fatal(err)
	}
	return &fn
}

// waitFunction waits for the Function's status to describe its generation and satisfy ok.
func waitFunction(t *testing.T, ns, name string, ok func(*lambdav1alpha1.Function) bool) *lambdav1alpha1.Function {
	t.Helper()
	var fn *lambdav1alpha1.Function
	eventually(t, "Function "+name, func() string {
		fn = getFunction(t, ns, name)
		if fn.Status.ObservedGeneration == fn.Generation && ok(fn) {
			return ""
		}
		return fmt.Sprintf("generation %d, status %+v", fn.Generation, fn.Status)
	})
	return fn
}

func isActive(fn *lambdav1alpha1.Function) bool {
	return fn.Status.State == lambdav1alpha1.StateActive && fn.Status.LastUpdateStatus == lambdav1alpha1.LastUpdateSuccessful
}

func getDeployment(t *testing.T, ns, name string) *appsv1.Deployment {
	t.Helper()
	var d appsv1.Deployment
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &d); err != nil {
		t.Fatal(err)
	}
	return &d
}

func updateFunction(t *testing.T, ns, name string, mutate func(*lambdav1alpha1.Function)) {
	t.Helper()
	for i := 0; i < 10; i++ {
		fn := getFunction(t, ns, name)
		mutate(fn)
		err := k8s.Update(context.Background(), fn)
		if err == nil {
			return
		}
		if !apierrors.IsConflict(err) {
			t.Fatal(err)
		}
	}
	t.Fatal("too many conflicts updating the function")
}

// updateObject re-reads obj and applies mutate until the update doesn't conflict.
func updateObject[T client.Object](t *testing.T, obj T, mutate func(T)) {
	t.Helper()
	for i := 0; i < 10; i++ {
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
			t.Fatal(err)
		}
		mutate(obj)
		err := k8s.Update(context.Background(), obj)
		if err == nil {
			return
		}
		if !apierrors.IsConflict(err) {
			t.Fatal(err)
		}
	}
	t.Fatal("too many conflicts")
}
