package async

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// TestDestinationClientsAreBounded sends one letter to each of 1,000 distinct NATS
// destination endpoints (the same server under 1,000 user names, as 1,000 edits of a
// destination would): the deliverer keeps a bounded number of connections open, where it
// used to keep all 1,000.
func TestDestinationClientsAreBounded(t *testing.T) {
	// The queue, and a plain NATS server for the destinations (a tenant's broker).
	srv, err := StartServer(ServerOptions{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	nc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	q, err := NewQueue(context.Background(), nc, QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	broker, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go broker.Start()
	if !broker.ReadyForConnections(10 * time.Second) {
		t.Fatal("broker not ready")
	}
	defer broker.Shutdown()
	d := newBoundedTestDeliverer(q, 16)
	defer d.Close()
	host := strings.TrimPrefix(broker.ClientURL(), "nats://")
	const n = 1000
	for i := 0; i < n; i++ {
		dest := &lambdav1alpha1.Destination{NATS: &lambdav1alpha1.NATSDestination{
			Servers: []string{fmt.Sprintf("nats://tenant%d:x@%s", i, host)}, Subject: "records"}}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := d.Deliver(ctx, "default", dest, Letter{Body: []byte("{}")})
		cancel()
		if err != nil {
			t.Fatalf("delivery %d: %v", i, err)
		}
	}
	// Closes take a moment to arrive.
	var live int
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if live = broker.NumClients(); live <= 16 {
			break
		}
	}
	t.Logf("%d destination connections open after %d distinct endpoints", live, n)
	if live > 16 {
		t.Errorf("%d destination connections open after %d distinct endpoints; want at most 16", live, n)
	}
}

// listenCounting accepts connections on 127.0.0.1 and counts them.
func listenCounting(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
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
	return ln.Addr().String(), &n
}

// TestDestinationsRefuseLoopbackAndMetadataAddresses: a tenant's destination at 127.0.0.1
// or 169.254.169.254 (the cloud metadata endpoint) is refused before any connection, with
// an error that names the egress policy; before, the activator connected to them.
func TestDestinationsRefuseLoopbackAndMetadataAddresses(t *testing.T) {
	srv, err := StartServer(ServerOptions{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	nc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	q, err := NewQueue(context.Background(), nc, QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d := NewDeliverer(q, nil) // the default: the strict policy
	defer d.Close()
	addr, accepted := listenCounting(t)
	_, port, _ := net.SplitHostPort(addr)
	for _, c := range []struct {
		name string
		dest *lambdav1alpha1.Destination
	}{
		{"nats loopback", &lambdav1alpha1.Destination{NATS: &lambdav1alpha1.NATSDestination{Servers: []string{"nats://" + addr}, Subject: "x"}}},
		{"nats localhost", &lambdav1alpha1.Destination{NATS: &lambdav1alpha1.NATSDestination{Servers: []string{"nats://localhost:" + port}, Subject: "x"}}},
		{"kafka loopback", &lambdav1alpha1.Destination{Kafka: &lambdav1alpha1.KafkaDestination{BootstrapServers: []string{addr}, Topic: "x"}}},
		{"kafka localhost", &lambdav1alpha1.Destination{Kafka: &lambdav1alpha1.KafkaDestination{BootstrapServers: []string{"localhost:" + port}, Topic: "x"}}},
		{"kafka metadata", &lambdav1alpha1.Destination{Kafka: &lambdav1alpha1.KafkaDestination{BootstrapServers: []string{"169.254.169.254:9092"}, Topic: "x"}}},
		{"sqs loopback", &lambdav1alpha1.Destination{SQS: &lambdav1alpha1.SQSQueue{QueueURL: "http://" + addr + "/000000000000/q"}}},
		{"sqs localhost", &lambdav1alpha1.Destination{SQS: &lambdav1alpha1.SQSQueue{QueueURL: "http://localhost:" + port + "/000000000000/q"}}},
		{"sqs metadata", &lambdav1alpha1.Destination{SQS: &lambdav1alpha1.SQSQueue{QueueURL: "http://169.254.169.254/latest/meta-data/q"}}},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		err := d.Deliver(ctx, "default", c.dest, Letter{Body: []byte("{}")})
		cancel()
		if err == nil || !strings.Contains(err.Error(), "egress policy") {
			t.Errorf("%s: %v; want a refusal by the egress policy", c.name, err)
		}
	}
	if n := accepted.Load(); n != 0 {
		t.Errorf("the loopback listener accepted %d connections; want none", n)
	}
}
