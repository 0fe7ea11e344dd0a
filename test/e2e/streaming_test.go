//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// TestInvokeWithResponseStream streams a response on the local cluster: test/compat's
// aws-lambda-go function (returning an io.Reader) in a function pod, through the
// activator the chart installed, to aws-sdk-go-v2's InvokeWithResponseStream. The
// function writes each chunk after the first only once the test, on the node, has
// received the previous one (its gate answers then), so the chunks arrive one by one.
func TestInvokeWithResponseStream(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if !cluster.Local {
		t.Skip("needs the local cluster (the function reaches the test's gate on the node)")
	}
	ns := cluster.Namespace(t)
	fn := goFunction(ctx, t, ns, "streamer", nil)
	const n = 3
	open, gateAddr := nodeGates(t, n)
	c := cluster.LambdaClient(ctx, t, ns, cluster.InvokerToken(ctx, t, ns))
	out, err := c.InvokeWithResponseStream(ctx, &lambda.InvokeWithResponseStreamInput{FunctionName: aws.String(fn.Name),
		Payload: []byte(fmt.Sprintf(`{"op":"stream","n":%d,"gate":"http://%s"}`, n, gateAddr)), LogType: types.LogTypeTail})
	if err != nil {
		t.Fatal(err)
	}
	defer out.GetStream().Close()
	var text strings.Builder
	var done *types.InvokeWithResponseStreamCompleteEvent
	for i := 0; done == nil; {
		select {
		case ev, ok := <-out.GetStream().Events():
			if !ok {
				t.Fatalf("the stream ended without InvokeComplete (%v): %q", out.GetStream().Err(), text.String())
			}
			switch v := ev.(type) {
			case *types.InvokeWithResponseStreamResponseEventMemberPayloadChunk:
				text.Write(v.Value.Payload)
				for i < n && strings.Count(text.String(), "\n") > i {
					if strings.Count(text.String(), "\n") > i+1 {
						t.Fatalf("chunk %d came before its gate opened: %q", i+1, text.String())
					}
					i++
					if i < n {
						close(open[i])
					}
				}
			case *types.InvokeWithResponseStreamResponseEventMemberInvokeComplete:
				done = &v.Value
			}
		case <-ctx.Done():
			t.Fatalf("no event: %q", text.String())
		}
	}
	if got := strings.Count(text.String(), "\n"); got != n || aws.ToString(done.ErrorCode) != "" || aws.ToString(done.LogResult) == "" {
		t.Fatalf("stream %q, %d lines, InvokeComplete %+v", text.String(), got, *done)
	}

	out, err = c.InvokeWithResponseStream(ctx, &lambda.InvokeWithResponseStreamInput{FunctionName: aws.String(fn.Name), Payload: []byte(`{"op":"streamfail","n":1}`)})
	if err != nil {
		t.Fatal(err)
	}
	defer out.GetStream().Close()
	for ev := range out.GetStream().Events() {
		if v, ok := ev.(*types.InvokeWithResponseStreamResponseEventMemberInvokeComplete); ok {
			if aws.ToString(v.Value.ErrorCode) != "errorString" || aws.ToString(v.Value.ErrorDetails) != "the stream broke" {
				t.Fatalf("error mid-stream: %+v", v.Value)
			}
			return
		}
	}
	t.Fatalf("no InvokeComplete after an error mid-stream: %v", out.GetStream().Err())
}

// goFunction creates test/compat's aws-lambda-go function (provided.al2023, code served
// from the node) and waits for it to be Active.
func goFunction(ctx context.Context, t *testing.T, ns, name string, mutate func(*lambdav1alpha1.Function)) *lambdav1alpha1.Function {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "bootstrap")
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-tags", "lambda.norpc", "-ldflags=-s -w", "-o", bin, "./test/compat/gofunction")
	build.Dir = cluster.RepoRoot
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the function: %v\n%s", err, out)
	}
	code, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	url, sha, err := cluster.ServeCode(ns+"-"+name+".zip", BootstrapZip(t, code))
	if err != nil {
		t.Fatal(err)
	}
	fn := &lambdav1alpha1.Function{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: lambdav1alpha1.FunctionSpec{FunctionConfiguration: lambdav1alpha1.FunctionConfiguration{
			Runtime: "provided.al2023", Handler: "bootstrap", Timeout: 60,
			Code: lambdav1alpha1.FunctionCode{CodeSource: lambdav1alpha1.CodeSource{URL: url, SHA256: sha}},
		}},
	}
	if mutate != nil {
		mutate(fn)
	}
	if err := cluster.Client.Create(ctx, fn); err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.WaitForFunctionActive(ctx, ns, fn.Name, 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	return fn
}

// nodeGates serves the streaming function's gate on the node's IP: GET /<i> (0 < i < n)
// answers once open[i] is closed (at most 30 s). It answers the channels and the address.
func nodeGates(t *testing.T, n int) ([]chan struct{}, string) {
	t.Helper()
	nodeIP, err := cluster.NodeIP()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(nodeIP, "0"))
	if err != nil {
		t.Fatal(err)
	}
	open := make([]chan struct{}, n)
	for i := range open {
		open[i] = make(chan struct{})
	}
	gate := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/"))
		if i <= 0 || i >= n {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		select {
		case <-open[i]:
		case <-time.After(30 * time.Second):
			w.WriteHeader(http.StatusGatewayTimeout)
		}
	})}
	go func() { _ = gate.Serve(ln) }()
	t.Cleanup(func() { _ = gate.Close() })
	return open, ln.Addr().String()
}

// TestFunctionURLStreamCurl: `curl -N` against a RESPONSE_STREAM function URL on the
// local cluster (test/compat's aws-lambda-go function answering
// events.LambdaFunctionURLStreamingResponse, its prelude giving 201 and headers). The
// function writes each chunk after the first only once curl has printed the previous one
// (the gate opens then), so curl sees the first chunk before the function finishes; an
// error after the chunks makes curl report an incomplete transfer.
func TestFunctionURLStreamCurl(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if !cluster.Local {
		t.Skip("needs the local cluster (the function reaches the test's gate on the node)")
	}
	ns := cluster.Namespace(t)
	fn := goFunction(ctx, t, ns, "urlstreamer", func(f *lambdav1alpha1.Function) {
		f.Spec.FunctionURLConfig = &lambdav1alpha1.FunctionURLConfig{AuthType: lambdav1alpha1.FunctionURLAuthNone,
			InvokeMode: lambdav1alpha1.InvokeModeResponseStream}
	})
	u := urlOf(ctx, t, fn, func() string { return fn.Status.FunctionURL })
	const n = 3
	open, gate := nodeGates(t, n)
	hf := filepath.Join(t.TempDir(), "h")
	curl := exec.CommandContext(ctx, "curl", "-sS", "-N", "--max-time", "60", "-D", hf, "-H", "Content-Type: application/json",
		"--data", fmt.Sprintf(`{"op":"urlstream","n":%d,"gate":"http://%s"}`, n, gate), u)
	stdout, err := curl.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	curl.Stderr = &stderr
	if err := curl.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stdout)
	for i := 0; i < n; i++ {
		if !lines.Scan() {
			_ = curl.Wait()
			t.Fatalf("curl printed %d chunks, then ended: %s", i, stderr.String())
		}
		if !strings.HasPrefix(lines.Text(), fmt.Sprintf("%d ", i)) {
			t.Fatalf("chunk %d: %q", i, lines.Text())
		}
		if i+1 < n {
			close(open[i+1]) // the function has not finished: it waits for this
		}
	}
	if lines.Scan() {
		t.Fatalf("more than %d chunks: %q", n, lines.Text())
	}
	if err := curl.Wait(); err != nil {
		t.Fatalf("curl: %v: %s", err, stderr.String())
	}
	hb, _ := os.ReadFile(hf)
	head := strings.ToLower(string(hb))
	if !strings.HasPrefix(head, "http/1.1 201") || !strings.Contains(head, "x-custom: yes") || !strings.Contains(head, "set-cookie: a=1") ||
		!strings.Contains(head, "content-type: text/plain") || !strings.Contains(head, "transfer-encoding: chunked") {
		t.Fatalf("curl's head:\n%s", hb)
	}

	// An error after two chunks: curl gets them, then reports the transfer cut short. (JSON:
	// curl's default form type would reach the function base64-encoded, as in Lambda.)
	out, err := exec.CommandContext(ctx, "curl", "-sS", "-N", "--max-time", "60", "-H", "Content-Type: application/json",
		"--data", `{"op":"urlstreamfail","n":2}`, u).CombinedOutput()
	if err == nil || strings.Count(string(out), "\n") < 2 {
		t.Fatalf("error mid-stream: curl %v: %q", err, out)
	}
}
