package invoke

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/klambda/klambda/activator/dispatch"
	"github.com/klambda/klambda/api/contract"
)

// Error is an invocation error in Lambda's wire format: the exception name in the
// x-amzn-ErrorType header and a JSON body {"Type","message"[, "Reason"]}. The AWS SDKs
// (restjson1) take the type from the header, the message from "message", and the members
// of the modelled exception (TooManyRequestsException.Reason) from the body, so
// errors.As(err, &types.ResourceNotFoundException{}) works against the activator.
type Error struct {
	Status int
	Type   string // exception name, e.g. ResourceNotFoundException
	// Fault is "User" for caller errors and "Service" for ours, as Lambda fills "Type".
	Fault   string
	Message string
	// Reason is TooManyRequestsException's reason.
	Reason string
	// RetryAfterSeconds, when set, is sent as Retry-After.
	RetryAfterSeconds int

	// cause, when set, is the error errors.Is and errors.As see through this one.
	cause error
}

func (e *Error) Error() string { return e.Type + ": " + e.Message }

// Unwrap is the error's cause: dispatch.ErrNotOwner for ErrNotOwner's.
func (e *Error) Unwrap() error { return e.cause }

// ErrNotOwner answers an invocation of a namespace this replica does not serve (any
// more): nothing ran, and errors.Is(err, dispatch.ErrNotOwner) holds, so the peer router
// (activator/peer) sends it to the namespace's owner. A caller that meets it anyway gets
// a ServiceException to retry.
func ErrNotOwner() *Error {
	e := ErrService("The activator replica serving this function is changing; retry.")
	e.cause = dispatch.ErrNotOwner
	return e
}

// Write answers the error.
func (e *Error) Write(w http.ResponseWriter) {
	h := w.Header()
	h[contract.HeaderErrorType] = []string{e.Type}
	h["Content-Type"] = []string{"application/json"}
	if e.RetryAfterSeconds > 0 {
		h["Retry-After"] = []string{strconv.Itoa(e.RetryAfterSeconds)}
	}
	b := e.Body()
	h["Content-Length"] = []string{strconv.Itoa(len(b))}
	w.WriteHeader(e.Status)
	_, _ = w.Write(b)
}

// Body is the error's JSON body: {"Type","message"[, "Reason"]}.
func (e *Error) Body() []byte {
	b := make([]byte, 0, 64+len(e.Message))
	b = append(b, `{"Type":`...)
	b = strconv.AppendQuote(b, e.Fault)
	b = append(b, `,"message":`...)
	b = appendJSONString(b, e.Message)
	if e.Reason != "" {
		b = append(b, `,"Reason":`...)
		b = appendJSONString(b, e.Reason)
	}
	return append(b, '}')
}

// AsError is err as an invocation error: err's *Error, or a ServiceException for any
// other failure (an Invoker that could not answer).
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return ErrService(err.Error())
}

// appendJSONString quotes s as a JSON string (strconv.Quote's escapes are not all JSON).
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

func errInvocationType(t string) *Error {
	return ErrValidation("1 validation error detected: Value '" + t + "' at 'invocationType' failed to satisfy constraint: Member must satisfy enum value set: [Event, RequestResponse, DryRun]")
}

func userError(status int, typ, msg string) *Error {
	return &Error{Status: status, Type: typ, Fault: "User", Message: msg}
}

// Lambda's invocation errors, with Lambda's status codes and, where the guide or the
// service give one, Lambda's message.

func ErrFunctionNotFound(arn string) *Error {
	return userError(http.StatusNotFound, "ResourceNotFoundException", "Function not found: "+arn)
}

func ErrInvalidJSON(detail string) *Error {
	return userError(http.StatusBadRequest, "InvalidRequestContentException", "Could not parse request body into json: "+detail)
}

func ErrRequestTooLarge(limit int) *Error {
	return userError(http.StatusRequestEntityTooLarge, "RequestTooLargeException",
		"Request must be smaller than "+strconv.Itoa(limit)+" bytes for the InvokeFunction operation")
}

func ErrInvalidParameter(msg string) *Error {
	return userError(http.StatusBadRequest, "InvalidParameterValueException", msg)
}

// ErrValidation is what Lambda answers for a parameter that fails its model's constraints
// (a malformed function name, an invocation type outside the enum).
func ErrValidation(msg string) *Error {
	return userError(http.StatusBadRequest, "ValidationException", msg)
}

func ErrNotActive(state string) *Error {
	return userError(http.StatusConflict, "ResourceConflictException",
		"The operation cannot be performed at this time. The function is currently in the following state: "+state)
}

func ErrNotReady(msg string) *Error {
	return userError(http.StatusBadGateway, "ResourceNotReadyException", msg)
}

// Throttle reasons are contract's (ReasonReservedConcurrency, ReasonAccountConcurrency,
// ReasonCallerRate: the caller's source sent more unknown tokens than auth.Checker's
// per-source review budget), but for the activator's own:
const (
	// ReasonActivatorBusy labels (in klambda_throttles_total only; Lambda has no such
	// reason) the activator's own refusals: request bytes or waiting requests at their bound.
	ReasonActivatorBusy = "ActivatorBusy"
)

func ErrThrottled(reason string) *Error {
	e := userError(http.StatusTooManyRequests, "TooManyRequestsException", contract.ThrottleMessage)
	e.Reason = reason
	e.RetryAfterSeconds = 1
	return e
}

// ErrBusy is the activator's own throttle: it holds as much as it may of what requests
// use (request bytes, waiting requests; Admission). Lambda has no reason for it.
func ErrBusy(msg string) *Error {
	e := userError(http.StatusTooManyRequests, "TooManyRequestsException", contract.ThrottleMessage+" "+msg)
	e.RetryAfterSeconds = 1
	return e
}

func ErrService(msg string) *Error {
	return &Error{Status: http.StatusInternalServerError, Type: "ServiceException", Fault: "Service", Message: msg}
}

// Authentication and authorization errors, as AWS answers them: the SDKs surface the
// type name, and the CLI prints "An error occurred (<type>) when calling the Invoke
// operation: <message>".

func ErrMissingToken() *Error {
	return userError(http.StatusForbidden, "MissingAuthenticationTokenException",
		"Missing Authentication Token: send a Kubernetes token as the session token (AWS_SESSION_TOKEN) or as Authorization: Bearer")
}

func ErrInvalidToken() *Error {
	return userError(http.StatusForbidden, "UnrecognizedClientException", "The security token included in the request is invalid.")
}

func ErrAccessDenied(user, arn string) *Error {
	return userError(http.StatusForbidden, "AccessDeniedException",
		"User: "+user+" is not authorized to perform: lambda:InvokeFunction on resource: "+arn+
			" (Kubernetes: verb invoke on functions.lambda.klambda.dev)")
}
