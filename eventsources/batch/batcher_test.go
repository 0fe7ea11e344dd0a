package batch

import (
	"errors"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/klambda/klambda/api/contract"
)

// fakeClock is a settable clock.
type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time          { return c.now }
func (c *fakeClock) Advance(d time.Duration) { c.now = c.now.Add(d) }

func newClock() *fakeClock { return &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func rec(id string, size int) Record { return Record{ID: id, Size: size} }

func ids(rs []Record) []string {
	out := make([]string, 0, len(rs))
	for _, r := range rs {
		out = append(out, r.ID)
	}
	return out
}

func batchIDs(bs []Batch) [][]string {
	var out [][]string
	for _, b := range bs {
		out = append(out, ids(b.Records))
	}
	return out
}

func TestNewBatcherValidates(t *testing.T) {
	for _, cfg := range []BatcherConfig{
		{BatchSize: 0},
		{BatchSize: 1, Window: -time.Second},
		{BatchSize: 1, EnvelopeBytes: contract.MaxSyncPayload},
		{BatchSize: 1, MaxPayloadBytes: 10, EnvelopeBytes: -1},
	} {
		if _, err := NewBatcher(cfg, nil); err == nil {
			t.Errorf("NewBatcher(%+v) accepted", cfg)
		}
	}
}

func TestBatcherBatchSize(t *testing.T) {
	b, _ := NewBatcher(BatcherConfig{BatchSize: 3, Window: time.Minute}, newClock())
	var got []Batch
	for i := 0; i < 7; i++ {
		out, err := b.Add(rec(strconv.Itoa(i), 10))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, out...)
	}
	if want := [][]string{{"0", "1", "2"}, {"3", "4", "5"}}; !reflect.DeepEqual(batchIDs(got), want) {
		t.Fatalf("batches %v, want %v", batchIDs(got), want)
	}
	if got[0].Reason != BatchFull || got[0].PayloadBytes != 32 {
		t.Errorf("first batch: reason %v, %d bytes", got[0].Reason, got[0].PayloadBytes)
	}
	if b.Len() != 1 {
		t.Errorf("pending %d", b.Len())
	}
	if _, ok := b.Ready(); ok {
		t.Error("ready before the window ends")
	}
	last, ok := b.Flush()
	if !ok || last.Reason != Flushed || !reflect.DeepEqual(ids(last.Records), []string{"6"}) {
		t.Errorf("Flush = %v %v", last, ok)
	}
	if _, ok := b.Flush(); ok {
		t.Error("second Flush returned a batch")
	}
}

func TestBatcherZeroWindowInvokesAtOnce(t *testing.T) {
	clock := newClock()
	b, _ := NewBatcher(BatcherConfig{BatchSize: 100}, clock)
	if _, ok := b.Ready(); ok {
		t.Fatal("empty batcher is ready")
	}
	for _, id := range []string{"a", "b"} {
		if out, _ := b.Add(rec(id, 1)); len(out) != 0 {
			t.Fatal("cut before the batch is full")
		}
	}
	got, ok := b.Ready()
	if !ok || got.Reason != WindowElapsed || !reflect.DeepEqual(ids(got.Records), []string{"a", "b"}) {
		t.Fatalf("Ready = %+v %v", got, ok)
	}
}

func TestBatcherWindow(t *testing.T) {
	clock := newClock()
	b, _ := NewBatcher(BatcherConfig{BatchSize: 100, Window: 5 * time.Second}, clock)
	if _, ok := b.Deadline(); ok {
		t.Fatal("deadline with nothing pending")
	}
	start := clock.Now()
	b.Add(rec("a", 1))
	clock.Advance(3 * time.Second)
	b.Add(rec("b", 1))
	if d, ok := b.Deadline(); !ok || !d.Equal(start.Add(5*time.Second)) {
		t.Errorf("deadline %v, want the first record + 5s", d)
	}
	clock.Advance(1999 * time.Millisecond)
	if _, ok := b.Ready(); ok {
		t.Fatal("ready before the window ends")
	}
	clock.Advance(time.Millisecond)
	got, ok := b.Ready()
	if !ok || len(got.Records) != 2 {
		t.Fatalf("not ready at the deadline: %+v", got)
	}
	// The next batch's window starts at its own first record.
	clock.Advance(time.Hour)
	b.Add(rec("c", 1))
	if _, ok := b.Ready(); ok {
		t.Error("a new batch inherited the old window")
	}
}

func TestBatcherPayloadLimit(t *testing.T) {
	const mb = 1024 * 1024
	b, _ := NewBatcher(BatcherConfig{BatchSize: 100, Window: time.Minute, EnvelopeBytes: 100}, newClock())
	var got []Batch
	add := func(id string, size int) {
		t.Helper()
		out, err := b.Add(rec(id, size))
		if err != nil {
			t.Fatalf("Add(%s): %v", id, err)
		}
		got = append(got, out...)
	}
	add("a", 3*mb)
	add("b", 3*mb-101) // envelope + a + comma + b = exactly 6 MB
	if len(got) != 0 {
		t.Fatalf("an exact fit was cut: %v", batchIDs(got))
	}
	add("c", 1) // one byte over: a and b go, c starts the next batch
	if want := [][]string{{"a", "b"}}; !reflect.DeepEqual(batchIDs(got), want) || got[0].Reason != PayloadFull || got[0].PayloadBytes != contract.MaxSyncPayload {
		t.Fatalf("batches %v (%v, %d bytes)", batchIDs(got), got[0].Reason, got[0].PayloadBytes)
	}
	rest, _ := b.Flush()
	if !reflect.DeepEqual(ids(rest.Records), []string{"c"}) || rest.PayloadBytes != 101 {
		t.Errorf("next batch %v (%d bytes)", ids(rest.Records), rest.PayloadBytes)
	}
}

func TestBatcherRecordTooLarge(t *testing.T) {
	b, _ := NewBatcher(BatcherConfig{BatchSize: 100, Window: time.Minute, MaxPayloadBytes: 1000, EnvelopeBytes: 20}, newClock())
	b.Add(rec("a", 10))
	b.Add(rec("b", 10))
	out, err := b.Add(rec("huge", 981))
	var tooLarge *RecordTooLargeError
	if !errors.As(err, &tooLarge) || tooLarge.Record.ID != "huge" || tooLarge.PayloadBytes != 1001 || tooLarge.Limit != 1000 {
		t.Fatalf("err = %v", err)
	}
	// The pending batch is cut first, so it precedes the rejected record.
	if want := [][]string{{"a", "b"}}; !reflect.DeepEqual(batchIDs(out), want) {
		t.Errorf("batches %v, want %v", batchIDs(out), want)
	}
	if b.Len() != 0 {
		t.Error("the too-large record was kept")
	}
	// A record that fits alone (980 + 20 = 1000) is accepted.
	if _, err := b.Add(rec("fits", 980)); err != nil {
		t.Errorf("exact fit rejected: %v", err)
	}
	// Nothing pending: no batch, just the error.
	b.Flush()
	out, err = b.Add(rec("huge2", 5000))
	if err == nil || len(out) != 0 {
		t.Errorf("Add(huge2) = %v, %v", out, err)
	}
}

func TestBackoff(t *testing.T) {
	cases := []struct {
		b    Backoff
		n    int
		want time.Duration
	}{
		{Backoff{}, 1, time.Second},
		{Backoff{}, 2, 2 * time.Second},
		{Backoff{}, 6, 32 * time.Second},
		{Backoff{}, 7, time.Minute},
		{Backoff{}, 1000, time.Minute},
		{Backoff{Initial: 100 * time.Millisecond, Max: 300 * time.Millisecond}, 3, 300 * time.Millisecond},
	}
	for _, tc := range cases {
		if got := tc.b.Delay(tc.n); got != tc.want {
			t.Errorf("%+v.Delay(%d) = %v, want %v", tc.b, tc.n, got, tc.want)
		}
	}
}
