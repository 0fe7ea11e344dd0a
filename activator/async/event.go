package async

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/klambda/klambda/api/contract"
)

// ErrRequestTooLarge is returned by Enqueue for a payload over contract.MaxAsyncPayload; nothing is
// stored. The Invoke API answers 413 RequestTooLargeException.
var ErrRequestTooLarge = errors.New("Request must be smaller than " + strconv.Itoa(contract.MaxAsyncPayload) + " bytes for the InvokeFunction operation")

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
	// hdrSignature is "v1 <base64url HMAC-SHA256>" over the subject, the headers above and
	// the payload (eventSignature), with the queue's signing key.
	hdrSignature = "Klambda-Signature"
	// hdrMoved marks an event moved from an embedded queue's store (MoveEmbeddedStore):
	// its attempts there are in the state bucket from its first delivery on. Not signed:
	// it only makes a worker look the attempts up.
	hdrMoved = "Klambda-Moved"
)

// signedHeaders are covered by the signature, in this order.
var signedHeaders = []string{hdrRequestID, hdrNamespace, hdrFunction, hdrQualifier, hdrClientContext, hdrTraceID, hdrReceived}

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

// Reasons a worker refuses a stored message (the label of klambda_async_events_rejected_total).
const (
	RejectMalformed       = "malformed"
	RejectSubjectMismatch = "subject_mismatch"
	RejectUnsigned        = "unsigned"
	RejectBadSignature    = "bad_signature"
)

// RejectedError is why a stored message is not an event the activator accepted.
type RejectedError struct {
	Reason string
	msg    string
}

func (e *RejectedError) Error() string { return e.msg }

func reject(reason, format string, args ...any) error {
	return &RejectedError{Reason: reason, msg: fmt.Sprintf(format, args...)}
}

// Bounds of an event's fields: names as the API types allow them, generous bounds on the
// rest, so that a message from elsewhere cannot make a worker log or look up anything big.
var (
	namespaceRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
	functionRE  = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)
	qualifierRE = regexp.MustCompile(`^(\$LATEST|[a-zA-Z0-9_-]{1,128})$`)
	tokenRE     = regexp.MustCompile(`^[!-~]{1,128}$`) // printable ASCII, no space
)

const (
	maxClientContext = 8 << 10 // Lambda: 3,583 bytes of base64
	maxTraceID       = 8 << 10
	// maxClockSkew is how far in the future Received may be (replicas' clocks).
	maxClockSkew = 5 * time.Minute
)

// check applies the bounds a worker applies (Enqueue refuses what a worker would refuse,
// rather than accept an event that could never run).
func (e *Event) check() error {
	switch {
	case !tokenRE.MatchString(e.RequestID):
		return reject(RejectMalformed, "malformed async event: request id %.140q", e.RequestID)
	case !namespaceRE.MatchString(e.Namespace):
		return reject(RejectMalformed, "malformed async event %s: namespace %.80q", e.RequestID, e.Namespace)
	case !functionRE.MatchString(e.Function):
		return reject(RejectMalformed, "malformed async event %s: function %.80q", e.RequestID, e.Function)
	case e.Qualifier != "" && !qualifierRE.MatchString(e.Qualifier):
		return reject(RejectMalformed, "malformed async event %s: qualifier %.140q", e.RequestID, e.Qualifier)
	case len(e.ClientContext) > maxClientContext, len(e.TraceID) > maxTraceID:
		return reject(RejectMalformed, "malformed async event %s: client context or trace id too long", e.RequestID)
	case strings.ContainsAny(e.ClientContext+e.TraceID, "\r\n"):
		return reject(RejectMalformed, "malformed async event %s: line break in client context or trace id", e.RequestID)
	}
	return nil
}

// eventFromMsg reads a stored message, refusing any whose headers are missing, repeated,
// out of bounds, or do not match the subject it was stored under.
func eventFromMsg(subjectPrefix, subject string, h nats.Header, data []byte) (Event, error) {
	for _, k := range signedHeaders {
		if len(h.Values(k)) > 1 {
			return Event{}, reject(RejectMalformed, "malformed async event: header %s repeated", k)
		}
	}
	e := Event{
		RequestID:     h.Get(hdrRequestID),
		Namespace:     h.Get(hdrNamespace),
		Function:      h.Get(hdrFunction),
		Qualifier:     h.Get(hdrQualifier),
		ClientContext: h.Get(hdrClientContext),
		TraceID:       h.Get(hdrTraceID),
		Payload:       data,
	}
	if err := e.check(); err != nil {
		return Event{}, err
	}
	ns, err := strconv.ParseInt(h.Get(hdrReceived), 10, 64)
	if err != nil || ns <= 0 {
		return Event{}, reject(RejectMalformed, "malformed async event %s: received %.40q", e.RequestID, h.Get(hdrReceived))
	}
	e.Received = time.Unix(0, ns)
	if time.Until(e.Received) > maxClockSkew {
		return Event{}, reject(RejectMalformed, "malformed async event %s: received in the future (%s)", e.RequestID, e.Received.UTC().Format(time.RFC3339))
	}
	if want := subjectPrefix + "." + e.Namespace + "." + e.Function; subject != want {
		return Event{}, reject(RejectSubjectMismatch, "async event %s for %s/%s stored under subject %.300q", e.RequestID, e.Namespace, e.Function, subject)
	}
	return e, nil
}

// Signer signs stored events and verifies them when they are read back, so that a message
// published to the queue's subjects by anyone but an activator (another identity on an
// external NATS) is refused: HMAC-SHA256 with a key shared by the activator replicas.
type Signer struct {
	// keys[0] signs; all of them verify (key rotation: add the new key second, roll out,
	// move it first, roll out, drop the old one once the queue holds no event signed by it).
	keys [][]byte
}

// MinSigningKeyLen is the shortest signing key accepted (bytes).
const MinSigningKeyLen = 32

// NewSigner takes one or more keys, each at least MinSigningKeyLen bytes.
func NewSigner(keys ...[]byte) (*Signer, error) {
	if len(keys) == 0 {
		return nil, errors.New("no signing key")
	}
	for i, k := range keys {
		if len(k) < MinSigningKeyLen {
			return nil, fmt.Errorf("signing key %d is %d bytes, want at least %d", i+1, len(k), MinSigningKeyLen)
		}
	}
	return &Signer{keys: keys}, nil
}

// ParseSigningKeys reads a key file: one key per non-empty line (surrounding whitespace
// ignored), the first signing.
func ParseSigningKeys(b []byte) ([][]byte, error) {
	var keys [][]byte
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			keys = append(keys, []byte(l))
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("no key in the signing key file")
	}
	return keys, nil
}

const signatureVersion = "v1 "

func (s *Signer) sign(m *nats.Msg) {
	m.Header.Set(hdrSignature, signatureVersion+base64.RawURLEncoding.EncodeToString(eventMAC(s.keys[0], m.Subject, m.Header, m.Data)))
}

// verify checks the signature header of a stored message.
func (s *Signer) verify(subject string, h nats.Header, data []byte) error {
	vals := h.Values(hdrSignature)
	if len(vals) == 0 {
		return reject(RejectUnsigned, "async event %.140q has no signature", h.Get(hdrRequestID))
	}
	sig, ok := strings.CutPrefix(vals[0], signatureVersion)
	var mac []byte
	var err error
	if ok {
		mac, err = base64.RawURLEncoding.DecodeString(sig)
	}
	if len(vals) != 1 || !ok || err != nil || len(mac) != sha256.Size {
		return reject(RejectBadSignature, "async event %.140q: malformed signature", h.Get(hdrRequestID))
	}
	for _, k := range s.keys {
		if hmac.Equal(mac, eventMAC(k, subject, h, data)) {
			return nil
		}
	}
	return reject(RejectBadSignature, "async event %.140q: signature does not match", h.Get(hdrRequestID))
}

// eventMAC is HMAC-SHA256 over the subject, the signed headers' values and the payload,
// each length-prefixed (no two different messages write the same bytes).
func eventMAC(key []byte, subject string, h nats.Header, data []byte) []byte {
	m := hmac.New(sha256.New, key)
	writeField(m, []byte("klambda-async-event-v1"))
	writeField(m, []byte(subject))
	for _, k := range signedHeaders {
		writeField(m, []byte(h.Get(k)))
	}
	writeField(m, data)
	return m.Sum(nil)
}

func writeField(h hash.Hash, b []byte) {
	var n [binary.MaxVarintLen64]byte
	_, _ = h.Write(n[:binary.PutUvarint(n[:], uint64(len(b)))])
	_, _ = h.Write(b)
}
