//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// TestAsyncInvocation drives Lambda's asynchronous invocation end to end on the local
// cluster: Event invocations (AWS CLI and HTTP) through the chart's activator, recorder
// functions that fail on demand, records on success and failure destinations (a NATS
// server in this process on the node's IP, and a Function), dead letters, retries,
// maximum event age, reserved concurrency 0, the payload limit and a destination that is
// down. The functions carry the lambda.klambda.dev/async-retry-delays annotation (the local
// chart lets it shorten Lambda's 1 min / 2 min waits); maximum event age stays Lambda's
// minimum, 60 s, so the subtests run in parallel in about 90 s.
func TestAsyncInvocation(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	t.Cleanup(cancel) // after the parallel subtests, not when this function returns
	if !cluster.Local {
		t.Skip("needs the local cluster (the activator's ClusterIP routed from here, the node's IP)")
	}
	ns := cluster.Namespace(t)
	// A Function destination invokes with the authority of the source function's
	// ServiceAccount (issue #15 finding 9b): the functions here run as default, which may
	// invoke the namespace's functions.
	cluster.ServiceAccountToken(ctx, t, ns, "default", true)
	rec := cluster.StartRecorder(t)
	asyncCallerTokenCached(t, ns) // here, not first in a sender goroutine (it may fail the test)
	nodeIP, err := cluster.NodeIP()
	if err != nil {
		t.Fatal(err)
	}
	natsURL, nc := asyncStartNATS(t, nodeIP)
	downURL, downConns := asyncStartDeadNATS(t, nodeIP)

	// What each function answers: "target" fails when the event asks, the "failing" ones
	// always fail, the others succeed with an echo of the event.
	rec.SetAnswer(func(c RecordedCall) Answer {
		fail := c.Function == "retry0" || c.Function == "aged" || c.Function == "target" && bytes.Contains(c.Event, []byte(`"fail":true`))
		if fail {
			return Answer{ErrorType: "Test.Failure", Body: []byte("asked to fail")}
		}
		return Answer{Body: asyncEcho(c.Event)}
	})

	sub := func(s string) *lambdav1alpha1.Destination {
		return &lambdav1alpha1.Destination{NATS: &lambdav1alpha1.NATSDestination{Servers: []string{natsURL}, Subject: ns + "." + s}}
	}
	fns := map[string]func(f *lambdav1alpha1.Function){
		"target": func(f *lambdav1alpha1.Function) {
			f.Annotations = map[string]string{contract.AnnotationAsyncRetryDelays: "1s,2s"}
			f.Spec.EventInvokeConfig = &lambdav1alpha1.EventInvokeConfig{MaximumRetryAttempts: asyncI32(2),
				DestinationConfig: &lambdav1alpha1.DestinationConfig{OnSuccess: sub("success"),
					OnFailure: &lambdav1alpha1.Destination{Function: &lambdav1alpha1.FunctionDestination{Name: "sink"}}}}
		},
		"sink": func(*lambdav1alpha1.Function) {},
		"retry0": func(f *lambdav1alpha1.Function) {
			f.Spec.EventInvokeConfig = &lambdav1alpha1.EventInvokeConfig{MaximumRetryAttempts: asyncI32(0),
				DestinationConfig: &lambdav1alpha1.DestinationConfig{OnFailure: sub("retry0.failure")}}
			f.Spec.DeadLetterConfig = &lambdav1alpha1.DeadLetterConfig{Target: *sub("retry0.dlq")}
		},
		// Lambda's 1 min wait after the error is cut to the event's expiry.
		"aged": func(f *lambdav1alpha1.Function) {
			f.Spec.EventInvokeConfig = &lambdav1alpha1.EventInvokeConfig{MaximumEventAgeInSeconds: asyncI32(60),
				DestinationConfig: &lambdav1alpha1.DestinationConfig{OnFailure: sub("aged.failure")}}
		},
		"rc0": func(f *lambdav1alpha1.Function) {
			f.Spec.ReservedConcurrentExecutions = asyncI32(0)
			f.Spec.EventInvokeConfig = &lambdav1alpha1.EventInvokeConfig{
				DestinationConfig: &lambdav1alpha1.DestinationConfig{OnFailure: sub("rc0.failure")}}
		},
		"down": func(f *lambdav1alpha1.Function) {
			f.Spec.EventInvokeConfig = &lambdav1alpha1.EventInvokeConfig{DestinationConfig: &lambdav1alpha1.DestinationConfig{
				OnSuccess: &lambdav1alpha1.Destination{NATS: &lambdav1alpha1.NATSDestination{Servers: []string{downURL}, Subject: "nowhere"}}}}
		},
		"big": func(*lambdav1alpha1.Function) {},
	}
	for name, adjust := range fns {
		fn := cluster.RecorderFunction(t, rec, ns, name)
		adjust(fn)
		if err := cluster.Client.Create(ctx, fn); err != nil {
			t.Fatalf("creating %s: %v", name, err)
		}
	}
	for name := range fns {
		if _, err := cluster.WaitForFunctionActive(ctx, ns, name, 3*time.Minute); err != nil {
			t.Fatal(err)
		}
		activatorKnows(ctx, t, ns, name)
	}
	callsOf := func(fn string, calls []RecordedCall) []RecordedCall {
		var out []RecordedCall
		for _, c := range calls {
			if c.Function == fn {
				out = append(out, c)
			}
		}
		return out
	}
	withID := func(id string, calls []RecordedCall) []RecordedCall {
		var out []RecordedCall
		for _, c := range calls {
			if c.RequestID == id {
				out = append(out, c)
			}
		}
		return out
	}
	accepted := func(t *testing.T, fn, payload string) string {
		t.Helper()
		a, err := invokeAsync(ctx, t, ns, fn, []byte(payload))
		if err != nil {
			t.Fatal(err)
		}
		if a.Status != 202 || a.RequestID == "" || len(a.Body) != 0 {
			t.Fatalf("Event invocation of %s: HTTP %d, request id %q, body %q, header %v", fn, a.Status, a.RequestID, a.Body, a.Header)
		}
		return a.RequestID
	}

	t.Run("success record with the AWS CLI", func(t *testing.T) {
		t.Parallel()
		success := asyncSubscribe(t, nc, ns+".success")
		payload := `{"order":1}`
		status, id := invokeAsyncCLI(ctx, t, ns, "target", []byte(payload))
		if status != 202 || id == "" {
			t.Fatalf("aws lambda invoke --invocation-type Event: StatusCode %d, request id %q", status, id)
		}
		m := asyncReceive(t, success, 90*time.Second, "the onSuccess record")
		asyncCheckRecord(t, m.Data, asyncWantRecord{requestID: id, function: "target", condition: "Success", invokeCount: 1,
			statusCode: 200, requestPayload: payload, responsePayload: string(asyncEcho([]byte(payload)))})
		calls := withID(id, rec.Calls())
		if len(calls) != 1 || string(calls[0].Event) != payload || calls[0].Version != "$LATEST" {
			t.Fatalf("the function got %+v", calls)
		}
		asyncNoMore(t, success, 2*time.Second)
	})

	t.Run("function error retried maximumRetryAttempts times, then a Function destination", func(t *testing.T) {
		t.Parallel()
		payload := `{"order":2,"fail":true}`
		id := accepted(t, "target", payload)
		// The record reaches "sink" as a new asynchronous event.
		calls := rec.WaitFor(t, 2*time.Minute, "the onFailure record at the sink", func(c []RecordedCall) bool {
			for _, s := range callsOf("sink", c) {
				if bytes.Contains(s.Event, []byte(id)) {
					return true
				}
			}
			return false
		})
		attempts := withID(id, calls)
		if len(attempts) != 3 {
			t.Fatalf("%d attempts, want 3 (maximumRetryAttempts 2)", len(attempts))
		}
		for i, want := range []time.Duration{time.Second, 2 * time.Second} {
			if gap := attempts[i+1].At.Sub(attempts[i].At); gap < want || gap > want+15*time.Second {
				t.Errorf("wait before attempt %d: %v, want %v (the function's retry delays)", i+2, gap, want)
			}
		}
		var sink RecordedCall
		for _, s := range callsOf("sink", calls) {
			if bytes.Contains(s.Event, []byte(id)) {
				sink = s
			}
		}
		asyncCheckRecord(t, sink.Event, asyncWantRecord{requestID: id, function: "target", condition: "RetriesExhausted", invokeCount: 3,
			statusCode: 200, functionError: "Unhandled", requestPayload: payload,
			responsePayload: `{"errorType":"Test.Failure","errorMessage":"asked to fail"}`})
		if sink.RequestID == id {
			t.Errorf("the sink's invocation reused the failed event's request id")
		}
		time.Sleep(3 * time.Second)
		if n := len(withID(id, rec.Calls())); n != 3 {
			t.Errorf("%d attempts after the failure record, want 3", n)
		}
	})

	t.Run("maximumRetryAttempts 0 and a dead-letter target", func(t *testing.T) {
		t.Parallel()
		failure, dlq := asyncSubscribe(t, nc, ns+".retry0.failure"), asyncSubscribe(t, nc, ns+".retry0.dlq")
		payload := `{"order":3}`
		id := accepted(t, "retry0", payload)
		m := asyncReceive(t, failure, 90*time.Second, "the onFailure record")
		asyncCheckRecord(t, m.Data, asyncWantRecord{requestID: id, function: "retry0", condition: "RetriesExhausted", invokeCount: 1,
			statusCode: 200, functionError: "Unhandled", requestPayload: payload,
			responsePayload: `{"errorType":"Test.Failure","errorMessage":"asked to fail"}`})
		d := asyncReceive(t, dlq, 30*time.Second, "the dead letter")
		if string(d.Data) != payload || d.Header.Get("RequestID") != id || d.Header.Get("ErrorCode") != "200" ||
			d.Header.Get("ErrorMessage") != "asked to fail" {
			t.Errorf("dead letter %s %v", d.Data, d.Header)
		}
		if n := len(withID(id, rec.Calls())); n != 1 {
			t.Errorf("%d attempts, want 1", n)
		}
	})

	t.Run("expired event goes to the failure destination", func(t *testing.T) {
		t.Parallel()
		failure := asyncSubscribe(t, nc, ns+".aged.failure")
		payload := `{"order":4}`
		start := time.Now()
		id := accepted(t, "aged", payload)
		m := asyncReceive(t, failure, 3*time.Minute, "the EventAgeExceeded record")
		if age := time.Since(start); age < 59*time.Second {
			t.Errorf("the event expired after %v; maximumEventAgeInSeconds is 60", age)
		}
		asyncCheckRecord(t, m.Data, asyncWantRecord{requestID: id, function: "aged", condition: "EventAgeExceeded", invokeCount: 1,
			statusCode: 200, functionError: "Unhandled", requestPayload: payload,
			responsePayload: `{"errorType":"Test.Failure","errorMessage":"asked to fail"}`})
		if n := len(withID(id, rec.Calls())); n != 1 {
			t.Errorf("%d attempts, want 1 (the retry would have come after the maximum age)", n)
		}
	})

	t.Run("reserved concurrency 0 goes straight to the failure destination", func(t *testing.T) {
		t.Parallel()
		failure := asyncSubscribe(t, nc, ns+".rc0.failure")
		payload := `{"order":5}`
		id := accepted(t, "rc0", payload)
		m := asyncReceive(t, failure, 60*time.Second, "the onFailure record")
		asyncCheckRecord(t, m.Data, asyncWantRecord{requestID: id, function: "rc0", condition: "RetriesExhausted", invokeCount: 0,
			statusCode: 429, requestPayload: payload,
			responsePayload: `{"Type":"User","message":"Rate Exceeded.","Reason":"ReservedFunctionConcurrentInvocationLimitExceeded"}`})
		if n := len(callsOf("rc0", rec.Calls())); n != 0 {
			t.Errorf("the function ran %d times", n)
		}
	})

	t.Run("oversize event is rejected and nothing is stored", func(t *testing.T) {
		t.Parallel()
		over := asyncPadded(contract.MaxAsyncPayload + 1)
		a, err := invokeAsync(ctx, t, ns, "big", over)
		if err != nil {
			t.Fatal(err)
		}
		if a.Status != 413 || a.ErrorType != "RequestTooLargeException" || !bytes.Contains(a.Body, []byte(`"message":`)) {
			t.Fatalf("256 KB + 1: HTTP %d %s %s", a.Status, a.ErrorType, a.Body)
		}
		// Exactly the limit is accepted and runs; the oversize one never does.
		id := accepted(t, "big", string(asyncPadded(contract.MaxAsyncPayload)))
		calls := rec.WaitFor(t, 90*time.Second, "the 256 KB event", func(c []RecordedCall) bool { return len(withID(id, c)) == 1 })
		time.Sleep(2 * time.Second)
		if got := callsOf("big", rec.Calls()); len(got) != 1 || len(got[0].Event) != contract.MaxAsyncPayload {
			t.Errorf("the function got %d events (want only the 256 KB one)", len(callsOf("big", calls)))
		}
		if n, err := asyncActivatorMetric(ctx, "klambda_async_events_received_total", ns, "big"); err != nil || n != 1 {
			t.Errorf("events received for big: %v (%v), want 1", n, err)
		}
	})

	t.Run("destination down is retried, counted, and nothing crashes", func(t *testing.T) {
		t.Parallel()
		pod, err := asyncActivatorPod(ctx)
		if err != nil {
			t.Fatal(err)
		}
		restarts := pod.Status.ContainerStatuses[0].RestartCount
		id := accepted(t, "down", `{"order":6}`)
		if err := asyncWaitUntil(ctx, 90*time.Second, func() bool {
			n, _ := asyncActivatorMetric(ctx, "klambda_destination_delivery_failures_total", ns, "down")
			return n == 1
		}); err != nil {
			t.Fatalf("klambda_destination_delivery_failures_total{function=down} never reached 1: %v", err)
		}
		if n := downConns.Load(); n != 3 {
			t.Errorf("%d connection attempts to the dead destination, want 3 (DeliveryAttempts)", n)
		}
		// The event was settled: it ran once and is not run again; the activator lives on.
		id2 := accepted(t, "down", `{"order":7}`)
		rec.WaitFor(t, 60*time.Second, "the next event", func(c []RecordedCall) bool { return len(withID(id2, c)) == 1 })
		if n := len(withID(id, rec.Calls())); n != 1 {
			t.Errorf("the event ran %d times, want 1", n)
		}
		pod, err = asyncActivatorPod(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if r := pod.Status.ContainerStatuses[0].RestartCount; r != restarts {
			t.Errorf("the activator restarted (%d → %d)", restarts, r)
		}
	})
}

func asyncI32(v int32) *int32 { return &v }

// echo is what the recorder functions answer on success.
func asyncEcho(event []byte) []byte { return append(append([]byte(`{"echo":`), event...), '}') }

// padded is a JSON object of exactly n bytes.
func asyncPadded(n int) []byte {
	const head, tailS = `{"pad":"`, `"}`
	return []byte(head + strings.Repeat("x", n-len(head)-len(tailS)) + tailS)
}

// startNATS runs a NATS server in the test process on the node's IP (pods reach it there)
// and connects to it.
func asyncStartNATS(t *testing.T, ip string) (string, *nats.Conn) {
	t.Helper()
	s, err := natsserver.NewServer(&natsserver.Options{Host: ip, Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("the test's NATS server did not start")
	}
	t.Cleanup(s.Shutdown)
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return s.ClientURL(), nc
}

// asyncStartDeadNATS is a destination that is down: it accepts TCP connections and closes them
// at once, counting them (each delivery attempt is one connection attempt).
func asyncStartDeadNATS(t *testing.T, ip string) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	var n atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			_ = c.Close()
		}
	}()
	return "nats://" + ln.Addr().String(), &n
}

func asyncSubscribe(t *testing.T, nc *nats.Conn, subject string) chan *nats.Msg {
	t.Helper()
	ch := make(chan *nats.Msg, 64)
	s, err := nc.ChanSubscribe(subject, ch)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return ch
}

func asyncReceive(t *testing.T, ch chan *nats.Msg, within time.Duration, what string) *nats.Msg {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(within):
		t.Fatalf("no %s within %v", what, within)
		return nil
	}
}

func asyncNoMore(t *testing.T, ch chan *nats.Msg, within time.Duration) {
	t.Helper()
	select {
	case m := <-ch:
		t.Errorf("a second message on %s: %s", m.Subject, m.Data)
	case <-time.After(within):
	}
}

func asyncWaitUntil(ctx context.Context, timeout time.Duration, cond func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return nil
}

// asyncWantRecord is Lambda's invocation record for one event.
type asyncWantRecord struct {
	requestID, function, condition string
	invokeCount, statusCode        int
	functionError                  string // absent when empty
	requestPayload                 string
	responsePayload                string
}

// checkRecord compares a destination's record with Lambda's shape field by field: no
// field missing, none added.
func asyncCheckRecord(t *testing.T, data []byte, w asyncWantRecord) {
	t.Helper()
	var rec map[string]json.RawMessage
	if err := json.Unmarshal(data, &rec); err != nil {
		t.Fatalf("record %s: %v", data, err)
	}
	keys := func(m map[string]json.RawMessage) string {
		var ks []string
		for k := range m {
			ks = append(ks, k)
		}
		sort.Strings(ks)
		return strings.Join(ks, ",")
	}
	if got := keys(rec); got != "requestContext,requestPayload,responseContext,responsePayload,timestamp,version" {
		t.Fatalf("record fields %s: %s", got, data)
	}
	var version, ts string
	_ = json.Unmarshal(rec["version"], &version)
	_ = json.Unmarshal(rec["timestamp"], &ts)
	stamp, err := time.Parse("2006-01-02T15:04:05.000Z", ts)
	if version != "1.0" || err != nil || time.Since(stamp) > 10*time.Minute || time.Since(stamp) < -time.Minute {
		t.Errorf("version %q timestamp %q (%v)", version, ts, err)
	}
	var rc map[string]json.RawMessage
	_ = json.Unmarshal(rec["requestContext"], &rc)
	if got := keys(rc); got != "approximateInvokeCount,condition,functionArn,requestId" {
		t.Errorf("requestContext fields %s", got)
	}
	wantRC := fmt.Sprintf(`{"requestId":%q,"functionArn":%q,"condition":%q,"approximateInvokeCount":%d}`, w.requestID,
		lambdav1alpha1.QualifiedFunctionARN(lambdav1alpha1.DefaultRegion, lambdav1alpha1.DefaultAccountID, w.function, "$LATEST"),
		w.condition, w.invokeCount)
	asyncJSONEqual(t, "requestContext", rec["requestContext"], wantRC)
	wantResp := fmt.Sprintf(`{"statusCode":%d,"executedVersion":"$LATEST"}`, w.statusCode)
	if w.functionError != "" {
		wantResp = fmt.Sprintf(`{"statusCode":%d,"executedVersion":"$LATEST","functionError":%q}`, w.statusCode, w.functionError)
	}
	asyncJSONEqual(t, "responseContext", rec["responseContext"], wantResp)
	asyncJSONEqual(t, "requestPayload", rec["requestPayload"], w.requestPayload)
	asyncJSONEqual(t, "responsePayload", rec["responsePayload"], w.responsePayload)
}

func asyncJSONEqual(t *testing.T, what string, got json.RawMessage, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Errorf("%s: %s: %v", what, got, err)
		return
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("%s: the test's own JSON %s: %v", what, want, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("%s: got %s, want %s", what, got, want)
	}
}

// activatorKnows waits until the activator resolves function ns/name (a DryRun invocation
// answered 204: nothing runs) and logs every other answer it met. Right after a previous
// test SIGKILLed the activator, the first Event invocations of functions made meanwhile
// were answered 404 with no body in 2 of 4 runs (not understood yet; the closing note of
// 2026-12-03): the answers logged here are for finding out why.
func activatorKnows(ctx context.Context, t *testing.T, ns, name string) {
	t.Helper()
	base, err := cluster.ActivatorServiceURL(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tok := asyncCallerTokenCached(t, ns)
	deadline := time.Now().Add(time.Minute)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, fmt.Sprintf("%s/namespaces/%s/2015-03-31/functions/%s/invocations", base, ns, name), strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set(contract.HeaderInvocationType, contract.InvocationDryRun)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := asyncHTTP.Do(req)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusNoContent {
				return
			}
			t.Logf("DryRun of %s: HTTP %d, header %v, body %q", name, resp.StatusCode, resp.Header, body)
		} else {
			t.Logf("DryRun of %s: %v", name, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the activator did not resolve %s/%s within a minute", ns, name)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
