// Command async benchmarks asynchronous invocation through klambda's queue
// (activator/async) with the embedded NATS JetStream on a file store, against a synchronous
// baseline (the Invoker called directly) measured in the same run, with a fake, instant
// handler. It reports accepted events per second, the time Enqueue takes (the 202's cost)
// and the delay from accept to the handler at p50/p99, as ratios to the baseline. Run from
// the repository root:
//
//	go run ./bench/async [-n 20000] [-callers 16] [-dir /var/tmp]
package main

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr/funcr"

	"github.com/klambda/klambda/activator/async"
)

type result struct {
	name                 string
	accepted             float64 // events per second
	acceptP50, acceptP99 time.Duration
	e2eP50, e2eP99       time.Duration
	processed            float64 // events per second, accept of the first to handling of the last
}

// handler is the fake function: it notes when each event reached it.
type handler struct {
	delays []time.Duration // index = event number
	done   atomic.Int64
	all    chan struct{}
	n      int64
}

func (h *handler) Invoke(_ context.Context, r async.InvokeRequest) (async.InvokeResult, error) {
	i := binary.BigEndian.Uint64(r.Payload[:8])
	sent := int64(binary.BigEndian.Uint64(r.Payload[8:16]))
	if h.delays[i] == 0 {
		h.delays[i] = time.Duration(time.Now().UnixNano() - sent)
		if h.done.Add(1) == h.n {
			close(h.all)
		}
	}
	return async.InvokeResult{StatusCode: 200, ExecutedVersion: "$LATEST", Payload: []byte("null")}, nil
}

type noConfig struct{ async.ConfigSource }

func (noConfig) AsyncConfig(context.Context, string, string, string) (async.Config, error) {
	c := async.ConfigFrom(nil)
	c.Version = "$LATEST"
	return c, nil
}

func payload(i int) []byte {
	b := make([]byte, 16, 64)
	binary.BigEndian.PutUint64(b, uint64(i))
	binary.BigEndian.PutUint64(b[8:], uint64(time.Now().UnixNano()))
	return append(b, `{"hello":"world","n":42}`...)
}

// drive sends n events from callers goroutines through send and measures the accept side.
func drive(n, callers int, send func(i int) error) (accepted float64, lat []time.Duration, err error) {
	lat = make([]time.Duration, n)
	var next atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for c := 0; c < callers; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				t0 := time.Now()
				if err := send(i); err != nil {
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

func runSync(n, callers int) result {
	h := &handler{delays: make([]time.Duration, n), all: make(chan struct{}), n: int64(n)}
	start := time.Now()
	rate, lat, err := drive(n, callers, func(i int) error {
		_, err := h.Invoke(context.Background(), async.InvokeRequest{Payload: payload(i)})
		return err
	})
	if err != nil {
		panic(err)
	}
	return result{name: "sync (Invoker called directly)", accepted: rate, acceptP50: pct(lat, .5), acceptP99: pct(lat, .99),
		e2eP50: pct(h.delays, .5), e2eP99: pct(h.delays, .99), processed: float64(n) / time.Since(start).Seconds()}
}

func runAsync(name string, n, callers, workers int, dir string, syncAlways bool) result {
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
	h := &handler{delays: make([]time.Duration, n), all: make(chan struct{}), n: int64(n)}
	w := async.NewWorkers(q, h, noConfig{}, async.NewDeliverer(q, nil), async.WorkerOptions{Concurrency: workers, Log: funcr.New(func(p, a string) { fmt.Fprintln(os.Stderr, p, a) }, funcr.Options{})})
	go func() { _ = w.Run(ctx) }()
	time.Sleep(200 * time.Millisecond) // consumer ready

	start := time.Now()
	rate, lat, err := drive(n, callers, func(i int) error {
		_, err := q.Enqueue(ctx, async.Event{Namespace: "bench", Function: "echo", Payload: payload(i), Received: time.Now()})
		return err
	})
	if err != nil {
		panic(err)
	}
	<-h.all
	return result{name: name, accepted: rate, acceptP50: pct(lat, .5), acceptP99: pct(lat, .99),
		e2eP50: pct(h.delays, .5), e2eP99: pct(h.delays, .99), processed: float64(n) / time.Since(start).Seconds()}
}

func main() {
	n := flag.Int("n", 20000, "events per measurement")
	callers := flag.Int("callers", 16, "concurrent callers (Invoke API requests in flight)")
	workers := flag.Int("workers", 64, "async workers (WorkerOptions.Concurrency)")
	dir := flag.String("dir", os.TempDir(), "directory for the JetStream file store (use a disk, not tmpfs)")
	syncN := flag.Int("sync-always-n", 2000, "events for the SyncAlways (fsync per event) run")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the async runs here")
	flag.Parse()

	base := runSync(*n, *callers)
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			panic(err)
		}
		_ = pprof.StartCPUProfile(f)
	}
	rows := []result{
		base,
		runAsync("async, JetStream file store (fsync every 2 min, nats default)", *n, *callers, *workers, *dir, false),
		runAsync("async, JetStream file store, SyncAlways (fsync per event)", *syncN, *callers, *workers, *dir, true),
	}
	pprof.StopCPUProfile()
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("n=%d callers=%d workers=%d store=%s CPUs=%d loadavg=%s\n", *n, *callers, *workers, *dir, numCPU(), strings.TrimSpace(string(load)))
	fmt.Printf("| %-62s | %12s | %10s | %10s | %12s | %12s | %12s |\n", "path", "accepted/s", "accept p50", "accept p99", "to handler p50", "to handler p99", "processed/s")
	fmt.Printf("|%s|%s|%s|%s|%s|%s|%s|\n", dash(64), dash(14), dash(12), dash(12), dash(16), dash(16), dash(14))
	for _, r := range rows {
		fmt.Printf("| %-62s | %12.0f | %10s | %10s | %14s | %14s | %12.0f |\n", r.name, r.accepted,
			round(r.acceptP50), round(r.acceptP99), round(r.e2eP50), round(r.e2eP99), r.processed)
	}
	fmt.Println()
	for _, r := range rows[1:] {
		fmt.Printf("%s vs sync: accepted/s ×%.4f, accept p50 ×%.0f, p99 ×%.0f; to-handler p50 ×%.0f, p99 ×%.0f\n", r.name,
			r.accepted/base.accepted, ratio(r.acceptP50, base.acceptP50), ratio(r.acceptP99, base.acceptP99),
			ratio(r.e2eP50, base.e2eP50), ratio(r.e2eP99, base.e2eP99))
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

func dash(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = '-'
	}
	return string(b)
}

func numCPU() int { return runtime.NumCPU() }
