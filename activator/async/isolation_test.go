package async

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// Issue #15, finding 1: a tenant's NATS dead-letter subject (stale object or CRD
// validation bypassed) must not reach the queue's JetStream API. Before the fix the dead
// letter of one `{}` event to "attacker" (reserved concurrency 0: nothing even runs)
// purged every other function's accepted events, or deleted the stream.
func TestTenantDeadLetterCannotPurgeOrDeleteTheQueue(t *testing.T) {
	for _, api := range []string{"$JS.API.STREAM.PURGE.KLAMBDA_ASYNC", "$JS.API.STREAM.DELETE.KLAMBDA_ASYNC",
		"$JS.API.STREAM.MSG.DELETE.KLAMBDA_ASYNC"} {
		t.Run(api, func(t *testing.T) {
			var attacked atomic.Bool
			inv := newInvoker(func(req InvokeRequest, n int) InvokeResult {
				if req.Function == "victim" && !attacked.Load() {
					return throttle // the victim's events wait in the stream
				}
				return InvokeResult{StatusCode: 200, ExecutedVersion: "$LATEST", Payload: []byte(`"ok"`)}
			})
			zero := int32(0)
			e := startEnv(t, t.TempDir(), inv, configs(map[string]Config{
				"victim": cfg(2, time.Hour),
				"attacker": {MaximumRetryAttempts: 0, MaximumEventAge: time.Hour, ReservedConcurrency: &zero,
					DeadLetter: &lambdav1alpha1.DeadLetterConfig{Target: *natsDest(api)}},
			}))
			const victims = 20
			ids := make([]string, victims)
			for i := range ids {
				ids[i] = e.enqueue("victim", `{"n":1}`)
			}
			e.enqueue("attacker", `{}`)
			deadline := time.Now().Add(10 * time.Second)
			for testutil.ToFloat64(e.metrics.Dropped.WithLabelValues("default", "attacker")) < 1 {
				if time.Now().After(deadline) {
					t.Fatal("the attacker's event never reached its failure path")
				}
				time.Sleep(20 * time.Millisecond)
			}
			// Let the dead-letter attempts finish (3 tries, 20/40 ms apart).
			time.Sleep(300 * time.Millisecond)
			if n, err := e.q.Pending(context.Background()); err != nil || n < victims {
				t.Errorf("after the dead letter to %s the queue holds %d events (%v), want the %d accepted for victim", api, n, err, victims)
			}
			attacked.Store(true)
			deadline = time.Now().Add(15 * time.Second)
			for _, id := range ids {
				for len(inv.callTimes(id)) < 2 && time.Now().Before(deadline) {
					time.Sleep(20 * time.Millisecond)
				}
				if len(inv.callTimes(id)) < 2 {
					t.Errorf("victim's event %s never ran after the attack (calls %d)", id, len(inv.callTimes(id)))
				}
			}
		})
	}
}

// A destination without servers lives in its own account: publishing to the queue's own
// subject does not reach the stream (its last sequence does not move, even though a worker
// would at once discard a message without an event's headers).
func TestDestinationWithoutServersCannotReachTheQueueAccount(t *testing.T) {
	inv := newInvoker(success(`"ok"`))
	e := startEnv(t, t.TempDir(), inv, configs(map[string]Config{}))
	lastSeq := func() uint64 {
		info, err := e.q.stream.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return info.State.LastSeq
	}
	before := lastSeq()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	// Delivery itself succeeds (a plain publish to an account without subscribers); what
	// matters is where the message went.
	if err := e.dst.Deliver(ctx, "tenant", natsDest("klambda.async.default.victim"), Letter{Body: []byte(`{}`)}); err != nil {
		t.Logf("Deliver: %v", err)
	}
	time.Sleep(200 * time.Millisecond)
	if after := lastSeq(); after != before {
		t.Errorf("a tenant destination published into the queue's stream: last sequence %d before, %d after", before, after)
	}
}

// Defence in depth: Deliver refuses a subject a tenant could not have written.
func TestDeliverRefusesReservedSubjects(t *testing.T) {
	e := startEnv(t, t.TempDir(), newInvoker(success(`"ok"`)), configs(map[string]Config{}))
	for _, s := range []string{"$JS.API.STREAM.PURGE.KLAMBDA_ASYNC", "$SYS.REQ.SERVER.PING", "_INBOX.x", "a.*", "a.>", "a b", "a\tb", "", "a..b", ".a", "a."} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := e.dst.Deliver(ctx, "tenant", natsDest(s), Letter{Body: []byte(`{}`)})
		cancel()
		if err == nil {
			t.Errorf("Deliver to NATS subject %q: no error", s)
		}
	}
	if n, err := e.q.Pending(context.Background()); err != nil {
		t.Fatal(err)
	} else if n != 0 {
		t.Errorf("queue holds %d events", n)
	}
}

// The destinations account has no JetStream API at all, and its user may not even publish
// to NATS's reserved subjects; the stream denies purge and delete to the queue's own
// connection too.
func TestDestinationsAccountHasNoJetStreamAndTheStreamDeniesPurge(t *testing.T) {
	e := startEnv(t, t.TempDir(), newInvoker(success(`"ok"`)), configs(map[string]Config{}))
	short := func() context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		t.Cleanup(cancel)
		return ctx
	}
	if acc, err := e.srv.ns.LookupAccount(DestinationsAccount); err != nil || acc.JetStreamEnabled() {
		t.Errorf("destinations account %s: JetStream enabled or missing (%v)", DestinationsAccount, err)
	}
	if !e.srv.ns.GlobalAccount().JetStreamEnabled() {
		t.Error("the queue's account has no JetStream")
	}
	js, err := jetstream.New(e.dnc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Stream(short(), "KLAMBDA_ASYNC"); err == nil {
		t.Error("the destinations account sees the queue's stream")
	}
	if _, err := js.AccountInfo(short()); err == nil {
		t.Error("the destinations account has JetStream")
	}
	if _, err := e.dnc.Request("$JS.API.STREAM.PURGE.KLAMBDA_ASYNC", []byte(`{}`), time.Second); err == nil {
		t.Error("the destinations user got an answer from the JetStream API")
	}
	ctx := short()
	info, err := e.q.stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !info.Config.DenyPurge || !info.Config.DenyDelete {
		t.Errorf("stream config DenyPurge=%v DenyDelete=%v, want both", info.Config.DenyPurge, info.Config.DenyDelete)
	}
	if err := e.q.stream.Purge(ctx); err == nil {
		t.Error("the queue's stream could be purged")
	}
}

// A store written before the accounts existed (nats-server with only its global account)
// keeps its events, and its stream is updated to deny purge and delete.
func TestStoreFromBeforeAccountsKeepsItsEvents(t *testing.T) {
	dir := t.TempDir()
	old, err := server.NewServer(&server.Options{JetStream: true, StoreDir: dir, DontListen: true, NoLog: true, NoSigs: true, MaxPayload: maxPayload})
	if err != nil {
		t.Fatal(err)
	}
	go old.Start()
	if !old.ReadyForConnections(10 * time.Second) {
		t.Fatal("old-style server not ready")
	}
	nc, err := nats.Connect("", nats.InProcessServer(old))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	js, _ := jetstream.New(nc)
	// The stream as main created it: no DenyPurge, no DenyDelete.
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "KLAMBDA_ASYNC", Subjects: []string{"klambda.async.>"},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute, MaxMsgSize: maxPayload}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		ev := Event{RequestID: fmt.Sprintf("old-%d", i), Namespace: "default", Function: "f", Payload: []byte(`{}`), Received: time.Now()}
		if _, err := js.PublishMsg(ctx, ev.toMsg("klambda.async.default.f")); err != nil {
			t.Fatal(err)
		}
	}
	nc.Close()
	old.Shutdown()
	old.WaitForShutdown()

	inv := newInvoker(success(`"ok"`))
	e := startEnv(t, dir, inv, configs(map[string]Config{"f": cfg(0, time.Hour)}))
	deadline := time.Now().Add(15 * time.Second)
	for inv.total() < 5 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if inv.total() != 5 {
		t.Errorf("%d of the 5 events stored before the accounts ran", inv.total())
	}
	info, err := e.q.stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !info.Config.DenyPurge || !info.Config.DenyDelete {
		t.Errorf("existing stream not updated: DenyPurge=%v DenyDelete=%v", info.Config.DenyPurge, info.Config.DenyDelete)
	}
}

// Over TCP (--async-nats-listen) every client must authenticate: anonymous clients are
// refused, the destinations user (with the operator's password) sees destination messages
// and nothing of the queue.
func TestEmbeddedListenRequiresAuthentication(t *testing.T) {
	srv, err := StartServer(ServerOptions{StoreDir: t.TempDir(), Listen: "127.0.0.1:-1", DestinationsPassword: "operator-chosen"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	if nc, err := nats.Connect(srv.ClientURL(), nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Error("an anonymous client connected")
	}
	if nc, err := nats.Connect(srv.ClientURL(), nats.MaxReconnects(0), nats.UserInfo(QueueUser, "guess")); err == nil {
		nc.Close()
		t.Error("a client connected as the queue's user with a guessed password")
	}
	sub, err := nats.Connect(srv.ClientURL(), nats.MaxReconnects(0), nats.UserInfo(DestinationsUser, "operator-chosen"))
	if err != nil {
		t.Fatalf("destinations user over TCP: %v", err)
	}
	defer sub.Close()
	ch := make(chan *nats.Msg, 1)
	if _, err := sub.ChanSubscribe("records.ok", ch); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.ChanSubscribe("klambda.async.>", ch); err != nil {
		t.Fatal(err)
	}
	_ = sub.Flush()
	nc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	q, err := NewQueue(context.Background(), nc, QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dnc, err := srv.ConnectDestinations()
	if err != nil {
		t.Fatal(err)
	}
	defer dnc.Close()
	d := NewDeliverer(q, nil)
	d.SetLocalNATS(dnc, false)
	if _, err := q.Enqueue(context.Background(), Event{Namespace: "default", Function: "f", Payload: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.Deliver(dctx, "default", natsDest("records.ok"), Letter{Body: []byte(`{"r":1}`)}); err != nil {
		t.Fatal(err)
	}
	m := receive(t, ch, 5*time.Second)
	if m.Subject != "records.ok" || string(m.Data) != `{"r":1}` {
		t.Errorf("received %s %s", m.Subject, m.Data)
	}
	select {
	case m := <-ch:
		t.Errorf("the destinations account saw %s", m.Subject)
	case <-time.After(200 * time.Millisecond):
	}
}

// Without a connection for them (an external NATS without a destinations identity), NATS
// destinations without servers fail with an error saying what to configure, and nothing is
// published on the queue's connection.
func TestDestinationWithoutServersNeedsAnIdentity(t *testing.T) {
	e := startEnv(t, t.TempDir(), newInvoker(success(`"ok"`)), configs(map[string]Config{}))
	d := NewDeliverer(e.q, nil)
	sub, err := e.nc.SubscribeSync("records.x")
	if err != nil {
		t.Fatal(err)
	}
	_ = e.nc.Flush()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := d.Deliver(ctx, "t", natsDest("records.x"), Letter{Body: []byte(`{}`)}); !errors.Is(err, ErrNoLocalNATS) {
		t.Errorf("Deliver: %v, want ErrNoLocalNATS", err)
	}
	if m, err := sub.NextMsg(200 * time.Millisecond); err == nil {
		t.Errorf("published on the queue's connection: %s", m.Subject)
	}
}

// A destinations identity denied the JetStream API (as the README recommends for an
// external NATS) still delivers: the stream lookup, which gets no answer, is bounded.
func TestDestinationsIdentityWithoutJetStreamAPIStillDelivers(t *testing.T) {
	e := startEnv(t, t.TempDir(), newInvoker(success(`"ok"`)), configs(map[string]Config{}))
	d := NewDeliverer(e.q, nil)
	d.SetLocalNATS(e.dnc, true) // look streams up, as with an external NATS
	ch := e.subscribe("records.denied")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.Deliver(ctx, "t", natsDest("records.denied"), Letter{Body: []byte(`{"r":2}`)}); err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	if m := receive(t, ch, 2*time.Second); string(m.Data) != `{"r":2}` {
		t.Errorf("received %s", m.Data)
	}
}
