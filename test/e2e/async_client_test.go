//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klambda/klambda/api/contract"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// asyncActivatorURL is the base URL of the chart's activator Service
// (Cluster.ActivatorServiceURL); a test without one fails here.
func asyncActivatorURL(ctx context.Context, t testing.TB) string {
	t.Helper()
	url, err := cluster.ActivatorServiceURL(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return url
}

// asyncCallerToken is the Kubernetes token every invocation of the async tests carries
// (Authorization: Bearer over HTTP, AWS_SESSION_TOKEN with the CLI): one that may invoke
// functions in ns, as the local cluster's activator checks.
func asyncCallerToken(t testing.TB, ns string) string {
	return cluster.InvokerToken(context.Background(), t, ns)
}

// asyncTokens caches asyncCallerToken per namespace: the kill test sends thousands of
// invocations.
var asyncTokens sync.Map

func asyncCallerTokenCached(t testing.TB, ns string) string {
	if tok, ok := asyncTokens.Load(ns); ok {
		return tok.(string)
	}
	tok := asyncCallerToken(t, ns)
	asyncTokens.Store(ns, tok)
	return tok
}

// asyncAnswer is the activator's answer to one invocation.
type asyncAnswer struct {
	Status    int
	RequestID string // X-Amzn-RequestId
	ErrorType string // X-Amzn-ErrorType
	Body      []byte
	Header    http.Header
}

// asyncHTTP is the client of invokeAsync: no connection reuse across an activator restart
// matters here, but a dead activator must not hang a caller.
var asyncHTTP = &http.Client{Timeout: 20 * time.Second}

// invokeAsync sends one Event invocation of fn in ns to the activator, as the Invoke API's
// HTTP request. Every HTTP invocation of the async tests goes through here.
func invokeAsync(ctx context.Context, t testing.TB, ns, fn string, payload []byte) (asyncAnswer, error) {
	base, err := cluster.ActivatorServiceURL(ctx) // an error, not t.Fatal: senders are goroutines
	if err != nil {
		return asyncAnswer{}, err
	}
	url := fmt.Sprintf("%s/namespaces/%s/2015-03-31/functions/%s/invocations", base, ns, fn)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(payload))
	if err != nil {
		return asyncAnswer{}, err
	}
	req.Header.Set(contract.HeaderInvocationType, contract.InvocationEvent)
	req.Header.Set("Content-Type", "application/json")
	if tok := asyncCallerTokenCached(t, ns); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := asyncHTTP.Do(req)
	if err != nil {
		return asyncAnswer{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return asyncAnswer{Status: resp.StatusCode, RequestID: resp.Header.Get("X-Amzn-RequestId"),
		ErrorType: resp.Header.Get("X-Amzn-ErrorType"), Body: body, Header: resp.Header}, err
}

var asyncCLIRequestID = regexp.MustCompile(`(?i)'x-amzn-requestid': '([^']+)'`)

// invokeAsyncCLI is `aws lambda invoke --invocation-type Event` against the activator; it
// returns the StatusCode the CLI printed and the request id of the answer (from --debug).
func invokeAsyncCLI(ctx context.Context, t testing.TB, ns, fn string, payload []byte) (int, string) {
	t.Helper()
	aws, err := exec.LookPath("aws")
	if err != nil {
		t.Skip("the AWS CLI is not installed")
	}
	out := filepath.Join(t.TempDir(), "out.json")
	cmd := exec.CommandContext(ctx, aws, "lambda", "invoke", "--invocation-type", "Event",
		"--endpoint-url", asyncActivatorURL(ctx, t)+"/namespaces/"+ns, "--function-name", fn,
		"--payload", string(payload), "--debug", out)
	cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID=klambda", "AWS_SECRET_ACCESS_KEY=unused",
		"AWS_DEFAULT_REGION=us-east-1", "AWS_MAX_ATTEMPTS=1", "AWS_CONFIG_FILE=/dev/null")
	if tok := asyncCallerTokenCached(t, ns); tok != "" {
		cmd.Env = append(cmd.Env, "AWS_SESSION_TOKEN="+tok)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("aws lambda invoke: %v\n%s\n%s", err, stdout.Bytes(), asyncLastChars(stderr.String(), 2000))
	}
	var printed struct{ StatusCode int }
	if err := json.Unmarshal(stdout.Bytes(), &printed); err != nil {
		t.Fatalf("aws lambda invoke printed %q: %v", stdout.Bytes(), err)
	}
	id := ""
	if m := asyncCLIRequestID.FindStringSubmatch(stderr.String()); m != nil {
		id = m[1]
	}
	return printed.StatusCode, id
}

func asyncLastChars(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// asyncActivatorPod is the chart's Ready activator pod.
func asyncActivatorPod(ctx context.Context) (*corev1.Pod, error) {
	var pods corev1.PodList
	if err := cluster.Client.List(ctx, &pods, client.MatchingLabels{"app.kubernetes.io/component": "activator"}); err != nil {
		return nil, err
	}
	for i := range pods.Items {
		if p := &pods.Items[i]; p.DeletionTimestamp == nil && podReady(p) {
			return p, nil
		}
	}
	return nil, fmt.Errorf("no Ready activator pod")
}

// asyncActivatorMetric is the value of a counter of the activator's /metrics for one
// function (0 when the series does not exist yet).
func asyncActivatorMetric(ctx context.Context, name, ns, fn string) (float64, error) {
	pod, err := asyncActivatorPod(ctx)
	if err != nil {
		return 0, err
	}
	resp, err := cluster.ActivatorMetrics(ctx, pod.Status.PodIP)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") || !strings.Contains(line, `namespace="`+ns+`"`) ||
			!strings.Contains(line, `function="`+fn+`"`) {
			continue
		}
		return strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
	}
	return 0, sc.Err()
}
