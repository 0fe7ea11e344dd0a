package v1alpha1

import (
	"time"

	"github.com/klambda/klambda/api/contract"
)

// The CRD defaults memorySize, timeout and ephemeralStorage; these helpers give the same
// values for a configuration read before defaulting (built in Go, or by a component that
// reads objects it did not get through the API server), so no component re-applies Lambda's
// defaults by hand.

// EffectiveMemorySize is memorySize in MB, or Lambda's default (128).
func (c *FunctionConfiguration) EffectiveMemorySize() int32 {
	if c.MemorySize == 0 {
		return contract.DefaultMemorySize
	}
	return c.MemorySize
}

// EffectiveTimeout is timeout, or Lambda's default (3 s).
func (c *FunctionConfiguration) EffectiveTimeout() time.Duration {
	if c.Timeout == 0 {
		return contract.DefaultTimeout
	}
	return time.Duration(c.Timeout) * time.Second
}
