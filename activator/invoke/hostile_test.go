package invoke_test

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/klambda/klambda/activator/dispatch"
	"github.com/klambda/klambda/activator/fakeshim"
	"github.com/klambda/klambda/activator/fnkey"
	"github.com/klambda/klambda/activator/invoke"
	"github.com/klambda/klambda/activator/metrics"
	"github.com/klambda/klambda/activator/testrig"
	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// seriesIn counts the series a registry exposes.
func seriesIn(t *testing.T, reg *prometheus.Registry) int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, mf := range mfs {
		n += len(mf.GetMetric())
	}
	return n
}

// Finding 5 of issue 15: every request with a made-up function or namespace name made a
// series of klambda_invocation_failures_total, before or without authentication. N such
// requests must make O(1) series: names label only functions the router resolved.
func TestMadeUpNamesDoNotGrowMetricSeries(t *testing.T) {
	for _, authOn := range []bool{true, false} {
		t.Run(fmt.Sprintf("auth=%v", authOn), func(t *testing.T) {
			var tokens testrig.Tokens
			if authOn {
				tokens = testrig.Tokens{"good": "alice"}
			}
			r := testrig.New(testrig.Options{Auth: tokens})
			defer r.Close()
			reg := prometheus.NewRegistry()
			r.UseMetrics(metrics.New(reg))
			r.Function("f", -1, 0)
			r.Environments("f", "$LATEST", 1)
			// One real invocation and one real failure of a resolved function.
			hdr := map[string]string{"Authorization": "Bearer good"}
			if a := call(t, r.URL(), invPath("f"), `{}`, hdr); a.status != 200 {
				t.Fatalf("%+v", a)
			}
			wantError(t, call(t, r.URL(), invPath("f"), `{not json`, hdr), 400, "InvalidRequestContentException", "")
			base := seriesIn(t, reg)

			const n = 300
			for i := 0; i < n; i++ {
				ns := fmt.Sprintf("ns-%x", rand.Uint64())
				fn := fmt.Sprintf("fn-%x", rand.Uint64())
				var h map[string]string
				switch i % 3 {
				case 1:
					h = map[string]string{"Authorization": fmt.Sprintf("Bearer bad-%x", rand.Uint64())}
				case 2:
					h = hdr // authenticated and allowed, but no such function
				}
				a := call(t, r.URL(), "/namespaces/"+ns+invPath(fn), `{}`, h)
				if a.status < 400 {
					t.Fatalf("made-up function answered %+v", a)
				}
				// A qualifier of a real function that does not exist.
				a = call(t, r.URL(), invPath(fmt.Sprintf("f:q%x", rand.Uint64())), `{}`, h)
				if a.status < 400 {
					t.Fatalf("made-up qualifier answered %+v", a)
				}
			}
			if got := seriesIn(t, reg); got-base > 10 {
				t.Fatalf("%d requests with made-up names added %d metric series (want a handful of fixed ones)", 2*n, got-base)
			}
		})
	}
}

// stalledRequest opens a connection and sends an Invoke of path whose headers declare a
// body of declared bytes, then only the first byte of it.
// The caller closes it (before the test server's Close, which waits for its handler).
func stalledRequest(t *testing.T, base, path string, declared int) net.Conn {
	t.Helper()
	u, _ := url.Parse(base)
	c, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n{", path, u.Host, declared)
	return c
}

// Issue 15, finding 6: every request buffered up to 6 MB before an environment was
// found, with nothing bounding the total: one caller could hold the activator's memory
// with slow bodies. Past the request byte budget (a namespace's share first) a request is
// answered TooManyRequestsException at once, without its body being read, while another
// namespace's request still runs.
func TestRequestBytesAreBudgeted(t *testing.T) {
	r := testrig.New(testrig.Options{})
	defer r.Close()
	r.Function("f", -1, 0)
	r.Environments("f", "$LATEST", 1)
	// A function in a second namespace.
	other := &lambdav1alpha1.Function{ObjectMeta: metav1.ObjectMeta{Namespace: "team-b", Name: "g"}}
	other.Spec.Timeout = 10
	other.Status.State = lambdav1alpha1.StateActive
	r.Table.SetFunction(other)
	shim := fakeshim.Start(testrig.Secret, "$LATEST")
	defer shim.Close()
	r.Dispatcher.SetEnvironments(fnkey.Key{Namespace: "team-b", Function: "g", Version: "$LATEST"},
		[]dispatch.Environment{{Name: "g-0", Addr: shim.Addr(), Secret: testrig.Secret}})

	// 300 MB declared by slow callers of namespace default: far more than any budget.
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < 50; i++ {
		conns = append(conns, stalledRequest(t, r.URL(), invPath("f"), contract.MaxSyncPayload))
	}
	// The server takes the 50 in its own order: on a loaded machine a later request may be
	// admitted before earlier ones were read, so the refusal may come a few requests later.
	// Each further request is given 3 s; none refused after 10 more fails the test.
	var resp *http.Response
	var err error
	for extra := 0; extra < 10 && resp == nil; extra++ {
		c := stalledRequest(t, r.URL(), invPath("f"), contract.MaxSyncPayload)
		conns = append(conns, c)
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		if resp, err = http.ReadResponse(bufio.NewReader(c), nil); err != nil {
			resp = nil
		}
	}
	if resp == nil {
		t.Fatalf("none of 10 slow 6 MB requests past 50 was refused at once (their bodies were waited for): %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("X-Amzn-ErrorType") != "TooManyRequestsException" {
		t.Fatalf("past the request byte budget: %d %s, want 429 TooManyRequestsException", resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType"))
	}
	// Refused before the function was resolved: counted under no function's name.
	if v := testutil.ToFloat64(r.Handler.Metrics.Throttles.WithLabelValues("", "", "", "", invoke.ReasonActivatorBusy)); v < 1 {
		t.Errorf("the activator's own throttle was not counted: %v", v)
	}
	// Another namespace is not starved by the first one's slow callers.
	if a := call(t, r.URL(), "/namespaces/team-b"+invPath("g"), `{"x":1}`, nil); a.status != 200 {
		t.Fatalf("team-b during team default's flood: %+v", a)
	}
}
