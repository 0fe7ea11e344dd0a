package controller_test

import (
	"context"
	"testing"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes"

	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	"github.com/klambda/klambda/eventsources/batch"
	"github.com/klambda/klambda/eventsources/controller"
	"github.com/klambda/klambda/eventsources/events"
	"github.com/klambda/klambda/eventsources/filter"
	"github.com/klambda/klambda/eventsources/invokeclient/invoketest"
	"github.com/klambda/klambda/eventsources/poller"
)

// idleSource is a source with nothing to read.
type idleSource struct{}

func (idleSource) Mode() batch.Mode { return batch.Stream }
func (idleSource) Fetch(ctx context.Context) ([]poller.Message, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}
func (idleSource) EnvelopeBytes() int                                      { return 0 }
func (idleSource) Event([]batch.Record) ([]byte, error)                    { return nil, nil }
func (idleSource) Settle(context.Context, poller.Settlement) error         { return nil }
func (idleSource) DescribeFailure(*events.OnFailureRecord, []batch.Record) {}
func (idleSource) Close() error                                            { return nil }
func (idleSource) FilterRecord(batch.Record) filter.Record                 { return filter.Record{} }

// A Kafka mapping runs on every replica (its consumer group spreads the partitions), one
// Lease choosing the replica that writes its status; any other mapping runs on the Lease
// holder only. Real kube-apiserver (Leases).
func TestKafkaMappingsRunOnEveryReplicaOthersOnOne(t *testing.T) {
	fake := invoketest.New(nil)
	defer fake.Close()
	kube := kubernetes.NewForConfigOrDie(srv.Config)
	replica := func() *controller.Pollers {
		return &controller.Pollers{
			Kube: kube, LeaseNamespace: "default", Identity: "replica-" + string(uuid.NewUUID()),
			LeaseDuration: 2 * time.Second, RenewDeadline: 1500 * time.Millisecond, RetryPeriod: 200 * time.Millisecond,
			Build: func(context.Context, *lambdav1alpha1.EventSourceMapping, logr.Logger) (*controller.Built, error) {
				return &controller.Built{Poller: poller.New(poller.Config{}, idleSource{}, fake.Invoker(), logr.Discard()), Close: func() {}}, nil
			},
			Notify: func(types.NamespacedName) {}, Log: logr.Discard(),
		}
	}
	a, b := replica(), replica()
	defer a.StopAll()
	defer b.StopAll()
	mapping := func(name string, kafka bool) *lambdav1alpha1.EventSourceMapping {
		esm := &lambdav1alpha1.EventSourceMapping{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, UID: uuid.NewUUID(), Generation: 1}}
		if kafka {
			esm.Spec.SelfManagedEventSource = &lambdav1alpha1.SelfManagedEventSource{}
		} else {
			esm.Spec.NATSJetStream = &lambdav1alpha1.NATSJetStreamSource{}
		}
		return esm
	}
	k, n := mapping("kafka", true), mapping("nats", false)
	settled := func(esm *lambdav1alpha1.EventSourceMapping, wantRunning int) bool {
		sa, sb := a.Apply(esm), b.Apply(esm)
		running := 0
		for _, s := range []controller.SlotStatus{sa, sb} {
			if s.Running {
				running++
			}
		}
		return running == wantRunning && sa.Leading != sb.Leading
	}
	eventually(t, "the Kafka mapping polled by both replicas, one writing its status", func() bool { return settled(k, 2) })
	eventually(t, "the NATS mapping polled by one replica", func() bool { return settled(n, 1) })
	// The status writer goes away: the other replica takes the Lease and goes on polling.
	leader, other := a, b
	if !a.Apply(k).Leading {
		leader, other = b, a
	}
	leader.Remove(types.NamespacedName{Namespace: "default", Name: "kafka"})
	eventually(t, "the other replica writes the Kafka mapping's status", func() bool {
		s := other.Apply(k)
		return s.Leading && s.Running
	})
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
