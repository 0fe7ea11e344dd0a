//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	"github.com/klambda/klambda/test/ziptest"
)

// A Recorder is an HTTP server in the test process that recorder functions (see
// RecorderFunction) on the cluster call with every event they receive. It keeps each call,
// and the test decides each answer: a result, a function error, or a delay first. This is
// how end-to-end tests see what reached a function (a batch's shape, how often an event was
// retried) and steer it (fail one record, time out) without writing a function per case.
type Recorder struct {
	// URL is the recorder's address as pods reach it (the node's IP).
	URL string

	srv *http.Server
	mu  sync.Mutex
	// calls holds every call so far, in arrival order.
	calls  []RecordedCall
	wake   chan struct{}
	answer func(RecordedCall) Answer
}

// RecordedCall is one invocation as the function saw it.
type RecordedCall struct {
	Function  string // AWS_LAMBDA_FUNCTION_NAME
	Version   string // AWS_LAMBDA_FUNCTION_VERSION
	RequestID string // Lambda-Runtime-Aws-Request-Id
	ARN       string // Lambda-Runtime-Invoked-Function-Arn
	Event     []byte
	At        time.Time
}

// Answer is what the recorder function does with an event.
type Answer struct {
	// Delay is waited before answering (to hold an environment busy, or to time out).
	Delay time.Duration
	// ErrorType, when set, makes the invocation a function error (the body then is the
	// errorMessage); otherwise Body is the function's result.
	ErrorType string
	Body      []byte
}

// StartRecorder starts a recorder on the node's IP; it stops when the test ends. By default
// every call answers {"ok":true}; SetAnswer changes that.
func (c *Cluster) StartRecorder(t testing.TB) *Recorder {
	t.Helper()
	ip, err := c.NodeIP()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatalf("recorder: %v", err)
	}
	r := &Recorder{URL: "http://" + ln.Addr().String(), wake: make(chan struct{})}
	r.srv = &http.Server{Handler: http.HandlerFunc(r.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = r.srv.Serve(ln) }()
	t.Cleanup(func() { _ = r.srv.Close() })
	return r
}

// SetAnswer sets how the recorder answers the calls from now on.
func (r *Recorder) SetAnswer(f func(RecordedCall) Answer) {
	r.mu.Lock()
	r.answer = f
	r.mu.Unlock()
}

func (r *Recorder) serve(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost || req.URL.Path != "/invoke" {
		http.NotFound(w, req)
		return
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	call := RecordedCall{
		Function:  req.Header.Get("X-Function"),
		Version:   req.Header.Get("X-Version"),
		RequestID: req.Header.Get("X-Request-Id"),
		ARN:       req.Header.Get("X-Arn"),
		Event:     body,
		At:        time.Now(),
	}
	r.mu.Lock()
	r.calls = append(r.calls, call)
	close(r.wake)
	r.wake = make(chan struct{})
	answer := r.answer
	r.mu.Unlock()

	a := Answer{Body: []byte(`{"ok":true}`)}
	if answer != nil {
		a = answer(call)
	}
	if a.Delay > 0 {
		select {
		case <-time.After(a.Delay):
		case <-req.Context().Done():
			return
		}
	}
	// The first line says what to do, the rest is the body (see recorderBootstrap).
	if a.ErrorType != "" {
		_, _ = fmt.Fprintf(w, "error %s\n", a.ErrorType)
	} else {
		_, _ = io.WriteString(w, "ok\n")
	}
	_, _ = w.Write(a.Body)
}

// Calls returns a copy of the calls so far.
func (r *Recorder) Calls() []RecordedCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]RecordedCall(nil), r.calls...)
}

// WaitFor waits until cond holds for the calls so far, and returns them; it fails the test
// (saying what it waited for) after timeout.
func (r *Recorder) WaitFor(t testing.TB, timeout time.Duration, what string, cond func([]RecordedCall) bool) []RecordedCall {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		calls := append([]RecordedCall(nil), r.calls...)
		wake := r.wake
		r.mu.Unlock()
		if cond(calls) {
			return calls
		}
		select {
		case <-wake:
		case <-deadline.C:
			t.Fatalf("recorder: after %v, still waiting for %s (%d calls so far)", timeout, what, len(calls))
			return nil
		}
	}
}

// recorderBootstrap is a custom runtime (as in the guide's tutorial) that posts each event to
// the recorder and answers as the recorder's first line says. busybox wget (klambda's local
// provided.al2023 image) or any wget.
const recorderBootstrap = `#!/bin/sh
set -u
api="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation"
while true; do
	headers=$(mktemp) event=$(mktemp) answer=$(mktemp)
	wget -q -S -O "$event" "$api/next" 2>"$headers" || { sleep 0.2; continue; }
	id=$(grep -i 'Lambda-Runtime-Aws-Request-Id:' "$headers" | sed 's/.*: *//' | tr -d '\r ')
	arn=$(grep -i 'Lambda-Runtime-Invoked-Function-Arn:' "$headers" | sed 's/.*: *//' | tr -d '\r ')
	if ! wget -q -O "$answer" --header "X-Request-Id: $id" --header "X-Arn: $arn" \
		--header "X-Function: ${AWS_LAMBDA_FUNCTION_NAME:-}" --header "X-Version: ${AWS_LAMBDA_FUNCTION_VERSION:-}" \
		--post-file "$event" "$RECORDER_URL/invoke"; then
		printf 'error Recorder.Unreachable\nthe test recorder did not answer' >"$answer"
	fi
	first=$(head -n 1 "$answer")
	tail -n +2 "$answer" >"$event"
	case "$first" in
	ok) wget -q -O /dev/null --post-file "$event" "$api/$id/response" ;;
	*)
		type=${first#error }
		msg=$(tr -d '"\\\n' <"$event")
		wget -q -O /dev/null --header "Lambda-Runtime-Function-Error-Type: $type" \
			--post-data "{\"errorType\":\"$type\",\"errorMessage\":\"$msg\"}" "$api/$id/error"
		;;
	esac
	rm -f "$headers" "$event" "$answer"
done
`

// RecorderFunction returns (does not create) a Function whose code is the recorder runtime
// on provided.al2023, served from the node, with RECORDER_URL pointing at r. Tests adjust
// the spec (timeout, concurrency, async config) before creating it.
func (c *Cluster) RecorderFunction(t testing.TB, r *Recorder, ns, name string) *lambdav1alpha1.Function {
	t.Helper()
	url, sha, err := c.ServeCode(ns+"-"+name+".zip", BootstrapZip(t, []byte(recorderBootstrap)))
	if err != nil {
		t.Fatal(err)
	}
	return &lambdav1alpha1.Function{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: lambdav1alpha1.FunctionSpec{FunctionConfiguration: lambdav1alpha1.FunctionConfiguration{
			Runtime:     "provided.al2023",
			Handler:     "recorder",
			Timeout:     30,
			Code:        lambdav1alpha1.FunctionCode{CodeSource: lambdav1alpha1.CodeSource{URL: url, SHA256: sha}},
			Environment: &lambdav1alpha1.Environment{Variables: []lambdav1alpha1.EnvVar{{Name: "RECORDER_URL", Value: r.URL}}},
		}},
	}
}

// BootstrapZip returns a .zip package holding one executable file, bootstrap (a custom
// runtime for provided.al2023).
func BootstrapZip(t testing.TB, bootstrap []byte) []byte {
	t.Helper()
	return ziptest.Bootstrap(t, string(bootstrap))
}

// NodeIP is the local node's IP: pods reach servers of the test process there.
func (c *Cluster) NodeIP() (string, error) {
	if !c.Local {
		return "", fmt.Errorf("the node IP is known only for the local cluster")
	}
	out, err := exec.CommandContext(context.Background(), "bash", "-c",
		"source "+filepath.Join(c.RepoRoot, "hack/cluster/lib.sh")+" && node_ip").Output()
	if err != nil {
		return "", fmt.Errorf("finding the node IP: %w", err)
	}
	ip := strings.TrimSpace(string(out))
	if net.ParseIP(ip) == nil {
		return "", fmt.Errorf("finding the node IP: hack/cluster/lib.sh's node_ip printed %q", out)
	}
	return ip, nil
}
