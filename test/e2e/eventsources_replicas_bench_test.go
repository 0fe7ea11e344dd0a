//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

var (
	esmReplicasRecords    = flag.Int("esmreplicas.records", 1000000, "BenchmarkKafkaPollerReplicas: records per drain")
	esmReplicasPartitions = flag.String("esmreplicas.partitions", "4", "BenchmarkKafkaPollerReplicas: partitions of each topic; several counts, comma-separated (e.g. 4,16), each drained in every round")
	esmReplicasRounds     = flag.Int("esmreplicas.rounds", 2, "BenchmarkKafkaPollerReplicas: rounds (each: a drain by one poller replica and one by two, alternating which goes first)")
)

// BenchmarkKafkaPollerReplicas: issue 22's replica figure. On the local cluster, the chart's
// pollers (Deployment klambda-eventsources, scaled to one replica, then two, and back to
// what it was) drain a Kafka mapping (batch size 100, window 0) invoking a function that
// returns at once (examples/hello-go: aws-lambda-go, its event decoded into a struct of one
// field) through the activator. The broker is kfake in this process, on the node's IP (as
// TestEventSourceMappings), with -esmreplicas.partitions partitions per topic. Each drain
// has its own topic and mapping (a new consumer group): the mapping is created on the empty
// topic, the drain starts once the group is Stable with one member per replica and every
// partition assigned, and then -esmreplicas.records records (256-byte values, round robin
// over the partitions) are produced; the drain ends when the group has committed all of
// them (the pollers commit every second, so the figure includes up to a second of that).
// Target (issue 22): two replicas ≥ 0.9× twice one replica's records/s, or the 2-core
// ceiling named: the CPU per record of the pollers, the activator, the function's pods (cgroup
// cpuacct of each pod) and this process (broker and producer) is measured over each drain,
// and the ceiling is the host's cores over that sum.
//
//	make bench-eventsources-replicas   # go test -tags e2e -run '^$' -bench KafkaPollerReplicas -benchtime 1x ./test/e2e/
func BenchmarkKafkaPollerReplicas(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	if !cluster.Local {
		b.Skip("needs the local cluster (the broker on the node's IP, pods' cgroups on this host)")
	}
	n := *esmReplicasRecords
	counts, err := partitionCounts(*esmReplicasPartitions)
	if err != nil || n < 1000 || *esmReplicasRounds < 1 {
		b.Fatalf("-esmreplicas.records %d (at least 1000), -esmreplicas.partitions %q (%v), -esmreplicas.rounds %d (at least 1)", n, *esmReplicasPartitions, err, *esmReplicasRounds)
	}
	if err := cluster.WaitForPollers(ctx); err != nil {
		b.Fatal(err)
	}
	dep := pollerDeployment(ctx, b)
	orig := ptr.Deref(dep.Spec.Replicas, 1)
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		scalePollers(ctx, b, orig)
	})

	ns := cluster.Namespace(b)
	fn := cluster.HelloGoFunction(ctx, b, ns, "sink")
	if err := cluster.Client.Create(ctx, fn); err != nil {
		b.Fatal(err)
	}
	if _, err := cluster.WaitForFunctionActive(ctx, ns, fn.Name, 3*time.Minute); err != nil {
		b.Fatal(err)
	}
	checkPollersMayInvoke(ctx, b, ns, fn.Name)
	grantMappings(ctx, b, ns, fn.Name)
	env := &esmEnv{ns: ns, fn: fn.Name}

	ip, err := cluster.NodeIP()
	if err != nil {
		b.Fatal(err)
	}
	// Per partition count, a warm-up topic and one topic per drain.
	topics := map[int32][]string{}
	for _, parts := range counts {
		ts := []string{fmt.Sprintf("p%d-warm", parts)}
		for i := 0; i < 2**esmReplicasRounds; i++ {
			ts = append(ts, fmt.Sprintf("p%d-drain-%d", parts, i))
		}
		topics[int32(parts)] = ts
	}
	k := startKafkaTopics(b, ip, topics)
	prod, err := kgo.NewClient(kgo.SeedBrokers(k.addr), kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.MaxBufferedRecords(20000))
	if err != nil {
		b.Fatal(err)
	}
	defer prod.Close()
	value := make([]byte, 256)
	_, _ = rand.Read(value)
	cpu := newCPUMeter()

	drain := func(name, topic string, parts int, replicas int32, records int) drainResult {
		scalePollers(ctx, b, replicas)
		restarts := pollerRestarts(ctx, b)
		spec := kafkaSpec(k, topic)
		spec.BatchSize = ptr.To[int32](100)
		spec.MaximumBatchingWindowInSeconds = ptr.To[int32](0)
		esm := env.mapping(ctx, b, name, spec)
		group := esm.Status.UUID
		if err := waitGroupAssigned(ctx, k.cl, group, int(replicas), parts); err != nil {
			b.Fatalf("%s: %v", name, err)
		}
		before := cpu.sample(ctx, b, ns)
		start := time.Now()
		for i := 0; i < records; i++ {
			prod.Produce(ctx, &kgo.Record{Topic: topic, Partition: int32(i % parts), Value: value}, func(_ *kgo.Record, err error) {
				if err != nil {
					b.Errorf("producing: %v", err)
				}
			})
		}
		if err := prod.Flush(ctx); err != nil {
			b.Fatal(err)
		}
		produced := time.Since(start)
		var samples []commitSample
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 15*time.Minute, true, func(ctx context.Context) (bool, error) {
			c, err := committedSum(ctx, k.cl, group, topic, parts)
			if err != nil {
				return false, nil
			}
			samples = append(samples, commitSample{time.Since(start), c})
			return c >= int64(records), nil
		})
		if err != nil {
			last := commitSample{}
			if len(samples) > 0 {
				last = samples[len(samples)-1]
			}
			b.Fatalf("%s: %d of %d records committed after %v: %v", name, last.committed, records, last.at, err)
		}
		took := time.Since(start)
		after := cpu.sample(ctx, b, ns)
		r := drainResult{partitions: parts, replicas: replicas, records: records, took: took, produced: produced, mid: midRate(samples, records), cpu: after.minus(before), load: loadAverage()}
		// A poller that restarted mid-drain (OOMKilled, say) left its partitions to wait
		// out its group session: the figure would measure that, not the pollers.
		if now := pollerRestarts(ctx, b); !maps.Equal(now.byPod, restarts.byPod) {
			b.Errorf("%s: the poller pods' restarts went from %v to %v during the drain (last: %s): this drain's figure is not valid", name, restarts.byPod, now.byPod, now.last)
		}
		if err := cluster.Client.Delete(ctx, esm); err != nil {
			b.Fatal(err)
		}
		if err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
			err := cluster.Client.Get(ctx, client.ObjectKeyFromObject(esm), &lambdav1alpha1.EventSourceMapping{})
			return apierrors.IsNotFound(err), nil
		}); err != nil {
			b.Fatalf("%s: mapping not deleted: %v", name, err)
		}
		b.Logf("%s: %s", name, r)
		return r
	}

	// Warm-up (not counted): the function's environments (one per partition's batch in
	// flight) are started by the activator during the first drain, of the most partitions.
	most := slices.Max(counts)
	drain(fmt.Sprintf("p%d-warm", most), fmt.Sprintf("p%d-warm", most), most, 1, n/4)
	one, two := map[int][]drainResult{}, map[int][]drainResult{}
	for round := 0; round < *esmReplicasRounds; round++ {
		order := []int32{1, 2}
		if round%2 == 1 {
			order = []int32{2, 1}
		}
		for c := range counts {
			// Partition counts alternate too: round 1 goes from the last to the first.
			parts := counts[c]
			if round%2 == 1 {
				parts = counts[len(counts)-1-c]
			}
			for i, replicas := range order {
				topic := fmt.Sprintf("p%d-drain-%d", parts, 2*round+i)
				r := drain(fmt.Sprintf("r%d-p%d-x%d", round, parts, replicas), topic, parts, replicas, n)
				if replicas == 1 {
					one[parts] = append(one[parts], r)
				} else {
					two[parts] = append(two[parts], r)
				}
			}
		}
	}

	for _, parts := range counts {
		benchReport(b, n, parts, one[parts], two[parts], len(counts) == 1)
	}
	if len(counts) > 1 {
		for _, parts := range counts[1:] {
			b.Logf("%d partitions / %d partitions, median records/s: one replica %.2fx, two replicas %.2fx", parts, counts[0],
				medianRate(one[parts])/medianRate(one[counts[0]]), medianRate(two[parts])/medianRate(two[counts[0]]))
		}
	}
}

// partitionCounts parses -esmreplicas.partitions: counts of at least 2, comma-separated,
// each once.
func partitionCounts(s string) ([]int, error) {
	var counts []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 2 {
			return nil, fmt.Errorf("partition count %q: want a number of at least 2", f)
		}
		if slices.Contains(counts, n) {
			return nil, fmt.Errorf("partition count %d given twice", n)
		}
		counts = append(counts, n)
	}
	return counts, nil
}

// benchReport logs one partition count's medians and CPU per record, and reports them as
// metrics (suffixed with the partition count when the run has several).
func benchReport(b *testing.B, n, parts int, one, two []drainResult, only bool) {
	r1, r2 := medianRate(one), medianRate(two)
	ratio := r2 / (2 * r1)
	b.Logf("%d partitions: %d rounds of %d records (kfake in the test process), batch size 100, host: %d cores", parts, len(one), n, runtime.NumCPU())
	b.Logf("%d partitions: one replica: median %.0f records/s; two replicas: median %.0f records/s (%.2fx one); two / (2 × one) = %.2fx (target ≥ 0.9x)", parts, r1, r2, r2/r1, ratio)
	for _, set := range []struct {
		name string
		rs   []drainResult
	}{{"one replica", one}, {"two replicas", two}} {
		c := medianCPU(set.rs)
		all := c.total()
		ceiling := float64(runtime.NumCPU()) / all.Seconds()
		cores, busy := make([]float64, len(set.rs)), make([]float64, len(set.rs))
		for i, r := range set.rs {
			cores[i], busy[i] = r.cores(), r.cpu.busyCores()
		}
		b.Logf("%d partitions, %s, CPU per record (medians): pollers %s, activator %s, function %s, broker+producer %s: %s in all; the drains' parts used %.2f cores (median) while the host was busy %.2f of %d; "+
			"all %d cores at that cost: %.0f records/s = %.2fx twice one replica's rate, which needs %.2f cores",
			parts, set.name, perRecordString(c.pollers), perRecordString(c.activator), perRecordString(c.function), perRecordString(c.self), perRecordString(all),
			medianFloat(cores), medianFloat(busy), runtime.NumCPU(), runtime.NumCPU(), ceiling, ceiling/(2*r1), 2*r1*all.Seconds())
	}
	suffix := ""
	if !only {
		suffix = fmt.Sprintf("-p%d", parts)
	}
	b.ReportMetric(r1, "records/s-1-replica"+suffix)
	b.ReportMetric(r2, "records/s-2-replicas"+suffix)
	b.ReportMetric(ratio, "ratio-to-twice-one"+suffix)
}

// restartCount is the restarts so far of each poller pod's containers (by pod name), and
// the last termination's reason.
type restartCount struct {
	byPod map[string]int32
	last  string
}

// pollerRestarts reads the restarts of the poller pods' containers.
func pollerRestarts(ctx context.Context, t testing.TB) restartCount {
	t.Helper()
	var pods corev1.PodList
	if err := cluster.Client.List(ctx, &pods, client.MatchingLabels{"app.kubernetes.io/component": "eventsources"}); err != nil {
		t.Fatal(err)
	}
	rc := restartCount{byPod: map[string]int32{}}
	for _, p := range pods.Items {
		rc.byPod[p.Name] = 0 // a pod without container statuses yet is listed too
		for _, s := range p.Status.ContainerStatuses {
			rc.byPod[p.Name] += s.RestartCount
			if term := s.LastTerminationState.Terminated; term != nil {
				rc.last = fmt.Sprintf("%s/%s: %s, exit %d at %s", p.Name, s.Name, term.Reason, term.ExitCode, term.FinishedAt.UTC().Format(time.TimeOnly))
			}
		}
	}
	return rc
}

// pollerDeployment is the chart's pollers' Deployment.
func pollerDeployment(ctx context.Context, t testing.TB) *appsv1.Deployment {
	t.Helper()
	var deps appsv1.DeploymentList
	if err := cluster.Client.List(ctx, &deps, client.MatchingLabels{"app.kubernetes.io/component": "eventsources"}); err != nil {
		t.Fatal(err)
	}
	if len(deps.Items) != 1 {
		t.Fatalf("%d Deployments labelled app.kubernetes.io/component=eventsources, want 1", len(deps.Items))
	}
	return &deps.Items[0]
}

// scalePollers sets the pollers' Deployment to n replicas (as kubectl scale would) and waits
// until exactly n poller pods exist, all Ready (none still terminating).
func scalePollers(ctx context.Context, t testing.TB, n int32) {
	t.Helper()
	dep := pollerDeployment(ctx, t)
	if ptr.Deref(dep.Spec.Replicas, 1) != n {
		patch := client.MergeFrom(dep.DeepCopy())
		dep.Spec.Replicas = ptr.To(n)
		if err := cluster.Client.Patch(ctx, dep, patch); err != nil {
			t.Fatalf("scaling the pollers to %d: %v", n, err)
		}
	}
	var seen []string
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		var pods corev1.PodList
		if err := cluster.Client.List(ctx, &pods, client.InNamespace(dep.Namespace), client.MatchingLabels{"app.kubernetes.io/component": "eventsources"}); err != nil {
			return false, nil
		}
		seen = seen[:0]
		ready := 0
		for i := range pods.Items {
			p := &pods.Items[i]
			seen = append(seen, p.Name+": "+podSummary(p))
			if p.DeletionTimestamp == nil && podReady(p) {
				ready++
			}
		}
		return len(pods.Items) == int(n) && ready == int(n), nil
	})
	if err != nil {
		t.Fatalf("pollers scaled to %d: pods %q: %v", n, seen, err)
	}
}

// waitGroupAssigned waits until the consumer group is Stable with members members, each
// assigned at least one partition, and partitions partitions assigned in all.
func waitGroupAssigned(ctx context.Context, cl *kgo.Client, group string, members, partitions int) error {
	var last string
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		req := kmsg.NewPtrDescribeGroupsRequest()
		req.Groups = []string{group}
		resp, err := req.RequestWith(ctx, cl)
		if err != nil || len(resp.Groups) != 1 {
			last = fmt.Sprint(err)
			return false, nil
		}
		g := resp.Groups[0]
		assigned, each := 0, true
		for _, m := range g.Members {
			var a kmsg.ConsumerMemberAssignment
			if err := a.ReadFrom(m.MemberAssignment); err != nil {
				each = false
				continue
			}
			mine := 0
			for _, tp := range a.Topics {
				mine += len(tp.Partitions)
			}
			each = each && mine > 0
			assigned += mine
		}
		last = fmt.Sprintf("state %s, %d members, %d partitions assigned", g.State, len(g.Members), assigned)
		return g.State == "Stable" && len(g.Members) == members && each && assigned == partitions, nil
	})
	if err != nil {
		return fmt.Errorf("group %s: want Stable with %d members sharing %d partitions, last %s: %w", group, members, partitions, last, err)
	}
	return nil
}

// committedSum is the group's committed offsets of topic's partitions, added up (none
// committed counts 0).
func committedSum(ctx context.Context, cl *kgo.Client, group, topic string, partitions int) (int64, error) {
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Group = group
	rt := kmsg.NewOffsetFetchRequestTopic()
	rt.Topic = topic
	for p := 0; p < partitions; p++ {
		rt.Partitions = append(rt.Partitions, int32(p))
	}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return 0, err
	}
	if err := kerrOf(resp.ErrorCode); err != nil {
		return 0, err
	}
	var sum int64
	for _, rt := range resp.Topics {
		for _, p := range rt.Partitions {
			if err := kerrOf(p.ErrorCode); err != nil {
				return 0, err
			}
			if p.Offset > 0 {
				sum += p.Offset
			}
		}
	}
	return sum, nil
}

func kerrOf(code int16) error {
	if code != 0 {
		return fmt.Errorf("kafka error code %d", code)
	}
	return nil
}

type commitSample struct {
	at        time.Duration
	committed int64
}

// midRate is the commit rate between the first samples at 10 % and at 90 % of records.
func midRate(samples []commitSample, records int) float64 {
	var from, to *commitSample
	for i := range samples {
		s := &samples[i]
		if from == nil && s.committed >= int64(records)/10 {
			from = s
		}
		if to == nil && s.committed >= int64(records)*9/10 {
			to = s
		}
	}
	if from == nil || to == nil || to.at <= from.at {
		return 0
	}
	return float64(to.committed-from.committed) / (to.at - from.at).Seconds()
}

type drainResult struct {
	partitions     int
	replicas       int32
	records        int
	took, produced time.Duration
	mid            float64
	cpu            cpuUse
	load           string
}

func (r drainResult) rate() float64 { return float64(r.records) / r.took.Seconds() }

// cores is how many cores the drain's parts (pollers, activator, function, this process)
// used on average.
func (r drainResult) cores() float64 { return r.cpu.total().Seconds() / r.took.Seconds() }

func (r drainResult) String() string {
	c := r.cpu.perRecord(r.records)
	return fmt.Sprintf("%d partitions, %d replica(s): %d records committed in %v (produced in %v): %.0f records/s (%.0f/s from 10%% to 90%% committed); "+
		"CPU per record: pollers %s, activator %s, function %s, broker+producer %s (%s in all); these parts used %.2f cores, the host was busy %.2f of %d; load %s",
		r.partitions, r.replicas, r.records, r.took.Round(time.Millisecond), r.produced.Round(time.Millisecond), r.rate(), r.mid,
		perRecordString(c.pollers), perRecordString(c.activator), perRecordString(c.function), perRecordString(c.self), perRecordString(c.total()),
		r.cores(), r.cpu.busyCores(), runtime.NumCPU(), r.load)
}

func medianRate(rs []drainResult) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = r.rate()
	}
	return medianFloat(v)
}

// medianCPU is the per-record CPU of rs, each part's median.
func medianCPU(rs []drainResult) cpuUse {
	parts := func(f func(cpuUse) time.Duration) time.Duration {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = float64(f(r.cpu.perRecord(r.records)))
		}
		return time.Duration(medianFloat(v))
	}
	return cpuUse{
		pollers:   parts(func(c cpuUse) time.Duration { return c.pollers }),
		activator: parts(func(c cpuUse) time.Duration { return c.activator }),
		function:  parts(func(c cpuUse) time.Duration { return c.function }),
		self:      parts(func(c cpuUse) time.Duration { return c.self }),
	}
}

func medianFloat(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	sort.Float64s(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// perRecordString prints a per-record duration in µs with two decimals.
func perRecordString(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/1e3, 'f', 2, 64) + "µs"
}

// cpuUse is CPU time spent by the parts of a drain (or per record: perRecord), and the
// host's busy and total jiffies over it.
type cpuUse struct {
	pollers, activator, function, self time.Duration
	busy, all                          uint64
}

func (c cpuUse) total() time.Duration { return c.pollers + c.activator + c.function + c.self }

func (c cpuUse) perRecord(n int) cpuUse {
	d := time.Duration(n)
	return cpuUse{pollers: c.pollers / d, activator: c.activator / d, function: c.function / d, self: c.self / d}
}

// busyCores is how many of the host's cores were busy on average (all processes: this
// run's and everyone else's).
func (c cpuUse) busyCores() float64 {
	if c.all == 0 {
		return 0
	}
	return float64(c.busy) / float64(c.all) * float64(runtime.NumCPU())
}

// cpuMeter reads the CPU time of pods from their cgroups on this host (the local cluster's
// node), and of this process and the host from /proc.
type cpuMeter struct {
	cgroups map[string]string // pod UID → its cgroup folder
}

func newCPUMeter() *cpuMeter { return &cpuMeter{cgroups: map[string]string{}} }

// cpuSample is the CPU used so far by each pod measured (by UID: which part, how much),
// by this process, and by the host.
type cpuSample struct {
	pods      map[string]podUse
	self      time.Duration
	busy, all uint64
}

type podUse struct {
	part string // "pollers", "activator", "function"
	cpu  time.Duration
}

// minus is what happened between o and s: a pod's CPU since o (all of it for a pod that
// started since), a pod gone since o left out.
func (s cpuSample) minus(o cpuSample) cpuUse {
	u := cpuUse{self: s.self - o.self, busy: s.busy - o.busy, all: s.all - o.all}
	for uid, p := range s.pods {
		d := p.cpu - o.pods[uid].cpu
		switch p.part {
		case "pollers":
			u.pollers += d
		case "activator":
			u.activator += d
		default:
			u.function += d
		}
	}
	return u
}

// sample reads the CPU used so far by the poller pods, the activator pods, the pods of ns
// (the function's), this process, and the host.
func (m *cpuMeter) sample(ctx context.Context, t testing.TB, ns string) cpuSample {
	t.Helper()
	s := cpuSample{pods: map[string]podUse{}}
	add := func(part string, opts ...client.ListOption) {
		var pods corev1.PodList
		if err := cluster.Client.List(ctx, &pods, opts...); err != nil {
			t.Fatal(err)
		}
		for _, p := range pods.Items {
			if p.Status.Phase != corev1.PodRunning {
				continue
			}
			c, err := m.podCPU(string(p.UID))
			if err != nil {
				t.Fatalf("pod %s/%s: %v", p.Namespace, p.Name, err)
			}
			s.pods[string(p.UID)] = podUse{part, c}
		}
	}
	add("pollers", client.MatchingLabels{"app.kubernetes.io/component": "eventsources"})
	add("activator", client.MatchingLabels{"app.kubernetes.io/component": "activator"})
	add("function", client.InNamespace(ns))
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	s.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	var err error
	if s.busy, s.all, err = hostJiffies(); err != nil {
		t.Fatal(err)
	}
	return s
}

// podCPU is the CPU time of the pod's cgroup (cgroup v1 cpuacct, or v2 cpu.stat).
func (m *cpuMeter) podCPU(uid string) (time.Duration, error) {
	dir, ok := m.cgroups[uid]
	if !ok {
		var err error
		if dir, err = podCgroup(uid); err != nil {
			return 0, err
		}
		m.cgroups[uid] = dir
	}
	if b, err := os.ReadFile(filepath.Join(dir, "cpuacct.usage")); err == nil {
		ns, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		return time.Duration(ns), err
	}
	f, err := os.Open(filepath.Join(dir, "cpu.stat"))
	if err != nil {
		return 0, fmt.Errorf("cgroup %s: neither cpuacct.usage nor cpu.stat: %w", dir, err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "usage_usec "); ok {
			us, err := strconv.ParseInt(v, 10, 64)
			return time.Duration(us) * time.Microsecond, err
		}
	}
	return 0, fmt.Errorf("cgroup %s: no usage_usec in cpu.stat", dir)
}

// podCgroup is the folder of a pod's cgroup on this host (the local cluster's node), in the
// hierarchy that accounts CPU: cgroup v1's cpuacct, else v2's. It is found by the pod's UID
// in the folder's name (cgroupfs driver: pod<uid>; systemd: ...pod<uid with _>.slice).
func podCgroup(uid string) (string, error) {
	alt := strings.ReplaceAll(uid, "-", "_")
	for _, root := range []string{"/sys/fs/cgroup/cpuacct", "/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/unified", "/sys/fs/cgroup"} {
		dir := ""
		_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			if strings.Count(strings.TrimPrefix(path, root), "/") > 4 {
				return fs.SkipDir
			}
			if name := d.Name(); strings.Contains(name, uid) || strings.Contains(name, alt) {
				dir = path
				return fs.SkipAll
			}
			return nil
		})
		if dir != "" {
			return dir, nil
		}
	}
	return "", fmt.Errorf("no cgroup of pod UID %s under /sys/fs/cgroup", uid)
}

// hostJiffies is the host's busy and total CPU time so far (/proc/stat's cpu line).
func hostJiffies() (busy, all uint64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, 0, errors.New("/proc/stat: no cpu line")
	}
	for i, s := range f[1:] {
		if i >= 8 { // guest time is counted in user already
			break
		}
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, 0, err
		}
		all += v
		if i != 3 && i != 4 { // idle, iowait
			busy += v
		}
	}
	return busy, all, nil
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
