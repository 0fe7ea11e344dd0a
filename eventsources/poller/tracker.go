package poller

import (
	"slices"
	"sync"

	"github.com/klambda/klambda/eventsources/batch"
)

// tracker keeps, per partition, the records fetched and not yet checkpointed, in fetch
// order, and says how far the checkpoint may move when records finish. A partition's
// offsets are fetched in increasing order (Kafka offsets, stream sequences), so a finished
// record is found by binary search.
type tracker struct {
	mu    sync.Mutex
	parts map[string]*partitionTrack
}

type partitionTrack struct {
	offsets []int64 // fetched, in order, not yet checkpointed
	done    []bool  // finished, parallel to offsets
}

func newTracker() *tracker { return &tracker{parts: map[string]*partitionTrack{}} }

func (t *tracker) part(partition string) *partitionTrack {
	p := t.parts[partition]
	if p == nil {
		p = &partitionTrack{}
		t.parts[partition] = p
	}
	return p
}

// Fetched registers a record in fetch order.
func (t *tracker) Fetched(partition string, offset int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.part(partition).add(offset)
}

// FetchedAll registers one poll's records in fetch order.
func (t *tracker) FetchedAll(msgs []Message) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var (
		last string
		p    *partitionTrack
	)
	for i := range msgs {
		r := &msgs[i].Record
		if p == nil || r.Partition != last {
			p, last = t.part(r.Partition), r.Partition
		}
		p.add(r.Offset)
	}
}

// add appends an offset; one not above the last tracked one (a redelivery the source did
// not drop) is already tracked, or checkpointed.
func (p *partitionTrack) add(offset int64) {
	if n := len(p.offsets); n > 0 && offset <= p.offsets[n-1] {
		return
	}
	p.offsets = append(p.offsets, offset)
	p.done = append(p.done, false)
}

// Finished marks records finished and returns the checkpoints that moved.
func (t *tracker) Finished(recs []batch.Record) map[string]int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	var (
		touched []string // partitions of recs, each once (a batch holds a few)
		last    string
		p       *partitionTrack
		j       = -1 // where the last record was found in p.offsets
	)
	for i := range recs {
		r := &recs[i]
		if p == nil || r.Partition != last {
			last, p, j = r.Partition, t.parts[r.Partition], -1
			if !slices.Contains(touched, last) {
				touched = append(touched, last)
			}
		}
		if p == nil {
			continue // forgotten (revoked)
		}
		// A batch's records of a partition are mostly the next ones tracked: try there
		// before searching.
		if j >= 0 && j+1 < len(p.offsets) && p.offsets[j+1] == r.Offset {
			j++
			p.done[j] = true
			continue
		}
		var ok bool
		if j, ok = slices.BinarySearch(p.offsets, r.Offset); ok {
			p.done[j] = true
		} else {
			j = -1
		}
	}
	var out map[string]int64
	for _, partition := range touched {
		p := t.parts[partition]
		if p == nil {
			continue
		}
		n := 0
		for n < len(p.offsets) && p.done[n] {
			n++
		}
		if n == 0 {
			continue
		}
		if out == nil {
			out = map[string]int64{}
		}
		out[partition] = p.offsets[n-1]
		// Drop the checkpointed prefix, reusing the arrays once they are mostly prefix.
		p.offsets, p.done = p.offsets[n:], p.done[n:]
		if cap(p.offsets) > 1024 && len(p.offsets) < cap(p.offsets)/4 {
			p.offsets, p.done = slices.Clone(p.offsets), slices.Clone(p.done)
		}
	}
	return out
}

// Forget drops partitions (revoked: their next owner resumes from the committed offset).
func (t *tracker) Forget(partitions []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, p := range partitions {
		delete(t.parts, p)
	}
}
