// Package memlimit keeps a component's Go heap under its container's memory limit: the
// garbage collector works harder as the heap nears the limit (GOMEMLIMIT) instead of the
// kernel killing the process (OOMKilled), which for the pollers meant a consumer-group
// member gone for a session timeout (bench/README.md, "16 partitions: the stall found").
package memlimit

import (
	"log/slog"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/go-logr/logr"
)

// Ratio is the share of the container's memory limit given to the Go heap; the rest is
// for what the runtime does not count (stacks, the binary, cgroup page cache).
const Ratio = 0.9

// Set sets GOMEMLIMIT to Ratio of the memory limit provider reports (nil: the container's
// cgroup limit), unless the environment sets GOMEMLIMIT (used as is) or AUTOMEMLIMIT
// ("off", or another ratio). It returns the limit in force (math.MaxInt64: none, e.g. no
// cgroup limit). What it did is logged.
func Set(log logr.Logger, provider memlimit.Provider) int64 {
	if provider == nil {
		provider = memlimit.FromCgroup
	}
	limit, err := memlimit.Set(memlimit.WithRatio(Ratio), memlimit.WithProvider(provider),
		memlimit.WithLogger(slog.New(logr.ToSlogHandler(log))))
	if err != nil {
		log.Error(err, "GOMEMLIMIT not set from the container's memory limit")
	}
	return limit
}
