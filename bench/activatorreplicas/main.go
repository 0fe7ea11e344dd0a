// Command activatorreplicas measures what several activator replicas cost on the warm path:
// the same fake environments (activator/fakeshim) are invoked through one replica, and
// through three replicas that share them the way cmd/activator wires them (activator/peer:
// the namespace's owner runs the invocation; the other two forward it over the peer port,
// real HTTP), with the callers spread evenly over the three, as the activator's Service
// spreads them. Alternating rounds, one process; it prints p50/p99 of each, the added
// latency, and the CPU per invocation of each as a ratio.
//
// The Leases (activator/ownership) are off this path: ownership is fixed here (replica 0
// owns the namespace), so the figures are the forwarding's, not the Lease traffic's.
//
//	go run ./bench/activatorreplicas [-callers 16] [-rounds 3] [-duration 3s] [-rate 1000]
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/klambda/klambda/activator/peer"
	"github.com/klambda/klambda/activator/testrig"
	"github.com/klambda/klambda/api/contract"
)

// fixed is an ownership that does not change: owner or not, and the owner's peer address.
type fixed struct {
	owner bool
	addr  string
}

func (f fixed) OwnsNamespace(string) bool { return f.owner }
func (f fixed) Owner(string) (string, bool) {
	return f.addr, !f.owner
}

type peerToken struct{}

func (peerToken) IsPeer(_ context.Context, tok string) (bool, error) { return tok == "peer", nil }

type result struct {
	lat  []time.Duration
	errs int
	wall time.Duration
	cpu  time.Duration
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (r result) pct(p float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	return r.lat[int(p*float64(len(r.lat)-1))]
}

func (r result) cpuPer() time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	return r.cpu / time.Duration(len(r.lat))
}

// run sends requests from callers (caller i to urls[i%len(urls)]), paced when pace > 0.
func run(callers int, d, pace time.Duration, urls []string, client *http.Client, payload []byte) result {
	var mu sync.Mutex
	var all []time.Duration
	errs := 0
	var wg sync.WaitGroup
	start, cpu0 := time.Now(), cpuTime()
	stop := start.Add(d)
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			url := urls[i%len(urls)]
			lat := make([]time.Duration, 0, 4096)
			e := 0
			next := time.Now().Add(pace * time.Duration(i) / time.Duration(callers))
			for time.Now().Before(stop) {
				if pace > 0 {
					if w := time.Until(next); w > 0 {
						time.Sleep(w)
					}
					next = next.Add(pace)
				}
				t0 := time.Now()
				resp, err := client.Post(url, "application/json", bytes.NewReader(payload))
				if err != nil {
					e++
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					e++
					continue
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			all = append(all, lat...)
			errs += e
			mu.Unlock()
		}()
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

func main() {
	callers := flag.Int("callers", 16, "Concurrent callers (and environments).")
	rounds := flag.Int("rounds", 3, "Alternating rounds of one-replica and three-replica runs.")
	dur := flag.Duration("duration", 3*time.Second, "Length of each run.")
	rate := flag.Float64("rate", 1000, "Total requests per second, paced over the callers; 0: closed loop (as fast as they can).")
	flag.Parse()
	var pace time.Duration
	if *rate > 0 {
		pace = time.Duration(float64(*callers) / *rate * float64(time.Second))
	}

	// Three replicas' cores over the same environments; replica 0 owns the namespace.
	rigs := make([]*testrig.Rig, 3)
	var shims []string
	for i := range rigs {
		rigs[i] = testrig.New(testrig.Options{WaitDeadline: 10 * time.Second})
		defer rigs[i].Close()
		rigs[i].Function("echo", -1, 0)
	}
	for _, s := range rigs[0].Environments("echo", contract.Latest, *callers) {
		shims = append(shims, s.Addr())
	}
	ownerPeer := httptest.NewServer(&peer.Handler{Core: rigs[0].Core, Owns: func(string) bool { return true }, Verify: peerToken{}})
	defer ownerPeer.Close()
	client := &peer.Client{HTTP: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}},
		Token: func() (string, error) { return "peer", nil }}
	addr := strings.TrimPrefix(ownerPeer.URL, "http://")
	rigs[0].Handler.Invoker = &peer.Router{Local: rigs[0].Core, Ownership: fixed{owner: true}, Client: client, Wait: time.Second, Retry: 10 * time.Millisecond}
	for _, r := range rigs[1:] {
		r.Handler.Invoker = &peer.Router{Local: r.Core, Ownership: fixed{addr: addr}, Client: client, Wait: time.Second, Retry: 10 * time.Millisecond}
	}
	path := "/2015-03-31/functions/echo/invocations"
	one := []string{rigs[0].URL() + path}
	three := []string{rigs[0].URL() + path, rigs[1].URL() + path, rigs[2].URL() + path}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 256, IdleConnTimeout: time.Minute}}
	payload := []byte(`{"key1":"value1","key2":"value2","key3":"value3"}`)
	// The baseline: the environments called directly (the client's and the shims' CPU),
	// taken off both paths' CPU to give the activators' own.
	direct := []string{}
	for _, a := range shims {
		direct = append(direct, "http://"+a+contract.InvokePath)
	}
	hd := &http.Client{Transport: &secretTransport{base: &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 256}}}
	run(*callers, 300*time.Millisecond, pace, direct, hd, payload)
	run(*callers, 300*time.Millisecond, pace, one, hc, payload)
	run(*callers, 300*time.Millisecond, pace, three, hc, payload)
	var ds, os1, os3 []result
	for range *rounds {
		ds = append(ds, run(*callers, *dur, pace, direct, hd, payload))
		os1 = append(os1, run(*callers, *dur, pace, one, hc, payload))
		os3 = append(os3, run(*callers, *dur, pace, three, hc, payload))
	}
	d, a, b := merge(ds), merge(os1), merge(os3)
	load, _ := os.ReadFile("/proc/loadavg")
	mode := "closed loop"
	if *rate > 0 {
		mode = fmt.Sprintf("paced at %.0f req/s in total", *rate)
	}
	fmt.Printf("%s; callers %d, %d rounds x %s each, GOMAXPROCS %d, load average %s; %d environments\n", mode, *callers, *rounds, *dur,
		runtime.GOMAXPROCS(0), strings.Join(strings.Fields(string(load))[:3], " "), len(shims))
	us := func(x time.Duration) string { return fmt.Sprintf("%.1f µs", float64(x)/1e3) }
	fmt.Printf("| path | requests | errors | p50 | p99 | CPU per invocation (process) | the activators' (minus direct) |\n|---|---|---|---|---|---|---|\n")
	fmt.Printf("| direct to the environments | %d | %d | %s | %s | %s | - |\n", len(d.lat), d.errs, ms(d.pct(.5)), ms(d.pct(.99)), us(d.cpuPer()))
	fmt.Printf("| one replica | %d | %d | %s | %s | %s | %s |\n", len(a.lat), a.errs, ms(a.pct(.5)), ms(a.pct(.99)), us(a.cpuPer()), us(a.cpuPer()-d.cpuPer()))
	fmt.Printf("| three replicas (2/3 forwarded) | %d | %d | %s | %s | %s | %s |\n", len(b.lat), b.errs, ms(b.pct(.5)), ms(b.pct(.99)), us(b.cpuPer()), us(b.cpuPer()-d.cpuPer()))
	fmt.Printf("three vs one replica: added p50 %s (target ≤ 0.200 ms), added p99 %s; the activators' CPU per invocation %.2fx (target ≤ 1.2x)\n",
		ms(b.pct(.5)-a.pct(.5)), ms(b.pct(.99)-a.pct(.99)), float64(b.cpuPer()-d.cpuPer())/float64(a.cpuPer()-d.cpuPer()))
	if d.errs+a.errs+b.errs > 0 {
		fmt.Println("FAIL: requests failed")
		os.Exit(1)
	}
}

// secretTransport adds the environments' invoke secret to direct calls.
type secretTransport struct{ base http.RoundTripper }

func (t *secretTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r.Header.Set(contract.HeaderInvokeSecret, testrig.Secret)
	return t.base.RoundTrip(r)
}
