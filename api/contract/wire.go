package contract

// The shim's invoke endpoint (runtime-shim/README.md, "Invoke endpoint"): the activator
// and the async workers call it; the shim serves it. X-Amz-* and X-Amzn-* are Lambda's
// names; X-Klambda-* are klambda's own.
const (
	// InvokePath is the shim's invoke path (the AWS runtime interface emulator's).
	InvokePath = "/2015-03-31/functions/function/invocations"
	// InvokePathPrefix is the Invoke API's path prefix (functions/{name}/invocations).
	InvokePathPrefix = "/2015-03-31/functions/"
	// HealthPath is the shim's liveness path; its answer carries HeaderBusy.
	HealthPath = "/healthz"
	// ReadyPath is the shim's readiness path.
	ReadyPath = "/readyz"
)

// Header names, in Go's canonical form (what http.Header.Get and Set use).
const (
	HeaderRequestID       = "X-Amzn-Requestid" // X-Amzn-RequestId
	HeaderTraceID         = "X-Amzn-Trace-Id"
	HeaderClientContext   = "X-Amz-Client-Context"
	HeaderCognitoIdentity = "X-Amz-Cognito-Identity"
	HeaderInvocationType  = "X-Amz-Invocation-Type"
	HeaderLogType         = "X-Amz-Log-Type"
	HeaderLogResult       = "X-Amz-Log-Result"
	HeaderFunctionError   = "X-Amz-Function-Error"
	HeaderExecutedVersion = "X-Amz-Executed-Version"
	HeaderErrorType       = "X-Amzn-Errortype" // x-amzn-ErrorType

	HeaderInvokeSecret      = "X-Klambda-Invoke-Secret"
	HeaderInvokedARN        = "X-Klambda-Invoked-Function-Arn"
	HeaderDeadlineMs        = "X-Klambda-Deadline-Ms"
	HeaderDuration          = "X-Klambda-Duration-Ms"
	HeaderInitDuration      = "X-Klambda-Init-Duration-Ms"
	HeaderEnvReset          = "X-Klambda-Environment-Reset"
	HeaderFunctionErrorType = "X-Klambda-Function-Error-Type"
	// HeaderBusy is on the shim's /healthz answer: "true" while an invocation runs.
	HeaderBusy = "X-Klambda-Busy"
	// BusyRefusalLog starts the line the shim writes to its log (followed by the request
	// id) when it refuses an invocation because one is already running: two invocations
	// sent to one environment at once, which the activator never does.
	BusyRefusalLog = "KLAMBDA_BUSY_REFUSAL: a second invocation arrived while one was running; refused"
)

// Invocation types (X-Amz-Invocation-Type).
const (
	InvocationRequestResponse = "RequestResponse"
	InvocationEvent           = "Event"
	InvocationDryRun          = "DryRun"
)

// LogTypeTail is X-Amz-Log-Type's value asking for the last 4 KB of the invocation's log.
const LogTypeTail = "Tail"
