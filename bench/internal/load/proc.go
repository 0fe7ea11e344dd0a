package load

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// The helpers the benchmarks that start processes share. Failures end the benchmark
// (Fail): a benchmark has no way on after a broken set-up.

// LoadAvg is the first three fields of /proc/loadavg: the machine may be shared, and
// figures mean little without it.
func LoadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// NumCPU is the host's processor count (/proc/cpuinfo, not this process's share).
func NumCPU() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return strings.Count(string(b), "processor\t:")
}

// FreeAddr is a free 127.0.0.1 TCP address.
func FreeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	Check(err)
	defer l.Close()
	return l.Addr().String()
}

// WaitListen waits (10 s at most) until something accepts connections on addr.
func WaitListen(addr string) {
	for i := 0; i < 400; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	Fail("nothing listens on %s", addr)
}

// WaitReady waits (30 s at most) until url answers 200.
func WaitReady(url string) {
	for i := 0; i < 600; i++ {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	Fail("%s never answered 200", url)
}

// Build builds Go package pkg (run from the repository root) into out.
func Build(out, pkg string, extra ...string) { BuildEnv(nil, out, pkg, extra...) }

// BuildEnv builds as Build with env added to the environment of go build
// (CGO_ENABLED=0 for a static binary).
func BuildEnv(env []string, out, pkg string, extra ...string) {
	cmd := exec.Command("go", append(append([]string{"build", "-o", out}, extra...), pkg)...)
	cmd.Env = append(os.Environ(), env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		Fail("building %s: %v\n%s", pkg, err, b)
	}
}

// Check ends the benchmark on err.
func Check(err error) {
	if err != nil {
		Fail("%v", err)
	}
}

// Fail prints the message, prefixed with the benchmark's name, and exits 1.
func Fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench/"+filepath.Base(os.Args[0])+": "+format+"\n", args...)
	os.Exit(1)
}

// Percentile is the p-quantile (0..1) of d (not changed; nearest rank below, as
// Result.Pct).
func Percentile(d []time.Duration, p float64) time.Duration {
	return Sorted(slices.Clone(d), 0).Pct(p)
}
