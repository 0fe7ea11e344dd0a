// Command activator measures the activator's warm overhead: the same fake environments
// (activator/fakeshim, real TCP servers that behave like the runtime shim's invoke
// endpoint) are invoked directly and through the activator (router → dispatcher → shim
// client, real HTTP on both hops), by the same number of concurrent callers, in
// alternating rounds, in one run. It reports p50/p99 of each, the added latency, and the
// throughput ratio, and fails (exit 1) when the added p50 or p99 exceed the targets.
//
//	go run ./bench/activator [-callers 16] [-rounds 3] [-duration 3s]
package main

import (
	"flag"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/klambda/klambda/activator/testrig"
	"github.com/klambda/klambda/api/contract"
	"github.com/klambda/klambda/bench/internal/load"
)

func main() {
	callers := flag.Int("callers", 16, "Concurrent callers (and environments).")
	rounds := flag.Int("rounds", 3, "Alternating rounds of direct and activator runs.")
	dur := flag.Duration("duration", 3*time.Second, "Length of each run.")
	maxP50 := flag.Duration("max-added-p50", 500*time.Microsecond, "Target for the added p50.")
	maxP99 := flag.Duration("max-added-p99", 3*time.Millisecond, "Target for the added p99.")
	rate := flag.Float64("rate", 0, "Total requests per second, paced over the callers; 0: as fast as they can (closed loop).")
	cpuprofile := flag.String("cpuprofile", "", "Write a CPU profile of the activator runs here.")
	flag.Parse()
	// pace: each caller's interval between requests when paced (the machine is then not
	// saturated, and the added latency is the activator's, not queueing's).
	var pace time.Duration
	if *rate > 0 {
		pace = time.Duration(float64(*callers) / *rate * float64(time.Second))
	}

	rig := testrig.New(testrig.Options{WaitDeadline: 10 * time.Second})
	defer rig.Close()
	rig.Function("echo", -1, 0)
	shims := rig.Environments("echo", contract.Latest, *callers)
	client := &http.Client{Transport: &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 256, IdleConnTimeout: time.Minute}}
	payload := []byte(`{"key1":"value1","key2":"value2","key3":"value3"}`)

	direct := func(i int) (string, http.Header) {
		return shims[i].Server.URL + contract.InvokePath,
			http.Header{contract.HeaderInvokeSecret: {testrig.Secret}, "Content-Type": {"application/json"}}
	}
	via := func(int) (string, http.Header) {
		return rig.URL() + "/2015-03-31/functions/echo/invocations", http.Header{"Content-Type": {"application/json"}}
	}
	// Warm both paths' connections.
	load.Run(*callers, 300*time.Millisecond, pace, direct, client, payload)
	load.Run(*callers, 300*time.Millisecond, pace, via, client, payload)

	var ds, as []load.Result
	for i := 0; i < *rounds; i++ {
		ds = append(ds, load.Run(*callers, *dur, pace, direct, client, payload))
		if *cpuprofile != "" && i == 0 {
			f, err := os.Create(*cpuprofile)
			if err == nil {
				_ = pprof.StartCPUProfile(f)
			}
		}
		as = append(as, load.Run(*callers, *dur, pace, via, client, payload))
		if *cpuprofile != "" && i == 0 {
			pprof.StopCPUProfile()
		}
	}
	d, a := load.Merge(ds), load.Merge(as)
	overlaps := int64(0)
	for _, s := range shims {
		overlaps += s.Overlaps.Load()
	}
	loadavg, _ := os.ReadFile("/proc/loadavg")
	addP50, addP99 := a.Pct(.50)-d.Pct(.50), a.Pct(.99)-d.Pct(.99)
	var b strings.Builder
	mode := "closed loop (as fast as possible)"
	if *rate > 0 {
		mode = fmt.Sprintf("paced at %.0f req/s in total", *rate)
	}
	fmt.Fprintf(&b, "%s; ", mode)
	fmt.Fprintf(&b, "callers %d, %d rounds x %s each path, GOMAXPROCS %d, load average %s", *callers, *rounds, *dur, runtime.GOMAXPROCS(0), strings.Join(strings.Fields(string(loadavg))[:3], " "))
	fmt.Fprintf(&b, "\n| path | requests | errors | p50 | p99 | req/s |\n|---|---|---|---|---|---|\n")
	fmt.Fprintf(&b, "| direct to fake shim | %d | %d | %s | %s | %.0f |\n", len(d.Lat), d.Errs, load.Ms(d.Pct(.5)), load.Ms(d.Pct(.99)), d.RPS())
	fmt.Fprintf(&b, "| through activator | %d | %d | %s | %s | %.0f |\n", len(a.Lat), a.Errs, load.Ms(a.Pct(.5)), load.Ms(a.Pct(.99)), a.RPS())
	fmt.Fprintf(&b, "\nCPU per invocation (whole process): direct %s, through activator %s: the activator adds %s\n",
		load.Us(d.CPUPer()), load.Us(a.CPUPer()), load.Us(a.CPUPer()-d.CPUPer()))
	fmt.Fprintf(&b, "added p50 %s (target ≤ %s), added p99 %s (target ≤ %s), throughput ratio %.2f, overlapping invocations on one environment: %d\n",
		load.Ms(addP50), load.Ms(*maxP50), load.Ms(addP99), load.Ms(*maxP99), a.RPS()/d.RPS(), overlaps)
	fmt.Print(b.String())
	if addP50 > *maxP50 || addP99 > *maxP99 || a.Errs > 0 || overlaps > 0 {
		fmt.Println("FAIL: a service level was missed")
		os.Exit(1)
	}
}
