package peer

import (
	"context"
	"testing"
	"time"

	"github.com/klambda/klambda/activator/auth"
)

type fakeAuthn struct {
	users map[string]string
	calls int
}

func (f *fakeAuthn) Authenticate(_ context.Context, token string) (auth.Identity, bool, error) {
	f.calls++
	u, ok := f.users[token]
	return auth.Identity{User: u}, ok, nil
}

func TestKubeVerifierAcceptsOnlyTheActivatorsAccountAndCaches(t *testing.T) {
	const sa = "system:serviceaccount:klambda-system:klambda-activator"
	a := &fakeAuthn{users: map[string]string{"peer": sa, "tenant": "system:serviceaccount:team-a:app"}}
	v := NewKubeVerifier(a, sa, time.Minute)
	ctx := context.Background()
	for tok, want := range map[string]bool{"peer": true, "tenant": false, "forged": false, "": false} {
		if got, err := v.IsPeer(ctx, tok); err != nil || got != want {
			t.Errorf("token %q: %v %v, want %v", tok, got, err, want)
		}
	}
	calls := a.calls
	for range 5 {
		if ok, _ := v.IsPeer(ctx, "peer"); !ok {
			t.Fatal("a cached peer token refused")
		}
	}
	if a.calls != calls {
		t.Errorf("a cached peer token was reviewed %d more times", a.calls-calls)
	}
	v.TTL = -time.Second // expired at once: reviewed again
	v.cache.Clear()
	_, _ = v.IsPeer(ctx, "peer")
	_, _ = v.IsPeer(ctx, "peer")
	if a.calls != calls+2 {
		t.Errorf("expired entries: %d reviews, want 2", a.calls-calls)
	}
}
