package environment

import (
	"bytes"
	"sync"
	"sync/atomic"
	"time"
)

// Invocation is one invoke, from the invoke endpoint to the runtime and back.
type Invocation struct {
	ID              string
	TraceID         string
	ClientContext   string // decoded JSON, as the runtime receives it
	CognitoIdentity string
	InvokedARN      string
	// Payload is the event; owned by the invocation until released.
	Payload *bytes.Buffer
	// DeadlineHint is an absolute deadline from the caller (zero: none); the effective
	// deadline is the earlier of it and start + timeout.
	DeadlineHint time.Time
	// WantTail asks for the log tail (X-Amz-Log-Type: Tail).
	WantTail bool
	// WantStream: the caller takes a streamed response as a stream (see ResponseStream);
	// otherwise one is buffered.
	WantStream bool

	Deadline time.Time // set at dispatch
	start    time.Time
	timer    *time.Timer
	answered bool
	done     chan struct{}
	// onDone, when set, is called (with the environment locked) once the result is known.
	onDone func()
	result Result
	// stream is the streamed response under way, if any.
	stream *ResponseStream
	refs   atomic.Int32
	tail   tailBuffer
	// deadlineMs is the Lambda-Runtime-Deadline-Ms header value, formatted once.
	deadlineMs string
}

// Result is what the caller of the invoke endpoint gets.
type Result struct {
	// Body is the runtime's response or error object; nil with BodyBuf set when it is a
	// pooled buffer (released by Release).
	Body    []byte
	BodyBuf *bytes.Buffer
	// FunctionError is "Unhandled" on a function error, empty otherwise.
	FunctionError string
	// ErrorType is the error type of a function error (for logs and metrics).
	ErrorType string
	// Reset names why the environment was reset after this invocation ("" if it was not).
	Reset        string
	Duration     time.Duration
	InitDuration time.Duration // zero unless this invocation reported Init Duration
	Tail         []byte        // last TailSize bytes of the invocation's log, if asked
	// Err is set (and nothing ran, or the result is unknown) for an invocation error.
	Err error
	// Stream, when set, is the response the runtime is streaming; the rest of the result
	// is its Outcome once it ends.
	Stream *ResponseStream
}

// NewInvocation returns an invocation with a fresh request id and a pooled payload buffer.
func NewInvocation() *Invocation {
	inv := &Invocation{done: make(chan struct{}), Payload: GetBuffer()}
	inv.refs.Store(1)
	return inv
}

// DeadlineMs is the invocation's deadline in epoch milliseconds (Lambda-Runtime-Deadline-Ms).
func (inv *Invocation) DeadlineMs() string { return inv.deadlineMs }

// Done is closed once the result is known.
func (inv *Invocation) Done() <-chan struct{} { return inv.done }

// Result is valid after Done is closed.
func (inv *Invocation) Result() *Result { return &inv.result }

// markDoneLocked publishes the result (the environment is locked).
func (inv *Invocation) markDoneLocked() {
	close(inv.done)
	if f := inv.onDone; f != nil {
		inv.onDone = nil
		f()
	}
}

func (inv *Invocation) acquire() { inv.refs.Add(1) }

// Release gives the invocation's buffers back; every holder calls it once.
func (inv *Invocation) Release() {
	if inv.refs.Add(-1) != 0 {
		return
	}
	PutBuffer(inv.Payload)
	inv.Payload = nil
	if inv.result.BodyBuf != nil {
		PutBuffer(inv.result.BodyBuf)
		inv.result.BodyBuf = nil
	}
}

// ResultBody is the bytes to send to the caller.
func (r *Result) ResultBody() []byte {
	if r.BodyBuf != nil {
		return r.BodyBuf.Bytes()
	}
	return r.Body
}

var bufferPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// Payload buffers. Small ones (up to smallBufferMax) are in a sync.Pool. Large ones, up to
// 6 MB payloads, are kept too, or every large invocation would allocate, zero and later
// collect megabytes (bytes.Buffer's doubling copies them once more): at most
// largeBuffersMax of them, each at most largeBufferMax, dropped after largeBufferIdle
// without a large payload. One invocation at a time holds two (its payload and its
// response), so the bound is what one invocation needs anyway.
const (
	smallBufferMax  = 1 << 20
	largeBufferMax  = 8 << 20
	largeBuffersMax = 2
	largeBufferIdle = 10 * time.Second
)

var largeBuffers struct {
	sync.Mutex
	bufs  []*bytes.Buffer
	timer *time.Timer
}

// GetBuffer is an empty pooled buffer.
func GetBuffer() *bytes.Buffer { return bufferPool.Get().(*bytes.Buffer) }

// GetBufferCap is an empty pooled buffer whose capacity is at least n.
func GetBufferCap(n int) *bytes.Buffer {
	if n <= smallBufferMax {
		b := GetBuffer()
		b.Grow(n)
		return b
	}
	l := &largeBuffers
	l.Lock()
	best := -1
	for i, b := range l.bufs {
		if b.Cap() >= n && (best < 0 || b.Cap() < l.bufs[best].Cap()) {
			best = i
		}
	}
	if best >= 0 {
		b := l.bufs[best]
		l.bufs = append(l.bufs[:best], l.bufs[best+1:]...)
		l.Unlock()
		return b
	}
	l.Unlock()
	// Round up to a MiB so that a slightly larger payload next time fits too.
	return bytes.NewBuffer(make([]byte, 0, (n+smallBufferMax-1)&^(smallBufferMax-1)))
}

// PutBuffer gives b back to the pool (nil is ignored).
func PutBuffer(b *bytes.Buffer) {
	if b == nil {
		return
	}
	b.Reset()
	switch c := b.Cap(); {
	case c <= smallBufferMax:
		bufferPool.Put(b)
	case c <= largeBufferMax:
		l := &largeBuffers
		l.Lock()
		defer l.Unlock()
		if len(l.bufs) == largeBuffersMax {
			// Keep the largest: a smaller one is the one to allocate again.
			smallest := 0
			for i, o := range l.bufs {
				if o.Cap() < l.bufs[smallest].Cap() {
					smallest = i
				}
			}
			if l.bufs[smallest].Cap() >= c {
				return
			}
			l.bufs[smallest] = b
		} else {
			l.bufs = append(l.bufs, b)
		}
		if l.timer == nil {
			l.timer = time.AfterFunc(largeBufferIdle, dropLargeBuffers)
		} else {
			l.timer.Reset(largeBufferIdle)
		}
	}
}

func dropLargeBuffers() {
	l := &largeBuffers
	l.Lock()
	clear(l.bufs)
	l.bufs = l.bufs[:0]
	l.Unlock()
}

// LargeBuffersKept is how many large buffers the pool holds (tests).
func LargeBuffersKept() int {
	l := &largeBuffers
	l.Lock()
	defer l.Unlock()
	return len(l.bufs)
}
