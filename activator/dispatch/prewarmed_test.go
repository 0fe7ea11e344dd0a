package dispatch

import (
	"context"
	"testing"
	"time"

	"github.com/klambda/klambda/activator/fnkey"
)

// A pod held for its specialization stays out of the informer's view (it may already look
// Ready with the version's labels) until it joins, and then goes to the waiting request at
// once; one that failed stays out for FailedHold.
func TestHeldPodJoinsOnlyWhenSpecialized(t *testing.T) {
	d := New(nil)
	now := time.Now()
	d.now = func() time.Time { return now }
	key := fnkey.Key{Namespace: "ns", Function: "f", Version: "$LATEST"}
	d.Hold(key, "generic-1")
	got := make(chan *Lease, 1)
	go func() {
		l, err := d.Acquire(context.Background(), key, -1)
		if err != nil {
			t.Error(err)
		}
		got <- l
	}()
	for d.Stats()[0].Waiting != 1 {
		time.Sleep(time.Millisecond)
	}
	pod := Environment{Name: "generic-1", Addr: "10.0.0.1:9000", Secret: "s", Claimed: true}
	d.SetEnvironments(key, []Environment{pod})
	select {
	case l := <-got:
		t.Fatalf("a held pod served before its specialization: %+v", l.Env)
	case <-time.After(50 * time.Millisecond):
	}
	d.Join(key, pod)
	l := <-got
	if l.Env.Name != "generic-1" || !l.FirstUse || !d.Stats()[0].Environments[0].Claimed {
		t.Fatalf("lease %+v, stats %+v", l.Env, d.Stats())
	}
	// The informer now shows it: the same environment, still leased.
	d.SetEnvironments(key, []Environment{pod})
	if s := d.Stats()[0]; len(s.Environments) != 1 || !s.Environments[0].Busy {
		t.Fatalf("after the informer's view: %+v", s)
	}
	l.Release()

	failed := Environment{Name: "generic-2", Addr: "10.0.0.2:9000"}
	d.Hold(key, failed.Name)
	d.Fail(key, failed.Name)
	d.SetEnvironments(key, []Environment{pod, failed})
	if n := len(d.Stats()[0].Environments); n != 1 {
		t.Fatalf("a failed pod joined: %d environments", n)
	}
	now = now.Add(FailedHold)
	d.SetEnvironments(key, []Environment{pod, failed})
	if n := len(d.Stats()[0].Environments); n != 2 {
		t.Fatalf("after FailedHold: %d environments, want the informer's 2", n)
	}
}
