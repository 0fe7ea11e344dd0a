package kafka_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/klambda/klambda/eventsources/batch"
	"github.com/klambda/klambda/eventsources/events"
	"github.com/klambda/klambda/eventsources/invokeclient"
	"github.com/klambda/klambda/eventsources/invokeclient/invoketest"
	"github.com/klambda/klambda/eventsources/kafka"
	"github.com/klambda/klambda/eventsources/poller"
)

// network is a replica's network: kill closes every connection it has to the broker and
// refuses new ones, as when its process dies (no LeaveGroup, no last commit reaches the
// broker).
type network struct {
	mu    sync.Mutex
	conns []net.Conn
	dead  bool
}

func (n *network) dial(ctx context.Context, network, host string) (net.Conn, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.dead {
		return nil, errors.New("killed")
	}
	c, err := (&net.Dialer{}).DialContext(ctx, network, host)
	if err == nil {
		n.conns = append(n.conns, c)
	}
	return c, err
}

func (n *network) kill() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.dead = true
	for _, c := range n.conns {
		_ = c.Close()
	}
}

// Two poller replicas share a topic's partitions (kfake, the franz-go project's in-process
// Kafka, not a real broker); one is killed mid-stream: its connections to the broker cut
// and its poller cancelled, without leaving the group or committing. Its partitions move
// to the other only when its group session times out, and from what it last committed:
// every record reaches the function at least once, and per partition the function sees the
// records in order (a replay restarts at an earlier offset and goes on in order, never
// skipping one), never two invocations of a partition at once.
func TestKilledReplicaPartitionsMoveAfterSessionTimeoutWithoutSkipping(t *testing.T) {
	const parts, perPart = 4, 600
	const sessionTimeout = 6 * time.Second // kfake's minimum
	type invocation struct {
		replica string
		offsets []int64
		at      time.Time
	}
	var (
		mu       sync.Mutex
		inFlight = map[string]int{}
		byPart   = map[string][]invocation{}
		problems []string
	)
	e := newEnv(t, parts, nil)
	e.fake.SetHandler(func(c invoketest.Call) invoketest.Outcome {
		var ev events.KafkaEvent
		if err := json.Unmarshal(c.Payload, &ev); err != nil {
			t.Error(err)
			return invoketest.Outcome{}
		}
		mu.Lock()
		for p, recs := range ev.Records {
			inFlight[p]++
			if inFlight[p] > 1 {
				problems = append(problems, fmt.Sprintf("two invocations of %s at once", p))
			}
			inv := invocation{replica: c.Token, at: time.Now()}
			for _, r := range recs {
				inv.offsets = append(inv.offsets, r.Offset)
			}
			byPart[p] = append(byPart[p], inv)
		}
		mu.Unlock()
		time.Sleep(30 * time.Millisecond) // batches are in flight when the replica dies
		mu.Lock()
		for p := range ev.Records {
			inFlight[p]--
		}
		mu.Unlock()
		return invoketest.Outcome{}
	})
	produceAll := func(from, to int) {
		for p := range int32(parts) {
			var recs []*kgo.Record
			for i := from; i < to; i++ {
				recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Value: []byte(fmt.Sprint(i))})
			}
			if err := e.prod.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	start := func(name string, nw *network) (cancel func()) {
		src, err := kafka.Open(kafka.Config{BootstrapServers: e.addrs, Topic: topic, Group: "shared", FromStart: true, CommitInterval: 100 * time.Millisecond,
			Extra: []kgo.Opt{kgo.Dialer(nw.dial), kgo.HeartbeatInterval(100 * time.Millisecond), kgo.SessionTimeout(sessionTimeout), kgo.RebalanceTimeout(10 * time.Second)}})
		if err != nil {
			t.Fatal(err)
		}
		p := poller.New(poller.Config{Namespace: "ns", Name: "esm", Function: "fn", BatchSize: 10, Policy: batch.DefaultStreamPolicy()},
			src, invokeclient.NewHTTPInvoker(e.fake.URL, invokeclient.StaticToken(name), nil), testr.New(t))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = p.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
		return cancel
	}
	owners := func() map[string]string { // partition → replica of its last invocation
		mu.Lock()
		defer mu.Unlock()
		o := map[string]string{}
		for p, invs := range byPart {
			o[p] = invs[len(invs)-1].replica
		}
		return o
	}
	produceAll(0, perPart/2)
	netA, netB := &network{}, &network{}
	cancelA := start("A", netA)
	eventually(t, "A invoking", func() bool { return len(owners()) > 0 })
	start("B", netB)
	eventually(t, "both replicas invoking", func() bool {
		n := map[string]int{}
		for _, r := range owners() {
			n[r]++
		}
		return n["A"] > 0 && n["B"] > 0
	})
	time.Sleep(200 * time.Millisecond)
	var fromA []string
	for p, r := range owners() {
		if r == "A" {
			fromA = append(fromA, p)
		}
	}
	netA.kill()
	cancelA()
	killed := time.Now()
	produceAll(perPart/2, perPart)
	deadline := time.Now().Add(sessionTimeout + 30*time.Second)
	for p := range int32(parts) {
		for e.committed("shared", p) != perPart {
			if time.Now().After(deadline) {
				t.Fatalf("partition %d committed to %d, want %d", p, e.committed("shared", p), perPart)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, p := range problems {
		t.Error(p)
	}
	replays := 0
	for p := range int32(parts) {
		k := events.KafkaPartitionKey(topic, p)
		seen := map[int64]bool{}
		next := int64(0) // the offset after the highest seen so far
		for _, inv := range byPart[k] {
			for i, o := range inv.offsets {
				if i > 0 && o != inv.offsets[i-1]+1 {
					t.Errorf("%s: invocation by %s out of order: %v", k, inv.replica, inv.offsets)
					break
				}
			}
			first := inv.offsets[0]
			switch {
			case first > next:
				t.Errorf("%s: offsets %d..%d skipped (invocation by %s starts at %d)", k, next, first-1, inv.replica, first)
			case first < next:
				replays++
				if inv.replica != "B" || inv.at.Before(killed) {
					t.Errorf("%s: replay from %d by %s before the kill", k, first, inv.replica)
				}
			}
			for _, o := range inv.offsets {
				seen[o] = true
			}
			next = max(next, inv.offsets[len(inv.offsets)-1]+1)
		}
		if len(seen) != perPart {
			t.Errorf("%s: %d distinct records reached the function, want %d", k, len(seen), perPart)
		}
	}
	// A's partitions went to B only when A's session timed out: A did not leave the group.
	if len(fromA) == 0 {
		t.Error("A held no partition when killed")
	}
	for _, k := range fromA {
		moved := false
		for _, inv := range byPart[k] {
			if inv.replica == "B" && inv.at.After(killed) {
				d := inv.at.Sub(killed)
				t.Logf("%s moved to B %v after the kill", k, d.Round(time.Millisecond))
				if d < sessionTimeout/2 {
					t.Errorf("%s moved to B %v after the kill: A left the group instead of dying", k, d)
				}
				moved = true
				break
			}
		}
		if !moved {
			t.Errorf("%s never moved to B", k)
		}
	}
	t.Logf("A held %v when killed; %d replayed invocations after the hand-over", fromA, replays)
}
