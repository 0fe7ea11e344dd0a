package replicas_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/klambda/klambda/activator/dispatch"
	"github.com/klambda/klambda/activator/fakeshim"
	"github.com/klambda/klambda/activator/fnkey"
	"github.com/klambda/klambda/activator/ownership"
	"github.com/klambda/klambda/activator/peer"
	"github.com/klambda/klambda/activator/replicas"
	"github.com/klambda/klambda/activator/testrig"
	"github.com/klambda/klambda/api/contract"
	"github.com/klambda/klambda/test/apiserver"
)

var cs kubernetes.Interface

func TestMain(m *testing.M) {
	s, err := apiserver.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cs = kubernetes.NewForConfigOrDie(s.Config)
	code := m.Run()
	_ = s.Stop()
	os.Exit(code)
}

type peerTokens struct{}

func (peerTokens) IsPeer(_ context.Context, tok string) (bool, error) { return tok == "peer", nil }

// replica is one activator replica in-process: its own router table, dispatcher, core and
// Invoke API (testrig), wired into the shard ownership as cmd/activator wires it.
type replica struct {
	rig    *testrig.Rig
	wired  *replicas.Replica
	peer   *testrig.Server
	cancel context.CancelFunc
	done   chan struct{}
}

// cluster is several replicas sharing fake environments of one function.
type cluster struct {
	t       *testing.T
	prefix  string
	members atomic.Int32
	shims   []*fakeshim.Shim
	gauge   fakeshim.Gauge
	rs      []*replica
}

const fn = "fn"

func newCluster(t *testing.T, prefix string, n, envs int, reserved int32) *cluster {
	c := &cluster{t: t, prefix: prefix}
	for range envs {
		s := fakeshim.Start(testrig.Secret, contract.Latest)
		s.Gauge = &c.gauge
		c.shims = append(c.shims, s)
		t.Cleanup(s.Close)
	}
	for i := range n {
		c.rs = append(c.rs, c.start(i, reserved))
	}
	c.members.Store(int32(n))
	return c
}

func (c *cluster) start(i int, reserved int32) *replica {
	t := c.t
	rig := testrig.New(testrig.Options{WaitDeadline: 2 * time.Second})
	t.Cleanup(rig.Server.Close)
	rig.Function(fn, reserved, 0)
	var envs []dispatch.Environment
	for j, s := range c.shims {
		envs = append(envs, dispatch.Environment{Name: "env-" + strconv.Itoa(j), Addr: s.Addr(), Secret: testrig.Secret})
	}
	rig.Dispatcher.SetEnvironments(fnkey.Key{Namespace: testrig.Namespace, Function: fn, Version: contract.Latest}, envs)
	ps := testrig.NewUnstartedServer() // the peer port, served as cmd/activator serves it
	wired, err := replicas.New(replicas.Config{
		Ownership: ownership.Config{Client: cs, Namespace: "default", Name: c.prefix, Identity: "r" + strconv.Itoa(i),
			Address: ps.Addr, Shards: 8, Members: func() int { return int(c.members.Load()) },
			LeaseDuration: 2 * time.Second, RenewDeadline: 1500 * time.Millisecond, RetryPeriod: 250 * time.Millisecond},
		Core: rig.Core, Dispatcher: rig.Dispatcher,
		Client: &peer.Client{
			Token: func() (string, error) { return "peer", nil }},
		Verify:      peerTokens{},
		HandoffWait: 3 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	ps.Start(wired.Peer)
	t.Cleanup(ps.Close)
	rig.Handler.Invoker = wired.Router
	ctx, cancel := context.WithCancel(context.Background())
	r := &replica{rig: rig, wired: wired, peer: ps, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		if err := wired.Manager.Run(ctx); err != nil {
			t.Error(err)
		}
	}()
	t.Cleanup(func() { cancel(); <-r.done; wired.Manager.Close() })
	return r
}

// owner waits until exactly one running replica owns the rig namespace, and every shard
// is held; it returns the owner's index.
func (c *cluster) owner(running []int) int {
	c.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		owners, held := []int{}, 0
		for _, i := range running {
			if c.rs[i].wired.Manager.OwnsNamespace(testrig.Namespace) {
				owners = append(owners, i)
			}
			held += len(c.rs[i].wired.Manager.Owned())
		}
		if len(owners) == 1 && held == 8 {
			return owners[0]
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatalf("no single owner of namespace %s among replicas %v", testrig.Namespace, running)
	return -1
}

// load runs callers that invoke the function through random replicas until stop is
// closed; it returns the statuses seen (by code and error type).
func (c *cluster) load(callers int, stop <-chan struct{}, through []int) map[string]int {
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: callers}, Timeout: 30 * time.Second}
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				r := c.rs[through[rand.IntN(len(through))]]
				resp, err := hc.Post(r.rig.URL()+"/2015-03-31/functions/"+fn+"/invocations", "application/json", strings.NewReader(`{"sleep_ms":15}`))
				key := ""
				if err != nil {
					key = "error: " + err.Error()
				} else {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					key = strconv.Itoa(resp.StatusCode) + " " + resp.Header.Get(contract.HeaderErrorType)
					if resp.StatusCode != 200 && resp.StatusCode != 429 {
						key += ": " + string(b)
					}
				}
				mu.Lock()
				seen[key]++
				mu.Unlock()
			}
		}()
	}
	<-stop
	wg.Wait()
	return seen
}

func (c *cluster) overlaps() int64 {
	var n int64
	for _, s := range c.shims {
		n += s.Overlaps.Load()
	}
	return n
}

// checkOnly fails unless every answer was a success or the reserved-concurrency throttle.
func checkOnly(t *testing.T, seen map[string]int) {
	t.Helper()
	for k, n := range seen {
		if k != "200 " && k != "429 TooManyRequestsException" {
			t.Errorf("%d answers %q; want only 200 and 429 (reserved concurrency)", n, k)
		}
	}
	if seen["200 "] == 0 || seen["429 TooManyRequestsException"] == 0 {
		t.Errorf("answers %v: want both successes and throttles (16 callers, reserved concurrency 4)", seen)
	}
}

// Three replicas, 16 callers through all of them, reserved concurrency 4: the owner of the
// namespace counts every invocation (the others forward theirs), so never more than 4
// run at once and never two in one environment; and as the owner leaves (a rolling
// restart), its shards move with no invocation failed, still within the limit.
func TestReplicasKeepReservedConcurrencyExactAndHandOffWithoutFailures(t *testing.T) {
	c := newCluster(t, "exact", 3, 8, 4)
	owner := c.owner([]int{0, 1, 2})

	stop := make(chan struct{})
	time.AfterFunc(1500*time.Millisecond, func() { close(stop) })
	seen := c.load(16, stop, []int{0, 1, 2})
	t.Logf("three replicas, owner r%d: %v; peak concurrency %d", owner, seen, c.gauge.Peak())
	checkOnly(t, seen)
	if p := c.gauge.Peak(); p > 4 {
		t.Errorf("%d invocations ran at once; reserved concurrency is 4", p)
	}
	if n := c.overlaps(); n != 0 {
		t.Errorf("%d invocations were sent to an environment already running one", n)
	}

	// The owner leaves, as on SIGTERM, while the callers go on through all three: the one
	// leaving still takes requests while it drains, and forwards them to the new owner
	// (well past its own Leases' duration: its view of the Leases outlives its part).
	others := []int{}
	for i := range 3 {
		if i != owner {
			others = append(others, i)
		}
	}
	stop = make(chan struct{})
	result := make(chan map[string]int)
	go func() { result <- c.load(16, stop, []int{0, 1, 2}) }()
	time.Sleep(300 * time.Millisecond)
	c.members.Store(2)
	left := time.Now()
	c.rs[owner].cancel()
	<-c.rs[owner].done
	next := c.owner(others)
	t.Logf("r%d left in %v; r%d owns the namespace", owner, time.Since(left).Round(time.Millisecond), next)
	time.Sleep(5 * time.Second) // > the Lease duration (2 s) + the handoff wait (3 s)
	close(stop)
	seen = <-result
	t.Logf("during and after the handoff: %v; peak concurrency %d", seen, c.gauge.Peak())
	checkOnly(t, seen)
	if p := c.gauge.Peak(); p > 4 {
		t.Errorf("%d invocations ran at once; reserved concurrency is 4", p)
	}
	if n := c.overlaps(); n != 0 {
		t.Errorf("%d invocations were sent to an environment already running one", n)
	}
}
