package scaler

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/klambda/klambda/activator/dispatch"
	"github.com/klambda/klambda/activator/fnkey"
	"github.com/klambda/klambda/activator/router"
	"github.com/klambda/klambda/api/contract"
)

// A function with more demand than its burst: the burst at once, then exactly Per more
// at each interval, never between; the requests beyond are refused with Lambda's reason.
func TestScalingRateBurstThenRefill(t *testing.T) {
	s, p, d, start := rig(0, router.Limits{Reserved: -1}, dispatch.PoolStats{Key: key, Waiting: 40})
	s.Rate = Rate{Model: PerFunction, Burst: 10, Per: 3, Interval: 10 * time.Second}
	now := start
	s.now = func() time.Time { return now }
	s.Pass(context.Background())
	if d.replicas != 10 {
		t.Fatalf("first pass: replicas = %d, want the burst 10", d.replicas)
	}
	if len(p.refused) != 1 || p.refused[0].n != 30 || p.refused[0].err.Reason != contract.ReasonFunctionRate ||
		p.refused[0].err.Cause != dispatch.CauseScalingRate {
		t.Fatalf("refused %+v, want the 30 beyond the burst with %s", p.refused, contract.ReasonFunctionRate)
	}
	for i := 1; i <= 5; i++ {
		now = start.Add(time.Duration(i)*10*time.Second - time.Millisecond)
		s.Pass(context.Background())
		if want := int32(10 + 3*(i-1)); d.replicas != want {
			t.Fatalf("just before interval %d: replicas = %d, want %d", i, d.replicas, want)
		}
		now = start.Add(time.Duration(i) * 10 * time.Second)
		s.Pass(context.Background())
		if want := int32(10 + 3*i); d.replicas != want {
			t.Fatalf("at interval %d: replicas = %d, want %d", i, d.replicas, want)
		}
	}
	// Every scale-up was the burst or one interval's refill.
	if got := d.scales; len(got) != 6 || got[0] != 10 || got[5] != 25 {
		t.Fatalf("scales %v", got)
	}
}

// Tokens refill up to the burst, not beyond, however long the function was quiet.
func TestScalingRateRefillCapsAtBurst(t *testing.T) {
	s, _, d, start := rig(0, router.Limits{Reserved: -1}, dispatch.PoolStats{Key: key, Waiting: 4})
	s.Rate = Rate{Model: PerFunction, Burst: 4, Per: 2, Interval: time.Second}
	now := start
	s.now = func() time.Time { return now }
	s.Pass(context.Background())
	now = start.Add(time.Hour)
	d.replicas = 0 // scaled down meanwhile
	s.applied = map[fnkey.Key]applied{}
	p := s.Pools.(*fakePools)
	p.stats[0].Waiting = 100
	s.Pass(context.Background())
	if d.replicas != 4 {
		t.Fatalf("after an hour: replicas = %d, want the burst 4", d.replicas)
	}
}

// Per function, functions scale independently; per namespace, they share one bucket and
// the refusals carry the account's reason.
func TestScalingModels(t *testing.T) {
	other := fnkey.Key{Namespace: "ns", Function: "g", Version: "1"}
	for _, tc := range []struct {
		model  Model
		total  int32 // environments added over both functions
		reason string
	}{{PerFunction, 10, contract.ReasonFunctionRate}, {PerNamespace, 5, contract.ReasonAccountConcurrency}, {Unbounded, 16, ""}} {
		p := &fakePools{stats: []dispatch.PoolStats{{Key: key, Waiting: 8}, {Key: other, Waiting: 8}}}
		deps := map[fnkey.Key]*fakeDeploy{key: {}, other: {}}
		s := New(p, fakeFloors{router.Limits{Reserved: -1}}, perKey(deps))
		s.Rate = Rate{Model: tc.model, Burst: 5, Per: 1, Interval: time.Minute}
		s.Pass(context.Background())
		f, g := deps[key].replicas, deps[other].replicas
		if f+g != tc.total || (tc.model != Unbounded && f != 5 && g != 5) {
			t.Fatalf("%s: f %d g %d, want %d in all", tc.model, f, g, tc.total)
		}
		if refused := 16 - tc.total; (refused == 0) != (len(p.refused) == 0) {
			t.Fatalf("%s: refused %+v, want %d requests refused", tc.model, p.refused, refused)
		}
		for _, r := range p.refused {
			if r.err.Reason != tc.reason {
				t.Fatalf("%s: reason %s, want %s", tc.model, r.err.Reason, tc.reason)
			}
		}
	}
}

// perKey routes Deployments calls to one fake per key.
type perKey map[fnkey.Key]*fakeDeploy

func (m perKey) Replicas(k fnkey.Key) (int32, error) { return m[k].Replicas(k) }
func (m perKey) Scale(ctx context.Context, k fnkey.Key, n int32) error {
	return m[k].Scale(ctx, k, n)
}
func (m perKey) MarkForRemoval(ctx context.Context, k fnkey.Key, pods []string) error {
	return m[k].MarkForRemoval(ctx, k, pods)
}
func (m perKey) Unmark(ctx context.Context, k fnkey.Key, pods []string) error {
	return m[k].Unmark(ctx, k, pods)
}

func TestRateValidate(t *testing.T) {
	for _, r := range []Rate{
		{Model: "account", Burst: 1, Per: 1, Interval: time.Second},
		{Model: PerFunction, Burst: 0, Per: 1, Interval: time.Second},
		{Model: PerNamespace, Burst: 1, Per: 0, Interval: time.Second},
		{Model: PerFunction, Burst: 1, Per: 1},
	} {
		if r.Validate() == nil {
			t.Errorf("%+v accepted", r)
		}
	}
	for _, r := range []Rate{DefaultRate, {Model: Unbounded}} {
		if err := r.Validate(); err != nil {
			t.Errorf("%+v: %v", r, err)
		}
	}
}

// With the real dispatcher: of 6 requests waiting for a function whose burst is 4, the 2
// that came last are refused with the rate's reason; the others keep waiting for the 4
// environments the scaler adds.
func TestScalingRateRefusesWaitersBeyondIt(t *testing.T) {
	disp := dispatch.New(nil)
	d := &fakeDeploy{}
	s := New(disp, fakeFloors{router.Limits{Reserved: -1}}, d)
	s.Rate = Rate{Model: PerFunction, Burst: 4, Per: 1, Interval: time.Minute}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errs := make(chan error, 6)
	for i := 0; i < 6; i++ {
		go func() {
			_, err := disp.Acquire(ctx, key, -1)
			errs <- err
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for st := disp.Stats(); len(st) == 0 || st[0].Waiting < 6; st = disp.Stats() {
		if time.Now().After(deadline) {
			t.Fatal("6 requests never waited")
		}
		time.Sleep(time.Millisecond)
	}
	s.Pass(ctx)
	if d.replicas != 4 {
		t.Fatalf("replicas = %d, want the burst 4", d.replicas)
	}
	for i := 0; i < 2; i++ {
		var ce *dispatch.CapacityError
		if err := <-errs; !errors.As(err, &ce) || ce.Reason != contract.ReasonFunctionRate {
			t.Fatalf("refused request: %v", err)
		}
	}
	if st := disp.Stats(); st[0].Waiting != 4 {
		t.Fatalf("%d waiting, want the 4 the scaler added environments for", st[0].Waiting)
	}
	cancel()
}

// failingDeploy refuses every scale.
type failingDeploy struct{ fakeDeploy }

func (f *failingDeploy) Scale(context.Context, fnkey.Key, int32) error {
	return errors.New("apiserver down")
}

// A scale-up that fails spends nothing of the bucket: the next pass may add the burst.
func TestScalingRateFailedScaleGivesTokensBack(t *testing.T) {
	p := &fakePools{stats: []dispatch.PoolStats{{Key: key, Waiting: 4}}}
	fail := &failingDeploy{}
	s := New(p, fakeFloors{router.Limits{Reserved: -1}}, fail)
	s.Rate = Rate{Model: PerFunction, Burst: 4, Per: 1, Interval: time.Hour}
	s.Pass(context.Background())
	d := &fakeDeploy{}
	s.Deployments = d
	s.Pass(context.Background())
	if d.replicas != 4 || len(p.refused) != 0 {
		t.Fatalf("after a failed scale: replicas %d refused %+v, want the whole burst 4", d.replicas, p.refused)
	}
}
