package async

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// TestFunctionDestinationNeedsTheSourcesServiceAccount: the activator invokes a function
// destination only when the source function's ServiceAccount may invoke it; otherwise the
// record is not delivered (counted as a destination failure), so a Function author can't
// borrow the activator's authority to invoke a function they may not.
func TestFunctionDestinationNeedsTheSourcesServiceAccount(t *testing.T) {
	scheme := runtime.NewScheme()
	_ = lambdav1alpha1.AddToScheme(scheme)
	fn := func(name, sa string) *lambdav1alpha1.Function {
		f := &lambdav1alpha1.Function{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}}
		f.Spec.ServiceAccountName = sa
		return f
	}
	v1 := &lambdav1alpha1.Version{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "viaalias-1"},
		Spec:   lambdav1alpha1.VersionSpec{FunctionName: "viaalias"},
		Status: lambdav1alpha1.VersionStatus{Version: "1", Configuration: &lambdav1alpha1.FunctionConfiguration{ServiceAccountName: "auditor"}}}
	live := &lambdav1alpha1.Alias{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "viaalias-live"},
		Spec:   lambdav1alpha1.AliasSpec{FunctionName: "viaalias", Name: "live", FunctionVersion: "1"},
		Status: lambdav1alpha1.AliasStatus{FunctionVersion: "1"}}
	reader := fake.NewClientBuilder().WithScheme(scheme).
		WithObjects(fn("intruder", ""), fn("allowed", "auditor"), fn("viaalias", ""), v1, live).
		WithStatusSubresource(&lambdav1alpha1.Version{}).Build()
	var mu sync.Mutex
	reviews := 0
	authz := &FunctionDestinationAuthorizer{Reader: reader, TTL: time.Minute,
		Review: func(_ context.Context, sar *authorizationv1.SubjectAccessReview) (bool, error) {
			mu.Lock()
			reviews++
			mu.Unlock()
			a := sar.Spec.ResourceAttributes
			return sar.Spec.User == "system:serviceaccount:default:auditor" && a.Verb == "invoke" &&
				a.Resource == "functions" && a.Group == "lambda.klambda.dev" && a.Name == "sink" && a.Namespace == "default", nil
		}}

	sinkCalls := make(chan InvokeRequest, 10)
	inv := newInvoker(func(req InvokeRequest, n int) InvokeResult {
		if req.Function == "sink" {
			sinkCalls <- req
		}
		return InvokeResult{StatusCode: 200, ExecutedVersion: "$LATEST", Payload: []byte(`"ok"`)}
	})
	toSink := &lambdav1alpha1.Destination{Function: &lambdav1alpha1.FunctionDestination{Name: "sink"}}
	cfgs := configs(map[string]Config{
		"intruder": {MaximumRetryAttempts: 0, MaximumEventAge: time.Hour, OnSuccess: toSink},
		"allowed":  {MaximumRetryAttempts: 0, MaximumEventAge: time.Hour, OnSuccess: toSink},
		"viaalias": {MaximumRetryAttempts: 0, MaximumEventAge: time.Hour, OnSuccess: toSink},
		"sink":     cfg(0, time.Hour),
	})
	m := NewMetrics(prometheus.NewRegistry())
	srv, err := StartServer(ServerOptions{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	nc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	q, err := NewQueue(ctx, nc, QueueOptions{Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	dst := NewDeliverer(q, nil)
	dst.FunctionDestinations = authz
	w := NewWorkers(q, inv, cfgs, dst, WorkerOptions{Concurrency: 4, AckWait: 5 * time.Second, ShutdownGrace: 2 * time.Second,
		Retry: fastRetry(), Log: testr.New(t), Metrics: m})
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(ctx) }()
	defer func() { cancel(); <-done; dst.Close() }()
	enqueue := func(fn, qualifier string) {
		if _, err := q.Enqueue(ctx, Event{Namespace: "default", Function: fn, Qualifier: qualifier, Payload: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}

	for i := 0; i < 3; i++ {
		enqueue("intruder", "")
	}
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(m.DestinationFailures.WithLabelValues("default", "intruder")) < 3 {
		if time.Now().After(deadline) {
			break
		}
		select {
		case req := <-sinkCalls:
			t.Fatalf("sink was invoked (%+v) for a function whose ServiceAccount may not invoke it", req)
		case <-time.After(50 * time.Millisecond):
		}
	}
	if n := testutil.ToFloat64(m.DestinationFailures.WithLabelValues("default", "intruder")); n != 3 {
		t.Errorf("refused deliveries counted %v, want 3", n)
	}
	mu.Lock()
	if reviews != 1 {
		t.Errorf("%d SubjectAccessReviews for three records of one source ServiceAccount; want 1 (cached)", reviews)
	}
	mu.Unlock()

	// A source running as a ServiceAccount with invoke on sink: delivered, directly or
	// through an alias whose version runs as it.
	enqueue("allowed", "")
	if r := receive(t, sinkCalls, 10*time.Second); r.Function != "sink" {
		t.Fatalf("%+v", r)
	}
	enqueue("viaalias", "live")
	receive(t, sinkCalls, 10*time.Second)
}
