// Command async benchmarks asynchronous invocation through one activator: the activator's
// Invoke API (invoke.Handler over real HTTP, activator/testrig) with its queue in an
// embedded NATS JetStream on a file store and its async workers, which invoke through the
// typed invoke core (same dispatcher and shim client as synchronous calls), into fake environments
// (activator/fakeshim behind a wrapper that notes when each event arrives). The baseline,
// in the same run, is the synchronous path: RequestResponse calls through the same
// activator into the same environments. It reports accepted events per second (202s) and
// the delay from sending the Invoke request to the handler receiving the event, at p50 and
// p99, for each path, and their ratios. Run from the repository root:
//
//	go run ./bench/async [-n 5000] [-callers 16] [-envs 16] [-workers 64] [-dir /var/tmp] [-sync-always-n 1000]
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"

	"github.com/klambda/klambda/activator/async"
	"github.com/klambda/klambda/activator/dispatch"
	"github.com/klambda/klambda/activator/fakeshim"
	"github.com/klambda/klambda/activator/fnkey"
	"github.com/klambda/klambda/activator/invoke"
	"github.com/klambda/klambda/activator/testrig"
	"github.com/klambda/klambda/api/contract"
)

const function = "echo"

type result struct {
	name                 string
	rate                 float64 // answered requests per second (202s for async)
	answerP50, answerP99 time.Duration
	e2eP50, e2eP99       time.Duration // request sent → handler has the event
	processed            float64       // events per second, first send to last handled
}

// arrivals notes, per event number, the delay from its send to the fake function.
type arrivals struct {
	delays []time.Duration
	done   atomic.Int64
	all    chan struct{}
}

func newArrivals(n int) *arrivals {
	return &arrivals{delays: make([]time.Duration, n), all: make(chan struct{})}
}

// wrap notes each event's arrival, then lets the fake shim run it.
func (a *arrivals) wrap(s *fakeshim.Shim) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var ev struct {
			I    int   `json:"i"`
			Sent int64 `json:"sent"`
		}
		if json.Unmarshal(body, &ev) == nil && ev.I >= 0 && ev.I < len(a.delays) && a.delays[ev.I] == 0 {
			a.delays[ev.I] = time.Duration(time.Now().UnixNano() - ev.Sent)
			if a.done.Add(1) == int64(len(a.delays)) {
				close(a.all)
			}
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		s.ServeHTTP(w, r)
	})
}

// activator is one in-process activator with envs fake environments for "echo".
type activator struct {
	rig     *testrig.Rig
	servers []*httptest.Server
	arr     *arrivals
}

func newActivator(envs int, arr *arrivals) *activator {
	a := &activator{rig: testrig.New(testrig.Options{WaitDeadline: 30 * time.Second}), arr: arr}
	a.rig.Function(function, -1, 0)
	k := fnkey.Key{Namespace: testrig.Namespace, Function: function, Version: contract.Latest}
	var list []dispatch.Environment
	for i := range envs {
		s := &fakeshim.Shim{Secret: testrig.Secret, Version: contract.Latest}
		srv := httptest.NewServer(arr.wrap(s))
		a.servers = append(a.servers, srv)
		list = append(list, dispatch.Environment{Name: "echo-" + strconv.Itoa(i), Addr: srv.Listener.Addr().String(), Secret: testrig.Secret})
	}
	a.rig.Dispatcher.SetEnvironments(k, list)
	return a
}

func (a *activator) close() {
	a.rig.Close()
	for _, s := range a.servers {
		s.Close()
	}
}

// queue adapts activator/async's queue to the Invoke handler (as cmd/activator does).
type queue struct{ q *async.Queue }

func (q queue) Enqueue(ctx context.Context, ev invoke.AsyncEvent) (string, error) {
	return q.q.Enqueue(ctx, async.Event{Namespace: ev.Namespace, Function: ev.Function, Qualifier: ev.Qualifier,
		Payload: ev.Payload, ClientContext: ev.ClientContext, TraceID: ev.TraceID, Received: ev.Received})
}

type noConfig struct{ async.ConfigSource }

func (noConfig) AsyncConfig(context.Context, string, string, string) (async.Config, error) {
	c := async.ConfigFrom(nil)
	c.Version = contract.Latest
	return c, nil
}

var client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}

// drive sends n Invoke requests from callers goroutines and measures the answers.
func drive(url string, n, callers int, invocationType string, want int) (rate float64, lat []time.Duration, err error) {
	lat = make([]time.Duration, n)
	var next atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				t0 := time.Now()
				body := fmt.Appendf(nil, `{"i":%d,"sent":%d,"hello":"world"}`, i, t0.UnixNano())
				req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
				req.Header.Set(contract.HeaderInvocationType, invocationType)
				resp, err := client.Do(req)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != want {
						err = fmt.Errorf("%s invocation: HTTP %d", invocationType, resp.StatusCode)
					}
				}
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				lat[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	if e, ok := firstErr.Load().(error); ok {
		return 0, nil, e
	}
	return float64(n) / time.Since(start).Seconds(), lat, nil
}

func pct(d []time.Duration, p float64) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[int(p*float64(len(s)-1))]
}

func invokeURL(a *activator) string {
	return a.rig.URL() + "/2015-03-31/functions/" + function + "/invocations"
}

func runSync(n, callers, envs int) result {
	arr := newArrivals(n)
	a := newActivator(envs, arr)
	defer a.close()
	start := time.Now()
	rate, lat, err := drive(invokeURL(a), n, callers, "RequestResponse", 200)
	if err != nil {
		panic(err)
	}
	<-arr.all
	return result{name: "sync: RequestResponse through the activator", rate: rate,
		answerP50: pct(lat, .5), answerP99: pct(lat, .99), e2eP50: pct(arr.delays, .5), e2eP99: pct(arr.delays, .99),
		processed: float64(n) / time.Since(start).Seconds()}
}

func runAsync(name string, n, callers, envs, workers int, dir string, syncAlways bool) result {
	store, err := os.MkdirTemp(dir, "klambda-async-bench-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(store)
	srv, err := async.StartServer(async.ServerOptions{StoreDir: store, SyncAlways: syncAlways})
	if err != nil {
		panic(err)
	}
	defer srv.Shutdown()
	nc, err := srv.Connect()
	if err != nil {
		panic(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	q, err := async.NewQueue(ctx, nc, async.QueueOptions{})
	if err != nil {
		panic(err)
	}
	arr := newArrivals(n)
	a := newActivator(envs, arr)
	defer a.close()
	a.rig.Core.Async = queue{q}
	// As cmd/activator: the workers call the typed invoke core (same routing and dispatcher).
	w := async.NewWorkers(q, async.CoreInvoker{Core: a.rig.Core}, noConfig{}, async.NewDeliverer(q, nil),
		async.WorkerOptions{Concurrency: workers, Log: logr.Discard()})
	go func() { _ = w.Run(ctx) }()
	time.Sleep(200 * time.Millisecond) // consumer ready

	start := time.Now()
	rate, lat, err := drive(invokeURL(a), n, callers, "Event", 202)
	if err != nil {
		panic(err)
	}
	select {
	case <-arr.all:
	case <-time.After(5 * time.Minute):
		panic(fmt.Sprintf("%s: %d of %d events reached the function in 5 min", name, arr.done.Load(), n))
	}
	return result{name: name, rate: rate, answerP50: pct(lat, .5), answerP99: pct(lat, .99),
		e2eP50: pct(arr.delays, .5), e2eP99: pct(arr.delays, .99), processed: float64(n) / time.Since(start).Seconds()}
}

func main() {
	n := flag.Int("n", 5000, "invocations per measurement")
	callers := flag.Int("callers", 16, "concurrent callers (Invoke API requests in flight)")
	envs := flag.Int("envs", 16, "fake execution environments of the function")
	workers := flag.Int("workers", 64, "async workers (--async-workers)")
	dir := flag.String("dir", os.TempDir(), "directory for the JetStream file store (use a disk, not tmpfs)")
	syncN := flag.Int("sync-always-n", 1000, "events for the SyncAlways (fsync per event) run")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the async runs here")
	flag.Parse()

	base := runSync(*n, *callers, *envs)
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			panic(err)
		}
		_ = pprof.StartCPUProfile(f)
	}
	rows := []result{
		base,
		runAsync("async: Event, JetStream file store (nats default sync)", *n, *callers, *envs, *workers, *dir, false),
		runAsync("async: Event, JetStream SyncAlways (fsync per event)", *syncN, *callers, *envs, *workers, *dir, true),
	}
	pprof.StopCPUProfile()
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("n=%d callers=%d envs=%d workers=%d store=%s CPUs=%d loadavg=%s\n", *n, *callers, *envs, *workers, *dir,
		runtime.NumCPU(), strings.TrimSpace(string(load)))
	fmt.Printf("| %-55s | %10s | %10s | %10s | %14s | %14s | %11s |\n", "path", "answered/s", "answer p50", "answer p99",
		"to handler p50", "to handler p99", "processed/s")
	fmt.Printf("|%s|%s|%s|%s|%s|%s|%s|\n", dash(57), dash(12), dash(12), dash(12), dash(16), dash(16), dash(13))
	for _, r := range rows {
		fmt.Printf("| %-55s | %10.0f | %10s | %10s | %14s | %14s | %11.0f |\n", r.name, r.rate,
			round(r.answerP50), round(r.answerP99), round(r.e2eP50), round(r.e2eP99), r.processed)
	}
	fmt.Println()
	for _, r := range rows[1:] {
		fmt.Printf("%s vs sync: answered/s ×%.2f, to-handler p50 ×%.1f, p99 ×%.1f, processed/s ×%.2f\n", r.name,
			r.rate/base.rate, ratio(r.e2eP50, base.e2eP50), ratio(r.e2eP99, base.e2eP99), r.processed/base.processed)
	}
}

func ratio(a, b time.Duration) float64 {
	if b <= 0 {
		b = 1
	}
	return float64(a) / float64(b)
}

func round(d time.Duration) time.Duration {
	switch {
	case d > time.Millisecond:
		return d.Round(10 * time.Microsecond)
	case d > time.Microsecond:
		return d.Round(100 * time.Nanosecond)
	}
	return d
}

func dash(n int) string { return strings.Repeat("-", n) }
