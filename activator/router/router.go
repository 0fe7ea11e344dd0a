// Package router resolves a function name and qualifier ($LATEST, a version number, an
// alias) to the version that runs, choosing by weight for an alias with
// routingConfig.additionalVersionWeights. Its table is fed by informers (package kube);
// a lookup never calls the API server.
package router

import (
	"errors"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/activator/fnkey"
	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// minIdleTimeout keeps a typo ("1ms") from churning pods on every request.
const minIdleTimeout = time.Second

var (
	ErrFunctionNotFound  = errors.New("function not found")
	ErrQualifierNotFound = errors.New("version or alias not found")
)

// NotActiveError says the function (or version) cannot run yet.
type NotActiveError struct{ State string }

func (e *NotActiveError) Error() string { return "function is " + e.State }

// Route is where one invocation goes.
type Route struct {
	Namespace string
	Function  string
	// Version is the version that runs: $LATEST or a number (X-Amz-Executed-Version).
	Version string
	// Qualifier is what the caller named: "" (unqualified), $LATEST, a version or an alias.
	Qualifier string
	// Alias is the alias name when the caller named one.
	Alias string
	// ReservedConcurrency is the function's limit, or -1 when it has none.
	ReservedConcurrency int32
	Timeout             time.Duration
}

type versionEntry struct {
	state       string
	timeout     time.Duration
	provisioned int32
}

type aliasEntry struct {
	primary     string
	additional  string
	weight      float64 // of additional
	provisioned int32
}

type functionEntry struct {
	state    string
	reserved int32
	timeout  time.Duration
	// idleTimeout from contract.AnnotationIdleTimeout; 0: the scaler's default.
	idleTimeout time.Duration
	versions    map[string]versionEntry
	aliases     map[string]aliasEntry
}

// functionName is a function in a namespace (the table's key; a version's is fnkey.Key).
type functionName struct{ ns, name string }

// Table is the router's view of Functions, Versions and Aliases.
type Table struct {
	mu     sync.RWMutex
	fnObjs map[functionName]*lambdav1alpha1.Function
	// versions and aliases are indexed by the function they name, so that a change
	// compiles one function without scanning every object of the cluster.
	versions *byFunction[*lambdav1alpha1.Version]
	aliases  *byFunction[*lambdav1alpha1.Alias]
	compiled map[functionName]*functionEntry
	// reservedByNS is the sum of reserved concurrency per namespace, kept with compiled
	// (each compile takes the function's old reservation out and puts the new one in).
	reservedByNS map[string]int32
	// Rand returns a number in [0,1); tests replace it.
	Rand func() float64
}

// NewTable returns an empty table.
func NewTable() *Table {
	return &Table{
		fnObjs:       map[functionName]*lambdav1alpha1.Function{},
		versions:     newByFunction(func(v *lambdav1alpha1.Version) string { return v.Spec.FunctionName }),
		aliases:      newByFunction(func(a *lambdav1alpha1.Alias) string { return a.Spec.FunctionName }),
		compiled:     map[functionName]*functionEntry{},
		reservedByNS: map[string]int32{},
		Rand:         rand.Float64,
	}
}

// SetFunction adds or replaces a Function.
func (t *Table) SetFunction(f *lambdav1alpha1.Function) {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := functionName{f.Namespace, f.Name}
	t.fnObjs[k] = f
	t.compileLocked(k)
}

// DeleteFunction forgets a Function.
func (t *Table) DeleteFunction(namespace, name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := functionName{namespace, name}
	delete(t.fnObjs, k)
	t.compileLocked(k)
}

// SetVersion adds or replaces a Version.
func (t *Table) SetVersion(v *lambdav1alpha1.Version) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.compileLocked(t.versions.set(v)...)
}

// DeleteVersion forgets a Version.
func (t *Table) DeleteVersion(namespace, name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.compileLocked(t.versions.remove(namespace, name)...)
}

// SetAlias adds or replaces an Alias.
func (t *Table) SetAlias(a *lambdav1alpha1.Alias) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.compileLocked(t.aliases.set(a)...)
}

// DeleteAlias forgets an Alias.
func (t *Table) DeleteAlias(namespace, name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.compileLocked(t.aliases.remove(namespace, name)...)
}

// byFunction holds the objects of one kind (Versions, Aliases) by name and by the function
// they name.
type byFunction[T client.Object] struct {
	objs       map[types.NamespacedName]T
	byFn       map[functionName]map[string]T
	functionOf func(T) string
}

func newByFunction[T client.Object](functionOf func(T) string) *byFunction[T] {
	return &byFunction[T]{objs: map[types.NamespacedName]T{}, byFn: map[functionName]map[string]T{}, functionOf: functionOf}
}

// set stores o and returns the functions to compile again: o's, and its old one's when o
// moved to another function.
func (ix *byFunction[T]) set(o T) []functionName {
	var changed []functionName
	nn := types.NamespacedName{Namespace: o.GetNamespace(), Name: o.GetName()}
	if old, ok := ix.objs[nn]; ok && ix.functionOf(old) != ix.functionOf(o) {
		changed = ix.remove(nn.Namespace, nn.Name)
	}
	ix.objs[nn] = o
	k := functionName{o.GetNamespace(), ix.functionOf(o)}
	if ix.byFn[k] == nil {
		ix.byFn[k] = map[string]T{}
	}
	ix.byFn[k][o.GetName()] = o
	return append(changed, k)
}

// remove forgets an object and returns the function to compile again (none when unknown).
func (ix *byFunction[T]) remove(namespace, name string) []functionName {
	nn := types.NamespacedName{Namespace: namespace, Name: name}
	old, ok := ix.objs[nn]
	if !ok {
		return nil
	}
	delete(ix.objs, nn)
	k := functionName{namespace, ix.functionOf(old)}
	if delete(ix.byFn[k], name); len(ix.byFn[k]) == 0 {
		delete(ix.byFn, k)
	}
	return []functionName{k}
}

// compileLocked rebuilds each given function's entry from the objects that name it. Functions
// have few versions and aliases, and objects change rarely, so rebuilding is simpler
// and safer than patching.
func (t *Table) compileLocked(keys ...functionName) {
	for _, k := range keys {
		t.compileOneLocked(k)
	}
}

func (t *Table) compileOneLocked(k functionName) {
	if old, ok := t.compiled[k]; ok && old.reserved > 0 {
		t.reservedByNS[k.ns] -= old.reserved
	}
	f, ok := t.fnObjs[k]
	if !ok || f.DeletionTimestamp != nil {
		delete(t.compiled, k)
		return
	}
	e := &functionEntry{
		state:    string(f.Status.State),
		reserved: -1,
		timeout:  f.Spec.EffectiveTimeout(),
		versions: map[string]versionEntry{},
		aliases:  map[string]aliasEntry{},
	}
	if f.Spec.ReservedConcurrentExecutions != nil {
		e.reserved = *f.Spec.ReservedConcurrentExecutions
	}
	e.idleTimeout = idleTimeoutOf(f.Annotations[contract.AnnotationIdleTimeout])
	for _, v := range t.versions.byFn[k] {
		if v.Status.Version == "" || v.DeletionTimestamp != nil {
			continue
		}
		ve := versionEntry{state: string(v.Status.State), timeout: e.timeout}
		if v.Status.Configuration != nil {
			ve.timeout = v.Status.Configuration.EffectiveTimeout()
		}
		ve.provisioned = validatedProvisioned(v.Status.ProvisionedConcurrency)
		e.versions[v.Status.Version] = ve
	}
	// Two Aliases with one effective name: the older one (lambdav1alpha1.AliasPrecedes)
	// routes, the other is ignored (the alias controller reports it DuplicateAlias), so a
	// second Alias never takes a share of the first one's traffic, whatever the map order.
	owners := map[string]*lambdav1alpha1.Alias{}
	for _, a := range t.aliases.byFn[k] {
		if a.DeletionTimestamp != nil {
			continue
		}
		if o, ok := owners[a.EffectiveName()]; !ok || lambdav1alpha1.AliasPrecedes(a, o) {
			owners[a.EffectiveName()] = a
		}
	}
	for _, a := range owners {
		// The routing the alias controller validated (status), not what the spec asks: a
		// spec naming a version not published yet, or versions that may not be weighted
		// together, keeps the last valid routing; an alias never validated routes nothing.
		st := &a.Status
		if st.FunctionVersion == "" {
			continue
		}
		ae := aliasEntry{primary: st.FunctionVersion}
		if w := st.AdditionalVersionWeights; len(w) > 0 {
			// Lambda allows one additional version; with more (CEL should prevent it),
			// take the lowest-numbered one so the choice is stable.
			vs := make([]string, 0, len(w))
			for v := range w {
				vs = append(vs, v)
			}
			sort.Strings(vs)
			ae.additional = vs[0]
			ae.weight = w[vs[0]]
		}
		if a.Spec.ProvisionedConcurrentExecutions != nil {
			ae.provisioned = validatedProvisioned(a.Status.ProvisionedConcurrency)
		}
		e.aliases[a.EffectiveName()] = ae
	}
	t.compiled[k] = e
	if e.reserved > 0 {
		t.reservedByNS[k.ns] += e.reserved
	}
}

// validatedProvisioned is the provisioned concurrency the controllers accepted (status):
// none before they judged it, none when they refused it as Lambda would (on $LATEST, over
// reserved concurrency, a second one for a version), else the amount requested (also when
// FAILED because its environments could not start: they are still wanted).
func validatedProvisioned(st *lambdav1alpha1.ProvisionedConcurrencyStatus) int32 {
	if st == nil || (st.Status == lambdav1alpha1.ProvisionedConcurrencyFailed && contract.ProvisionedRefused(st.StatusReason)) {
		return 0
	}
	return st.RequestedProvisionedConcurrentExecutions
}

// idleTimeoutOf parses contract.AnnotationIdleTimeout; an absent or unparsable value is 0 (the
// default applies), a positive one is raised to minIdleTimeout.
func idleTimeoutOf(v string) time.Duration {
	if v == "" {
		return 0
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0
	}
	return max(d, minIdleTimeout)
}

func isVersionNumber(q string) bool {
	if q == "" {
		return false
	}
	for i := 0; i < len(q); i++ {
		if q[i] < '0' || q[i] > '9' {
			return false
		}
	}
	return true
}

// Resolve answers where an invocation of namespace/function:qualifier goes. Errors are
// ErrFunctionNotFound, ErrQualifierNotFound or *NotActiveError.
func (t *Table) Resolve(namespace, function, qualifier string) (Route, error) {
	r := Route{Namespace: namespace, Function: function, Qualifier: qualifier}
	t.mu.RLock()
	e, ok := t.compiled[functionName{namespace, function}]
	if !ok {
		t.mu.RUnlock()
		return r, ErrFunctionNotFound
	}
	r.ReservedConcurrency = e.reserved
	fnState := e.state
	var version string
	switch {
	case qualifier == "" || qualifier == contract.Latest:
		version = contract.Latest
	case isVersionNumber(qualifier):
		version = qualifier
	default:
		a, ok := e.aliases[qualifier]
		if !ok {
			t.mu.RUnlock()
			return r, ErrQualifierNotFound
		}
		r.Alias = qualifier
		version = a.primary
		if a.additional != "" && a.weight > 0 && t.Rand() < a.weight {
			version = a.additional
		}
	}
	r.Version = version
	if version == contract.Latest {
		r.Timeout = e.timeout
		t.mu.RUnlock()
		return r, activeOrError(fnState)
	}
	v, ok := e.versions[version]
	t.mu.RUnlock()
	if !ok {
		return r, ErrQualifierNotFound
	}
	r.Timeout = v.timeout
	if v.state == "" {
		// A published version without a state yet runs what the function runs.
		return r, activeOrError(fnState)
	}
	return r, activeOrError(v.state)
}

// activeOrError: Pending and Failed cannot be invoked (409). Inactive can: the first
// invocation brings environments back, as Lambda reactivates an Inactive function.
func activeOrError(state string) error {
	switch state {
	case string(lambdav1alpha1.StateActive), string(lambdav1alpha1.StateInactive):
		return nil
	case "":
		return &NotActiveError{State: string(lambdav1alpha1.StatePending)}
	default:
		return &NotActiveError{State: state}
	}
}

// Limits are the facts the scaler needs about one version.
type Limits struct {
	// Provisioned is the floor of warm environments: the version's own provisioned
	// concurrency plus its share of its aliases' (split by routing weight).
	Provisioned int32
	// Reserved is the function's reserved concurrency, -1 when none.
	Reserved int32
	// IdleTimeout is the function's own idle timeout (contract.AnnotationIdleTimeout); 0 when
	// it has none.
	IdleTimeout time.Duration
}

// LimitsFor answers the scaler's floor and ceiling for one version.
func (t *Table) LimitsFor(k fnkey.Key) Limits {
	t.mu.RLock()
	defer t.mu.RUnlock()
	e, ok := t.compiled[functionName{k.Namespace, k.Function}]
	if !ok {
		return Limits{Reserved: -1}
	}
	l := Limits{Reserved: e.reserved, IdleTimeout: e.idleTimeout}
	if v, ok := e.versions[k.Version]; ok {
		l.Provisioned += v.provisioned
	}
	for _, a := range e.aliases {
		if a.provisioned == 0 {
			continue
		}
		switch {
		case a.additional == "" && a.primary == k.Version:
			l.Provisioned += a.provisioned
		case a.primary == k.Version:
			l.Provisioned += ceilShare(a.provisioned, 1-a.weight)
		case a.additional == k.Version:
			l.Provisioned += ceilShare(a.provisioned, a.weight)
		}
	}
	return l
}

func ceilShare(n int32, w float64) int32 {
	x := float64(n) * w
	c := int32(x)
	if float64(c) < x {
		c++
	}
	return c
}

// ProvisionedKeys lists the versions that have a floor, so the scaler keeps them warm
// without any traffic.
func (t *Table) ProvisionedKeys() []fnkey.Key {
	t.mu.RLock()
	var keys []fnkey.Key
	for k, e := range t.compiled {
		for v, ve := range e.versions {
			if ve.provisioned > 0 {
				keys = append(keys, fnkey.Key{Namespace: k.ns, Function: k.name, Version: v})
			}
		}
		for _, a := range e.aliases {
			if a.provisioned > 0 {
				keys = append(keys, fnkey.Key{Namespace: k.ns, Function: k.name, Version: a.primary})
				if a.additional != "" {
					keys = append(keys, fnkey.Key{Namespace: k.ns, Function: k.name, Version: a.additional})
				}
			}
		}
	}
	t.mu.RUnlock()
	return keys
}

// UnreservedLimit is what a namespace's functions without reserved concurrency share:
// the namespace limit minus every reservation in it (Lambda's unreserved pool).
func (t *Table) UnreservedLimit(namespace string, namespaceLimit int32) int32 {
	t.mu.RLock()
	defer t.mu.RUnlock()
	n := namespaceLimit - t.reservedByNS[namespace]
	if n < 0 {
		n = 0
	}
	return n
}
