package environment

import (
	"io"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/klambda/klambda/internal/transport"
)

// LogSink is where every log line of the environment goes: the shim's stdout (the pod's
// log), the tail of the current invocation (X-Amz-Log-Result) and the Logs API
// subscribers.
type LogSink struct {
	mu  sync.Mutex
	out io.Writer
	// pending holds lines not yet written to out: they are written together at most
	// flushDelay later (or at Flush), so that a busy environment does not pay one write
	// per line. Tails and Logs API records are not delayed.
	pending    []byte
	flushTimer *time.Timer
	cur        *Invocation
	// pendingStart is a START line not written yet: it goes out with the invocation's
	// first line, so an invocation that logs nothing costs one write, not two.
	pendingStart []byte
	subs         *subscriptions
	line         []byte
	// drain, when set, waits until the runtime's captured output written so far has been
	// read, so that its last lines land before END (exec mode).
	drain func()
	// memUsed reads REPORT's Max Memory Used (nil: 0). memHoles are the offsets in
	// pending where a REPORT line's figure goes: read once when pending is written out,
	// for every REPORT in it.
	memUsed  func() int
	memHoles []int
	spliced  []byte
}

// NewLogSink writes to out.
func NewLogSink(out io.Writer) *LogSink {
	return &LogSink{out: transport.NewNowaitWriter(out), subs: newSubscriptions()}
}

// SetDrain installs the output-capture drain (see Drain).
func (s *LogSink) SetDrain(f func()) { s.drain = f }

// SetMaxMemoryUsed installs what reads REPORT's Max Memory Used, in MB (see EndInvocation).
func (s *LogSink) SetMaxMemoryUsed(f func() int) { s.memUsed = f }

// Drain waits for captured runtime output to be processed (no-op without capture).
func (s *LogSink) Drain() {
	if s.drain != nil {
		s.drain()
	}
}

// tailBuffer keeps the last TailSize bytes appended to it.
type tailBuffer struct{ b []byte }

func (t *tailBuffer) write(p []byte) {
	t.b = append(t.b, p...)
	if len(t.b) > 4*TailSize {
		n := copy(t.b, t.b[len(t.b)-TailSize:])
		t.b = t.b[:n]
	}
}

func (t *tailBuffer) last() []byte {
	b := t.b
	if len(b) > TailSize {
		b = b[len(b)-TailSize:]
	}
	return append([]byte(nil), b...)
}

// flushDelay bounds how long a log line waits in the shim before reaching its stdout. Each
// flush wakes the shim and the reader of its stdout; 50 ms is still immediate to a person
// watching the log (Lambda's own take seconds to reach CloudWatch).
const flushDelay = 50 * time.Millisecond

func (s *LogSink) writeLocked(b []byte) {
	if len(s.pending) == 0 && s.flushTimer == nil {
		s.flushTimer = time.AfterFunc(flushDelay, s.Flush)
	}
	s.pending = append(s.pending, b...)
	if len(s.pending) > 64*1024 {
		s.flushLocked()
	}
}

func (s *LogSink) flushLocked() {
	if len(s.pending) == 0 {
		return
	}
	out := s.pending
	if len(s.memHoles) > 0 {
		var num [20]byte
		mem := strconv.AppendInt(num[:0], int64(s.memUsed()), 10)
		out = s.spliced[:0]
		prev := 0
		for _, h := range s.memHoles {
			out = append(out, s.pending[prev:h]...)
			out = append(out, mem...)
			prev = h
		}
		out = append(out, s.pending[prev:]...)
		s.spliced = out
		s.memHoles = s.memHoles[:0]
	}
	_, _ = s.out.Write(out)
	s.pending = s.pending[:0]
}

// Flush writes buffered log lines now.
func (s *LogSink) Flush() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.flushTimer = nil
	s.flushLocked()
}

func (s *LogSink) emitLocked(inv *Invocation, line []byte) {
	if len(s.pendingStart) > 0 {
		start := s.pendingStart
		if s.cur != nil && s.cur.WantTail {
			s.cur.tail.write(start)
		}
		s.writeLocked(start)
		s.pendingStart = s.pendingStart[:0]
	}
	s.writeLocked(line)
	if inv != nil && inv.WantTail {
		inv.tail.write(line)
	}
}

func rfc3339ms(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// StartInvocation writes START and routes following function output to inv's tail.
func (s *LogSink) StartInvocation(inv *Invocation, version string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cur = inv
	if len(s.pendingStart) > 0 { // a START never followed by anything (cannot happen, but keep order)
		s.emitLocked(nil, nil)
	}
	b := append(s.pendingStart[:0], "START RequestId: "...)
	b = append(b, inv.ID...)
	b = append(b, " Version: "...)
	b = append(b, version...)
	b = append(b, '\n')
	s.pendingStart = b
	if s.subs.active() {
		s.subs.publish("platform.start", map[string]any{"requestId": inv.ID, "version": version})
	}
}

// EndInvocation writes END and REPORT and returns the tail (nil unless asked for).
// Max Memory Used (SetMaxMemoryUsed) is read at once when the figure is needed now (the
// invocation's tail, a Logs API subscriber) or when later is false; else the line waits
// with the others in the buffer and the figure is read when they are written out, once
// for all of them (reading it costs a /proc read): the peak then, at most flushDelay after
// the invocation ended. The caller must Flush before the figure stops describing the
// invocations whose lines wait (a new runtime process).
func (s *LogSink) EndInvocation(inv *Invocation, res *Result, memorySizeMB int, later bool) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	later = later && s.memUsed != nil && !inv.WantTail && !s.subs.active()
	maxMem := 0
	if !later && s.memUsed != nil {
		maxMem = s.memUsed()
	}
	ms := float64(res.Duration) / float64(time.Millisecond)
	billed := int64(math.Ceil(ms))
	if billed < 1 {
		billed = 1
	}
	b := append(s.line[:0], "END RequestId: "...)
	b = append(b, inv.ID...)
	b = append(b, "\nREPORT RequestId: "...)
	b = append(b, inv.ID...)
	b = append(b, "\tDuration: "...)
	b = strconv.AppendFloat(b, ms, 'f', 2, 64)
	b = append(b, " ms\tBilled Duration: "...)
	b = strconv.AppendInt(b, billed, 10)
	b = append(b, " ms\tMemory Size: "...)
	b = strconv.AppendInt(b, int64(memorySizeMB), 10)
	b = append(b, " MB\tMax Memory Used: "...)
	hole := len(b)
	if !later {
		b = strconv.AppendInt(b, int64(maxMem), 10)
	}
	b = append(b, " MB\t"...)
	if res.InitDuration > 0 {
		b = append(b, "Init Duration: "...)
		b = strconv.AppendFloat(b, float64(res.InitDuration)/float64(time.Millisecond), 'f', 2, 64)
		b = append(b, " ms\t"...)
	}
	b = append(b, '\n')
	s.line = b
	if later {
		s.emitLocked(inv, b[:hole])
		s.memHoles = append(s.memHoles, len(s.pending))
		s.writeLocked(b[hole:])
	} else {
		s.emitLocked(inv, b)
	}
	if s.cur == inv {
		s.cur = nil
	}
	if s.subs.active() {
		s.subs.publish("platform.end", map[string]any{"requestId": inv.ID})
		metrics := map[string]any{"durationMs": round2(ms), "billedDurationMs": billed, "memorySizeMB": memorySizeMB, "maxMemoryUsedMB": maxMem}
		if res.InitDuration > 0 {
			metrics["initDurationMs"] = round2(float64(res.InitDuration) / float64(time.Millisecond))
		}
		s.subs.publish("platform.report", map[string]any{"requestId": inv.ID, "metrics": metrics})
		status := "success"
		switch {
		case res.ErrorType == ErrorTypeTimeout:
			status = "timeout"
		case res.FunctionError != "":
			status = "failure"
		}
		s.subs.publishRuntimeDone(map[string]any{"requestId": inv.ID, "status": status})
	}
	if !inv.WantTail {
		return nil
	}
	return inv.tail.last()
}

func round2(f float64) float64 { return math.Round(f*100) / 100 }

// Platform writes a line of the platform's own (a fault, a timeout) to the log, and to
// inv's tail when inv is the current invocation.
func (s *LogSink) Platform(inv *Invocation, line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if inv != nil && inv != s.cur {
		inv = nil
	}
	s.emitLocked(inv, append([]byte(line), '\n'))
	if s.subs.active() {
		s.subs.publish("platform.fault", line)
	}
}

// Queued is how many records wait in the buffer of the i-th Logs API subscriber (tests
// and diagnostics).
func (s *LogSink) Queued(i int) int {
	s.mu.Lock()
	sub := s.subs.list[i]
	s.mu.Unlock()
	sub.mu.Lock()
	defer sub.mu.Unlock()
	return len(sub.queue)
}

// Function is one line (with its newline) of the runtime's output.
func (s *LogSink) Function(line []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.emitLocked(s.cur, line)
	if s.subs.active() {
		s.subs.publish("function", string(line))
	}
}

// InitDone records the extensions that took part in Init (platform.extension records).
func (s *LogSink) InitDone(exts []*Extension) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.subs.active() {
		return
	}
	for _, x := range exts {
		s.subs.publish("platform.extension", map[string]any{"name": x.Name, "state": "Ready", "events": x.Events})
	}
}

// Unsubscribe drops every Logs API subscription (the extensions are gone).
func (s *LogSink) Unsubscribe() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.subs.closeAll()
}
