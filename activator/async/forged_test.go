package async

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// forged is a message a publisher other than the activator puts on the queue's subjects:
// well-formed headers, the subject of its choice.
func forged(subject, namespace, function, requestID string) *nats.Msg {
	m := nats.NewMsg(subject)
	m.Data = []byte(`{"forged":true}`)
	m.Header.Set("Klambda-Request-Id", requestID)
	m.Header.Set("Klambda-Namespace", namespace)
	m.Header.Set("Klambda-Function", function)
	m.Header.Set("Klambda-Received", strconv.FormatInt(time.Now().UnixNano(), 10))
	return m
}

// waitSettled waits until the stream holds no event (each was run or refused).
func waitSettled(t *testing.T, e *env) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if n, err := e.q.Pending(context.Background()); err == nil && n == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("the stream still holds events after 10s")
}

// Issue #15, finding 2: a worker trusted the Klambda-Namespace/Klambda-Function headers of
// any message; one stored under namespace a's subject ran namespace b's function, and
// malformed names were looked up and invoked.
func TestWorkerRefusesHeadersThatDoNotMatchTheSubject(t *testing.T) {
	inv := newInvoker(success(`"ok"`))
	e := startEnv(t, t.TempDir(), inv, configs(map[string]Config{"f": cfg(0, time.Hour), "secret-fn": cfg(0, time.Hour)}))
	for _, m := range []*nats.Msg{
		forged("klambda.async.tenant-a.f", "tenant-b", "secret-fn", "cross-namespace"),
		forged("klambda.async.default.f", "default", "secret-fn", "cross-function"),
		forged("klambda.async.default.x", "default", "../x", "bad-function-name"),
		forged("klambda.async.Default.f", "Default", "f", "bad-namespace"),
		forged("klambda.async.default.f", "default", "f", "has space"),
	} {
		if _, err := e.q.js.PublishMsg(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	m := forged("klambda.async.default.f", "default", "f", "future")
	m.Header.Set("Klambda-Received", strconv.FormatInt(time.Now().Add(time.Hour).UnixNano(), 10))
	if _, err := e.q.js.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	m = forged("klambda.async.default.f", "default", "f", "twice")
	m.Header.Add("Klambda-Namespace", "other")
	if _, err := e.q.js.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	ok := e.enqueue("f", `{}`) // the activator's own event still runs
	waitSettled(t, e)
	time.Sleep(100 * time.Millisecond)
	if n := inv.total(); n != 1 || len(inv.callTimes(ok)) != 1 {
		inv.mu.Lock()
		t.Errorf("%d invocations (%v), want only the activator's own event", n, inv.order)
		inv.mu.Unlock()
	}
	if got := testutil.ToFloat64(e.metrics.Rejected.WithLabelValues(RejectSubjectMismatch)); got != 2 {
		t.Errorf("rejected subject_mismatch = %v, want 2", got)
	}
	if got := testutil.ToFloat64(e.metrics.Rejected.WithLabelValues(RejectMalformed)); got != 5 {
		t.Errorf("rejected malformed = %v, want 5", got)
	}
}

// With a signing key, only the activator's signed events run: a message published by
// another identity (no signature, or one made with another key) is refused.
func TestForeignPublisherIsNotInvoked(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef-activator")
	signer, err := NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	inv := newInvoker(success(`"ok"`))
	e := startEnvWith(t, t.TempDir(), inv, configs(map[string]Config{"f": cfg(0, time.Hour)}), QueueOptions{Signer: signer})
	publish := func(m *nats.Msg) {
		if _, err := e.q.js.PublishMsg(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	publish(forged("klambda.async.default.f", "default", "f", "unsigned"))
	other, _ := NewSigner([]byte("another key, another identity, 32+ bytes"))
	m := forged("klambda.async.default.f", "default", "f", "other-key")
	other.sign(m)
	publish(m)
	// A signed event replayed with a changed payload.
	m = forged("klambda.async.default.f", "default", "f", "tampered")
	signer.sign(m)
	m.Data = []byte(`{"forged":"changed"}`)
	publish(m)
	m = forged("klambda.async.default.f", "default", "f", "garbage-signature")
	m.Header.Set("Klambda-Signature", "v1 !!!")
	publish(m)

	ok := e.enqueue("f", `{}`)
	waitSettled(t, e)
	time.Sleep(100 * time.Millisecond)
	if n := inv.total(); n != 1 || len(inv.callTimes(ok)) != 1 {
		inv.mu.Lock()
		t.Errorf("%d invocations (%v), want only the activator's signed event", n, inv.order)
		inv.mu.Unlock()
	}
	if got := testutil.ToFloat64(e.metrics.Rejected.WithLabelValues(RejectUnsigned)); got != 1 {
		t.Errorf("rejected unsigned = %v, want 1", got)
	}
	if got := testutil.ToFloat64(e.metrics.Rejected.WithLabelValues(RejectBadSignature)); got != 3 {
		t.Errorf("rejected bad_signature = %v, want 3", got)
	}
}

// AcceptUnsigned runs events without a signature (an older activator's) and counts them;
// a wrong signature is still refused. Key rotation: an event signed with the second key
// verifies.
func TestAcceptUnsignedAndKeyRotation(t *testing.T) {
	oldKey, newKey := []byte("the old key of this activator, 32+ bytes"), []byte("the new key of this activator, 32+ bytes")
	signer, _ := NewSigner(newKey, oldKey)
	inv := newInvoker(success(`"ok"`))
	e := startEnvWith(t, t.TempDir(), inv, configs(map[string]Config{"f": cfg(0, time.Hour)}),
		QueueOptions{Signer: signer, AcceptUnsigned: true})
	publish := func(m *nats.Msg) {
		if _, err := e.q.js.PublishMsg(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	publish(forged("klambda.async.default.f", "default", "f", "unsigned"))
	old, _ := NewSigner(oldKey)
	m := forged("klambda.async.default.f", "default", "f", "old-key")
	old.sign(m)
	publish(m)
	other, _ := NewSigner([]byte("another key, another identity, 32+ bytes"))
	m = forged("klambda.async.default.f", "default", "f", "other-key")
	other.sign(m)
	publish(m)
	waitSettled(t, e)
	time.Sleep(100 * time.Millisecond)
	if len(inv.callTimes("unsigned")) != 1 || len(inv.callTimes("old-key")) != 1 || len(inv.callTimes("other-key")) != 0 {
		t.Errorf("calls: unsigned %d, old-key %d, other-key %d; want 1, 1, 0",
			len(inv.callTimes("unsigned")), len(inv.callTimes("old-key")), len(inv.callTimes("other-key")))
	}
	if got := testutil.ToFloat64(e.metrics.Unsigned); got != 1 {
		t.Errorf("unsigned = %v, want 1", got)
	}
}

func TestSigningKeys(t *testing.T) {
	if _, err := NewSigner([]byte("short")); err == nil {
		t.Error("a 5-byte key was accepted")
	}
	if _, err := NewSigner(); err == nil {
		t.Error("no key was accepted")
	}
	keys, err := ParseSigningKeys([]byte("\n  first-key-of-at-least-32-bytes-xxxxx  \r\nsecond-key-of-at-least-32-bytes-xxxx\n\n"))
	if err != nil || len(keys) != 2 || string(keys[0]) != "first-key-of-at-least-32-bytes-xxxxx" {
		t.Errorf("ParseSigningKeys: %q, %v", keys, err)
	}
	if _, err := ParseSigningKeys([]byte(" \n\n")); err == nil {
		t.Error("an empty key file was accepted")
	}
}

// Enqueue refuses an event a worker would refuse, instead of answering 202 for an event
// that could never run.
func TestEnqueueRefusesWhatAWorkerWouldRefuse(t *testing.T) {
	e := startEnv(t, t.TempDir(), newInvoker(success(`"ok"`)), configs(map[string]Config{}))
	for name, ev := range map[string]Event{
		"long trace id":  {Namespace: "default", Function: "f", TraceID: strings.Repeat("a", maxTraceID+1)},
		"dotted name":    {Namespace: "default", Function: "a.b"},
		"bad namespace":  {Namespace: "Default", Function: "f"},
		"bad qualifier":  {Namespace: "default", Function: "f", Qualifier: "a.b"},
		"spaced request": {Namespace: "default", Function: "f", RequestID: "a b"},
	} {
		if _, err := e.q.Enqueue(context.Background(), ev); err == nil {
			t.Errorf("%s: stored", name)
		}
	}
	if _, err := e.q.Enqueue(context.Background(), Event{Namespace: "default", Function: "f", Qualifier: "$LATEST",
		TraceID: strings.Repeat("a", maxTraceID), ClientContext: strings.Repeat("A", 4000)}); err != nil {
		t.Errorf("an event at the bounds: %v", err)
	}
	info, err := e.q.stream.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.LastSeq != 1 {
		t.Errorf("%d events stored, want 1", info.State.LastSeq)
	}
}
