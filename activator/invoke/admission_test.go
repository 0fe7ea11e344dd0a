package invoke_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klambda/klambda/activator/invoke"
	"github.com/klambda/klambda/activator/testrig"
	"github.com/klambda/klambda/api/contract"
)

// The requests waiting for an environment are bounded (they were bounded only by each
// namespace's concurrency limit); past the bound: TooManyRequestsException at once.
func TestWaitingRequestsAreBounded(t *testing.T) {
	r := testrig.New(testrig.Options{WaitDeadline: 3 * time.Second})
	defer r.Close()
	adm, err := invoke.NewAdmission(invoke.DefaultRequestBytes, 0, 5)
	if err != nil {
		t.Fatal(err)
	}
	r.UseAdmission(adm)
	r.Function("f", -1, 0) // no environment: every request waits
	done := make(chan answer, 5)
	for i := 0; i < 5; i++ {
		go func() { done <- call(t, r.URL(), invPath("f"), `{}`, nil) }()
	}
	deadline := time.Now().Add(2 * time.Second)
	for r.Dispatcher.Stats() == nil || r.Dispatcher.Stats()[0].Waiting < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("5 requests did not start waiting: %+v", r.Dispatcher.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	start := time.Now()
	a := call(t, r.URL(), invPath("f"), `{}`, nil)
	wantError(t, a, http.StatusTooManyRequests, "TooManyRequestsException", "waiting")
	if time.Since(start) > time.Second {
		t.Fatalf("the 6th waiter was refused only after %v", time.Since(start))
	}
	for i := 0; i < 5; i++ {
		<-done
	}
	if held := adm.Held(); held != 0 {
		t.Fatalf("%d request bytes still reserved after every request ended", held)
	}
}

func TestAdmissionRefusesBudgetsSmallerThanAPayload(t *testing.T) {
	if _, err := invoke.NewAdmission(1<<20, 0, 0); err == nil {
		t.Fatal("a 1 MiB budget cannot hold one 6 MB payload: want an error")
	}
	if _, err := invoke.NewAdmission(invoke.DefaultRequestBytes, 1<<20, 0); err == nil {
		t.Fatal("a 1 MiB namespace share cannot hold one 6 MB payload: want an error")
	}
}

// A flood of made-up tokens from one client is answered TooManyRequestsException
// (CallerRateLimitExceeded) once its review budget is spent, while a known caller's cached
// decision still lets it invoke.
func TestTokenFloodAnsweredCallerRateLimit(t *testing.T) {
	r := testrig.New(testrig.Options{Auth: testrig.Tokens{"good": "alice"}})
	defer r.Close()
	r.Function("f", -1, 0)
	r.Environments("f", "$LATEST", 1)
	good := map[string]string{"Authorization": "Bearer good"}
	if a := call(t, r.URL(), invPath("f"), `{}`, good); a.status != 200 {
		t.Fatalf("%+v", a)
	}
	limited := 0
	for i := 0; i < 200; i++ {
		a := call(t, r.URL(), invPath("f"), `{}`, map[string]string{"Authorization": "Bearer forged-" + strconv.Itoa(i)})
		switch {
		case a.status == http.StatusTooManyRequests && strings.Contains(a.body, contract.ReasonCallerRate):
			limited++
		case a.status != http.StatusForbidden:
			t.Fatalf("forged token: %+v", a)
		}
	}
	if limited == 0 {
		t.Fatal("200 forged tokens from one client were never rate-limited")
	}
	if a := call(t, r.URL(), invPath("f"), `{}`, good); a.status != 200 {
		t.Fatalf("the known caller during the flood: %+v", a)
	}
}
