// Command activator measures the activator's warm overhead: the same fake environments
// (activator/fakeshim, real TCP servers that behave like the runtime shim's invoke
// endpoint) are invoked directly and through the activator (router → dispatcher → shim
// client, real HTTP on both hops), by the same number of concurrent callers, in
// alternating rounds, in one run. It reports p50/p99 of each, the added latency, CPU and
// allocations, and the throughput ratio, and fails (exit 1) when the added p50 or p99
// exceed the targets.
//
// With -floor it also runs the callers through a do-nothing relay (floor.go) and prints
// what that hop adds, as the floor of any activator's.
//
//	go run ./bench/activator [-callers 16] [-rounds 3] [-duration 3s] [-rate 0] [-floor] [-cpuprofile F] [-memprofile F]
package main

import (
	"flag"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/klambda/klambda/activator/testrig"
	"github.com/klambda/klambda/api/contract"
	"github.com/klambda/klambda/bench/internal/load"
)

// Issue #17's targets for the closed loop, printed with the figures.
const (
	targetAddedCPU   = 40 * time.Microsecond
	targetThroughput = 0.7
)

func main() {
	lf := load.RegisterFlags(16, 0)
	maxP50 := flag.Duration("max-added-p50", 500*time.Microsecond, "Target for the added p50.")
	maxP99 := flag.Duration("max-added-p99", 3*time.Millisecond, "Target for the added p99.")
	floor := flag.Bool("floor", false, "Also run the callers through a do-nothing relay in front of the environments (floor.go): what any hop adds.")
	flag.Parse()

	rig := testrig.New(testrig.Options{WaitDeadline: 10 * time.Second})
	defer rig.Close()
	rig.Function("echo", -1, 0)
	shims := rig.Environments("echo", contract.Latest, *lf.Callers)
	client := &http.Client{Transport: &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 256, IdleConnTimeout: time.Minute}}
	payload := []byte(`{"key1":"value1","key2":"value2","key3":"value3"}`)

	direct := func(i int) (string, http.Header) {
		return shims[i].Server.URL + contract.InvokePath,
			http.Header{contract.HeaderInvokeSecret: {testrig.Secret}, "Content-Type": {"application/json"}}
	}
	via := func(int) (string, http.Header) {
		return rig.URL() + "/2015-03-31/functions/echo/invocations", http.Header{"Content-Type": {"application/json"}}
	}
	paths := []load.Target{direct, via}
	var floorURLs []string
	if *floor {
		addrs := make([]string, len(shims))
		for i, s := range shims {
			addrs[i] = s.Addr()
		}
		var stop func()
		floorURLs, stop = startFloor(addrs)
		defer stop()
		relayed := func(i int) (string, http.Header) {
			return floorURLs[i] + contract.InvokePath,
				http.Header{contract.HeaderInvokeSecret: {testrig.Secret}, "Content-Type": {"application/json"}}
		}
		paths = []load.Target{direct, relayed, via}
	}
	rs := lf.Compare(client, payload, nil, paths...)
	d, a := rs[0], rs[len(rs)-1]
	overlaps := int64(0)
	for _, s := range shims {
		overlaps += s.Overlaps.Load()
	}
	addP50, addP99 := a.Pct(.50)-d.Pct(.50), a.Pct(.99)-d.Pct(.99)
	addCPU, ratio := a.CPUPer()-d.CPUPer(), a.RPS()/d.RPS()
	var b strings.Builder
	mode := "closed loop (as fast as possible)"
	if *lf.Rate > 0 {
		mode = fmt.Sprintf("paced at %.0f req/s in total", *lf.Rate)
	}
	fmt.Fprintf(&b, "%s; ", mode)
	fmt.Fprintf(&b, "callers %d, %d rounds x %s each path, GOMAXPROCS %d, load average %s", *lf.Callers, *lf.Rounds, *lf.Duration, runtime.GOMAXPROCS(0), load.LoadAvg())
	fmt.Fprintf(&b, "\n| path | requests | errors | p50 | p99 | req/s | allocations per invocation (process) |\n|---|---|---|---|---|---|---|\n")
	fmt.Fprintf(&b, "| direct to fake shim | %d | %d | %s | %s | %.0f | %.1f |\n", len(d.Lat), d.Errs, load.Ms(d.Pct(.5)), load.Ms(d.Pct(.99)), d.RPS(), d.AllocsPer())
	if *floor {
		f := rs[1]
		fmt.Fprintf(&b, "| through the do-nothing relay (floor) | %d | %d | %s | %s | %.0f | %.1f |\n", len(f.Lat), f.Errs, load.Ms(f.Pct(.5)), load.Ms(f.Pct(.99)), f.RPS(), f.AllocsPer())
	}
	fmt.Fprintf(&b, "| through activator | %d | %d | %s | %s | %.0f | %.1f |\n", len(a.Lat), a.Errs, load.Ms(a.Pct(.5)), load.Ms(a.Pct(.99)), a.RPS(), a.AllocsPer())
	fmt.Fprintf(&b, "\nCPU per invocation (whole process): direct %s, through activator %s: the activator adds %s (target ≤ %s: %v) and %.1f allocations\n",
		load.Us(d.CPUPer()), load.Us(a.CPUPer()), load.Us(addCPU), load.Us(targetAddedCPU), addCPU <= targetAddedCPU, a.AllocsPer()-d.AllocsPer())
	if *floor {
		f := rs[1]
		fmt.Fprintf(&b, "floor: the do-nothing relay adds %s per invocation (throughput ratio %.2f); the activator adds %s more than the relay\n",
			load.Us(f.CPUPer()-d.CPUPer()), f.RPS()/d.RPS(), load.Us(a.CPUPer()-f.CPUPer()))
	}
	fmt.Fprintf(&b, "added p50 %s (target ≤ %s), added p99 %s (target ≤ %s), throughput ratio %.2f", load.Ms(addP50), load.Ms(*maxP50), load.Ms(addP99), load.Ms(*maxP99), ratio)
	if *lf.Rate <= 0 {
		fmt.Fprintf(&b, " (closed loop target ≥ %.1f: %v)", targetThroughput, ratio >= targetThroughput)
	}
	fmt.Fprintf(&b, ", overlapping invocations on one environment: %d\n", overlaps)
	fmt.Print(b.String())
	if addP50 > *maxP50 || addP99 > *maxP99 || a.Errs > 0 || overlaps > 0 {
		fmt.Println("FAIL: a service level was missed")
		os.Exit(1)
	}
}
