package poller

import (
	"context"
	"fmt"
	"testing"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/klambda/klambda/eventsources/batch"
	"github.com/klambda/klambda/eventsources/invokeclient/invoketest"
)

// Issue 15, finding 5 (pollers): a mapping's series are labelled by its namespace, name and
// function; mappings a tenant creates and deletes in a loop must not leave a series each.
func TestStoppedMappingsLeaveNoSeries(t *testing.T) {
	fake := invoketest.New(func(invoketest.Call) invoketest.Outcome { return invoketest.Outcome{} })
	defer fake.Close()
	count := func() int {
		n := 0
		for _, c := range []prometheus.Collector{iteratorAge, offsetLag, batches, recordsInvoked, recordsFiltered, failures, destinationErrors} {
			n += testutil.CollectAndCount(c)
		}
		return n
	}
	base := count()
	for i := 0; i < 20; i++ {
		src := &memSource{pending: []Message{msg(0, 10)}}
		p := New(Config{Namespace: "churn", Name: fmt.Sprintf("mapping-%d", i), Function: "fn", BatchSize: 10,
			Policy: batch.DefaultStreamPolicy()}, src, fake.Invoker(), testr.New(t))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = p.Run(ctx) }()
		wait(t, "checkpoint 0", func() bool { return src.checkpoint() == 0 })
		cancel()
		<-done
	}
	if got := count() - base; got > 0 {
		t.Fatalf("20 mappings created, run and stopped left %d series", got)
	}
}
