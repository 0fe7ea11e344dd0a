// Package testrig (test support, not used by the binary) runs the activator in-process against fake environments (fakeshim),
// for handler tests, real-client compatibility tests and benchmarks.
package testrig

import (
	"context"
	"strconv"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/klambda/klambda/activator/auth"
	"github.com/klambda/klambda/activator/dispatch"
	"github.com/klambda/klambda/activator/fakeshim"
	"github.com/klambda/klambda/activator/fnkey"
	"github.com/klambda/klambda/activator/invoke"
	"github.com/klambda/klambda/activator/metrics"
	"github.com/klambda/klambda/activator/router"
	"github.com/klambda/klambda/activator/shimclient"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// Namespace is the rig's default namespace.
const Namespace = "default"

// Secret is every fake environment's invoke secret.
const Secret = "s3cret"

// Rig is an activator with fake environments.
type Rig struct {
	Table      *router.Table
	Dispatcher *dispatch.Dispatcher
	// Core is the typed invoke core; Handler the Invoke API over it.
	Core    *invoke.Core
	Handler *invoke.Handler
	// Server serves Handler as cmd/activator serves plain HTTP (NewServer).
	Server *Server
	Shims  map[fnkey.Key][]*fakeshim.Shim
}

// Tokens maps a bearer token to a user allowed to invoke (the fake TokenReview and SAR).
type Tokens map[string]string

// Options of a rig.
type Options struct {
	// Auth nil: authorization off. Else the tokens that are valid; a token whose user
	// is "denied" is valid but not allowed.
	Auth         Tokens
	WaitDeadline time.Duration
}

type fakeAuth struct{ t Tokens }

func (f fakeAuth) Authenticate(_ context.Context, token string) (auth.Identity, bool, error) {
	u, ok := f.t[token]
	return auth.Identity{User: u}, ok, nil
}

func (f fakeAuth) Allowed(_ context.Context, id auth.Identity, _, _ string) (bool, error) {
	return id.User != "denied", nil
}

// New starts a rig.
func New(o Options) *Rig {
	if o.WaitDeadline == 0 {
		o.WaitDeadline = 200 * time.Millisecond
	}
	r := &Rig{Table: router.NewTable(), Dispatcher: dispatch.New(nil), Shims: map[fnkey.Key][]*fakeshim.Shim{}}
	r.Dispatcher.SetNamespaceLimit(1000, r.Table)
	// The activator's default bounds on what requests hold (cmd/activator's flags).
	adm, err := invoke.NewAdmission(invoke.DefaultRequestBytes, invoke.DefaultRequestBytesPerNamespace, invoke.DefaultMaxWaiting)
	if err != nil {
		panic(err)
	}
	m := metrics.New(nil)
	r.Core = &invoke.Core{
		Region:       "us-east-1",
		AccountID:    "000000000000",
		Router:       r.Table,
		Dispatcher:   r.Dispatcher,
		Shim:         shimclient.New(),
		WaitDeadline: o.WaitDeadline,
		ShimGrace:    5 * time.Second,
		Admission:    adm,
		Metrics:      m,
		Log:          logr.Discard(),
	}
	r.Handler = &invoke.Handler{
		DefaultNamespace: Namespace,
		Region:           r.Core.Region,
		AccountID:        r.Core.AccountID,
		Invoker:          r.Core,
		Admission:        adm,
		Metrics:          m,
		Log:              logr.Discard(),
	}
	if o.Auth != nil {
		f := fakeAuth{o.Auth}
		r.Handler.Auth = auth.NewChecker(f, f)
	}
	r.Server = NewServer(r.Handler)
	return r
}

// UseMetrics makes the core and the Invoke API count in m.
func (r *Rig) UseMetrics(m *metrics.Metrics) { r.Core.Metrics, r.Handler.Metrics = m, m }

// UseAdmission makes the core and the Invoke API bound what requests hold with a.
func (r *Rig) UseAdmission(a *invoke.Admission) { r.Core.Admission, r.Handler.Admission = a, a }

// URL is the activator's base URL.
func (r *Rig) URL() string { return r.Server.URL }

// Close stops everything.
func (r *Rig) Close() {
	r.Server.Close()
	for _, ss := range r.Shims {
		for _, s := range ss {
			s.Close()
		}
	}
}

// Function adds an Active function (reserved < 0: none) with published versions 1..versions.
func (r *Rig) Function(name string, reserved int32, versions int) {
	f := &lambdav1alpha1.Function{ObjectMeta: metav1.ObjectMeta{Namespace: Namespace, Name: name}}
	f.Spec.Timeout = 10
	f.Status.State = lambdav1alpha1.StateActive
	if reserved >= 0 {
		f.Spec.ReservedConcurrentExecutions = &reserved
	}
	r.Table.SetFunction(f)
	for i := 1; i <= versions; i++ {
		v := &lambdav1alpha1.Version{ObjectMeta: metav1.ObjectMeta{Namespace: Namespace, Name: name + "-" + strconv.Itoa(i)}}
		v.Spec.FunctionName = name
		v.Status.Version = strconv.Itoa(i)
		v.Status.State = lambdav1alpha1.StateActive
		r.Table.SetVersion(v)
	}
}

// PendingFunction adds a function that is not Active yet.
func (r *Rig) PendingFunction(name string) {
	f := &lambdav1alpha1.Function{ObjectMeta: metav1.ObjectMeta{Namespace: Namespace, Name: name}}
	f.Status.State = lambdav1alpha1.StatePending
	r.Table.SetFunction(f)
}

// Alias adds an alias with an optional weighted additional version.
func (r *Rig) Alias(function, name, primary string, weights map[string]float64) {
	a := &lambdav1alpha1.Alias{ObjectMeta: metav1.ObjectMeta{Namespace: Namespace, Name: function + "-" + name}}
	a.Spec.FunctionName = function
	a.Spec.Name = name
	a.Spec.FunctionVersion = primary
	if weights != nil {
		a.Spec.RoutingConfig = &lambdav1alpha1.AliasRoutingConfiguration{AdditionalVersionWeights: weights}
	}
	// Validated, as the alias controller reports it (the router routes by status).
	a.Status.FunctionVersion, a.Status.AdditionalVersionWeights = primary, weights
	r.Table.SetAlias(a)
}

// Environments starts n fake environments for function:version and hands them to the
// dispatcher.
func (r *Rig) Environments(function, version string, n int) []*fakeshim.Shim {
	k := fnkey.Key{Namespace: Namespace, Function: function, Version: version}
	for i := 0; i < n; i++ {
		r.Shims[k] = append(r.Shims[k], fakeshim.Start(Secret, version))
	}
	var envs []dispatch.Environment
	for i, s := range r.Shims[k] {
		envs = append(envs, dispatch.Environment{Name: function + "-" + version + "-" + strconv.Itoa(i), Addr: s.Addr(), Secret: Secret})
	}
	r.Dispatcher.SetEnvironments(k, envs)
	return r.Shims[k]
}

// Endpoints hands the dispatcher environments of function:version at addrs (real shims,
// with the invoke secret Secret), in place of fake ones.
func (r *Rig) Endpoints(function, version string, addrs ...string) {
	k := fnkey.Key{Namespace: Namespace, Function: function, Version: version}
	var envs []dispatch.Environment
	for i, a := range addrs {
		envs = append(envs, dispatch.Environment{Name: function + "-" + version + "-real-" + strconv.Itoa(i), Addr: a, Secret: Secret})
	}
	r.Dispatcher.SetEnvironments(k, envs)
}
