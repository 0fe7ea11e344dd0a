package load

import (
	"flag"
	"net/http"
	"time"
)

// Flags are the load flags the side-by-side benchmarks share.
type Flags struct {
	Callers  *int
	Rounds   *int
	Duration *time.Duration
	Rate     *float64
}

// RegisterFlags defines -callers, -rounds, -duration and -rate (defaults callers and
// rate) on the command line.
func RegisterFlags(callers int, rate float64) *Flags {
	return &Flags{
		Callers:  flag.Int("callers", callers, "Concurrent callers (and environments)."),
		Rounds:   flag.Int("rounds", 3, "Alternating rounds of each path."),
		Duration: flag.Duration("duration", 3*time.Second, "Length of each run."),
		Rate:     flag.Float64("rate", rate, "Total requests per second, paced over the callers; 0: as fast as they can (closed loop)."),
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
// It answers each path's runs merged.
func (f *Flags) Compare(client *http.Client, payload []byte, before func(round, path int), paths ...Target) []Result {
	pace := f.Pace()
	for _, p := range paths {
		Run(*f.Callers, 300*time.Millisecond, pace, p, client, payload)
	}
	runs := make([][]Result, len(paths))
	for r := 0; r < *f.Rounds; r++ {
		for i, p := range paths {
			if before != nil {
				before(r, i)
			}
			runs[i] = append(runs[i], Run(*f.Callers, *f.Duration, pace, p, client, payload))
		}
	}
	out := make([]Result, len(paths))
	for i := range runs {
		out[i] = Merge(runs[i])
	}
	return out
}
