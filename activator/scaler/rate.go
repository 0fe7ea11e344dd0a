package scaler

import (
	"fmt"
	"sync"
	"time"

	"github.com/klambda/klambda/activator/fnkey"
	"github.com/klambda/klambda/api/contract"
)

// Model says what shares one bucket of new environments.
type Model string

const (
	// PerFunction: each function (all its versions) has a bucket of its own: Lambda's
	// scaling since 2023, 1,000 new environments every 10 seconds per function,
	// independently of other functions.
	PerFunction Model = "function"
	// PerNamespace: a namespace's functions share one bucket: Lambda's earlier
	// account-wide burst (500–3,000 by Region), then 500 more a minute.
	PerNamespace Model = "namespace"
	// Unbounded: no scaling rate; only concurrency limits bound scale-up.
	Unbounded Model = "none"
)

// Rate bounds how fast environments are added: Burst at once, then Per more every
// Interval, in one bucket per function or per namespace (Model). Requests that wait
// beyond what the bucket allows are refused with 429 TooManyRequestsException, as Lambda
// throttles requests that come faster than a function may scale.
type Rate struct {
	Model    Model
	Burst    int
	Per      int
	Interval time.Duration
}

// DefaultRate is Lambda's current scaling rate: 1,000 environments per function at once,
// then 1,000 more every 10 seconds.
var DefaultRate = Rate{Model: PerFunction, Burst: 1000, Per: 1000, Interval: 10 * time.Second}

// Validate refuses a rate that cannot work.
func (r Rate) Validate() error {
	switch r.Model {
	case Unbounded:
		return nil
	case PerFunction, PerNamespace:
	default:
		return fmt.Errorf("scaling model %q: want %s, %s or %s", r.Model, PerFunction, PerNamespace, Unbounded)
	}
	if r.Burst < 1 || r.Per < 1 || r.Interval <= 0 {
		return fmt.Errorf("scaling rate: burst (%d) and environments per interval (%d) must be >= 1 and the interval (%s) > 0", r.Burst, r.Per, r.Interval)
	}
	return nil
}

// reason is the TooManyRequestsException reason of a request refused at this rate: a
// function's own rate, or the account's (namespace's) burst.
func (r Rate) reason() string {
	if r.Model == PerNamespace {
		return contract.ReasonAccountConcurrency
	}
	return contract.ReasonFunctionRate
}

// buckets are the token buckets of new environments, by function or namespace.
type buckets struct {
	mu sync.Mutex
	m  map[fnkey.Key]*bucket
}

// bucket refills by whole intervals: Per tokens at each Interval after last, up to Burst.
type bucket struct {
	tokens int
	last   time.Time
}

// id is the bucket key's version draws from.
func (r Rate) id(key fnkey.Key) fnkey.Key {
	if r.Model == PerNamespace {
		return fnkey.Key{Namespace: key.Namespace}
	}
	return fnkey.Key{Namespace: key.Namespace, Function: key.Function}
}

// take takes up to n tokens for key at now, and answers how many it took.
func (b *buckets) take(r Rate, key fnkey.Key, now time.Time, n int) int {
	if r.Model == Unbounded || n <= 0 {
		return max(n, 0)
	}
	id := r.id(key)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.m == nil {
		b.m = map[fnkey.Key]*bucket{}
	}
	k := b.m[id]
	if k == nil {
		k = &bucket{tokens: r.Burst, last: now}
		b.m[id] = k
	}
	k.refill(r, now)
	n = min(n, k.tokens)
	k.tokens -= n
	return n
}

// giveBack returns n tokens key took for environments that were not added (the scale
// failed).
func (b *buckets) giveBack(r Rate, key fnkey.Key, n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if k := b.m[r.id(key)]; k != nil {
		k.tokens = min(r.Burst, k.tokens+n)
	}
}

func (k *bucket) refill(r Rate, now time.Time) {
	if steps := now.Sub(k.last) / r.Interval; steps > 0 {
		k.tokens = int(min(int64(r.Burst), int64(k.tokens)+int64(steps)*int64(r.Per)))
		k.last = k.last.Add(steps * r.Interval)
	}
}

// prune forgets full buckets (a new one starts full): the map does not grow with every
// function ever scaled.
func (b *buckets) prune(r Rate, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for id, k := range b.m {
		if k.refill(r, now); k.tokens >= r.Burst {
			delete(b.m, id)
		}
	}
}
