// Package persource limits the requests each client IP may make to an endpoint.
package persource

import (
	"net"
	"net/http"
	"sync"

	"golang.org/x/time/rate"
	"k8s.io/utils/lru"
)

// maxSources bounds the limiters kept.
const maxSources = 4096

// Limit limits the requests each client IP may make to next (rps, burst; limiters for at
// most 4,096 IPs, least recently seen dropped first); past it: 429 with Retry-After. It
// guards endpoints whose every request may cost the API server a review (a metrics
// endpoint behind TokenReview and SubjectAccessReview) against floods of made-up tokens.
func Limit(rps rate.Limit, burst int, next http.Handler) http.Handler {
	var mu sync.Mutex
	limiters := lru.New(maxSources)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		src, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			src = r.RemoteAddr
		}
		mu.Lock()
		var lim *rate.Limiter
		if v, ok := limiters.Get(src); ok {
			lim = v.(*rate.Limiter)
		} else {
			lim = rate.NewLimiter(rps, max(burst, 1))
			limiters.Add(src, lim)
		}
		mu.Unlock()
		if !lim.Allow() {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "too many requests from "+src, http.StatusTooManyRequests)
			return
		}
		next.ServeHTTP(w, r)
	})
}
