//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

var payloadRounds = flag.Int("payload.rounds", 10, "BenchmarkPayload5MB: rounds (each: one invocation of each function)")

// Lambda's payload limits (spec: 6 MB request, 6 MB + 100 bytes response).
const (
	maxRequest  = 6 * 1024 * 1024
	maxResponse = 6*1024*1024 + 100
)

// payloadFunction deploys test/compat/gofunction (aws-lambda-go; {"op":"big","n":N}
// answers a JSON string of N bytes, {"op":"sleep","ms":0,...} answers a few bytes whatever
// the event's size) as a provided.al2023 Zip function of memory MB, timeout 3 s, and
// waits until it is Active.
func payloadFunction(ctx context.Context, t testing.TB, ns, name string, memory int32) {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "bootstrap")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-tags", "lambda.norpc", "-ldflags=-s -w", "-o", bin, "./test/compat/gofunction")
	cmd.Dir = RepoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the function: %v: %s", err, out)
	}
	exe, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	url, sha, err := cluster.ServeCode(ns+"-"+name+".zip", BootstrapZip(t, exe))
	if err != nil {
		t.Fatal(err)
	}
	fn := &lambdav1alpha1.Function{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: lambdav1alpha1.FunctionSpec{FunctionConfiguration: lambdav1alpha1.FunctionConfiguration{
			Runtime: "provided.al2023", Handler: "bootstrap", Timeout: 3, MemorySize: memory,
			Code: lambdav1alpha1.FunctionCode{CodeSource: lambdav1alpha1.CodeSource{URL: url, SHA256: sha}},
		}},
	}
	if err := cluster.Client.Create(ctx, fn); err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.WaitForFunctionActive(ctx, ns, name, 3*time.Minute); err != nil {
		t.Fatal(err)
	}
}

// bigResponse is the event that makes gofunction answer a JSON string of n bytes in all.
func bigResponse(n int) []byte { return fmt.Appendf(nil, `{"op":"big","n":%d}`, n-2) }

// bigRequest is an event of n bytes in all that gofunction answers in a few bytes.
func bigRequest(n int) []byte {
	head, tail := `{"op":"sleep","ms":0,"pad":"`, `"}`
	return append(append([]byte(head), bytes.Repeat([]byte{'x'}, n-len(head)-len(tail))...), tail...)
}

// TestPayloadSizes: at 128 MB (Lambda's 72m of CPU) and a 3 s timeout, an aws-lambda-go
// function answers 1, 3, 5 and 6 MB responses and takes 1, 3, 5 and 6 MB requests within
// the timeout, the largest Lambda allows in each direction included; one byte more is
// Lambda's error: a response over 6291556 bytes is the function error
// Function.ResponseSizeTooLarge, a request over 6291456 bytes is 413
// RequestTooLargeException.
func TestPayloadSizes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	if !cluster.Local {
		t.Skip("needs the local cluster")
	}
	ns := cluster.Namespace(t)
	payloadFunction(ctx, t, ns, "payload", 128)
	sdk := cluster.LambdaClient(ctx, t, ns, cluster.InvokerToken(ctx, t, ns))
	invoke := func(event []byte) (*lambda.InvokeOutput, time.Duration, error) {
		start := time.Now()
		out, err := sdk.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("payload"), Payload: event})
		return out, time.Since(start), err
	}
	if _, _, err := invoke([]byte(`{}`)); err != nil { // cold start out of the way
		t.Fatal(err)
	}
	for _, mb := range []int{1, 3, 5, 6} {
		n := mb << 20
		if mb == 6 {
			n = maxResponse
		}
		out, took, err := invoke(bigResponse(n))
		switch {
		case err != nil:
			t.Errorf("%d MB response: %v", mb, err)
		case out.FunctionError != nil:
			t.Errorf("%d MB response: function error %s: %.200s", mb, *out.FunctionError, out.Payload)
		case len(out.Payload) != n:
			t.Errorf("%d MB response: %d bytes, want %d", mb, len(out.Payload), n)
		default:
			t.Logf("%d MB response (%d bytes): %v", mb, n, took.Round(time.Millisecond))
		}
		n = mb << 20
		if mb == 6 {
			n = maxRequest
		}
		out, took, err = invoke(bigRequest(n))
		switch {
		case err != nil:
			t.Errorf("%d MB request: %v", mb, err)
		case out.FunctionError != nil:
			t.Errorf("%d MB request: function error %s: %.200s", mb, *out.FunctionError, out.Payload)
		case string(out.Payload) != `{"slept":"yes"}`:
			t.Errorf("%d MB request: answer %.200s", mb, out.Payload)
		default:
			t.Logf("%d MB request (%d bytes): %v", mb, n, took.Round(time.Millisecond))
		}
	}

	out, _, err := invoke(bigResponse(maxResponse + 1))
	if err != nil {
		t.Fatalf("response over the limit: %v", err)
	}
	var body struct{ ErrorType, ErrorMessage string }
	_ = json.Unmarshal(out.Payload, &body)
	if out.FunctionError == nil || *out.FunctionError != "Unhandled" || body.ErrorType != "Function.ResponseSizeTooLarge" ||
		!strings.Contains(body.ErrorMessage, "6291556 bytes") {
		t.Errorf("response over the limit: function error %v, body %.300s", out.FunctionError, out.Payload)
	}
	_, _, err = invoke(bigRequest(maxRequest + 1))
	wantSDKError(t, "request over the limit", err, "RequestTooLargeException", http.StatusRequestEntityTooLarge)
	// The environment is still fine.
	if out, _, err := invoke(bigResponse(1 << 20)); err != nil || out.FunctionError != nil {
		t.Errorf("after the errors: %v", err)
	}
}

// BenchmarkPayload5MB: a 5 MB response end to end (caller to activator to shim to an
// aws-lambda-go function and back) at 128 MB against the same at 1,769 MB (one vCPU),
// warm, in alternating rounds of the same run. Target: ratio <= 3.
//
//	make bench-payload   # go test -tags e2e -run '^$' -bench Payload5MB -benchtime 1x ./test/e2e/
func BenchmarkPayload5MB(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	if !cluster.Local {
		b.Skip("needs the local cluster")
	}
	ns := cluster.Namespace(b)
	payloadFunction(ctx, b, ns, "small", 128)
	payloadFunction(ctx, b, ns, "large", 1769)
	sdk := cluster.LambdaClient(ctx, b, ns, cluster.InvokerToken(ctx, b, ns))
	event := bigResponse(5 << 20)
	invoke := func(name string) time.Duration {
		start := time.Now()
		out, err := sdk.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(name), Payload: event})
		if err != nil {
			b.Fatalf("%s: %v", name, err)
		}
		if out.FunctionError != nil || len(out.Payload) != 5<<20 {
			b.Fatalf("%s: function error %v, %d bytes: %.200s", name, out.FunctionError, len(out.Payload), out.Payload)
		}
		return time.Since(start)
	}
	// Warm both (a cold start with a 5 MB answer may meet a transient error of the
	// connection to the activator: retried, and logged), and let the activator resize the
	// 128 MB one to its running CPU limit.
	for _, name := range []string{"small", "large"} {
		for try := 1; ; try++ {
			out, err := sdk.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(name), Payload: event})
			if err == nil && out.FunctionError == nil {
				break
			}
			if try == 3 {
				b.Fatalf("warming %s: %v", name, err)
			}
			b.Logf("warming %s, try %d: %v", name, try, err)
		}
	}
	time.Sleep(5 * time.Second)
	invoke("small")
	invoke("large")
	var small, large []time.Duration
	for i := 0; i < *payloadRounds; i++ {
		if i%2 == 0 {
			small, large = append(small, invoke("small")), append(large, invoke("large"))
		} else {
			large, small = append(large, invoke("large")), append(small, invoke("small"))
		}
	}
	p50 := func(d []time.Duration) time.Duration {
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return d[len(d)/2]
	}
	s, l := p50(small), p50(large)
	ratio := float64(s) / float64(l)
	b.ReportMetric(float64(s.Milliseconds()), "ms-128MB-p50")
	b.ReportMetric(float64(l.Milliseconds()), "ms-1769MB-p50")
	b.ReportMetric(ratio, "ratio")
	fmt.Printf("5 MB response, end to end, %d rounds: 128 MB p50 %v (max %v), 1,769 MB p50 %v (max %v), ratio %.2fx (target <= 3x: %v)\n",
		*payloadRounds, s.Round(time.Millisecond), small[len(small)-1].Round(time.Millisecond), l.Round(time.Millisecond), large[len(large)-1].Round(time.Millisecond), ratio, ratio <= 3)
}
