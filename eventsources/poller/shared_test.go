package poller

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"

	"github.com/klambda/klambda/api/contract"
	"github.com/klambda/klambda/eventsources/batch"
	"github.com/klambda/klambda/eventsources/events"
	"github.com/klambda/klambda/eventsources/invokeclient/invoketest"
)

// groupSource is an in-memory stream of several partitions whose event may hold several
// (a PartitionGrouper and a Rebalancer, as the Kafka source): records fetched once,
// checkpoints recorded per partition.
type groupSource struct {
	memSource
	cpm         map[string]int64
	onRebalance func(assigned bool, partitions []string)
}

func (g *groupSource) GroupsPartitions() bool { return true }
func (g *groupSource) OnRebalance(f func(assigned bool, partitions []string)) {
	g.mu.Lock()
	g.onRebalance = f
	g.mu.Unlock()
}
func (g *groupSource) revoke(partitions ...string) {
	g.mu.Lock()
	f := g.onRebalance
	g.mu.Unlock()
	f(false, partitions)
}
func (g *groupSource) Settle(_ context.Context, s Settlement) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	for p, off := range s.Checkpoints {
		g.cpm[p] = off
	}
	return nil
}
func (g *groupSource) checkpointOf(p string) int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	if off, ok := g.cpm[p]; ok {
		return off
	}
	return -1
}

func gmsg(partition string, off int64, size int) Message {
	return Message{Record: batch.Record{ID: partition + strconv.FormatInt(off, 10), Partition: partition, Offset: off, Size: size, Timestamp: time.Now()}}
}

func ids(payload []byte) string {
	var out []string
	_ = json.Unmarshal(payload, &out)
	return strings.Join(out, ",")
}

func runPoller(t *testing.T, cfg Config, src Source, fake *invoketest.Server) *Poller {
	t.Helper()
	cfg.Namespace, cfg.Name, cfg.Function = "ns", "shared", "fn"
	p := New(cfg, src, fake.Invoker(), testr.New(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return p
}

// A batch of two partitions whose first invocation fails while one partition is revoked is
// not retried: the revoked partition's records are dropped (its next owner reads them), the
// other partition's go again, in order, in a later batch, and its checkpoint moves.
func TestARevokedPartitionsBatchGivesTheOtherPartitionsRecordsBack(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{})
	var once sync.Once
	fake := invoketest.New(func(c invoketest.Call) invoketest.Outcome {
		first := false
		once.Do(func() { first = true })
		if first {
			close(started)
			<-release
			return invoketest.Outcome{FunctionError: "Unhandled", Body: []byte(`{"errorMessage":"no"}`)}
		}
		return invoketest.Outcome{}
	})
	defer fake.Close()
	src := &groupSource{memSource: memSource{pending: []Message{gmsg("a", 0, 10), gmsg("a", 1, 10), gmsg("b", 0, 10), gmsg("b", 1, 10)}}, cpm: map[string]int64{}}
	runPoller(t, Config{BatchSize: 10, Window: 100 * time.Millisecond, Policy: batch.DefaultStreamPolicy()}, src, fake)
	<-started
	revoked := make(chan struct{})
	go func() { src.revoke("a"); close(revoked) }()
	select {
	case <-revoked:
		t.Fatal("the revocation did not wait for the invocation in flight")
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	<-revoked
	wait(t, "b's checkpoint", func() bool { return src.checkpointOf("b") == 1 })
	calls := fake.Calls()
	if len(calls) != 2 || ids(calls[0].Payload) != "a0,a1,b0,b1" || ids(calls[1].Payload) != "b0,b1" {
		var got []string
		for _, c := range calls {
			got = append(got, ids(c.Payload))
		}
		t.Errorf("invocations %v, want [a0,a1,b0,b1] then [b0,b1]", got)
	}
	if cp := src.checkpointOf("a"); cp != -1 {
		t.Errorf("revoked partition a checkpointed at %d", cp)
	}
}

// With parallelizationFactor a partition's lanes share batches, and a revocation takes all
// of them: a failing batch of two partitions, two lanes each, stopped by revoking one
// partition, gives the other partition's records back to their own lanes, and they go
// again.
func TestARevokedPartitionsLanesInASharedBatch(t *testing.T) {
	cfg := Config{BatchSize: 10, Lanes: 2, Window: 100 * time.Millisecond, Policy: batch.DefaultStreamPolicy()}
	// Two keys in different lanes.
	lanes := &Poller{cfg: cfg}
	keys := []string{"k0"}
	for i := 1; len(keys) < 2; i++ {
		k := "k" + strconv.Itoa(i)
		if lanes.laneKey(Message{Key: k, Record: batch.Record{Partition: "a"}}) != lanes.laneKey(Message{Key: keys[0], Record: batch.Record{Partition: "a"}}) {
			keys = append(keys, k)
		}
	}
	keyed := func(partition string, off int64, key string) Message {
		m := gmsg(partition, off, 10)
		m.Key = key
		return m
	}
	release := make(chan struct{})
	started := make(chan struct{})
	var once sync.Once
	fake := invoketest.New(func(c invoketest.Call) invoketest.Outcome {
		first := false
		once.Do(func() { first = true })
		if first {
			close(started)
			<-release
			return invoketest.Outcome{FunctionError: "Unhandled", Body: []byte(`{"errorMessage":"no"}`)}
		}
		return invoketest.Outcome{}
	})
	defer fake.Close()
	src := &groupSource{memSource: memSource{pending: []Message{keyed("a", 0, keys[0]), keyed("a", 1, keys[1]), keyed("b", 0, keys[0]), keyed("b", 1, keys[1])}}, cpm: map[string]int64{}}
	runPoller(t, cfg, src, fake)
	<-started
	revoked := make(chan struct{})
	go func() { src.revoke("a"); close(revoked) }()
	select {
	case <-revoked:
		t.Fatal("the revocation did not wait for the invocation in flight")
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	<-revoked
	wait(t, "b's checkpoint", func() bool { return src.checkpointOf("b") == 1 })
	calls := fake.Calls()
	var got []string
	for _, c := range calls {
		got = append(got, ids(c.Payload))
	}
	// b's two lanes are independent: their records may come back in either order.
	if len(got) != 2 || got[0] != "a0,a1,b0,b1" || (got[1] != "b0,b1" && got[1] != "b1,b0") {
		t.Errorf("invocations %v, want [a0,a1,b0,b1] then b0 and b1", got)
	}
	if cp := src.checkpointOf("a"); cp != -1 {
		t.Errorf("revoked partition a checkpointed at %d", cp)
	}
}

// A record too large for any invocation waits for its partition's earlier records' batch,
// goes to the on-failure destination, and its partition goes on after it; other
// partitions are not held back.
func TestARecordOverThePayloadLimitInASharedBatch(t *testing.T) {
	fake := invoketest.New(nil)
	defer fake.Close()
	dest := &orderDest{calls: fake.CallCount}
	src := &groupSource{memSource: memSource{pending: []Message{gmsg("a", 0, 10), gmsg("a", 1, contract.MaxSyncPayload), gmsg("a", 2, 10), gmsg("b", 0, 10)}}, cpm: map[string]int64{}}
	runPoller(t, Config{BatchSize: 10, Window: 100 * time.Millisecond, Policy: batch.DefaultStreamPolicy(), OnFailure: dest}, src, fake)
	wait(t, "checkpoints", func() bool { return src.checkpointOf("a") == 2 && src.checkpointOf("b") == 0 })
	var got []string
	for _, c := range fake.Calls() {
		got = append(got, ids(c.Payload))
	}
	if strings.Join(got, "|") != "a0,b0|a2" {
		t.Errorf("invocations %v, want [a0,b0] then [a2]", got)
	}
	dest.mu.Lock()
	defer dest.mu.Unlock()
	var rec events.OnFailureRecord
	if len(dest.sent) != 1 || json.Unmarshal(dest.sent[0], &rec) != nil || rec.RequestContext.Condition != events.ConditionMaximumPayloadSizeExceeded {
		t.Fatalf("on-failure records %q", dest.sent)
	}
	if dest.callsBefore[0] != 1 {
		t.Errorf("a1 went to the destination after %d invocations, want 1 (after a0's, before a2's)", dest.callsBefore[0])
	}
}

// orderDest records on-failure records and how many invocations preceded each.
type orderDest struct {
	memDest
	calls       func() int
	callsBefore []int
}

func (d *orderDest) Send(ctx context.Context, b []byte) error {
	d.mu.Lock()
	d.callsBefore = append(d.callsBefore, d.calls())
	d.mu.Unlock()
	return d.memDest.Send(ctx, b)
}

// A worker that ends a partition's batch runs the partition's next batch itself (dispatched
// as its batch ended) instead of handing it to another goroutine: one partition's backlog
// of three batches takes one worker.
func TestAWorkerRunsTheBatchItsEndDispatched(t *testing.T) {
	fake := invoketest.New(nil)
	defer fake.Close()
	src := &groupSource{memSource: memSource{pending: []Message{gmsg("a", 0, 10), gmsg("a", 1, 10), gmsg("a", 2, 10), gmsg("a", 3, 10), gmsg("a", 4, 10), gmsg("a", 5, 10)}}, cpm: map[string]int64{}}
	p := runPoller(t, Config{BatchSize: 2, Policy: batch.DefaultStreamPolicy()}, src, fake)
	wait(t, "a's checkpoint", func() bool { return src.checkpointOf("a") == 5 })
	var got []string
	for _, c := range fake.Calls() {
		got = append(got, ids(c.Payload))
	}
	if strings.Join(got, "|") != "a0,a1|a2,a3|a4,a5" {
		t.Errorf("invocations %v, want [a0,a1] [a2,a3] [a4,a5]", got)
	}
	if n := p.shared.Load().workers.Load(); n != 1 {
		t.Errorf("%d worker goroutines started for one partition's batches, want 1", n)
	}
}
