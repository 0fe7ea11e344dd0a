// Package readiness writes the three summary conditions every klambda object carries, the
// way kstatus (kubectl wait, Flux, cli-utils) and Argo CD read them:
//
//   - Ready: True when the object's generation is fully realized, else False;
//   - Reconciling: True, with a reason, while work on the generation is in progress;
//   - Stalled: True, with Lambda's reason code, when the object cannot progress without a
//     change (to it, or to what it names).
//
// A verdict (Ready, Reconciling, Stalled) leaves at most one of Reconciling and Stalled
// present, removing the other; only a retry after an error (Observe) puts Reconciling beside
// Stalled, which kstatus reads first. Every condition carries the generation it describes.
package readiness

import (
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/klambda/klambda/api/contract"
)

// maxMessage is metav1.Condition's limit on a message.
const maxMessage = 32768

// Ready records that generation gen is realized.
func Ready(conds *[]metav1.Condition, gen int64, reason, msg string) {
	set(conds, gen, contract.ConditionReady, metav1.ConditionTrue, reason, msg)
	meta.RemoveStatusCondition(conds, contract.ConditionReconciling)
	meta.RemoveStatusCondition(conds, contract.ConditionStalled)
}

// Reconciling records that work on generation gen is in progress: Ready is False with the
// same reason and message.
func Reconciling(conds *[]metav1.Condition, gen int64, reason, msg string) {
	set(conds, gen, contract.ConditionReady, metav1.ConditionFalse, reason, msg)
	set(conds, gen, contract.ConditionReconciling, metav1.ConditionTrue, reason, msg)
	meta.RemoveStatusCondition(conds, contract.ConditionStalled)
}

// Stalled records that generation gen cannot progress without a change: Ready is False with
// the same reason and message.
func Stalled(conds *[]metav1.Condition, gen int64, reason, msg string) {
	set(conds, gen, contract.ConditionReady, metav1.ConditionFalse, reason, msg)
	set(conds, gen, contract.ConditionStalled, metav1.ConditionTrue, reason, msg)
	meta.RemoveStatusCondition(conds, contract.ConditionReconciling)
}

// ReasonRetrying: the last reconcile failed and is retried.
const ReasonRetrying = "Retrying"

// Observe ends a reconcile of generation gen before its status is written, and returns the
// generation for status.observedGeneration (observed is the one the status had): gen,
// unless the reconcile failed on an object whose status already names a generation — a
// failed reconcile has not acted on gen. So every status write names a generation, the first
// one included (kstatus reads a status without one as current).
//
// A reconcile that failed (reconcileErr) is retried: Reconciling True (reason Retrying)
// beside the verdict already reached on gen, if any, else Ready False (reason InProgress).
// One that succeeded without a verdict on gen (Ready describes an older generation, or is
// missing) is Reconciling; one that succeeded after a retry drops Reconciling Retrying.
func Observe(conds *[]metav1.Condition, gen, observed int64, reconcileErr error) int64 {
	ready := meta.FindStatusCondition(*conds, contract.ConditionReady)
	current := ready != nil && ready.ObservedGeneration == gen
	switch {
	case reconcileErr != nil:
		msg := "retrying after an error: " + reconcileErr.Error()
		if !current {
			set(conds, gen, contract.ConditionReady, metav1.ConditionFalse, contract.ReasonInProgress, msg)
		}
		set(conds, gen, contract.ConditionReconciling, metav1.ConditionTrue, ReasonRetrying, msg)
	case !current:
		Reconciling(conds, gen, contract.ReasonInProgress, "the controller is working on this generation")
	default:
		if c := meta.FindStatusCondition(*conds, contract.ConditionReconciling); c != nil && c.Reason == ReasonRetrying {
			meta.RemoveStatusCondition(conds, contract.ConditionReconciling)
		}
	}
	if reconcileErr != nil && observed != 0 {
		return observed
	}
	return gen
}

func set(conds *[]metav1.Condition, gen int64, typ string, status metav1.ConditionStatus, reason, msg string) {
	if len(msg) > maxMessage {
		msg = msg[:maxMessage]
	}
	meta.SetStatusCondition(conds, metav1.Condition{Type: typ, Status: status, Reason: reason, Message: msg, ObservedGeneration: gen})
}
