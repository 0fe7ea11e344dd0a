package functionurl

import (
	"sync"

	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// Target is what a url-id invokes.
type Target struct {
	ID        string
	Namespace string
	Function  string
	// Qualifier is "" for a Function's URL ($LATEST), else the alias name.
	Qualifier string
	// Auth: the caller's Kubernetes token is checked (authType AWS_IAM or KUBERNETES).
	Auth bool
	// InvokeMode is BUFFERED or RESPONSE_STREAM.
	InvokeMode lambdav1alpha1.InvokeMode
	CORS       *CORS
}

// Table maps url-ids to targets; the activator's informers feed it (Function and Alias
// objects with functionUrlConfig). Safe for concurrent use.
type Table struct {
	mu    sync.RWMutex
	byID  map[string]*Target
	byObj map[objKey]string
}

type objKey struct{ kind, namespace, name string }

// NewTable makes an empty table.
func NewTable() *Table {
	return &Table{byID: map[string]*Target{}, byObj: map[objKey]string{}}
}

// Lookup finds url-id id.
func (t *Table) Lookup(id string) (*Target, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	x, ok := t.byID[id]
	return x, ok
}

// Len is the number of URLs.
func (t *Table) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.byID)
}

// SetFunction records f's URL ($LATEST), or forgets it when f has none.
func (t *Table) SetFunction(f *lambdav1alpha1.Function) {
	k := objKey{"Function", f.Namespace, f.Name}
	if f.Spec.FunctionURLConfig == nil || f.DeletionTimestamp != nil {
		t.remove(k)
		return
	}
	t.set(k, newTarget(string(f.UID), f.Namespace, f.Name, "", f.Spec.FunctionURLConfig))
}

// DeleteFunction forgets the URL of Function name.
func (t *Table) DeleteFunction(namespace, name string) { t.remove(objKey{"Function", namespace, name}) }

// SetAlias records a's URL, or forgets it when a has none.
func (t *Table) SetAlias(a *lambdav1alpha1.Alias) {
	k := objKey{"Alias", a.Namespace, a.Name}
	if a.Spec.FunctionURLConfig == nil || a.DeletionTimestamp != nil {
		t.remove(k)
		return
	}
	t.set(k, newTarget(string(a.UID), a.Namespace, a.Spec.FunctionName, a.EffectiveName(), a.Spec.FunctionURLConfig))
}

// DeleteAlias forgets the URL of Alias object name.
func (t *Table) DeleteAlias(namespace, name string) { t.remove(objKey{"Alias", namespace, name}) }

func newTarget(uid, ns, fn, qualifier string, c *lambdav1alpha1.FunctionURLConfig) *Target {
	mode := c.InvokeMode
	if mode == "" {
		mode = lambdav1alpha1.InvokeModeBuffered
	}
	return &Target{ID: contract.FunctionURLID(uid, ns, fn, qualifier), Namespace: ns, Function: fn, Qualifier: qualifier,
		Auth: c.AuthType != lambdav1alpha1.FunctionURLAuthNone, InvokeMode: mode, CORS: NewCORS(c.Cors)}
}

func (t *Table) set(k objKey, x *Target) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if old, ok := t.byObj[k]; ok && old != x.ID {
		delete(t.byID, old)
	}
	t.byObj[k], t.byID[x.ID] = x.ID, x
}

func (t *Table) remove(k objKey) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if id, ok := t.byObj[k]; ok {
		delete(t.byID, id)
		delete(t.byObj, k)
	}
}
