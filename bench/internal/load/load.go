// Package load is the closed-loop or paced HTTP load the activator benchmarks share: a
// number of callers, each sending requests to its target for a duration, recording the
// latency of every 200 and the process's CPU time over the run.
package load

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"time"
)

// Result is one run: the latencies of the successful requests (sorted), the failures, the
// wall time, the process's CPU time (user + system) and its heap allocations during the
// run.
type Result struct {
	Lat    []time.Duration
	Errs   int
	Wall   time.Duration
	CPU    time.Duration
	Allocs uint64
}

// mallocs is the heap allocations this process made so far.
func mallocs() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.Mallocs
}

// CPUTime is this process's user + system time so far.
func CPUTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// CPUPer is the process CPU per successful request.
func (r Result) CPUPer() time.Duration {
	if len(r.Lat) == 0 {
		return 0
	}
	return r.CPU / time.Duration(len(r.Lat))
}

// AllocsPer is the process's heap allocations per successful request.
func (r Result) AllocsPer() float64 {
	if len(r.Lat) == 0 {
		return 0
	}
	return float64(r.Allocs) / float64(len(r.Lat))
}

// Pct is the p-quantile (0..1) of the latencies (sorted: nearest rank below).
func (r Result) Pct(p float64) time.Duration {
	if len(r.Lat) == 0 {
		return 0
	}
	return r.Lat[int(p*float64(len(r.Lat)-1))]
}

// Sorted is a Result of latencies measured elsewhere (sorted here) over wall time.
func Sorted(lat []time.Duration, wall time.Duration) Result {
	r := Result{Lat: lat, Wall: wall}
	slices.Sort(r.Lat)
	return r
}

// RPS is the successful requests per second of wall time.
func (r Result) RPS() float64 { return float64(len(r.Lat)) / r.Wall.Seconds() }

// Run sends payload from callers for d: caller i posts to target(i) with its headers,
// each caller every pace (staggered, not in lockstep) when pace > 0, else as fast as it
// can. A request fails unless it answers 200.
func Run(callers int, d, pace time.Duration, target func(i int) (string, http.Header), client *http.Client, payload []byte) Result {
	var mu sync.Mutex
	var all []time.Duration
	errs := 0
	var wg sync.WaitGroup
	start, cpu0, m0 := time.Now(), CPUTime(), mallocs()
	stop := start.Add(d)
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			url, hdr := target(i)
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
	r := Result{Lat: all, Errs: errs, Wall: time.Since(start), CPU: CPUTime() - cpu0, Allocs: mallocs() - m0}
	slices.Sort(r.Lat)
	return r
}

// Merge is several runs as one.
func Merge(rs []Result) Result {
	var m Result
	for _, r := range rs {
		m.Lat = append(m.Lat, r.Lat...)
		m.Errs += r.Errs
		m.Wall += r.Wall
		m.CPU += r.CPU
		m.Allocs += r.Allocs
	}
	slices.Sort(m.Lat)
	return m
}

// Ms formats d in milliseconds.
func Ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond)) }

// Us formats d in microseconds.
func Us(d time.Duration) string { return fmt.Sprintf("%.1f µs", float64(d)/float64(time.Microsecond)) }
