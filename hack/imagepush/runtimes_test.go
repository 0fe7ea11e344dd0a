package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// releaseRuntime is one of release-images.sh's runtime stand-ins (runtime-python-3.12, ...).
type releaseRuntime struct {
	name    string // in IMAGES and the layout's folder
	ref     string // repository:tag without the repository prefix and version
	runtime string // Lambda's identifier
}

// releaseRuntimes lists the runtime images whose inputs this machine has for both
// architectures (built by hack/runtimes/*/*.sh, cached), logging the others.
func releaseRuntimes(t *testing.T) []releaseRuntime {
	t.Helper()
	cache := os.Getenv("KLAMBDA_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "klambda")
	}
	var rts []releaseRuntime
	for _, minor := range []string{"3.12", "3.13"} {
		if both(cache, "python-standalone/"+minor+".*-linux-%s/.complete") {
			rts = append(rts, releaseRuntime{"runtime-python-" + minor, "runtime-python:" + minor, "python" + minor})
		} else {
			t.Logf("runtime-python:%s not built or checked: run hack/runtimes/python/standalone.sh %s amd64 (and arm64)", minor, minor)
		}
	}
	for _, major := range []string{"20", "22"} {
		if both(cache, "aws-lambda-ric-3.3.0-node"+major+".*-linux-%s/.complete") {
			rts = append(rts, releaseRuntime{"runtime-nodejs-" + major, "runtime-nodejs:" + major, "nodejs" + major + ".x"})
		} else {
			t.Logf("runtime-nodejs:%s not built or checked: run hack/runtimes/node/node.sh %s amd64 (and arm64)", major, major)
		}
	}
	return rts
}

// both says whether the glob pattern (with %s for the architecture) matches for amd64 and arm64.
func both(cache, pattern string) bool {
	for _, arch := range []string{"amd64", "arm64"} {
		if m, _ := filepath.Glob(filepath.Join(cache, fmt.Sprintf(pattern, arch))); len(m) == 0 {
			return false
		}
	}
	return true
}

// handlers are the functions startRuntime runs, each reporting the runtime it runs on.
var handlers = map[string]struct{ file, source, handler string }{
	"python": {"app.py", "import os, platform\n\n" +
		"def handler(event, context):\n" +
		"    return {'event': event, 'version': platform.python_version(), 'machine': platform.machine(),\n" +
		"            'executionEnv': os.environ.get('AWS_EXECUTION_ENV'), 'requestId': context.aws_request_id}\n", "app.handler"},
	"nodejs": {"index.js", "exports.handler = async (event, context) => ({event, version: process.version, machine: process.arch,\n" +
		"  executionEnv: process.env.AWS_EXECUTION_ENV, requestId: context.awsRequestId});\n", "index.handler"},
}

// startRuntime runs the runtime image's entrypoint chrooted in its unpacked root (with /proc
// and /dev's basic devices), with the image's environment, against a Runtime API of the test's that hands it one event: the
// image's bootstrap must start the interpreter and its runtime interface client, which must
// run the handler and post its result. The handler says what runs it: rt's version on arch.
func startRuntime(t *testing.T, img v1.Image, root, arch string, rt releaseRuntime) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Logf("linux/%s %s not started: chroot needs root", arch, rt.ref)
		return
	}
	lang := strings.TrimRight(strings.TrimSuffix(rt.runtime, ".x"), "0123456789.")
	h := handlers[lang]
	if err := os.WriteFile(filepath.Join(root, "var/task", h.file), []byte(h.source), 0o644); err != nil {
		t.Fatal(err)
	}
	posted := make(chan string, 2)
	var served atomic.Bool
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/2018-06-01/runtime/invocation/next" && served.CompareAndSwap(false, true):
			w.Header().Set("Lambda-Runtime-Aws-Request-Id", "req-1")
			w.Header().Set("Lambda-Runtime-Deadline-Ms", strconv.FormatInt(time.Now().Add(time.Minute).UnixMilli(), 10))
			w.Header().Set("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:000000000000:function:f")
			_, _ = w.Write([]byte(`{"n":1}`))
		case r.Method == http.MethodGet:
			<-r.Context().Done() // the next event never comes
		default:
			w.WriteHeader(http.StatusAccepted)
			posted <- r.URL.Path + " " + string(b)
		}
	}))
	defer api.Close()

	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	// What a container runtime gives every container and the interpreters need: /proc (ld.so
	// resolves python's $ORIGIN from /proc/self/exe) and /dev's random and null devices
	// (CPython seeds its hashes from them). /proc is mounted in a mount namespace of the
	// run's own, gone with it; the device nodes are plain files of the unpacked image.
	for _, d := range []string{"proc", "dev"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, minor := range map[string]int{"null": 3, "zero": 5, "random": 8, "urandom": 9} {
		if err := syscall.Mknod(filepath.Join(root, "dev", name), syscall.S_IFCHR|0o666, 1<<8|minor); err != nil {
			t.Fatalf("mknod /dev/%s: %v", name, err)
		}
	}
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--mount-proc="+filepath.Join(root, "proc"),
		"chroot", root, cf.Config.Entrypoint[0], h.handler)
	cmd.Env = append(cf.Config.Env, "AWS_LAMBDA_RUNTIME_API="+strings.TrimPrefix(api.URL, "http://"),
		"AWS_LAMBDA_FUNCTION_NAME=f", "AWS_LAMBDA_FUNCTION_VERSION=$LATEST", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE=128")
	logs := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(done) }()
	defer func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}()
	var got string
	select {
	case got = <-posted:
	case <-done:
		t.Fatalf("linux/%s %s: the runtime exited (%v) before answering:\n%s", arch, rt.ref, waitErr, logs)
	case <-time.After(2 * time.Minute):
		t.Fatalf("linux/%s %s: no answer in 2 minutes:\n%s", arch, rt.ref, logs)
	}
	path, body, _ := strings.Cut(got, " ")
	var m map[string]any
	if path != "/2018-06-01/runtime/invocation/req-1/response" || json.Unmarshal([]byte(body), &m) != nil {
		t.Fatalf("linux/%s %s posted %s %s, want the handler's result:\n%s", arch, rt.ref, path, body, logs)
	}
	version, machine := strings.TrimPrefix(rt.runtime, lang), map[string]string{"amd64": "x86_64", "arm64": "aarch64"}[arch]
	if lang == "nodejs" {
		version, machine = "v"+strings.TrimSuffix(version, ".x"), map[string]string{"amd64": "x64", "arm64": "arm64"}[arch]
	}
	if v, _ := m["version"].(string); !strings.HasPrefix(v, version+".") || m["machine"] != machine ||
		m["executionEnv"] != "AWS_Lambda_"+rt.runtime || m["requestId"] != "req-1" || fmt.Sprint(m["event"]) != "map[n:1]" {
		t.Errorf("linux/%s %s: the handler answered %s, want %s %s on %s, AWS_Lambda_%s, req-1", arch, rt.ref, body, lang, version, machine, rt.runtime)
	}
	t.Logf("linux/%s %s: %s", arch, rt.ref, body)
}

// lockedBuffer is a bytes.Buffer the runtime's output goroutine and the test share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
