package destination_test

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klambda/klambda/eventsources/destination"
	"github.com/klambda/klambda/eventsources/sqs"
	"github.com/klambda/klambda/internal/netguard"
)

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

// TestDestinationsRefuseLoopbackAndMetadataAddresses: a mapping's on-failure destination
// at 127.0.0.1, localhost or 169.254.169.254 (the cloud metadata endpoint) is refused with
// an error naming the egress policy, and no connection reaches it.
func TestDestinationsRefuseLoopbackAndMetadataAddresses(t *testing.T) {
	addr, accepted := listenCounting(t)
	_, port, _ := net.SplitHostPort(addr)
	strict := &netguard.Policy{}
	send := func(s destination.Sender, err error) error {
		if err != nil {
			return err
		}
		defer s.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		return s.Send(ctx, []byte(`{}`))
	}
	sqsAt := func(u string) (destination.Sender, error) {
		c, err := sqs.NewClient(sqs.Config{QueueURL: u})
		if err != nil {
			return nil, err
		}
		return destination.NewSQS(c, u, strict)
	}
	for name, sender := range map[string]func() (destination.Sender, error){
		"nats loopback": func() (destination.Sender, error) {
			return destination.NewNATS([]string{"nats://" + addr}, "x", strict)
		},
		"nats localhost": func() (destination.Sender, error) {
			return destination.NewNATS([]string{"nats://localhost:" + port}, "x", strict)
		},
		"kafka loopback": func() (destination.Sender, error) { return destination.NewKafka([]string{addr}, "x", strict) },
		"kafka localhost": func() (destination.Sender, error) {
			return destination.NewKafka([]string{"localhost:" + port}, "x", strict)
		},
		"kafka metadata": func() (destination.Sender, error) {
			return destination.NewKafka([]string{"169.254.169.254:9092"}, "x", strict)
		},
		"sqs loopback":  func() (destination.Sender, error) { return sqsAt("http://" + addr + "/000000000000/q") },
		"sqs localhost": func() (destination.Sender, error) { return sqsAt("http://localhost:" + port + "/000000000000/q") },
		"sqs metadata":  func() (destination.Sender, error) { return sqsAt("http://169.254.169.254/latest/meta-data/q") },
	} {
		if err := send(sender()); err == nil || !strings.Contains(err.Error(), "egress policy") {
			t.Errorf("%s: %v; want a refusal by the egress policy", name, err)
		}
	}
	if n := accepted.Load(); n != 0 {
		t.Errorf("the loopback listener accepted %d connections; want none", n)
	}
}
