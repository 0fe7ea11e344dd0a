package kafka

import (
	"fmt"
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

func heldRecords(partition int32, from, n int) []*kgo.Record {
	var recs []*kgo.Record
	for i := range n {
		recs = append(recs, &kgo.Record{Topic: "t", Partition: partition, Offset: int64(from + i)})
	}
	return recs
}

func offsets(p heldPart) []int64 {
	var out []int64
	for _, r := range p.recs {
		out = append(out, r.Offset)
	}
	return out
}

func TestTakeHandsOnAShareOfEveryPartitionInOrder(t *testing.T) {
	s := &Source{cfg: Config{MaxPollRecords: 4}, held: []heldPart{
		{key: "t-0", recs: heldRecords(0, 0, 5)},
		{key: "t-1", recs: heldRecords(1, 10, 1)},
		{key: "t-2", recs: heldRecords(2, 20, 3)},
	}}
	var got [][]string
	for len(s.held) > 0 {
		var round []string
		n := 0
		for _, p := range s.take() {
			n += len(p.recs)
			for _, o := range offsets(p) {
				round = append(round, fmt.Sprintf("%s@%d", p.key, o))
			}
		}
		if n > 4 {
			t.Fatalf("took %d records, over MaxPollRecords 4", n)
		}
		got = append(got, round)
	}
	want := [][]string{
		{"t-0@0", "t-1@10", "t-2@20"}, // 4/3 = one each
		{"t-0@1", "t-0@2", "t-2@21", "t-2@22"},
		{"t-0@3", "t-0@4"},
	}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("takes %v, want %v", got, want)
	}
}

func TestARevokedPartitionsHeldRecordsAreDropped(t *testing.T) {
	s := &Source{cfg: Config{MaxPollRecords: 10}, owned: map[string]bool{"t-0": true, "t-1": true}, highest: map[string]int64{}, lag: map[string]int64{},
		held: []heldPart{{key: "t-0", recs: heldRecords(0, 0, 3)}, {key: "t-1", recs: heldRecords(1, 0, 3)}}}
	s.rebalance(false, map[string][]int32{"t": {0}})
	if len(s.held) != 1 || s.held[0].key != "t-1" || !slices.Equal(offsets(s.held[0]), []int64{0, 1, 2}) {
		t.Errorf("held after revoking t-0: %+v, want t-1's three records only", s.held)
	}
	s.rebalance(false, map[string][]int32{"t": {1}})
	if len(s.held) != 0 {
		t.Errorf("held after revoking t-1: %+v, want nothing", s.held)
	}
}

func TestTakeGivesWholeBatchesOfAPartitionWhenTheShareHoldsOne(t *testing.T) {
	s := &Source{cfg: Config{MaxPollRecords: 10, BatchSize: 3}, held: []heldPart{
		{key: "t-0", recs: heldRecords(0, 0, 8)},
		{key: "t-1", recs: heldRecords(1, 0, 8)},
	}}
	// 10/2 = 5 per partition, rounded down to one batch of 3.
	for i, want := range [][]int{{3, 3}, {3, 3}, {2, 2}} {
		taken := s.take()
		var got []int
		for _, p := range taken {
			got = append(got, len(p.recs))
		}
		if !slices.Equal(got, want) {
			t.Fatalf("take %d: %v records per partition, want %v", i, got, want)
		}
	}
	// A share under one batch is not rounded (each partition still gets some).
	s = &Source{cfg: Config{MaxPollRecords: 4, BatchSize: 3}, held: []heldPart{
		{key: "t-0", recs: heldRecords(0, 0, 8)},
		{key: "t-1", recs: heldRecords(1, 0, 8)},
	}}
	if taken := s.take(); len(taken) != 2 || len(taken[0].recs) != 2 || len(taken[1].recs) != 2 {
		t.Errorf("share of 2 under a batch of 3: took %+v", taken)
	}
}
