package peer

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"

	"github.com/klambda/klambda/activator/testrig"
	"github.com/klambda/klambda/api/contract"
)

// fixedOwner: replica 0 owns every namespace, reached at addr.
type fixedOwner struct {
	owner bool
	addr  string
}

func (f fixedOwner) OwnsNamespace(string) bool { return f.owner }
func (f fixedOwner) Owner(string) (string, bool) {
	return f.addr, !f.owner
}

// trio is three replicas in one process wired as cmd/activator wires them (replica 0
// owns the namespace; the others forward to its peer port), each with its Invoke API
// behind a steering Handler (nil Steering: off).
type trio struct {
	fronts    []string // the Invoke API's addresses
	forwarded atomic.Int64
	closes    atomic.Int64
	steer     bool
	tls       *tls.Config // the clients' (TLS fronts)
}

// newTrio: steer turns steering on; h2 serves the fronts with net/http over TLS (HTTP/2)
// instead of the lean server.
func newTrio(t *testing.T, steer, h2 bool) *trio {
	t.Helper()
	tr := &trio{steer: steer}
	rigs := make([]*testrig.Rig, 3)
	for i := range rigs {
		rigs[i] = testrig.New(testrig.Options{WaitDeadline: 10 * time.Second})
		t.Cleanup(rigs[i].Close)
		rigs[i].Function("echo", -1, 0)
	}
	rigs[0].Environments("echo", contract.Latest, 16)
	peerPort := testrig.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tr.forwarded.Add(1)
		(&Handler{Core: rigs[0].Core, Owns: func(string) bool { return true }, Verify: tokens{"peer-token": true}}).ServeHTTP(w, r)
	}))
	t.Cleanup(peerPort.Close)
	c := client("peer-token")
	for i, r := range rigs {
		var st *Steering
		if steer {
			st = NewSteering(1000, 100, func() { tr.closes.Add(1) })
		}
		r.Handler.Invoker = &Router{Local: r.Core, Ownership: fixedOwner{owner: i == 0, addr: peerPort.Addr}, Client: c,
			Wait: time.Second, Retry: 10 * time.Millisecond, Steer: st}
		var h http.Handler = r.Handler
		if st != nil {
			h = st.Handler(h)
		}
		if h2 {
			s := httptest.NewUnstartedServer(h)
			s.EnableHTTP2 = true
			if st != nil {
				s.Config.ConnContext = st.ConnContext
			}
			s.StartTLS()
			t.Cleanup(s.Close)
			tr.fronts = append(tr.fronts, s.Listener.Addr().String())
			tr.tls = s.Client().Transport.(*http.Transport).TLSClientConfig
			continue
		}
		s := testrig.NewUnstartedServer()
		if st != nil {
			s.ConnContext = st.ConnContext
		}
		s.Start(h)
		t.Cleanup(s.Close)
		tr.fronts = append(tr.fronts, s.Addr)
	}
	return tr
}

// dial connects to a random replica, whatever the address asked for: a Service's
// ClusterIP (kube-proxy picks an endpoint per connection). Until the first steering close
// (without steering: always), connections go to a replica that forwards (as random
// could), so that only steering can move them (over HTTP/2 the client keeps a single
// connection); a random placement alone would make the share without steering depend on
// the luck of a few dials.
func (tr *trio) dial(ctx context.Context, network, _ string) (net.Conn, error) {
	var d net.Dialer
	i := rand.IntN(len(tr.fronts))
	if tr.closes.Load() == 0 {
		i = 1
	}
	return d.DialContext(ctx, network, tr.fronts[i])
}

func (tr *trio) transport() *http.Transport {
	return &http.Transport{DialContext: tr.dial, MaxIdleConnsPerHost: 64, TLSClientConfig: tr.tls, ForceAttemptHTTP2: tr.tls != nil}
}

// run has callers goroutines call do n times each; it returns the failures and the share
// of the calls the owner served without a forward.
func (tr *trio) run(callers, n int, do func() error) (failures []error, local float64) {
	before := tr.forwarded.Load()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for range n {
				if err := do(); err != nil {
					mu.Lock()
					failures = append(failures, err)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	total := callers * n
	return failures, 1 - float64(tr.forwarded.Load()-before)/float64(total)
}

// httpInvoke invokes echo with c, checking the answer.
func httpInvoke(c *http.Client, url string, wantProto int) func() error {
	return func() error {
		resp, err := c.Post(url+"/2015-03-31/functions/echo/invocations", "application/json", bytes.NewReader([]byte(`{"k":1}`)))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK || string(b) != `{"k":1}` || resp.ProtoMajor != wantProto {
			return fmt.Errorf("answer %s %s: %s", resp.Proto, resp.Status, b)
		}
		return nil
	}
}

// Callers that keep their connections, dialing a random replica for each new one, end up
// on the owner: after a warm-up, at least 90 % of the invocations are served there
// without a forward, and none fails across the closes. Without steering, connections that
// reached a forwarding replica stay there and none is (the test can fail).
func TestSteeringMovesKeptConnectionsToTheOwner(t *testing.T) {
	for _, tc := range []struct {
		name      string
		steer, h2 bool
	}{{"lean server, HTTP/1.1", true, false}, {"net/http over TLS, HTTP/2", true, true}, {"off", false, false}} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTrio(t, tc.steer, tc.h2)
			c := &http.Client{Transport: tr.transport()}
			defer c.CloseIdleConnections()
			scheme, proto := "http://", 1
			if tc.h2 {
				scheme, proto = "https://", 2
			}
			do := httpInvoke(c, scheme+tr.fronts[0], proto)
			fails, warm := tr.run(16, 30, do)
			if len(fails) > 0 {
				t.Fatalf("warm-up: %d failed, first: %v", len(fails), fails[0])
			}
			fails, local := tr.run(16, 50, do)
			t.Logf("served by the owner without a forward: %.1f %% in the warm-up, %.1f %% after; %d steering closes", 100*warm, 100*local, tr.closes.Load())
			if len(fails) > 0 {
				t.Fatalf("%d failed, first: %v", len(fails), fails[0])
			}
			switch {
			case tc.steer && local < 0.9:
				t.Fatalf("%.1f %% served by the owner after the warm-up, want ≥ 90 %%", 100*local)
			case !tc.steer && local > 0.1:
				t.Fatalf("%.1f %% served by the owner without steering, whose connections all reached a forwarding replica: the test cannot tell", 100*local)
			case tc.steer && tr.closes.Load() == 0:
				t.Fatal("no steering close")
			}
		})
	}
}

// aws-sdk-go-v2 (its own HTTP client, retries off) carries on across the closes.
func TestSteeringAWSSDKGoV2(t *testing.T) {
	tr := newTrio(t, true, false)
	hc := awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) { t.DialContext = tr.dial; t.MaxIdleConnsPerHost = 64 })
	sdk := lambda.New(lambda.Options{HTTPClient: hc, BaseEndpoint: aws.String("http://" + tr.fronts[0] + "/namespaces/default"), Region: "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("klambda", "unused", ""), RetryMaxAttempts: 1})
	do := func() error {
		out, err := sdk.Invoke(context.Background(), &lambda.InvokeInput{FunctionName: aws.String("echo"), Payload: []byte(`{"k":1}`)})
		if err != nil {
			return err
		}
		if out.StatusCode != 200 || string(out.Payload) != `{"k":1}` {
			return fmt.Errorf("answer %d %s", out.StatusCode, out.Payload)
		}
		return nil
	}
	fails, _ := tr.run(8, 30, do)
	if len(fails) > 0 {
		t.Fatalf("warm-up: %d failed, first: %v", len(fails), fails[0])
	}
	fails, local := tr.run(8, 30, do)
	t.Logf("served by the owner without a forward: %.1f %% after the warm-up; %d steering closes", 100*local, tr.closes.Load())
	if len(fails) > 0 {
		t.Fatalf("%d failed, first: %v", len(fails), fails[0])
	}
	if tr.closes.Load() == 0 || local < 0.9 {
		t.Fatalf("%d closes, %.1f %% served by the owner", tr.closes.Load(), 100*local)
	}
}
