package poller

import (
	"reflect"
	"testing"

	"github.com/klambda/klambda/eventsources/batch"
)

func TestTrackerMovesOnlyPastContiguouslyFinishedRecords(t *testing.T) {
	tr := newTracker()
	for _, o := range []int64{10, 11, 13, 20} { // gaps: filtered subjects, compaction
		tr.Fetched("p", o)
	}
	tr.Fetched("q", 5)
	steps := []struct {
		done map[string][]int64
		want map[string]int64
	}{
		{map[string][]int64{"p": {11}}, nil}, // 10 still pending
		{map[string][]int64{"p": {10}, "q": {5}}, map[string]int64{"p": 11, "q": 5}},
		{map[string][]int64{"p": {20}}, nil}, // 13 pending
		{map[string][]int64{"p": {13}}, map[string]int64{"p": 20}},
		{map[string][]int64{"p": {13}}, nil}, // already checkpointed
	}
	for i, s := range steps {
		var recs []batch.Record
		for _, part := range []string{"p", "q"} {
			for _, o := range s.done[part] {
				recs = append(recs, batch.Record{Partition: part, Offset: o})
			}
		}
		if got := tr.Finished(recs); !reflect.DeepEqual(got, s.want) {
			t.Errorf("step %d: checkpoints %v, want %v", i, got, s.want)
		}
	}
}

// A batch's records mostly follow each other in the tracked offsets (Finished looks at the
// next one before searching); partitions interleaved, gaps, an unknown offset and records
// out of order are found all the same.
func TestTrackerFindsRunsGapsAndStrays(t *testing.T) {
	tr := newTracker()
	for _, o := range []int64{1, 2, 3, 4, 5, 6, 8} {
		tr.Fetched("p", o)
	}
	tr.Fetched("q", 1)
	tr.Fetched("q", 2)
	rec := func(part string, o int64) batch.Record { return batch.Record{Partition: part, Offset: o} }
	if got := tr.Finished([]batch.Record{rec("p", 2), rec("p", 3), rec("q", 1), rec("p", 5), rec("p", 6), rec("p", 7)}); !reflect.DeepEqual(got, map[string]int64{"q": 1}) {
		t.Errorf("checkpoints %v, want q at 1 (p waits for 1 and 4)", got)
	}
	if got := tr.Finished([]batch.Record{rec("p", 4), rec("p", 1), rec("p", 9), rec("q", 2)}); !reflect.DeepEqual(got, map[string]int64{"p": 6, "q": 2}) {
		t.Errorf("checkpoints %v, want p at 6 (8 pending), q at 2", got)
	}
	if got := tr.Finished([]batch.Record{rec("p", 8)}); !reflect.DeepEqual(got, map[string]int64{"p": 8}) {
		t.Errorf("checkpoints %v, want p at 8", got)
	}
}
