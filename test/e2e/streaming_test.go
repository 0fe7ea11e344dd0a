//go:build e2e

package e2e

import (
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
	url, sha, err := cluster.ServeCode(ns+"-streamer.zip", BootstrapZip(t, code))
	if err != nil {
		t.Fatal(err)
	}
	fn := &lambdav1alpha1.Function{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "streamer"},
		Spec: lambdav1alpha1.FunctionSpec{FunctionConfiguration: lambdav1alpha1.FunctionConfiguration{
			Runtime: "provided.al2023", Handler: "bootstrap", Timeout: 60,
			Code: lambdav1alpha1.FunctionCode{CodeSource: lambdav1alpha1.CodeSource{URL: url, SHA256: sha}},
		}},
	}
	if err := cluster.Client.Create(ctx, fn); err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.WaitForFunctionActive(ctx, ns, fn.Name, 3*time.Minute); err != nil {
		t.Fatal(err)
	}

	// The gate, on the node's IP: GET /<i> answers once chunk i-1 was received.
	nodeIP, err := cluster.NodeIP()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(nodeIP, "0"))
	if err != nil {
		t.Fatal(err)
	}
	const n = 3
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

	c := cluster.LambdaClient(ctx, t, ns, cluster.InvokerToken(ctx, t, ns))
	out, err := c.InvokeWithResponseStream(ctx, &lambda.InvokeWithResponseStreamInput{FunctionName: aws.String(fn.Name),
		Payload: []byte(fmt.Sprintf(`{"op":"stream","n":%d,"gate":"http://%s"}`, n, ln.Addr())), LogType: types.LogTypeTail})
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
