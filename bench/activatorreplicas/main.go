// Command activatorreplicas measures what several activator replicas cost on the warm path:
// the same fake environments (activator/fakeshim) are invoked through one replica, and
// through three replicas that share them the way cmd/activator wires them (activator/peer:
// the namespace's owner runs the invocation; the other two forward it over the peer port,
// real HTTP), with the callers spread evenly over the three, as the activator's Service
// spreads them. Alternating rounds, one process; it prints p50/p99 of each, the added
// latency, and the CPU per invocation of each as a ratio.
//
// The Leases (activator/ownership) are off this path: ownership is fixed here (replica 0
// owns the namespace), so the figures are the forwarding's, not the Lease traffic's.
//
//	go run ./bench/activatorreplicas [-callers 16] [-rounds 3] [-duration 3s] [-rate 1000] [-cpuprofile F] [-memprofile F]
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strings"
	"time"

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

func main() {
	lf := load.RegisterFlags(16, 1000)
	flag.Parse()
	callers := lf.Callers

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
	ownerPeer := testrig.NewServer(&peer.Handler{Core: rigs[0].Core, Owns: func(string) bool { return true }, Verify: peerToken{}})
	defer ownerPeer.Close()
	client := &peer.Client{Token: func() (string, error) { return "peer", nil }}
	addr := strings.TrimPrefix(ownerPeer.URL, "http://")
	rigs[0].Handler.Invoker = &peer.Router{Local: rigs[0].Core, Ownership: fixed{owner: true}, Client: client, Wait: time.Second, Retry: 10 * time.Millisecond}
	for _, r := range rigs[1:] {
		r.Handler.Invoker = &peer.Router{Local: r.Core, Ownership: fixed{addr: addr}, Client: client, Wait: time.Second, Retry: 10 * time.Millisecond}
	}
	path := "/2015-03-31/functions/echo/invocations"
	json := http.Header{"Content-Type": {"application/json"}}
	// Caller i: one replica; one of three in turn (as the Service spreads them); or the
	// environment i directly, with its invoke secret.
	one := func(int) (string, http.Header) { return rigs[0].URL() + path, json }
	three := func(i int) (string, http.Header) { return rigs[i%3].URL() + path, json }
	hc := &http.Client{Transport: &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 256, IdleConnTimeout: time.Minute}}
	payload := []byte(`{"key1":"value1","key2":"value2","key3":"value3"}`)
	// The baseline: the environments called directly (the client's and the shims' CPU),
	// taken off both paths' CPU to give the activators' own.
	direct := func(i int) (string, http.Header) {
		return "http://" + shims[i%len(shims)] + contract.InvokePath,
			http.Header{"Content-Type": {"application/json"}, contract.HeaderInvokeSecret: {testrig.Secret}}
	}
	rs := lf.Compare(hc, payload, nil, direct, one, three)
	d, a, b := rs[0], rs[1], rs[2]
	mode := "closed loop"
	if *lf.Rate > 0 {
		mode = fmt.Sprintf("paced at %.0f req/s in total", *lf.Rate)
	}
	fmt.Printf("%s; callers %d, %d rounds x %s each, GOMAXPROCS %d, load average %s; %d environments\n", mode, *callers, *lf.Rounds, *lf.Duration,
		runtime.GOMAXPROCS(0), load.LoadAvg(), len(shims))
	fmt.Printf("| path | requests | errors | p50 | p99 | CPU per invocation (process) | the activators' (minus direct) | the activators' allocations |\n|---|---|---|---|---|---|---|---|\n")
	fmt.Printf("| direct to the environments | %d | %d | %s | %s | %s | - | - |\n", len(d.Lat), d.Errs, load.Ms(d.Pct(.5)), load.Ms(d.Pct(.99)), load.Us(d.CPUPer()))
	fmt.Printf("| one replica | %d | %d | %s | %s | %s | %s | %.1f |\n", len(a.Lat), a.Errs, load.Ms(a.Pct(.5)), load.Ms(a.Pct(.99)), load.Us(a.CPUPer()), load.Us(a.CPUPer()-d.CPUPer()), a.AllocsPer()-d.AllocsPer())
	fmt.Printf("| three replicas (2/3 forwarded) | %d | %d | %s | %s | %s | %s | %.1f |\n", len(b.Lat), b.Errs, load.Ms(b.Pct(.5)), load.Ms(b.Pct(.99)), load.Us(b.CPUPer()), load.Us(b.CPUPer()-d.CPUPer()), b.AllocsPer()-d.AllocsPer())
	fmt.Printf("three vs one replica: added p50 %s (target ≤ 0.200 ms), added p99 %s; the activators' CPU per invocation %.2fx (target ≤ 1.2x)\n",
		load.Ms(b.Pct(.5)-a.Pct(.5)), load.Ms(b.Pct(.99)-a.Pct(.99)), float64(b.CPUPer()-d.CPUPer())/float64(a.CPUPer()-d.CPUPer()))
	if d.Errs+a.Errs+b.Errs > 0 {
		fmt.Println("FAIL: requests failed")
		os.Exit(1)
	}
}
