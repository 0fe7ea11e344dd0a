package contract

import "time"

// Latest is the qualifier of a function's unpublished version.
const Latest = "$LATEST"

// Lambda's limits (spec/limits.md).
const (
	// MaxSyncPayload is the largest request and response of a synchronous invocation.
	MaxSyncPayload = 6 * 1024 * 1024
	// MaxAsyncPayload is the largest event of an asynchronous invocation.
	MaxAsyncPayload = 256 * 1024
	// MaxClientContext is the largest decoded X-Amz-Client-Context.
	MaxClientContext = 3583
	// MaxQualifier is the longest qualifier (alias name or version number).
	MaxQualifier = 128
	// MaxCodeSizeUnzipped is Lambda's 250 MB limit on a function's unzipped code and layers
	// (CodeSizeUnzipped of GetAccountSettings).
	MaxCodeSizeUnzipped = 262144000
)

// Lambda's defaults for a function's configuration. The CRD defaults these too; components
// use them only for objects read before defaulting (or built in tests).
const (
	DefaultTimeout    = 3 * time.Second
	DefaultMemorySize = 128 // MB
)

// Throttle reasons, as Lambda names them in TooManyRequestsException.Reason.
const (
	ReasonReservedConcurrency = "ReservedFunctionConcurrentInvocationLimitExceeded"
	ReasonAccountConcurrency  = "ConcurrentInvocationLimitExceeded"
	// ReasonCallerRate: a caller's source sent more unknown tokens than the activator
	// reviews per second.
	ReasonCallerRate = "CallerRateLimitExceeded"
	// ReasonFunctionRate: Lambda's function-level rate reason. klambda answers it when a
	// function's scaling rate (new environments per interval, the activator's
	// --scaling-model=function) is spent: requests arrive faster than the function may scale.
	ReasonFunctionRate = "FunctionInvocationRateLimitExceeded"
	// ReasonReservedRate: a function URL's request rate is over 10 × the function's
	// reserved concurrency per second.
	ReasonReservedRate = "ReservedFunctionInvocationRateLimitExceeded"
)

// ThrottleMessage is the message of Lambda's TooManyRequestsException for a concurrency
// limit.
const ThrottleMessage = "Rate Exceeded."
