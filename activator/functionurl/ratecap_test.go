package functionurl

import (
	"net/http"
	"testing"
	"time"

	"github.com/klambda/klambda/activator/testrig"
	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// Lambda caps a function URL at 10 × the function's reserved concurrency requests per
// second, answering 429 over it (without invoking); a function without reserved
// concurrency has no such cap; a new reservation takes effect at once. The clock is the
// handler's, so the test counts requests within one instant and after a known interval.
func TestURLRateCapTenTimesReserved(t *testing.T) {
	inv := &fakeInvoker{fn: result(`"ok"`, "")}
	x := newRigURL(t, testrig.Options{}, inv)
	x.h.Reservations = x.rig.Table
	clock := time.Unix(1_700_000_000, 0)
	x.h.Now = func() time.Time { return clock }
	x.rig.Function("capped", 2, 0)
	f := function("capped", &lambdav1alpha1.FunctionURLConfig{AuthType: lambdav1alpha1.FunctionURLAuthNone})
	x.table.SetFunction(f)
	u := urlOf(x.srv.URL, f)
	count := func(n int) (ok, throttled int) {
		t.Helper()
		for i := 0; i < n; i++ {
			resp, b := do(t, mustReq(http.MethodGet, u, ""))
			switch resp.StatusCode {
			case 200:
				ok++
			case 429:
				if string(b) != `{"Message":"Rate Exceeded."}` || resp.Header.Get(contract.HeaderErrorType) != "TooManyRequestsException" {
					t.Fatalf("429: %q %v", b, resp.Header)
				}
				throttled++
			default:
				t.Fatalf("status %d %s", resp.StatusCode, b)
			}
		}
		return ok, throttled
	}
	calls := inv.calls.Load()
	if ok, thr := count(25); ok != 20 || thr != 5 {
		t.Fatalf("reserved 2, 25 requests in one instant: %d ok, %d throttled; want 20 and 5", ok, thr)
	}
	if n := inv.calls.Load() - calls; n != 20 {
		t.Fatalf("throttled requests invoked: %d invocations for 20 admitted", n)
	}
	clock = clock.Add(300 * time.Millisecond) // 20/s × 0.3 s = 6 more
	if ok, thr := count(8); ok != 6 || thr != 2 {
		t.Fatalf("0.3 s later: %d ok, %d throttled; want 6 and 2", ok, thr)
	}
	// Reserved 1: 10 per second from now on.
	x.rig.Function("capped", 1, 0)
	clock = clock.Add(time.Hour)
	if ok, thr := count(12); ok != 10 || thr != 2 {
		t.Fatalf("reserved 1: %d ok, %d throttled; want 10 and 2", ok, thr)
	}
	// No reserved concurrency: no per-URL cap.
	x.rig.Function("free", -1, 0)
	ff := function("free", &lambdav1alpha1.FunctionURLConfig{AuthType: lambdav1alpha1.FunctionURLAuthNone})
	x.table.SetFunction(ff)
	u = urlOf(x.srv.URL, ff)
	if ok, thr := count(50); ok != 50 || thr != 0 {
		t.Fatalf("no reserved concurrency: %d ok, %d throttled", ok, thr)
	}
}
