package environment

import (
	"strconv"
)

// ResponseStream is a response the runtime streams (Runtime API streaming mode,
// Lambda-Runtime-Function-Response-Mode: streaming) to a caller that asked for a stream.
// The runtime's handler hands its bytes over with Send as they arrive; the invoke
// handler takes them with Recv and writes them out, then reads Outcome once Ended is
// closed. The bytes are not copied: Send waits until the receiver is done with them.
//
// The invocation's result is known (Invocation.Done) when the stream starts; the
// invocation itself ends with the stream (EndStream, or a timeout, an exit or a shutdown,
// which end it with their error): until then the deadline runs and the environment takes
// no other invocation.
type ResponseStream struct {
	// ContentType is the function's Content-Type for the response.
	ContentType string

	data  chan []byte
	taken chan struct{}
	end   chan struct{}
	// outcome is the invocation's result, valid once end is closed.
	outcome Result
}

func newResponseStream(contentType string) *ResponseStream {
	return &ResponseStream{ContentType: contentType, data: make(chan []byte), taken: make(chan struct{}, 1), end: make(chan struct{})}
}

// Send hands p to the receiver and waits until it has written it out (p may be reused
// then); false when the stream has ended (timeout, exit, shutdown) and p was not taken.
func (s *ResponseStream) Send(p []byte) bool {
	select {
	case s.data <- p:
	case <-s.end:
		return false
	}
	<-s.taken // the receiver always answers a Recv with Taken
	return true
}

// Recv returns the next bytes; ok is false once the stream has ended (then Outcome is
// valid). Every successful Recv must be followed by Taken.
func (s *ResponseStream) Recv() (p []byte, ok bool) {
	select {
	case p = <-s.data:
		return p, true
	case <-s.end:
		return nil, false
	}
}

// Taken tells the sender that the bytes of the last Recv have been written out.
func (s *ResponseStream) Taken() { s.taken <- struct{}{} }

// Ended is closed when the invocation is over.
func (s *ResponseStream) Ended() <-chan struct{} { return s.end }

// Outcome is the invocation's result (no body: the body was the stream); valid once Ended
// is closed.
func (s *ResponseStream) Outcome() *Result { return &s.outcome }

// StreamWanted tells whether the caller of invocation id asked for a streamed answer
// (the check before a streamed POST /response, as CheckAnswer).
func (e *Environment) StreamWanted(id string) (bool, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.checkAnswerLocked(id); err != nil {
		return false, err
	}
	return e.current.WantStream, nil
}

// StartStream is the start of a streamed POST /runtime/invocation/{id}/response for a
// caller that asked for a stream: the caller is woken with the stream as its result
// (Result.Stream). The runtime stays Invoking until EndStream.
func (e *Environment) StartStream(id, contentType string) (*ResponseStream, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.checkAnswerLocked(id); err != nil {
		return nil, err
	}
	inv := e.current
	s := newResponseStream(contentType)
	inv.stream = s
	inv.result.Stream = s
	inv.markDoneLocked()
	return s, nil
}

// StreamEnd is how a streamed response ended, as the runtime told.
type StreamEnd struct {
	// ErrorType and ErrorBody: the error trailers (Lambda-Runtime-Function-Error-Type and
	// the decoded Lambda-Runtime-Function-Error-Body), empty when the function succeeded.
	ErrorType string
	ErrorBody []byte
	// TooLarge: the response went past MaxStreamedResponse.
	TooLarge bool
}

// EndStream ends the stream s of invocation id: the invocation is answered (END and
// REPORT are written) and the runtime has responded. ErrEnvironmentReset when the stream
// had ended already (a timeout, an exit or a shutdown ended it first).
func (e *Environment) EndStream(id string, s *ResponseStream, end StreamEnd) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	inv := e.current
	if inv == nil || inv.ID != id || inv.stream != s || inv.answered || e.runtime != RuntimeInvoking {
		return ErrEnvironmentReset
	}
	e.setRuntimeLocked(RuntimeResponded)
	var res Result
	switch {
	case end.TooLarge:
		msg := "Response payload size exceeded maximum allowed payload size (" + strconv.Itoa(MaxStreamedResponse) + " bytes)."
		e.logs.Platform(inv, msg)
		res = Result{Body: functionErrorJSON(ErrorTypeResponseTooLarge, msg), FunctionError: "Unhandled", ErrorType: ErrorTypeResponseTooLarge}
	case end.ErrorType != "" || end.ErrorBody != nil:
		errType, body := normalizeErrorBody(end.ErrorType, end.ErrorBody)
		res = Result{Body: body, FunctionError: "Unhandled", ErrorType: errType}
	}
	e.logs.Drain() // lines the function logged before answering belong before END
	e.answerLocked(inv, res)
	return nil
}

// endStreamLocked publishes res as the outcome of inv's stream (answerLocked, for a
// streamed invocation, whose caller was woken when the stream started).
func endStreamLocked(inv *Invocation, res Result) {
	s := inv.stream
	s.outcome = res
	close(s.end)
}
