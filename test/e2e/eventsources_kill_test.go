//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestKafkaPollerReplicaKilledMidStream: issue 22's replica test on the cluster. Two poller
// replicas (the chart's Deployment scaled to two, restored at the end) share a Kafka
// mapping's four partitions (kfake in this process, on the node's IP) and invoke a recorder
// function. Mid-stream, one replica's eventsources process is killed with SIGKILL from the
// host (no LeaveGroup, no last commit; its container restarts and joins again). Its
// partitions move only once its group session times out (franz-go's 45 s), from what it
// last committed: every record reaches the function at least once, and per partition the
// function sees the records in order (a replay restarts at an earlier offset and goes on in
// order, never skipping one); the group commits every record.
func TestKafkaPollerReplicaKilledMidStream(t *testing.T) {
	if !cluster.Local {
		t.Skip("needs the local cluster (the broker on the node's IP, the poller's process on this host)")
	}
	const parts, perPart = 4, 300
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := cluster.WaitForPollers(ctx); err != nil {
		t.Skip(err)
	}
	orig := ptr.Deref(pollerDeployment(ctx, t).Spec.Replicas, 1)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		scalePollers(ctx, t, orig)
	})
	scalePollers(ctx, t, 2)

	ns := cluster.Namespace(t)
	rec := cluster.StartRecorder(t)
	// Batches stay in flight a while, so that the kill finds some.
	rec.SetAnswer(func(RecordedCall) Answer { return Answer{Delay: 30 * time.Millisecond, Body: []byte(`{"ok":true}`)} })
	fn := cluster.RecorderFunction(t, rec, ns, "consumer")
	if err := cluster.Client.Create(ctx, fn); err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.WaitForFunctionActive(ctx, ns, fn.Name, 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	checkPollersMayInvoke(ctx, t, ns, fn.Name)
	grantMappings(ctx, t, ns, fn.Name)
	env := &esmEnv{ns: ns, fn: fn.Name, rec: rec}

	ip, err := cluster.NodeIP()
	if err != nil {
		t.Fatal(err)
	}
	const topic = "kill"
	k := startKafkaPartitions(t, ip, parts, topic)
	spec := kafkaSpec(k, topic)
	spec.BatchSize = ptr.To[int32](10)
	esm := env.mapping(ctx, t, "kill", spec)
	group := esm.Status.UUID
	if err := waitGroupAssigned(ctx, k.cl, group, 2, parts); err != nil {
		t.Fatal(err)
	}
	prod, err := kgo.NewClient(kgo.SeedBrokers(k.addr), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	for p := int32(0); p < parts; p++ {
		var recs []*kgo.Record
		for i := 0; i < perPart; i++ {
			recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Value: []byte(fmt.Sprintf("%d:%d", p, i))})
		}
		if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	// A quarter of the records in, kill one replica's process.
	rec.WaitFor(t, 3*time.Minute, "a quarter of the records", func(c []RecordedCall) bool {
		return len(kafkaDeliveries(t, c)) >= parts*perPart/4
	})
	victim, restarts := killPoller(ctx, t)
	killedAt := time.Now()
	seenAtKill := len(rec.Calls())
	t.Logf("killed the eventsources process of pod %s (restarts %d) after %d invocations", victim, restarts, seenAtKill)

	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 4*time.Minute, true, func(ctx context.Context) (bool, error) {
		c, err := committedSum(ctx, k.cl, group, topic, parts)
		return err == nil && c == parts*perPart, nil
	})
	if err != nil {
		c, _ := committedSum(ctx, k.cl, group, topic, parts)
		t.Fatalf("the group committed %d of %d records: %v", c, parts*perPart, err)
	}
	t.Logf("every record committed %v after the kill", time.Since(killedAt).Round(time.Second))

	// The killed container restarted (the kill was real) and its pod is Ready again.
	var pod corev1.Pod
	if err := cluster.Client.Get(ctx, client.ObjectKey{Namespace: pollerDeployment(ctx, t).Namespace, Name: victim}, &pod); err != nil {
		t.Fatal(err)
	}
	if got := containerRestarts(&pod); got <= restarts {
		t.Errorf("pod %s: %d restarts after the kill, %d before: the process was not killed", victim, got, restarts)
	}

	// Every record at least once; per partition in order, a replay starting at or before
	// the next unseen offset, never past it.
	deliveries := kafkaDeliveries(t, rec.Calls())
	next := map[int32]int64{}
	seen := map[int32]map[int64]bool{}
	replays := 0
	for _, d := range deliveries {
		if seen[d.partition] == nil {
			seen[d.partition] = map[int64]bool{}
		}
		if want := next[d.partition]; d.offset > want {
			t.Fatalf("partition %d: offset %d reached the function when %d was next (a record skipped)", d.partition, d.offset, want)
		} else if d.offset < want {
			replays++
		}
		if d.value != fmt.Sprintf("%d:%d", d.partition, d.offset) {
			t.Fatalf("partition %d offset %d carries %q", d.partition, d.offset, d.value)
		}
		next[d.partition] = d.offset + 1
		seen[d.partition][d.offset] = true
	}
	for p := int32(0); p < parts; p++ {
		if len(seen[p]) != perPart {
			t.Errorf("partition %d: %d of %d records reached the function", p, len(seen[p]), perPart)
		}
	}
	t.Logf("%d deliveries of %d records: %d replays (a partition going back to an earlier offset), %d records delivered again", len(deliveries), parts*perPart, replays, len(deliveries)-parts*perPart)
}

// kafkaDelivery is one record as the function got it.
type kafkaDelivery struct {
	partition int32
	offset    int64
	value     string
}

// kafkaDeliveries are the records of every Kafka event among calls, in the order the
// function got them (each event's partitions in key order, their records in event order).
func kafkaDeliveries(t testing.TB, calls []RecordedCall) []kafkaDelivery {
	t.Helper()
	var out []kafkaDelivery
	for _, c := range calls {
		var e struct {
			Records map[string][]struct {
				Partition int32  `json:"partition"`
				Offset    int64  `json:"offset"`
				Value     []byte `json:"value"`
			} `json:"records"`
		}
		if err := json.Unmarshal(c.Event, &e); err != nil {
			t.Fatalf("not JSON: %v: %s", err, c.Event)
		}
		keys := make([]string, 0, len(e.Records))
		for key := range e.Records {
			keys = append(keys, key)
		}
		sort.Strings(keys)
		for _, key := range keys {
			for _, r := range e.Records[key] {
				out = append(out, kafkaDelivery{r.Partition, r.Offset, string(r.Value)})
			}
		}
	}
	return out
}

// killPoller sends SIGKILL to the eventsources process of the first poller pod (found in
// the pod's cgroup on this host) and returns the pod's name and its container's restart
// count before the kill.
func killPoller(ctx context.Context, t testing.TB) (string, int32) {
	t.Helper()
	dep := pollerDeployment(ctx, t)
	var pods corev1.PodList
	if err := cluster.Client.List(ctx, &pods, client.InNamespace(dep.Namespace), client.MatchingLabels{"app.kubernetes.io/component": "eventsources"}); err != nil || len(pods.Items) == 0 {
		t.Fatalf("no poller pod: %v", err)
	}
	p := &pods.Items[0]
	dir, err := podCgroup(string(p.UID))
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	_ = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
			return nil
		}
		b, _ := os.ReadFile(path)
		for _, f := range strings.Fields(string(b)) {
			pid, err := strconv.Atoi(f)
			if err != nil {
				continue
			}
			if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); strings.TrimSpace(string(comm)) == "eventsources" {
				pids = append(pids, pid)
			}
		}
		return nil
	})
	if len(pids) != 1 {
		t.Fatalf("pod %s: %d eventsources processes in cgroup %s (%v), want 1", p.Name, len(pids), dir, pids)
	}
	restarts := containerRestarts(p)
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		t.Fatalf("killing pid %d of pod %s: %v", pids[0], p.Name, err)
	}
	return p.Name, restarts
}

func containerRestarts(p *corev1.Pod) int32 {
	var n int32
	for _, s := range p.Status.ContainerStatuses {
		n += s.RestartCount
	}
	return n
}
