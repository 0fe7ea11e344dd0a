package main

import (
	"context"
	"errors"
	"flag"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes/fake"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	"github.com/klambda/klambda/activator/async"
	"github.com/klambda/klambda/activator/invoke"
)

// neverSynced is an informer cache that never syncs: the async workers never start, so
// what the queue holds stays there for the test to count.
type neverSynced struct{ cache.Cache }

func (neverSynced) WaitForCacheSync(ctx context.Context) bool {
	<-ctx.Done()
	return false
}

// TestStartAsyncDoesNotWaitForNATS: the activator started with --async-nats-url while
// nothing listens there returns from startAsync at once; Event invocations get a
// ServiceException and the async readiness says why; when the NATS server starts the
// queue opens with no restart, Event invocations are stored, and the events an embedded
// queue left in --async-store-dir are moved into it.
func TestStartAsyncDoesNotWaitForNATS(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "async")
	// The embedded queue of the install before the switch, holding one event.
	srv, err := async.StartServer(async.ServerOptions{StoreDir: store})
	if err != nil {
		t.Fatal(err)
	}
	enc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	q, err := async.NewQueue(context.Background(), enc, async.QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Enqueue(context.Background(), async.Event{Namespace: "default", Function: "old", Payload: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	enc.Close()
	srv.Shutdown()

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	key := filepath.Join(dir, "signing-key")
	if err := os.WriteFile(key, []byte(strings.Repeat("k", 40)), 0o600); err != nil {
		t.Fatal(err)
	}
	var a asyncOptions
	fs := flag.NewFlagSet("activator", flag.ContinueOnError)
	bindAsyncFlags(fs, &a)
	if err := fs.Parse([]string{"--async-nats-url=nats://127.0.0.1:" + strconv.Itoa(port), "--async-signing-key-file=" + key,
		"--async-store-dir=" + store}); err != nil {
		t.Fatal(err)
	}
	region, account, authOff := "us-east-1", "000000000000", false
	o := &options{region: &region, accountID: &account, authOn: &authOff}
	core := &invoke.Core{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	start := time.Now()
	stop, ready := startAsync(ctx, &a, o, core, core, neverSynced{}, fake.NewClientset(), prometheus.NewRegistry(), testr.New(t))
	defer stop()
	// Well under the 30 s NewQueue waits for JetStream to answer (a loaded machine and
	// envtest starting beside this test have made it take 4 s).
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("startAsync took %s with NATS down", d)
	}
	ev := invoke.AsyncEvent{Namespace: "default", Function: "fn", Payload: []byte(`{}`), Received: time.Now()}
	_, err = core.Async.Enqueue(ctx, ev)
	var e *invoke.Error
	if !errors.As(err, &e) || e.Status != http.StatusInternalServerError || e.Type != "ServiceException" {
		t.Fatalf("Event invocation with NATS down: %v, want ServiceException 500", err)
	}
	if ready() == nil {
		t.Fatal("async ready with NATS down")
	}

	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
		MaxPayload: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	for deadline := time.Now().Add(20 * time.Second); ready() != nil; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("async not ready 20 s after NATS started: %v", ready())
		}
	}
	if _, err := core.Async.Enqueue(ctx, ev); err != nil {
		t.Fatalf("Event invocation once NATS runs: %v", err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(store, async.DrainedMarker)); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the embedded store was not drained within 20 s")
		}
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	stream, err := js.Stream(ctx, "KLAMBDA_ASYNC")
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter("klambda.async.>"))
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 2 || info.State.Subjects["klambda.async.default.old"] != 1 || info.State.Subjects["klambda.async.default.fn"] != 1 {
		t.Errorf("external stream holds %d events %v, want the moved one and the new one", info.State.Msgs, info.State.Subjects)
	}
}
