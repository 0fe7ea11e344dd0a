package async

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// natsCluster is n nats-servers with JetStream clustered in this process, each with its
// own store, on random ports.
type natsCluster struct {
	servers []*server.Server
}

func startNATSCluster(t *testing.T, n int) *natsCluster {
	t.Helper()
	ports := freePorts(t, n)
	routes := make([]string, n)
	for i, p := range ports {
		routes[i] = fmt.Sprintf("nats://127.0.0.1:%d", p)
	}
	c := &natsCluster{}
	for i := range n {
		s, err := server.NewServer(clusterNode(natsNode{Name: fmt.Sprintf("nats-%d", i), ClientPort: -1,
			ClusterPort: ports[i], Routes: strings.Join(routes, ","), StoreDir: t.TempDir()}))
		if err != nil {
			t.Fatal(err)
		}
		go s.Start()
		t.Cleanup(s.Shutdown)
		c.servers = append(c.servers, s)
	}
	for _, s := range c.servers {
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatalf("NATS server %s not ready after 10s", s.Name())
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for !c.formed() {
		if time.Now().After(deadline) {
			t.Fatal("the NATS cluster elected no JetStream leader within 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return c
}

// natsNode is one server of a test cluster.
type natsNode struct {
	Name                    string
	ClientPort, ClusterPort int
	Routes, StoreDir        string
}

func clusterNode(n natsNode) *server.Options {
	return &server.Options{
		ServerName: n.Name, Host: "127.0.0.1", Port: n.ClientPort,
		JetStream: true, StoreDir: n.StoreDir, JetStreamMaxStore: 1 << 30, JetStreamMaxMemory: 64 << 20,
		MaxPayload: maxPayload, NoLog: true, NoSigs: true,
		Cluster: server.ClusterOpts{Name: "klambda-test", Host: "127.0.0.1", Port: n.ClusterPort},
		Routes:  server.RoutesFromStr(n.Routes),
	}
}

// formed: one server leads JetStream's meta group, all follow it.
func (c *natsCluster) formed() bool {
	leader := false
	for _, s := range c.servers {
		if !s.JetStreamIsCurrent() {
			return false
		}
		leader = leader || s.JetStreamIsLeader()
	}
	return leader
}

// urls are the client URLs of the servers still running.
func (c *natsCluster) urls() string {
	var u []string
	for _, s := range c.servers {
		if s.Running() {
			u = append(u, s.ClientURL())
		}
	}
	return strings.Join(u, ",")
}

func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		_ = l.Close()
	}
	return ports
}

// testCluster is a NATS cluster of the tests: in process, or in child processes.
type testCluster interface{ urls() string }

func connectCluster(t *testing.T, c testCluster) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(c.urls(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// clusterLimits fit three stores in the test's temp dirs.
var clusterLimits = Limits{MaxBytes: 64 << 20, NamespaceMaxBytes: 16 << 20, StateMaxBytes: 16 << 20}

// TestQueueReplicasOnASingleServer: more than one replica on the embedded (single) server is
// refused with an error that says why, and so is a factor JetStream does not have.
func TestQueueReplicasOnASingleServer(t *testing.T) {
	srv, err := StartServer(ServerOptions{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_, err = NewQueue(context.Background(), nc, QueueOptions{Replicas: 3})
	if err == nil || !strings.Contains(err.Error(), "3 stream replicas need a NATS JetStream cluster of at least 3 servers") ||
		!strings.Contains(err.Error(), "single server") {
		t.Fatalf("replicas 3 on a single server: %v", err)
	}
	_, err = NewQueue(context.Background(), nc, QueueOptions{Replicas: 6})
	if err == nil || !strings.Contains(err.Error(), "JetStream allows 1 to 5") {
		t.Fatalf("replicas 6: %v", err)
	}
	if _, err := NewQueue(context.Background(), nc, QueueOptions{Replicas: 1}); err != nil {
		t.Fatalf("replicas 1 after the refusals: %v", err)
	}
}

// TestQueueReplicasOnACluster: an R1 queue on a 3-server cluster is updated to R3 in place
// (stream and state bucket), and R5 — more replicas than servers — fails at once with an
// error that says so, rather than hanging.
func TestQueueReplicasOnACluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-server NATS cluster")
	}
	c := startNATSCluster(t, 3)
	nc := connectCluster(t, c)
	ctx := context.Background()
	for _, r := range []int{1, 3} {
		q, err := NewQueue(ctx, nc, QueueOptions{Replicas: r, Limits: clusterLimits})
		if err != nil {
			t.Fatalf("replicas %d: %v", r, err)
		}
		si, err := q.stream.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if si.Config.Replicas != r {
			t.Fatalf("replicas %d: stream has %d", r, si.Config.Replicas)
		}
		if got := kvReplicas(t, q); got != r {
			t.Fatalf("replicas %d: state bucket has %d", r, got)
		}
	}
	start := time.Now()
	_, err := NewQueue(ctx, nc, QueueOptions{Replicas: 5, Limits: clusterLimits, SetupPatience: 2 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "cannot place 5 stream replicas: it has fewer than 5 JetStream servers up") {
		t.Fatalf("replicas 5 on 3 servers: %v", err)
	}
	t.Logf("replicas 5 on 3 servers refused after %s: %v", time.Since(start).Round(time.Millisecond), err)
}

func kvReplicas(t *testing.T, q *Queue) int {
	t.Helper()
	s, err := q.js.Stream(context.Background(), "KV_"+q.opts.StateBucket)
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo().Config.Replicas
}

// activatorReplica is one activator's queue and workers on its own NATS connection, with
// an invoker that records the request ids it ran.
type activatorReplica struct {
	nc      *nats.Conn
	q       *Queue
	inv     *recordingInvoker
	stopRun context.CancelFunc
	done    chan struct{}
}

func startActivatorReplica(t *testing.T, c testCluster, ran *ranLog) *activatorReplica {
	t.Helper()
	r := &activatorReplica{nc: connectCluster(t, c), done: make(chan struct{}),
		inv: &recordingInvoker{ran: ran, killed: make(chan struct{})}}
	var err error
	if r.q, err = NewQueue(context.Background(), r.nc, QueueOptions{Replicas: 3, Shared: true, Limits: clusterLimits}); err != nil {
		t.Fatal(err)
	}
	fns := map[string]Config{}
	for i := range clusterFunctions {
		fns[fmt.Sprintf("f%d", i)] = cfg(2, time.Hour)
	}
	w := NewWorkers(r.q, r.inv, configs(fns), NewDeliverer(r.q, nil, testDestinations), WorkerOptions{
		Concurrency: 16, AckWait: 2 * time.Second, ShutdownGrace: time.Second, DiscoverInterval: 200 * time.Millisecond,
		Retry: fastRetry(), Log: logr.Discard(),
	})
	ctx, cancel := context.WithCancel(context.Background())
	r.stopRun = cancel
	go func() { defer close(r.done); _ = w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-r.done })
	return r
}

// kill stops the replica as SIGKILL would: its invocations never answer, and nothing it
// has not sent yet (acks of events it ran) reaches NATS.
func (r *activatorReplica) kill() {
	close(r.inv.killed)
	r.nc.Close()
	r.stopRun()
	<-r.done
}

// ranLog counts the invocations of each request id.
type ranLog struct {
	mu  sync.Mutex
	ran map[string]int
}

func (l *ranLog) add(id string) { l.mu.Lock(); l.ran[id]++; l.mu.Unlock() }

func (l *ranLog) count(id string) int { l.mu.Lock(); defer l.mu.Unlock(); return l.ran[id] }

func (l *ranLog) totals() (distinct, invocations int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, n := range l.ran {
		invocations += n
	}
	return len(l.ran), invocations
}

// recordingInvoker takes 50 ms per event; once killed, it never answers again.
type recordingInvoker struct {
	ran    *ranLog
	killed chan struct{}

	mu       sync.Mutex
	inFlight int
	ranHere  int
}

func (i *recordingInvoker) Invoke(ctx context.Context, req InvokeRequest) (InvokeResult, error) {
	i.mu.Lock()
	i.inFlight++
	i.mu.Unlock()
	defer func() { i.mu.Lock(); i.inFlight--; i.mu.Unlock() }()
	select {
	case <-time.After(50 * time.Millisecond):
	case <-i.killed:
	}
	select {
	case <-i.killed:
		<-ctx.Done()
		return InvokeResult{}, ctx.Err()
	default:
	}
	i.ran.add(req.RequestID)
	i.mu.Lock()
	i.ranHere++
	i.mu.Unlock()
	return InvokeResult{StatusCode: 200, ExecutedVersion: "$LATEST"}, nil
}

func (i *recordingInvoker) counts() (inFlight, ran int) {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.inFlight, i.ranHere
}

const clusterFunctions = 4

// TestNothingLostOnANATSCluster runs two activator replicas (each its own NATS connection,
// queue and workers, pulling from the same durable consumers) on a 3-server cluster (child
// processes) with an R3 queue, accepts 2,000 events through both, and midway SIGKILLs the
// stream's leader server, then kills one replica with invocations in flight. Every accepted event runs at
// least once; the duplicates (redeliveries after AckWait) are counted.
func TestNothingLostOnANATSCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-server NATS cluster")
	}
	c := startNATSProcesses(t, 3)
	ran := &ranLog{ran: map[string]int{}}
	a, b := startActivatorReplica(t, c, ran), startActivatorReplica(t, c, ran)
	var mu sync.Mutex
	alive := []*activatorReplica{a, b}
	replicas := func() []*activatorReplica { mu.Lock(); defer mu.Unlock(); return alive }

	accepted, refusals, slowest := make(chan string, durabilityEvents), 0, time.Duration(0)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < durabilityEvents; i += 8 {
				time.Sleep(16 * time.Millisecond) // about 500 events/s: the kills land midway
				ev := Event{RequestID: fmt.Sprintf("evt-%04d", i), Namespace: "default",
					Function: fmt.Sprintf("f%d", i%clusterFunctions), Payload: []byte(fmt.Sprint(i))}
				// A caller whose request failed sends it again, to whichever replica.
				for attempt := 0; ; attempt++ {
					rs := replicas()
					start := time.Now()
					_, err := rs[(i+attempt)%len(rs)].q.Enqueue(context.Background(), ev)
					mu.Lock()
					slowest = max(slowest, time.Since(start))
					mu.Unlock()
					if err == nil {
						accepted <- ev.RequestID
						break
					}
					mu.Lock()
					refusals++
					mu.Unlock()
					if attempt == 20 {
						t.Errorf("event %s refused 20 times: %v", ev.RequestID, err)
						break
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
		}()
	}

	waitUntil(t, "600 accepted", func() bool { return len(accepted) >= 600 })
	si, err := a.q.stream.Info(context.Background())
	if err != nil || si.Cluster == nil || si.Cluster.Leader == "" {
		t.Fatalf("stream leader: %v %+v", err, si)
	}
	_, ranA0 := a.inv.counts()
	_, ranB0 := b.inv.counts()
	killed := time.Now()
	if !c.kill(si.Cluster.Leader) {
		t.Fatalf("no server %s", si.Cluster.Leader)
	}
	t.Logf("SIGKILLed NATS server %s (the stream's leader) after %d accepted", si.Cluster.Leader, len(accepted))
	// Both replicas go on working: each runs 20 more events.
	resumed := map[string]time.Duration{}
	waitUntil(t, "both replicas running events again", func() bool {
		_, ranA := a.inv.counts()
		_, ranB := b.inv.counts()
		for name, more := range map[string]bool{"A": ranA >= ranA0+20, "B": ranB >= ranB0+20} {
			if _, ok := resumed[name]; more && !ok {
				resumed[name] = time.Since(killed)
			}
		}
		return len(resumed) == 2
	})
	t.Logf("20 more events run on A %s and on B %s after the SIGKILL",
		resumed["A"].Round(time.Millisecond), resumed["B"].Round(time.Millisecond))

	waitUntil(t, "1300 accepted and replica B busy", func() bool {
		inFlight, _ := b.inv.counts()
		return len(accepted) >= 1300 && inFlight > 0
	})
	inFlight, ranOnB := b.inv.counts()
	mu.Lock()
	alive = []*activatorReplica{a}
	mu.Unlock()
	b.kill()
	t.Logf("killed replica B after %d accepted, with %d invocations in flight (%d run there before)", len(accepted), inFlight, ranOnB)

	wg.Wait()
	close(accepted)
	ids := []string{}
	for id := range accepted {
		ids = append(ids, id)
	}
	waitUntil(t, "every accepted event run", func() bool {
		for _, id := range ids {
			if ran.count(id) == 0 {
				return false
			}
		}
		return true
	})
	waitPending(t, a.q, 0)
	_, ranOnA := a.inv.counts()
	distinct, invocations := ran.totals()
	t.Logf("%d accepted, all run: %d invocations (%d on A, %d on B), %d duplicates; %d enqueue attempts failed and were sent again; slowest enqueue %s",
		len(ids), invocations, ranOnA, ranOnB, invocations-distinct, refusals, slowest.Round(time.Millisecond))
	if len(ids) != durabilityEvents || ranOnA == 0 || ranOnB == 0 {
		t.Fatalf("%d accepted, %d run on A, %d on B: both replicas should have shared the work", len(ids), ranOnA, ranOnB)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestQueueSetupWithoutAJetStreamLeaderFails: a server of a cluster whose peers are all
// down has no JetStream leader; NewQueue retries for SetupPatience, then fails saying so,
// rather than hanging.
func TestQueueSetupWithoutAJetStreamLeaderFails(t *testing.T) {
	ports := freePorts(t, 3)
	s, err := server.NewServer(clusterNode(natsNode{Name: "alone", ClientPort: -1, ClusterPort: ports[0], StoreDir: t.TempDir(),
		Routes: fmt.Sprintf("nats://127.0.0.1:%d,nats://127.0.0.1:%d", ports[1], ports[2])}))
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	t.Cleanup(s.Shutdown)
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	start := time.Now()
	_, err = NewQueue(context.Background(), nc, QueueOptions{Replicas: 3, Limits: clusterLimits, SetupPatience: time.Second})
	if err == nil || !strings.Contains(err.Error(), "did not answer within 1s") {
		t.Fatalf("NewQueue without a JetStream leader: %v", err)
	}
	if took := time.Since(start); took > 15*time.Second {
		t.Fatalf("NewQueue took %s to give up (patience 1s)", took)
	}
	t.Logf("refused after %s: %v", time.Since(start).Round(time.Millisecond), err)
}
