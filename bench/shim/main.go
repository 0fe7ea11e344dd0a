// Command shim benchmarks warm invocations through runtime-shim (exec mode) against the
// AWS runtime interface emulator, in one run, with the aws-lambda-go echo function of
// test/compat. Figures are printed as ratios against the emulator measured in the same
// run. Run from the repository root:
//
//	go run ./bench/shim [-n 3000] [-callers 8] [-rounds 10] [-floor]
//
//	go run ./bench/shim -payload-mb 1 -n 100 -rounds 5   # shim CPU per MB moved, each direction
//
// -floor adds bench/shim/relay, plain and with -epoll, as floors of the server's part.
//
// The emulator must be installed (test/compat/install-rie.sh).
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/klambda/klambda/bench/internal/load"
)

type server struct {
	name string
	cmd  *exec.Cmd
	url  string
}

func main() {
	n := flag.Int("n", 3000, "invocations per measurement")
	callers := flag.Int("callers", 8, "concurrent callers (one environment each, as the activator dispatches)")
	payload := flag.String("payload", `{"hello":"world","n":42}`, "event to echo")
	rounds := flag.Int("rounds", 10, "alternating rounds per side (more, shorter rounds spread changes of background load more evenly over both sides)")
	floor := flag.Bool("floor", false, "also measure bench/shim/relay, the least a relay can do (no validation, logs or state machine), plain and on its own epoll loop, as floors of the server's part")
	payloadMB := flag.Int("payload-mb", 0, "instead: the shim's CPU per MB moved in each direction with payloads of this many MB, against io.Copy over loopback (-n invocations per direction and round)")
	flag.Parse()

	cache := os.Getenv("KLAMBDA_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "klambda")
	}
	rie := filepath.Join(cache, "bin", "aws-lambda-rie")
	if _, err := os.Stat(rie); err != nil {
		load.Fail("aws-lambda-rie not found at %s: run test/compat/install-rie.sh", rie)
	}
	dir, err := os.MkdirTemp("", "klambda-bench-")
	load.Check(err)
	defer os.RemoveAll(dir)
	shimBin, fnBin, relayBin := filepath.Join(dir, "runtime-shim"), filepath.Join(dir, "gofunction"), filepath.Join(dir, "relay")
	load.Build(shimBin, "./cmd/runtime-shim")
	if *floor {
		load.Build(relayBin, "./bench/shim/relay")
	}
	load.Build(fnBin, "./test/compat/gofunction", "-tags", "lambda.norpc")
	if *payloadMB > 0 {
		payloadBench(shimBin, fnBin, *payloadMB, max(*n / *rounds, 1), *rounds)
		return
	}

	start := func(kind string, i int) *server {
		invoke, api := load.FreeAddr(), load.FreeAddr()
		var cmd *exec.Cmd
		switch kind {
		case "shim":
			cmd = exec.Command(shimBin, "exec", "--listen", invoke, "--runtime-api", api, "--", fnBin)
		case "relay":
			cmd = exec.Command(relayBin, invoke, api, "--", fnBin)
		case "epoll":
			cmd = exec.Command(relayBin, "-epoll", invoke, api, "--", fnBin)
		default:
			cmd = exec.Command(rie, "--runtime-interface-emulator-address", invoke, "--runtime-api-address", api, "--log-level", "error", fnBin)
		}
		cmd.Env = append(os.Environ(), "AWS_LAMBDA_FUNCTION_TIMEOUT=30", "LOG_LEVEL=error")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		// Both write START/END/REPORT per invoke; discard them the same way.
		cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
		load.Check(cmd.Start())
		s := &server{name: fmt.Sprintf("%s-%d", kind, i), cmd: cmd, url: "http://" + invoke + "/2015-03-31/functions/function/invocations"}
		load.WaitListen(invoke)
		return s
	}
	stopAll := func(ss []*server) {
		// SIGKILL the process group: the server and its runtime.
		for _, s := range ss {
			_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
			_ = s.cmd.Wait()
		}
	}

	type result struct {
		seq, par           stats
		seqLat, parLat     []time.Duration
		seqTime, parTime   time.Duration
		rssIdle, rssLoaded int64
		cpuTicks           int64 // server processes' user+system time during the rounds
		servers            []*server
	}
	loadBefore := load.LoadAvg()
	results := map[string]*result{}
	kinds := []string{"rie", "shim"}
	// extras are measured beside the two, each as a figure and its ratio to the emulator.
	type extra struct{ kind, label string }
	var extras []extra
	if *floor {
		extras = append(extras, extra{"relay", "plain relay"}, extra{"epoll", "epoll relay"})
	}
	for _, x := range extras {
		kinds = append(kinds, x.kind)
	}
	for _, kind := range kinds {
		r := &result{servers: make([]*server, *callers)}
		for i := range r.servers {
			r.servers[i] = start(kind, i)
		}
		for _, s := range r.servers {
			warm(s, []byte(*payload), 200)
		}
		results[kind] = r
	}
	time.Sleep(300 * time.Millisecond)
	for _, kind := range kinds {
		r := results[kind]
		r.rssIdle = rssKB(r.servers[0].cmd.Process.Pid)
	}
	// The machine may be shared: rounds alternate between the emulator and the shim so that
	// a change of background load hits both alike.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, kind := range kinds {
		r := results[kind]
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(20 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					if v := rssKB(r.servers[0].cmd.Process.Pid); v > r.rssLoaded {
						r.rssLoaded = v
					}
				}
			}
		}()
	}
	for round := 0; round < *rounds; round++ {
		for _, kind := range kinds {
			r := results[kind]
			before := cpuTicks(r.servers)
			lat, took := run(r.servers[:1], []byte(*payload), *n / *rounds)
			r.seqLat, r.seqTime = append(r.seqLat, lat...), r.seqTime+took
			lat, took = run(r.servers, []byte(*payload), *n / *rounds)
			r.parLat, r.parTime = append(r.parLat, lat...), r.parTime+took
			r.cpuTicks += cpuTicks(r.servers) - before
		}
	}
	close(stop)
	wg.Wait()
	for _, kind := range kinds {
		r := results[kind]
		r.seq = summarize(r.seqLat, r.seqTime)
		r.par = summarize(r.parLat, r.parTime)
		stopAll(r.servers)
	}

	base, shim := results["rie"], results["shim"]
	fmt.Printf("warm invocations of the aws-lambda-go echo function, %d per measurement in %d alternating rounds, host: %d cores\n", *n, *rounds, load.NumCPU())
	fmt.Printf("load average (1, 5, 15 min) before: %s, after: %s\n\n", loadBefore, load.LoadAvg())
	fmt.Printf("%-34s %14s %14s %10s", "", "emulator", "runtime-shim", "ratio")
	for _, x := range extras {
		fmt.Printf("   %26s", x.label+" (ratio)")
	}
	fmt.Println()
	// row prints one figure for each kind, and the ratios of the others to the emulator's.
	row := func(label, unit string, f func(*result) float64) {
		b, sh := f(base), f(shim)
		fmt.Printf("%-34s %11.3f %s %11.3f %s %9.2fx", label, b, unit, sh, unit, sh/b)
		for _, x := range extras {
			v := f(results[x.kind])
			fmt.Printf("   %15.3f %s (%.2fx)", v, unit, v/b)
		}
		fmt.Println()
	}
	perInvoke := func(r *result) float64 { // µs of server CPU per invocation (clock ticks are 10 ms)
		return float64(r.cpuTicks) * 10000 / float64(len(r.seqLat)+len(r.parLat))
	}
	row("sequential p50", "ms", func(r *result) float64 { return ms(r.seq.p50) })
	row("sequential p99", "ms", func(r *result) float64 { return ms(r.seq.p99) })
	row("sequential throughput", "/s", func(r *result) float64 { return r.seq.rate })
	row(fmt.Sprintf("%d callers p50", *callers), "ms", func(r *result) float64 { return ms(r.par.p50) })
	row(fmt.Sprintf("%d callers p99", *callers), "ms", func(r *result) float64 { return ms(r.par.p99) })
	row(fmt.Sprintf("%d callers throughput", *callers), "/s", func(r *result) float64 { return r.par.rate })
	row("server CPU per invocation", "µs", perInvoke)
	row("RSS idle (one server process)", "MB", func(r *result) float64 { return float64(r.rssIdle) / 1024 })
	row("RSS under load (peak)", "MB", func(r *result) float64 { return float64(r.rssLoaded) / 1024 })
	fmt.Printf("\ntargets: p50 ratio <= 0.50: %v; throughput ratio >= 2: %v (sequential), %v (%d callers); shim idle RSS < 20 MB: %v\n",
		ms(shim.seq.p50)/ms(base.seq.p50) <= 0.5, shim.seq.rate/base.seq.rate >= 2, shim.par.rate/base.par.rate >= 2, *callers, shim.rssIdle < 20*1024)
	if errorCount.n > 0 {
		fmt.Printf("failed invocations: %d\n", errorCount.n)
	}
}

type stats struct {
	p50, p99 time.Duration
	rate     float64
}

var errorCount struct {
	sync.Mutex
	n int
}

func summarize(lat []time.Duration, took time.Duration) stats {
	r := load.Sorted(lat, took)
	return stats{p50: r.Pct(.50), p99: r.Pct(.99), rate: r.RPS()}
}

var transport = &http.Transport{MaxIdleConnsPerHost: 64, MaxIdleConns: 256, DisableCompression: true}
var client = &http.Client{Transport: transport, Timeout: 60 * time.Second}

func invoke(url string, payload []byte) error {
	resp, err := client.Post(url, "application/json", bytes.NewReader(payload))
	if err != nil {
		return err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != 200 || !bytes.Equal(b, payload) {
		return fmt.Errorf("status %d body %q", resp.StatusCode, b)
	}
	return nil
}

func warm(s *server, payload []byte, n int) {
	for i := 0; i < n; i++ {
		if err := invoke(s.url, payload); err != nil {
			load.Fail("%s warm-up: %v", s.name, err)
		}
	}
}

// run sends n invocations, spread over one caller per server; it returns the latencies
// and the wall time.
func run(ss []*server, payload []byte, n int) ([]time.Duration, time.Duration) {
	per := n / len(ss)
	lat := make([]time.Duration, per*len(ss))
	var wg sync.WaitGroup
	begin := time.Now()
	for c, s := range ss {
		wg.Add(1)
		go func(c int, s *server) {
			defer wg.Done()
			for i := 0; i < per; i++ {
				t0 := time.Now()
				if err := invoke(s.url, payload); err != nil {
					errorCount.Lock()
					errorCount.n++
					errorCount.Unlock()
				}
				lat[c*per+i] = time.Since(t0)
			}
		}(c, s)
	}
	wg.Wait()
	return lat, time.Since(begin)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func rssKB(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			v, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			return v
		}
	}
	return 0
}

// cpuTicks sums utime+stime (fields 14 and 15 of /proc/<pid>/stat) of the server
// processes themselves, not of their runtimes.
func cpuTicks(ss []*server) int64 {
	var sum int64
	for _, s := range ss {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(s.cmd.Process.Pid) + "/stat")
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		u, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		sum += u + st
	}
	return sum
}
