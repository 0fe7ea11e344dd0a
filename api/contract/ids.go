package contract

import "github.com/google/uuid"

// NewRequestID is a Lambda request id (a random UUID), as Lambda gives each invocation.
func NewRequestID() string { return uuid.NewString() }
