package compat

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// An arm64 runtime-shim runs an arm64 aws-lambda-go function under qemu-user (binfmt_misc,
// Debian's qemu-user-static: /work/shared/notes/arm64.md): the binaries klambda ships for
// arm64 nodes do their job. Skipped where arm64 programs cannot run.
func TestArm64ShimRunsArm64GoFunction(t *testing.T) {
	if b, err := os.ReadFile("/proc/sys/fs/binfmt_misc/qemu-aarch64"); err != nil || !strings.HasPrefix(string(b), "enabled") {
		t.Skip("arm64 programs do not run here: apt-get install qemu-user-static binfmt-support; update-binfmts --enable qemu-aarch64")
	}
	if testing.Short() {
		t.Skip("builds two arm64 binaries")
	}
	dir := t.TempDir()
	shim, fn := filepath.Join(dir, "runtime-shim"), filepath.Join(dir, "gofunction")
	for _, b := range []struct{ out, pkg, tags string }{
		{shim, "./cmd/runtime-shim", ""},
		{fn, "./test/compat/gofunction", "lambda.norpc"},
	} {
		cmd := exec.Command("go", "build", "-o", b.out, "-tags", b.tags, b.pkg)
		cmd.Dir = repoRoot()
		cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH=arm64", "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("building %s for arm64: %v\n%s", b.pkg, err, out)
		}
	}
	if out, err := exec.Command("file", shim).Output(); err == nil && !strings.Contains(string(out), "aarch64") {
		t.Fatalf("not an arm64 binary: %s", out)
	}
	old := shimBin
	shimBin = shim
	defer func() { shimBin = old }()

	p := startPeer(t, peerShim, "10", nil, "", fn)
	p.warmUp(t, `"warm"`)
	r := p.invokeJSON(t, `{"hello":"arm64"}`)
	expect(t, "echo status", r.status, 200)
	expect(t, "echo body", string(r.body), `{"hello":"arm64"}`)
	r = p.invokeJSON(t, `{"op":"error"}`)
	expect(t, "error body", string(r.body), `{"errorMessage":"something went wrong!","errorType":"errorString"}`)
	expect(t, "function error header", r.header.Get("X-Amz-Function-Error"), "Unhandled")
}
