package async

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

const arnLatest = "arn:aws:lambda:us-east-1:000000000000:function:%s:$LATEST"

func checkRecord(t *testing.T, body []byte, requestID, fn, condition string, invokeCount, status int,
	functionError, requestPayload, responsePayload string) {
	t.Helper()
	// Exactly Lambda's keys, no more.
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"version", "timestamp", "requestContext", "requestPayload", "responseContext", "responsePayload"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("record lacks %q: %s", k, body)
		}
	}
	if len(raw) != 6 {
		t.Errorf("record has %d keys, want 6: %s", len(raw), body)
	}
	r := decodeRecord(t, body)
	if r.Version != "1.0" {
		t.Errorf("version %q", r.Version)
	}
	if ts, err := time.Parse(recordTimestamp, r.Timestamp); err != nil || time.Since(ts) > time.Minute || len(r.Timestamp) != 24 {
		t.Errorf("timestamp %q (%v)", r.Timestamp, err)
	}
	want := RequestContext{RequestID: requestID, FunctionARN: strings.Replace(arnLatest, "%s", fn, 1),
		Condition: condition, ApproximateInvokeCount: invokeCount}
	if r.RequestContext != want {
		t.Errorf("requestContext %+v, want %+v", r.RequestContext, want)
	}
	if string(r.RequestPayload) != requestPayload {
		t.Errorf("requestPayload %s, want %s", r.RequestPayload, requestPayload)
	}
	wantRC := ResponseContext{StatusCode: status, ExecutedVersion: "$LATEST", FunctionError: functionError}
	if r.ResponseContext != wantRC {
		t.Errorf("responseContext %+v, want %+v", r.ResponseContext, wantRC)
	}
	if functionError == "" && strings.Contains(string(raw["responseContext"]), "functionError") {
		t.Errorf("functionError present on success: %s", raw["responseContext"])
	}
	if string(r.ResponsePayload) != responsePayload {
		t.Errorf("responsePayload %s, want %s", r.ResponsePayload, responsePayload)
	}
}

// sqsServer speaks the SQS JSON protocol's SendMessage (AmazonSQS.SendMessage), enough for
// the aws-sdk-go-v2 client to deliver to it.
type sqsServer struct {
	*httptest.Server
	mu       sync.Mutex
	messages []sqsMessage
}

type sqsMessage struct {
	QueueURL          string `json:"QueueUrl"`
	MessageBody       string
	MessageAttributes map[string]struct {
		DataType    string
		StringValue string
	}
}

func newSQSServer(t *testing.T) *sqsServer {
	s := &sqsServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Amz-Target") != "AmazonSQS.SendMessage" {
			http.Error(w, `{"__type":"com.amazonaws.sqs#UnsupportedOperation"}`, 400)
			return
		}
		b, _ := io.ReadAll(r.Body)
		var m sqsMessage
		if err := json.Unmarshal(b, &m); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		s.mu.Lock()
		s.messages = append(s.messages, m)
		s.mu.Unlock()
		sum := md5.Sum([]byte(m.MessageBody))
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		_ = json.NewEncoder(w).Encode(map[string]string{"MessageId": "m-1", "MD5OfMessageBody": hex.EncodeToString(sum[:])})
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *sqsServer) wait(t *testing.T, n int) []sqsMessage {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		if len(s.messages) >= n {
			m := append([]sqsMessage(nil), s.messages...)
			s.mu.Unlock()
			return m
		}
		s.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("SQS server did not get %d messages", n)
	return nil
}

func TestSuccessRecordReachesNATSKafkaAndSQS(t *testing.T) {
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "records"))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	sq := newSQSServer(t)
	queueURL := sq.URL + "/000000000000/records"

	e := startEnv(t, t.TempDir(), newInvoker(success(`{"ok":true}`)), configs(map[string]Config{
		"to-nats": {MaximumRetryAttempts: 2, MaximumEventAge: time.Hour, OnSuccess: natsDest("records.success")},
		"to-kafka": {MaximumRetryAttempts: 2, MaximumEventAge: time.Hour, OnSuccess: &lambdav1alpha1.Destination{
			Kafka: &lambdav1alpha1.KafkaDestination{BootstrapServers: kc.ListenAddrs(), Topic: "records"}}},
		"to-sqs": {MaximumRetryAttempts: 2, MaximumEventAge: time.Hour, OnSuccess: &lambdav1alpha1.Destination{
			SQS: &lambdav1alpha1.SQSQueue{QueueURL: queueURL}}},
	}))
	sub := e.subscribe("records.success")

	idN := e.enqueue("to-nats", `{"n":1}`)
	m := receive(t, sub, 10*time.Second)
	checkRecord(t, m.Data, idN, "to-nats", ConditionSuccess, 1, 200, "", `{"n":1}`, `{"ok":true}`)
	// A plain subject (no stream) gets the record once, and that counts as delivered.
	select {
	case m := <-sub:
		t.Errorf("a second record on a plain subject: %s", m.Data)
	case <-time.After(time.Second):
	}
	if got := testutil.ToFloat64(e.metrics.DestinationFailures.WithLabelValues("default", "to-nats")); got != 0 {
		t.Errorf("a delivered record counted as %v failures", got)
	}

	idK := e.enqueue("to-kafka", `{"k":2}`)
	cl, err := kgo.NewClient(kgo.SeedBrokers(kc.ListenAddrs()...), kgo.ConsumeTopics("records"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var rec *kgo.Record
	for rec == nil && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { rec = r })
	}
	if rec == nil {
		t.Fatal("no Kafka record")
	}
	if string(rec.Key) != idK {
		t.Errorf("Kafka key %q, want the request id %q", rec.Key, idK)
	}
	checkRecord(t, rec.Value, idK, "to-kafka", ConditionSuccess, 1, 200, "", `{"k":2}`, `{"ok":true}`)

	idS := e.enqueue("to-sqs", `{"s":3}`)
	msgs := sq.wait(t, 1)
	if msgs[0].QueueURL != queueURL {
		t.Errorf("QueueUrl %q", msgs[0].QueueURL)
	}
	checkRecord(t, []byte(msgs[0].MessageBody), idS, "to-sqs", ConditionSuccess, 1, 200, "", `{"s":3}`, `{"ok":true}`)

	if got := testutil.ToFloat64(e.metrics.Received.WithLabelValues("default", "to-nats")); got != 1 {
		t.Errorf("received metric %v", got)
	}
}

func TestFunctionErrorRetriedThenRetriesExhausted(t *testing.T) {
	inv := newInvoker(func(InvokeRequest, int) InvokeResult { return functionError })
	e := startEnv(t, t.TempDir(), inv, configs(map[string]Config{
		"two": {MaximumRetryAttempts: 2, MaximumEventAge: time.Hour, OnFailure: natsDest("fail.two"),
			DeadLetter: &lambdav1alpha1.DeadLetterConfig{Target: *natsDest("dlq.two")}},
		"zero": {MaximumRetryAttempts: 0, MaximumEventAge: time.Hour, OnFailure: natsDest("fail.zero")},
		// The function's own delays (contract.AnnotationAsyncRetryDelays) replace the workers' policy.
		"own": {MaximumRetryAttempts: 1, MaximumEventAge: time.Hour, OnFailure: natsDest("fail.own"),
			FunctionErrorDelays: []time.Duration{1500 * time.Millisecond}},
	}))
	failTwo, dlq, failZero := e.subscribe("fail.two"), e.subscribe("dlq.two"), e.subscribe("fail.zero")
	failOwn := e.subscribe("fail.own")
	idOwn := e.enqueue("own", `{}`)

	id := e.enqueue("two", `{"order":7}`)
	m := receive(t, failTwo, 10*time.Second)
	checkRecord(t, m.Data, id, "two", ConditionRetriesExhausted, 3, 200, "Unhandled", `{"order":7}`,
		`{"errorMessage":"something went wrong!","errorType":"errorString"}`)
	times := inv.callTimes(id)
	if len(times) != 3 {
		t.Fatalf("%d attempts, want 3", len(times))
	}
	for i, want := range fastRetry().FunctionErrorDelays {
		if gap := times[i+1].Sub(times[i]); gap < want || gap > want+2*time.Second {
			t.Errorf("gap before attempt %d: %s, want %s", i+2, gap, want)
		}
	}
	d := receive(t, dlq, 5*time.Second)
	if string(d.Data) != `{"order":7}` || d.Header.Get("RequestID") != id || d.Header.Get("ErrorCode") != "200" ||
		d.Header.Get("ErrorMessage") != "something went wrong!" {
		t.Errorf("dead letter %s %v", d.Data, d.Header)
	}

	id0 := e.enqueue("zero", `{}`)
	m = receive(t, failZero, 10*time.Second)
	checkRecord(t, m.Data, id0, "zero", ConditionRetriesExhausted, 1, 200, "Unhandled", `{}`,
		`{"errorMessage":"something went wrong!","errorType":"errorString"}`)
	if n := len(inv.callTimes(id0)); n != 1 {
		t.Errorf("maximumRetryAttempts 0: %d attempts", n)
	}
	receive(t, failOwn, 10*time.Second)
	if times := inv.callTimes(idOwn); len(times) != 2 || times[1].Sub(times[0]) < 1500*time.Millisecond ||
		times[1].Sub(times[0]) > 3500*time.Millisecond {
		t.Errorf("the function's own retry delay (1.5 s): attempts at %v", times)
	}
	if got := testutil.ToFloat64(e.metrics.Dropped.WithLabelValues("default", "two")); got != 1 {
		t.Errorf("dropped metric %v", got)
	}
}

func TestThrottlesDoNotUseRetryAttempts(t *testing.T) {
	// Three throttles, a 503, then function errors: maximumRetryAttempts 1 allows two
	// function-error attempts, after the four throttled ones.
	inv := newInvoker(func(_ InvokeRequest, n int) InvokeResult {
		switch {
		case n <= 3:
			return throttle
		case n == 4:
			return InvokeResult{StatusCode: 503, Payload: []byte(`{"Type":"Service","message":"busy"}`)}
		}
		return functionError
	})
	e := startEnv(t, t.TempDir(), inv, configs(map[string]Config{
		"f": {MaximumRetryAttempts: 1, MaximumEventAge: time.Hour, OnFailure: natsDest("fail.f")},
	}))
	sub := e.subscribe("fail.f")
	id := e.enqueue("f", `"x"`)
	m := receive(t, sub, 10*time.Second)
	checkRecord(t, m.Data, id, "f", ConditionRetriesExhausted, 2, 200, "Unhandled", `"x"`,
		`{"errorMessage":"something went wrong!","errorType":"errorString"}`)
	times := inv.callTimes(id)
	if len(times) != 6 {
		t.Fatalf("%d calls, want 6 (4 throttled + 2 attempts)", len(times))
	}
	// Exponential backoff: 50, 100, 200, 200 (capped) ms.
	for i, want := range []time.Duration{50, 100, 200, 200} {
		if gap := times[i+1].Sub(times[i]); gap < want*time.Millisecond {
			t.Errorf("backoff %d: %s < %dms", i+1, gap, want)
		}
	}
}

func TestEventAgeExceeded(t *testing.T) {
	inv := newInvoker(func(InvokeRequest, int) InvokeResult { return throttle })
	e := startEnv(t, t.TempDir(), inv, configs(map[string]Config{
		"busy": {MaximumRetryAttempts: 2, MaximumEventAge: time.Second, OnFailure: natsDest("fail.busy")},
	}))
	sub := e.subscribe("fail.busy")
	start := time.Now()
	id := e.enqueue("busy", `{"a":1}`)
	m := receive(t, sub, 10*time.Second)
	// The age is counted on the wall clock from the event's Received (stored, so without
	// Go's monotonic reading), the elapsed time here on the monotonic one: CI saw 996 ms.
	if el := time.Since(start); el < 950*time.Millisecond || el > 3*time.Second {
		t.Errorf("expired after %s, want about 1s", el)
	}
	// Lambda's record of an event that never ran: no invocation counted, the last answer
	// (the throttle) in the response.
	checkRecord(t, m.Data, id, "busy", ConditionEventAgeExceeded, 0, 429, "", `{"a":1}`, string(throttle.Payload))
	if n := len(inv.callTimes(id)); n < 3 {
		t.Errorf("only %d throttled calls in a second", n)
	}

	// An event already older than its maximum age is not invoked at all.
	old, err := e.q.Enqueue(context.Background(), Event{Namespace: "default", Function: "busy",
		Payload: []byte(`{}`), Received: time.Now().Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	m = receive(t, sub, 10*time.Second)
	if r := decodeRecord(t, m.Data); r.RequestContext.RequestID != old || r.RequestContext.Condition != ConditionEventAgeExceeded {
		t.Errorf("record %s", m.Data)
	}
	if n := len(inv.callTimes(old)); n != 0 {
		t.Errorf("expired event invoked %d times", n)
	}
}

func TestReservedConcurrencyZeroGoesStraightToFailure(t *testing.T) {
	zero := int32(0)
	inv := newInvoker(success(`null`))
	e := startEnv(t, t.TempDir(), inv, configs(map[string]Config{
		"off": {MaximumRetryAttempts: 2, MaximumEventAge: time.Hour, ReservedConcurrency: &zero,
			OnFailure:  natsDest("fail.off"),
			DeadLetter: &lambdav1alpha1.DeadLetterConfig{Target: *natsDest("dlq.off")}},
	}))
	fail, dlq := e.subscribe("fail.off"), e.subscribe("dlq.off")
	id := e.enqueue("off", `{"z":0}`)
	m := receive(t, fail, 10*time.Second)
	r := decodeRecord(t, m.Data)
	if r.RequestContext.Condition != ConditionRetriesExhausted || r.RequestContext.ApproximateInvokeCount != 0 ||
		r.ResponseContext.StatusCode != 429 || r.RequestContext.RequestID != id {
		t.Errorf("record %s", m.Data)
	}
	d := receive(t, dlq, 5*time.Second)
	if d.Header.Get("ErrorCode") != "429" || d.Header.Get("ErrorMessage") != "Rate Exceeded." || string(d.Data) != `{"z":0}` {
		t.Errorf("dead letter %s %v", d.Data, d.Header)
	}
	if inv.total() != 0 {
		t.Errorf("%d invocations, want 0", inv.total())
	}
}

func TestOversizeIsRejectedAndNothingStored(t *testing.T) {
	e := startEnv(t, t.TempDir(), newInvoker(success(`null`)), configs(nil))
	e.stop() // no workers: look at the stream alone
	srv, err := StartServer(ServerOptions{StoreDir: e.dir})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	nc, _ := srv.Connect()
	defer nc.Close()
	q, err := NewQueue(context.Background(), nc, QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = q.Enqueue(context.Background(), Event{Namespace: "default", Function: "f", Payload: make([]byte, contract.MaxAsyncPayload+1)})
	if !errors.Is(err, ErrRequestTooLarge) {
		t.Fatalf("err %v, want ErrRequestTooLarge", err)
	}
	if n, _ := q.Pending(context.Background()); n != 0 {
		t.Fatalf("%d events stored after a rejected one", n)
	}
	payload := `"` + strings.Repeat("a", contract.MaxAsyncPayload-2) + `"`
	if _, err := q.Enqueue(context.Background(), Event{Namespace: "default", Function: "f", Payload: []byte(payload)}); err != nil {
		t.Fatalf("exactly 256 KB: %v", err)
	}
	if n, _ := q.Pending(context.Background()); n != 1 {
		t.Fatalf("%d events stored, want 1", n)
	}
}

func TestDestinationDownIsRetriedCountedAndSettled(t *testing.T) {
	down := &lambdav1alpha1.Destination{NATS: &lambdav1alpha1.NATSDestination{
		Servers: []string{"nats://127.0.0.1:1"}, Subject: "nowhere"}}
	kafkaDown := &lambdav1alpha1.Destination{Kafka: &lambdav1alpha1.KafkaDestination{
		BootstrapServers: []string{"127.0.0.1:1"}, Topic: "nowhere"}}
	inv := newInvoker(func(r InvokeRequest, _ int) InvokeResult {
		if r.Function == "failing" {
			return functionError
		}
		return InvokeResult{StatusCode: 200, ExecutedVersion: "$LATEST"}
	})
	e := startEnv(t, t.TempDir(), inv, configs(map[string]Config{
		"ok":      {MaximumRetryAttempts: 0, MaximumEventAge: time.Hour, OnSuccess: down},
		"kafka":   {MaximumRetryAttempts: 0, MaximumEventAge: time.Hour, OnSuccess: kafkaDown},
		"failing": {MaximumRetryAttempts: 0, MaximumEventAge: time.Hour, DeadLetter: &lambdav1alpha1.DeadLetterConfig{Target: *down}},
		"after":   {MaximumRetryAttempts: 0, MaximumEventAge: time.Hour, OnSuccess: natsDest("after")},
		"sqs": {MaximumRetryAttempts: 0, MaximumEventAge: time.Hour, OnSuccess: &lambdav1alpha1.Destination{
			SQS: &lambdav1alpha1.SQSQueue{QueueURL: "http://127.0.0.1:1/000000000000/q"}}},
	}))
	after := e.subscribe("after")
	e.enqueue("ok", `{}`)
	e.enqueue("kafka", `{}`)
	e.enqueue("failing", `{}`)
	e.enqueue("sqs", `{}`)
	e.enqueue("after", `{}`)
	receive(t, after, 10*time.Second) // other events go on
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if testutil.ToFloat64(e.metrics.DestinationFailures.WithLabelValues("default", "ok")) == 1 &&
			testutil.ToFloat64(e.metrics.DestinationFailures.WithLabelValues("default", "kafka")) == 1 &&
			testutil.ToFloat64(e.metrics.DeadLetterErrors.WithLabelValues("default", "failing")) == 1 &&
			testutil.ToFloat64(e.metrics.DestinationFailures.WithLabelValues("default", "sqs")) == 1 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if a, b, c := testutil.ToFloat64(e.metrics.DestinationFailures.WithLabelValues("default", "ok")),
		testutil.ToFloat64(e.metrics.DestinationFailures.WithLabelValues("default", "kafka")),
		testutil.ToFloat64(e.metrics.DeadLetterErrors.WithLabelValues("default", "failing")); a != 1 || b != 1 || c != 1 {
		t.Fatalf("delivery failures nats=%v kafka=%v, dead-letter errors=%v; want 1 each", a, b, c)
	}
	if n := testutil.ToFloat64(e.metrics.DestinationFailures.WithLabelValues("default", "sqs")); n != 1 {
		t.Fatalf("SQS delivery failures %v, want 1", n)
	}
	waitPending(t, e.q, 0)
	if n := inv.total(); n != 5 {
		t.Errorf("%d invocations, want 5 (a failed delivery does not re-run the function)", n)
	}
}

func TestFunctionDestinationIsInvokedAsynchronously(t *testing.T) {
	got := make(chan InvokeRequest, 1)
	inv := newInvoker(func(r InvokeRequest, _ int) InvokeResult {
		if r.Function == "sink" {
			got <- r
		}
		return InvokeResult{StatusCode: 200, ExecutedVersion: "$LATEST", Payload: []byte(`"done"`)}
	})
	startEnv(t, t.TempDir(), inv, configs(map[string]Config{
		"src": {MaximumRetryAttempts: 2, MaximumEventAge: time.Hour, OnSuccess: &lambdav1alpha1.Destination{
			Function: &lambdav1alpha1.FunctionDestination{Name: "sink", Qualifier: "live"}}},
		"sink": cfg(2, time.Hour),
	})).enqueue("src", `{"from":"src"}`)
	r := receive(t, got, 10*time.Second)
	if r.Qualifier != "live" {
		t.Errorf("qualifier %q", r.Qualifier)
	}
	rec := decodeRecord(t, r.Payload)
	if rec.RequestContext.Condition != ConditionSuccess || string(rec.RequestPayload) != `{"from":"src"}` || string(rec.ResponsePayload) != `"done"` {
		t.Errorf("record %s", r.Payload)
	}
}

func waitPending(t *testing.T, q *Queue, want uint64) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var n uint64
	for time.Now().Before(deadline) {
		n, _ = q.Pending(context.Background())
		if n == want {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%d events pending, want %d", n, want)
}

func TestDeadLetterAttributesOnSQSAndKafka(t *testing.T) {
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "dlq"))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	sq := newSQSServer(t)
	long := strings.Repeat("é", 600) // 1,200 bytes: the message is cut at 1 KB, on a rune boundary
	inv := newInvoker(func(InvokeRequest, int) InvokeResult {
		return InvokeResult{StatusCode: 200, ExecutedVersion: "$LATEST", FunctionError: "Unhandled",
			Payload: []byte(`{"errorMessage":"` + long + `","errorType":"E"}`)}
	})
	e := startEnv(t, t.TempDir(), inv, configs(map[string]Config{
		"sqs": {MaximumRetryAttempts: 0, MaximumEventAge: time.Hour, DeadLetter: &lambdav1alpha1.DeadLetterConfig{
			Target: lambdav1alpha1.Destination{SQS: &lambdav1alpha1.SQSQueue{QueueURL: sq.URL + "/000000000000/dlq"}}}},
		"kafka": {MaximumRetryAttempts: 0, MaximumEventAge: time.Hour, DeadLetter: &lambdav1alpha1.DeadLetterConfig{
			Target: lambdav1alpha1.Destination{Kafka: &lambdav1alpha1.KafkaDestination{BootstrapServers: kc.ListenAddrs(), Topic: "dlq"}}}},
	}))
	idS := e.enqueue("sqs", `{"to":"sqs"}`)
	m := sq.wait(t, 1)[0]
	a := m.MessageAttributes
	if m.MessageBody != `{"to":"sqs"}` || a["RequestID"].DataType != "String" || a["RequestID"].StringValue != idS ||
		a["ErrorCode"].DataType != "Number" || a["ErrorCode"].StringValue != "200" ||
		a["ErrorMessage"].DataType != "String" || len(a["ErrorMessage"].StringValue) != 1024 {
		t.Errorf("SQS dead letter %+v", m)
	}

	idK := e.enqueue("kafka", `{"to":"kafka"}`)
	cl, err := kgo.NewClient(kgo.SeedBrokers(kc.ListenAddrs()...), kgo.ConsumeTopics("dlq"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var rec *kgo.Record
	for rec == nil && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { rec = r })
	}
	if rec == nil {
		t.Fatal("no Kafka dead letter")
	}
	h := map[string]string{}
	for _, kv := range rec.Headers {
		h[kv.Key] = string(kv.Value)
	}
	if string(rec.Value) != `{"to":"kafka"}` || h["RequestID"] != idK || h["ErrorCode"] != "200" || len(h["ErrorMessage"]) != 1024 {
		t.Errorf("Kafka dead letter %s %v", rec.Value, h)
	}
}
