package memlimit

import (
	"math"
	"os"
	"runtime/debug"
	"testing"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/go-logr/logr"
)

func TestSetFollowsTheContainerLimitUnlessTheEnvironmentSays(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	for _, k := range []string{"GOMEMLIMIT", "AUTOMEMLIMIT"} {
		t.Setenv(k, "") // restored when the test ends
		if err := os.Unsetenv(k); err != nil {
			t.Fatal(err)
		}
	}

	if got, want := Set(logr.Discard(), memlimit.Limit(512<<20)), int64(512<<20*9/10); got != want || debug.SetMemoryLimit(-1) != want {
		t.Fatalf("512 MiB container: GOMEMLIMIT %d (in force %d); want %d", got, debug.SetMemoryLimit(-1), want)
	}
	if got := Set(logr.Discard(), func() (uint64, error) { return 0, memlimit.ErrNoLimit }); got != math.MaxInt64 {
		t.Fatalf("no container limit: GOMEMLIMIT %d; want none (MaxInt64)", got)
	}
	t.Setenv("AUTOMEMLIMIT", "0.5")
	if got, want := Set(logr.Discard(), memlimit.Limit(512<<20)), int64(256<<20); got != want {
		t.Fatalf("AUTOMEMLIMIT=0.5: GOMEMLIMIT %d; want %d", got, want)
	}
	t.Setenv("AUTOMEMLIMIT", "off")
	debug.SetMemoryLimit(123 << 20)
	if got := Set(logr.Discard(), memlimit.Limit(512<<20)); got != 123<<20 {
		t.Fatalf("AUTOMEMLIMIT=off: GOMEMLIMIT %d; want the one in force, untouched", got)
	}
}
