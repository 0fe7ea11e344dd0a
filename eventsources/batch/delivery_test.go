package batch

import (
	"fmt"
	"math/rand"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"
)

// trace records what a Delivery asked for, in a form easy to compare.
type trace struct {
	Invokes     []string           // "0,1,2" per invocation
	Discards    []string           // "Condition:InvokeCount:ids"
	Backoffs    []time.Duration    // non-zero backoffs
	Released    []string           // Queue mode
	Committed   []string           // in commit order
	Checkpoints map[string]int64   // final
	Moves       []map[string]int64 // every Checkpoints map, in order
}

// responder decides the result of one invocation.
type responder func(call int, invoke []Record) Result

// run drives a Delivery to Done and checks its invariants on the way.
func run(t *testing.T, records []Record, p Policy, clock *fakeClock, respond responder) trace {
	t.Helper()
	d := NewDelivery(records, p, clock)
	tr := trace{Checkpoints: map[string]int64{}}
	committed := map[string]bool{}
	record := func(s Step) {
		for _, dis := range s.Discards {
			tr.Discards = append(tr.Discards, fmt.Sprintf("%s:%d:%s", dis.Condition, dis.InvokeCount, strings.Join(ids(dis.Records), ",")))
		}
		if s.Backoff != 0 {
			tr.Backoffs = append(tr.Backoffs, s.Backoff)
		}
		if len(s.Released) > 0 {
			tr.Released = append(tr.Released, strings.Join(ids(s.Released), ","))
		}
		for _, r := range s.Committed {
			if committed[r.ID] {
				t.Fatalf("record %s committed twice", r.ID)
			}
			committed[r.ID] = true
			tr.Committed = append(tr.Committed, r.ID)
		}
		if s.Checkpoints != nil {
			tr.Moves = append(tr.Moves, s.Checkpoints)
		}
		for p, off := range s.Checkpoints {
			if prev, ok := tr.Checkpoints[p]; ok && off <= prev {
				t.Fatalf("checkpoint of %q went from %d to %d", p, prev, off)
			}
			tr.Checkpoints[p] = off
		}
		// Order per partition: each invocation holds a partition's records in offset order.
		last := map[string]int64{}
		for _, r := range s.Invoke {
			if p.Mode != Stream {
				break
			}
			if prev, ok := last[r.Partition]; ok && r.Offset <= prev {
				t.Fatalf("invocation out of order in %q: %v", r.Partition, ids(s.Invoke))
			}
			last[r.Partition] = r.Offset
		}
	}
	s := d.Start()
	record(s)
	for call := 0; !s.Done; call++ {
		if call > 5000 {
			t.Fatalf("no end after 5000 invocations: %+v", tr)
		}
		if len(s.Invoke) == 0 {
			t.Fatal("a step that is not Done has nothing to invoke")
		}
		tr.Invokes = append(tr.Invokes, strings.Join(ids(s.Invoke), ","))
		s = d.Report(respond(call, s.Invoke))
		record(s)
	}
	if !d.Done() {
		t.Error("Done() is false after a Done step")
	}
	if p.Mode == Stream {
		for _, r := range records {
			if !committed[r.ID] {
				t.Errorf("record %s never settled", r.ID)
			}
		}
	}
	return tr
}

// stream makes n records in one partition with offsets 100.., IDs "0".."n-1", all received
// at the clock's time.
func stream(n int, clock *fakeClock) []Record {
	var rs []Record
	for i := 0; i < n; i++ {
		rs = append(rs, Record{ID: fmt.Sprint(i), Partition: "p", Offset: int64(100 + i), Timestamp: clock.Now(), Size: 10})
	}
	return rs
}

func has(invoke []Record, id string) bool {
	for _, r := range invoke {
		if r.ID == id {
			return true
		}
	}
	return false
}

// poison fails every invocation holding one of the ids.
func poison(bad ...string) responder {
	return func(_ int, invoke []Record) Result {
		for _, id := range bad {
			if has(invoke, id) {
				return FunctionError()
			}
		}
		return Success()
	}
}

// script answers invocation i with results[i], then Success.
func script(results ...Result) responder {
	return func(call int, _ []Record) Result {
		if call < len(results) {
			return results[call]
		}
		return Success()
	}
}

func streamPolicy(retries int, bisect, report bool) Policy {
	return Policy{Mode: Stream, MaximumRetryAttempts: retries, MaximumRecordAgeInSeconds: -1, BisectBatchOnFunctionError: bisect, ReportBatchItemFailures: report}
}

func TestDeliveryStream(t *testing.T) {
	cases := []struct {
		name    string
		n       int
		policy  Policy
		respond responder
		want    trace // Invokes, Discards, Backoffs and final Checkpoints are compared
	}{
		{
			name: "success commits the whole batch", n: 3, policy: streamPolicy(-1, false, false), respond: script(),
			want: trace{Invokes: []string{"0,1,2"}, Checkpoints: map[string]int64{"p": 102}},
		},
		{
			name: "function errors retried then exhausted to the destination", n: 3, policy: streamPolicy(2, false, false), respond: poison("1"),
			want: trace{Invokes: []string{"0,1,2", "0,1,2", "0,1,2"}, Discards: []string{"RetryAttemptsExhausted:3:0,1,2"}, Checkpoints: map[string]int64{"p": 102}},
		},
		{
			name: "zero retries: one invocation then the destination", n: 2, policy: streamPolicy(0, false, false), respond: poison("0"),
			want: trace{Invokes: []string{"0,1"}, Discards: []string{"RetryAttemptsExhausted:1:0,1"}, Checkpoints: map[string]int64{"p": 101}},
		},
		{
			name: "infinite retries until success", n: 2, policy: DefaultStreamPolicy(),
			respond: script(FunctionError(), FunctionError(), FunctionError(), FunctionError(), FunctionError()),
			want:    trace{Invokes: []string{"0,1", "0,1", "0,1", "0,1", "0,1", "0,1"}, Checkpoints: map[string]int64{"p": 101}},
		},
		{
			name: "throttles and system errors don't use up retries, and back off", n: 2, policy: streamPolicy(1, false, false),
			respond: script(Throttled(), Throttled(), SystemError(), FunctionError(), Throttled(), FunctionError()),
			want: trace{Invokes: []string{"0,1", "0,1", "0,1", "0,1", "0,1", "0,1"}, Discards: []string{"RetryAttemptsExhausted:2:0,1"},
				Backoffs: []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, time.Second}, Checkpoints: map[string]int64{"p": 101}},
		},
		{
			name: "bisect isolates a poison record; splits are not retries", n: 8, policy: streamPolicy(0, true, false), respond: poison("3"),
			want: trace{Invokes: []string{"0,1,2,3,4,5,6,7", "0,1,2,3", "0,1", "2,3", "2", "3", "4,5,6,7"},
				Discards: []string{"RetryAttemptsExhausted:4:3"}, Checkpoints: map[string]int64{"p": 107}},
		},
		{
			name: "bisect down to a single record, then its retries", n: 8, policy: streamPolicy(1, true, false), respond: poison("0"),
			want: trace{Invokes: []string{"0,1,2,3,4,5,6,7", "0,1,2,3", "0,1", "0", "0", "1", "2,3", "4,5,6,7"},
				Discards: []string{"RetryAttemptsExhausted:5:0"}, Checkpoints: map[string]int64{"p": 107}},
		},
		{
			name: "bisect with two poison records", n: 4, policy: streamPolicy(0, true, false), respond: poison("1", "2"),
			want: trace{Invokes: []string{"0,1,2,3", "0,1", "0", "1", "2,3", "2", "3"},
				Discards: []string{"RetryAttemptsExhausted:3:1", "RetryAttemptsExhausted:3:2"}, Checkpoints: map[string]int64{"p": 103}},
		},
		{
			name: "partial failure: retry from the first failed record", n: 6, policy: streamPolicy(-1, false, true),
			respond: script(PartialFailure("3")),
			want:    trace{Invokes: []string{"0,1,2,3,4,5", "3,4,5"}, Checkpoints: map[string]int64{"p": 105}},
		},
		{
			name: "partial failure: the lowest of several identifiers", n: 6, policy: streamPolicy(-1, false, true),
			respond: script(PartialFailure("4", "2")),
			want:    trace{Invokes: []string{"0,1,2,3,4,5", "2,3,4,5"}, Checkpoints: map[string]int64{"p": 105}},
		},
		{
			name: "partial failure counts as a retry without bisect", n: 4, policy: streamPolicy(0, false, true),
			respond: script(PartialFailure("2")),
			want:    trace{Invokes: []string{"0,1,2,3"}, Discards: []string{"RetryAttemptsExhausted:1:2,3"}, Checkpoints: map[string]int64{"p": 103}},
		},
		{
			name: "partial failure of the first record is a function error", n: 3, policy: streamPolicy(1, false, true),
			respond: script(PartialFailure("0"), PartialFailure("0")),
			want:    trace{Invokes: []string{"0,1,2", "0,1,2"}, Discards: []string{"RetryAttemptsExhausted:2:0,1,2"}, Checkpoints: map[string]int64{"p": 102}},
		},
		{
			name: "partial failure naming an unknown record fails the batch", n: 3, policy: streamPolicy(-1, false, true),
			respond: script(PartialFailure("1", "nope")),
			want:    trace{Invokes: []string{"0,1,2", "0,1,2"}, Checkpoints: map[string]int64{"p": 102}},
		},
		{
			name: "empty partial failure is a success", n: 2, policy: streamPolicy(-1, false, true), respond: script(PartialFailure()),
			want: trace{Invokes: []string{"0,1"}, Checkpoints: map[string]int64{"p": 101}},
		},
		{
			name: "partial response ignored without ReportBatchItemFailures", n: 3, policy: streamPolicy(-1, false, false), respond: script(PartialFailure("1")),
			want: trace{Invokes: []string{"0,1,2"}, Checkpoints: map[string]int64{"p": 102}},
		},
		{
			name: "partial failure with bisect: split at the returned record, then bisect", n: 8, policy: streamPolicy(0, true, true),
			respond: func(_ int, invoke []Record) Result {
				if has(invoke, "3") {
					return PartialFailure("3")
				}
				return Success()
			},
			want: trace{Invokes: []string{"0,1,2,3,4,5,6,7", "3,4,5,6,7", "3,4", "3", "4", "5,6,7"},
				Discards: []string{"RetryAttemptsExhausted:4:3"}, Checkpoints: map[string]int64{"p": 107}},
		},
		{
			name: "function error with bisect and partial reporting on still bisects", n: 4, policy: streamPolicy(-1, true, true),
			respond: script(FunctionError()),
			want:    trace{Invokes: []string{"0,1,2,3", "0,1", "2,3"}, Checkpoints: map[string]int64{"p": 103}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clock := newClock()
			got := run(t, stream(tc.n, clock), tc.policy, clock, tc.respond)
			if !reflect.DeepEqual(got.Invokes, tc.want.Invokes) {
				t.Errorf("invocations\n got %q\nwant %q", got.Invokes, tc.want.Invokes)
			}
			if !reflect.DeepEqual(got.Discards, tc.want.Discards) {
				t.Errorf("discards\n got %q\nwant %q", got.Discards, tc.want.Discards)
			}
			if !reflect.DeepEqual(got.Backoffs, tc.want.Backoffs) {
				t.Errorf("backoffs %v, want %v", got.Backoffs, tc.want.Backoffs)
			}
			if !reflect.DeepEqual(got.Checkpoints, tc.want.Checkpoints) {
				t.Errorf("checkpoints %v, want %v", got.Checkpoints, tc.want.Checkpoints)
			}
		})
	}
}

func TestDeliveryCheckpointsMoveWithProgress(t *testing.T) {
	clock := newClock()
	got := run(t, stream(8, clock), streamPolicy(0, true, false), clock, poison("3"))
	// 0,1 succeed → 101; 2 → 102; 3 discarded → 103; 4-7 → 107.
	want := []map[string]int64{{"p": 101}, {"p": 102}, {"p": 103}, {"p": 107}}
	if !reflect.DeepEqual(got.Moves, want) {
		t.Errorf("checkpoint moves %v, want %v", got.Moves, want)
	}
	if want := []string{"0", "1", "2", "3", "4", "5", "6", "7"}; !reflect.DeepEqual(got.Committed, want) {
		t.Errorf("committed %v", got.Committed)
	}
}

func TestDeliveryRecordAge(t *testing.T) {
	t.Run("records already too old go to the destination uninvoked", func(t *testing.T) {
		clock := newClock()
		rs := stream(4, clock)
		rs[0].Timestamp = clock.Now().Add(-2 * time.Hour)
		rs[1].Timestamp = clock.Now().Add(-61 * time.Second)
		p := streamPolicy(-1, false, false)
		p.MaximumRecordAgeInSeconds = 60
		got := run(t, rs, p, clock, script())
		if want := []string{"RecordAgeExceeded:0:0,1"}; !reflect.DeepEqual(got.Discards, want) {
			t.Errorf("discards %q, want %q", got.Discards, want)
		}
		if want := []string{"2,3"}; !reflect.DeepEqual(got.Invokes, want) {
			t.Errorf("invokes %q, want %q", got.Invokes, want)
		}
		if want := []map[string]int64{{"p": 101}, {"p": 103}}; !reflect.DeepEqual(got.Moves, want) {
			t.Errorf("checkpoint moves %v, want %v", got.Moves, want)
		}
	})
	t.Run("records age out while retried", func(t *testing.T) {
		clock := newClock()
		p := DefaultStreamPolicy()
		p.MaximumRecordAgeInSeconds = 60
		got := run(t, stream(3, clock), p, clock, func(int, []Record) Result {
			clock.Advance(25 * time.Second)
			return FunctionError()
		})
		// Invoked at 0s, 25s, 50s; at 75s the records are older than 60s.
		if want := []string{"0,1,2", "0,1,2", "0,1,2"}; !reflect.DeepEqual(got.Invokes, want) {
			t.Errorf("invokes %q, want %q", got.Invokes, want)
		}
		if want := []string{"RecordAgeExceeded:3:0,1,2"}; !reflect.DeepEqual(got.Discards, want) {
			t.Errorf("discards %q, want %q", got.Discards, want)
		}
	})
	t.Run("throttled until the records age out", func(t *testing.T) {
		clock := newClock()
		p := DefaultStreamPolicy()
		p.MaximumRecordAgeInSeconds = 60
		got := run(t, stream(2, clock), p, clock, func(int, []Record) Result {
			clock.Advance(40 * time.Second)
			return Throttled()
		})
		if want := []string{"RecordAgeExceeded:0:0,1"}; !reflect.DeepEqual(got.Discards, want) {
			t.Errorf("discards %q, want %q (a throttled invocation never reached the function)", got.Discards, want)
		}
	})
	t.Run("only the expired records of a bisected half", func(t *testing.T) {
		clock := newClock()
		rs := stream(4, clock)
		rs[2].Timestamp = clock.Now().Add(-45 * time.Second)
		p := streamPolicy(-1, true, false)
		p.MaximumRecordAgeInSeconds = 60
		got := run(t, rs, p, clock, func(call int, invoke []Record) Result {
			clock.Advance(10 * time.Second)
			if call < 3 && has(invoke, "0") {
				return FunctionError()
			}
			return Success()
		})
		// By the time [2,3] comes up (t=50s), record 2 is 95s old and record 3 50s.
		if want := []string{"0,1,2,3", "0,1", "0", "0", "1", "3"}; !reflect.DeepEqual(got.Invokes, want) {
			t.Errorf("invokes %q, want %q", got.Invokes, want)
		}
		if want := []string{"RecordAgeExceeded:1:2"}; !reflect.DeepEqual(got.Discards, want) {
			t.Errorf("discards %q, want %q", got.Discards, want)
		}
		if want := map[string]int64{"p": 103}; !reflect.DeepEqual(got.Checkpoints, want) {
			t.Errorf("checkpoints %v", got.Checkpoints)
		}
	})
}

func TestDeliveryPartitions(t *testing.T) {
	clock := newClock()
	// Two partitions interleaved; IDs carry the partition so they're unique in the batch.
	var rs []Record
	for i := 0; i < 3; i++ {
		for _, p := range []string{"t-0", "t-1"} {
			rs = append(rs, Record{ID: fmt.Sprintf("%s@%d", p, i), Partition: p, Offset: int64(i), Timestamp: clock.Now()})
		}
	}
	t.Run("partial failure retries only the failed partition's tail", func(t *testing.T) {
		got := run(t, rs, streamPolicy(-1, false, true), clock, script(PartialFailure("t-0@1")))
		if want := []string{"t-0@0,t-1@0,t-0@1,t-1@1,t-0@2,t-1@2", "t-0@1,t-0@2"}; !reflect.DeepEqual(got.Invokes, want) {
			t.Errorf("invokes %q, want %q", got.Invokes, want)
		}
		if want := []map[string]int64{{"t-0": 0, "t-1": 2}, {"t-0": 2}}; !reflect.DeepEqual(got.Moves, want) {
			t.Errorf("checkpoint moves %v, want %v", got.Moves, want)
		}
	})
	t.Run("failures in both partitions", func(t *testing.T) {
		got := run(t, rs, streamPolicy(-1, false, true), clock, script(PartialFailure("t-1@2", "t-0@1")))
		if want := "t-0@1,t-0@2,t-1@2"; got.Invokes[1] != want {
			t.Errorf("retry %q, want %q", got.Invokes[1], want)
		}
	})
	t.Run("bisect keeps per-partition order", func(t *testing.T) {
		got := run(t, rs, streamPolicy(0, true, false), clock, poison("t-1@1"))
		if want := []string{"RetryAttemptsExhausted:3:t-1@1"}; !reflect.DeepEqual(got.Discards, want) {
			t.Errorf("discards %q, want %q", got.Discards, want)
		}
		if want := map[string]int64{"t-0": 2, "t-1": 2}; !reflect.DeepEqual(got.Checkpoints, want) {
			t.Errorf("checkpoints %v", got.Checkpoints)
		}
	})
}

func TestDeliveryQueue(t *testing.T) {
	queuePolicy := func(report bool) Policy {
		// Retry knobs are set to show they don't apply to queues.
		return Policy{Mode: Queue, MaximumRetryAttempts: 0, BisectBatchOnFunctionError: true, ReportBatchItemFailures: report}
	}
	msgs := func() []Record {
		return []Record{{ID: "m1"}, {ID: "m2"}, {ID: "m3"}}
	}
	cases := []struct {
		name          string
		policy        Policy
		result        Result
		wantCommitted []string
		wantReleased  []string
		wantBackoff   bool
	}{
		{"success deletes all", queuePolicy(false), Success(), []string{"m1", "m2", "m3"}, nil, false},
		{"function error releases all", queuePolicy(false), FunctionError(), nil, []string{"m1,m2,m3"}, false},
		{"partial failure releases only the failed", queuePolicy(true), PartialFailure("m2"), []string{"m1", "m3"}, []string{"m2"}, false},
		{"partial failure with several", queuePolicy(true), PartialFailure("m3", "m1"), []string{"m2"}, []string{"m1,m3"}, false},
		{"partial failure with an unknown id releases all", queuePolicy(true), PartialFailure("m2", "zz"), nil, []string{"m1,m2,m3"}, false},
		{"empty partial failure is a success", queuePolicy(true), PartialFailure(), []string{"m1", "m2", "m3"}, nil, false},
		{"partial ignored without the flag", queuePolicy(false), PartialFailure("m2"), []string{"m1", "m2", "m3"}, nil, false},
		{"throttle releases all and backs off", queuePolicy(false), Throttled(), nil, []string{"m1,m2,m3"}, true},
		{"system error releases all and backs off", queuePolicy(false), SystemError(), nil, []string{"m1,m2,m3"}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clock := newClock()
			got := run(t, msgs(), tc.policy, clock, script(tc.result))
			if len(got.Invokes) != 1 {
				t.Errorf("queue batch invoked %d times", len(got.Invokes))
			}
			if !reflect.DeepEqual(got.Committed, tc.wantCommitted) {
				t.Errorf("committed %v, want %v", got.Committed, tc.wantCommitted)
			}
			if !reflect.DeepEqual(got.Released, tc.wantReleased) {
				t.Errorf("released %v, want %v", got.Released, tc.wantReleased)
			}
			if (len(got.Backoffs) > 0) != tc.wantBackoff {
				t.Errorf("backoffs %v", got.Backoffs)
			}
			if len(got.Discards) != 0 {
				t.Errorf("queue records discarded: %v", got.Discards)
			}
		})
	}
}

func TestDeliveryEdges(t *testing.T) {
	d := NewDelivery(nil, DefaultStreamPolicy(), newClock())
	if s := d.Start(); !s.Done || len(s.Invoke) != 0 {
		t.Errorf("empty batch: %+v", s)
	}
	if s := d.Report(Success()); !s.Done {
		t.Errorf("Report after Done: %+v", s)
	}

	clock := newClock()
	d = NewDelivery(stream(2, clock), DefaultStreamPolicy(), clock)
	first := d.Start()
	if again := d.Start(); !again.Done {
		t.Error("second Start re-invoked")
	}
	_ = first
	s := d.Report(FunctionError())
	if !reflect.DeepEqual(ids(s.Invoke), []string{"0", "1"}) {
		t.Fatalf("retry %v", ids(s.Invoke))
	}
	s = d.Report(Result{Outcome: Outcome(99)}) // unknown outcomes are function errors
	if !reflect.DeepEqual(ids(s.Invoke), []string{"0", "1"}) || d.Done() {
		t.Fatalf("after an unknown outcome %+v", s)
	}
	s = d.Report(Success())
	if !s.Done || s.Checkpoints["p"] != 101 {
		t.Errorf("final step %+v", s)
	}
	// The caller's slice is not aliased.
	rs := stream(2, clock)
	d = NewDelivery(rs, DefaultStreamPolicy(), clock)
	rs[0].ID = "changed"
	if got := d.Start(); got.Invoke[0].ID != "0" {
		t.Error("Delivery aliases the caller's records")
	}
	// NewDeliveryOwning takes them as they are (and delivers them alike).
	rs = stream(2, clock)
	d = NewDeliveryOwning(rs, DefaultStreamPolicy(), clock)
	if got := d.Start(); &got.Invoke[0] != &rs[0] {
		t.Error("NewDeliveryOwning copied the records")
	}
	if s := d.Report(Success()); !s.Done || len(s.Committed) != 2 || s.Checkpoints["p"] != 101 {
		t.Errorf("owning delivery's step %+v", s)
	}
}

func TestOutcomeStrings(t *testing.T) {
	var names []string
	for _, o := range []Outcome{OutcomeSuccess, OutcomeFunctionError, OutcomePartialFailure, OutcomeThrottled, OutcomeSystemError, Outcome(9)} {
		names = append(names, o.String())
	}
	for _, r := range []FlushReason{BatchFull, PayloadFull, WindowElapsed, Flushed} {
		names = append(names, r.String())
	}
	sort.Strings(names)
	if strings.Join(names, " ") != "BatchFull Flushed FunctionError Outcome(9) PartialFailure PayloadFull Success SystemError Throttled WindowElapsed" {
		t.Errorf("names %v", names)
	}
}

// TestDeliveryRandomized drives many batches with random outcomes and policies; run checks
// the invariants (every record settled exactly once, checkpoints only move forward, order per
// partition kept, termination with finite retries).
func TestDeliveryRandomized(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 300; i++ {
		clock := newClock()
		n := 1 + rng.Intn(16)
		var rs []Record
		for j := 0; j < n; j++ {
			p := fmt.Sprintf("p%d", rng.Intn(3))
			rs = append(rs, Record{ID: fmt.Sprint(j), Partition: p, Offset: int64(j), Timestamp: clock.Now().Add(-time.Duration(rng.Intn(120)) * time.Second)})
		}
		p := Policy{Mode: Stream, MaximumRetryAttempts: rng.Intn(4), MaximumRecordAgeInSeconds: []int{-1, 60, 90}[rng.Intn(3)],
			BisectBatchOnFunctionError: rng.Intn(2) == 0, ReportBatchItemFailures: rng.Intn(2) == 0}
		if rng.Intn(4) == 0 {
			p.Mode = Queue
		}
		run(t, rs, p, clock, func(_ int, invoke []Record) Result {
			clock.Advance(time.Duration(rng.Intn(10)) * time.Second)
			switch rng.Intn(5) {
			case 0:
				return Success()
			case 1:
				return FunctionError()
			case 2:
				var failed []string
				for _, r := range invoke {
					if rng.Intn(3) == 0 {
						failed = append(failed, r.ID)
					}
				}
				return PartialFailure(failed...)
			case 3:
				return Throttled()
			}
			return SystemError()
		})
	}
}

func TestDiscardedLastOutcome(t *testing.T) {
	clock := newClock()
	d := NewDelivery(stream(2, clock), streamPolicy(0, false, false), clock)
	d.Start()
	s := d.Report(FunctionError())
	if len(s.Discards) != 1 || s.Discards[0].LastOutcome != OutcomeFunctionError || s.Discards[0].InvokeCount != 1 {
		t.Errorf("discard %+v", s.Discards)
	}
}
