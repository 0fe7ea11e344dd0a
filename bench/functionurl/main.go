// Command functionurl measures what a function URL adds over the Invoke API on the same
// warm function: one in-process activator (activator/testrig: real core, fake shims
// over real TCP) serves both on one listener, the same callers invoke it through the
// Invoke API and through a path-based function URL (payload format 2.0 event in, the
// response interpreted out) in alternating rounds, in one run. It reports p50/p99 of each
// and the added latency, and fails (exit 1) when the added p50 exceeds the target.
//
//	go run ./bench/functionurl [-callers 4] [-rounds 3] [-duration 3s] [-rate 800]
package main

import (
	"flag"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/klambda/klambda/activator/functionurl"
	"github.com/klambda/klambda/activator/testrig"
	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	"github.com/klambda/klambda/bench/internal/load"
)

func main() {
	lf := load.RegisterFlags(4, 800)
	maxP50 := flag.Duration("max-added-p50", 200*time.Microsecond, "Target for the added p50.")
	flag.Parse()

	rig := testrig.New(testrig.Options{WaitDeadline: 10 * time.Second})
	defer rig.Close()
	rig.Function("echo", -1, 0)
	rig.Environments("echo", contract.Latest, *lf.Callers)
	table := functionurl.NewTable()
	fn := &lambdav1alpha1.Function{ObjectMeta: metav1.ObjectMeta{Namespace: testrig.Namespace, Name: "echo", UID: "bench"}}
	fn.Spec.FunctionURLConfig = &lambdav1alpha1.FunctionURLConfig{AuthType: lambdav1alpha1.FunctionURLAuthNone}
	table.SetFunction(fn)
	urls := &functionurl.Handler{Table: table, API: rig.Handler, Invoker: rig.Core, AccountID: rig.Core.AccountID, Reservations: rig.Table}
	srv := testrig.NewServer(urls.Wrap(rig.Handler)) // one listener, served as cmd/activator serves plain HTTP
	defer srv.Close()
	id := contract.FunctionURLID("bench", testrig.Namespace, "echo", "")

	client := &http.Client{Transport: &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 256, IdleConnTimeout: time.Minute}}
	payload := []byte(`{"key1":"value1","key2":"value2","key3":"value3"}`)
	hdr := http.Header{"Content-Type": {"application/json"}}
	api := func(int) (string, http.Header) { return srv.URL + "/2015-03-31/functions/echo/invocations", hdr }
	url := func(int) (string, http.Header) {
		return srv.URL + contract.FunctionURLPathPrefix + id + "/path?q=1", hdr
	}
	rs := lf.Compare(client, payload, nil, api, url)
	a, u := rs[0], rs[1]
	addP50, addP99 := u.Pct(.50)-a.Pct(.50), u.Pct(.99)-a.Pct(.99)
	var b strings.Builder
	fmt.Fprintf(&b, "paced at %.0f req/s (0: closed loop); callers %d, %d rounds x %s each path, GOMAXPROCS %d, load average %s\n",
		*lf.Rate, *lf.Callers, *lf.Rounds, *lf.Duration, runtime.GOMAXPROCS(0), load.LoadAvg())
	fmt.Fprintf(&b, "| path | requests | errors | p50 | p99 | req/s |\n|---|---|---|---|---|---|\n")
	fmt.Fprintf(&b, "| Invoke API | %d | %d | %s | %s | %.0f |\n", len(a.Lat), a.Errs, load.Ms(a.Pct(.5)), load.Ms(a.Pct(.99)), a.RPS())
	fmt.Fprintf(&b, "| function URL | %d | %d | %s | %s | %.0f |\n", len(u.Lat), u.Errs, load.Ms(u.Pct(.5)), load.Ms(u.Pct(.99)), u.RPS())
	fmt.Fprintf(&b, "CPU per request (whole process): Invoke API %s, function URL %s\n", load.Us(a.CPUPer()), load.Us(u.CPUPer()))
	fmt.Fprintf(&b, "function URL added p50 %s (target ≤ %s), added p99 %s\n", load.Ms(addP50), load.Ms(*maxP50), load.Ms(addP99))
	fmt.Print(b.String())
	if addP50 > *maxP50 || a.Errs > 0 || u.Errs > 0 {
		fmt.Println("FAIL: a service level was missed")
		os.Exit(1)
	}
}
