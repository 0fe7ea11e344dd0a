package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestLogsSubscriptionValidation(t *testing.T) {
	h := newHarness(t, nil)
	id := h.post("/2020-01-01/extension/register", map[string]string{"Lambda-Extension-Name": "logs"}, `{"events":[]}`).header.Get("Lambda-Extension-Identifier")
	dest := `"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:8080/lambda_logs"}`
	for _, c := range []struct{ body, want string }{
		{`{"types":["platform"],"buffering":{"maxItems":999},` + dest + `}`, "buffering.maxItems must be between 1000 and 10000"},
		{`{"types":["platform"],"buffering":{"maxItems":10001},` + dest + `}`, "buffering.maxItems must be between 1000 and 10000"},
		{`{"types":["platform"],"buffering":{"maxBytes":262143},` + dest + `}`, "buffering.maxBytes must be between 262144 and 1048576"},
		{`{"types":["platform"],"buffering":{"maxBytes":1048577},` + dest + `}`, "buffering.maxBytes must be between 262144 and 1048576"},
		{`{"types":["platform"],"buffering":{"timeoutMs":24},` + dest + `}`, "buffering.timeoutMs must be between 25 and 30000"},
		{`{"types":["platform"],"buffering":{"timeoutMs":30001},` + dest + `}`, "buffering.timeoutMs must be between 25 and 30000"},
		{`{"types":["platform","metrics"],` + dest + `}`, `unknown log type \"metrics\"`},
		{`{"schemaVersion":"2019-01-01","types":["platform"],` + dest + `}`, "schemaVersion must be 2020-08-15 or 2021-03-18"},
		{`{"types":["platform"],"destination":{"protocol":"TCP","URI":"http://127.0.0.1:8080"}}`, "destination protocol TCP is not supported"},
		{`{"types":["platform"],"destination":{"protocol":"HTTP","URI":"http://127.0.0.1:9001"}}`, "URI port 9001 is reserved"},
		{`{"types":["platform"]}`, "destination is required"},
		{`{"types":["platform"],` + dest, "could not parse the subscription request"},
	} {
		r := do(t, "PUT", h.rapi.URL+"/2020-08-15/logs", map[string]string{"Lambda-Extension-Identifier": id}, []byte(c.body))
		if r.status != 400 || !strings.Contains(r.body, `"errorType":"Logs.ValidationError"`) || !strings.Contains(r.body, c.want) {
			t.Errorf("%s: %d %s, want 400 Logs.ValidationError %q", c.body, r.status, r.body, c.want)
		}
	}
	// The edges of every range are accepted.
	r := do(t, "PUT", h.rapi.URL+"/2020-08-15/logs", map[string]string{"Lambda-Extension-Identifier": id},
		[]byte(`{"types":["platform"],"buffering":{"maxItems":1000,"maxBytes":1048576,"timeoutMs":30000},`+dest+`}`))
	expect(t, "edges", r.status, 200)
}

// logsSink is a Logs API destination that records each batch it receives.
func logsSink(t *testing.T) (*httptest.Server, <-chan []map[string]any) {
	got := make(chan []map[string]any, 64)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var batch []map[string]any
		if err := json.NewDecoder(r.Body).Decode(&batch); err != nil {
			t.Errorf("batch is not a JSON array: %v", err)
		}
		got <- batch
	}))
	t.Cleanup(s.Close)
	return s, got
}

func TestLogsBufferingTimeoutAndTypes(t *testing.T) {
	h := newHarness(t, nil)
	sink, got := logsSink(t)
	id := h.post("/2020-01-01/extension/register", map[string]string{"Lambda-Extension-Name": "logs"}, `{"events":[]}`).header.Get("Lambda-Extension-Identifier")
	r := do(t, "PUT", h.rapi.URL+"/2020-08-15/logs", map[string]string{"Lambda-Extension-Identifier": id},
		[]byte(`{"types":["function"],"buffering":{"timeoutMs":400},"destination":{"protocol":"HTTP","URI":"`+sink.URL+`"}}`))
	expect(t, "subscribe", r.status, 200)
	sent := time.Now()
	h.env.Logs().Function([]byte("hello from the function\n"))
	h.env.Logs().Platform(nil, "a platform line nobody subscribed to")
	select {
	case batch := <-got:
		if d := time.Since(sent); d < 300*time.Millisecond {
			t.Fatalf("a batch of %d records came after %v, before the 400 ms buffering timeout", len(batch), d)
		}
		if len(batch) != 1 || batch[0]["type"] != "function" || batch[0]["record"] != "hello from the function\n" {
			t.Fatalf("batch %v, want the one function record (platform records were not subscribed to)", batch)
		}
		if _, err := time.Parse("2006-01-02T15:04:05.000Z", batch[0]["time"].(string)); err != nil {
			t.Fatalf("record time: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no batch within 5 s of a 400 ms buffering timeout")
	}
}

func TestLogsBufferingMaxItems(t *testing.T) {
	h := newHarness(t, nil)
	sink, got := logsSink(t)
	id := h.post("/2020-01-01/extension/register", map[string]string{"Lambda-Extension-Name": "logs"}, `{"events":[]}`).header.Get("Lambda-Extension-Identifier")
	r := do(t, "PUT", h.rapi.URL+"/2020-08-15/logs", map[string]string{"Lambda-Extension-Identifier": id},
		[]byte(`{"types":["function"],"buffering":{"maxItems":1000,"timeoutMs":30000},"destination":{"protocol":"HTTP","URI":"`+sink.URL+`"}}`))
	expect(t, "subscribe", r.status, 200)
	for i := 0; i < 1000; i++ {
		h.env.Logs().Function([]byte("line\n"))
	}
	// maxItems reached: the batch goes now, not after the 30 s timeout.
	total := 0
	deadline := time.After(5 * time.Second)
	for total < 1000 {
		select {
		case batch := <-got:
			total += len(batch)
		case <-deadline:
			t.Fatalf("%d of 1000 records delivered within 5 s; maxItems 1000 should send them at once", total)
		}
	}
}

// TestLogsDroppedForASlowConsumer: a subscriber that does not take its batches loses records
// past four buffers' worth, never holding the environment's memory, and is told so with
// Lambda's platform.logsDropped record (droppedRecords, droppedBytes) in its next batch.
func TestLogsDroppedForASlowConsumer(t *testing.T) {
	h := newHarness(t, nil)
	release := make(chan struct{})
	got := make(chan []map[string]any, 64)
	first := true
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var batch []map[string]any
		if err := json.NewDecoder(r.Body).Decode(&batch); err != nil {
			t.Errorf("batch is not a JSON array: %v", err)
		}
		if first { // the consumer falls behind on its first batch
			first = false
			<-release
		}
		got <- batch
	}))
	t.Cleanup(sink.Close)
	id := h.post("/2020-01-01/extension/register", map[string]string{"Lambda-Extension-Name": "logs"}, `{"events":[]}`).header.Get("Lambda-Extension-Identifier")
	r := do(t, "PUT", h.rapi.URL+"/2020-08-15/logs", map[string]string{"Lambda-Extension-Identifier": id},
		[]byte(`{"types":["function"],"buffering":{"maxItems":1000,"timeoutMs":30000},"destination":{"protocol":"HTTP","URI":"`+sink.URL+`"}}`))
	expect(t, "subscribe", r.status, 200)

	const sent = 6000
	for i := 0; i < 1000; i++ {
		h.env.Logs().Function([]byte("line\n"))
	}
	// Wait until the first batch is on its way (and stuck), then overflow the buffer.
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := h.env.Logs().Queued(0)
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first batch of 1000 records was never taken from the buffer")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for i := 1000; i < sent; i++ {
		h.env.Logs().Function([]byte("line\n"))
	}
	close(release)

	records, dropped := 0, 0.0
	timeout := time.After(10 * time.Second)
	for records+int(dropped) < sent {
		select {
		case batch := <-got:
			for _, rec := range batch {
				switch rec["type"] {
				case "function":
					records++
				case "platform.logsDropped":
					body, _ := rec["record"].(map[string]any)
					if body["reason"] == "" || body["droppedBytes"].(float64) <= 0 {
						t.Errorf("platform.logsDropped record %v lacks a reason or droppedBytes", rec)
					}
					dropped += body["droppedRecords"].(float64)
				default:
					t.Errorf("unexpected record %v", rec)
				}
			}
		case <-timeout:
			t.Fatalf("after 10 s: %d records delivered and %v reported dropped, of %d sent", records, dropped, sent)
		}
	}
	// Four buffers of maxItems wait while the consumer is stuck; the rest is dropped.
	if records != 5000 || dropped != 1000 {
		t.Errorf("%d records delivered and %v reported dropped; want 5000 and 1000", records, dropped)
	}
}
