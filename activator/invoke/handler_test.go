package invoke_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/klambda/klambda/activator/fnkey"
	"github.com/klambda/klambda/activator/invoke"
	"github.com/klambda/klambda/activator/testrig"
)

type answer struct {
	status int
	header http.Header
	body   string
}

func call(t *testing.T, url, path string, body string, hdr map[string]string) answer {
	t.Helper()
	req, _ := http.NewRequest("POST", url+path, strings.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, string(b)}
}

func invPath(fn string) string { return "/2015-03-31/functions/" + fn + "/invocations" }

func wantError(t *testing.T, a answer, status int, typ, msgPart string) {
	t.Helper()
	if a.status != status || a.header.Get("X-Amzn-ErrorType") != typ {
		t.Fatalf("got %d %s %s; want %d %s", a.status, a.header.Get("X-Amzn-ErrorType"), a.body, status, typ)
	}
	var e struct {
		Type    string
		Message string `json:"message"`
	}
	if err := json.Unmarshal([]byte(a.body), &e); err != nil || e.Type == "" || !strings.Contains(e.Message, msgPart) {
		t.Fatalf("body %s (want message containing %q): %v", a.body, msgPart, err)
	}
}

func TestInvokeSuccessAndHeaders(t *testing.T) {
	r := testrig.New(testrig.Options{})
	defer r.Close()
	r.Function("f", -1, 0)
	shims := r.Environments("f", "$LATEST", 1)
	a := call(t, r.URL(), invPath("f"), `{"a":1}`, map[string]string{"X-Amz-Log-Type": "Tail", "X-Amz-Client-Context": "eyJhIjoxfQ=="})
	if a.status != 200 || a.body != `{"a":1}` || a.header.Get("X-Amz-Executed-Version") != "$LATEST" || a.header.Get("X-Amzn-RequestId") == "" {
		t.Fatalf("%+v", a)
	}
	log, _ := base64.StdEncoding.DecodeString(a.header.Get("X-Amz-Log-Result"))
	if !strings.Contains(string(log), "START RequestId: "+a.header.Get("X-Amzn-RequestId")) {
		t.Fatalf("log tail %q", log)
	}
	got := shims[0].LastHeader
	if got.Get("X-Klambda-Invoke-Secret") != testrig.Secret || got.Get("X-Amz-Client-Context") != "eyJhIjoxfQ==" ||
		got.Get("X-Klambda-Invoked-Function-Arn") != "arn:aws:lambda:us-east-1:000000000000:function:f" || got.Get("X-Klambda-Deadline-Ms") == "" {
		t.Fatalf("shim saw %v", got)
	}
	m := r.Handler.Metrics
	if v := testutil.ToFloat64(m.Invocations.WithLabelValues("default", "f", "$LATEST", "$LATEST")); v != 1 {
		t.Errorf("invocations metric = %v", v)
	}
	if n := testutil.CollectAndCount(m.InitDuration); n != 1 {
		t.Errorf("init duration series = %d", n)
	}
	// Empty payload is allowed and answered with null.
	if a := call(t, r.URL(), invPath("f"), "", nil); a.status != 200 || a.body != "null" {
		t.Fatalf("%+v", a)
	}
}

func TestInvokeQualifiersAndExecutedVersion(t *testing.T) {
	r := testrig.New(testrig.Options{})
	defer r.Close()
	r.Function("f", -1, 2)
	r.Alias("f", "prod", "1", nil)
	r.Alias("f", "live", "1", map[string]float64{"2": 0.5})
	r.Environments("f", "1", 1)
	r.Environments("f", "2", 1)
	if a := call(t, r.URL(), invPath("f:prod"), `{}`, nil); a.status != 200 || a.header.Get("X-Amz-Executed-Version") != "1" {
		t.Fatalf("%+v", a)
	}
	if a := call(t, r.URL(), invPath("f")+"?Qualifier=2", `{}`, nil); a.status != 200 || a.header.Get("X-Amz-Executed-Version") != "2" {
		t.Fatalf("%+v", a)
	}
	seen := map[string]int{}
	for i := 0; i < 60; i++ {
		a := call(t, r.URL(), invPath("f:live"), `{}`, nil)
		seen[a.header.Get("X-Amz-Executed-Version")]++
	}
	if seen["1"] == 0 || seen["2"] == 0 || seen["1"]+seen["2"] != 60 {
		t.Fatalf("weighted alias executed %v", seen)
	}
	shim := r.Shims[keyOf("f", "2")][0]
	if arn := shim.LastHeader.Get("X-Klambda-Invoked-Function-Arn"); arn != "arn:aws:lambda:us-east-1:000000000000:function:f:live" {
		t.Fatalf("invoked ARN keeps the caller's qualifier, got %s", arn)
	}
	wantError(t, call(t, r.URL(), invPath("f:nope"), `{}`, nil), 404, "ResourceNotFoundException", "Function not found: arn:aws:lambda:us-east-1:000000000000:function:f:nope")
	wantError(t, call(t, r.URL(), invPath("f:9"), `{}`, nil), 404, "ResourceNotFoundException", "function:f:9")
	wantError(t, call(t, r.URL(), invPath("f:prod")+"?Qualifier=live", `{}`, nil), 400, "InvalidParameterValueException", "derived qualifier")
}

func TestInvokeErrors(t *testing.T) {
	r := testrig.New(testrig.Options{})
	defer r.Close()
	r.Function("f", -1, 0)
	r.PendingFunction("p")
	r.Environments("f", "$LATEST", 1)

	a := call(t, r.URL(), invPath("f"), `{"fail":"boom"}`, nil)
	if a.status != 200 || a.header.Get("X-Amz-Function-Error") != "Unhandled" || !strings.Contains(a.body, `"errorMessage":"boom"`) {
		t.Fatalf("function error: %+v", a)
	}
	wantError(t, call(t, r.URL(), invPath("nope"), `{}`, nil), 404, "ResourceNotFoundException", "Function not found: arn:aws:lambda:us-east-1:000000000000:function:nope")
	wantError(t, call(t, r.URL(), invPath("p"), `{}`, nil), 409, "ResourceConflictException",
		"The operation cannot be performed at this time. The function is currently in the following state: Pending")
	wantError(t, call(t, r.URL(), invPath("f"), `{not json`, nil), 400, "InvalidRequestContentException", "Could not parse request body into json")
	wantError(t, call(t, r.URL(), invPath("f"), `"`+strings.Repeat("x", 6*1024*1024)+`"`, nil), 413, "RequestTooLargeException",
		"Request must be smaller than 6291456 bytes for the InvokeFunction operation")
	wantError(t, call(t, r.URL(), invPath("f"), `{}`, map[string]string{"X-Amz-Invocation-Type": "Event"}), 400, "InvalidParameterValueException", "not enabled")
	if a := call(t, r.URL(), invPath("f"), `{}`, map[string]string{"X-Amz-Invocation-Type": "DryRun"}); a.status != 204 {
		t.Fatalf("dry run: %+v", a)
	}
	// No environment comes within the wait deadline.
	r.Function("cold", -1, 0)
	wantError(t, call(t, r.URL(), invPath("cold"), `{}`, nil), 500, "ServiceException", "became ready")
}

func TestInvokeThrottledAtReservedConcurrency(t *testing.T) {
	r := testrig.New(testrig.Options{})
	defer r.Close()
	r.Function("f", 1, 0)
	r.Environments("f", "$LATEST", 2)
	done := make(chan answer)
	go func() { done <- call(t, r.URL(), invPath("f"), `{"sleep_ms":300}`, nil) }()
	time.Sleep(50 * time.Millisecond)
	a := call(t, r.URL(), invPath("f"), `{}`, nil)
	wantError(t, a, 429, "TooManyRequestsException", "Rate Exceeded.")
	if !strings.Contains(a.body, `"Reason":"ReservedFunctionConcurrentInvocationLimitExceeded"`) || a.header.Get("Retry-After") == "" {
		t.Fatalf("throttle body %s", a.body)
	}
	if a := <-done; a.status != 200 {
		t.Fatalf("%+v", a)
	}
	r.Function("zero", 0, 0)
	wantError(t, call(t, r.URL(), invPath("zero"), `{}`, nil), 429, "TooManyRequestsException", "Rate")
}

// A client that goes away does not free its environment before the shim has answered:
// the next request waits, and no environment ever runs two invocations.
func TestClientGoneKeepsEnvironmentUntilShimAnswers(t *testing.T) {
	r := testrig.New(testrig.Options{WaitDeadline: 2 * time.Second})
	defer r.Close()
	r.Function("f", -1, 0)
	shims := r.Environments("f", "$LATEST", 1)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", r.URL()+invPath("f"), strings.NewReader(`{"sleep_ms":300}`))
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	if _, err := http.DefaultClient.Do(req); err == nil {
		t.Fatal("expected the cancelled call to fail")
	}
	start := time.Now()
	a := call(t, r.URL(), invPath("f"), `{}`, nil)
	if a.status != 200 {
		t.Fatalf("%+v", a)
	}
	if waited := time.Since(start); waited < 150*time.Millisecond {
		t.Fatalf("second call ran after %v: the environment was freed before the shim finished", waited)
	}
	if shims[0].Overlaps.Load() != 0 || shims[0].Calls.Load() != 2 {
		t.Fatalf("overlaps %d calls %d", shims[0].Overlaps.Load(), shims[0].Calls.Load())
	}
}

func TestConcurrentInvocationsNeverOverlap(t *testing.T) {
	r := testrig.New(testrig.Options{WaitDeadline: 5 * time.Second})
	defer r.Close()
	r.Function("f", -1, 0)
	shims := r.Environments("f", "$LATEST", 3)
	var wg sync.WaitGroup
	for i := 0; i < 30; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if a := call(t, r.URL(), invPath("f"), `{"sleep_ms":5}`, nil); a.status != 200 {
				t.Errorf("%+v", a)
			}
		}()
	}
	wg.Wait()
	for _, s := range shims {
		if s.Overlaps.Load() != 0 {
			t.Fatal("an environment got two invocations at once")
		}
	}
}

func TestAuthorization(t *testing.T) {
	r := testrig.New(testrig.Options{Auth: testrig.Tokens{"good": "system:serviceaccount:default:caller", "nope": "denied"}})
	defer r.Close()
	r.Function("f", -1, 0)
	r.Environments("f", "$LATEST", 1)
	wantError(t, call(t, r.URL(), invPath("f"), `{}`, nil), 403, "MissingAuthenticationTokenException", "Missing Authentication Token")
	wantError(t, call(t, r.URL(), invPath("f"), `{}`, map[string]string{"Authorization": "Bearer bad"}), 403, "UnrecognizedClientException", "security token")
	wantError(t, call(t, r.URL(), invPath("f"), `{}`, map[string]string{"X-Amz-Security-Token": "nope"}), 403, "AccessDeniedException",
		"User: denied is not authorized to perform: lambda:InvokeFunction on resource: arn:aws:lambda:us-east-1:000000000000:function:f")
	wantError(t, call(t, r.URL(), invPath("f"), `{}`, map[string]string{"X-Amz-Security-Token": "nope", "X-Amz-Invocation-Type": "DryRun"}), 403, "AccessDeniedException", "not authorized")
	if a := call(t, r.URL(), invPath("f"), `{}`, map[string]string{"Authorization": "Bearer good"}); a.status != 200 {
		t.Fatalf("%+v", a)
	}
	sigv4 := map[string]string{
		"Authorization":        "AWS4-HMAC-SHA256 Credential=klambda/20260101/us-east-1/lambda/aws4_request, SignedHeaders=host, Signature=00",
		"X-Amz-Security-Token": "good",
	}
	if a := call(t, r.URL(), invPath("f"), `{}`, sigv4); a.status != 200 {
		t.Fatalf("%+v", a)
	}
	if a := call(t, r.URL(), invPath("f"), `{}`, map[string]string{"X-Amz-Security-Token": "good", "X-Amz-Invocation-Type": "DryRun"}); a.status != 204 {
		t.Fatalf("%+v", a)
	}
}

func keyOf(fn, v string) fnkey.Key {
	return fnkey.Key{Namespace: testrig.Namespace, Function: fn, Version: v}
}

type fakeQueue struct {
	mu     sync.Mutex
	events []invoke.AsyncEvent
}

func (q *fakeQueue) Enqueue(_ context.Context, ev invoke.AsyncEvent) (string, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	ev.Payload = append([]byte(nil), ev.Payload...)
	q.events = append(q.events, ev)
	return "req-1", nil
}

func TestEventInvocationIsQueued(t *testing.T) {
	r := testrig.New(testrig.Options{})
	defer r.Close()
	q := &fakeQueue{}
	r.Core.Async = q
	r.Function("f", -1, 0)
	shims := r.Environments("f", "$LATEST", 1)
	a := call(t, r.URL(), invPath("f:$LATEST"), `{"x":1}`, map[string]string{"X-Amz-Invocation-Type": "Event"})
	if a.status != 202 || a.header.Get("X-Amzn-RequestId") != "req-1" || len(q.events) != 1 || string(q.events[0].Payload) != `{"x":1}` || q.events[0].Qualifier != "$LATEST" {
		t.Fatalf("%+v %+v", a, q.events)
	}
	wantError(t, call(t, r.URL(), invPath("f"), `"`+strings.Repeat("x", 300<<10)+`"`, map[string]string{"X-Amz-Invocation-Type": "Event"}),
		413, "RequestTooLargeException", "262144 bytes")
	wantError(t, call(t, r.URL(), invPath("nope"), `{}`, map[string]string{"X-Amz-Invocation-Type": "Event"}), 404, "ResourceNotFoundException", "nope")
	// No header lets a caller of the Invoke API choose the request id (the async
	// workers give theirs to the core: Input.RequestID).
	a = call(t, r.URL(), invPath("f"), `{}`, map[string]string{"X-Klambda-Async-Request-Id": "evt-42"})
	if a.status != 200 || a.header.Get("X-Amzn-RequestId") == "evt-42" || a.header.Get("X-Amzn-RequestId") == "" {
		t.Fatalf("%+v", a)
	}
	if got := shims[0].LastHeader.Get("X-Amzn-Requestid"); got != a.header.Get("X-Amzn-RequestId") {
		t.Fatalf("shim saw request id %q, the caller %q", got, a.header.Get("X-Amzn-RequestId"))
	}
}
