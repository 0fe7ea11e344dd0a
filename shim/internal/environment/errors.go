package environment

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Errors of the environment's state machine. The HTTP layers map each to Lambda's status
// code and error type (see statusOf in runtimeapi.go).
var (
	// ErrBusy: an invoke arrived while another one is still waiting for its result.
	ErrBusy = errors.New("the execution environment is already processing an invocation")
	// ErrInvalidRequestID: the request id is not the invocation in progress (unknown or stale).
	ErrInvalidRequestID = errors.New("Invalid request ID")
	// ErrResponseTooLarge: the runtime posted more than MaxResponsePayload bytes.
	ErrResponseTooLarge = fmt.Errorf("Exceeded maximum allowed payload size (%d bytes).", MaxResponsePayload)
	// ErrEnvironmentReset: the environment was reset while the call waited (the caller's
	// process is about to be stopped).
	ErrEnvironmentReset = errors.New("the execution environment was reset; the runtime should exit")
	// ErrShuttingDown: the shim is stopping.
	ErrShuttingDown = errors.New("the execution environment is shutting down")
	// ErrUnknownExtension: Lambda-Extension-Identifier names no registered extension.
	ErrUnknownExtension = errors.New("unknown extension identifier")
	// ErrRegistrationClosed: an extension tried to register after Init.
	ErrRegistrationClosed = errors.New("Extension registration closed already")
	// ErrTooManyExtensions: more than MaxExtensions tried to register.
	ErrTooManyExtensions = fmt.Errorf("Extension limit (%d) reached", MaxExtensions)
	// ErrExtensionNameCollision: two extensions with one name.
	ErrExtensionNameCollision = errors.New("Extension with this name already registered")
	// ErrSubscriptionClosed: a Logs API subscription after Init.
	ErrSubscriptionClosed = errors.New("Logs API subscriptions are accepted only during the Init phase")
)

// StateError is an illegal transition: a call the current state does not allow.
type StateError struct {
	Who  string // "runtime" or "extension <name>"
	From string // the state it was in
	To   string // the state the call asked for
	Why  string
}

func (e *StateError) Error() string {
	return fmt.Sprintf("State transition from %s to %s failed for %s. Error: %s", e.From, e.To, e.Who, e.Why)
}

// Function error types the shim itself produces (Lambda's names).
const (
	ErrorTypeTimeout          = "Sandbox.Timedout"
	ErrorTypeExit             = "Runtime.ExitError"
	ErrorTypeInit             = "Runtime.InitError"
	ErrorTypeResponseTooLarge = "Function.ResponseSizeTooLarge"
	ErrorTypeUnknown          = "Runtime.Unknown"
	ErrorTypeExtensionInit    = "Extension.InitError"
	ErrorTypeEntrypoint       = "Runtime.InvalidEntrypoint"
)

// EntrypointError: the runtime's command could not be started at all (missing, not
// executable). Lambda answers Runtime.InvalidEntrypoint.
type EntrypointError struct{ Err error }

func (e *EntrypointError) Error() string { return e.Err.Error() }
func (e *EntrypointError) Unwrap() error { return e.Err }

// ErrorBody is Lambda's function error object.
type ErrorBody struct {
	ErrorMessage string `json:"errorMessage"`
	ErrorType    string `json:"errorType"`
}

func functionErrorJSON(errType, msg string) []byte {
	b, _ := json.Marshal(ErrorBody{ErrorMessage: msg, ErrorType: errType})
	return b
}

func timeoutMessage(id string, c *Config) string {
	return fmt.Sprintf("RequestId: %s Error: Task timed out after %.2f seconds", id, c.Timeout.Seconds())
}

func exitMessage(id string, exit error) string {
	if exit == nil {
		exit = errors.New("exit status unknown")
	}
	return fmt.Sprintf("RequestId: %s Error: Runtime exited with error: %v", id, exit)
}
