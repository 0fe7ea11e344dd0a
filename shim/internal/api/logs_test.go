package api

import (
	"bytes"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klambda/klambda/shim/internal/environment"
)

// TestReportMemoryReadWhenWrittenOut: REPORT lines without a tail wait in the buffer and
// read Max Memory Used once, when they are written out; a tail reads it at once.
func TestReportMemoryReadWhenWrittenOut(t *testing.T) {
	var out bytes.Buffer
	s := environment.NewLogSink(&out)
	reads, mem := 0, 30
	s.SetMaxMemoryUsed(func() int { reads++; return mem })
	end := func(id string, tail bool) []byte {
		inv := environment.NewInvocation()
		inv.ID, inv.WantTail = id, tail
		s.StartInvocation(inv, "1")
		s.Function([]byte("line of " + id + "\n"))
		return s.EndInvocation(inv, &environment.Result{Duration: 1500 * time.Microsecond}, 128, true)
	}
	end("a", false)
	end("b", false)
	if reads != 0 || out.Len() != 0 {
		t.Fatalf("before the flush: %d reads, %q written", reads, out.String())
	}
	mem = 42 // the peak grew before the lines went out
	s.Flush()
	if reads != 1 {
		t.Fatalf("Max Memory Used read %d times for two waiting REPORT lines, want 1", reads)
	}
	got := out.String()
	want := "START RequestId: a Version: 1\nline of a\nEND RequestId: a\n" +
		"REPORT RequestId: a\tDuration: 1.50 ms\tBilled Duration: 2 ms\tMemory Size: 128 MB\tMax Memory Used: 42 MB\t\n" +
		"START RequestId: b Version: 1\nline of b\nEND RequestId: b\n" +
		"REPORT RequestId: b\tDuration: 1.50 ms\tBilled Duration: 2 ms\tMemory Size: 128 MB\tMax Memory Used: 42 MB\t\n"
	if got != want {
		t.Fatalf("log:\n%s\nwant:\n%s", got, want)
	}

	out.Reset()
	mem = 43
	tail := end("c", true)
	if reads != 2 || !strings.Contains(string(tail), "Max Memory Used: 43 MB\t\n") {
		t.Fatalf("with a tail: %d reads (want 2), tail %q", reads, tail)
	}
	mem = 99
	s.Flush()
	if !strings.Contains(out.String(), "Max Memory Used: 43 MB\t\n") || reads != 2 {
		t.Fatalf("a REPORT read at once must not be read again: %d reads, %q", reads, out.String())
	}
}

// TestReportMemoryAcrossABufferOverflow: a REPORT whose line is split by the 64 KB
// early write still gets its figure in the right place.
func TestReportMemoryAcrossABufferOverflow(t *testing.T) {
	var out bytes.Buffer
	s := environment.NewLogSink(&out)
	inv := environment.NewInvocation()
	inv.ID = "big"
	s.StartInvocation(inv, "1")
	s.Function([]byte(strings.Repeat("x", 64*1024-40) + "\n"))
	s.SetMaxMemoryUsed(func() int { return 7 })
	s.EndInvocation(inv, &environment.Result{Duration: time.Millisecond}, 128, true)
	s.Flush()
	re := regexp.MustCompile(`(?m)^REPORT RequestId: big\tDuration: 1.00 ms\tBilled Duration: 1 ms\tMemory Size: 128 MB\tMax Memory Used: 7 MB\t$`)
	if !re.MatchString(out.String()) {
		t.Fatalf("REPORT line broken: %q", out.String()[len(out.String())-200:])
	}
}

// peakSupervisor is a fakeSupervisor whose runtime processes have their own peaks, one per
// generation, kept until the next Start (an environment.PeakKeeper, as exec mode).
type peakSupervisor struct {
	fakeSupervisor
	peak atomic.Int64
}

func (p *peakSupervisor) Start(gen uint64) error {
	p.peak.Store(int64(gen) * 100)
	return p.fakeSupervisor.Start(gen)
}
func (p *peakSupervisor) MaxMemoryUsedMB() int { return int(p.peak.Load()) }
func (p *peakSupervisor) KeepsPeakUntilStart() {}

// TestReportMemoryOfTheOldRuntimeAfterAReset: REPORT lines still waiting when a reset
// starts a new runtime process carry the old process's peak.
func TestReportMemoryOfTheOldRuntimeAfterAReset(t *testing.T) {
	cfg := environment.Config{FunctionName: "echo", FunctionVersion: "3", MemorySizeMB: 128, Timeout: time.Second,
		Region: "eu-west-1", AccountID: "123456789012", InitTimeout: environment.DefaultInitTimeout, ShutdownGrace: 20 * time.Millisecond}
	sup := &peakSupervisor{fakeSupervisor: fakeSupervisor{starts: make(chan uint64, 16)}}
	out := &syncBuffer{}
	env := environment.NewEnvironment(&cfg, environment.NewLogSink(out), sup)
	h := &harness{t: t, env: env, out: out, quit: make(chan struct{})}
	h.sup = &sup.fakeSupervisor
	h.rapi, h.invoke = newServers(t, env, h.quit)
	env.Begin()
	h.waitStart(1)
	t.Cleanup(func() { close(h.quit); env.Shutdown(); h.rapi.Close(); h.invoke.Close() })

	resCh := h.invokeAsync(map[string]string{"X-Amzn-RequestId": "old"}, `{}`)
	h.next()
	h.post("/2018-06-01/runtime/invocation/old/response", nil, `"ok"`)
	<-resCh
	env.RuntimeExited(1, nil) // idle: the next invoke starts generation 2
	resCh = h.invokeAsync(map[string]string{"X-Amzn-RequestId": "new"}, `{}`)
	h.waitStart(2)
	h.next()
	h.post("/2018-06-01/runtime/invocation/new/response", nil, `"ok"`)
	<-resCh
	// END and REPORT are written once the caller and the runtime have their answers, by
	// the server, which may not have come to it yet.
	env.WritePendingReport()
	env.Logs().Flush()
	log := out.String()
	for id, want := range map[string]string{"old": "100", "new": "200"} {
		if !regexp.MustCompile(`(?m)^REPORT RequestId: ` + id + `\t.*\tMax Memory Used: ` + want + ` MB\t`).MatchString(log) {
			t.Fatalf("REPORT of %q should carry its runtime's peak %s MB:\n%s", id, want, log)
		}
	}
}
