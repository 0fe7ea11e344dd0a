package poller

import "sync"

// tracker keeps, per partition, the records fetched and not yet checkpointed, in fetch
// order, and says how far the checkpoint may move when records finish.
type tracker struct {
	mu    sync.Mutex
	parts map[string]*partitionTrack
}

type partitionTrack struct {
	offsets []int64        // fetched, in order, not yet checkpointed
	done    map[int64]bool // finished among offsets
}

func newTracker() *tracker { return &tracker{parts: map[string]*partitionTrack{}} }

// Fetched registers records in fetch order.
func (t *tracker) Fetched(partition string, offset int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.parts[partition]
	if p == nil {
		p = &partitionTrack{done: map[int64]bool{}}
		t.parts[partition] = p
	}
	p.offsets = append(p.offsets, offset)
}

// Finished marks records finished and returns the checkpoints that moved.
func (t *tracker) Finished(recs map[string][]int64) map[string]int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out map[string]int64
	for partition, offsets := range recs {
		p := t.parts[partition]
		if p == nil {
			continue
		}
		for _, o := range offsets {
			p.done[o] = true
		}
		n := 0
		for n < len(p.offsets) && p.done[p.offsets[n]] {
			delete(p.done, p.offsets[n])
			n++
		}
		if n == 0 {
			continue
		}
		if out == nil {
			out = map[string]int64{}
		}
		out[partition] = p.offsets[n-1]
		p.offsets = p.offsets[n:]
	}
	return out
}
