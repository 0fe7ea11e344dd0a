package kafka_test

import (
	"context"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/klambda/klambda/eventsources/access"
	"github.com/klambda/klambda/eventsources/batch"
	"github.com/klambda/klambda/eventsources/invokeclient/invoketest"
	"github.com/klambda/klambda/eventsources/kafka"
	"github.com/klambda/klambda/eventsources/poller"
)

func TestSASLSCRAMFromSourceAccessConfigurations(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topic), kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", "poller", "s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	acc := access.Access{SCRAM512: &access.UserPassword{Username: "poller", Password: "s3cret"}}
	opts, err := kafka.ClientOpts(c.ListenAddrs(), acc)
	if err != nil {
		t.Fatal(err)
	}
	prod, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	if err := prod.ProduceSync(context.Background(), &kgo.Record{Topic: topic, Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	got := make(chan struct{}, 1)
	fake := invoketest.New(func(invoketest.Call) invoketest.Outcome {
		select {
		case got <- struct{}{}:
		default:
		}
		return invoketest.Outcome{}
	})
	defer fake.Close()
	src, err := kafka.Open(kafka.Config{BootstrapServers: c.ListenAddrs(), Topic: topic, Group: "g", FromStart: true, Access: acc})
	if err != nil {
		t.Fatal(err)
	}
	p := poller.New(poller.Config{Namespace: "ns", Name: "esm", Function: "fn", BatchSize: 10, Policy: batch.DefaultStreamPolicy()}, src, fake.Invoker(), testr.New(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(ctx) }()
	defer func() { cancel(); <-done }()
	select {
	case <-got:
	case <-time.After(20 * time.Second):
		t.Fatal("no invocation through a SASL/SCRAM-512 cluster")
	}
}
