package poller

import (
	"context"
	"reflect"
	"testing"

	"github.com/klambda/klambda/eventsources/batch"
)

// Without parallelizationFactor or filters, a poll's partitions go to their lanes as
// subslices of the poll, in order; a poll whose partition comes back after another takes the
// general path, with the same result.
func TestRouteGivesEachPartitionItsRecordsInOrder(t *testing.T) {
	msg := func(part string, off int64) Message {
		return Message{Record: batch.Record{Partition: part, Offset: off}}
	}
	offsets := func(ms []Message) []int64 {
		var o []int64
		for _, m := range ms {
			o = append(o, m.Record.Offset)
		}
		return o
	}
	for name, tc := range map[string]struct {
		poll  []Message
		runs  bool
		order []string
		want  map[string][]int64
	}{
		"runs": {[]Message{msg("t-0", 1), msg("t-0", 2), msg("t-1", 7), msg("t-2", 4), msg("t-2", 5)}, true,
			[]string{"t-0", "t-1", "t-2"}, map[string][]int64{"t-0": {1, 2}, "t-1": {7}, "t-2": {4, 5}}},
		"interleaved": {[]Message{msg("t-0", 1), msg("t-1", 7), msg("t-0", 2), msg("t-1", 8)}, false,
			[]string{"t-0", "t-1"}, map[string][]int64{"t-0": {1, 2}, "t-1": {7, 8}}},
	} {
		_, _, ok := partitionRuns(tc.poll)
		if ok != tc.runs {
			t.Errorf("%s: partitionRuns ok=%v, want %v", name, ok, tc.runs)
		}
		p := &Poller{cfg: Config{Lanes: 1, Policy: batch.Policy{Mode: batch.Stream}}, track: newTracker()}
		byLane, order := p.route(context.Background(), tc.poll)
		if !reflect.DeepEqual(order, tc.order) {
			t.Errorf("%s: lanes %v, want %v", name, order, tc.order)
		}
		for k, want := range tc.want {
			if got := offsets(byLane[k]); !reflect.DeepEqual(got, want) {
				t.Errorf("%s: lane %s got %v, want %v", name, k, got, want)
			}
			if l := byLane[k]; cap(l) != len(l) {
				t.Errorf("%s: lane %s's slice has room past its records (cap %d, len %d): an append would overwrite the next lane's", name, k, cap(l), len(l))
			}
		}
	}
}
