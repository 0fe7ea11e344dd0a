//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// probeBootstrap and probeHandler are a custom runtime in shell (as examples/hello-shell)
// whose handler fails on an event containing "fail", sleeps N seconds on {"sleep":N}, and
// answers the version that ran and the event.
const probeBootstrap = `#!/bin/sh
set -eu
cd "${LAMBDA_TASK_ROOT:-/var/task}"
. "./${_HANDLER%%.*}.sh"
api="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation"
while true; do
	headers=$(mktemp)
	event=$(wget -q -S -O - "$api/next" 2>"$headers")
	request_id=$(grep -i 'Lambda-Runtime-Aws-Request-Id:' "$headers" | sed 's/.*: *//' | tr -d '\r ')
	rm -f "$headers"
	if response=$("${_HANDLER#*.}" "$event"); then
		wget -q -O /dev/null --post-data "$response" "$api/$request_id/response"
	else
		wget -q -O /dev/null --header 'Lambda-Runtime-Function-Error-Type: Unhandled' \
			--post-data '{"errorMessage":"asked to fail","errorType":"ProbeError"}' "$api/$request_id/error"
	fi
done
`

const probeHandler = `handler() {
	case "$1" in
	*'"fail"'*) return 1 ;;
	esac
	s=$(printf '%s' "$1" | sed -n 's/.*"sleep": *\([0-9][0-9]*\).*/\1/p')
	[ -z "$s" ] || sleep "$s"
	printf '{"version":"%s","event":%s}' "${AWS_LAMBDA_FUNCTION_VERSION:-}" "$1"
}
`

// probeFunction creates the shell probe function ns/name (mutate adjusts it) and waits
// until it is Active. Its Deployment is born at zero replicas.
func probeFunction(ctx context.Context, t *testing.T, ns, name string, mutate func(*lambdav1alpha1.Function)) *lambdav1alpha1.Function {
	t.Helper()
	return shellFunction(ctx, t, ns, name, probeHandler, mutate)
}

// shellFunction is probeFunction with another handler (a shell function named handler).
func shellFunction(ctx context.Context, t *testing.T, ns, name, handler string, mutate func(*lambdav1alpha1.Function)) *lambdav1alpha1.Function {
	t.Helper()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-code"},
		Data: map[string]string{"bootstrap": probeBootstrap, "function.sh": handler}}
	if err := cluster.Client.Create(ctx, cm); err != nil {
		t.Fatal(err)
	}
	fn := &lambdav1alpha1.Function{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: lambdav1alpha1.FunctionSpec{FunctionConfiguration: lambdav1alpha1.FunctionConfiguration{
			Runtime: "provided.al2023", Handler: "function.handler", Timeout: 30,
			Code: lambdav1alpha1.FunctionCode{CodeSource: lambdav1alpha1.CodeSource{ConfigMapRef: &lambdav1alpha1.ConfigMapCodeSource{Name: cm.Name}}},
		}},
	}
	if mutate != nil {
		mutate(fn)
	}
	if err := cluster.Client.Create(ctx, fn); err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.WaitForFunctionActive(ctx, ns, name, 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	return fn
}

// cliResult is what one `aws lambda invoke` printed and wrote.
type cliResult struct {
	Meta   map[string]any // stdout: StatusCode, FunctionError, ExecutedVersion, LogResult
	Body   string         // the outfile
	Stderr string
	Err    error // non-nil when the CLI exited non-zero
}

// awsInvoke runs Debian's AWS CLI v2 against the activator for namespace ns, with token
// as AWS_SESSION_TOKEN (none when empty).
func awsInvoke(t *testing.T, endpoint, token string, args ...string) cliResult {
	t.Helper()
	const cli = "/usr/bin/aws"
	if _, err := os.Stat(cli); err != nil {
		t.Skip("AWS CLI v2 not installed at /usr/bin/aws (apt-get install -y awscli)")
	}
	out := filepath.Join(t.TempDir(), "out.json")
	cmd := exec.Command(cli, append(append([]string{"lambda", "invoke", "--endpoint-url", endpoint, "--cli-binary-format", "raw-in-base64-out"}, args...), out)...)
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "AWS_") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	cmd.Env = append(cmd.Env, "AWS_ACCESS_KEY_ID=klambda", "AWS_SECRET_ACCESS_KEY=unused", "AWS_DEFAULT_REGION=us-east-1",
		"AWS_MAX_ATTEMPTS=1", "AWS_PAGER=", "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null")
	if token != "" {
		cmd.Env = append(cmd.Env, "AWS_SESSION_TOKEN="+token)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	r := cliResult{Err: cmd.Run(), Stderr: stderr.String()}
	if r.Err == nil {
		if err := json.Unmarshal(stdout.Bytes(), &r.Meta); err != nil {
			t.Fatalf("aws %v printed %q", args, stdout.String())
		}
		b, _ := os.ReadFile(out)
		r.Body = string(b)
	}
	return r
}

// wantCLIError checks that the CLI failed with Lambda's exception type and message.
func wantCLIError(t *testing.T, what string, r cliResult, typ, message string) {
	t.Helper()
	want := "An error occurred (" + typ + ") when calling the Invoke operation"
	if r.Err == nil || !strings.Contains(r.Stderr, want) || !strings.Contains(r.Stderr, message) {
		t.Errorf("%s: CLI err %v, stderr %q; want %q and %q", what, r.Err, r.Stderr, want, message)
	}
}

// wantSDKError checks the SDK's error: the exception's code and the HTTP status.
func wantSDKError(t *testing.T, what string, err error, code string, status int) {
	t.Helper()
	var ae smithy.APIError
	var re *awshttp.ResponseError
	if !errors.As(err, &ae) || ae.ErrorCode() != code || !errors.As(err, &re) || re.HTTPStatusCode() != status {
		t.Errorf("%s: SDK error %v; want %s with HTTP %d", what, err, code, status)
	}
}

// activatorMetrics scrapes the activator's Prometheus endpoint.
func activatorMetrics(ctx context.Context, t *testing.T) string {
	t.Helper()
	resp, err := cluster.ActivatorMetrics(ctx, cluster.ActivatorPod(ctx, t).Status.PodIP)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// metricLines are the lines of one metric family with label namespace="ns".
func metricLines(metrics, family, ns string) []string {
	var out []string
	for _, l := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(l, family+"{") && strings.Contains(l, `namespace="`+ns+`"`) {
			out = append(out, l)
		}
	}
	return out
}

// replicas is spec.replicas of a function version's Deployment; -1 when unknown.
func replicas(ctx context.Context, ns, name, version string) (int32, error) {
	d, err := cluster.FunctionDeployment(ctx, ns, name, version)
	if err != nil {
		return -1, err
	}
	if d.Spec.Replicas == nil {
		return -1, fmt.Errorf("Deployment %s has no spec.replicas", d.Name)
	}
	return *d.Spec.Replicas, nil
}

// functionPods lists the pods of a function version that are not being deleted.
func functionPods(ctx context.Context, ns, name, version string) ([]corev1.Pod, error) {
	var pods corev1.PodList
	if err := cluster.Client.List(ctx, &pods, client.InNamespace(ns), versionSelector(name, version)); err != nil {
		return nil, err
	}
	return pods.Items, nil
}

// TestActivatorInvokeAPI drives the chart's activator with the AWS CLI and the Go SDK:
// unauthorized callers (nothing runs), scale from zero, success with the log tail,
// qualifiers, DryRun, function error, unknown function and qualifier, throttle, invalid
// JSON, oversize payload, and back to zero after the function's (shortened) idle time.
func TestActivatorInvokeAPI(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	if !cluster.Local {
		t.Skip("needs the local cluster (pod IPs must route from the test)")
	}
	ns := cluster.Namespace(t)
	const idle = 20 * time.Second
	probe := probeFunction(ctx, t, ns, "probe", func(f *lambdav1alpha1.Function) {
		f.Annotations = map[string]string{contract.AnnotationIdleTimeout: idle.String()}
	})
	probeFunction(ctx, t, ns, "stopped", func(f *lambdav1alpha1.Function) {
		f.Spec.ReservedConcurrentExecutions = aws.Int32(0) // Lambda: throttle every invocation
	})
	endpoint := cluster.ActivatorURL(ctx, t, ns)
	token := cluster.InvokerToken(ctx, t, ns)
	stranger := cluster.ServiceAccountToken(ctx, t, ns, "e2e-stranger", false)
	// arn:aws:lambda:<region>:<account>:function: as the cluster's configuration names them.
	if err := cluster.Client.Get(ctx, client.ObjectKeyFromObject(probe), probe); err != nil {
		t.Fatal(err)
	}
	arn := strings.TrimSuffix(probe.Status.FunctionARN, "probe")
	if !strings.HasPrefix(arn, "arn:aws:lambda:") || !strings.HasSuffix(arn, ":function:") {
		t.Fatalf("status.functionArn %q", probe.Status.FunctionARN)
	}

	// Unauthorized callers, while probe is at zero replicas: refused, and nothing runs.
	r := awsInvoke(t, endpoint, "", "--function-name", "probe", "--payload", `{"x":1}`)
	wantCLIError(t, "no token (CLI)", r, "MissingAuthenticationTokenException", "")
	r = awsInvoke(t, endpoint, stranger, "--function-name", "probe", "--invocation-type", "DryRun")
	wantCLIError(t, "DryRun by a caller without invoke (CLI)", r, "AccessDeniedException", "is not authorized to perform: lambda:InvokeFunction")
	_, err := cluster.LambdaClient(ctx, t, ns, "not-a-token").Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("probe"), Payload: []byte(`{}`)})
	wantSDKError(t, "invalid token (SDK)", err, "UnrecognizedClientException", http.StatusForbidden)
	// Issue 15, finding 8: a token of the invoker made for the API server (no audience
	// klambda) is not a caller's credential, although its ServiceAccount may invoke.
	apiToken := cluster.APIToken(ctx, t, ns, Invoker)
	_, err = cluster.LambdaClient(ctx, t, ns, apiToken).Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("probe"), Payload: []byte(`{}`)})
	wantSDKError(t, "the invoker's API-audience token (SDK)", err, "UnrecognizedClientException", http.StatusForbidden)
	_, err = cluster.LambdaClient(ctx, t, ns, stranger).Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("probe"), Payload: []byte(`{}`)})
	wantSDKError(t, "caller without invoke (SDK)", err, "AccessDeniedException", http.StatusForbidden)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, endpoint+"/2015-03-31/functions/probe/invocations", strings.NewReader(`{}`))
	req.Header.Set("Authorization", "Bearer "+stranger)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var denied struct{ Type, Message string }
	_ = json.NewDecoder(resp.Body).Decode(&denied)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("X-Amzn-Errortype") != "AccessDeniedException" ||
		denied.Type != "User" || !strings.Contains(denied.Message, "system:serviceaccount:"+ns+":e2e-stranger") {
		t.Errorf("caller without invoke (HTTP): %d %s %+v", resp.StatusCode, resp.Header.Get("X-Amzn-Errortype"), denied)
	}
	time.Sleep(2 * time.Second) // a scale-up would have been applied by now (1 s passes)
	if n, err := replicas(ctx, ns, "probe", VersionLatest); n != 0 {
		t.Fatalf("after refused invocations the Deployment must stay at zero: replicas %d %v", n, err)
	}
	if pods, err := functionPods(ctx, ns, "probe", VersionLatest); err != nil || len(pods) != 0 {
		t.Fatalf("after refused invocations: %d pods (%v)", len(pods), err)
	}
	m := activatorMetrics(ctx, t)
	if got := metricLines(m, "klambda_invocations_total", ns); len(got) != 0 {
		t.Fatalf("refused callers were counted as invocations: %v", got)
	}
	// A refusal comes before the function is resolved for the caller: it is counted under
	// fixed labels (namespace="", function=""), never under names a caller chose.
	if got := metricLines(m, "klambda_invocation_failures_total", ns); len(got) != 0 {
		t.Errorf("refusals labelled with the namespace the caller named: %v", got)
	}
	if got := metricLines(m, "klambda_invocation_failures_total", ""); len(got) == 0 || !strings.Contains(strings.Join(got, "\n"), `type="AccessDeniedException"`) {
		t.Errorf("refusals not counted as AccessDeniedException failures under fixed labels: %v", got)
	}

	// Scale from zero with the SDK.
	sdk := cluster.LambdaClient(ctx, t, ns, token)
	start := time.Now()
	out, err := sdk.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("probe"), Payload: []byte(`{"name":"cold"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if out.StatusCode != 200 || out.FunctionError != nil || aws.ToString(out.ExecutedVersion) != "$LATEST" ||
		string(out.Payload) != `{"version":"$LATEST","event":{"name":"cold"}}` {
		t.Fatalf("cold invocation: %d %v %s %s", out.StatusCode, aws.ToString(out.FunctionError), aws.ToString(out.ExecutedVersion), out.Payload)
	}
	t.Logf("scale from zero: first invocation answered in %v", time.Since(start).Round(time.Millisecond))
	if n, err := replicas(ctx, ns, "probe", VersionLatest); n != 1 {
		t.Fatalf("after the cold invocation: replicas %d %v", n, err)
	}

	// The SDK: DryRun, function error, qualifiers, errors.
	out, err = sdk.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("probe"), InvocationType: types.InvocationTypeDryRun})
	if err != nil || out.StatusCode != 204 {
		t.Errorf("DryRun (SDK): %v %v", out, err)
	}
	out, err = sdk.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("probe"), Payload: []byte(`{"fail":true}`)})
	if err != nil || out.StatusCode != 200 || aws.ToString(out.FunctionError) != "Unhandled" ||
		string(out.Payload) != `{"errorMessage":"asked to fail","errorType":"ProbeError"}` {
		t.Errorf("function error (SDK): %v %s", err, out.Payload)
	}
	out, err = sdk.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(arn + "probe:$LATEST"), Payload: []byte(`{"arn":true}`)})
	if err != nil || aws.ToString(out.ExecutedVersion) != "$LATEST" {
		t.Errorf("ARN with qualifier (SDK): %v %v", out, err)
	}
	_, err = sdk.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("nope"), Payload: []byte(`{}`)})
	var nf *types.ResourceNotFoundException
	if !errors.As(err, &nf) || !strings.Contains(aws.ToString(nf.Message), "Function not found: "+arn+"nope") {
		t.Errorf("unknown function (SDK): %v", err)
	}
	_, err = sdk.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("probe"), Qualifier: aws.String("nope"), Payload: []byte(`{}`)})
	if !errors.As(err, &nf) || !strings.Contains(aws.ToString(nf.Message), "Function not found: "+arn+"probe:nope") {
		t.Errorf("unknown qualifier (SDK): %v", err)
	}
	_, err = sdk.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("stopped"), Payload: []byte(`{}`)})
	var tm *types.TooManyRequestsException
	if !errors.As(err, &tm) || tm.Reason != types.ThrottleReasonReservedFunctionConcurrentInvocationLimitExceeded {
		t.Errorf("throttled (SDK): %v", err)
	}
	wantSDKError(t, "throttled (SDK)", err, "TooManyRequestsException", http.StatusTooManyRequests)
	_, err = sdk.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("probe"), Payload: []byte(`{"a":`)})
	var ij *types.InvalidRequestContentException
	if !errors.As(err, &ij) {
		t.Errorf("invalid JSON (SDK): %v", err)
	}
	big := append(append([]byte{'"'}, bytes.Repeat([]byte{'a'}, 6*1024*1024)...), '"')
	_, err = sdk.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("probe"), Payload: big})
	var tl *types.RequestTooLargeException
	if !errors.As(err, &tl) {
		t.Errorf("oversize payload (SDK): %v", err)
	}
	wantSDKError(t, "oversize payload (SDK)", err, "RequestTooLargeException", http.StatusRequestEntityTooLarge)

	// The AWS CLI.
	r = awsInvoke(t, endpoint, token, "--function-name", "probe", "--payload", `{"cli":1}`, "--log-type", "Tail")
	if r.Err != nil {
		t.Fatalf("CLI invoke: %v %s", r.Err, r.Stderr)
	}
	tail, _ := base64.StdEncoding.DecodeString(fmt.Sprint(r.Meta["LogResult"]))
	if r.Meta["StatusCode"] != float64(200) || r.Meta["ExecutedVersion"] != "$LATEST" || r.Body != `{"version":"$LATEST","event":{"cli":1}}` ||
		!strings.Contains(string(tail), "START RequestId: ") || !strings.Contains(string(tail), "REPORT RequestId: ") {
		t.Errorf("CLI invoke with --log-type Tail: %v %q, log %q", r.Meta, r.Body, tail)
	}
	r = awsInvoke(t, endpoint, token, "--function-name", "probe", "--qualifier", "$LATEST", "--payload", `{"q":1}`)
	if r.Err != nil || r.Meta["ExecutedVersion"] != "$LATEST" || r.Body != `{"version":"$LATEST","event":{"q":1}}` {
		t.Errorf("CLI --qualifier $LATEST: %v %v %q %s", r.Err, r.Meta, r.Body, r.Stderr)
	}
	r = awsInvoke(t, endpoint, token, "--function-name", "probe", "--invocation-type", "DryRun")
	if r.Err != nil || r.Meta["StatusCode"] != float64(204) {
		t.Errorf("CLI DryRun: %v %v %s", r.Err, r.Meta, r.Stderr)
	}
	r = awsInvoke(t, endpoint, token, "--function-name", "probe", "--payload", `{"fail":1}`)
	if r.Err != nil || r.Meta["StatusCode"] != float64(200) || r.Meta["FunctionError"] != "Unhandled" || !strings.Contains(r.Body, `"errorType":"ProbeError"`) {
		t.Errorf("CLI function error: %v %v %q %s", r.Err, r.Meta, r.Body, r.Stderr)
	}
	lastInvoked := time.Now()
	wantCLIError(t, "CLI unknown function", awsInvoke(t, endpoint, token, "--function-name", "nope", "--payload", `{}`),
		"ResourceNotFoundException", "Function not found: "+arn+"nope")
	wantCLIError(t, "CLI unknown qualifier", awsInvoke(t, endpoint, token, "--function-name", "probe", "--qualifier", "nope", "--payload", `{}`),
		"ResourceNotFoundException", "Function not found: "+arn+"probe:nope")
	wantCLIError(t, "CLI qualifier conflict", awsInvoke(t, endpoint, token, "--function-name", "probe:1", "--qualifier", "2", "--payload", `{}`),
		"InvalidParameterValueException", "The derived qualifier from the function name does not match the specified qualifier.")
	wantCLIError(t, "CLI throttled", awsInvoke(t, endpoint, token, "--function-name", "stopped", "--payload", `{}`),
		"TooManyRequestsException", "")
	wantCLIError(t, "CLI invalid JSON", awsInvoke(t, endpoint, token, "--function-name", "probe", "--payload", `{not json`),
		"InvalidRequestContentException", "Could not parse request body into json")
	bigFile := filepath.Join(t.TempDir(), "big.json")
	if err := os.WriteFile(bigFile, big, 0o644); err != nil {
		t.Fatal(err)
	}
	wantCLIError(t, "CLI oversize payload", awsInvoke(t, endpoint, token, "--function-name", "probe", "--payload", "fileb://"+bigFile),
		"RequestTooLargeException", "Request must be smaller than 6291456 bytes for the InvokeFunction operation")

	// Back to zero once the only environment has been idle for the function's idle time.
	var gone time.Duration
	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, idle+90*time.Second, true, func(ctx context.Context) (bool, error) {
		if n, _ := replicas(ctx, ns, "probe", VersionLatest); n != 0 {
			return false, nil
		}
		if gone == 0 {
			gone = time.Since(lastInvoked)
		}
		pods, err := functionPods(ctx, ns, "probe", VersionLatest)
		return err == nil && len(pods) == 0, nil
	})
	if err != nil {
		t.Fatalf("probe did not go back to zero replicas and pods within %v of its last invocation: %v", idle+90*time.Second, err)
	}
	t.Logf("back to zero: replicas 0 after %v idle (idle timeout %v), pods gone after %v", gone.Round(time.Millisecond), idle, time.Since(lastInvoked).Round(time.Millisecond))
	if gone < idle-time.Second {
		t.Errorf("scaled to zero after %v, before the idle timeout %v", gone, idle)
	}
}

// TestActivatorReservedConcurrencyThrottles: reserved concurrency N and N+k concurrent
// slow invocations: exactly k are throttled (429 TooManyRequestsException, reason
// ReservedFunctionConcurrentInvocationLimitExceeded), at once; N run.
func TestActivatorReservedConcurrencyThrottles(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if !cluster.Local {
		t.Skip("needs the local cluster (pod IPs must route from the test)")
	}
	const n, k, sleep = 2, 3, 4
	ns := cluster.Namespace(t)
	probeFunction(ctx, t, ns, "slow", func(f *lambdav1alpha1.Function) { f.Spec.ReservedConcurrentExecutions = aws.Int32(n) })
	url := cluster.ActivatorURL(ctx, t, ns) + "/2015-03-31/functions/slow/invocations"
	token := cluster.InvokerToken(ctx, t, ns)
	post := func(payload, invocationType string) (*http.Response, []byte, time.Duration, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(payload))
		req.Header.Set("Authorization", "Bearer "+token)
		if invocationType != "" {
			req.Header.Set(contract.HeaderInvocationType, invocationType)
		}
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, nil, 0, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp, b, time.Since(start), err
	}
	// Authorized once (the decision is cached), so the burst below measures the limit only.
	if resp, _, _, err := post("", "DryRun"); err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DryRun: %v %v", resp, err)
	}

	type result struct {
		status  int
		errType string
		body    []byte
		took    time.Duration
	}
	results := make([]result, n+k)
	var wg sync.WaitGroup
	startLine := make(chan struct{})
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-startLine
			resp, body, took, err := post(fmt.Sprintf(`{"sleep":%d,"i":%d}`, sleep, i), "")
			if err != nil {
				t.Error(err)
				return
			}
			results[i] = result{resp.StatusCode, resp.Header.Get("X-Amzn-Errortype"), body, took}
		}()
	}
	close(startLine)
	wg.Wait()
	ran, throttled := 0, 0
	for i, r := range results {
		switch r.status {
		case http.StatusOK:
			ran++
			if r.took < sleep*time.Second || !bytes.Contains(r.body, []byte(`"sleep":`)) {
				t.Errorf("call %d ran in %v: %s", i, r.took, r.body)
			}
		case http.StatusTooManyRequests:
			throttled++
			var e struct{ Type, Reason, Message string }
			_ = json.Unmarshal(r.body, &e)
			if r.errType != "TooManyRequestsException" || e.Reason != "ReservedFunctionConcurrentInvocationLimitExceeded" || e.Type != "User" {
				t.Errorf("call %d throttled as %s %s", i, r.errType, r.body)
			}
			// At once: not queued behind the slow ones.
			if r.took > 2*time.Second {
				t.Errorf("call %d throttled after %v, not at once", i, r.took)
			}
		default:
			t.Errorf("call %d: HTTP %d %s %s", i, r.status, r.errType, r.body)
		}
		t.Logf("call %d: HTTP %d in %v", i, r.status, r.took.Round(time.Millisecond))
	}
	if ran != n || throttled != k {
		t.Fatalf("%d ran and %d were throttled; want %d and %d", ran, throttled, n, k)
	}
}

// TestActivatorAliasWeights: an alias on version 1 with version 2 at weight 0.1 sends
// 10 % ± 1.5 % of 10,000 invocations to version 2, and every answer names the version
// that ran (X-Amz-Executed-Version), which is the version the function saw.
func TestActivatorAliasWeights(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if !cluster.Local {
		t.Skip("needs the local cluster (pod IPs must route from the test)")
	}
	ns := cluster.Namespace(t)
	fn := cluster.HelloGoFunction(ctx, t, ns, "hello")
	fn.Spec.Environment = &lambdav1alpha1.Environment{Variables: []lambdav1alpha1.EnvVar{{Name: "RELEASE", Value: "one"}}}
	if err := cluster.Client.Create(ctx, fn); err != nil {
		t.Fatal(err)
	}
	publish := func(name, want string) {
		t.Helper()
		if _, err := cluster.WaitForFunctionActive(ctx, ns, fn.Name, 3*time.Minute); err != nil {
			t.Fatal(err)
		}
		// A publish waits for the function's last update to be processed (Lambda: 409).
		err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			var f lambdav1alpha1.Function
			if err := cluster.Client.Get(ctx, client.ObjectKeyFromObject(fn), &f); err != nil {
				return false, nil
			}
			return f.Status.ObservedGeneration == f.Generation && f.Status.State == lambdav1alpha1.StateActive &&
				f.Status.LastUpdateStatus == lambdav1alpha1.LastUpdateSuccessful, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		v := &lambdav1alpha1.Version{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: lambdav1alpha1.VersionSpec{FunctionName: fn.Name}}
		if err := cluster.Client.Create(ctx, v); err != nil {
			t.Fatal(err)
		}
		err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
			if err := cluster.Client.Get(ctx, client.ObjectKeyFromObject(v), v); err != nil {
				return false, nil
			}
			return v.Status.Version != "" && v.Status.State == lambdav1alpha1.StateActive, nil
		})
		if err != nil || v.Status.Version != want {
			t.Fatalf("Version %s: number %q state %q (want %s): %v", name, v.Status.Version, v.Status.State, want, err)
		}
	}
	publish("hello-1", "1")
	if err := cluster.Client.Get(ctx, client.ObjectKeyFromObject(fn), fn); err != nil {
		t.Fatal(err)
	}
	fn.Spec.Environment.Variables[0].Value = "two"
	if err := cluster.Client.Update(ctx, fn); err != nil {
		t.Fatal(err)
	}
	publish("hello-2", "2")
	alias := &lambdav1alpha1.Alias{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "live"}, Spec: lambdav1alpha1.AliasSpec{
		FunctionName: fn.Name, FunctionVersion: "1",
		RoutingConfig: &lambdav1alpha1.AliasRoutingConfiguration{AdditionalVersionWeights: map[string]float64{"2": 0.1}},
	}}
	if err := cluster.Client.Create(ctx, alias); err != nil {
		t.Fatal(err)
	}

	base := cluster.ActivatorURL(ctx, t, ns) + "/2015-03-31/functions/"
	token := cluster.InvokerToken(ctx, t, ns)
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}, Timeout: time.Minute}
	invoke := func(ctx context.Context, name string) (version string, err error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+name+"/invocations", strings.NewReader(`{"name":"weights"}`))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := hc.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		var got struct{ Version string }
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &got) != nil {
			return "", fmt.Errorf("HTTP %d %s: %s", resp.StatusCode, resp.Header.Get("X-Amzn-Errortype"), b)
		}
		executed := resp.Header.Get("X-Amz-Executed-Version")
		if executed != got.Version {
			return "", fmt.Errorf("X-Amz-Executed-Version %q but version %q ran (X-Amz-Function-Error %q): %s", executed, got.Version,
				resp.Header.Get("X-Amz-Function-Error"), b)
		}
		return executed, nil
	}
	// The alias is routed once the activator has seen it; both versions warm.
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := invoke(ctx, "hello:live")
		return err == nil, nil
	})
	if err != nil {
		t.Fatalf("the alias never answered: %v", err)
	}
	for _, q := range []string{"1", "2"} {
		if v, err := invoke(ctx, "hello:"+q); err != nil || v != q {
			t.Fatalf("version %s answered %q: %v", q, v, err)
		}
	}

	const total, callers = 10000, 4
	counts := map[string]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	next := make(chan struct{}, total)
	for range total {
		next <- struct{}{}
	}
	close(next)
	start := time.Now()
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				v, err := invoke(ctx, "hello:live")
				mu.Lock()
				if err != nil {
					counts["error: "+err.Error()]++
				} else {
					counts[v]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	share := float64(counts["2"]) / total
	t.Logf("%d invocations of hello:live in %v (%.0f/s): version 1 %d, version 2 %d (%.2f %%)", total, took.Round(time.Millisecond),
		total/took.Seconds(), counts["1"], counts["2"], 100*share)
	if counts["1"]+counts["2"] != total {
		dumpFunctionErrors(ctx, t, ns)
		t.Fatalf("not every invocation ran on version 1 or 2: %v", counts)
	}
	if share < 0.085 || share > 0.115 {
		t.Fatalf("version 2 ran %.2f %% of the alias's invocations; want 10 %% ± 1.5 %%", 100*share)
	}
}

// dumpFunctionErrors logs what the namespace's function pods logged about failures (the
// shim's and the runtime's lines), for a test that met an unexpected function error.
func dumpFunctionErrors(ctx context.Context, t *testing.T, ns string) {
	t.Helper()
	var pods corev1.PodList
	if err := cluster.Client.List(ctx, &pods, client.InNamespace(ns)); err != nil {
		t.Logf("listing the pods of %s: %v", ns, err)
		return
	}
	for _, p := range pods.Items {
		for _, st := range p.Status.ContainerStatuses {
			t.Logf("pod %s container %s: restarts %d, last state %+v", p.Name, st.Name, st.RestartCount, st.LastTerminationState.Terminated)
		}
		rc, err := cluster.Kube.CoreV1().Pods(ns).GetLogs(p.Name, &corev1.PodLogOptions{}).Stream(ctx)
		if err != nil {
			t.Logf("logs of %s: %v", p.Name, err)
			continue
		}
		b, _ := io.ReadAll(io.LimitReader(rc, 64<<20))
		rc.Close()
		for _, line := range strings.Split(string(b), "\n") {
			if l := strings.ToLower(line); strings.Contains(l, "error") || strings.Contains(l, "timed out") || strings.Contains(l, "panic") ||
				strings.Contains(l, "fatal") || strings.Contains(l, "exit") || strings.Contains(l, "signal") {
				t.Logf("%s: %s", p.Name, line)
			}
		}
	}
}
