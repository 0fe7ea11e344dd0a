package controlapi_test

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crconfig "sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/klambda/klambda/activator/controlapi"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	"github.com/klambda/klambda/controllers"
	"github.com/klambda/klambda/internal/codestore"
	"github.com/klambda/klambda/internal/codestore/registrytest"
	"github.com/klambda/klambda/test/apiserver"
)

var (
	restConfig *rest.Config
	scheme     = runtime.NewScheme()
	k8s        client.Client
	clientset  kubernetes.Interface
	nsSeq      atomic.Int64
)

func TestMain(m *testing.M) {
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(lambdav1alpha1.AddToScheme(scheme))
	srv, err := apiserver.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	restConfig = srv.Config
	if k8s, err = client.New(restConfig, client.Options{Scheme: scheme}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
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
	skip := true
	mgr, err := ctrl.NewManager(restConfig, ctrl.Options{
		Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
		Controller: crconfig.Controller{SkipNameValidation: &skip},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := controllers.Setup(mgr, cfg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			t.Errorf("manager: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
}

func newNamespace(t *testing.T) string {
	t.Helper()
	ns := fmt.Sprintf("api%d-%d", time.Now().Unix()%100000, nsSeq.Add(1))
	if err := k8s.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	return ns
}

// sdk is aws-sdk-go-v2's Lambda client for the rig's namespace, sending token as the
// session token (as the CLI does with AWS_SESSION_TOKEN); no retries, so that each error
// is the API's answer to one request.
func (r *rig) sdk(token string) *lambda.Client {
	return lambda.New(lambda.Options{
		Region:           "us-east-1",
		Credentials:      credentials.NewStaticCredentialsProvider("klambda", "unused", token),
		BaseEndpoint:     aws.String(r.server.URL + "/namespaces/" + r.ns),
		RetryMaxAttempts: 1,
	})
}

func makeZip(t *testing.T, body string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	h := &zip.FileHeader{Name: "bootstrap", Method: zip.Deflate}
	h.SetMode(0o755)
	w, err := zw.CreateHeader(h)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = w.Write([]byte(body))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func digest(b []byte) (hexDigest, b64 string) {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:]), base64.StdEncoding.EncodeToString(s[:])
}

func (r *rig) function(t *testing.T, name string) *lambdav1alpha1.Function {
	t.Helper()
	var f lambdav1alpha1.Function
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: r.ns, Name: name}, &f); err != nil {
		t.Fatal(err)
	}
	return &f
}
