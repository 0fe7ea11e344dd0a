// Package buildinfo is the version and commit a klambda binary was built from, set by the
// linker (the Makefile's LDFLAGS, the Dockerfile, hack/cluster/images.sh):
//
//	go build -ldflags "-X github.com/klambda/klambda/internal/buildinfo.version=1.2.3 \
//	    -X github.com/klambda/klambda/internal/buildinfo.commit=$(git rev-parse HEAD)" ./cmd/...
//
// Without them the version is "dev" and the commit is the VCS revision Go stamped into the
// binary (runtime/debug.ReadBuildInfo), or "unknown". Every binary prints it for --version
// and every component that serves metrics exports it as klambda_build_info.
package buildinfo

import (
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Set with -ldflags -X; empty: see Get.
var (
	version string
	commit  string
)

// Info is what a binary knows about its build.
type Info struct {
	Version, Commit, GoVersion string
}

// Get is this binary's build information.
func Get() Info {
	return resolve(version, commit, debug.ReadBuildInfo)
}

// resolve fills what the linker did not set from the build information Go embeds.
func resolve(v, c string, read func() (*debug.BuildInfo, bool)) Info {
	bi, ok := read()
	if v == "" {
		v = "dev"
		if ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version // go install module@version
		}
	}
	if c == "" {
		c = vcsRevision(bi, ok)
	}
	return Info{Version: v, Commit: c, GoVersion: runtime.Version()}
}

// vcsRevision is the commit Go stamped (-buildvcs), "-dirty" when the tree had changes.
func vcsRevision(bi *debug.BuildInfo, ok bool) string {
	if !ok {
		return "unknown"
	}
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "unknown"
	}
	if dirty {
		rev += "-dirty"
	}
	return rev
}

// String is the --version line: "<program> <version> (commit <commit>, <go version>)".
func (i Info) String() string {
	return fmt.Sprintf("%s (commit %s, %s)", i.Version, i.Commit, i.GoVersion)
}

// NewCollector is the klambda_build_info gauge: 1, labelled with version, commit and Go
// version (register it once per registry).
func NewCollector() prometheus.Collector {
	i := Get()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "klambda_build_info",
		Help:        "The klambda build this process runs: 1, labelled with its version, commit and Go version.",
		ConstLabels: prometheus.Labels{"version": i.Version, "commit": i.Commit, "goversion": i.GoVersion},
	})
	g.Set(1)
	return g
}

// RegisterFlag adds --version to fs: given, it prints program's version line and exits 0
// while the command line is parsed, before the program does anything else.
func RegisterFlag(fs *flag.FlagSet, program string) {
	fs.Var(&versionFlag{program: program, out: os.Stdout, exit: os.Exit}, "version",
		"Print the version, commit and Go version, and exit.")
}

// versionFlag is a boolean flag whose setting prints the version and exits.
type versionFlag struct {
	program string
	out     io.Writer
	exit    func(int)
}

func (*versionFlag) IsBoolFlag() bool { return true }
func (*versionFlag) String() string   { return "false" }

// Set prints the version line for --version (or --version=true) and exits 0.
func (f *versionFlag) Set(s string) error {
	if on, err := strconv.ParseBool(s); err != nil || !on {
		return err
	}
	_, _ = fmt.Fprintf(f.out, "%s %s\n", f.program, Get())
	f.exit(0)
	return nil
}
