package functionurl

import (
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/klambda/klambda/activator/router"
)

// RateCapPerReserved is Lambda's cap on a function URL's request rate: 10 requests per
// second per unit of the function's reserved concurrency (a function without reserved
// concurrency has no per-URL cap). Over it the URL answers 429.
const RateCapPerReserved = 10

// Reservations answers a function's reserved concurrency (router.Table).
type Reservations interface {
	Resolve(namespace, function, qualifier string) (router.Route, error)
}

// rateCaps holds one token bucket per url-id whose function has reserved concurrency:
// 10 × reserved tokens per second, as many in the bucket (one second's worth). An entry
// is made again when the reservation changes; entries of url-ids no longer in the table
// are dropped when there are more entries than URLs.
type rateCaps struct {
	mu sync.Mutex
	m  map[string]*urlCap
}

type urlCap struct {
	reserved int32
	lim      *rate.Limiter
}

// allow takes one request of url-id id (function reserved concurrency reserved) at now.
func (c *rateCaps) allow(id string, reserved int32, now time.Time, table *Table) bool {
	if reserved <= 0 { // none (-1), or 0: the core refuses every invocation itself
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]*urlCap{}
	}
	e, ok := c.m[id]
	if !ok || e.reserved != reserved {
		if !ok && len(c.m) >= table.Len()+64 {
			for k := range c.m {
				if _, live := table.Lookup(k); !live {
					delete(c.m, k)
				}
			}
		}
		r := RateCapPerReserved * int(reserved)
		e = &urlCap{reserved: reserved, lim: rate.NewLimiter(rate.Limit(r), r)}
		c.m[id] = e
	}
	return e.lim.AllowN(now, 1)
}
