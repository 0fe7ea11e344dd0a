package controlapi

import (
	"errors"
	"net/http"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/klambda/klambda/activator/invoke"
)

// Errors are the Invoke API's (invoke.Error): the exception name in X-Amzn-ErrorType and
// {"Type","message"} in the body, which aws-sdk-go-v2 turns into *types.<Exception>.

func userErr(status int, typ, msg string) *invoke.Error {
	return &invoke.Error{Status: status, Type: typ, Fault: "User", Message: msg}
}

func errNotFound(msg string) *invoke.Error {
	return userErr(http.StatusNotFound, "ResourceNotFoundException", msg)
}

func errFunctionNotFound(arn string) *invoke.Error { return errNotFound("Function not found: " + arn) }

func errInvalid(msg string) *invoke.Error {
	return userErr(http.StatusBadRequest, "InvalidParameterValueException", msg)
}

func errValidation(msg string) *invoke.Error {
	return userErr(http.StatusBadRequest, "ValidationException", msg)
}

func errConflict(msg string) *invoke.Error {
	return userErr(http.StatusConflict, "ResourceConflictException", msg)
}

func errPrecondition(msg string) *invoke.Error {
	return userErr(http.StatusPreconditionFailed, "PreconditionFailedException", msg)
}

func errTooLarge(msg string) *invoke.Error {
	return userErr(http.StatusRequestEntityTooLarge, "RequestTooLargeException", msg)
}

func errBusy(msg string) *invoke.Error {
	e := userErr(http.StatusTooManyRequests, "TooManyRequestsException", "Rate Exceeded. "+msg)
	e.RetryAfterSeconds = 1
	return e
}

func errService(msg string) *invoke.Error {
	return &invoke.Error{Status: http.StatusInternalServerError, Type: "ServiceException", Fault: "Service", Message: msg}
}

func errUpdateInProgress(arn string) *invoke.Error {
	return errConflict("The operation cannot be performed at this time. An update is in progress for resource: " + arn)
}

func errRevision() *invoke.Error {
	return errPrecondition("The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id")
}

// conflictMessage: the object changed between the API's read and its write (a controller's
// status update, another writer). Handler.run serves the operation again, from a new read.
const conflictMessage = "The resource changed while the request was served; read it again (its RevisionId) and retry."

// fromAPI turns an error of the Kubernetes API into Lambda's: a refused object
// (validation, CEL rules) is InvalidParameterValueException with the apiserver's
// message; a lost optimistic-concurrency race is PreconditionFailedException (the object
// changed since it was read, as a stale RevisionId); an existing object is
// ResourceConflictException.
func fromAPI(err error, what string) *invoke.Error {
	var e *invoke.Error
	if errors.As(err, &e) {
		return e
	}
	var st apierrors.APIStatus
	switch {
	case apierrors.IsInvalid(err) && errors.As(err, &st):
		s := st.Status()
		var msgs []string
		if s.Details != nil {
			for _, c := range s.Details.Causes {
				m := c.Message
				if c.Field != "" {
					m = c.Field + ": " + m
				}
				msgs = append(msgs, m)
			}
		}
		if len(msgs) == 0 {
			msgs = []string{s.Message}
		}
		return errInvalid(strings.Join(msgs, "; "))
	case apierrors.IsBadRequest(err):
		return errInvalid(err.Error())
	case apierrors.IsAlreadyExists(err):
		return errConflict(what + " already exist")
	case apierrors.IsConflict(err):
		return errPrecondition(conflictMessage)
	case apierrors.IsNotFound(err):
		return errNotFound(what + " not found")
	case apierrors.IsForbidden(err):
		return errService("the activator is not allowed to do this (its RBAC): " + err.Error())
	case apierrors.IsTooManyRequests(err):
		return errBusy(err.Error())
	}
	return errService(err.Error())
}
