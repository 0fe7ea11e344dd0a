package scaler

import (
	"context"
	"testing"
	"time"

	"github.com/klambda/klambda/activator/dispatch"
	"github.com/klambda/klambda/activator/fnkey"
	"github.com/klambda/klambda/activator/router"
)

// fakePrewarmed has avail pool pods; those it starts stay starting.
type fakePrewarmed struct {
	avail, starting int
	asked           []int
	removed         []string
}

func (f *fakePrewarmed) Start(_ fnkey.Key, n int) int {
	f.asked = append(f.asked, n)
	got := min(n, f.avail)
	f.avail -= got
	f.starting += got
	return got
}
func (f *fakePrewarmed) Starting(fnkey.Key) int { return f.starting }
func (f *fakePrewarmed) Remove(_ context.Context, _ fnkey.Key, pods []string) error {
	f.removed = append(f.removed, pods...)
	return nil
}

// Waiting requests take pool pods first; the Deployment adds only the rest; pods being
// prepared count as capacity, so the next pass adds nothing.
func TestPoolPodsServeWaitingRequestsFirst(t *testing.T) {
	s, p, d, _ := rig(0, router.Limits{Reserved: -1}, dispatch.PoolStats{Key: key, Waiting: 3})
	pw := &fakePrewarmed{avail: 2}
	s.Prewarmed = pw
	s.Pass(context.Background())
	if pw.starting != 2 || d.replicas != 1 || len(pw.asked) != 1 || pw.asked[0] != 3 {
		t.Fatalf("starting %d, replicas %d, asked %v; want 2 from the pool and 1 replica", pw.starting, d.replicas, pw.asked)
	}
	s.now = func() time.Time { return time.Date(2026, 1, 1, 13, 0, 0, 0, time.UTC) }
	s.Pass(context.Background())
	if pw.starting != 2 || d.replicas != 1 || len(d.scales) != 1 || len(p.refused) != 0 {
		t.Fatalf("second pass: starting %d, replicas %d, scales %v, refused %v", pw.starting, d.replicas, d.scales, p.refused)
	}
	// Provisioned concurrency (no request waiting) is the Deployment's.
	s, _, d, _ = rig(0, router.Limits{Reserved: -1, Provisioned: 2}, dispatch.PoolStats{Key: key})
	pw = &fakePrewarmed{avail: 2}
	s.Prewarmed = pw
	s.Pass(context.Background())
	if d.replicas != 2 || len(pw.asked) != 0 {
		t.Fatalf("provisioned: replicas %d, pool asked %v", d.replicas, pw.asked)
	}
}

// An idle claimed environment is deleted, never scaled away through the Deployment (it is
// not one of its replicas); an idle replica still is.
func TestIdleClaimedEnvironmentsAreDeleted(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	old := now.Add(-time.Hour)
	s, p, d, _ := rig(1, router.Limits{Reserved: -1}, dispatch.PoolStats{Key: key, Environments: []dispatch.EnvironmentStats{
		{Name: "claimed", Claimed: true, IdleSince: old}, {Name: "replica", IdleSince: old.Add(time.Minute)}}})
	pw := &fakePrewarmed{}
	s.Prewarmed = pw
	s.Pass(context.Background())
	if len(pw.removed) != 1 || pw.removed[0] != "claimed" {
		t.Fatalf("removed %v, want the claimed pod", pw.removed)
	}
	if d.replicas != 0 || len(d.marked) != 1 || d.marked[0] != "replica" || len(p.drained) != 2 {
		t.Fatalf("replicas %d marked %v drained %v", d.replicas, d.marked, p.drained)
	}
}
