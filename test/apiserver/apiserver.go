// Package apiserver runs integration tests against a real kube-apiserver and etcd
// (controller-runtime's envtest pointed at binaries built by hack/envtest-assets.sh),
// with klambda's CRDs installed.
package apiserver

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"k8s.io/client-go/discovery"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crconfig "sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// Server is a running kube-apiserver with klambda's CRDs installed.
type Server struct {
	Config  *rest.Config
	Client  client.Client
	Version string
	env     *envtest.Environment
}

// RepoRoot is the repository's top folder, found from this file's location.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Start starts etcd and kube-apiserver from KUBEBUILDER_ASSETS and installs the CRDs in
// config/crd/bases. It fails, rather than skips, when the binaries are missing: the
// integration tests are part of `make test`, which prepares them.
func Start() (*Server, error) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		return nil, fmt.Errorf("KUBEBUILDER_ASSETS is not set: run the tests with `make test` " +
			"(or KUBEBUILDER_ASSETS=$(hack/envtest-assets.sh) go test ./...)")
	}
	if err := lambdav1alpha1.AddToScheme(scheme.Scheme); err != nil {
		return nil, err
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(RepoRoot(), "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("starting kube-apiserver and etcd: %w", err)
	}
	s := &Server{Config: cfg, env: env}
	c, err := client.New(cfg, client.Options{Scheme: scheme.Scheme})
	if err != nil {
		_ = env.Stop()
		return nil, fmt.Errorf("building client: %w", err)
	}
	s.Client = c
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		_ = env.Stop()
		return nil, err
	}
	v, err := dc.ServerVersion()
	if err != nil {
		_ = env.Stop()
		return nil, fmt.Errorf("asking the server its version: %w", err)
	}
	s.Version = v.GitVersion
	fmt.Printf("integration tests: real kube-apiserver %s (platform %s) with etcd, from %s\n",
		v.GitVersion, v.Platform, os.Getenv("KUBEBUILDER_ASSETS"))
	return s, nil
}

// Stop stops kube-apiserver and etcd.
func (s *Server) Stop() error { return s.env.Stop() }

// NewManager is a controller manager on this server for a test: no metrics or health
// listeners, and controller names may repeat (tests build several managers in one process).
func (s *Server) NewManager() (ctrl.Manager, error) {
	skip := true
	return ctrl.NewManager(s.Config, ctrl.Options{
		Scheme:                 scheme.Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             crconfig.Controller{SkipNameValidation: &skip},
	})
}

// Run starts mgr in the background. stop cancels it and returns once it has ended (so
// its pollers and watches end before the apiserver does); stop may be called more than once.
// A manager that ends by itself with an error reports it through report (nil: ignored).
func Run(mgr ctrl.Manager, report func(error)) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil && report != nil {
			report(err)
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { cancel(); <-done }) }
}

var nsSeq atomic.Int64

// NewNamespace creates a namespace of its own for a test: prefix, then a number unique
// across runs sharing an apiserver.
func (s *Server) NewNamespace(t testing.TB, prefix string) string {
	t.Helper()
	ns := fmt.Sprintf("%s%d-%d", prefix, time.Now().Unix()%100000, nsSeq.Add(1))
	if err := s.Client.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	return ns
}
