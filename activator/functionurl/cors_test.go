package functionurl

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/klambda/klambda/activator/invoke"
	"github.com/klambda/klambda/activator/testrig"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

func ptr[T any](v T) *T { return &v }

// Function errors (a timeout included) → 502; throttles → 429; an unreadable response
// object → 502 "Internal Server Error"; the function's own status, headers and cookies
// otherwise; a method Lambda refuses → 400 without invoking.
func TestURLResults(t *testing.T) {
	inv := &fakeInvoker{}
	x := newRigURL(t, testrig.Options{}, inv)
	f := function("f", &lambdav1alpha1.FunctionURLConfig{AuthType: lambdav1alpha1.FunctionURLAuthNone})
	x.table.SetFunction(f)
	u := urlOf(x.srv.URL, f)
	for _, c := range []struct {
		name      string
		fn        func(*invoke.Input) (*invoke.Output, error)
		status    int
		body      string
		setCookie string
	}{
		{"function error", result(`{"errorMessage":"boom"}`, "Unhandled"), 502, MsgInternalServerError, ""},
		{"timeout", result(`{"errorMessage":"Task timed out after 3.00 seconds"}`, "Unhandled"), 502, MsgInternalServerError, ""},
		{"invalid response object", result(`{"statusCode":"x"}`, ""), 502, MsgInternalServerError, ""},
		{"custom", result(`{"statusCode":418,"body":"teapot","cookies":["a=b"]}`, ""), 418, "teapot", "a=b"},
		{"throttle", throttle, 429, `{"Message":"Rate Exceeded."}`, ""},
	} {
		inv.fn = c.fn
		resp, b := do(t, mustReq(http.MethodGet, u, ""))
		if resp.StatusCode != c.status || string(b) != c.body || resp.Header.Get("Set-Cookie") != c.setCookie {
			t.Errorf("%s: %d %q %q", c.name, resp.StatusCode, b, resp.Header.Get("Set-Cookie"))
		}
	}
	n := inv.calls.Load()
	resp, _ := do(t, mustReq("TRACE", u, ""))
	if resp.StatusCode != 400 || inv.calls.Load() != n {
		t.Errorf("TRACE: %d, invoked %d", resp.StatusCode, inv.calls.Load()-n)
	}
}

// authType KUBERNETES/AWS_IAM: the Invoke API's check (no token, a bad token, a token
// without invoke → 403 Forbidden, not invoked); an allowed caller's name in
// requestContext.authorizer.iam; the token is not passed to the function.
func TestURLAuth(t *testing.T) {
	inv := &fakeInvoker{fn: result(`"ok"`, "")}
	x := newRigURL(t, testrig.Options{Auth: testrig.Tokens{"good": "alice", "bad-user": "denied"}}, inv)
	for _, at := range []lambdav1alpha1.FunctionURLAuthType{lambdav1alpha1.FunctionURLAuthKubernetes, lambdav1alpha1.FunctionURLAuthAWSIAM} {
		f := function("f"+strings.ToLower(string(at[:1])), &lambdav1alpha1.FunctionURLConfig{AuthType: at})
		x.table.SetFunction(f)
		u := urlOf(x.srv.URL, f)
		n := inv.calls.Load()
		for _, tok := range []string{"", "made-up", "bad-user"} {
			r := mustReq(http.MethodGet, u, "")
			if tok != "" {
				r.Header.Set("Authorization", "Bearer "+tok)
			}
			resp, b := do(t, r)
			if resp.StatusCode != 403 || string(b) != `{"Message":"Forbidden"}` {
				t.Errorf("%s token %q: %d %s", at, tok, resp.StatusCode, b)
			}
		}
		if inv.calls.Load() != n {
			t.Errorf("%s: refused callers invoked", at)
		}
		r := mustReq(http.MethodGet, u, "")
		r.Header.Set("X-Amz-Security-Token", "good") // SigV4 clients' session token
		r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=klambda/20260101/us-east-1/lambda/aws4_request, SignedHeaders=host, Signature=00")
		resp, b := do(t, r)
		if resp.StatusCode != 200 || string(b) != `"ok"` {
			t.Fatalf("%s allowed: %d %s", at, resp.StatusCode, b)
		}
		var ev Event
		if err := json.Unmarshal(inv.last.Payload, &ev); err != nil {
			t.Fatal(err)
		}
		iam := ev.RequestContext.Authorizer
		if iam == nil || iam.IAM.UserID != "alice" || iam.IAM.AccessKey != "klambda" || ev.Headers["authorization"] != "" || ev.Headers["x-amz-security-token"] != "" {
			t.Errorf("%s: event %s", at, inv.last.Payload)
		}
	}
	// NONE: anyone.
	f := function("open", &lambdav1alpha1.FunctionURLConfig{AuthType: lambdav1alpha1.FunctionURLAuthNone})
	x.table.SetFunction(f)
	if resp, b := do(t, mustReq(http.MethodGet, urlOf(x.srv.URL, f), "")); resp.StatusCode != 200 {
		t.Errorf("NONE: %d %s", resp.StatusCode, b)
	}
}

// CORS in front of the function: a preflight is answered without invoking (allowed
// origin: the configured headers; other origin: none); answers carry the configured
// headers in place of the function's own; credentials and wildcards.
func TestURLCORS(t *testing.T) {
	inv := &fakeInvoker{fn: result(`{"statusCode":200,"headers":{"Access-Control-Allow-Origin":"https://evil.example","Access-Control-Expose-Headers":"x-fn"},"body":"hi"}`, "")}
	x := newRigURL(t, testrig.Options{}, inv)
	f := function("c", &lambdav1alpha1.FunctionURLConfig{AuthType: lambdav1alpha1.FunctionURLAuthNone, Cors: &lambdav1alpha1.Cors{
		AllowOrigins: []string{"https://app.example"}, AllowMethods: []string{"GET", "POST"},
		AllowHeaders: []string{"X-Custom", "Content-Type"}, ExposeHeaders: []string{"X-Out"},
		AllowCredentials: true, MaxAge: ptr(int32(300))}})
	x.table.SetFunction(f)
	u := urlOf(x.srv.URL, f)

	pre := func(origin string) *http.Response {
		r := mustReq(http.MethodOptions, u, "")
		r.Header.Set("Origin", origin)
		r.Header.Set("Access-Control-Request-Method", "POST")
		r.Header.Set("Access-Control-Request-Headers", "x-custom")
		resp, _ := do(t, r)
		return resp
	}
	resp := pre("https://app.example")
	h := resp.Header
	if resp.StatusCode != 200 || h.Get("Access-Control-Allow-Origin") != "https://app.example" ||
		h.Get("Access-Control-Allow-Methods") != "GET,POST" || h.Get("Access-Control-Allow-Headers") != "X-Custom,Content-Type" ||
		h.Get("Access-Control-Allow-Credentials") != "true" || h.Get("Access-Control-Max-Age") != "300" {
		t.Errorf("allowed preflight: %d %v", resp.StatusCode, h)
	}
	resp = pre("https://other.example")
	if resp.Header.Get("Access-Control-Allow-Origin") != "" || resp.Header.Get("Access-Control-Allow-Methods") != "" {
		t.Errorf("disallowed preflight: %v", resp.Header)
	}
	if n := inv.calls.Load(); n != 0 {
		t.Errorf("preflights invoked the function %d times", n)
	}

	r := mustReq(http.MethodGet, u, "")
	r.Header.Set("Origin", "https://app.example")
	resp, b := do(t, r)
	h = resp.Header
	if string(b) != "hi" || h.Get("Access-Control-Allow-Origin") != "https://app.example" ||
		h.Get("Access-Control-Expose-Headers") != "X-Out" || h.Get("Access-Control-Allow-Credentials") != "true" {
		t.Errorf("answer to an allowed origin: %v", h)
	}
	r = mustReq(http.MethodGet, u, "")
	r.Header.Set("Origin", "https://evil.example")
	resp, _ = do(t, r)
	if resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("the function's own CORS header reached another origin: %v", resp.Header)
	}

	// Wildcards: * without credentials; an OPTIONS that is not a preflight, or on a URL
	// without CORS, reaches the function.
	c := NewCORS(&lambdav1alpha1.Cors{AllowOrigins: []string{"*"}, AllowMethods: []string{"*"}})
	if c.allowOrigin("https://x") != "*" {
		t.Error("* origin")
	}
	c = NewCORS(&lambdav1alpha1.Cors{AllowOrigins: []string{"*"}, AllowCredentials: true})
	if c.allowOrigin("https://x") != "https://x" {
		t.Error("* origin with credentials must echo the origin")
	}
	g := function("nocors", &lambdav1alpha1.FunctionURLConfig{AuthType: lambdav1alpha1.FunctionURLAuthNone})
	x.table.SetFunction(g)
	n := inv.calls.Load()
	r = mustReq(http.MethodOptions, urlOf(x.srv.URL, g), "")
	r.Header.Set("Origin", "https://app.example")
	r.Header.Set("Access-Control-Request-Method", "POST")
	do(t, r)
	if inv.calls.Load() != n+1 {
		t.Error("OPTIONS on a URL without CORS did not reach the function")
	}
}

func throttle(*invoke.Input) (*invoke.Output, error) {
	return nil, invoke.ErrThrottled("ReservedFunctionConcurrentInvocationLimitExceeded")
}
