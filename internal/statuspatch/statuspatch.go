// Package statuspatch writes a reconciled object's status once per reconcile, the way
// cluster-api's deferred patch does, with a merge patch on the status subresource: snapshot
// the object after fetch, let the reconcile change its status, and patch the status at the
// end only when it changed.
//
// The patch carries only the status fields that changed, so it never overwrites a field
// another writer keeps in the same status (the Version controller's counter in a
// Function's), and the object's resourceVersion: computed against a stale (cached) copy, a
// diff would miss the fields the server has but the copy not, so a stale copy is a conflict,
// and the reconcile runs again on a fresh one.
package statuspatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Patch is one reconcile's status write of one object.
type Patch struct {
	c       client.Client
	obj     client.Object
	base    client.Object
	pending bool
}

// New snapshots obj (just fetched); Close patches what the reconcile changed since.
func New(c client.Client, obj client.Object) *Patch {
	return &Patch{c: c, obj: obj, base: obj.DeepCopyObject().(client.Object)}
}

// Rebase takes obj as it is now as the snapshot: after the reconcile wrote it (a finalizer,
// an owner) or read it again from the server. (A write that changes neither status nor
// the snapshot's view of it, such as a labels patch, needs only obj's new resourceVersion.)
func (p *Patch) Rebase() { p.base = p.obj.DeepCopyObject().(client.Object) }

// Pending says the reconcile does not act on the object's generation (it is being
// deleted): Close writes the status but does not observe the generation.
func (p *Patch) Pending() { p.pending = true }

// Close ends the reconcile: unless Pending, observe gets the reconcile's error (nil when it
// succeeded) and sets status.observedGeneration, and the conditions that say how far that
// generation is (internal/readiness.Observe), so that every status write names its
// generation (kstatus reads a status without one as current); then the status is
// merge-patched if it changed. A patch error joins *err; an object deleted meanwhile has
// nothing left to report on.
func (p *Patch) Close(ctx context.Context, err *error, observe func(reconcileErr error)) {
	if !p.pending {
		observe(*err)
	}
	if perr := p.patch(ctx); perr != nil {
		*err = errors.Join(*err, perr)
	}
}

// Flush writes the status now, if it changed: for the one write that can't wait for Close
// (the last status of an object whose finalizer is about to go).
func (p *Patch) Flush(ctx context.Context) error { return p.patch(ctx) }

func (p *Patch) patch(ctx context.Context) error {
	data, err := client.MergeFrom(p.base).Data(p.obj)
	if err != nil {
		return err
	}
	var diff map[string]json.RawMessage
	if err := json.Unmarshal(data, &diff); err != nil {
		return err
	}
	status, ok := diff["status"]
	if !ok {
		return nil
	}
	only, err := json.Marshal(map[string]any{
		"metadata": map[string]string{"resourceVersion": p.obj.GetResourceVersion()},
		"status":   status,
	})
	if err != nil {
		return err
	}
	if err := p.c.Status().Patch(ctx, p.obj, client.RawPatch(types.MergePatchType, only)); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("writing the status of %s/%s: %w", p.obj.GetNamespace(), p.obj.GetName(), err)
	}
	p.Rebase()
	return nil
}
