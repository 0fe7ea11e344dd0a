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
	"bytes"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/klambda/klambda/activator/testrig"
	"github.com/klambda/klambda/api/contract"
)

type result struct {
	lat  []time.Duration
	errs int
	wall time.Duration
	cpu  time.Duration // this process's user+system time during the run
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuPerRequest is the process CPU per successful request (client, activator and shims
// together: the difference between the two paths is the activator's).
func (r result) cpuPerRequest() time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	return r.cpu / time.Duration(len(r.lat))
}

func (r result) pct(p float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	i := int(p * float64(len(r.lat)-1))
	return r.lat[i]
}

func (r result) rps() float64 { return float64(len(r.lat)) / r.wall.Seconds() }

// pace, when > 0, is each caller's interval between requests (a fixed pacer, so the
// machine is not saturated and the added latency is the activator's, not queueing's).
var pace time.Duration

func run(callers int, d time.Duration, target func(i int) (string, http.Header), client *http.Client, payload []byte) result {
	var mu sync.Mutex
	var all []time.Duration
	errs := 0
	var wg sync.WaitGroup
	start := time.Now()
	cpu0 := cpuTime()
	stop := start.Add(d)
	for i := 0; i < callers; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			url, hdr := target(i)
			lat := make([]time.Duration, 0, 4096)
			e := 0
			next := time.Now().Add(pace * time.Duration(i) / time.Duration(callers)) // staggered, not in lockstep
			for time.Now().Before(stop) {
				if pace > 0 {
					if w := time.Until(next); w > 0 {
						time.Sleep(w)
					}
					next = next.Add(pace)
				}
				req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(payload))
				for k, v := range hdr {
					req.Header[k] = v
				}
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					e++
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					e++
					continue
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			all = append(all, lat...)
			errs += e
			mu.Unlock()
		}(i)
	}
	wg.Wait()
	r := result{lat: all, errs: errs, wall: time.Since(start), cpu: cpuTime() - cpu0}
	sort.Slice(r.lat, func(i, j int) bool { return r.lat[i] < r.lat[j] })
	return r
}

func merge(rs []result) result {
	var m result
	for _, r := range rs {
		m.lat = append(m.lat, r.lat...)
		m.errs += r.errs
		m.wall += r.wall
		m.cpu += r.cpu
	}
	sort.Slice(m.lat, func(i, j int) bool { return m.lat[i] < m.lat[j] })
	return m
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond)) }

func us(d time.Duration) string { return fmt.Sprintf("%.1f µs", float64(d)/float64(time.Microsecond)) }

func main() {
	callers := flag.Int("callers", 16, "Concurrent callers (and environments).")
	rounds := flag.Int("rounds", 3, "Alternating rounds of direct and activator runs.")
	dur := flag.Duration("duration", 3*time.Second, "Length of each run.")
	maxP50 := flag.Duration("max-added-p50", 500*time.Microsecond, "Target for the added p50.")
	maxP99 := flag.Duration("max-added-p99", 3*time.Millisecond, "Target for the added p99.")
	rate := flag.Float64("rate", 0, "Total requests per second, paced over the callers; 0: as fast as they can (closed loop).")
	cpuprofile := flag.String("cpuprofile", "", "Write a CPU profile of the activator runs here.")
	flag.Parse()
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
	run(*callers, 300*time.Millisecond, direct, client, payload)
	run(*callers, 300*time.Millisecond, via, client, payload)

	var ds, as []result
	for i := 0; i < *rounds; i++ {
		ds = append(ds, run(*callers, *dur, direct, client, payload))
		if *cpuprofile != "" && i == 0 {
			f, err := os.Create(*cpuprofile)
			if err == nil {
				_ = pprof.StartCPUProfile(f)
			}
		}
		as = append(as, run(*callers, *dur, via, client, payload))
		if *cpuprofile != "" && i == 0 {
			pprof.StopCPUProfile()
		}
	}
	d, a := merge(ds), merge(as)
	overlaps := int64(0)
	for _, s := range shims {
		overlaps += s.Overlaps.Load()
	}
	load, _ := os.ReadFile("/proc/loadavg")
	addP50, addP99 := a.pct(.50)-d.pct(.50), a.pct(.99)-d.pct(.99)
	var b strings.Builder
	mode := "closed loop (as fast as possible)"
	if *rate > 0 {
		mode = fmt.Sprintf("paced at %.0f req/s in total", *rate)
	}
	fmt.Fprintf(&b, "%s; ", mode)
	fmt.Fprintf(&b, "callers %d, %d rounds x %s each path, GOMAXPROCS %d, load average %s", *callers, *rounds, *dur, runtime.GOMAXPROCS(0), strings.Join(strings.Fields(string(load))[:3], " "))
	fmt.Fprintf(&b, "\n| path | requests | errors | p50 | p99 | req/s |\n|---|---|---|---|---|---|\n")
	fmt.Fprintf(&b, "| direct to fake shim | %d | %d | %s | %s | %.0f |\n", len(d.lat), d.errs, ms(d.pct(.5)), ms(d.pct(.99)), d.rps())
	fmt.Fprintf(&b, "| through activator | %d | %d | %s | %s | %.0f |\n", len(a.lat), a.errs, ms(a.pct(.5)), ms(a.pct(.99)), a.rps())
	fmt.Fprintf(&b, "\nCPU per invocation (whole process): direct %s, through activator %s: the activator adds %s\n",
		us(d.cpuPerRequest()), us(a.cpuPerRequest()), us(a.cpuPerRequest()-d.cpuPerRequest()))
	fmt.Fprintf(&b, "added p50 %s (target ≤ %s), added p99 %s (target ≤ %s), throughput ratio %.2f, overlapping invocations on one environment: %d\n",
		ms(addP50), ms(*maxP50), ms(addP99), ms(*maxP99), a.rps()/d.rps(), overlaps)
	fmt.Print(b.String())
	if addP50 > *maxP50 || addP99 > *maxP99 || a.errs > 0 || overlaps > 0 {
		fmt.Println("FAIL: a service level was missed")
		os.Exit(1)
	}
}
