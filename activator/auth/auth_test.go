package auth

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"
)

type fake struct {
	reviews, checks int
	fail            bool
}

func (f *fake) Authenticate(_ context.Context, token string) (Identity, bool, error) {
	f.reviews++
	if f.fail {
		return Identity{}, false, errors.New("apiserver down")
	}
	switch token {
	case "alice", "bob":
		return Identity{User: token}, true, nil
	}
	return Identity{}, false, nil
}

func (f *fake) Allowed(_ context.Context, id Identity, ns, fn string) (bool, error) {
	f.checks++
	return id.User == "alice" && ns == "team-a" && fn == "f", nil
}

func TestCheckerOutcomesAndCache(t *testing.T) {
	f := &fake{}
	c := NewChecker(f, f)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c.now = func() time.Time { return now }
	ctx := context.Background()
	cases := []struct {
		token, ns, fn string
		want          Outcome
	}{
		{"", "team-a", "f", NoToken},
		{"mallory", "team-a", "f", InvalidToken},
		{"bob", "team-a", "f", Denied},
		{"alice", "team-a", "g", Denied},
		{"alice", "team-a", "f", Allowed},
	}
	for _, cs := range cases {
		d, err := c.Check(ctx, cs.token, cs.ns, cs.fn)
		if err != nil || d.Outcome != cs.want {
			t.Errorf("%+v: %+v %v", cs, d, err)
		}
	}
	reviews := f.reviews
	for i := 0; i < 100; i++ {
		if d, _ := c.Check(ctx, "alice", "team-a", "f"); d.Outcome != Allowed {
			t.Fatal("cached decision changed")
		}
	}
	if f.reviews != reviews {
		t.Fatalf("warm checks made %d reviews", f.reviews-reviews)
	}
	now = now.Add(11 * time.Second)
	c.Check(ctx, "alice", "team-a", "f")
	if f.reviews != reviews+1 {
		t.Fatal("expired decision not reviewed again")
	}
	f.fail = true
	now = now.Add(time.Minute)
	if _, err := c.Check(ctx, "alice", "team-a", "f"); err == nil {
		t.Fatal("a failed review must be an error, never an allow")
	}
}

func TestTokenFrom(t *testing.T) {
	h := http.Header{}
	h.Set("X-Amz-Security-Token", "session")
	h.Set("Authorization", "AWS4-HMAC-SHA256 Credential=x/20260101/us-east-1/lambda/aws4_request, SignedHeaders=host, Signature=0")
	if got := TokenFrom(h); got != "session" {
		t.Fatalf("SigV4 + session token: %q", got)
	}
	h.Set("Authorization", "Bearer abc")
	if got := TokenFrom(h); got != "abc" {
		t.Fatalf("bearer: %q", got)
	}
}
