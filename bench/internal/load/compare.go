package load

import (
	"flag"
	"net/http"
	"os"
	"runtime/pprof"
	"time"
)

// Flags are the load flags the side-by-side benchmarks share.
type Flags struct {
	Callers  *int
	Rounds   *int
	Duration *time.Duration
	Rate     *float64
	// CPUProfile and MemProfile name the profiles Compare writes of the last path (the
	// one under test); "" none.
	CPUProfile *string
	MemProfile *string
}

// RegisterFlags defines -callers, -rounds, -duration and -rate (defaults callers and
// rate) on the command line.
func RegisterFlags(callers int, rate float64) *Flags {
	return &Flags{
		Callers:    flag.Int("callers", callers, "Concurrent callers (and environments)."),
		Rounds:     flag.Int("rounds", 3, "Alternating rounds of each path."),
		Duration:   flag.Duration("duration", 3*time.Second, "Length of each run."),
		Rate:       flag.Float64("rate", rate, "Total requests per second, paced over the callers; 0: as fast as they can (closed loop)."),
		CPUProfile: flag.String("cpuprofile", "", "Write a CPU profile of the last path's first round (the whole process) here."),
		MemProfile: flag.String("memprofile", "", "Write a heap profile after the last path's runs here, and one from just before them to FILE.base "+
			"(go tool pprof -sample_index=alloc_objects -diff_base FILE.base BINARY FILE: with -rounds 1, the allocations of the last path's run)."),
	}
}

// Pace is each caller's interval between requests for the total -rate (0: closed loop).
// Paced, the machine is not saturated, and added latency is the path's, not queueing's.
func (f *Flags) Pace() time.Duration {
	if *f.Rate <= 0 {
		return 0
	}
	return time.Duration(float64(*f.Callers) / *f.Rate * float64(time.Second))
}

// Target names caller i's URL and headers.
type Target func(i int) (string, http.Header)

// Compare runs the paths side by side in one process: a short warm-up of each, then
// -rounds rounds in which each path runs for -duration in turn (so that all see the same
// background load). before, when not nil, is called before each run (round, path index).
// It answers each path's runs merged. With -cpuprofile or -memprofile it profiles the
// last path's runs.
func (f *Flags) Compare(client *http.Client, payload []byte, before func(round, path int), paths ...Target) []Result {
	pace := f.Pace()
	for _, p := range paths {
		Run(*f.Callers, 300*time.Millisecond, pace, p, client, payload)
	}
	last := len(paths) - 1
	runs := make([][]Result, len(paths))
	for r := 0; r < *f.Rounds; r++ {
		for i, p := range paths {
			if before != nil {
				before(r, i)
			}
			if i == last && r == 0 && f.CPUProfile != nil && *f.CPUProfile != "" {
				file, err := os.Create(*f.CPUProfile)
				Check(err)
				Check(pprof.StartCPUProfile(file))
			}
			if i == last && r == 0 && f.MemProfile != nil && *f.MemProfile != "" {
				writeHeap(*f.MemProfile + ".base")
			}
			runs[i] = append(runs[i], Run(*f.Callers, *f.Duration, pace, p, client, payload))
			if i == last && r == 0 && f.CPUProfile != nil && *f.CPUProfile != "" {
				pprof.StopCPUProfile()
			}
			if i == last && r == *f.Rounds-1 && f.MemProfile != nil && *f.MemProfile != "" {
				writeHeap(*f.MemProfile)
			}
		}
	}
	out := make([]Result, len(paths))
	for i := range runs {
		out[i] = Merge(runs[i])
	}
	return out
}

// writeHeap writes the heap profile (allocations since the start, sampled) to path.
func writeHeap(path string) {
	file, err := os.Create(path)
	Check(err)
	Check(pprof.Lookup("allocs").WriteTo(file, 0))
	Check(file.Close())
}
