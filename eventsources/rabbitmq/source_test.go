package rabbitmq_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/klambda/klambda/eventsources/batch"
	"github.com/klambda/klambda/eventsources/events"
	"github.com/klambda/klambda/eventsources/filter"
	"github.com/klambda/klambda/eventsources/invokeclient/invoketest"
	"github.com/klambda/klambda/eventsources/poller"
	"github.com/klambda/klambda/eventsources/poller/pollertest"
	"github.com/klambda/klambda/eventsources/rabbitmq"
)

// brokerURL is a real RabbitMQ: KLAMBDA_TEST_RABBITMQ_URL, or a private broker started by
// test/brokers/rabbitmq.sh for this test run.
var brokerURL string

func script() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "test", "brokers", "rabbitmq.sh")
}

func installed() bool {
	if _, err := exec.LookPath("rabbitmq-server"); err == nil {
		return true
	}
	_, err := os.Stat("/usr/sbin/rabbitmq-server")
	return err == nil
}

func TestMain(m *testing.M) {
	brokerURL = os.Getenv("KLAMBDA_TEST_RABBITMQ_URL")
	started := false
	if brokerURL == "" && installed() {
		out, err := exec.Command("bash", script(), "start").Output()
		if err != nil {
			fmt.Fprintf(os.Stderr, "starting RabbitMQ with %s: %v\n", script(), err)
			os.Exit(1)
		}
		brokerURL = strings.TrimSpace(string(out))
		started = true
	}
	code := m.Run()
	if started {
		_ = exec.Command("bash", script(), "stop").Run()
	}
	os.Exit(code)
}

type env struct {
	t       *testing.T
	queue   string
	ch      *amqp.Channel
	fake    *invoketest.Server
	mu      sync.Mutex
	batches [][]string
}

func newEnv(t *testing.T, h func([]events.RabbitMQMessage) invoketest.Outcome) *env {
	t.Helper()
	if brokerURL == "" {
		t.Skip("rabbitmq-server is not installed: run test/brokers/rabbitmq.sh install (or set KLAMBDA_TEST_RABBITMQ_URL)")
	}
	conn, err := amqp.Dial(brokerURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, ch: ch, queue: strings.ReplaceAll(t.Name(), "/", "_")}
	_, _ = ch.QueueDelete(e.queue, false, false, false)
	if _, err := ch.QueueDeclare(e.queue, false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = ch.QueueDelete(e.queue, false, false, false) })
	e.fake = invoketest.New(func(c invoketest.Call) invoketest.Outcome {
		var ev events.RabbitMQEvent
		if err := json.Unmarshal(c.Payload, &ev); err != nil || ev.EventSource != "aws:rmq" {
			t.Errorf("not an aws:rmq event (%v): %s", err, c.Payload)
		}
		msgs := ev.MessagesByQueue[e.queue+"::/"]
		var vs []string
		for _, m := range msgs {
			vs = append(vs, string(m.Data))
		}
		e.mu.Lock()
		e.batches = append(e.batches, vs)
		e.mu.Unlock()
		if h == nil {
			return invoketest.Outcome{}
		}
		return h(msgs)
	})
	t.Cleanup(e.fake.Close)
	return e
}

func (e *env) publish(values ...string) {
	e.t.Helper()
	for _, v := range values {
		if err := e.ch.PublishWithContext(context.Background(), "", e.queue, false, false, amqp.Publishing{
			MessageId: "id-" + v, ContentType: "text/plain", Body: []byte(v), Headers: amqp.Table{"h": "v"},
		}); err != nil {
			e.t.Fatal(err)
		}
	}
}

func (e *env) run(cfg poller.Config) (stop func()) {
	e.t.Helper()
	src, err := rabbitmq.Open(rabbitmq.Config{BrokerURL: brokerURL, Queue: e.queue, Prefetch: 100, RedeliveryDelay: 100 * time.Millisecond})
	if err != nil {
		e.t.Fatal(err)
	}
	return pollertest.Run(e.t, cfg, 100, src, e.fake.Invoker())
}

// remaining counts the queue's messages (ready ones; unacked ones return when consumers close).
func (e *env) remaining() int {
	q, err := e.ch.QueueDeclarePassive(e.queue, false, false, false, false, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return q.Messages
}

func (e *env) seen() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := map[string]int{}
	for _, b := range e.batches {
		for _, v := range b {
			n[v]++
		}
	}
	return n
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestMessagesReachTheFunctionAndAreAcked(t *testing.T) {
	var mu sync.Mutex
	var first events.RabbitMQMessage
	e := newEnv(t, func(m []events.RabbitMQMessage) invoketest.Outcome {
		mu.Lock()
		if first.Data == nil {
			first = m[0]
		}
		mu.Unlock()
		return invoketest.Outcome{}
	})
	e.publish("a", "b", "c")
	stop := e.run(poller.Config{Window: 200 * time.Millisecond})
	eventually(t, "three messages", func() bool { return len(e.seen()) == 3 })
	// The fake activator records a batch before it answers; the acks follow the answer, and
	// a stop after the answer still acks (a stop before it would requeue the batch).
	time.Sleep(200 * time.Millisecond)
	stop()
	if n := e.remaining(); n != 0 {
		t.Errorf("%d messages left: not acked", n)
	}
	mu.Lock()
	defer mu.Unlock()
	p := first.BasicProperties
	if p.MessageID == nil || *p.MessageID != "id-a" || p.ContentType == nil || *p.ContentType != "text/plain" || p.BodySize != 1 {
		t.Errorf("basic properties %+v", p)
	}
	if b, _ := json.Marshal(p.Headers["h"]); string(b) != `{"bytes":[118]}` {
		t.Errorf("header h = %s", b)
	}
}

func TestFilteredMessagesAreAckedWithoutInvoking(t *testing.T) {
	e := newEnv(t, nil)
	e.publish(`{"kind":"keep"}`, `{"kind":"drop"}`)
	m, err := filter.CompilePatterns([]string{`{"data":{"kind":["keep"]}}`})
	if err != nil {
		t.Fatal(err)
	}
	stop := e.run(poller.Config{Filter: m})
	eventually(t, "the kept message", func() bool { return e.seen()[`{"kind":"keep"}`] == 1 })
	time.Sleep(200 * time.Millisecond)
	stop()
	if n := e.seen(); n[`{"kind":"drop"}`] != 0 {
		t.Errorf("filtered message invoked: %v", n)
	}
	if n := e.remaining(); n != 0 {
		t.Errorf("%d messages left", n)
	}
}

func TestReportedFailureIsRedeliveredAlone(t *testing.T) {
	var mu sync.Mutex
	failed := false
	e := newEnv(t, func(m []events.RabbitMQMessage) invoketest.Outcome {
		mu.Lock()
		defer mu.Unlock()
		for _, msg := range m {
			if string(msg.Data) == "bad" && !failed {
				failed = true
				return invoketest.Outcome{Body: []byte(`{"batchItemFailures":[{"itemIdentifier":"id-bad"}]}`)}
			}
		}
		return invoketest.Outcome{}
	})
	e.publish("ok1", "bad", "ok2")
	stop := e.run(poller.Config{Window: 300 * time.Millisecond, Policy: batch.Policy{ReportBatchItemFailures: true}})
	eventually(t, "the failed message again", func() bool { return e.seen()["bad"] == 2 })
	stop()
	e.mu.Lock()
	got := fmt.Sprint(e.batches)
	e.mu.Unlock()
	if got != "[[ok1 bad ok2] [bad]]" {
		t.Errorf("batches %s, want the failed message redelivered alone", got)
	}
	if n := e.remaining(); n != 0 {
		t.Errorf("%d messages left", n)
	}
}

func TestDisablingStopsConsumptionAndEnablingResumesWithoutLoss(t *testing.T) {
	e := newEnv(t, nil)
	e.publish("1")
	stop := e.run(poller.Config{})
	eventually(t, "first message", func() bool { return e.seen()["1"] == 1 })
	stop()
	e.publish("2", "3")
	time.Sleep(300 * time.Millisecond)
	if n := e.seen(); n["2"] != 0 {
		t.Fatalf("consumed while disabled: %v", n)
	}
	stop = e.run(poller.Config{})
	eventually(t, "messages sent while disabled", func() bool { n := e.seen(); return n["2"] == 1 && n["3"] == 1 })
	stop()
	if n := e.remaining(); n != 0 {
		t.Errorf("%d messages left", n)
	}
}
