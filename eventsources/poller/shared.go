package poller

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klambda/klambda/eventsources/batch"
)

// PartitionGrouper is a stream source whose event groups its records by partition (Kafka's
// "records" object keyed by "<topic>-<partition>"), so one invocation may carry several
// partitions' records, as Lambda's Kafka poller's do.
type PartitionGrouper interface {
	GroupsPartitions() bool
}

// sharedBatches is how a poller of a PartitionGrouper source batches: the lanes (a
// partition, or with parallelizationFactor one of a partition's lanes of keys) that have no
// batch in flight fill one batch together, up to the batch size and the payload limit, each
// lane's records in order, instead of one invocation per lane. The rules of lanes hold: at
// most one batch in flight per lane (a lane whose batch is in flight keeps its new records
// until that batch is over), offsets checkpointed only past finished records, and Delivery
// (retries, bisect, partial failures, on-failure destination) per batch. A backlog still
// goes in full batches of one lane each, all lanes' at once; a trickle goes in one
// invocation per poll rather than one per lane per poll.
type sharedBatches struct {
	p   *Poller
	ctx context.Context
	wg  *sync.WaitGroup
	// mu is the lanes' lock: route's revoked check, the rebalance callbacks and this state
	// change together.
	mu      *sync.Mutex
	revoked map[string]bool

	parts map[string]*part // by lane key
	ring  []*part          // parts in order of arrival; filling starts one further each time
	next  int

	// forming is the batch being filled and members the partitions with records in it
	// (idle ones: a partition joins only while it has no batch in flight).
	forming *batch.Batcher
	members []*part
	from    []*part     // the part of each record in the forming batch
	timer   *time.Timer // the forming batch's window (window > 0)
	// changed is closed (and replaced) when queued records were taken or dropped: the
	// fetch loop waits on it while a partition's queue is full.
	changed chan struct{}
	closed  bool
	// idle hands a job to a worker goroutine waiting for one (see work).
	idle chan *job
	// mine is set while a worker dispatches after its job (run): the first job started
	// then goes there, for that worker to run next itself rather than hand it to another
	// goroutine (and wake it) while it goes idle.
	mine **job
	// workers counts the worker goroutines started.
	workers atomic.Int32
}

// workerIdle is how long a worker goroutine waits for its next job before it exits.
const workerIdle = 10 * time.Second

// part is one lane's records waiting for a batch.
type part struct {
	key       string // the lane: its partition, or "<partition>/<n>" with parallelizationFactor
	partition string
	chunks    [][]Message // polls' runs of this lane, in order
	n         int         // records in chunks
	job       *job        // in flight; nil when idle
	member    bool        // has records in the forming batch
}

// maxQueuedPolls bounds a partition's queue, as the lanes' channels do.
const maxQueuedPolls = 4

// job is a batch in flight (or one record too large for any batch, on its way to the
// on-failure destination).
type job struct {
	parts    []*part
	records  []batch.Record
	from     []*part // the part of each record
	tooLarge *batch.RecordTooLargeError
	stop     chan struct{} // closed when a partition of the batch is revoked
	stopped  bool
	done     chan struct{}
}

func newSharedBatches(ctx context.Context, p *Poller, ls *lanes, wg *sync.WaitGroup) (*sharedBatches, error) {
	b, err := batch.NewBatcher(batch.BatcherConfig{BatchSize: p.cfg.BatchSize, Window: p.cfg.Window, EnvelopeBytes: p.src.EnvelopeBytes()}, nil)
	if err != nil {
		return nil, err
	}
	return &sharedBatches{p: p, ctx: ctx, wg: wg, mu: &ls.mu, revoked: ls.revoked, parts: map[string]*part{}, forming: b, changed: make(chan struct{}), idle: make(chan *job)}, nil
}

// sharesBatches tells whether this poller batches several partitions together.
func (p *Poller) sharesBatches() bool {
	g, ok := p.src.(PartitionGrouper)
	return ok && g.GroupsPartitions() && p.cfg.Policy.Mode == batch.Stream && p.scale == nil
}

func (pt *part) pop() Message {
	m := pt.chunks[0][0]
	pt.chunks[0] = pt.chunks[0][1:]
	if len(pt.chunks[0]) == 0 {
		pt.chunks = pt.chunks[1:]
	}
	pt.n--
	return m
}

// push queues one poll's records (byLane: a lane's run of records, keys in order),
// waiting while a lane's queue is full; false when ctx ended first.
func (s *sharedBatches) push(byLane map[string][]Message, order []string) bool {
	for {
		s.mu.Lock()
		full := false
		for _, k := range order {
			if pt := s.parts[k]; pt != nil && len(pt.chunks) >= maxQueuedPolls {
				full = true
				break
			}
		}
		if !full {
			for _, k := range order {
				msgs := byLane[k]
				if len(msgs) == 0 || s.revoked[msgs[0].Record.Partition] {
					continue // revoked while in hand
				}
				pt := s.parts[k]
				if pt == nil {
					pt = &part{key: k, partition: msgs[0].Record.Partition}
					s.parts[k] = pt
					s.ring = append(s.ring, pt)
				}
				pt.chunks = append(pt.chunks, byLane[k])
				pt.n += len(byLane[k])
			}
			s.dispatch()
			s.mu.Unlock()
			return true
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-s.ctx.Done():
			return false
		}
	}
}

// dispatch fills the forming batch from idle partitions and starts the batches that are
// ready. Called with mu held.
func (s *sharedBatches) dispatch() {
	if s.closed || s.ctx.Err() != nil {
		return
	}
	took := false
	for len(s.ring) > 0 {
		cut := false
		start := s.next % len(s.ring)
		s.next = start + 1
		for i := range s.ring {
			pt := s.ring[(start+i)%len(s.ring)]
			for pt.job == nil && pt.n > 0 && !cut {
				r := pt.chunks[0][0].Record
				if !s.forming.FitsAlone(r) {
					if pt.member {
						break // after the forming batch, whose records come first
					}
					pt.pop()
					took = true
					s.start(&job{parts: []*part{pt}, tooLarge: &batch.RecordTooLargeError{Record: r, PayloadBytes: s.p.src.EnvelopeBytes() + r.Size, Limit: s.forming.Limit()}})
					continue
				}
				if !s.forming.Fits(r) {
					bt, _ := s.forming.Flush()
					s.startBatch(bt.Records)
					cut = true
					break
				}
				pt.pop()
				took = true
				s.from = append(s.from, pt)
				if !pt.member {
					pt.member = true
					s.members = append(s.members, pt)
				}
				full, _ := s.forming.Add(r) // never an error: r fits
				for _, bt := range full {
					s.startBatch(bt.Records)
					cut = true
				}
			}
			if cut {
				break
			}
		}
		if !cut {
			break // every idle partition's records are in the forming batch
		}
	}
	if bt, ok := s.forming.Ready(); ok {
		s.startBatch(bt.Records)
	} else if dl, ok := s.forming.Deadline(); ok {
		if s.timer == nil {
			s.timer = time.AfterFunc(time.Until(dl), s.windowEnded)
		} else {
			s.timer.Reset(time.Until(dl))
		}
	}
	if took {
		close(s.changed)
		s.changed = make(chan struct{})
	}
}

func (s *sharedBatches) windowEnded() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dispatch()
}

// startBatch starts the batch just cut from the forming one (all of it: dispatch asks Fits
// before Add, so Add cuts only a full batch, its last record included): its members are
// busy until it is over.
func (s *sharedBatches) startBatch(records []batch.Record) {
	j := &job{parts: s.members, records: records, from: s.from}
	s.members, s.from = nil, nil
	for _, pt := range j.parts {
		pt.member = false
	}
	s.start(j)
}

func (s *sharedBatches) start(j *job) {
	j.stop, j.done = make(chan struct{}), make(chan struct{})
	for _, pt := range j.parts {
		pt.job = j
	}
	if s.mine != nil && *s.mine == nil {
		*s.mine = j // the dispatching worker runs it next
		return
	}
	select {
	case s.idle <- j: // a worker was waiting
	default:
		s.workers.Add(1)
		s.wg.Add(1)
		go s.work(j)
	}
}

// work runs jobs: j, then those handed to it while it waits (idle) until it has waited
// workerIdle or the poller stops. Jobs in flight never outnumber the partitions, nor do
// workers. Reusing a goroutine keeps its grown stack: a goroutine per job grew a new stack
// through the invoke client's answer parsing every time (copystack, ~4 % of the poller's CPU
// in bench/eventsources).
func (s *sharedBatches) work(j *job) {
	defer s.wg.Done()
	var wait *time.Timer
	for {
		if next := s.run(j); next != nil {
			j = next // dispatched by this run: no hand-off
			continue
		}
		if wait == nil {
			wait = time.NewTimer(workerIdle)
		} else {
			wait.Reset(workerIdle)
		}
		select {
		case j = <-s.idle:
		case <-wait.C:
			return
		case <-s.ctx.Done():
			wait.Stop()
			return
		}
	}
}

// run delivers a job, then frees its partitions and dispatches what they gathered
// meanwhile; next is the first job that dispatch started, for this worker to run.
func (s *sharedBatches) run(j *job) (next *job) {
	var settled [][]batch.Record
	ok := true
	if j.tooLarge != nil {
		s.p.tooLarge(s.ctx, j.tooLarge)
	} else {
		ok = s.p.deliver(s.ctx, j.stop, j.records, &settled)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, pt := range j.parts {
		pt.job = nil
	}
	if !ok && s.ctx.Err() == nil {
		s.requeue(j, settled)
	}
	close(j.done)
	s.mine = &next
	s.dispatch()
	s.mine = nil
	return next
}

// requeue puts back, at the front of their lanes' queues, the records of a batch stopped
// by a revocation that belong to partitions still held and that its invocations did not
// settle: they go again in a later batch, in order (the function may see them twice: at
// least once, as after any handover).
func (s *sharedBatches) requeue(j *job, settled [][]batch.Record) {
	done := map[string]bool{}
	for _, recs := range settled {
		for _, r := range recs {
			done[r.Partition+"\x00"+r.ID] = true
		}
	}
	back := map[*part][]Message{}
	for i, r := range j.records {
		pt := j.from[i]
		if s.parts[pt.key] != pt || done[r.Partition+"\x00"+r.ID] {
			continue // revoked, or finished
		}
		back[pt] = append(back[pt], Message{Record: r})
	}
	for pt, msgs := range back {
		pt.chunks = append([][]Message{msgs}, pt.chunks...)
		pt.n += len(msgs)
	}
}

// revoke drops the revoked partitions' queued and forming records, stops their batches in
// flight after the invocation they are in and waits for them; then the tracker forgets
// the partitions.
func (s *sharedBatches) revoke(partitions []string) {
	s.mu.Lock()
	gone := map[string]bool{} // partitions
	var waits []chan struct{}
	for _, k := range partitions {
		s.revoked[k] = true
		gone[k] = true
	}
	for k, pt := range s.parts {
		if !gone[pt.partition] {
			continue
		}
		delete(s.parts, k)
		if j := pt.job; j != nil && !j.stopped {
			j.stopped = true
			close(j.stop)
			waits = append(waits, j.done)
		} else if j != nil {
			waits = append(waits, j.done)
		}
	}
	if len(gone) > 0 {
		ring := s.ring[:0]
		for _, pt := range s.ring {
			if !gone[pt.partition] {
				ring = append(ring, pt)
			}
		}
		clear(s.ring[len(ring):])
		s.ring = ring
		s.dropForming(gone)
		close(s.changed)
		s.changed = make(chan struct{})
	}
	s.mu.Unlock()
	for _, w := range waits {
		<-w
	}
	s.p.track.Forget(partitions)
}

// dropForming takes the revoked partitions' records out of the forming batch.
func (s *sharedBatches) dropForming(gone map[string]bool) {
	hit := false
	for _, pt := range s.members {
		hit = hit || gone[pt.partition]
	}
	if !hit {
		return
	}
	bt, _ := s.forming.Flush()
	from := s.from
	s.from = nil
	var members []*part
	for _, pt := range s.members {
		if !gone[pt.partition] {
			members = append(members, pt)
		} else {
			pt.member = false
		}
	}
	s.members = members
	for i, r := range bt.Records {
		if !gone[r.Partition] {
			_, _ = s.forming.Add(r) // fitted before, fits again; fewer records, no cut
			s.from = append(s.from, from[i])
		}
	}
}

// close stops dispatching (the poller is stopping; its batches end with ctx).
func (s *sharedBatches) close() {
	s.mu.Lock()
	s.closed = true
	if s.timer != nil {
		s.timer.Stop()
	}
	s.mu.Unlock()
}
