package scaler

import (
	"context"
	"testing"
	"time"

	"github.com/klambda/klambda/activator/dispatch"
	"github.com/klambda/klambda/activator/fnkey"
	"github.com/klambda/klambda/activator/router"
)

var key = fnkey.Key{Namespace: "ns", Function: "f", Version: "1"}

type fakePools struct {
	stats     []dispatch.PoolStats
	drained   []string
	undrained []string
	refused   []refusal
	nsLimit   int32
}

type refusal struct {
	key fnkey.Key
	n   int
	err *dispatch.CapacityError
}

func (f *fakePools) NamespaceLimit() int32       { return f.nsLimit }
func (f *fakePools) Stats() []dispatch.PoolStats { return f.stats }
func (f *fakePools) Drain(_ fnkey.Key, names []string) []string {
	f.drained = append(f.drained, names...)
	return names
}
func (f *fakePools) Undrain(_ fnkey.Key, names []string) {
	f.undrained = append(f.undrained, names...)
}
func (f *fakePools) Refuse(k fnkey.Key, n int, err *dispatch.CapacityError) int {
	f.refused = append(f.refused, refusal{k, n, err})
	return n
}

type fakeFloors struct{ lim router.Limits }

func (f fakeFloors) LimitsFor(fnkey.Key) router.Limits { return f.lim }
func (f fakeFloors) ProvisionedKeys() []fnkey.Key {
	if f.lim.Provisioned > 0 {
		return []fnkey.Key{key}
	}
	return nil
}

type fakeDeploy struct {
	replicas int32
	marked   []string
	unmarked []string
	scales   []int32
}

func (f *fakeDeploy) Unmark(_ context.Context, _ fnkey.Key, pods []string) error {
	f.unmarked = append(f.unmarked, pods...)
	return nil
}

func (f *fakeDeploy) Replicas(fnkey.Key) (int32, error) { return f.replicas, nil }
func (f *fakeDeploy) Scale(_ context.Context, _ fnkey.Key, n int32) error {
	f.replicas = n
	f.scales = append(f.scales, n)
	return nil
}
func (f *fakeDeploy) MarkForRemoval(_ context.Context, _ fnkey.Key, pods []string) error {
	f.marked = append(f.marked, pods...)
	return nil
}

func rig(replicas int32, lim router.Limits, st dispatch.PoolStats) (*Scaler, *fakePools, *fakeDeploy, time.Time) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	p := &fakePools{stats: []dispatch.PoolStats{st}}
	d := &fakeDeploy{replicas: replicas}
	s := New(p, fakeFloors{lim}, d)
	s.now = func() time.Time { return now }
	return s, p, d, now
}

func TestScaleFromZero(t *testing.T) {
	s, _, d, _ := rig(0, router.Limits{Reserved: -1}, dispatch.PoolStats{Key: key, Waiting: 3})
	s.Pass(context.Background())
	if d.replicas != 3 {
		t.Fatalf("replicas = %d, want 3", d.replicas)
	}
}

func TestReservedCeilingAndProvisionedFloor(t *testing.T) {
	s, _, d, _ := rig(0, router.Limits{Reserved: 2}, dispatch.PoolStats{Key: key, Waiting: 5})
	s.Pass(context.Background())
	if d.replicas != 2 {
		t.Fatalf("replicas = %d, want reserved 2", d.replicas)
	}
	s, _, d, _ = rig(0, router.Limits{Reserved: -1, Provisioned: 4}, dispatch.PoolStats{Key: key})
	s.Pass(context.Background())
	if d.replicas != 4 {
		t.Fatalf("replicas = %d, want provisioned 4", d.replicas)
	}
}

// The namespace limit the scaler caps a version without reservation by is the
// dispatcher's (the one owner of every concurrency limit).
func TestNamespaceLimitCeilingIsTheDispatchers(t *testing.T) {
	s, p, d, _ := rig(0, router.Limits{Reserved: -1}, dispatch.PoolStats{Key: key, Waiting: 7})
	p.nsLimit = 5
	s.Pass(context.Background())
	if d.replicas != 5 {
		t.Fatalf("replicas = %d, want the namespace limit 5", d.replicas)
	}
	s, p, d, _ = rig(0, router.Limits{Reserved: -1}, dispatch.PoolStats{Key: key, Waiting: 7})
	p.nsLimit = -1
	s.Pass(context.Background())
	if d.replicas != 7 {
		t.Fatalf("replicas = %d, want 7 (no namespace limit)", d.replicas)
	}
}

func TestIdleEnvironmentsGoAfterTimeout(t *testing.T) {
	base := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	st := dispatch.PoolStats{Key: key, InFlight: 1, Environments: []dispatch.EnvironmentStats{
		{Name: "busy", Busy: true},
		{Name: "old", IdleSince: base.Add(-11 * time.Minute)},
		{Name: "older", IdleSince: base.Add(-20 * time.Minute)},
		{Name: "fresh", IdleSince: base.Add(-time.Minute)},
	}}
	s, p, d, _ := rig(4, router.Limits{Reserved: -1, Provisioned: 3}, st)
	s.Pass(context.Background())
	// Floor 3: only one of the two expired goes, the longest idle.
	if d.replicas != 3 || len(d.marked) != 1 || d.marked[0] != "older" || p.drained[0] != "older" {
		t.Fatalf("replicas %d marked %v drained %v", d.replicas, d.marked, p.drained)
	}
	// Nothing expired: nothing changes.
	st.Environments = st.Environments[:1]
	s, _, d, _ = rig(1, router.Limits{Reserved: -1}, st)
	s.Pass(context.Background())
	if len(d.scales) != 0 {
		t.Fatalf("scaled %v", d.scales)
	}
}

func TestFunctionIdleTimeoutOverridesDefault(t *testing.T) {
	base := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	st := dispatch.PoolStats{Key: key, Environments: []dispatch.EnvironmentStats{
		{Name: "a", IdleSince: base.Add(-6 * time.Second)},
		{Name: "b", IdleSince: base.Add(-2 * time.Second)},
	}}
	// Default 10 minutes: neither goes.
	s, _, d, _ := rig(2, router.Limits{Reserved: -1}, st)
	s.Pass(context.Background())
	if len(d.scales) != 0 {
		t.Fatalf("default timeout: scaled %v", d.scales)
	}
	// The function's 5 s: the one idle for 6 s goes.
	s, _, d, _ = rig(2, router.Limits{Reserved: -1, IdleTimeout: 5 * time.Second}, st)
	s.Pass(context.Background())
	if d.replicas != 1 || len(d.marked) != 1 || d.marked[0] != "a" {
		t.Fatalf("function timeout 5s: replicas %d marked %v", d.replicas, d.marked)
	}
}
