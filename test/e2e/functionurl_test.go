//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/activator/functionurl"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// curlURL runs the curl binary; it answers the status, the response headers (lower-cased
// names) and the body.
func curlURL(t *testing.T, args ...string) (int, map[string]string, []byte) {
	t.Helper()
	dir := t.TempDir()
	hf, bf := filepath.Join(dir, "h"), filepath.Join(dir, "b")
	out, err := exec.Command("curl", append([]string{"-sS", "--max-time", "60", "-D", hf, "-o", bf, "-w", "%{http_code}"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("curl %v: %v: %s", args, err, out)
	}
	var status int
	fmt.Sscanf(string(out), "%d", &status)
	hb, _ := os.ReadFile(hf)
	h := map[string]string{}
	for _, l := range strings.Split(string(hb), "\r\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			h[strings.ToLower(k)] = strings.TrimSpace(v)
		}
	}
	body, _ := os.ReadFile(bf)
	return status, h, body
}

// urlOf waits for status.functionUrl and answers it on the activator Service's address
// (the status names the in-cluster DNS name; the test reaches the ClusterIP).
func urlOf(ctx context.Context, t *testing.T, obj client.Object, get func() string) string {
	t.Helper()
	var u string
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		if err := cluster.Client.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
			return false, nil
		}
		u = get()
		return u != "", nil
	})
	if err != nil {
		t.Fatalf("status.functionUrl of %s never set", obj.GetName())
	}
	p, err := url.Parse(u)
	if err != nil || !strings.HasPrefix(p.Path, "/lambda-url/") {
		t.Fatalf("status.functionUrl %q: not a path-based URL (%v)", u, err)
	}
	base, err := cluster.ActivatorServiceURL(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return base + p.Path
}

// probeEvent is the probe function's answer: the version that ran and the event.
type probeEvent struct {
	Version string            `json:"version"`
	Event   functionurl.Event `json:"event"`
}

// TestFunctionURLCurl: curl against function URLs on the local cluster, the function
// echoing its event: NONE (GET with query and cookies; POST binary), AWS_IAM (no token
// 403, a token allowed to invoke 200 with the caller in authorizer.iam), field by field.
func TestFunctionURLCurl(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	ns := cluster.Namespace(t)
	fn := probeFunction(ctx, t, ns, "urlfn", func(f *lambdav1alpha1.Function) {
		f.Spec.FunctionURLConfig = &lambdav1alpha1.FunctionURLConfig{AuthType: lambdav1alpha1.FunctionURLAuthNone}
	})
	u := urlOf(ctx, t, fn, func() string { return fn.Status.FunctionURL })

	status, h, body := curlURL(t, u+"a/b?x=1&x=2&y=z", "-H", "Cookie: c1=v1; c2=v2", "-H", "X-Multi: one", "-H", "X-Multi: two", "-A", "klambda-e2e")
	var got probeEvent
	if status != 200 || h["content-type"] != "application/json" || json.Unmarshal(body, &got) != nil {
		t.Fatalf("GET: %d %v %s", status, h, body)
	}
	ev := got.Event
	id := ev.RequestContext.APIID
	for what, ok := range map[string]bool{
		"version 2.0":           ev.Version == "2.0",
		"routeKey $default":     ev.RouteKey == "$default" && ev.RequestContext.RouteKey == "$default" && ev.RequestContext.Stage == "$default",
		"rawPath":               ev.RawPath == "/a/b" && ev.RequestContext.HTTP.Path == "/a/b",
		"rawQueryString":        ev.RawQueryString == "x=1&x=2&y=z",
		"queryStringParameters": ev.QueryStringParameters["x"] == "1,2" && ev.QueryStringParameters["y"] == "z",
		"cookies":               strings.Join(ev.Cookies, ";") == "c1=v1;c2=v2" && ev.Headers["cookie"] == "",
		"headers joined":        ev.Headers["x-multi"] == "one,two",
		"userAgent":             ev.RequestContext.HTTP.UserAgent == "klambda-e2e" && ev.Headers["user-agent"] == "klambda-e2e",
		"method GET":            ev.RequestContext.HTTP.Method == "GET" && ev.RequestContext.HTTP.Protocol == "HTTP/1.1",
		"apiId = domainPrefix":  len(id) == 32 && ev.RequestContext.DomainPrefix == id && strings.Contains(u, "/lambda-url/"+id+"/"),
		"requestId":             ev.RequestContext.RequestID != "" && ev.RequestContext.RequestID == h["x-amzn-requestid"],
		"time":                  ev.RequestContext.TimeEpoch > time.Now().Add(-time.Minute).UnixMilli() && ev.RequestContext.Time != "",
		"no authorizer":         ev.RequestContext.Authorizer == nil,
		"sourceIp":              ev.RequestContext.HTTP.SourceIP != "",
		"no body":               ev.Body == "" && !ev.IsBase64Encoded,
		"$LATEST ran":           got.Version == "$LATEST",
	} {
		if !ok {
			t.Errorf("GET event: %s wrong: %s", what, body)
		}
	}

	bin := []byte{0, 1, 2, 0xff, 0xfe, 'x'}
	f := filepath.Join(t.TempDir(), "bin")
	if err := os.WriteFile(f, bin, 0o644); err != nil {
		t.Fatal(err)
	}
	status, _, body = curlURL(t, u+"upload", "-X", "POST", "-H", "Content-Type: application/octet-stream", "--data-binary", "@"+f)
	got = probeEvent{}
	if status != 200 || json.Unmarshal(body, &got) != nil {
		t.Fatalf("POST: %d %s", status, body)
	}
	dec, _ := base64.StdEncoding.DecodeString(got.Event.Body)
	if !got.Event.IsBase64Encoded || !bytes.Equal(dec, bin) || got.Event.RequestContext.HTTP.Method != "POST" || got.Event.RawPath != "/upload" {
		t.Errorf("POST binary event: %s", body)
	}

	// KUBERNETES (AWS_IAM is the same check; Helm does not upgrade the CRDs of an
	// existing local cluster, whose CRD may predate AWS_IAM): the Invoke API's authorization.
	iam := probeFunction(ctx, t, ns, "urliam", func(f *lambdav1alpha1.Function) {
		f.Spec.FunctionURLConfig = &lambdav1alpha1.FunctionURLConfig{AuthType: lambdav1alpha1.FunctionURLAuthKubernetes}
	})
	ui := urlOf(ctx, t, iam, func() string { return iam.Status.FunctionURL })
	if status, _, body := curlURL(t, ui); status != 403 || string(body) != `{"Message":"Forbidden"}` {
		t.Errorf("AWS_IAM without a token: %d %s", status, body)
	}
	token := cluster.InvokerToken(ctx, t, ns)
	status, _, body = curlURL(t, ui+"?who=me", "-H", "Authorization: Bearer "+token)
	got = probeEvent{}
	if status != 200 || json.Unmarshal(body, &got) != nil {
		t.Fatalf("AWS_IAM with a token: %d %s", status, body)
	}
	a := got.Event.RequestContext.Authorizer
	if a == nil || !strings.Contains(a.IAM.UserID, Invoker) || got.Event.Headers["authorization"] != "" {
		t.Errorf("AWS_IAM event: %s", body)
	}
}
