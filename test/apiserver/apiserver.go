// Package apiserver runs integration tests against a real kube-apiserver and etcd
// (controller-runtime's envtest pointed at binaries built by hack/envtest-assets.sh),
// with klambda's CRDs installed.
package apiserver

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"k8s.io/client-go/discovery"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

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
