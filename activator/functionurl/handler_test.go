package functionurl

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/klambda/klambda/activator/invoke"
	"github.com/klambda/klambda/activator/testrig"
	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// fakeInvoker answers every invocation with fn.
type fakeInvoker struct {
	calls atomic.Int64
	last  *invoke.Input
	fn    func(in *invoke.Input) (*invoke.Output, error)
}

func (f *fakeInvoker) Invoke(_ context.Context, in *invoke.Input) (*invoke.Output, error) {
	f.calls.Add(1)
	cp := *in
	cp.Payload = bytes.Clone(in.Payload)
	f.last = &cp
	return f.fn(in)
}

func result(body string, fnErr string) func(*invoke.Input) (*invoke.Output, error) {
	return func(in *invoke.Input) (*invoke.Output, error) {
		return &invoke.Output{StatusCode: 200, RequestID: in.RequestID, FunctionError: fnErr,
			ContentLength: int64(len(body)), Body: io.NopCloser(strings.NewReader(body))}, nil
	}
}

func function(name string, c *lambdav1alpha1.FunctionURLConfig) *lambdav1alpha1.Function {
	f := &lambdav1alpha1.Function{ObjectMeta: metav1.ObjectMeta{Namespace: testrig.Namespace, Name: name, UID: types.UID("uid-" + name)}}
	f.Spec.FunctionURLConfig = c
	return f
}

// urlOf is the path-based URL of f's URL on base.
func urlOf(base string, f *lambdav1alpha1.Function) string {
	return base + contract.FunctionURLPathPrefix + contract.FunctionURLID(string(f.UID), f.Namespace, f.Name, "") + "/"
}

type rigURL struct {
	rig   *testrig.Rig
	table *Table
	h     *Handler
	srv   *testrig.Server
}

// newRigURL: function URLs over an in-process activator (real core, fake shims that echo
// their payload), on the Invoke API's listener.
func newRigURL(t *testing.T, o testrig.Options, inv invoke.Invoker) *rigURL {
	rig := testrig.New(o)
	x := &rigURL{rig: rig, table: NewTable()}
	if inv == nil {
		inv = rig.Core
	}
	x.h = &Handler{Table: x.table, API: rig.Handler, Invoker: inv, AccountID: rig.Core.AccountID, Domain: "example.com"}
	x.srv = testrig.NewServer(x.h.Wrap(rig.Handler))
	t.Cleanup(func() { x.srv.Close(); rig.Close() })
	return x
}

func do(t *testing.T, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, b
}

// Through the real core: a GET with query and cookies reaches the (echoing) function as
// the event; the answer is the event itself (no statusCode: 200, application/json).
func TestURLThroughCore(t *testing.T) {
	x := newRigURL(t, testrig.Options{}, nil)
	x.rig.Function("echo", -1, 0)
	x.rig.Environments("echo", "$LATEST", 1)
	f := function("echo", &lambdav1alpha1.FunctionURLConfig{AuthType: lambdav1alpha1.FunctionURLAuthNone})
	x.table.SetFunction(f)

	req, _ := http.NewRequest(http.MethodGet, urlOf(x.srv.URL, f)+"a/b?x=1&x=2&y=", nil)
	req.Header.Add("Cookie", "c1=v1; c2=v2")
	req.Header.Add("X-Multi", "one")
	req.Header.Add("X-Multi", "two")
	resp, b := do(t, req)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	var ev Event
	if err := json.Unmarshal(b, &ev); err != nil {
		t.Fatal(err)
	}
	id := contract.FunctionURLID(string(f.UID), f.Namespace, f.Name, "")
	if ev.RawPath != "/a/b" || ev.RawQueryString != "x=1&x=2&y=" || ev.QueryStringParameters["x"] != "1,2" ||
		strings.Join(ev.Cookies, ";") != "c1=v1;c2=v2" || ev.Headers["x-multi"] != "one,two" ||
		ev.RequestContext.APIID != id || ev.RequestContext.Authorizer != nil ||
		ev.RequestContext.RequestID != resp.Header.Get(contract.HeaderRequestID) || ev.RequestContext.HTTP.Method != "GET" {
		t.Errorf("event: %s", b)
	}

	// Host-based: <url-id>.lambda-url.<domain>.
	req, _ = http.NewRequest(http.MethodPost, x.srv.URL+"/p", strings.NewReader("\x00\x01"))
	req.Host = id + ".lambda-url.example.com"
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, b = do(t, req)
	if err := json.Unmarshal(b, &ev); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	if ev.RawPath != "/p" || !ev.IsBase64Encoded || ev.Body != "AAE=" || ev.RequestContext.DomainName != id+".lambda-url.example.com" {
		t.Errorf("event: %s", b)
	}

	// The Invoke API still answers on the same listener.
	resp, b = do(t, mustReq(http.MethodPost, x.srv.URL+"/2015-03-31/functions/echo/invocations", `{"k":1}`))
	if resp.StatusCode != 200 || string(b) != `{"k":1}` {
		t.Errorf("Invoke API: %d %s", resp.StatusCode, b)
	}
	// An unknown url-id: 404; a removed config: 404.
	resp, _ = do(t, mustReq(http.MethodGet, x.srv.URL+"/lambda-url/nosuchid/", ""))
	if resp.StatusCode != 404 {
		t.Errorf("unknown url-id: %d", resp.StatusCode)
	}
	x.table.SetFunction(function("echo", nil))
	resp, _ = do(t, mustReq(http.MethodGet, urlOf(x.srv.URL, f), ""))
	if resp.StatusCode != 404 {
		t.Errorf("removed URL: %d", resp.StatusCode)
	}
}

func mustReq(method, url, body string) *http.Request {
	r, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		panic(err)
	}
	return r
}

// The Invoke API's limits apply: reserved concurrency 0 → 429; a body over 6 MB → 413;
// the activator's request-byte budget → 429; none of them invokes.
func TestURLLimits(t *testing.T) {
	x := newRigURL(t, testrig.Options{}, nil)
	x.rig.Function("zero", 0, 0)
	shims := x.rig.Environments("zero", "$LATEST", 1)
	f := function("zero", &lambdav1alpha1.FunctionURLConfig{AuthType: lambdav1alpha1.FunctionURLAuthNone})
	x.table.SetFunction(f)
	resp, b := do(t, mustReq(http.MethodGet, urlOf(x.srv.URL, f), ""))
	if resp.StatusCode != 429 {
		t.Errorf("reserved 0: %d %s", resp.StatusCode, b)
	}
	x.rig.Function("big", -1, 0)
	x.rig.Environments("big", "$LATEST", 1)
	fb := function("big", &lambdav1alpha1.FunctionURLConfig{AuthType: lambdav1alpha1.FunctionURLAuthNone})
	x.table.SetFunction(fb)
	resp, b = do(t, mustReq(http.MethodPost, urlOf(x.srv.URL, fb), strings.Repeat("a", contract.MaxSyncPayload+1)))
	if resp.StatusCode != 413 {
		t.Errorf("6 MB + 1: %d %s", resp.StatusCode, b)
	}
	adm, err := invoke.NewAdmission(contract.MaxSyncPayload, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	x.rig.UseAdmission(adm)
	// One request holds the whole budget (its 6 MB body trickles in); the next is refused.
	pr, pw := io.Pipe()
	hold, _ := http.NewRequest(http.MethodPost, urlOf(x.srv.URL, fb), pr)
	hold.ContentLength = contract.MaxSyncPayload
	done := make(chan struct{})
	go func() {
		defer close(done)
		if resp, err := http.DefaultClient.Do(hold); err == nil {
			resp.Body.Close()
		}
	}()
	_, _ = pw.Write([]byte("x"))
	for adm.Held() == 0 {
		time.Sleep(time.Millisecond)
	}
	resp, b = do(t, mustReq(http.MethodPost, urlOf(x.srv.URL, fb), "x"))
	if resp.StatusCode != 429 {
		t.Errorf("over the request-byte budget: %d %s", resp.StatusCode, b)
	}
	_ = pw.CloseWithError(io.ErrUnexpectedEOF)
	<-done
	if n := shims[0].Calls.Load(); n != 0 {
		t.Errorf("refused requests invoked %d times", n)
	}
}

// A starting activator whose table has not been given the informers' first list yet does
// not answer 404 for a URL that exists: it waits for the sync, then serves it; past the
// wait deadline it answers a retryable 500 ServiceException; once synced, an unknown
// url-id is 404 at once.
func TestURLWaitsForTheTableToSync(t *testing.T) {
	x := newRigURL(t, testrig.Options{}, nil)
	synced := make(chan struct{})
	x.h.Synced, x.h.WaitDeadline = synced, 300*time.Millisecond
	f := function("echo", &lambdav1alpha1.FunctionURLConfig{AuthType: lambdav1alpha1.FunctionURLAuthNone})

	// Not synced, and the deadline passes: 500 ServiceException, never 404.
	start := time.Now()
	resp, b := do(t, mustRequest(t, http.MethodGet, urlOf(x.srv.URL, f)))
	if resp.StatusCode != http.StatusInternalServerError || resp.Header.Get(contract.HeaderErrorType) != "ServiceException" {
		t.Fatalf("before the sync, past the deadline: %d %s %s; want 500 ServiceException", resp.StatusCode, resp.Header.Get(contract.HeaderErrorType), b)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Fatalf("answered after %v, before the wait deadline", d)
	}

	// Not synced: the request waits; the first list arrives and the sync is declared.
	x.h.WaitDeadline = 10 * time.Second
	got := make(chan int, 1)
	go func() {
		resp, err := http.DefaultClient.Do(mustRequest(t, http.MethodGet, urlOf(x.srv.URL, f)))
		if err != nil {
			got <- -1
			return
		}
		_ = resp.Body.Close()
		got <- resp.StatusCode
	}()
	select {
	case code := <-got:
		t.Fatalf("answered %d before the table was synced", code)
	case <-time.After(200 * time.Millisecond):
	}
	x.rig.Function("echo", -1, 0)
	x.rig.Environments("echo", "$LATEST", 1)
	x.table.SetFunction(f)
	close(synced)
	if code := <-got; code != http.StatusOK {
		t.Fatalf("after the sync: %d; want 200", code)
	}

	// Synced: an unknown url-id is 404 at once.
	start = time.Now()
	resp, _ = do(t, mustRequest(t, http.MethodGet, urlOf(x.srv.URL, function("nope", nil))))
	if resp.StatusCode != http.StatusNotFound || time.Since(start) > 2*time.Second {
		t.Fatalf("unknown url-id after the sync: %d after %v; want 404 at once", resp.StatusCode, time.Since(start))
	}
}

func mustRequest(t *testing.T, method, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}
