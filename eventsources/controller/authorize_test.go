package controller_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	gonats "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	"github.com/klambda/klambda/eventsources/controller"
	"github.com/klambda/klambda/eventsources/invokeclient/invoketest"
	"github.com/klambda/klambda/test/apiserver"
	"github.com/klambda/klambda/test/gitopshealth"
)

// grantInvoke lets ServiceAccount ns/sa invoke function fn (a Role and RoleBinding).
func grantInvoke(t *testing.T, ctx context.Context, ns, sa, fn string, secrets ...string) {
	t.Helper()
	rules := []rbacv1.PolicyRule{{APIGroups: []string{lambdav1alpha1.GroupVersion.Group}, Resources: []string{"functions"}, Verbs: []string{"invoke"}, ResourceNames: []string{fn}}}
	if len(secrets) > 0 {
		rules = append(rules, rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}, ResourceNames: secrets})
	}
	name := "invoke-" + fn + "-" + sa
	for _, o := range []client.Object{
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Rules: rules},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: ns, Name: sa}}},
	} {
		if err := srv.Client.Create(ctx, o); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
}

// TestMappingActsAsItsServiceAccount: the pollers may invoke every function and read every
// Secret; a mapping must not borrow that. Its poller starts only once the mapping's
// ServiceAccount (spec.serviceAccountName, else default) may invoke the function and get
// the Secrets it names; until then the mapping is Ready=False (AccessDenied) and no record
// is delivered.
func TestMappingActsAsItsServiceAccount(t *testing.T) {
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
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "PAY", Subjects: []string{"pay.>"}}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	calls := map[string]int{}
	fake := invoketest.New(func(c invoketest.Call) invoketest.Outcome {
		mu.Lock()
		calls[c.Function]++
		mu.Unlock()
		return invoketest.Outcome{}
	})
	defer fake.Close()
	invoked := func(fn string) int { mu.Lock(); defer mu.Unlock(); return calls[fn] }

	const tns = "esm-auth"
	if err := srv.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: tns}}); err != nil {
		t.Fatal(err)
	}
	if err := srv.Client.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: tns, Name: "broker"},
		Data: map[string][]byte{"username": []byte("u"), "password": []byte("p")}}); err != nil {
		t.Fatal(err)
	}
	mgr, err := srv.NewManager()
	if err != nil {
		t.Fatal(err)
	}
	kube := kubernetes.NewForConfigOrDie(srv.Config)
	b := &controller.Builder{Reader: mgr.GetAPIReader(), Invoker: fake.Invoker(), Authorizer: controller.KubeAuthorizer{Client: kube}}
	r := &controller.Reconciler{Client: mgr.GetClient(), Builder: b, Pollers: &controller.Pollers{
		Kube: kube, LeaseNamespace: tns, Identity: "replica-" + string(uuid.NewUUID()),
		LeaseDuration: 2 * time.Second, RenewDeadline: 1500 * time.Millisecond, RetryPeriod: 200 * time.Millisecond,
		Build: b.Build, Log: pollerLog(),
	}}
	if err := r.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	defer apiserver.Run(mgr, nil)()

	mapping := func(name, fn, sa, subject string, secret string) *lambdav1alpha1.EventSourceMapping {
		m := &lambdav1alpha1.EventSourceMapping{ObjectMeta: metav1.ObjectMeta{Namespace: tns, Name: name},
			Spec: lambdav1alpha1.EventSourceMappingSpec{FunctionName: fn, ServiceAccountName: sa, StartingPosition: lambdav1alpha1.StartingPositionTrimHorizon,
				NATSJetStream: &lambdav1alpha1.NATSJetStreamSource{Servers: []string{ns.ClientURL()}, Stream: "PAY", Subject: subject}}}
		if secret != "" {
			m.Spec.SourceAccessConfigurations = []lambdav1alpha1.SourceAccessConfiguration{{Type: lambdav1alpha1.SourceAccessServerRootCACertificate,
				SecretRef: &lambdav1alpha1.SecretReference{Name: secret}}}
		}
		if err := srv.Client.Create(ctx, m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	ready := func(m *lambdav1alpha1.EventSourceMapping, status metav1.ConditionStatus, reason string) *metav1.Condition {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			var o lambdav1alpha1.EventSourceMapping
			if err := srv.Client.Get(ctx, client.ObjectKeyFromObject(m), &o); err != nil {
				t.Fatal(err)
			}
			c := meta.FindStatusCondition(o.Status.Conditions, contract.ConditionReady)
			if c != nil && c.Status == status && c.Reason == reason {
				return c
			}
			if time.Now().After(deadline) {
				t.Fatalf("mapping %s: want Ready=%s (%s), have %+v (state %s)", m.Name, status, reason, c, o.Status.State)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for i := 0; i < 3; i++ {
		if _, err := js.Publish(ctx, "pay.in", []byte(`{"n":1}`)); err != nil {
			t.Fatal(err)
		}
	}

	// A ServiceAccount with no permission: nothing runs, and the status says what is missing.
	m := mapping("payments", "charge", "mapper", "pay.in", "")
	c := ready(m, metav1.ConditionFalse, contract.ReasonAccessDenied)
	if !strings.Contains(c.Message, "mapper") || !strings.Contains(c.Message, "invoke functions.lambda.klambda.dev charge") {
		t.Errorf("message %q must name the ServiceAccount and the missing permission", c.Message)
	}
	u, v, err := gitopshealth.Read(ctx, srv.Client, "EventSourceMapping", client.ObjectKeyFromObject(m))
	if err != nil {
		t.Fatal(err)
	}
	var o lambdav1alpha1.EventSourceMapping
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &o); err != nil {
		t.Fatal(err)
	}
	if !meta.IsStatusConditionTrue(o.Status.Conditions, contract.ConditionStalled) || v.Kstatus != status.FailedStatus || v.Argo != "Degraded" {
		t.Errorf("a mapping denied access must be Stalled, Failed to kstatus, Degraded to Argo CD: %+v, %s", o.Status.Conditions, v)
	}
	t.Logf("TABLE| EventSourceMapping | ServiceAccount may not invoke the function | %s | %s | %s (%s) |", conditionsText(o.Status.Conditions), v.Kstatus, v.Argo, v.ArgoMessage)
	time.Sleep(time.Second)
	if n := invoked("charge"); n != 0 {
		t.Fatalf("the function was invoked %d times for a mapping whose ServiceAccount may not invoke it", n)
	}
	// Granted: the poller starts (its retry picks the permission up) and delivers.
	grantInvoke(t, ctx, tns, "mapper", "charge")
	ready(m, metav1.ConditionTrue, "Polling")
	deadline := time.Now().Add(20 * time.Second)
	for invoked("charge") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no invocation after the ServiceAccount was allowed to invoke")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Without spec.serviceAccountName the namespace's default ServiceAccount counts; a Secret
	// it may not read is not sent to any broker, even though the function may be invoked.
	grantInvoke(t, ctx, tns, "default", "refund")
	m2 := mapping("refunds", "refund", "", "pay.refund", "broker")
	c = ready(m2, metav1.ConditionFalse, contract.ReasonAccessDenied)
	if !strings.Contains(c.Message, "ServiceAccount default") || !strings.Contains(c.Message, "get secrets broker") || strings.Contains(c.Message, "invoke") {
		t.Errorf("message %q must name the default ServiceAccount and only the Secret", c.Message)
	}
}
