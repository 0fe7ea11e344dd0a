package persource

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

func TestPerSourceLimitsEachClient(t *testing.T) {
	var served atomic.Int64
	h := Limit(1, 5, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { served.Add(1) }))
	code := func(addr string) int {
		r := httptest.NewRequest("GET", "/metrics", nil)
		r.RemoteAddr = addr
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	limited := 0
	for i := 0; i < 50; i++ {
		if code("10.0.0.66:1234") == http.StatusTooManyRequests {
			limited++
		}
	}
	if limited < 40 || served.Load() > 10 {
		t.Fatalf("50 requests from one client: %d limited, %d served", limited, served.Load())
	}
	if c := code("10.0.0.7:999"); c != http.StatusOK {
		t.Fatalf("another client during the flood: %d", c)
	}
}
