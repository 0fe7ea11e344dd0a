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
