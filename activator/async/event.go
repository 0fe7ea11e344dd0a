package async

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
)

// PayloadLimit is Lambda's limit on an asynchronous invocation's payload (256 KB).
const PayloadLimit = 256 * 1024

// ErrRequestTooLarge is returned by Enqueue for a payload over PayloadLimit; nothing is
// stored. The Invoke API answers 413 RequestTooLargeException.
var ErrRequestTooLarge = errors.New("Request must be smaller than " + strconv.Itoa(PayloadLimit) + " bytes for the InvokeFunction operation")

// Event is one accepted asynchronous invocation.
type Event struct {
	// RequestID is Lambda's request id; Enqueue assigns one when empty.
	RequestID string
	Namespace string
	Function  string
	// Qualifier as the caller gave it: "" (unqualified), $LATEST, a version or an alias.
	Qualifier string
	Payload   []byte
	// ClientContext is X-Amz-Client-Context as sent (base64 JSON).
	ClientContext string
	// TraceID is X-Amzn-Trace-Id.
	TraceID string
	// Received is when the activator accepted the event; the event's age counts from it.
	Received time.Time
}

// Message headers of a stored event. The payload is the message body, as is.
const (
	hdrRequestID     = "Klambda-Request-Id"
	hdrNamespace     = "Klambda-Namespace"
	hdrFunction      = "Klambda-Function"
	hdrQualifier     = "Klambda-Qualifier"
	hdrClientContext = "Klambda-Client-Context"
	hdrTraceID       = "Klambda-Trace-Id"
	hdrReceived      = "Klambda-Received"
)

func (e *Event) toMsg(subject string) *nats.Msg {
	m := nats.NewMsg(subject)
	m.Data = e.Payload
	h := m.Header
	h.Set(nats.MsgIdHdr, e.RequestID) // JetStream drops a re-published duplicate
	h.Set(hdrRequestID, e.RequestID)
	h.Set(hdrNamespace, e.Namespace)
	h.Set(hdrFunction, e.Function)
	if e.Qualifier != "" {
		h.Set(hdrQualifier, e.Qualifier)
	}
	if e.ClientContext != "" {
		h.Set(hdrClientContext, e.ClientContext)
	}
	if e.TraceID != "" {
		h.Set(hdrTraceID, e.TraceID)
	}
	h.Set(hdrReceived, strconv.FormatInt(e.Received.UnixNano(), 10))
	return m
}

func eventFromMsg(h nats.Header, data []byte) (Event, error) {
	e := Event{
		RequestID:     h.Get(hdrRequestID),
		Namespace:     h.Get(hdrNamespace),
		Function:      h.Get(hdrFunction),
		Qualifier:     h.Get(hdrQualifier),
		ClientContext: h.Get(hdrClientContext),
		TraceID:       h.Get(hdrTraceID),
		Payload:       data,
	}
	ns, err := strconv.ParseInt(h.Get(hdrReceived), 10, 64)
	if err != nil || e.RequestID == "" || e.Namespace == "" || e.Function == "" {
		return e, fmt.Errorf("malformed async event (request id %q)", e.RequestID)
	}
	e.Received = time.Unix(0, ns)
	return e, nil
}
