package scaler

import (
	"context"
	"testing"
	"time"

	"github.com/klambda/klambda/activator/dispatch"
	"github.com/klambda/klambda/activator/fakeshim"
	"github.com/klambda/klambda/activator/fnkey"
	"github.com/klambda/klambda/activator/router"
	"github.com/klambda/klambda/activator/shimclient"
)

// After an activator restart, a pod that still runs the previous activator's invocation
// looks idle (nothing here sent it anything). Once it has looked idle past the idle timeout
// the scaler must still not pick it for removal: its shim says it is busy. The idle one
// goes; the busy one stays and counts as demand.
func TestScaleDownSkipsEnvironmentBusyElsewhere(t *testing.T) {
	busy, idle := fakeshim.Start("", "$LATEST"), fakeshim.Start("", "$LATEST")
	defer busy.Close()
	defer idle.Close()
	busy.Hold()
	d := dispatch.New(nil)
	cl := shimclient.New()
	d.Check = func(ctx context.Context, e dispatch.Environment) (bool, error) { return cl.Busy(ctx, e.Addr) }
	d.RecheckMin = time.Hour // keep it busy elsewhere for the test
	d.SetEnvironments(key, []dispatch.Environment{
		{Name: "busy", Addr: busy.Addr(), Unverified: true},
		{Name: "idle", Addr: idle.Addr(), Unverified: true},
	})
	dep := &fakeDeploy{replicas: 2}
	s := New(d, fakeFloors{router.Limits{Reserved: -1}}, dep)
	later := time.Now().Add(11 * time.Minute) // both idle past the 10-minute timeout
	s.now = func() time.Time { return later }
	s.Pass(context.Background())
	if len(dep.marked) != 1 || dep.marked[0] != "idle" || dep.replicas != 1 {
		t.Fatalf("marked %v replicas %d: want only the idle environment removed", dep.marked, dep.replicas)
	}
	st := d.Stats()
	if len(st) != 1 || st[0].BusyElsewhere != 1 {
		t.Fatalf("stats %+v: want the busy environment counted as busy elsewhere", st)
	}
	// Next passes: the busy one is demand; it is neither removed nor replaced.
	s.Pass(context.Background())
	if len(dep.marked) != 1 || dep.replicas != 1 {
		t.Fatalf("second pass: marked %v replicas %d", dep.marked, dep.replicas)
	}
}

// A removal mark (pod-deletion-cost) that a previous activator left on a pod it never
// removed, or that stays after a failed scale-down, is cleared: otherwise that pod, maybe
// running an invocation by then, would be the ReplicaSet's first choice at the next
// scale-down.
func TestStaleRemovalMarksAreCleared(t *testing.T) {
	d := dispatch.New(nil)
	d.SetEnvironments(key, []dispatch.Environment{{Name: "left-marked", Addr: "a:9000", Marked: true}, {Name: "plain", Addr: "b:9000"}})
	dep := &fakeDeploy{replicas: 2}
	s := New(d, fakeFloors{router.Limits{Reserved: -1}}, dep)
	s.Pass(context.Background())
	if len(dep.unmarked) != 1 || dep.unmarked[0] != "left-marked" || len(dep.marked) != 0 {
		t.Fatalf("unmarked %v marked %v", dep.unmarked, dep.marked)
	}
	// A failed scale-down unmarks what it marked.
	dep = &fakeDeploy{replicas: 1}
	d2 := dispatch.New(nil)
	d2.SetEnvironments(key, []dispatch.Environment{{Name: "idle", Addr: "c:9000"}})
	s = New(d2, fakeFloors{router.Limits{Reserved: -1}}, failingScale{dep})
	later := time.Now().Add(11 * time.Minute)
	s.now = func() time.Time { return later }
	s.Pass(context.Background())
	if len(dep.marked) != 1 || len(dep.unmarked) != 1 || dep.unmarked[0] != "idle" {
		t.Fatalf("after a failed scale-down: marked %v unmarked %v", dep.marked, dep.unmarked)
	}
}

type failingScale struct{ *fakeDeploy }

func (failingScale) Scale(context.Context, fnkey.Key, int32) error { return context.DeadlineExceeded }
