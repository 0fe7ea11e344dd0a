// Package peer carries invocations between activator replicas. A replica that receives an
// invocation of a namespace another replica owns (activator/ownership) forwards the typed
// invoke.Input to that replica's peer port and relays its invoke.Output, so a caller never
// needs to know which replica it reached. The owner trusts a forwarded invocation as
// authorized: only activators may call the peer port (their ServiceAccount's token, made
// for the peer audience, is reviewed and cached; see Verifier).
package peer

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"

	"github.com/klambda/klambda/activator/dispatch"
	"github.com/klambda/klambda/activator/invoke"
	"github.com/klambda/klambda/api/contract"
)

// Path is the peer endpoint.
const Path = "/klambda-peer/v1/invocations"

// The Input's fields travel as headers; the payload is the body.
const (
	hNamespace      = "X-Klambda-Peer-Namespace"
	hFunction       = "X-Klambda-Peer-Function"
	hQualifier      = "X-Klambda-Peer-Qualifier"
	hInvocationType = "X-Klambda-Peer-Invocation-Type"
	hClientContext  = "X-Klambda-Peer-Client-Context"
	hTraceID        = "X-Klambda-Peer-Trace-Id"
	hLogTail        = "X-Klambda-Peer-Log-Tail"
	hRequestID      = "X-Klambda-Peer-Request-Id"
	// hResponseStream asks for the response stream (Input.ResponseStream). A streamed
	// answer is marked with contract.HeaderResponseStream, relayed piece by piece as the
	// owner reads it, and carries its outcome in trailers (as the shim's): a stream the
	// owner could not finish is aborted, so the forwarder's read fails.
	hResponseStream = "X-Klambda-Peer-Response-Stream"
	// hNotOwner marks the answer of a replica that does not own the namespace (any more):
	// the forwarder looks the owner up again. Nothing ran.
	hNotOwner = "X-Klambda-Peer-Not-Owner"
)

// ErrNotOwner: the replica (the peer, or this one) does not own the namespace (ownership
// moved); nothing ran.
var ErrNotOwner = dispatch.ErrNotOwner

// decode reads an Input from a peer request's headers (the payload is read apart).
func decode(h http.Header) (invoke.Input, error) {
	in := invoke.Input{
		Namespace: h.Get(hNamespace), Function: h.Get(hFunction), Qualifier: h.Get(hQualifier),
		InvocationType: h.Get(hInvocationType), ClientContext: h.Get(hClientContext),
		TraceID: h.Get(hTraceID), RequestID: h.Get(hRequestID), LogTail: h.Get(hLogTail) == "true",
		ResponseStream: h.Get(hResponseStream) == "true",
	}
	if in.Namespace == "" || in.Function == "" {
		return in, errors.New("peer: a forwarded invocation names its namespace and function")
	}
	return in, nil
}

// writeOutput answers a forwarded invocation with out (its Body streamed).
func writeOutput(w http.ResponseWriter, out *invoke.Output) {
	h := w.Header()
	set := func(k, v string) {
		if v != "" {
			h[k] = []string{v}
		}
	}
	set(contract.HeaderRequestID, out.RequestID)
	set(contract.HeaderExecutedVersion, out.ExecutedVersion)
	set(contract.HeaderFunctionError, out.FunctionError)
	set(contract.HeaderFunctionErrorType, out.ErrorType)
	set(contract.HeaderLogResult, out.LogResult)
	set("Content-Type", out.ContentType)
	if out.Streamed {
		writeStream(w, out)
		return
	}
	if out.ContentLength >= 0 && out.Body != nil {
		h["Content-Length"] = []string{strconv.FormatInt(out.ContentLength, 10)}
	}
	w.WriteHeader(out.StatusCode)
	if out.Body != nil {
		_, _ = io.Copy(w, out.Body)
	}
}

// writeStream relays a streamed Output: each piece flushed as it is read, the outcome in
// trailers; a stream cut off at the owner is aborted here too.
func writeStream(w http.ResponseWriter, out *invoke.Output) {
	h := w.Header()
	h[contract.HeaderResponseStream] = []string{contract.ResponseStreamMode}
	w.WriteHeader(out.StatusCode)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	for {
		n, err := out.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return // the forwarder went away; the Output's Close reads the rest
			}
			_ = rc.Flush()
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			panic(http.ErrAbortHandler)
		}
	}
	if !out.Complete {
		panic(http.ErrAbortHandler)
	}
	trailer := func(k, v string) {
		if v != "" {
			h[http.TrailerPrefix+k] = []string{v}
		}
	}
	trailer(contract.TrailerFunctionError, out.FunctionError)
	trailer(contract.TrailerFunctionErrorType, out.ErrorType)
	trailer(contract.TrailerLogResult, out.LogResult)
	if len(out.ErrorBody) > 0 {
		trailer(contract.TrailerFunctionErrorBody, base64.StdEncoding.EncodeToString(out.ErrorBody))
	}
	h[http.TrailerPrefix+hStreamComplete] = []string{"true"}
}

// hStreamComplete is the trailer that ends a streamed answer the owner read to its end.
const hStreamComplete = "X-Klambda-Peer-Stream-Complete"

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// readOutput turns a peer's answer into an Output or an *invoke.Error.
func readOutput(resp *http.Response) (*invoke.Output, error) {
	if resp.Header.Get(hNotOwner) != "" {
		drain(resp.Body)
		return nil, ErrNotOwner
	}
	if resp.StatusCode >= 300 {
		defer drain(resp.Body)
		return nil, readError(resp)
	}
	h := resp.Header
	out := &invoke.Output{StatusCode: resp.StatusCode, RequestID: h.Get(contract.HeaderRequestID),
		ExecutedVersion: h.Get(contract.HeaderExecutedVersion), FunctionError: h.Get(contract.HeaderFunctionError),
		ErrorType: h.Get(contract.HeaderFunctionErrorType), ContentType: h.Get("Content-Type"),
		LogResult: h.Get(contract.HeaderLogResult), ContentLength: resp.ContentLength}
	switch {
	case resp.StatusCode != http.StatusOK:
		drain(resp.Body)
	case h.Get(contract.HeaderResponseStream) == contract.ResponseStreamMode:
		out.Streamed = true
		out.Body = &streamBody{resp: resp, out: out}
	default:
		out.Body = resp.Body
	}
	return out, nil
}

// streamBody is a forwarded streamed answer; at its end the outcome comes from the
// trailers.
type streamBody struct {
	resp *http.Response
	out  *invoke.Output
	done bool
}

func (s *streamBody) Read(p []byte) (int, error) {
	n, err := s.resp.Body.Read(p)
	if err != nil && !s.done {
		s.done = true
		t := s.resp.Trailer
		if errors.Is(err, io.EOF) && t.Get(hStreamComplete) == "true" {
			s.out.Complete = true
			s.out.FunctionError = t.Get(contract.TrailerFunctionError)
			s.out.ErrorType = t.Get(contract.TrailerFunctionErrorType)
			s.out.LogResult = t.Get(contract.TrailerLogResult)
			if b := t.Get(contract.TrailerFunctionErrorBody); b != "" {
				s.out.ErrorBody, _ = base64.StdEncoding.DecodeString(b)
			}
		} else if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF // ended without the owner's outcome: cut off
		}
	}
	return n, err
}

func (s *streamBody) Close() error {
	_, _ = io.Copy(io.Discard, io.LimitReader(s.resp.Body, 64<<10))
	return s.resp.Body.Close()
}

// readError reads an invocation error in Lambda's wire format (invoke.Error.Write).
func readError(resp *http.Response) *invoke.Error {
	var body struct {
		Type, Message, Reason string
	}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	_ = json.Unmarshal(raw, &body)
	e := &invoke.Error{Status: resp.StatusCode, Type: resp.Header.Get(contract.HeaderErrorType),
		Fault: body.Type, Message: body.Message, Reason: body.Reason}
	if e.Type == "" {
		return invoke.ErrService("the owning activator answered " + resp.Status + ": " + string(bytes.TrimSpace(raw)))
	}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
		e.RetryAfterSeconds = s
	}
	return e
}

func drain(r io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(r, 64<<10))
	r.Close()
}
