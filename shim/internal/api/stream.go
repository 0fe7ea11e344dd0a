package api

import (
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/klambda/klambda/api/contract"
	"github.com/klambda/klambda/shim/internal/environment"
)

// The Runtime API's streaming response mode: POST /runtime/invocation/{id}/response with
// Lambda-Runtime-Function-Response-Mode: streaming, a chunked body, and the outcome in the
// trailers Lambda-Runtime-Function-Error-Type and Lambda-Runtime-Function-Error-Body
// (base64 of the error object), as aws-lambda-ric's streamifyResponse sends it.
const (
	headerResponseMode     = "Lambda-Runtime-Function-Response-Mode"
	responseModeStreaming  = "streaming"
	trailerErrorType       = "Lambda-Runtime-Function-Error-Type"
	trailerErrorBody       = "Lambda-Runtime-Function-Error-Body"
	defaultStreamMediaType = "application/octet-stream"
	// streamChunk is the most the shim reads of a streamed response before passing it on.
	streamChunk = 32 << 10
)

// streamLimits are Lambda's limits on a streamed response (contract); tests lower them.
var streamLimits = struct {
	max      int64 // past it the stream ends with Function.ResponseSizeTooLarge
	uncapped int64 // the first bytes go at full speed
	rate     int64 // then at most this many bytes per second
}{contract.MaxStreamedResponse, contract.StreamUncappedBytes, contract.StreamBandwidth}

var streamBufs = sync.Pool{New: func() any { b := make([]byte, streamChunk); return &b }}

// isStreamingResponse: the runtime posts its response in streaming mode.
func isStreamingResponse(r *http.Request) bool {
	v := r.Header[headerResponseMode]
	return len(v) > 0 && strings.EqualFold(v[0], responseModeStreaming)
}

// streamWanted: the caller of invocation id asked for a stream. A chunked response that
// declares trailers (aws-lambda-go posts every response so, and streams a handler's
// io.Reader as it is read, without the streaming-mode header) is then streamed as well;
// for other callers it takes the buffered path, unchanged.
func (a *RuntimeAPI) streamWanted(id string) bool {
	want, err := a.env.StreamWanted(id)
	return err == nil && want
}

// streamedResponse is a POST /response in streaming mode whose caller asked for a
// stream: the bytes go to the caller as they come.
func (a *RuntimeAPI) streamedResponse(w http.ResponseWriter, r *http.Request, id string) {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		ct = defaultStreamMediaType
	}
	s, err := a.env.StartStream(id, ct)
	if err != nil {
		writeStateMachineError(w, err)
		return
	}
	bp := streamBufs.Get().(*[]byte)
	defer streamBufs.Put(bp)
	buf := *bp
	var total int64
	var capStart time.Time // when the response passed the uncapped bytes
	var end environment.StreamEnd
	var readErr error
	for {
		n, err := r.Body.Read(buf)
		if n > 0 {
			if total+int64(n) > streamLimits.max {
				end.TooLarge = true
				break
			}
			total += int64(n)
			capStart = throttleStream(total, capStart)
			if !s.Send(buf[:n]) {
				// A timeout, an exit or a shutdown ended the invocation: the runtime is
				// about to be stopped.
				writeStateMachineError(w, environment.ErrEnvironmentReset)
				return
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			readErr = err
			break
		}
	}
	switch {
	case end.TooLarge:
	case readErr != nil:
		end.ErrorType = environment.ErrorTypeUnknown
		end.ErrorBody = []byte("the runtime's streamed response was cut off: " + readErr.Error())
	default:
		end.ErrorType, end.ErrorBody = errorTrailers(r.Trailer)
	}
	if err := a.env.EndStream(id, s, end); err != nil {
		writeStateMachineError(w, err)
		return
	}
	switch {
	case end.TooLarge:
		writeStateMachineError(w, environment.ErrResponseTooLarge)
	case readErr != nil:
		writeReply(w, truncated(readErr))
	default:
		writeAccepted(w)
	}
}

// throttleStream holds a streamed response to Lambda's bandwidth once it is past the
// uncapped bytes (total bytes read so far); it returns when that began.
func throttleStream(total int64, capStart time.Time) time.Time {
	over := total - streamLimits.uncapped
	if over <= 0 {
		return capStart
	}
	if capStart.IsZero() {
		return time.Now() // the chunk that crosses the line goes at once
	}
	due := capStart.Add(time.Duration(over * int64(time.Second) / streamLimits.rate))
	if d := time.Until(due); d > 0 {
		time.Sleep(d)
	}
	return capStart
}

// errorTrailers reads the runtime's error trailers: the error type, and the error object
// (decoded from base64; taken as it is when it is not base64).
func errorTrailers(t http.Header) (errType string, body []byte) {
	errType = t.Get(trailerErrorType)
	b := t.Get(trailerErrorBody)
	if errType == "" && b == "" {
		return "", nil
	}
	if raw, err := base64.StdEncoding.DecodeString(b); err == nil {
		return errType, raw
	}
	return errType, []byte(b)
}

// streamAnswer answers an invoke whose response the runtime streams (its result's
// Stream): the head at once, then each piece of the response as it comes, then the
// outcome in trailers (contract.TrailerFunctionError …). A caller that hangs up does
// not stop the stream: the rest is read and dropped, and the invocation ends as usual.
func (s *InvokeServer) streamAnswer(w http.ResponseWriter, inv *environment.Invocation) {
	res := inv.Result()
	st := res.Stream
	h := w.Header()
	h[contract.HeaderRequestID] = []string{inv.ID}
	h[contract.HeaderExecutedVersion] = []string{s.cfg.FunctionVersion}
	h["Content-Type"] = []string{st.ContentType}
	h[contract.HeaderResponseStream] = []string{contract.ResponseStreamMode}
	if res.InitDuration > 0 {
		h[contract.HeaderInitDuration] = []string{millis(res.InitDuration)}
	}
	h["Trailer"] = []string{streamTrailerNames}
	w.WriteHeader(http.StatusOK)
	w.(http.Flusher).Flush()
	broken := false
	for {
		p, ok := st.Recv()
		if !ok {
			break
		}
		if !broken {
			if _, err := w.Write(p); err != nil {
				broken = true
			}
		}
		st.Taken()
	}
	out := st.Outcome()
	trailer := func(k, v string) { h[http.TrailerPrefix+k] = []string{v} }
	trailer(contract.TrailerDuration, millis(out.Duration))
	switch {
	case out.Err != nil:
		trailer(contract.TrailerFunctionError, "Unhandled")
		trailer(contract.TrailerFunctionErrorType, environment.ErrorTypeUnknown)
		trailer(contract.TrailerFunctionErrorBody, base64.StdEncoding.EncodeToString([]byte(`{"errorMessage":`+strconv.Quote(out.Err.Error())+`,"errorType":"`+environment.ErrorTypeUnknown+`"}`)))
	case out.FunctionError != "":
		trailer(contract.TrailerFunctionError, out.FunctionError)
		trailer(contract.TrailerFunctionErrorType, out.ErrorType)
		trailer(contract.TrailerFunctionErrorBody, base64.StdEncoding.EncodeToString(out.ResultBody()))
	}
	if out.Reset != "" {
		trailer(contract.TrailerEnvReset, out.Reset)
	}
	if inv.WantTail {
		trailer(contract.TrailerLogResult, base64.StdEncoding.EncodeToString(out.Tail))
	}
}

var streamTrailerNames = strings.Join([]string{contract.TrailerFunctionError, contract.TrailerFunctionErrorType, contract.TrailerFunctionErrorBody, contract.TrailerDuration, contract.TrailerLogResult, contract.TrailerEnvReset}, ", ")

func millis(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 2, 64)
}
