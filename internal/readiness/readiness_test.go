package readiness

import (
	"errors"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/klambda/klambda/api/contract"
)

// summary is the three conditions as "Ready=False(Reason)/gen", in a fixed order.
func summary(conds []metav1.Condition) string {
	out := ""
	for _, typ := range []string{contract.ConditionReady, contract.ConditionReconciling, contract.ConditionStalled} {
		if c := meta.FindStatusCondition(conds, typ); c != nil {
			out += " " + c.Type + "=" + string(c.Status) + "(" + c.Reason + ")/" + string(rune('0'+c.ObservedGeneration))
		}
	}
	return out
}

func TestVerdictsReplaceEachOther(t *testing.T) {
	var conds []metav1.Condition
	Reconciling(&conds, 1, "Creating", "creating")
	if got := summary(conds); got != " Ready=False(Creating)/1 Reconciling=True(Creating)/1" {
		t.Errorf("reconciling: %s", got)
	}
	Stalled(&conds, 1, "InvalidCode", "bad zip")
	if got := summary(conds); got != " Ready=False(InvalidCode)/1 Stalled=True(InvalidCode)/1" {
		t.Errorf("stalled: %s", got)
	}
	Ready(&conds, 2, "Active", "rolled out")
	if got := summary(conds); got != " Ready=True(Active)/2" {
		t.Errorf("ready: %s", got)
	}
}

func TestObserve(t *testing.T) {
	// No verdict on the generation: Reconciling.
	var conds []metav1.Condition
	Ready(&conds, 1, "Active", "")
	if gen := Observe(&conds, 2, 1, nil); gen != 2 || summary(conds) != " Ready=False(InProgress)/2 Reconciling=True(InProgress)/2" {
		t.Errorf("no verdict: %d %s", gen, summary(conds))
	}
	// An error beside a verdict on the generation keeps it, Reconciling while retried ...
	conds = nil
	Stalled(&conds, 3, "PreconditionFailed", "")
	if gen := Observe(&[]metav1.Condition{}, 4, 3, errors.New("conflict")); gen != 3 {
		t.Errorf("a failed reconcile observed generation %d", gen)
	}
	Observe(&conds, 3, 3, errors.New("conflict"))
	if got := summary(conds); got != " Ready=False(PreconditionFailed)/3 Reconciling=True(Retrying)/3 Stalled=True(PreconditionFailed)/3" {
		t.Errorf("error after a verdict: %s", got)
	}
	// ... and a success without a new verdict drops the retry.
	Observe(&conds, 3, 3, nil)
	if got := summary(conds); got != " Ready=False(PreconditionFailed)/3 Stalled=True(PreconditionFailed)/3" {
		t.Errorf("success after a retry: %s", got)
	}
	// An error before any verdict: Ready False, InProgress.
	conds = nil
	if gen := Observe(&conds, 1, 0, errors.New("apiserver down")); gen != 1 {
		t.Errorf("the first write must name the generation, not %d", gen)
	}
	if got := summary(conds); got != " Ready=False(InProgress)/1 Reconciling=True(Retrying)/1" {
		t.Errorf("error without a verdict: %s", got)
	}
	// A verdict on the generation is left alone.
	conds = nil
	Ready(&conds, 4, "Active", "")
	Observe(&conds, 4, 4, nil)
	if got := summary(conds); got != " Ready=True(Active)/4" {
		t.Errorf("verdict: %s", got)
	}
}
