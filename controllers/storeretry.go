package controllers

import (
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/klambda/klambda/api/contract"
)

// A code store that can't be used is klambda's failure, not the function's, and usually a
// brief one: the store's pod restarting, its Service not yet programmed on the node, a
// network blip. For storeFailureGrace a Function (or an update of it, or a Version) whose
// code could not be stored or found there stays Pending (an update InProgress), Reconciling
// with reason CodeStoreUnavailable, and is tried again every storeRetry. Only a store that still fails
// after that makes it Failed (InternalError, Stalled), as any other failure to resolve its
// code, and it is still retried. GitOps tools (kstatus) read Reconciling as "in progress",
// Stalled as a failure, so a blip no longer fails a sync.
const (
	storeFailureGrace = 3 * time.Minute
	storeRetry        = 3 * time.Second
	// ReasonCodeStoreUnavailable is the Reconciling (and Ready False) reason meanwhile.
	ReasonCodeStoreUnavailable = "CodeStoreUnavailable"
)

// unresolvedSince records that generation gen's code is not resolved (CodeResolved False,
// with reason and msg) and returns since when: the first failure of this generation starts
// the clock, later ones keep it.
func unresolvedSince(conds *[]metav1.Condition, gen int64, reason, msg string, now time.Time) time.Time {
	since := now
	if prev := meta.FindStatusCondition(*conds, contract.ConditionCodeResolved); prev != nil &&
		prev.Status == metav1.ConditionFalse && prev.ObservedGeneration == gen && !prev.LastTransitionTime.IsZero() {
		since = prev.LastTransitionTime.Time
	}
	setCondition(conds, gen, contract.ConditionCodeResolved, false, reason, msg)
	meta.FindStatusCondition(*conds, contract.ConditionCodeResolved).LastTransitionTime = metav1.NewTime(since)
	return since
}

// retryingStore says whether rerr is a code store failure still within its grace, and the
// message to report meanwhile; it records CodeResolved False either way for a store failure.
func retryingStore(conds *[]metav1.Condition, gen int64, rerr *ResolveError, now time.Time) (bool, string) {
	if !rerr.Service {
		return false, ""
	}
	since := unresolvedSince(conds, gen, string(rerr.Reason), rerr.Message, now)
	if now.Sub(since) < storeFailureGrace {
		return true, fmt.Sprintf("retrying: klambda's code store could not be used since %s (Failed after %s of this): %s",
			since.UTC().Format(time.RFC3339), storeFailureGrace, rerr.Message)
	}
	return false, ""
}
