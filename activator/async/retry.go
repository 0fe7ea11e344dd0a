package async

import "time"

// RetryPolicy holds Lambda's asynchronous retry timing; the defaults are Lambda's, and tests
// shrink them.
type RetryPolicy struct {
	// FunctionErrorDelays[i] is the wait before attempt i+2 after a function error
	// (Lambda: 1 min before the 2nd attempt, 2 min before the 3rd).
	FunctionErrorDelays []time.Duration
	// Throttles (429) and system errors (5xx) back off exponentially from ThrottleBase to
	// ThrottleMax (Lambda: 1 s to 5 min) until the event's maximum age.
	ThrottleBase time.Duration
	ThrottleMax  time.Duration
	// DeliveryAttempts bounds the sends of one record or dead letter, DeliveryBackoff apart
	// (doubling), each limited to DeliveryTimeout; then the failure is counted and the
	// event settled.
	DeliveryAttempts int
	DeliveryBackoff  time.Duration
	DeliveryTimeout  time.Duration
}

// DefaultRetryPolicy is Lambda's.
func DefaultRetryPolicy() RetryPolicy {
	return RetryPolicy{
		FunctionErrorDelays: []time.Duration{time.Minute, 2 * time.Minute},
		ThrottleBase:        time.Second,
		ThrottleMax:         5 * time.Minute,
		DeliveryAttempts:    3,
		DeliveryBackoff:     time.Second,
		DeliveryTimeout:     10 * time.Second,
	}
}

// functionErrorDelay is the wait after the n-th failed attempt (n ≥ 1).
func (p RetryPolicy) functionErrorDelay(n int) time.Duration {
	if len(p.FunctionErrorDelays) == 0 {
		return 0
	}
	if n-1 < len(p.FunctionErrorDelays) {
		return p.FunctionErrorDelays[n-1]
	}
	return p.FunctionErrorDelays[len(p.FunctionErrorDelays)-1]
}

// throttleDelay is the wait after the n-th throttle or system error (n ≥ 1).
func (p RetryPolicy) throttleDelay(n int) time.Duration {
	d := p.ThrottleBase
	for i := 1; i < n && d < p.ThrottleMax; i++ {
		d *= 2
	}
	if d > p.ThrottleMax {
		d = p.ThrottleMax
	}
	return d
}
