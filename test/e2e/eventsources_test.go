//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// TestEventSourceMappings runs the pollers the chart installed (klambda-eventsources) against
// real brokers: a franz-go kfake Kafka cluster in this process and a Debian rabbitmq-server,
// both listening on the node's IP, and a recorder function that sees every batch and fails
// records on demand. The pollers invoke it through the activator.
func TestEventSourceMappings(t *testing.T) {
	if !cluster.Local {
		t.Skip("needs the local cluster (brokers on the node's IP)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	t.Cleanup(cancel) // after the parallel subtests, unlike a defer
	if err := cluster.WaitForPollers(ctx); err != nil {
		t.Skip(err)
	}
	ns := cluster.Namespace(t)
	rec := cluster.StartRecorder(t)
	answers := &answerBook{byKey: map[string]func(RecordedCall) Answer{}}
	rec.SetAnswer(answers.answer)
	fn := cluster.RecorderFunction(t, rec, ns, "consumer")
	if err := cluster.Client.Create(ctx, fn); err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.WaitForFunctionActive(ctx, ns, fn.Name, 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	checkPollersMayInvoke(ctx, t, ns, fn.Name)
	grantMappings(ctx, t, ns, fn.Name)
	env := &esmEnv{ns: ns, fn: fn.Name, rec: rec, answers: answers}
	t.Run("Kafka", func(t *testing.T) {
		t.Parallel()
		testKafka(ctx, t, env)
	})
	t.Run("RabbitMQ", func(t *testing.T) {
		t.Parallel()
		testRabbitMQ(ctx, t, env)
	})
}

// WaitForPollers waits for the chart's event source pollers to be available.
func (c *Cluster) WaitForPollers(ctx context.Context) error {
	var last string
	err := wait.PollUntilContextTimeout(ctx, time.Second, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		var pods corev1.PodList
		if err := c.Client.List(ctx, &pods, client.MatchingLabels{"app.kubernetes.io/component": "eventsources"}); err != nil {
			return false, nil
		}
		for i := range pods.Items {
			last = podSummary(&pods.Items[i])
			if podReady(&pods.Items[i]) {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("no Ready event source poller (charts: eventsources.enabled; last seen %q): %w", last, err)
	}
	return nil
}

// checkPollersMayInvoke asks the question the activator asks of every poller invocation
// (auth is on, the local cluster's too): may the pollers' ServiceAccount invoke the
// function? A failure here names the cause before the batches silently stop coming.
func checkPollersMayInvoke(ctx context.Context, t testing.TB, ns, fn string) {
	t.Helper()
	var pods corev1.PodList
	if err := cluster.Client.List(ctx, &pods, client.MatchingLabels{"app.kubernetes.io/component": "eventsources"}); err != nil || len(pods.Items) == 0 {
		t.Fatalf("no poller pod: %v", err)
	}
	p := pods.Items[0]
	user := "system:serviceaccount:" + p.Namespace + ":" + p.Spec.ServiceAccountName
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:   user,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + p.Namespace, "system:authenticated"},
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Group: "lambda.klambda.dev", Resource: "functions", Verb: "invoke", Namespace: ns, Name: fn,
		},
	}}
	res, err := cluster.Kube.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Status.Allowed {
		t.Fatalf("%s may not invoke functions (%s): the activator would refuse the pollers once auth is on", user, res.Status.Reason)
	}
}

// esmEnv is what the cases share: one function, its recorder, and the answers per source
// key (a Kafka topic, a RabbitMQ queue), so that cases run side by side.
type esmEnv struct {
	ns, fn  string
	rec     *Recorder
	answers *answerBook
}

type answerBook struct {
	mu    sync.Mutex
	byKey map[string]func(RecordedCall) Answer
}

func (b *answerBook) set(key string, f func(RecordedCall) Answer) {
	b.mu.Lock()
	b.byKey[key] = f
	b.mu.Unlock()
}

func (b *answerBook) answer(c RecordedCall) Answer {
	b.mu.Lock()
	defer b.mu.Unlock()
	for key, f := range b.byKey {
		if key == sourceKey(c.Event) {
			return f(c)
		}
	}
	return Answer{Body: []byte(`{"ok":true}`)}
}

// sourceKey is the topic-partition or queue key a batch's records are grouped under.
func sourceKey(event []byte) string {
	var e struct {
		Records  map[string]json.RawMessage `json:"records"`
		Messages map[string]json.RawMessage `json:"rmqMessagesByQueue"`
	}
	_ = json.Unmarshal(event, &e)
	for k := range e.Records {
		return k
	}
	for k := range e.Messages {
		return k
	}
	return ""
}

// mapping creates an EventSourceMapping for the env's function and waits until it is Enabled.
func (env *esmEnv) mapping(ctx context.Context, t testing.TB, name string, spec lambdav1alpha1.EventSourceMappingSpec) *lambdav1alpha1.EventSourceMapping {
	t.Helper()
	spec.FunctionName = env.fn
	esm := &lambdav1alpha1.EventSourceMapping{ObjectMeta: metav1.ObjectMeta{Namespace: env.ns, Name: name}, Spec: spec}
	if err := cluster.Client.Create(ctx, esm); err != nil {
		t.Fatalf("creating mapping %s: %v", name, err)
	}
	return env.waitState(ctx, t, name, lambdav1alpha1.EventSourceMappingEnabled)
}

func (env *esmEnv) waitState(ctx context.Context, t testing.TB, name string, state lambdav1alpha1.EventSourceMappingState) *lambdav1alpha1.EventSourceMapping {
	t.Helper()
	esm := &lambdav1alpha1.EventSourceMapping{}
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		if err := cluster.Client.Get(ctx, client.ObjectKey{Namespace: env.ns, Name: name}, esm); err != nil {
			return false, nil
		}
		return esm.Status.State == state && esm.Status.ObservedGeneration == esm.Generation, nil
	})
	if err != nil {
		t.Fatalf("mapping %s: state %q (%s), want %s: %v", name, esm.Status.State, esm.Status.StateTransitionReason, state, err)
	}
	return esm
}

// setEnabled flips spec.enabled and waits for the settled state.
func (env *esmEnv) setEnabled(ctx context.Context, t *testing.T, name string, enabled bool) {
	t.Helper()
	esm := &lambdav1alpha1.EventSourceMapping{}
	if err := cluster.Client.Get(ctx, client.ObjectKey{Namespace: env.ns, Name: name}, esm); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(esm.DeepCopy())
	esm.Spec.Enabled = ptr.To(enabled)
	if err := cluster.Client.Patch(ctx, esm, patch); err != nil {
		t.Fatal(err)
	}
	want := lambdav1alpha1.EventSourceMappingDisabled
	if enabled {
		want = lambdav1alpha1.EventSourceMappingEnabled
	}
	env.waitState(ctx, t, name, want)
}

// --- Kafka ------------------------------------------------------------------------------

// kafkaBatch is one invocation's records of one topic-partition, as values in order.
type kafkaBatch struct {
	values  []string
	offsets []int64
}

// kafkaBatches are the recorder's calls for key ("<topic>-0"), decoded; a malformed event
// fails the test.
func kafkaBatches(t *testing.T, calls []RecordedCall, key string) []kafkaBatch {
	t.Helper()
	var out []kafkaBatch
	for _, c := range calls {
		if sourceKey(c.Event) != key {
			continue
		}
		var e struct {
			EventSource      string `json:"eventSource"`
			BootstrapServers string `json:"bootstrapServers"`
			Records          map[string][]struct {
				Topic         string  `json:"topic"`
				Partition     *int32  `json:"partition"`
				Offset        *int64  `json:"offset"`
				Timestamp     int64   `json:"timestamp"`
				TimestampType string  `json:"timestampType"`
				Value         []byte  `json:"value"` // base64 in the event
				Headers       []any   `json:"headers"`
				Key           *[]byte `json:"key"`
			} `json:"records"`
		}
		if err := json.Unmarshal(c.Event, &e); err != nil {
			t.Fatalf("not JSON: %v: %s", err, c.Event)
		}
		if e.EventSource != "SelfManagedKafka" || e.BootstrapServers == "" || len(e.Records) != 1 {
			t.Fatalf("not a self-managed Kafka event: %s", c.Event)
		}
		var b kafkaBatch
		for _, r := range e.Records[key] {
			if r.Topic+"-0" != key || r.Partition == nil || *r.Partition != 0 || r.Offset == nil ||
				r.TimestampType != "CREATE_TIME" || r.Timestamp < time.Now().Add(-time.Hour).UnixMilli() || r.Headers == nil {
				t.Fatalf("record not in Lambda's Kafka shape: %s", c.Event)
			}
			b.values = append(b.values, string(r.Value))
			b.offsets = append(b.offsets, *r.Offset)
		}
		out = append(out, b)
	}
	return out
}

// kafkaRecord is what the tests produce: JSON, so that filters can match on the value.
func kafkaRecord(n int, kind string) string { return fmt.Sprintf(`{"n":%d,"kind":%q}`, n, kind) }

type kafkaBroker struct {
	addr string
	cl   *kgo.Client
}

func startKafka(t *testing.T, ip string, topics ...string) *kafkaBroker {
	t.Helper()
	return startKafkaPartitions(t, ip, 1, topics...)
}

// startKafkaPartitions starts a kfake cluster on ip whose topics have partitions each.
func startKafkaPartitions(t testing.TB, ip string, partitions int32, topics ...string) *kafkaBroker {
	t.Helper()
	return startKafkaTopics(t, ip, map[int32][]string{partitions: topics})
}

// startKafkaTopics starts a kfake cluster on ip with topics of several partition counts
// (partition count → topics); at least one topic.
func startKafkaTopics(t testing.TB, ip string, topics map[int32][]string) *kafkaBroker {
	t.Helper()
	// kfake listens on 127.0.0.1; pods need the node's IP, which the brokers then advertise.
	listen := func(network, address string) (net.Listener, error) {
		_, port, _ := net.SplitHostPort(address)
		return net.Listen(network, net.JoinHostPort(ip, port))
	}
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.ListenFn(listen)}
	first := ""
	for partitions, names := range topics {
		opts = append(opts, kfake.SeedTopics(partitions, names...))
		if len(names) > 0 && first == "" {
			first = names[0] // the producer's default topic; records name theirs
		}
	}
	if first == "" {
		t.Fatal("startKafkaTopics: no topic")
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	addr := c.ListenAddrs()[0]
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic(first))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return &kafkaBroker{addr: addr, cl: cl}
}

func (k *kafkaBroker) produce(t *testing.T, topic string, values ...string) {
	t.Helper()
	for _, v := range values {
		r := &kgo.Record{Topic: topic, Value: []byte(v), Headers: []kgo.RecordHeader{{Key: "h", Value: []byte("v")}}}
		if err := k.cl.ProduceSync(context.Background(), r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
}

// committed is the group's committed offset of partition 0 (-1 when none).
func (k *kafkaBroker) committed(t *testing.T, group, topic string) int64 {
	t.Helper()
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Group = group
	rt := kmsg.NewOffsetFetchRequestTopic()
	rt.Topic, rt.Partitions = topic, []int32{0}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(context.Background(), k.cl)
	if err != nil {
		t.Fatal(err)
	}
	for _, rt := range resp.Topics {
		for _, p := range rt.Partitions {
			return p.Offset
		}
	}
	return -1
}

func (k *kafkaBroker) waitCommitted(ctx context.Context, t *testing.T, group, topic string, want int64) {
	t.Helper()
	var got int64
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		got = k.committed(t, group, topic)
		return got == want, nil
	})
	if err != nil {
		t.Fatalf("group %s on %s: committed offset %d, want %d", group, topic, got, want)
	}
}

func kafkaSpec(k *kafkaBroker, topic string) lambdav1alpha1.EventSourceMappingSpec {
	return lambdav1alpha1.EventSourceMappingSpec{
		SelfManagedEventSource: &lambdav1alpha1.SelfManagedEventSource{Endpoints: lambdav1alpha1.KafkaEndpoints{KafkaBootstrapServers: []string{k.addr}}},
		Topics:                 []string{topic},
		StartingPosition:       lambdav1alpha1.StartingPositionTrimHorizon,
	}
}

func testKafka(ctx context.Context, t *testing.T, env *esmEnv) {
	ip, err := cluster.NodeIP()
	if err != nil {
		t.Fatal(err)
	}
	k := startKafka(t, ip, "k-main", "k-partial", "k-bisect", "k-failures")

	t.Run("BatchesFilterOffsetsDisableEnable", func(t *testing.T) {
		t.Parallel()
		const topic, key = "k-main", "k-main-0"
		var keep, all []string
		for i := 0; i < 8; i++ {
			kind := "keep"
			if i%3 == 1 {
				kind = "drop"
			} else {
				keep = append(keep, kafkaRecord(i, kind))
			}
			all = append(all, kafkaRecord(i, kind))
		}
		k.produce(t, topic, all...)
		spec := kafkaSpec(k, topic)
		spec.FilterCriteria = &lambdav1alpha1.FilterCriteria{Filters: []lambdav1alpha1.Filter{{Pattern: `{"value":{"kind":["keep"]}}`}}}
		esm := env.mapping(ctx, t, "kafka-main", spec)

		env.rec.WaitFor(t, 2*time.Minute, "the kept records", func(c []RecordedCall) bool { return len(flatten(kafkaBatches(t, c, key))) >= len(keep) })
		// Offsets move past the filtered records too (8 records: the next offset is 8).
		k.waitCommitted(ctx, t, esm.Status.UUID, topic, 8)
		if got := flatten(kafkaBatches(t, env.rec.Calls(), key)); !reflect.DeepEqual(got, keep) {
			t.Fatalf("the function got %q, want exactly the records the filter keeps, once each, in order: %q", got, keep)
		}

		env.setEnabled(ctx, t, esm.Name, false)
		later := []string{kafkaRecord(8, "keep"), kafkaRecord(9, "keep"), kafkaRecord(10, "keep")}
		k.produce(t, topic, later...)
		time.Sleep(5 * time.Second)
		if got := flatten(kafkaBatches(t, env.rec.Calls(), key)); len(got) != len(keep) {
			t.Fatalf("a disabled mapping delivered %q", got[len(keep):])
		}
		if c := k.committed(t, esm.Status.UUID, topic); c != 8 {
			t.Fatalf("a disabled mapping moved the committed offset to %d", c)
		}
		env.setEnabled(ctx, t, esm.Name, true)
		env.rec.WaitFor(t, time.Minute, "the records produced while disabled", func(c []RecordedCall) bool {
			return len(flatten(kafkaBatches(t, c, key))) >= len(keep)+len(later)
		})
		k.waitCommitted(ctx, t, esm.Status.UUID, topic, 11)
		if got := flatten(kafkaBatches(t, env.rec.Calls(), key)); !reflect.DeepEqual(got, append(keep, later...)) {
			t.Fatalf("after enabling: the function got %q, want %q", got, append(keep, later...))
		}
	})

	t.Run("ReportBatchItemFailuresRetriesTheFailedRecordAlone", func(t *testing.T) {
		t.Parallel()
		const topic, key = "k-partial", "k-partial-0"
		var once sync.Once
		env.answers.set(key, func(c RecordedCall) Answer {
			// The last record fails the first time it is seen.
			body := []byte(`{"batchItemFailures":[]}`)
			if strings.Contains(string(c.Event), `"offset":3`) {
				once.Do(func() { body = []byte(`{"batchItemFailures":[{"itemIdentifier":"k-partial-0@3"}]}`) })
			}
			return Answer{Body: body}
		})
		values := []string{kafkaRecord(0, "a"), kafkaRecord(1, "b"), kafkaRecord(2, "c"), kafkaRecord(3, "d")}
		k.produce(t, topic, values...)
		spec := kafkaSpec(k, topic)
		spec.FunctionResponseTypes = []lambdav1alpha1.FunctionResponseType{lambdav1alpha1.FunctionResponseTypeReportBatchItemFailures}
		esm := env.mapping(ctx, t, "kafka-partial", spec)
		calls := env.rec.WaitFor(t, 2*time.Minute, "the failed record's retry", func(c []RecordedCall) bool {
			return count(flatten(kafkaBatches(t, c, key)), values[3]) == 2
		})
		k.waitCommitted(ctx, t, esm.Status.UUID, topic, 4)
		batches := kafkaBatches(t, calls, key)
		last := batches[len(batches)-1]
		if !reflect.DeepEqual(last.offsets, []int64{3}) {
			t.Fatalf("the retry carried offsets %v, want only the failed record's [3] (batches %v)", last.offsets, batches)
		}
		for _, v := range values[:3] {
			if n := count(flatten(batches), v); n != 1 {
				t.Fatalf("%s delivered %d times, want once (batches %v)", v, n, batches)
			}
		}
	})

	t.Run("BisectThenOnFailureDestination", func(t *testing.T) {
		t.Parallel()
		const topic, key = "k-bisect", "k-bisect-0"
		poison := kafkaRecord(2, "poison")
		env.answers.set(key, func(c RecordedCall) Answer {
			for _, v := range kafkaValues(c.Event, key) {
				if v == poison {
					return Answer{ErrorType: "Test.Poison", Body: []byte("record 2 always fails")}
				}
			}
			return Answer{Body: []byte(`{"ok":true}`)}
		})
		values := []string{kafkaRecord(0, "ok"), kafkaRecord(1, "ok"), poison, kafkaRecord(3, "ok")}
		k.produce(t, topic, values...)
		spec := kafkaSpec(k, topic)
		spec.BisectBatchOnFunctionError = ptr.To(true)
		spec.MaximumRetryAttempts = ptr.To[int32](1)
		spec.DestinationConfig = &lambdav1alpha1.EventSourceMappingDestinationConfig{OnFailure: &lambdav1alpha1.Destination{
			Kafka: &lambdav1alpha1.KafkaDestination{BootstrapServers: []string{k.addr}, Topic: "k-failures"},
		}}
		esm := env.mapping(ctx, t, "kafka-bisect", spec)

		// The destination gets a record of the discarded poison record.
		dest, err := kgo.NewClient(kgo.SeedBrokers(k.addr), kgo.ConsumeTopics("k-failures"))
		if err != nil {
			t.Fatal(err)
		}
		defer dest.Close()
		fctx, fcancel := context.WithTimeout(ctx, 2*time.Minute)
		fetches := dest.PollRecords(fctx, 1)
		fcancel()
		if err := fetches.Err(); err != nil {
			t.Fatalf("waiting for the on-failure record: %v", err)
		}
		var onFailure struct {
			RequestContext struct {
				Condition              string `json:"condition"`
				FunctionARN            string `json:"functionArn"`
				ApproximateInvokeCount int    `json:"approximateInvokeCount"`
			} `json:"requestContext"`
			ResponseContext struct {
				FunctionError string `json:"functionError"`
			} `json:"responseContext"`
			Version        string `json:"version"`
			KafkaBatchInfo struct {
				BatchSize   int `json:"batchSize"`
				RecordsInfo map[string]struct {
					FirstRecordOffset string `json:"firstRecordOffset"`
					LastRecordOffset  string `json:"lastRecordOffset"`
				} `json:"recordsInfo"`
			} `json:"KafkaBatchInfo"`
		}
		raw := fetches.Records()[0].Value
		if err := json.Unmarshal(raw, &onFailure); err != nil {
			t.Fatalf("on-failure record: %v: %s", err, raw)
		}
		ri, ok := onFailure.KafkaBatchInfo.RecordsInfo[key]
		if onFailure.RequestContext.Condition != "RetryAttemptsExhausted" || !strings.HasSuffix(onFailure.RequestContext.FunctionARN, ":function:"+env.fn) ||
			onFailure.ResponseContext.FunctionError == "" || onFailure.KafkaBatchInfo.BatchSize != 1 || !ok {
			t.Fatalf("on-failure record: %s", raw)
		}
		if ri.FirstRecordOffset != "" && ri.FirstRecordOffset != "2" {
			t.Fatalf("on-failure record names offset %s, want 2: %s", ri.FirstRecordOffset, raw)
		}
		t.Logf("on-failure record: %s", raw)
		k.waitCommitted(ctx, t, esm.Status.UUID, topic, 4)

		var shapes []string
		for _, b := range kafkaBatches(t, env.rec.Calls(), key) {
			shapes = append(shapes, fmt.Sprint(b.offsets))
		}
		// [0 1 2 3] fails → halves [0 1] (ok) and [2 3] (fails) → [2] (fails, retried once,
		// then discarded) and [3] (ok).
		for _, want := range []string{"[0 1 2 3]", "[0 1]", "[2 3]", "[2]", "[3]"} {
			if count(shapes, want) == 0 {
				t.Fatalf("batches %v: no batch %s; bisect should have split the failing batch down to the poison record", shapes, want)
			}
		}
		if n := count(shapes, "[2]"); n != 2 {
			t.Fatalf("batches %v: the poison record alone was tried %d times, want 2 (maximumRetryAttempts 1)", shapes, n)
		}
	})
}

// --- RabbitMQ ---------------------------------------------------------------------------

// rabbitBatches are the recorder's calls for a queue key ("<queue>::/"), as the messages'
// data in order; a malformed event fails the test.
func rabbitBatches(t *testing.T, calls []RecordedCall, key string) [][]string {
	t.Helper()
	var out [][]string
	for _, c := range calls {
		if sourceKey(c.Event) != key {
			continue
		}
		var e struct {
			EventSource    string `json:"eventSource"`
			EventSourceARN string `json:"eventSourceArn"`
			Messages       map[string][]struct {
				BasicProperties struct {
					MessageID   *string `json:"messageId"`
					ContentType *string `json:"contentType"`
					BodySize    int     `json:"bodySize"`
				} `json:"basicProperties"`
				Redelivered *bool  `json:"redelivered"`
				Data        []byte `json:"data"` // base64
			} `json:"rmqMessagesByQueue"`
		}
		if err := json.Unmarshal(c.Event, &e); err != nil {
			t.Fatalf("not JSON: %v: %s", err, c.Event)
		}
		if e.EventSource != "aws:rmq" || e.EventSourceARN == "" || len(e.Messages) != 1 {
			t.Fatalf("not a RabbitMQ event: %s", c.Event)
		}
		var b []string
		for _, m := range e.Messages[key] {
			if m.BasicProperties.MessageID == nil || m.BasicProperties.BodySize != len(m.Data) || m.Redelivered == nil {
				t.Fatalf("message not in Lambda's RabbitMQ shape: %s", c.Event)
			}
			b = append(b, string(m.Data))
		}
		out = append(out, b)
	}
	return out
}

// startRabbitMQ starts a private rabbitmq-server on the node's IP (its own node name and
// directories, beside any broker the unit tests run) and stops it when the test ends.
func startRabbitMQ(t *testing.T, ip string) string {
	t.Helper()
	if _, err := exec.LookPath("rabbitmq-server"); err != nil {
		if _, err := exec.LookPath("/usr/sbin/rabbitmq-server"); err != nil {
			t.Skip("rabbitmq-server is not installed: test/brokers/rabbitmq.sh install")
		}
	}
	script := filepath.Join(cluster.RepoRoot, "test", "brokers", "rabbitmq.sh")
	envs := []string{"KLAMBDA_RABBITMQ_BASE=/tmp/klambda-rabbitmq-e2e", "KLAMBDA_RABBITMQ_NODE=klambda-e2e@localhost", "KLAMBDA_RABBITMQ_ADDRESS=" + ip}
	cmd := exec.Command("bash", script, "start")
	cmd.Env = append(cmd.Environ(), envs...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("starting RabbitMQ: %v", err)
	}
	t.Cleanup(func() {
		cmd := exec.Command("bash", script, "stop")
		cmd.Env = append(cmd.Environ(), envs...)
		_ = cmd.Run()
	})
	return strings.TrimSpace(string(out))
}

type rabbitQueue struct {
	name string
	ch   *amqp.Channel
}

func (q *rabbitQueue) publish(t *testing.T, values ...string) {
	t.Helper()
	for _, v := range values {
		if err := q.ch.PublishWithContext(context.Background(), "", q.name, false, false, amqp.Publishing{
			MessageId: messageID(v), ContentType: "application/json", Body: []byte(v),
		}); err != nil {
			t.Fatal(err)
		}
	}
}

// ready is the queue's count of ready messages (unacked ones are not counted until the
// consumer's channel closes and they return to the queue).
func (q *rabbitQueue) ready(t *testing.T) int {
	t.Helper()
	st, err := q.ch.QueueDeclarePassive(q.name, true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	return st.Messages
}

// messageID is the AMQP message ID the tests give a value: "m-" and its "n".
func messageID(v string) string {
	var r struct{ N int }
	_ = json.Unmarshal([]byte(v), &r)
	return "m-" + strconv.Itoa(r.N)
}

func testRabbitMQ(ctx context.Context, t *testing.T, env *esmEnv) {
	ip, err := cluster.NodeIP()
	if err != nil {
		t.Fatal(err)
	}
	brokerURL := startRabbitMQ(t, ip)
	conn, err := amqp.Dial(brokerURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	u, err := url.Parse(brokerURL)
	if err != nil {
		t.Fatal(err)
	}
	pass, _ := u.User.Password()
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: env.ns, Name: "rabbitmq"},
		StringData: map[string]string{"username": u.User.Username(), "password": pass}}
	if err := cluster.Client.Create(ctx, secret); err != nil {
		t.Fatal(err)
	}
	queue := func(t *testing.T, name string) *rabbitQueue {
		ch, err := conn.Channel()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ch.QueueDeclare(name, true, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
		return &rabbitQueue{name: name, ch: ch}
	}
	spec := func(q string) lambdav1alpha1.EventSourceMappingSpec {
		return lambdav1alpha1.EventSourceMappingSpec{
			RabbitMQ: &lambdav1alpha1.RabbitMQSource{BrokerURL: "amqp://" + u.Host},
			Queues:   []string{q},
			SourceAccessConfigurations: []lambdav1alpha1.SourceAccessConfiguration{
				{Type: lambdav1alpha1.SourceAccessBasicAuth, SecretRef: &lambdav1alpha1.SecretReference{Name: secret.Name}},
			},
		}
	}

	t.Run("BatchesFilterAcksDisableEnable", func(t *testing.T) {
		t.Parallel()
		q := queue(t, "r-main")
		key := q.name + "::/"
		var keep, all []string
		for i := 0; i < 8; i++ {
			kind := "keep"
			if i%3 == 1 {
				kind = "drop"
			} else {
				keep = append(keep, kafkaRecord(i, kind))
			}
			all = append(all, kafkaRecord(i, kind))
		}
		q.publish(t, all...)
		s := spec(q.name)
		s.FilterCriteria = &lambdav1alpha1.FilterCriteria{Filters: []lambdav1alpha1.Filter{{Pattern: `{"data":{"kind":["keep"]}}`}}}
		esm := env.mapping(ctx, t, "rabbitmq-main", s)
		env.rec.WaitFor(t, 2*time.Minute, "the kept messages", func(c []RecordedCall) bool { return len(flattenRabbit(rabbitBatches(t, c, key))) >= len(keep) })
		if got := sorted(flattenRabbit(rabbitBatches(t, env.rec.Calls(), key))); !reflect.DeepEqual(got, sorted(keep)) {
			t.Fatalf("the function got %q, want exactly the messages the filter keeps, once each: %q", got, keep)
		}

		// Disabling closes the consumer: any unacked message would return to the queue.
		// None does: delivered and filtered messages alike were acked (a batch is acked once
		// the function has answered, a moment after the recorder saw it).
		time.Sleep(2 * time.Second)
		env.setEnabled(ctx, t, esm.Name, false)
		time.Sleep(time.Second)
		if n := q.ready(t); n != 0 {
			var back []string
			for {
				d, ok, err := q.ch.Get(q.name, true)
				if err != nil || !ok {
					break
				}
				back = append(back, string(d.Body))
			}
			t.Fatalf("%d messages back in the queue after disabling, not acked: %q", n, back)
		}
		later := []string{kafkaRecord(8, "keep"), kafkaRecord(9, "keep"), kafkaRecord(10, "keep")}
		q.publish(t, later...)
		time.Sleep(5 * time.Second)
		if got := flattenRabbit(rabbitBatches(t, env.rec.Calls(), key)); len(got) != len(keep) {
			t.Fatalf("a disabled mapping delivered %q", got[len(keep):])
		}
		if n := q.ready(t); n != len(later) {
			t.Fatalf("%d messages ready while disabled, want %d", n, len(later))
		}
		env.setEnabled(ctx, t, esm.Name, true)
		env.rec.WaitFor(t, time.Minute, "the messages published while disabled", func(c []RecordedCall) bool {
			return len(flattenRabbit(rabbitBatches(t, c, key))) >= len(keep)+len(later)
		})
		if got, want := sorted(flattenRabbit(rabbitBatches(t, env.rec.Calls(), key))), sorted(append(keep, later...)); !reflect.DeepEqual(got, want) {
			t.Fatalf("after enabling: the function got %q, want %q", got, want)
		}
	})

	t.Run("ReportBatchItemFailuresRedeliversTheFailedMessageAlone", func(t *testing.T) {
		t.Parallel()
		q := queue(t, "r-partial")
		key := q.name + "::/"
		values := []string{kafkaRecord(0, "a"), kafkaRecord(1, "b"), kafkaRecord(2, "c")}
		var once sync.Once
		env.answers.set(key, func(c RecordedCall) Answer {
			body := []byte(`{"batchItemFailures":[]}`)
			if count(rabbitMessageIDs(c.Event, key), "m-1") > 0 {
				once.Do(func() { body = []byte(`{"batchItemFailures":[{"itemIdentifier":"m-1"}]}`) })
			}
			return Answer{Body: body}
		})
		q.publish(t, values...)
		s := spec(q.name)
		s.FunctionResponseTypes = []lambdav1alpha1.FunctionResponseType{lambdav1alpha1.FunctionResponseTypeReportBatchItemFailures}
		env.mapping(ctx, t, "rabbitmq-partial", s)
		calls := env.rec.WaitFor(t, 2*time.Minute, "the failed message's redelivery", func(c []RecordedCall) bool {
			return count(flattenRabbit(rabbitBatches(t, c, key)), values[1]) == 2
		})
		batches := rabbitBatches(t, calls, key)
		if last := batches[len(batches)-1]; !reflect.DeepEqual(last, []string{values[1]}) {
			t.Fatalf("the redelivery carried %q, want only the failed message (batches %q)", last, batches)
		}
		time.Sleep(2 * time.Second)
		for _, v := range []string{values[0], values[2]} {
			if n := count(flattenRabbit(rabbitBatches(t, env.rec.Calls(), key)), v); n != 1 {
				t.Fatalf("%s delivered %d times, want once", v, n)
			}
		}
	})
}

// --- helpers ----------------------------------------------------------------------------

func flatten(bs []kafkaBatch) []string {
	var out []string
	for _, b := range bs {
		out = append(out, b.values...)
	}
	return out
}

// kafkaValues are an event's record values under key, or none when it is not a Kafka event.
// (The recorder's answers run outside the test's goroutine: they must not fail it.)
func kafkaValues(event []byte, key string) []string {
	var e struct {
		Records map[string][]struct {
			Value []byte `json:"value"`
		} `json:"records"`
	}
	_ = json.Unmarshal(event, &e)
	var out []string
	for _, r := range e.Records[key] {
		out = append(out, string(r.Value))
	}
	return out
}

// rabbitMessageIDs are an event's message IDs under key.
func rabbitMessageIDs(event []byte, key string) []string {
	var e struct {
		Messages map[string][]struct {
			BasicProperties struct {
				MessageID string `json:"messageId"`
			} `json:"basicProperties"`
		} `json:"rmqMessagesByQueue"`
	}
	_ = json.Unmarshal(event, &e)
	var out []string
	for _, m := range e.Messages[key] {
		out = append(out, m.BasicProperties.MessageID)
	}
	return out
}

func flattenRabbit(bs [][]string) []string {
	var out []string
	for _, b := range bs {
		out = append(out, b...)
	}
	return out
}

func count(xs []string, x string) int {
	n := 0
	for _, v := range xs {
		if v == x {
			n++
		}
	}
	return n
}

func sorted(xs []string) []string {
	out := append([]string(nil), xs...)
	sort.Strings(out)
	return out
}

// grantMappings lets the namespace's default ServiceAccount, which mappings without
// spec.serviceAccountName act as, invoke the function and read the namespace's Secrets:
// the pollers start a mapping's poller only when its ServiceAccount may do both.
func grantMappings(ctx context.Context, t testing.TB, ns, fn string) {
	t.Helper()
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "mappings"}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{lambdav1alpha1.GroupVersion.Group}, Resources: []string{"functions"}, Verbs: []string{"invoke"}, ResourceNames: []string{fn}},
		{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}},
	}}
	rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "mappings"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "mappings"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: ns, Name: "default"}}}
	for _, o := range []client.Object{role, rb} {
		if err := cluster.Client.Create(ctx, o); err != nil {
			t.Fatalf("granting the mappings' ServiceAccount: %v", err)
		}
	}
}
