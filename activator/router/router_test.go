package router

import (
	"errors"
	"math"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/klambda/klambda/activator/fnkey"
	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

func ptr[T any](v T) *T { return &v }

func fn(name string, state lambdav1alpha1.State) *lambdav1alpha1.Function {
	f := &lambdav1alpha1.Function{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}}
	f.Spec.Timeout = 7
	f.Status.State = state
	return f
}

func ver(name, function, n string, pc int32) *lambdav1alpha1.Version {
	v := &lambdav1alpha1.Version{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}}
	v.Spec.FunctionName = function
	v.Status.Version = n
	v.Status.State = lambdav1alpha1.StateActive
	if pc > 0 {
		v.Spec.ProvisionedConcurrentExecutions = ptr(pc)
		v.Status.ProvisionedConcurrency = accepted(pc) // as the version controller reports it
	}
	return v
}

// accepted is a provisioned-concurrency status the controllers accepted (not FAILED).
func accepted(pc int32) *lambdav1alpha1.ProvisionedConcurrencyStatus {
	return &lambdav1alpha1.ProvisionedConcurrencyStatus{RequestedProvisionedConcurrentExecutions: pc, Status: lambdav1alpha1.ProvisionedConcurrencyInProgress}
}

func alias(objName, specName, function, primary string, weights map[string]float64) *lambdav1alpha1.Alias {
	a := &lambdav1alpha1.Alias{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: objName}}
	a.Spec.Name = specName
	a.Spec.FunctionName = function
	a.Spec.FunctionVersion = primary
	if weights != nil {
		a.Spec.RoutingConfig = &lambdav1alpha1.AliasRoutingConfiguration{AdditionalVersionWeights: weights}
	}
	// As the alias controller reports it once validated (the router routes by status).
	a.Status.FunctionVersion, a.Status.AdditionalVersionWeights = primary, weights
	return a
}

// The router routes by the alias's validated status: a spec the controller has not
// validated (a version not published yet) keeps the last valid routing, and an alias
// never validated routes nothing.
func TestAliasRoutesByValidatedStatus(t *testing.T) {
	tb := NewTable()
	tb.SetFunction(fn("f", lambdav1alpha1.StateActive))
	tb.SetVersion(ver("f-1", "f", "1", 0))
	a := alias("live", "", "f", "1", nil)
	tb.SetAlias(a)
	if r, err := tb.Resolve("ns", "f", "live"); err != nil || r.Version != "1" {
		t.Fatalf("live: %+v %v, want version 1", r, err)
	}
	ahead := a.DeepCopy()
	ahead.Spec.FunctionVersion = "7" // not published: the controller keeps status at 1
	tb.SetAlias(ahead)
	if r, err := tb.Resolve("ns", "f", "live"); err != nil || r.Version != "1" {
		t.Errorf("spec ahead of the validated status: %+v %v, want the last valid routing (version 1)", r, err)
	}
	// An alias naming a Version object (functionVersionRef, no number in its spec) routes
	// by the number the controller resolved it to.
	tb.SetVersion(ver("f-2", "f", "2", 0))
	byRef := alias("byref", "", "f", "", nil)
	byRef.Spec.FunctionVersionRef = &lambdav1alpha1.VersionReference{Name: "f-2"}
	byRef.Status.FunctionVersion = "2"
	tb.SetAlias(byRef)
	if r, err := tb.Resolve("ns", "f", "byref"); err != nil || r.Version != "2" {
		t.Errorf("alias by functionVersionRef resolved to 2: %+v %v, want version 2", r, err)
	}
	fresh := alias("canary", "", "f", "1", nil)
	fresh.Status = lambdav1alpha1.AliasStatus{} // not validated yet
	tb.SetAlias(fresh)
	if _, err := tb.Resolve("ns", "f", "canary"); !errors.Is(err, ErrQualifierNotFound) {
		t.Errorf("an alias never validated: %v, want ErrQualifierNotFound", err)
	}
}

func TestResolveLatestVersionAlias(t *testing.T) {
	tb := NewTable()
	// Versions and aliases may arrive before their function.
	tb.SetVersion(ver("f-1", "f", "1", 0))
	tb.SetAlias(alias("f-prod", "prod", "f", "1", nil))
	if _, err := tb.Resolve("ns", "f", ""); !errors.Is(err, ErrFunctionNotFound) {
		t.Fatalf("before the function: %v", err)
	}
	tb.SetFunction(fn("f", lambdav1alpha1.StateActive))
	for q, want := range map[string]string{"": contract.Latest, "$LATEST": contract.Latest, "1": "1", "prod": "1"} {
		r, err := tb.Resolve("ns", "f", q)
		if err != nil || r.Version != want {
			t.Errorf("Resolve(%q) = %+v, %v; want version %s", q, r, err, want)
		}
	}
	if r, _ := tb.Resolve("ns", "f", "prod"); r.Alias != "prod" || r.Timeout.Seconds() != 7 {
		t.Errorf("alias route = %+v", r)
	}
	for _, q := range []string{"2", "staging", "f-prod"} {
		if _, err := tb.Resolve("ns", "f", q); !errors.Is(err, ErrQualifierNotFound) {
			t.Errorf("Resolve(%q) err = %v, want ErrQualifierNotFound", q, err)
		}
	}
	if _, err := tb.Resolve("other", "f", ""); !errors.Is(err, ErrFunctionNotFound) {
		t.Errorf("other namespace: %v", err)
	}
	// Alias follows changes; deletes take effect.
	tb.SetVersion(ver("f-2", "f", "2", 0))
	tb.SetAlias(alias("f-prod", "prod", "f", "2", nil))
	if r, _ := tb.Resolve("ns", "f", "prod"); r.Version != "2" {
		t.Errorf("after update: %+v", r)
	}
	tb.DeleteAlias("ns", "f-prod")
	if _, err := tb.Resolve("ns", "f", "prod"); !errors.Is(err, ErrQualifierNotFound) {
		t.Errorf("after delete: %v", err)
	}
	tb.DeleteFunction("ns", "f")
	if _, err := tb.Resolve("ns", "f", "1"); !errors.Is(err, ErrFunctionNotFound) {
		t.Errorf("after function delete: %v", err)
	}
}

func TestResolveStates(t *testing.T) {
	tb := NewTable()
	tb.SetFunction(fn("p", lambdav1alpha1.StatePending))
	tb.SetFunction(fn("i", lambdav1alpha1.StateInactive))
	tb.SetFunction(fn("n", ""))
	var na *NotActiveError
	if _, err := tb.Resolve("ns", "p", ""); !errors.As(err, &na) || na.State != "Pending" {
		t.Errorf("pending: %v", err)
	}
	if _, err := tb.Resolve("ns", "n", ""); !errors.As(err, &na) || na.State != "Pending" {
		t.Errorf("no state yet: %v", err)
	}
	if _, err := tb.Resolve("ns", "i", ""); err != nil {
		t.Errorf("inactive must be invocable (it scales back up): %v", err)
	}
}

func TestWeightedAliasDistribution(t *testing.T) {
	tb := NewTable()
	tb.SetFunction(fn("f", lambdav1alpha1.StateActive))
	tb.SetVersion(ver("f-1", "f", "1", 0))
	tb.SetVersion(ver("f-2", "f", "2", 0))
	tb.SetAlias(alias("live", "", "f", "1", map[string]float64{"2": 0.1}))
	const n = 10000
	extra := 0
	for i := 0; i < n; i++ {
		r, err := tb.Resolve("ns", "f", "live")
		if err != nil {
			t.Fatal(err)
		}
		if r.Version == "2" {
			extra++
		}
	}
	frac := float64(extra) / n
	if math.Abs(frac-0.1) > 0.015 {
		t.Fatalf("additional version got %.4f of %d picks, want 0.10 ± 0.015", frac, n)
	}
	t.Logf("additional version: %.2f %%", frac*100)
}

func TestLimits(t *testing.T) {
	tb := NewTable()
	f := fn("f", lambdav1alpha1.StateActive)
	f.Spec.ReservedConcurrentExecutions = ptr(int32(50))
	tb.SetFunction(f)
	tb.SetFunction(fn("g", lambdav1alpha1.StateActive))
	tb.SetVersion(ver("f-1", "f", "1", 2))
	tb.SetVersion(ver("f-2", "f", "2", 0))
	a := alias("live", "", "f", "1", map[string]float64{"2": 0.25})
	a.Spec.ProvisionedConcurrentExecutions = ptr(int32(8))
	// Not judged by the alias controller yet: no floor.
	tb.SetAlias(a)
	if l := tb.LimitsFor(fnkey.Key{Namespace: "ns", Function: "f", Version: "2"}); l.Provisioned != 0 {
		t.Errorf("an alias's provisioned concurrency counts before the controller accepted it: %+v", l)
	}
	// Refused (FAILED: e.g. over reserved concurrency): no floor either.
	a.Status.ProvisionedConcurrency = &lambdav1alpha1.ProvisionedConcurrencyStatus{RequestedProvisionedConcurrentExecutions: 8,
		Status: lambdav1alpha1.ProvisionedConcurrencyFailed, StatusReason: contract.ProvisionedOverReserved}
	tb.SetAlias(a.DeepCopy())
	if l := tb.LimitsFor(fnkey.Key{Namespace: "ns", Function: "f", Version: "2"}); l.Provisioned != 0 {
		t.Errorf("a refused provisioned concurrency counts: %+v", l)
	}
	// FAILED because its environments could not start: still wanted.
	a.Status.ProvisionedConcurrency.StatusReason = "the environments of version 2 could not be started"
	tb.SetAlias(a.DeepCopy())
	if l := tb.LimitsFor(fnkey.Key{Namespace: "ns", Function: "f", Version: "2"}); l.Provisioned != 2 {
		t.Errorf("a provisioned concurrency whose environments failed must stay wanted: %+v", l)
	}
	a.Status.ProvisionedConcurrency = accepted(8)
	tb.SetAlias(a.DeepCopy())
	if l := tb.LimitsFor(fnkey.Key{Namespace: "ns", Function: "f", Version: "1"}); l.Provisioned != 2+6 || l.Reserved != 50 {
		t.Errorf("v1 limits %+v", l)
	}
	if l := tb.LimitsFor(fnkey.Key{Namespace: "ns", Function: "f", Version: "2"}); l.Provisioned != 2 {
		t.Errorf("v2 limits %+v", l)
	}
	if l := tb.LimitsFor(fnkey.Key{Namespace: "ns", Function: "g", Version: contract.Latest}); l.Provisioned != 0 || l.Reserved != -1 {
		t.Errorf("g limits %+v", l)
	}
	if u := tb.UnreservedLimit("ns", 1000); u != 950 {
		t.Errorf("unreserved = %d", u)
	}
	if len(tb.ProvisionedKeys()) == 0 {
		t.Error("no provisioned keys")
	}
}

func TestIdleTimeoutAnnotation(t *testing.T) {
	tb := NewTable()
	for name, v := range map[string]string{"short": "5s", "tiny": "1ms", "bad": "soon", "negative": "-3s", "none": ""} {
		f := fn(name, lambdav1alpha1.StateActive)
		if v != "" {
			f.Annotations = map[string]string{contract.AnnotationIdleTimeout: v}
		}
		tb.SetFunction(f)
	}
	want := map[string]time.Duration{"short": 5 * time.Second, "tiny": time.Second, "bad": 0, "negative": 0, "none": 0}
	for name, w := range want {
		if got := tb.LimitsFor(fnkey.Key{Namespace: "ns", Function: name, Version: contract.Latest}).IdleTimeout; got != w {
			t.Errorf("%s: idle timeout %v, want %v", name, got, w)
		}
	}
	// Versions of the function share it.
	tb.SetVersion(ver("short-1", "short", "1", 0))
	if got := tb.LimitsFor(fnkey.Key{Namespace: "ns", Function: "short", Version: "1"}).IdleTimeout; got != 5*time.Second {
		t.Errorf("version 1: idle timeout %v", got)
	}
}

// The table's per-function indexes and the namespace's reserved sum follow changes and
// deletions.
func TestIndexesFollowChanges(t *testing.T) {
	tb := NewTable()
	f := fn("f", lambdav1alpha1.StateActive)
	f.Spec.ReservedConcurrentExecutions = ptr(int32(50))
	tb.SetFunction(f)
	g := fn("g", lambdav1alpha1.StateActive)
	g.Spec.ReservedConcurrentExecutions = ptr(int32(30))
	tb.SetFunction(g)
	if u := tb.UnreservedLimit("ns", 1000); u != 920 {
		t.Fatalf("unreserved = %d, want 920", u)
	}
	f2 := f.DeepCopy()
	f2.Spec.ReservedConcurrentExecutions = ptr(int32(20))
	tb.SetFunction(f2)
	tb.DeleteFunction("ns", "g")
	if u := tb.UnreservedLimit("ns", 1000); u != 980 {
		t.Fatalf("after changes: unreserved = %d, want 980", u)
	}

	tb.SetFunction(fn("h", lambdav1alpha1.StateActive))
	tb.SetVersion(ver("v1", "f", "1", 0))
	tb.SetAlias(alias("live", "", "f", "1", nil))
	if _, err := tb.Resolve("ns", "f", "live"); err != nil {
		t.Fatal(err)
	}
	// The Version object now names another function: f loses version 1, h gains it.
	tb.SetVersion(ver("v1", "h", "1", 0))
	if _, err := tb.Resolve("ns", "f", "1"); !errors.Is(err, ErrQualifierNotFound) {
		t.Fatalf("f:1 after the move: %v", err)
	}
	if r, err := tb.Resolve("ns", "h", "1"); err != nil || r.Version != "1" {
		t.Fatalf("h:1 after the move: %v %v", r, err)
	}
	tb.DeleteAlias("ns", "live")
	if _, err := tb.Resolve("ns", "f", "live"); !errors.Is(err, ErrQualifierNotFound) {
		t.Fatalf("deleted alias: %v", err)
	}
	tb.DeleteVersion("ns", "v1")
	if _, err := tb.Resolve("ns", "h", "1"); !errors.Is(err, ErrQualifierNotFound) {
		t.Fatalf("deleted version: %v", err)
	}
	if len(tb.versions.byFn) != 0 || len(tb.aliases.byFn) != 0 || len(tb.versions.objs) != 0 || len(tb.aliases.objs) != 0 {
		t.Fatalf("indexes keep deleted objects: %v %v", tb.versions.byFn, tb.aliases.byFn)
	}
}

// TestDuplicateAliasNeverShadows: a second Alias with the same effective name (here
// metadata.name "prod" against spec.name "prod") must not take any of the first one's
// traffic, whatever the order the informer delivers them in; the older one (by
// creationTimestamp, then metadata.name) routes, as the alias controller reports.
func TestDuplicateAliasNeverShadows(t *testing.T) {
	older := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	newer := metav1.NewTime(older.Add(time.Minute))
	for _, order := range []string{"owner first", "intruder first"} {
		t.Run(order, func(t *testing.T) {
			tb := NewTable()
			tb.SetFunction(fn("f", lambdav1alpha1.StateActive))
			tb.SetVersion(ver("f-1", "f", "1", 0))
			tb.SetVersion(ver("f-2", "f", "2", 0))
			owner := alias("f-prod", "prod", "f", "1", nil)
			owner.CreationTimestamp = older
			intruder := alias("prod", "", "f", "2", nil)
			intruder.CreationTimestamp = newer
			intruder.Spec.ProvisionedConcurrentExecutions = ptr(int32(5))
			intruder.Status.ProvisionedConcurrency = accepted(5)
			objs := []*lambdav1alpha1.Alias{owner, intruder}
			if order == "intruder first" {
				objs[0], objs[1] = objs[1], objs[0]
			}
			for _, a := range objs {
				tb.SetAlias(a)
			}
			picks := 0
			for i := 0; i < 200; i++ {
				r, err := tb.Resolve("ns", "f", "prod")
				if err != nil {
					t.Fatal(err)
				}
				if r.Version != "1" {
					picks++
				}
			}
			if picks != 0 {
				t.Fatalf("%d of 200 invocations of alias prod went to the newer duplicate's version 2", picks)
			}
			if l := tb.LimitsFor(fnkey.Key{Namespace: "ns", Function: "f", Version: "2"}); l.Provisioned != 0 {
				t.Errorf("the duplicate's provisioned concurrency counts: %+v", l)
			}
			// Same creationTimestamp: the lower metadata.name wins.
			intruder = intruder.DeepCopy()
			intruder.CreationTimestamp = older
			tb.SetAlias(intruder)
			if r, _ := tb.Resolve("ns", "f", "prod"); r.Version != "1" {
				t.Errorf("equal timestamps: f-prod must win over prod, got version %s", r.Version)
			}
			// The owner goes: the duplicate takes the name.
			tb.DeleteAlias("ns", "f-prod")
			if r, _ := tb.Resolve("ns", "f", "prod"); r.Version != "2" {
				t.Errorf("after the owner is deleted: version %s, want 2", r.Version)
			}
		})
	}
}
