// Command activatorreplicas measures what several activator replicas cost on the warm path:
// the same fake environments (activator/fakeshim) are invoked through one replica, and
// through three replicas that share them the way cmd/activator wires them (activator/peer:
// the namespace's owner runs the invocation; the other two forward it over the peer port,
// real HTTP). Alternating rounds, one process; it prints p50/p99 of each, the added
// latency, and the CPU per invocation of each as a ratio.
//
// The three replicas are reached as through their Service: each new connection goes to a
// random replica (kube-proxy's choice per connection), and the callers keep their
// connections. Once without connection steering (about 2/3 of the connections, so of the
// invocations, reach a replica that forwards) and once with it (peer.Steering: a
// connection forwarded twice in a row to the owner is closed after its answer, and the
// caller reconnects; before the rounds the steered path runs -steer-warmup, so the rounds
// measure the steady state). -pinned adds the old spread: caller i always on replica i%3
// (2/3 forwarded, no reconnection).
//
// The Leases (activator/ownership) are off this path: ownership is fixed here (replica 0
// owns the namespace), so the figures are the forwarding's, not the Lease traffic's.
//
//	go run ./bench/activatorreplicas [-callers 16] [-rounds 3] [-duration 3s] [-rate 1000] [-pinned] [-steer-rate 10] [-steer-warmup 3s] [-cpuprofile F] [-memprofile F]
package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"

	"github.com/klambda/klambda/activator/invoke"
	"github.com/klambda/klambda/activator/peer"
	"github.com/klambda/klambda/activator/testrig"
	"github.com/klambda/klambda/api/contract"
	"github.com/klambda/klambda/bench/internal/load"
)

// fixed is an ownership that does not change: owner or not, and the owner's peer address.
type fixed struct {
	owner bool
	addr  string
}

func (f fixed) OwnsNamespace(string) bool { return f.owner }
func (f fixed) Owner(string) (string, bool) {
	return f.addr, !f.owner
}

type peerToken struct{}

func (peerToken) IsPeer(_ context.Context, tok string) (bool, error) { return tok == "peer", nil }

// The Services' names: a connection to one of them goes to a random replica's front.
const (
	plainService   = "replicas.invalid:80"
	steeredService = "replicas-steered.invalid:80"
)

func main() {
	lf := load.RegisterFlags(16, 1000)
	pinned := flag.Bool("pinned", false, "Also measure three replicas with caller i pinned to replica i%3 (the spread this benchmark used before; 2/3 forwarded).")
	steerRate := flag.Float64("steer-rate", 10, "Steering closes a second per replica (--steer-rate).")
	steerWarmup := flag.Duration("steer-warmup", 3*time.Second, "How long the steered path runs before the rounds (its connections move to the owner).")
	flag.Parse()
	callers := lf.Callers
	if !(*steerRate > 0) || *steerWarmup < 0 {
		load.Fail("-steer-rate must be positive and -steer-warmup not negative")
	}

	// Three replicas' cores over the same environments; replica 0 owns the namespace.
	rigs := make([]*testrig.Rig, 3)
	var shims []string
	for i := range rigs {
		rigs[i] = testrig.New(testrig.Options{WaitDeadline: 10 * time.Second})
		defer rigs[i].Close()
		rigs[i].Function("echo", -1, 0)
	}
	for _, s := range rigs[0].Environments("echo", contract.Latest, *callers) {
		shims = append(shims, s.Addr())
	}
	var forwarded, closes atomic.Int64
	ownerPeer := testrig.NewServer(countRequests(&forwarded, &peer.Handler{Core: rigs[0].Core, Owns: func(string) bool { return true }, Verify: peerToken{}}))
	defer ownerPeer.Close()
	client := &peer.Client{Token: func() (string, error) { return "peer", nil }}
	addr := strings.TrimPrefix(ownerPeer.URL, "http://")
	// Each replica's Invoke API, plain (its rig's server) and steered (a second front).
	var plainFronts, steeredFronts []string
	for i, r := range rigs {
		own := fixed{owner: i == 0, addr: addr}
		r.Handler.Invoker = &peer.Router{Local: r.Core, Ownership: own, Client: client, Wait: time.Second, Retry: 10 * time.Millisecond}
		plainFronts = append(plainFronts, r.Server.Addr)
		st := peer.NewSteering(*steerRate, int(math.Ceil(*steerRate)), func() { closes.Add(1) })
		h := &invoke.Handler{DefaultNamespace: testrig.Namespace, Region: r.Handler.Region, AccountID: r.Handler.AccountID,
			Invoker:   &peer.Router{Local: r.Core, Ownership: own, Client: client, Wait: time.Second, Retry: 10 * time.Millisecond, Steer: st},
			Admission: r.Handler.Admission, Metrics: r.Handler.Metrics, Log: logr.Discard()}
		s := testrig.NewUnstartedServer()
		s.ConnContext = st.ConnContext
		s.Start(st.Handler(h))
		defer s.Close()
		steeredFronts = append(steeredFronts, s.Addr)
	}
	path := "/2015-03-31/functions/echo/invocations"
	json := http.Header{"Content-Type": {"application/json"}}
	// Caller i: one replica; a Service over the three (a random replica per connection),
	// without and with steering; or replica i%3 (pinned); or the environment i directly,
	// with its invoke secret.
	one := func(int) (string, http.Header) { return rigs[0].URL() + path, json }
	service := func(int) (string, http.Header) { return "http://" + plainService + path, json }
	steered := func(int) (string, http.Header) { return "http://" + steeredService + path, json }
	pin := func(i int) (string, http.Header) { return rigs[i%3].URL() + path, json }
	var d net.Dialer
	dial := func(ctx context.Context, network, a string) (net.Conn, error) {
		switch a {
		case plainService:
			a = plainFronts[rand.IntN(3)]
		case steeredService:
			a = steeredFronts[rand.IntN(3)]
		}
		return d.DialContext(ctx, network, a)
	}
	hc := &http.Client{Transport: &http.Transport{DialContext: dial, MaxIdleConns: 1024, MaxIdleConnsPerHost: 256, IdleConnTimeout: time.Minute}}
	payload := []byte(`{"key1":"value1","key2":"value2","key3":"value3"}`)
	// The baseline: the environments called directly (the client's and the shims' CPU),
	// taken off both paths' CPU to give the activators' own.
	direct := func(i int) (string, http.Header) {
		return "http://" + shims[i%len(shims)] + contract.InvokePath,
			http.Header{"Content-Type": {"application/json"}, contract.HeaderInvokeSecret: {testrig.Secret}}
	}
	names := []string{"direct to the environments", "one replica", "three, Service, no steering"}
	paths := []load.Target{direct, one, service}
	if *pinned {
		names, paths = append(names, "three, pinned i%3"), append(paths, pin)
	}
	names, paths = append(names, "three, Service, steering"), append(paths, steered)

	f0, c0 := forwarded.Load(), closes.Load()
	warm := load.Run(*callers, *steerWarmup, lf.Pace(), steered, hc, payload)
	fmt.Printf("steered warm-up (%s): %d requests, %d errors, %.1f %% forwarded, %d steering closes\n", *steerWarmup, len(warm.Lat), warm.Errs,
		pct(forwarded.Load()-f0, len(warm.Lat)+warm.Errs), closes.Load()-c0)
	// Forwards and closes per path (Compare calls before ahead of each run; its own
	// warm-ups come first and are not counted).
	fwd, cls := make([]int64, len(paths)), make([]int64, len(paths))
	prev, markF, markC := -1, int64(0), int64(0)
	account := func(next int) {
		if prev >= 0 {
			fwd[prev] += forwarded.Load() - markF
			cls[prev] += closes.Load() - markC
		}
		prev, markF, markC = next, forwarded.Load(), closes.Load()
	}
	rs := lf.Compare(hc, payload, func(_, i int) { account(i) }, paths...)
	account(-1)
	d0, a := rs[0], rs[1]
	mode := "closed loop"
	if *lf.Rate > 0 {
		mode = fmt.Sprintf("paced at %.0f req/s in total", *lf.Rate)
	}
	fmt.Printf("%s; callers %d, %d rounds x %s each, GOMAXPROCS %d, load average %s; %d environments; steering at most %g closes/s per replica\n", mode, *callers, *lf.Rounds, *lf.Duration,
		runtime.GOMAXPROCS(0), load.LoadAvg(), len(shims), *steerRate)
	fmt.Printf("| path | requests | errors | forwarded | steering closes | p50 | p99 | CPU per invocation (process) | the activators' (minus direct) | the activators' allocations |\n|---|---|---|---|---|---|---|---|---|---|\n")
	errs := 0
	for i, r := range rs {
		errs += r.Errs
		if i == 0 {
			fmt.Printf("| %s | %d | %d | - | - | %s | %s | %s | - | - |\n", names[i], len(r.Lat), r.Errs, load.Ms(r.Pct(.5)), load.Ms(r.Pct(.99)), load.Us(r.CPUPer()))
			continue
		}
		fmt.Printf("| %s | %d | %d | %.1f %% | %d | %s | %s | %s | %s | %.1f |\n", names[i], len(r.Lat), r.Errs, pct(fwd[i], len(r.Lat)+r.Errs), cls[i],
			load.Ms(r.Pct(.5)), load.Ms(r.Pct(.99)), load.Us(r.CPUPer()), load.Us(r.CPUPer()-d0.CPUPer()), r.AllocsPer()-d0.AllocsPer())
	}
	for i := 2; i < len(rs); i++ {
		b := rs[i]
		fmt.Printf("%s vs one replica: added p50 %s (target ≤ 0.200 ms), added p99 %s; the activators' CPU per invocation %.2fx (target ≤ 1.2x)\n", names[i],
			load.Ms(b.Pct(.5)-a.Pct(.5)), load.Ms(b.Pct(.99)-a.Pct(.99)), float64(b.CPUPer()-d0.CPUPer())/float64(a.CPUPer()-d0.CPUPer()))
	}
	if errs+warm.Errs > 0 {
		fmt.Println("FAIL: requests failed")
		os.Exit(1)
	}
}

// countRequests counts the requests h serves.
func countRequests(n *atomic.Int64, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		h.ServeHTTP(w, r)
	})
}

func pct(n int64, of int) float64 {
	if of == 0 {
		return 0
	}
	return 100 * float64(n) / float64(of)
}
