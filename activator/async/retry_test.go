package async

import (
	"testing"
	"time"
)

func TestRetryPolicyDelays(t *testing.T) {
	p := DefaultRetryPolicy()
	if p.functionErrorDelay(1) != time.Minute || p.functionErrorDelay(2) != 2*time.Minute {
		t.Errorf("function error delays %v %v", p.functionErrorDelay(1), p.functionErrorDelay(2))
	}
	want := []time.Duration{1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300}
	for i, w := range want {
		if got := p.throttleDelay(i + 1); got != w*time.Second {
			t.Errorf("throttle delay %d: %s, want %ds", i+1, got, w)
		}
	}
	o := WorkerOptions{Retry: RetryPolicy{FunctionErrorDelays: []time.Duration{time.Second}}}
	o.defaults()
	if o.Retry.ThrottleBase != time.Second || o.Retry.ThrottleMax != 5*time.Minute || o.Retry.DeliveryAttempts != 3 ||
		len(o.Retry.FunctionErrorDelays) != 1 {
		t.Errorf("partial policy filled as %+v", o.Retry)
	}
}
