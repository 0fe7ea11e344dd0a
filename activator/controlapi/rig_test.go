package controlapi_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/activator/controlapi"
	"github.com/klambda/klambda/activator/testrig"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	"github.com/klambda/klambda/controllers"
	"github.com/klambda/klambda/internal/codestore"
	"github.com/klambda/klambda/internal/codestore/registrytest"
	"github.com/klambda/klambda/test/apiserver"
	"github.com/klambda/klambda/test/ziptest"

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
// Handler over the same apiserver, served by testrig.Server (the lean server cmd/activator serves plain HTTP with), and aws-sdk-go-v2's
// Lambda client pointed at it under /namespaces/<ns>.
type rig struct {
	ns      string
	store   codestore.Store
	handler *controlapi.Handler
	server  *testrig.Server
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
	r.server = testrig.NewServer(r.handler) // on the Invoke API's listener, as cmd/activator serves plain HTTP
	t.Cleanup(r.server.Close)
	return r
}

func startManager(t *testing.T, repo string) {
	t.Helper()
	host, _, _ := strings.Cut(repo, "/")
	cfg, err := controllers.ParseConfig([]byte(fmt.Sprintf(`shimImage: registry.test/runtime-shim:test
resolveImageTags: false
egress: {allowLoopback: true}
plainHTTPRegistries: [%q]
codeStore: {repository: %q, gcInterval: 0s}
`, host, repo)))
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

// newAPIRig is newRig with aws-sdk-go-v2's client of its namespace (no token) and, unless
// fn is "", function fn created from a zip through the API and Active.
func newAPIRig(t *testing.T, fn string) (*rig, *lambda.Client) {
	t.Helper()
	r := newRig(t)
	api := r.sdk("")
	if fn != "" {
		r.createActive(t, api, fn)
	}
	return r, api
}

// createActive creates a function from a zip through the API and waits for FunctionActiveV2.
func (r *rig) createActive(t *testing.T, api *lambda.Client, name string) {
	t.Helper()
	ctx := context.Background()
	if _, err := api.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String(name), Role: aws.String(role),
		Runtime: types.RuntimeProvidedal2023, Handler: aws.String("bootstrap"), Code: &types.FunctionCode{ZipFile: ziptest.Bootstrap(t, name)}}); err != nil {
		t.Fatal(err)
	}
	if err := lambda.NewFunctionActiveV2Waiter(api).Wait(ctx, &lambda.GetFunctionInput{FunctionName: aws.String(name)}, time.Minute); err != nil {
		t.Fatal(err)
	}
}

func (r *rig) waitUpdated(t *testing.T, api *lambda.Client, name string) {
	t.Helper()
	if err := lambda.NewFunctionUpdatedV2Waiter(api).Wait(context.Background(), &lambda.GetFunctionInput{FunctionName: aws.String(name)}, time.Minute); err != nil {
		t.Fatal(err)
	}
}

// gitopsFunction is a function applied by another field manager (no API label).
func (r *rig) gitopsFunction(t *testing.T, name string) {
	t.Helper()
	ctx := context.Background()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: r.ns, Name: name + "-code"}, BinaryData: map[string][]byte{"code.zip": ziptest.Bootstrap(t, name)}}
	if err := k8s.Create(ctx, cm); err != nil {
		t.Fatal(err)
	}
	f := &lambdav1alpha1.Function{ObjectMeta: metav1.ObjectMeta{Namespace: r.ns, Name: name}}
	f.Spec.Runtime, f.Spec.Handler = "provided.al2023", "bootstrap"
	f.Spec.Code.ConfigMapRef = &lambdav1alpha1.ConfigMapCodeSource{Name: cm.Name, Key: "code.zip"}
	if err := k8s.Create(ctx, f, client.FieldOwner("argocd-controller")); err != nil {
		t.Fatal(err)
	}
}

// wantErr fails unless err is the exception target points to, with status and a message
// containing msg.
func wantErr(t *testing.T, what string, err error, target any, code int, msg string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error", what)
	}
	if !errors.As(err, target) {
		t.Fatalf("%s: errors.As(%T) failed: %v", what, target, err)
	}
	if s := status(err); s != code {
		t.Errorf("%s: status %d, want %d (%v)", what, s, code, err)
	}
	if !strings.Contains(err.Error(), msg) {
		t.Errorf("%s: %q does not say %q", what, err.Error(), msg)
	}
}
