package scaler

import (
	"context"
	"testing"
	"time"

	"github.com/klambda/klambda/activator/dispatch"
	"github.com/klambda/klambda/activator/fakeshim"
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
