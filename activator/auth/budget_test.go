package auth

import (
	"context"
	"testing"
)

// Even without a review budget (every bad token reviewed), bad tokens live in their own
// bounded cache and never evict allowed decisions.
func TestRefusedTokensHaveTheirOwnCache(t *testing.T) {
	f := &counting{}
	c := NewChecker(f, f)
	c.ReviewRate = 0
	ctx := context.Background()
	_, _ = c.Check(ctx, "alice", "team-a", "f")
	for i := 0; i < maxRefusedEntries+2000; i++ {
		_, _ = c.CheckFrom(ctx, "10.0.0.66", randomToken(), "team-a", "f")
	}
	n := f.tokenReviews.Load()
	if d, _ := c.Check(ctx, "alice", "team-a", "f"); d.Outcome != Allowed || f.tokenReviews.Load() != n {
		t.Fatalf("alice after %d bad tokens: %+v, reviewed again: %v", maxRefusedEntries+2000, d, f.tokenReviews.Load() != n)
	}
	if c.refused.Len() > maxRefusedEntries || c.allowed.Len() > maxCacheEntries {
		t.Fatalf("caches exceed their bounds: refused %d allowed %d", c.refused.Len(), c.allowed.Len())
	}
}

// A second source is not starved by the first one's flood.
func TestReviewBudgetIsPerSource(t *testing.T) {
	f := &counting{}
	c := NewChecker(f, f)
	ctx := context.Background()
	limited := 0
	for i := 0; i < 500; i++ {
		if d, _ := c.CheckFrom(ctx, "10.0.0.66", randomToken(), "team-a", "f"); d.Outcome == RateLimited {
			limited++
		}
	}
	if limited == 0 {
		t.Fatal("a flood of 500 unknown tokens from one source was never rate-limited")
	}
	if d, err := c.CheckFrom(ctx, "10.0.0.7", "alice", "team-a", "f"); err != nil || d.Outcome != Allowed {
		t.Fatalf("another source during the flood: %+v %v", d, err)
	}
}
