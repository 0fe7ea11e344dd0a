package controlapi_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/go-logr/logr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/activator/controlapi"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	"github.com/klambda/klambda/controllers"
	"github.com/klambda/klambda/internal/codestore"
	"github.com/klambda/klambda/internal/codestore/registrytest"
	"github.com/klambda/klambda/test/apiserver"

	"github.com/klambda/klambda/internal/sdkbody"
)

var (
	srv        *apiserver.Server
	restConfig *rest.Config
	k8s        client.Client
	clientset  kubernetes.Interface
)

func TestMain(m *testing.M) {
	var err error
	if srv, err = apiserver.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	restConfig, k8s = srv.Config, srv.Client
	clientset = kubernetes.NewForConfigOrDie(restConfig)
	code := m.Run()
	_ = srv.Stop()
	os.Exit(code)
}

// rig is the control-plane API in-process: the real controllers (klambda's manager, with
// a code store in a real distribution registry) over a real kube-apiserver, the API's
// Handler over the same apiserver, served by an httptest server, and aws-sdk-go-v2's
// Lambda client pointed at it under /namespaces/<ns>.
type rig struct {
	ns      string
	store   codestore.Store
	handler *controlapi.Handler
	server  *httptest.Server
}

var managerMu sync.Mutex

func newRig(t *testing.T) *rig {
	t.Helper()
	repo := registrytest.Start(t) + "/klambda/code"
	// One manager at a time: every test's manager would reconcile every namespace.
	managerMu.Lock()
	t.Cleanup(managerMu.Unlock)
	startManager(t, repo)
	store, err := codestore.NewOCI(codestore.OCIOptions{Repository: repo, PlainHTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{ns: newNamespace(t), store: store}
	r.handler = &controlapi.Handler{DefaultNamespace: "default", Region: "us-east-1", AccountID: "000000000000",
		Client: k8s, Store: store, NamespaceConcurrency: 100, Log: logr.Discard(),
		Next: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("X-Amzn-Errortype", "UnknownOperationException")
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"Type":"User","message":"unknown operation"}`))
		})}
	r.server = httptest.NewServer(r.handler)
	t.Cleanup(r.server.Close)
	return r
}

func startManager(t *testing.T, repo string) {
	t.Helper()
	cfg, err := controllers.ParseConfig([]byte(fmt.Sprintf(`shimImage: registry.test/runtime-shim:test
resolveImageTags: false
egress: {allowLoopback: true}
codeStore: {repository: %q, plainHTTP: true, gcInterval: 0s}
`, repo)))
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
	t.Cleanup(apiserver.Run(mgr, func(err error) { t.Errorf("manager: %v", err) }))
}

func newNamespace(t *testing.T) string { return srv.NewNamespace(t, "api") }

// sdk is aws-sdk-go-v2's Lambda client for the rig's namespace, sending token as the
// session token (as the CLI does with AWS_SESSION_TOKEN); no retries, so that each error
// is the API's answer to one request.
func (r *rig) sdk(token string) *lambda.Client {
	return lambda.New(lambda.Options{
		Region:           "us-east-1",
		Credentials:      credentials.NewStaticCredentialsProvider("klambda", "unused", token),
		BaseEndpoint:     aws.String(r.server.URL + "/namespaces/" + r.ns),
		RetryMaxAttempts: 1,
		HTTPClient:       sdkbody.Client(0), // aws-sdk-go-v2 may close the body under net/http (internal/sdkbody)
	})
}

func (r *rig) function(t *testing.T, name string) *lambdav1alpha1.Function {
	t.Helper()
	var f lambdav1alpha1.Function
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: r.ns, Name: name}, &f); err != nil {
		t.Fatal(err)
	}
	return &f
}
