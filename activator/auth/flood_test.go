package auth

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kubefake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// counting is a concurrency-safe fake API server: alice is a valid token allowed
// everything, anything else is not a token. Each review can be held up by delay.
type counting struct {
	tokenReviews, accessReviews atomic.Int64
	delay                       time.Duration
}

func (f *counting) Authenticate(_ context.Context, token string) (Identity, bool, error) {
	f.tokenReviews.Add(1)
	time.Sleep(f.delay)
	return Identity{User: token}, token == "alice", nil
}

func (f *counting) Allowed(_ context.Context, id Identity, _, _ string) (bool, error) {
	f.accessReviews.Add(1)
	time.Sleep(f.delay)
	return id.User == "alice", nil
}

func randomToken() string { return fmt.Sprintf("forged-%016x%016x", rand.Uint64(), rand.Uint64()) }

// Issue 15, finding 13: every random token cost one TokenReview. A flood from one source
// must cost a bounded number of reviews (the per-source budget), not one per request.
func TestRandomTokenFloodIsRateLimited(t *testing.T) {
	f := &counting{}
	c := NewChecker(f, f)
	ctx := context.Background()
	const flood = 2000
	for i := 0; i < flood; i++ {
		d, err := c.Check(ctx, randomToken(), "team-a", "f")
		if err != nil || d.Outcome == Allowed {
			t.Fatalf("forged token: %+v %v", d, err)
		}
	}
	if n := f.tokenReviews.Load(); n > 100 {
		t.Fatalf("%d forged tokens from one source made %d TokenReviews; want them bounded by the source's review budget", flood, n)
	}
}

// A flood of bad tokens must not flush a good caller's cached decision (it emptied the
// whole cache once it held 10,000 entries).
func TestTokenFloodDoesNotEvictGoodDecisions(t *testing.T) {
	f := &counting{}
	c := NewChecker(f, f)
	ctx := context.Background()
	if d, _ := c.Check(ctx, "alice", "team-a", "f"); d.Outcome != Allowed {
		t.Fatalf("alice: %+v", d)
	}
	before := f.tokenReviews.Load() + f.accessReviews.Load()
	for i := 0; i < 12000; i++ {
		_, _ = c.Check(ctx, randomToken(), "team-a", "f")
	}
	reviews := f.tokenReviews.Load() + f.accessReviews.Load()
	if d, _ := c.Check(ctx, "alice", "team-a", "f"); d.Outcome != Allowed {
		t.Fatalf("alice after the flood: %+v", d)
	}
	if after := f.tokenReviews.Load() + f.accessReviews.Load(); after != reviews {
		t.Fatalf("alice's cached decision was evicted by the flood (reviewed again; %d reviews before the flood)", before)
	}
}

// A rejected token is remembered by itself, whatever function it is tried on.
func TestRejectedTokenCachedAcrossFunctions(t *testing.T) {
	f := &counting{}
	c := NewChecker(f, f)
	ctx := context.Background()
	for i := 0; i < 100; i++ {
		if d, _ := c.Check(ctx, "mallory", "team-a", fmt.Sprintf("f%d", i)); d.Outcome != InvalidToken {
			t.Fatalf("mallory: %+v", d)
		}
	}
	if n := f.tokenReviews.Load(); n != 1 {
		t.Fatalf("one rejected token tried on 100 functions made %d TokenReviews, want 1", n)
	}
}

// Concurrent requests with the same token share one review.
func TestConcurrentReviewsOfOneTokenAreShared(t *testing.T) {
	f := &counting{delay: 100 * time.Millisecond}
	c := NewChecker(f, f)
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := 0; i < 30; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if d, err := c.Check(ctx, "alice", "team-a", "f"); err != nil || d.Outcome != Allowed {
				t.Errorf("%+v %v", d, err)
			}
		}()
	}
	wg.Wait()
	if n, m := f.tokenReviews.Load(), f.accessReviews.Load(); n != 1 || m != 1 {
		t.Fatalf("30 concurrent checks of one token made %d TokenReviews and %d SubjectAccessReviews, want 1 and 1", n, m)
	}
}

// Issue 15, finding 8: the TokenReview names the audience klambda, and a token the API
// server authenticates without that audience (an audience-agnostic authenticator answers
// no status.audiences) is refused.
func TestKubeRequiresAudience(t *testing.T) {
	for _, tc := range []struct {
		name      string
		audiences []string // in the TokenReview's status
		want      bool
	}{
		{"klambda", []string{"klambda"}, true},
		{"api server's", []string{"https://kubernetes.default.svc"}, false},
		{"none", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := kubefake.NewClientset()
			var asked []string
			cs.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
				tr := a.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenReview)
				asked = tr.Spec.Audiences
				tr.Status = authenticationv1.TokenReviewStatus{Authenticated: true, Audiences: tc.audiences,
					User: authenticationv1.UserInfo{Username: "system:serviceaccount:a:caller"}}
				return true, tr, nil
			})
			cs.PrependReactor("create", "subjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
				sar := a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SubjectAccessReview)
				sar.Status.Allowed = true
				return true, sar, nil
			})
			k := &Kube{Client: cs}
			_, ok, err := k.Authenticate(context.Background(), "tok")
			if err != nil {
				t.Fatal(err)
			}
			if len(asked) != 1 || asked[0] != "klambda" {
				t.Errorf("TokenReview spec.audiences = %q, want [klambda]", asked)
			}
			if ok != tc.want {
				t.Errorf("status.audiences %q: authenticated = %v, want %v", tc.audiences, ok, tc.want)
			}
		})
	}
}
