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

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

	// AWS_IAM (Lambda's name; KUBERNETES is the same check): the Invoke API's
	// authorization. (hack/cluster/install.sh applies the chart's CRDs, which Helm does not
	// upgrade, so the local cluster's CRD knows AWS_IAM.)
	iam := probeFunction(ctx, t, ns, "urliam", func(f *lambdav1alpha1.Function) {
		f.Spec.FunctionURLConfig = &lambdav1alpha1.FunctionURLConfig{AuthType: lambdav1alpha1.FunctionURLAuthAWSIAM}
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

// TestFunctionURLAlias: an Alias's URL routes by the alias's weights (versions 1 and 2,
// {"2": 0.5}: both run over 40 calls; each answer's version is one of the alias's).
func TestFunctionURLAlias(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	ns := cluster.Namespace(t)
	fn := probeFunction(ctx, t, ns, "urlalias", nil)
	for i, name := range []string{"urlalias-1", "urlalias-2"} {
		if i == 1 { // a configuration change, so that version 2 is published
			if err := cluster.Client.Get(ctx, client.ObjectKeyFromObject(fn), fn); err != nil {
				t.Fatal(err)
			}
			// Not the description: Lambda (and klambda) publish no version for a
			// description change alone, so version 2 would never exist.
			fn.Spec.Environment = &lambdav1alpha1.Environment{Variables: []lambdav1alpha1.EnvVar{{Name: "URL_ALIAS_VERSION", Value: "two"}}}
			if err := cluster.Client.Update(ctx, fn); err != nil {
				t.Fatal(err)
			}
		}
		err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
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
		if err != nil {
			t.Fatalf("version %s: %v", name, err)
		}
	}
	alias := &lambdav1alpha1.Alias{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "live"}, Spec: lambdav1alpha1.AliasSpec{
		FunctionName: fn.Name, FunctionVersion: "1",
		RoutingConfig:     &lambdav1alpha1.AliasRoutingConfiguration{AdditionalVersionWeights: map[string]float64{"2": 0.5}},
		FunctionURLConfig: &lambdav1alpha1.FunctionURLConfig{AuthType: lambdav1alpha1.FunctionURLAuthNone},
	}}
	if err := cluster.Client.Create(ctx, alias); err != nil {
		t.Fatal(err)
	}
	// The router serves an alias once the controller has validated it (status.functionVersion).
	u := urlOf(ctx, t, alias, func() string {
		if alias.Status.FunctionVersion == "" {
			return ""
		}
		return alias.Status.FunctionURL
	})
	time.Sleep(2 * time.Second) // the activator's informer sees the validated status
	seen := map[string]int{}
	for i := 0; i < 40; i++ {
		status, h, body := curlURL(t, u)
		var got probeEvent
		if status != 200 || json.Unmarshal(body, &got) != nil {
			t.Fatalf("call %d: %d %v %s", i, status, h, body)
		}
		seen[got.Version]++
	}
	if len(seen) != 2 || seen["1"] == 0 || seen["2"] == 0 {
		t.Errorf("versions that ran through the alias URL: %v (want both 1 and 2)", seen)
	}
}
