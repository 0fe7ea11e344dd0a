package contract

// Response streaming between the activator and the shim (runtime-shim/README.md,
// "Response streaming").
//
// The activator asks for a streamed answer with HeaderResponseStream on the invoke
// request. When the function answers in the Runtime API's streaming mode
// (Lambda-Runtime-Function-Response-Mode: streaming), the shim then answers 200 with
// HeaderResponseStream set, the function's Content-Type, a chunked body carrying the
// function's bytes as they come, and the invocation's outcome in trailers
// (TrailerFunctionError …). Without the request header, a streamed response is buffered
// by the shim (up to MaxSyncPayload) and answered as any other.
const (
	// HeaderResponseStream: on the invoke request, "1" asks for a streamed answer; on the
	// answer, "streaming" marks one (its outcome is in the trailers).
	HeaderResponseStream = "X-Klambda-Response-Stream"
	// ResponseStreamMode is HeaderResponseStream's value on a streamed answer.
	ResponseStreamMode = "streaming"

	// Trailers of a streamed answer.
	TrailerFunctionError     = HeaderFunctionError     // "Unhandled" on a function error
	TrailerFunctionErrorType = HeaderFunctionErrorType // the error type
	// TrailerFunctionErrorBody is the error object (JSON), base64-encoded.
	TrailerFunctionErrorBody = "X-Klambda-Function-Error-Body"
	TrailerDuration          = HeaderDuration
	TrailerLogResult         = HeaderLogResult
	TrailerEnvReset          = HeaderEnvReset

	// MaxStreamedResponse is Lambda's limit on a streamed response (20 MB); past it the
	// stream ends with Function.ResponseSizeTooLarge.
	MaxStreamedResponse = 20 * 1024 * 1024
	// StreamUncappedBytes is how much of a streamed response goes at full speed; the rest
	// goes at StreamBandwidth bytes per second at most.
	StreamUncappedBytes = 6 * 1024 * 1024
	StreamBandwidth     = 2 * 1024 * 1024
)
