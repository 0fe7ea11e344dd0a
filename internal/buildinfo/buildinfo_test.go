package buildinfo

import (
	"bytes"
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func stamped(settings ...debug.BuildSetting) func() (*debug.BuildInfo, bool) {
	return func() (*debug.BuildInfo, bool) {
		return &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: settings}, true
	}
}

func TestResolve(t *testing.T) {
	none := func() (*debug.BuildInfo, bool) { return nil, false }
	cases := []struct {
		name, v, c string
		read       func() (*debug.BuildInfo, bool)
		want       Info
	}{
		{"ldflags win", "1.2.3", "abc", stamped(debug.BuildSetting{Key: "vcs.revision", Value: "zzz"}),
			Info{"1.2.3", "abc", runtime.Version()}},
		{"vcs revision", "", "", stamped(debug.BuildSetting{Key: "vcs.revision", Value: "f00d"}),
			Info{"dev", "f00d", runtime.Version()}},
		{"dirty tree", "", "", stamped(debug.BuildSetting{Key: "vcs.revision", Value: "f00d"}, debug.BuildSetting{Key: "vcs.modified", Value: "true"}),
			Info{"dev", "f00d-dirty", runtime.Version()}},
		{"no vcs", "", "", stamped(), Info{"dev", "unknown", runtime.Version()}},
		{"no build info", "", "", none, Info{"dev", "unknown", runtime.Version()}},
		{"go install module@version", "", "", func() (*debug.BuildInfo, bool) {
			return &debug.BuildInfo{Main: debug.Module{Version: "v0.3.0"}}, true
		}, Info{"v0.3.0", "unknown", runtime.Version()}},
	}
	for _, tc := range cases {
		if got := resolve(tc.v, tc.c, tc.read); got != tc.want {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector())
	i := Get()
	want := `# HELP klambda_build_info The klambda build this process runs: 1, labelled with its version, commit and Go version.
# TYPE klambda_build_info gauge
klambda_build_info{commit="` + i.Commit + `",goversion="` + i.GoVersion + `",version="` + i.Version + `"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "klambda_build_info"); err != nil {
		t.Error(err)
	}
}

func TestVersionFlag(t *testing.T) {
	var out bytes.Buffer
	exited := -1
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.Var(&versionFlag{program: "prog", out: &out, exit: func(c int) { exited = c }}, "version", "")
	if err := fs.Parse([]string{"--version=false"}); err != nil || exited != -1 || out.Len() != 0 {
		t.Fatalf("--version=false: err %v, exit %d, out %q", err, exited, out.String())
	}
	if err := fs.Parse([]string{"--version"}); err != nil || exited != 0 {
		t.Fatalf("--version: err %v, exit %d", err, exited)
	}
	if want := "prog " + Get().String() + "\n"; out.String() != want {
		t.Errorf("printed %q, want %q", out.String(), want)
	}
	fs.SetOutput(io.Discard)
	if err := fs.Parse([]string{"--version=maybe"}); err == nil {
		t.Error("--version=maybe accepted")
	}
}

// TestBinaryVersion builds a command with the linker flags the Makefile passes and runs
// its --version.
func TestBinaryVersion(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary")
	}
	bin := filepath.Join(t.TempDir(), "runtime-shim")
	pkg := "github.com/klambda/klambda/internal/buildinfo"
	build := exec.Command("go", "build", "-trimpath", "-o", bin,
		"-ldflags", "-X "+pkg+".version=9.8.7-test -X "+pkg+".commit=0123abc",
		"github.com/klambda/klambda/cmd/runtime-shim")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("--version: %v\n%s", err, out)
	}
	if want := "runtime-shim 9.8.7-test (commit 0123abc, " + runtime.Version() + ")\n"; string(out) != want {
		t.Errorf("--version printed %q, want %q", out, want)
	}
}
