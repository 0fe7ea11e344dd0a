// Package browser drives a real browser (Debian's chromium, through chromedp) against
// klambda's function URLs served in-process (activator/testrig: the real invoke core,
// fake environments that echo their event).
package browser

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/klambda/klambda/activator/functionurl"
	"github.com/klambda/klambda/activator/testrig"
	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// page runs three fetches to function URLs on another origin and writes what the page
// could read: a POST with a custom header (preflighted), then credentialed GETs to a URL
// with allowCredentials and to one without.
const page = `<!doctype html><html><body>running<script>
const p = new URLSearchParams(location.search);
async function one(u, opts) {
  try { const r = await fetch(u, opts); const t = await r.text(); return 'OK ' + r.status + ' ' + JSON.parse(t).requestContext.http.method; }
  catch (e) { return 'ERR ' + e; }
}
(async () => {
  const out = [];
  out.push(await one(p.get('u'), {method: 'POST', headers: {'X-Custom': '1', 'Content-Type': 'application/json'}, body: '{"a":1}'}));
  out.push(await one(p.get('c'), {credentials: 'include'}));
  out.push(await one(p.get('n'), {credentials: 'include'}));
  document.body.innerText = out.join('|') + '|DONE';
})();
</script></body></html>`

func TestBrowserCORS(t *testing.T) {
	if _, err := exec.LookPath("chromium"); err != nil {
		t.Skip("no chromium on PATH (apt-get install -y chromium; .ci/run installs it)")
	}
	rig := testrig.New(testrig.Options{WaitDeadline: 5 * time.Second})
	defer rig.Close()
	table := functionurl.NewTable()
	urls := &functionurl.Handler{Table: table, API: rig.Handler, Invoker: rig.Core, AccountID: rig.Core.AccountID}
	var preflights atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if functionurl.IsPreflight(r) {
			preflights.Add(1)
		}
		urls.Wrap(rig.Handler).ServeHTTP(w, r)
	}))
	defer srv.Close()

	pageSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte(page))
	}))
	defer pageSrv.Close()
	allowed := pageSrv.URL                                             // http://127.0.0.1:P
	other := strings.Replace(pageSrv.URL, "127.0.0.1", "localhost", 1) // another origin, same server

	mk := func(name string, creds bool) string {
		rig.Function(name, -1, 0)
		rig.Environments(name, contract.Latest, 1)
		f := &lambdav1alpha1.Function{ObjectMeta: metav1.ObjectMeta{Namespace: testrig.Namespace, Name: name, UID: types.UID("uid-" + name)}}
		f.Spec.FunctionURLConfig = &lambdav1alpha1.FunctionURLConfig{AuthType: lambdav1alpha1.FunctionURLAuthNone,
			Cors: &lambdav1alpha1.Cors{AllowOrigins: []string{allowed}, AllowMethods: []string{"GET", "POST"},
				AllowHeaders: []string{"X-Custom", "Content-Type"}, AllowCredentials: creds}}
		table.SetFunction(f)
		return srv.URL + contract.FunctionURLPathPrefix + contract.FunctionURLID(string(f.UID), f.Namespace, f.Name, "") + "/x"
	}
	uPost := mk("post", false)
	uCred := mk("cred", true)
	uNoCred := mk("nocred", false)
	calls := func() int64 {
		var n int64
		for _, ss := range rig.Shims {
			for _, s := range ss {
				n += s.Calls.Load()
			}
		}
		return n
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.NoSandbox, chromedp.DisableGPU)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelA()
	run := func(origin string) string {
		t.Helper()
		ctx, cancel := chromedp.NewContext(actx)
		defer cancel()
		q := url.Values{"u": {uPost}, "c": {uCred}, "n": {uNoCred}}
		if err := chromedp.Do(ctx, chromedp.Navigate(origin+"/?"+q.Encode())); err != nil {
			t.Fatal(err)
		}
		tctx, c := context.WithTimeout(ctx, 30*time.Second)
		defer c()
		text, err := chromedp.Run(tctx, chromedp.Poll[string](`document.body.innerText.endsWith('DONE') && document.body.innerText`))
		if err != nil {
			t.Fatal(err)
		}
		return text
	}

	// The allowed origin: the preflighted POST and the credentialed GET with
	// allowCredentials succeed; the credentialed GET without it is blocked by the browser.
	got := run(allowed)
	parts := strings.Split(got, "|")
	if len(parts) != 4 || parts[0] != "OK 200 POST" || parts[1] != "OK 200 GET" || !strings.HasPrefix(parts[2], "ERR TypeError") {
		t.Errorf("allowed origin %s: %q", allowed, got)
	}
	// One preflight (the POST) answered by the URL, and the function ran only for the
	// real requests: POST, credentialed GET, and the GET the browser sent but whose
	// answer it refused to the page (a simple request is sent; its reading is blocked).
	if p, c := preflights.Load(), calls(); p != 1 || c != 3 {
		t.Errorf("allowed origin: %d preflights, %d invocations; want 1 and 3", p, c)
	}

	// Another origin: the preflight has no CORS headers, so the browser never sends the
	// POST (no invocation); the simple GETs are sent but unreadable.
	before := calls()
	got = run(other)
	parts = strings.Split(got, "|")
	if len(parts) != 4 || !strings.HasPrefix(parts[0], "ERR TypeError") || !strings.HasPrefix(parts[1], "ERR TypeError") || !strings.HasPrefix(parts[2], "ERR TypeError") {
		t.Errorf("disallowed origin %s: %q", other, got)
	}
	if p, c := preflights.Load(), calls()-before; p != 2 || c != 2 {
		t.Errorf("disallowed origin: %d preflights in all, %d invocations; want 2 and 2 (the POST never sent)", p, c)
	}
	fmt.Println("browser results:", got)
}
