package storetest

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	"github.com/klambda/klambda/controllers"
	"github.com/klambda/klambda/internal/codestore/registrytest"
	"github.com/klambda/klambda/test/ziptest"
)

// TestCodeStoreOutageKeepsTheFunctionPending: while the code store answers 503 (its pod
// restarting, say), a new Function is never Failed: it stays Pending, Reconciling with
// reason CodeStoreUnavailable (never Stalled, which GitOps tools read as a failed sync), and is tried
// again every few seconds; once the store answers, it goes Active with its code stored.
func TestCodeStoreOutageKeepsTheFunctionPending(t *testing.T) {
	var down atomic.Bool
	var refused atomic.Int64
	down.Store(true)
	host := registrytest.StartWith(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if down.Load() && r.URL.Path != "/v2/" {
				refused.Add(1)
				http.Error(w, "restarting", http.StatusServiceUnavailable)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	repo := host + "/klambda/code"
	startManager(t, repo)
	ns := newNamespace(t)

	zip := ziptest.Bootstrap(t, "#!/bin/sh\necho hi\n")
	h, b := ziptest.Digest(zip)
	src := newSource(t, zip)
	createURLFunction(t, ns, "patient", src, h)
	eventually(t, "Pending, Reconciling with reason CodeStoreUnavailable, while the store is down", func() (bool, string) {
		st := getFn(t, ns, "patient").Status
		c := meta.FindStatusCondition(st.Conditions, contract.ConditionReconciling)
		return st.State == lambdav1alpha1.StatePending && c != nil && c.Status == metav1.ConditionTrue && c.Reason == controllers.ReasonCodeStoreUnavailable &&
				strings.Contains(st.StateReason, "code store"),
			fmt.Sprintf("state %s (%s) conditions %v", st.State, st.StateReason, st.Conditions)
	})
	// Several retries (every 3 s) later it has still not failed.
	firstRefused := refused.Load()
	deadline := time.Now().Add(8 * time.Second)
	for time.Now().Before(deadline) {
		st := getFn(t, ns, "patient").Status
		if st.State == lambdav1alpha1.StateFailed || meta.IsStatusConditionTrue(st.Conditions, contract.ConditionStalled) {
			t.Fatalf("a code store outage of a few seconds failed the function: state %s (%s) conditions %v", st.State, st.StateReason, st.Conditions)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if n := refused.Load(); n <= firstRefused {
		t.Fatalf("the manager did not retry while the store was down (%d refused requests, then %d)", firstRefused, n)
	}

	down.Store(false)
	eventually(t, "Active with its code in the store once the store answers", func() (bool, string) {
		st := getFn(t, ns, "patient").Status
		return st.State == lambdav1alpha1.StateActive && st.CodeSha256 == b && strings.HasPrefix(st.CodeStoreRef, repo+"@sha256:") &&
				meta.IsStatusConditionTrue(st.Conditions, contract.ConditionCodeResolved) && meta.FindStatusCondition(st.Conditions, contract.ConditionStalled) == nil,
			fmt.Sprintf("state %s (%s) ref %q conditions %v", st.State, st.StateReason, st.CodeStoreRef, st.Conditions)
	})
}
