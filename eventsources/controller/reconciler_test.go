package controller_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/nats-io/nats-server/v2/server"
	gonats "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap/zapcore"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	"github.com/klambda/klambda/eventsources/controller"
	"github.com/klambda/klambda/eventsources/invokeclient/invoketest"
	"github.com/klambda/klambda/test/apiserver"
	"github.com/klambda/klambda/test/gitopshealth"
)

var srv *apiserver.Server

func TestMain(m *testing.M) {
	var err error
	ctrl.SetLogger(zap.New(zap.UseDevMode(false), zap.Level(zapcore.ErrorLevel)))
	srv, err = apiserver.Start()
	if err != nil {
		panic(err)
	}
	code := m.Run()
	_ = srv.Stop()
	os.Exit(code)
}

func ptr[T any](v T) *T { return &v }

// TestStatesFollowLambdasLifecycle drives a NATS mapping through create, disable, enable,
// update, an invalid filter and delete against a real kube-apiserver, with a real poller
// reading an embedded nats-server and invoking a fake activator.
func TestStatesFollowLambdasLifecycle(t *testing.T) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	defer ns.Shutdown()
	nc, err := gonats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"}}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var invoked []string
	fake := invoketest.New(func(c invoketest.Call) invoketest.Outcome {
		mu.Lock()
		invoked = append(invoked, string(c.Payload))
		mu.Unlock()
		return invoketest.Outcome{}
	})
	defer fake.Close()
	calls := func() int { mu.Lock(); defer mu.Unlock(); return len(invoked) }

	mgr, err := srv.NewManager()
	if err != nil {
		t.Fatal(err)
	}
	kube := kubernetes.NewForConfigOrDie(srv.Config)
	// The mapping acts as the namespace's default ServiceAccount, which may invoke fn.
	grantInvoke(t, ctx, "default", "default", "fn")
	b := &controller.Builder{Reader: mgr.GetAPIReader(), Invoker: fake.Invoker(), Authorizer: controller.KubeAuthorizer{Client: kube}}
	r := &controller.Reconciler{
		Client:  mgr.GetClient(),
		Builder: b,
		Pollers: &controller.Pollers{
			Kube: kube, LeaseNamespace: "default", Identity: "replica-" + string(uuid.NewUUID()),
			LeaseDuration: 2 * time.Second, RenewDeadline: 1500 * time.Millisecond, RetryPeriod: 200 * time.Millisecond,
			Build: b.Build, Log: pollerLog(),
		},
	}
	if err := r.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	defer apiserver.Run(mgr, nil)() // pollers stop before the apiserver does

	c := srv.Client
	esm := &lambdav1alpha1.EventSourceMapping{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "orders"},
		Spec: lambdav1alpha1.EventSourceMappingSpec{
			FunctionName:     "fn",
			BatchSize:        ptr(int32(10)),
			StartingPosition: lambdav1alpha1.StartingPositionTrimHorizon,
			NATSJetStream:    &lambdav1alpha1.NATSJetStreamSource{Servers: []string{ns.ClientURL()}, Stream: "ORDERS"},
		},
	}
	if err := c.Create(ctx, esm); err != nil {
		t.Fatal(err)
	}

	// Every state the object passes through, from a watch.
	var smu sync.Mutex
	var states []lambdav1alpha1.EventSourceMappingState
	// And what kstatus and Argo CD make of each write: a transitional state is InProgress,
	// every status names its generation and has a Ready condition of it.
	var verdictErrs []string
	judged := map[lambdav1alpha1.EventSourceMappingState]bool{}
	wc, err := client.NewWithWatch(srv.Config, client.Options{Scheme: scheme.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	w, err := wc.Watch(ctx, &lambdav1alpha1.EventSourceMappingList{}, client.InNamespace("default"))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	go func() {
		for ev := range w.ResultChan() {
			if o, ok := ev.Object.(*lambdav1alpha1.EventSourceMapping); ok {
				smu.Lock()
				if n := len(states); n == 0 || states[n-1] != o.Status.State {
					states = append(states, o.Status.State)
				}
				if msg := judgeWrite(t, o, judged); msg != "" {
					verdictErrs = append(verdictErrs, msg)
				}
				smu.Unlock()
			}
		}
	}()
	seen := func(s lambdav1alpha1.EventSourceMappingState) bool {
		smu.Lock()
		defer smu.Unlock()
		for _, x := range states {
			if x == s {
				return true
			}
		}
		return false
	}
	history := func() []lambdav1alpha1.EventSourceMappingState {
		smu.Lock()
		defer smu.Unlock()
		return append([]lambdav1alpha1.EventSourceMappingState(nil), states...)
	}
	get := func() *lambdav1alpha1.EventSourceMapping {
		var o lambdav1alpha1.EventSourceMapping
		if err := c.Get(ctx, client.ObjectKeyFromObject(esm), &o); err != nil {
			t.Fatal(err)
		}
		return &o
	}
	waitFor := func(what string, cond func(*lambdav1alpha1.EventSourceMapping) bool) *lambdav1alpha1.EventSourceMapping {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			o := get()
			if cond(o) {
				return o
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; status %+v", what, o.Status)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	settled := func(state lambdav1alpha1.EventSourceMappingState) func(*lambdav1alpha1.EventSourceMapping) bool {
		return func(o *lambdav1alpha1.EventSourceMapping) bool {
			return o.Status.State == state && o.Status.ObservedGeneration == o.Generation
		}
	}
	update := func(mutate func(*lambdav1alpha1.EventSourceMapping)) {
		t.Helper()
		// The status is written concurrently: retry spec updates on conflicts.
		if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			o := get()
			mutate(o)
			return c.Update(ctx, o)
		}); err != nil {
			t.Fatal(err)
		}
	}

	judge := func(state string, ready metav1.ConditionStatus, reason string, stalled bool, k status.Status, argo string) {
		t.Helper()
		u, v, err := gitopshealth.Read(ctx, c, "EventSourceMapping", client.ObjectKeyFromObject(esm))
		if err != nil {
			t.Fatal(err)
		}
		var o lambdav1alpha1.EventSourceMapping
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &o); err != nil {
			t.Fatal(err)
		}
		r := meta.FindStatusCondition(o.Status.Conditions, contract.ConditionReady)
		if r == nil || r.Status != ready || r.Reason != reason || r.ObservedGeneration != o.Generation ||
			meta.IsStatusConditionTrue(o.Status.Conditions, contract.ConditionStalled) != stalled ||
			meta.IsStatusConditionTrue(o.Status.Conditions, contract.ConditionReconciling) || v.Kstatus != k || v.Argo != argo {
			t.Errorf("%s: conditions %+v, %s; want Ready=%s(%s) stalled=%v, kstatus %s, Argo CD %s", state, o.Status.Conditions, v, ready, reason, stalled, k, argo)
		}
		t.Logf("TABLE| EventSourceMapping | %s | %s | %s | %s (%s) |", state, conditionsText(o.Status.Conditions), v.Kstatus, v.Argo, v.ArgoMessage)
	}

	o := waitFor("Enabled", settled(lambdav1alpha1.EventSourceMappingEnabled))
	judge("Enabled, polling", metav1.ConditionTrue, "Polling", false, status.CurrentStatus, "Healthy")

	// A broker that can't be reached: the poller retries, the mapping is Reconciling.
	down := &lambdav1alpha1.EventSourceMapping{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "unreachable"}, Spec: lambdav1alpha1.EventSourceMappingSpec{
		FunctionName: "fn", StartingPosition: lambdav1alpha1.StartingPositionTrimHorizon,
		NATSJetStream: &lambdav1alpha1.NATSJetStreamSource{Servers: []string{"nats://127.0.0.1:1"}, Stream: "ORDERS"}}}
	if err := c.Create(ctx, down); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		u, v, err := gitopshealth.Read(ctx, c, "EventSourceMapping", client.ObjectKeyFromObject(down))
		if err != nil {
			t.Fatal(err)
		}
		var d lambdav1alpha1.EventSourceMapping
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &d); err != nil {
			t.Fatal(err)
		}
		r := meta.FindStatusCondition(d.Status.Conditions, contract.ConditionReconciling)
		if r != nil && r.Reason == "PollerNotStarted" && d.Status.ObservedGeneration == d.Generation {
			if v.Kstatus != status.InProgressStatus || v.Argo != "Progressing" {
				t.Errorf("a poller that can't start: %s", v)
			}
			t.Logf("TABLE| EventSourceMapping | Enabled, its poller can't start (broker unreachable; retried) | %s | %s | %s (%s) |", conditionsText(d.Status.Conditions), v.Kstatus, v.Argo, v.ArgoMessage)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("unreachable broker: %+v", d.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := c.Delete(ctx, down); err != nil {
		t.Fatal(err)
	}
	for {
		var gone lambdav1alpha1.EventSourceMapping
		if err := c.Get(ctx, client.ObjectKeyFromObject(down), &gone); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the unreachable mapping was not deleted")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if o.Status.UUID != string(o.UID) || o.Status.StateTransitionReason != "USER_INITIATED" || len(o.Finalizers) == 0 ||
		o.Status.EventSourceMappingARN != "arn:aws:lambda:us-east-1:000000000000:event-source-mapping:"+string(o.UID) ||
		o.Status.LastProcessingResult != "No records processed" {
		t.Errorf("status %+v finalizers %v", o.Status, o.Finalizers)
	}
	if !seen(lambdav1alpha1.EventSourceMappingCreating) {
		t.Errorf("never Creating: %v", history())
	}

	if _, err := js.Publish(ctx, "orders.new", []byte(`{"n":1}`)); err != nil {
		t.Fatal(err)
	}
	waitFor("lastProcessingResult OK", func(o *lambdav1alpha1.EventSourceMapping) bool { return o.Status.LastProcessingResult == "OK" })

	update(func(o *lambdav1alpha1.EventSourceMapping) { o.Spec.Enabled = ptr(false) })
	waitFor("Disabled", settled(lambdav1alpha1.EventSourceMappingDisabled))
	judge("Disabled, as its spec says", metav1.ConditionTrue, "Disabled", false, status.CurrentStatus, "Healthy")
	if !seen(lambdav1alpha1.EventSourceMappingDisabling) {
		t.Errorf("never Disabling: %v", history())
	}
	before := calls()
	if _, err := js.Publish(ctx, "orders.new", []byte(`{"n":2}`)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if calls() != before {
		t.Errorf("invoked while disabled")
	}

	update(func(o *lambdav1alpha1.EventSourceMapping) { o.Spec.Enabled = ptr(true) })
	waitFor("Enabled again", settled(lambdav1alpha1.EventSourceMappingEnabled))
	if !seen(lambdav1alpha1.EventSourceMappingEnabling) {
		t.Errorf("never Enabling: %v", history())
	}
	deadline = time.Now().Add(10 * time.Second)
	for calls() == before {
		if time.Now().After(deadline) {
			t.Fatal("the record published while disabled was not delivered after enabling")
		}
		time.Sleep(20 * time.Millisecond)
	}

	update(func(o *lambdav1alpha1.EventSourceMapping) { o.Spec.BatchSize = ptr(int32(5)) })
	waitFor("Enabled after the update", settled(lambdav1alpha1.EventSourceMappingEnabled))
	judge("Enabled after an update", metav1.ConditionTrue, "Polling", false, status.CurrentStatus, "Healthy")
	if !seen(lambdav1alpha1.EventSourceMappingUpdating) {
		t.Errorf("never Updating: %v", history())
	}

	update(func(o *lambdav1alpha1.EventSourceMapping) {
		o.Spec.FilterCriteria = &lambdav1alpha1.FilterCriteria{Filters: []lambdav1alpha1.Filter{{Pattern: `{"data":{"n":1}}`}}}
	})
	o = waitFor("Disabled for an invalid filter", settled(lambdav1alpha1.EventSourceMappingDisabled))
	if o.Status.StateTransitionReason != "ESM_CONFIG_NOT_VALID" {
		t.Errorf("reason %q", o.Status.StateTransitionReason)
	}
	judge("Disabled by an invalid filter (ESM_CONFIG_NOT_VALID)", metav1.ConditionFalse, "ConfigNotValid", true, status.FailedStatus, "Degraded")

	if err := c.Delete(ctx, o); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		var gone lambdav1alpha1.EventSourceMapping
		if err := c.Get(ctx, client.ObjectKeyFromObject(esm), &gone); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the mapping was not deleted (finalizer kept)")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := kube.CoordinationV1().Leases("default").Get(ctx, "esm-"+string(o.UID), metav1.GetOptions{}); err == nil {
		t.Error("the mapping's Lease outlived it")
	}
	t.Logf("states: %v", history())
	smu.Lock()
	defer smu.Unlock()
	for _, e := range verdictErrs {
		t.Error(e)
	}
	for _, s := range []lambdav1alpha1.EventSourceMappingState{lambdav1alpha1.EventSourceMappingCreating, lambdav1alpha1.EventSourceMappingDisabling,
		lambdav1alpha1.EventSourceMappingEnabling, lambdav1alpha1.EventSourceMappingUpdating, lambdav1alpha1.EventSourceMappingDeleting} {
		if !judged[s] {
			t.Errorf("no status write in state %s was judged", s)
		}
	}
}

// judgeWrite checks one status write the watch saw: it names its generation, with a Ready
// condition of that generation; a transitional state is InProgress to kstatus and
// Progressing to Argo CD, Deleting is Terminating. The first write in each transitional
// state is logged as a row of the table in docs/status.md.
func judgeWrite(t *testing.T, o *lambdav1alpha1.EventSourceMapping, judged map[lambdav1alpha1.EventSourceMappingState]bool) string {
	if o.Status.State == "" {
		return ""
	}
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
	if err != nil {
		return err.Error()
	}
	u := &unstructured.Unstructured{Object: m}
	u.SetGroupVersionKind(lambdav1alpha1.GroupVersion.WithKind("EventSourceMapping"))
	v, err := gitopshealth.Judge(u)
	if err != nil {
		return err.Error()
	}
	ready := meta.FindStatusCondition(o.Status.Conditions, contract.ConditionReady)
	deleting := o.Status.State == lambdav1alpha1.EventSourceMappingDeleting
	switch {
	case !deleting && (o.Status.ObservedGeneration == 0 || ready == nil || ready.ObservedGeneration != o.Status.ObservedGeneration):
		return fmt.Sprintf("state %s written without its generation or Ready: observedGeneration %d, %+v", o.Status.State, o.Status.ObservedGeneration, o.Status.Conditions)
	case deleting && (v.Kstatus != status.TerminatingStatus || v.Argo != "Progressing"):
		return fmt.Sprintf("Deleting: %s", v)
	case !deleting && transitional(o.Status.State) && (v.Kstatus != status.InProgressStatus || v.Argo != "Progressing"):
		return fmt.Sprintf("transitional state %s: %s, conditions %+v", o.Status.State, v, o.Status.Conditions)
	}
	if (transitional(o.Status.State) || deleting) && !judged[o.Status.State] {
		judged[o.Status.State] = true
		t.Logf("TABLE| EventSourceMapping | %s (transitional) | %s | %s | %s (%s) |", o.Status.State, conditionsText(o.Status.Conditions), v.Kstatus, v.Argo, v.ArgoMessage)
	}
	return ""
}

func transitional(s lambdav1alpha1.EventSourceMappingState) bool {
	switch s {
	case lambdav1alpha1.EventSourceMappingCreating, lambdav1alpha1.EventSourceMappingUpdating,
		lambdav1alpha1.EventSourceMappingEnabling, lambdav1alpha1.EventSourceMappingDisabling:
		return true
	}
	return false
}

func conditionsText(conds []metav1.Condition) string {
	out := ""
	for _, typ := range []string{contract.ConditionReady, contract.ConditionReconciling, contract.ConditionStalled} {
		if c := meta.FindStatusCondition(conds, typ); c != nil {
			if out != "" {
				out += " "
			}
			out += fmt.Sprintf("%s=%s(%s)", c.Type, c.Status, c.Reason)
		}
	}
	return out
}

// pollerLog is the pollers' logger in tests: the process's (errors only), not the test's,
// whose Log panics when a poller goroutine still winding down logs after the test ended.
func pollerLog() logr.Logger { return ctrl.Log.WithName("pollers") }
