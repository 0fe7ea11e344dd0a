package poller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"

	"github.com/klambda/klambda/api/contract"
	"github.com/klambda/klambda/eventsources/batch"
	"github.com/klambda/klambda/eventsources/events"
	"github.com/klambda/klambda/eventsources/filter"
	"github.com/klambda/klambda/eventsources/invokeclient"
)

// Lambda's LastProcessingResult values.
const (
	ResultNoRecords = "No records processed"
	ResultOK        = "OK"
	ResultProblem   = "PROBLEM: Function call failed"
)

// Destination receives on-failure records (a NATS subject, Kafka topic, SQS queue or
// Function); see package destination.
type Destination interface {
	Send(ctx context.Context, record []byte) error
}

// Config is one mapping's settings, resolved from the EventSourceMapping.
type Config struct {
	// Namespace and Name of the EventSourceMapping; Function as spec.functionName.
	Namespace, Name, Function string
	// FunctionARN goes into on-failure records.
	FunctionARN string
	BatchSize   int
	Window      time.Duration
	// Lanes: parallelizationFactor (streams) or maximumConcurrency (queues); 0 means 1.
	Lanes  int
	Policy batch.Policy
	// Filter drops records no filter matches; nil keeps all.
	Filter *filter.Matcher
	// OnFailure receives records of discarded batches; nil logs them.
	OnFailure Destination
	// Scaling, for a queue, runs concurrent pollers scaled as Lambda scales SQS's (Lanes is
	// then unused); nil runs Lanes lanes behind one receiver.
	Scaling *Scaling
}

// Poller runs one mapping until its context ends.
type Poller struct {
	cfg     Config
	src     Source
	invoker invokeclient.Invoker
	log     logr.Logger
	track   *tracker

	settleMu sync.Mutex
	result   atomic.Value // string: LastProcessingResult
	onResult func(string)
	robin    int
	lanes    *lanes
	scale    *scaler
	// shared is the running sharedBatches, if the poller shares batches (tests).
	shared atomic.Pointer[sharedBatches]
}

// New builds a poller; it does nothing until Run.
func New(cfg Config, src Source, inv invokeclient.Invoker, log logr.Logger) *Poller {
	if cfg.Lanes < 1 {
		cfg.Lanes = 1
	}
	if cfg.BatchSize < 1 {
		cfg.BatchSize = 100
	}
	cfg.Policy.Mode = src.Mode()
	p := &Poller{cfg: cfg, src: src, invoker: inv, log: log, track: newTracker()}
	if sc := cfg.Scaling; sc != nil && cfg.Policy.Mode == batch.Queue {
		c := *sc
		c.Max = max(c.Max, 1)
		c.Start = min(max(c.Start, 1), c.Max)
		if c.Interval <= 0 {
			c.Interval = time.Second
		}
		if c.Step <= 0 {
			c.Step = 5
		}
		if c.Full <= 0 {
			c.Full = 10
		}
		p.scale = &scaler{cfg: c}
		p.scale.target.Store(int32(c.Start))
	}
	p.result.Store(ResultNoRecords)
	return p
}

// OnResult is called whenever LastProcessingResult changes (to wake the controller).
func (p *Poller) OnResult(f func(string)) { p.onResult = f }

// LastProcessingResult is Lambda's LastProcessingResult for the mapping.
func (p *Poller) LastProcessingResult() string { return p.result.Load().(string) }

func (p *Poller) setResult(r string) {
	if old := p.result.Swap(r); old != r && p.onResult != nil {
		p.onResult(r)
	}
}

func (p *Poller) labels() []string { return []string{p.cfg.Namespace, p.cfg.Name, p.cfg.Function} }

// lane batches and delivers the records of one ordering unit.
type lane struct {
	key       string
	partition string
	in        chan []Message
	// stop ends the lane after the invocation it is in (a revoked partition); done closes
	// when it has ended.
	stop, done chan struct{}
	// drain (a scaled queue's poller leaving) ends the lane once it has delivered what it
	// holds; nil for other lanes.
	drain chan struct{}
}

// lanes are the running lanes, and the partitions revoked from this poller (whose records
// still in hand are dropped: another poller owns them now).
type lanes struct {
	mu      sync.Mutex
	byKey   map[string]*lane
	revoked map[string]bool
}

// Run polls until ctx ends, then closes the source. An invocation in flight when ctx ends
// may finish within StopGrace and its answer is settled; records not yet invoked (or whose
// invocation outlived the grace) are left unsettled: the source redelivers them to the next
// poller.
func (p *Poller) Run(ctx context.Context) error {
	if p.scale != nil {
		return p.runScaled(ctx)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
		if err := p.src.Close(); err != nil {
			p.log.Error(err, "closing the event source")
		}
		forgetSeries(p.labels())
	}()
	ls := &lanes{byKey: map[string]*lane{}, revoked: map[string]bool{}}
	p.lanes = ls
	var shared *sharedBatches
	if p.sharesBatches() {
		var err error
		if shared, err = newSharedBatches(ctx, p, ls, &wg); err != nil {
			return fmt.Errorf("invalid batching settings: %w", err)
		}
		p.shared.Store(shared)
		defer shared.close() // before the deferred wait above: no batch starts after it
	}
	if r, ok := p.src.(Rebalancer); ok {
		r.OnRebalance(func(assigned bool, partitions []string) {
			if assigned {
				ls.mu.Lock()
				for _, part := range partitions {
					delete(ls.revoked, part)
				}
				ls.mu.Unlock()
				return
			}
			if shared != nil {
				shared.revoke(partitions)
				return
			}
			p.revoke(ls, partitions)
		})
	}
	laneFor := func(key, partition string) *lane {
		ls.mu.Lock()
		defer ls.mu.Unlock()
		if ls.revoked[partition] {
			return nil
		}
		l := ls.byKey[key]
		if l == nil {
			l = &lane{key: key, partition: partition, in: make(chan []Message, 4), stop: make(chan struct{}), done: make(chan struct{})}
			ls.byKey[key] = l
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer close(l.done)
				p.runLane(ctx, l)
			}()
		}
		return l
	}
	for {
		msgs, err := p.src.Fetch(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			p.log.Error(err, "polling the event source")
			if !sleep(ctx, time.Second) {
				return nil
			}
			continue
		}
		p.reportLag()
		if len(msgs) == 0 {
			continue
		}
		recordsInvoked.WithLabelValues(p.labels()...).Add(float64(len(msgs)))
		byLane, order := p.route(ctx, msgs)
		if shared != nil {
			if !shared.push(byLane, order) {
				return nil
			}
			continue
		}
		for _, k := range order {
			part := byLane[k][0].Record.Partition
			l := laneFor(k, part)
			if l == nil {
				continue // revoked while in hand
			}
			select {
			case l.in <- byLane[k]:
			case <-l.done: // revoked meanwhile
			case <-ctx.Done():
				return nil
			}
		}
	}
}

// Rebalancer is a source whose partitions move between pollers (Kafka's group
// assignment): f is called with assigned=false before partitions are taken away (and must
// return before they are handed on), with assigned=true when partitions are given.
type Rebalancer interface {
	OnRebalance(f func(assigned bool, partitions []string))
}

// revoke stops the lanes of partitions taken from this poller: each finishes the invocation
// it is in (settling what the function answered for), drops what it holds, and the tracker
// forgets the partition, so that the next owner alone invokes its records, in order.
func (p *Poller) revoke(ls *lanes, partitions []string) {
	gone := map[string]bool{}
	for _, part := range partitions {
		gone[part] = true
	}
	ls.mu.Lock()
	var stopping []*lane
	for _, part := range partitions {
		ls.revoked[part] = true
	}
	for k, l := range ls.byKey {
		if gone[l.partition] {
			close(l.stop)
			stopping = append(stopping, l)
			delete(ls.byKey, k)
		}
	}
	ls.mu.Unlock()
	for _, l := range stopping {
		<-l.done
	}
	p.track.Forget(partitions)
}

// reportLag sets the offset lag metric, for a source that knows its lag.
func (p *Poller) reportLag() {
	if lr, ok := p.src.(LagReporter); ok {
		if n, ok := lr.Lag(); ok {
			offsetLag.WithLabelValues(p.labels()...).Set(float64(n))
		}
	}
}

// route sorts one poll's messages into lanes (byLane, keys in order of first appearance);
// the messages the filter drops are finished here, never delivered.
func (p *Poller) route(ctx context.Context, msgs []Message) (byLane map[string][]Message, order []string) {
	// Queues: one poll's messages go to one lane together (they are one batch when the
	// window is 0), the next poll to the next lane.
	p.robin = (p.robin + 1) % p.cfg.Lanes
	if p.cfg.Policy.Mode == batch.Stream && p.lanes != nil {
		// Under the lanes' lock: records of a partition revoked meanwhile are dropped, and
		// the tracker never learns of them (revoke forgets the partition after this).
		p.lanes.mu.Lock()
		if len(p.lanes.revoked) > 0 {
			kept := msgs[:0:0]
			for _, m := range msgs {
				if !p.lanes.revoked[m.Record.Partition] {
					kept = append(kept, m)
				}
			}
			msgs = kept
		}
		p.track.FetchedAll(msgs)
		p.lanes.mu.Unlock()
	} else if p.cfg.Policy.Mode == batch.Stream {
		p.track.FetchedAll(msgs)
	}
	if p.cfg.Filter != nil && p.cfg.Filter.Filters() > 0 {
		// The records kept move up in msgs (the poll is the poller's), in order.
		var filtered []batch.Record
		kept := msgs[:0]
		for _, m := range msgs {
			if !p.cfg.Filter.Match(p.src.FilterRecord(m.Record)) {
				filtered = append(filtered, m.Record)
				continue
			}
			kept = append(kept, m)
		}
		msgs = kept
		if len(filtered) > 0 {
			recordsFiltered.WithLabelValues(p.labels()...).Add(float64(len(filtered)))
			p.finish(ctx, filtered)
		}
	}
	if p.cfg.Policy.Mode == batch.Stream && p.cfg.Lanes == 1 {
		// A lane per partition, and a poll brings each partition's records together: the
		// lanes get subslices of the poll, no copy.
		if byLane, order, ok := partitionRuns(msgs); ok {
			return byLane, order
		}
	}
	// Two passes: each message's lane, then each lane's slice at its exact size (appending
	// grew slices record by record, the poller's largest cost per record).
	keys := make([]string, len(msgs))
	counts := map[string]int{}
	for i, m := range msgs {
		k := p.laneKey(m)
		keys[i] = k
		if _, ok := counts[k]; !ok {
			order = append(order, k)
		}
		counts[k]++
	}
	byLane = make(map[string][]Message, len(order))
	for _, k := range order {
		byLane[k] = make([]Message, 0, counts[k])
	}
	for i, m := range msgs {
		byLane[keys[i]] = append(byLane[keys[i]], m)
	}
	return byLane, order
}

// partitionRuns splits msgs into runs of one partition each, keyed by partition (no copy:
// lanes only read what they receive); false when a partition's records are not all
// together.
func partitionRuns(msgs []Message) (byLane map[string][]Message, order []string, ok bool) {
	byLane = map[string][]Message{}
	for start := 0; start < len(msgs); {
		k := msgs[start].Record.Partition
		end := start + 1
		for end < len(msgs) && msgs[end].Record.Partition == k {
			end++
		}
		if _, seen := byLane[k]; seen {
			return nil, nil, false
		}
		byLane[k] = msgs[start:end:end]
		order = append(order, k)
		start = end
	}
	return byLane, order, true
}

func (p *Poller) laneKey(m Message) string {
	if p.cfg.Policy.Mode == batch.Queue && m.Key == "" {
		return strconv.Itoa(p.robin)
	}
	if p.cfg.Lanes == 1 {
		return m.Record.Partition
	}
	if m.Key == "" {
		return m.Record.Partition
	}
	// Same key, same lane: order is kept per key (Kafka key, NATS subject, SQS FIFO group).
	h := fnv.New32a()
	_, _ = h.Write([]byte(m.Key))
	return m.Record.Partition + "/" + strconv.Itoa(int(h.Sum32()%uint32(p.cfg.Lanes)))
}

func (p *Poller) runLane(ctx context.Context, l *lane) {
	b, err := batch.NewBatcher(batch.BatcherConfig{BatchSize: p.cfg.BatchSize, Window: p.cfg.Window, EnvelopeBytes: p.src.EnvelopeBytes()}, nil)
	if err != nil {
		p.log.Error(err, "invalid batching settings")
		return
	}
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		var timer <-chan time.Time
		if dl, ok := b.Deadline(); ok {
			t.Reset(time.Until(dl))
			timer = t.C
		}
		select {
		case <-ctx.Done():
			return
		case <-l.stop:
			return
		case msgs := <-l.in:
			if !p.add(ctx, l, b, msgs) {
				return
			}
			// A zero window invokes with whatever has been fetched: this poll, and the polls
			// that queued up for the lane while its last batch was being invoked, up to the
			// batch size (a backlog then goes in full batches, not one per poll).
			if p.cfg.Window == 0 {
			more:
				for b.Len() > 0 && b.Len() < p.cfg.BatchSize {
					select {
					case msgs := <-l.in:
						if !p.add(ctx, l, b, msgs) {
							return
						}
					default:
						break more
					}
				}
				if bt, ok := b.Ready(); ok && !p.deliver(ctx, l.stop, bt.Records, nil) {
					return
				}
			}
		case <-timer:
			if bt, ok := b.Ready(); ok && !p.deliver(ctx, l.stop, bt.Records, nil) {
				return
			}
		case <-l.drain:
			for {
				select {
				case msgs := <-l.in:
					if !p.add(ctx, l, b, msgs) {
						return
					}
					continue
				default:
				}
				break
			}
			if bt, ok := b.Flush(); ok {
				p.deliver(ctx, l.stop, bt.Records, nil)
			}
			return
		}
	}
}

// add puts one poll's messages into the lane's batcher, delivering the batches it cuts;
// false when ctx ended first.
func (p *Poller) add(ctx context.Context, l *lane, b *batch.Batcher, msgs []Message) bool {
	for _, m := range msgs {
		cut, err := b.Add(m.Record)
		for _, bt := range cut {
			if !p.deliver(ctx, l.stop, bt.Records, nil) {
				return false
			}
		}
		if err == nil {
			continue // no errors.As: its target would escape, an allocation per record
		}
		var tooLarge *batch.RecordTooLargeError
		if errors.As(err, &tooLarge) {
			p.tooLarge(ctx, tooLarge)
		}
	}
	return true
}

// tooLarge handles a record that can never fit an invocation: streams send it to the
// on-failure destination and move on; queues release it to the queue (and its DLQ).
func (p *Poller) tooLarge(ctx context.Context, e *batch.RecordTooLargeError) {
	p.log.Info("record exceeds the invocation payload limit", "record", e.Record.ID, "bytes", e.PayloadBytes)
	if p.cfg.Policy.Mode == batch.Queue {
		p.settle(ctx, Settlement{Released: []batch.Record{e.Record}})
		return
	}
	p.sendDiscard(ctx, batch.Discarded{Records: []batch.Record{e.Record}}, events.ConditionMaximumPayloadSizeExceeded)
	if ctx.Err() == nil {
		p.finish(ctx, []batch.Record{e.Record})
	}
}

// deliver runs a batch through Delivery until it is done; false when ctx ended first, or
// stop was closed (a partition of the batch revoked) before the next invocation. settled,
// when not nil, receives the records each step finished (the rest are the ones a stopped
// batch leaves unsettled); the steps' slices, not copies.
func (p *Poller) deliver(ctx context.Context, stop <-chan struct{}, records []batch.Record, settled *[][]batch.Record) bool {
	d := batch.NewDeliveryOwning(records, p.cfg.Policy, nil) // a batch just cut, nobody else's
	step := d.Start()
	var lastResp invokeclient.Response
	for {
		for _, disc := range step.Discards {
			p.sendDiscardWith(ctx, disc, disc.Condition, lastResp)
		}
		// Discarded records are settled only once their on-failure record went out.
		if ctx.Err() != nil && len(step.Discards) > 0 {
			return false
		}
		// The function has answered for these records: settle them even when the poller is
		// stopping (a disable right after a batch), or the source would redeliver work that
		// is done.
		settleCtx := ctx
		if ctx.Err() != nil {
			var cancel context.CancelFunc
			settleCtx, cancel = context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
		}
		if settled != nil && len(step.Committed) > 0 {
			*settled = append(*settled, step.Committed)
		}
		if p.cfg.Policy.Mode == batch.Stream {
			p.finish(settleCtx, step.Committed)
		} else if len(step.Committed) > 0 || len(step.Released) > 0 {
			p.settle(settleCtx, Settlement{Acked: step.Committed, Released: step.Released})
		}
		if ctx.Err() != nil {
			return false
		}
		if step.Backoff > 0 {
			// A scaled queue adds no poller while a batch waits out a throttle.
			if p.scale != nil {
				p.scale.backingOff.Add(1)
			}
			ok := sleepStop(ctx, stop, step.Backoff)
			if p.scale != nil {
				p.scale.backingOff.Add(-1)
			}
			if !ok {
				return false
			}
		}
		if step.Done {
			return true
		}
		if closed(stop) {
			return false
		}
		invCtx, finished := finishOnStop(ctx, StopGrace)
		res, resp := p.invoke(invCtx, step.Invoke)
		finished()
		if ctx.Err() != nil && (res.Outcome == batch.OutcomeSystemError || res.Outcome == batch.OutcomeThrottled) {
			return false // cut short by the stop, not an answer from the function
		}
		lastResp = resp
		step = d.Report(res)
	}
}

// StopGrace is how long an invocation in flight when the poller stops (its replica shutting
// down, the mapping disabled) may still take: its answer is settled (committed) before the
// source closes, so the partition's next owner neither replays it nor invokes the same
// partition while the function still runs it. Past it the invocation is abandoned, its
// records left unsettled for the next owner (at least once).
const StopGrace = 10 * time.Second

// finishOnStop is ctx for an invocation that outlives ctx's end by at most grace; finished
// releases it.
// (A grace timer started by a stop may fire after finished: cancel is then a no-op.)
func finishOnStop(ctx context.Context, grace time.Duration) (_ context.Context, finished func()) {
	inv, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(grace, cancel) })
	return inv, func() {
		stop()
		cancel()
	}
}

// eventBuffers are reused event buffers (a batch of 100 Kafka records is ~50 kB); buffers
// over maxPooledEvent are left to the garbage collector, and the pool itself is emptied by
// every collection.
var eventBuffers sync.Pool

const maxPooledEvent = 1 << 20

// event builds the batch's event, in a reused buffer when the source can write into one;
// release gives the buffer back (nil when there is nothing to give back).
func (p *Poller) event(records []batch.Record) (payload []byte, release func(), err error) {
	ap, ok := p.src.(EventAppender)
	if !ok {
		payload, err = p.src.Event(records)
		return payload, nil, err
	}
	var buf []byte
	if b, ok := eventBuffers.Get().(*[]byte); ok {
		buf = (*b)[:0]
	}
	payload, err = ap.AppendEvent(buf, records)
	if err != nil || cap(payload) > maxPooledEvent {
		return payload, nil, err
	}
	return payload, func() {
		b := payload[:0]
		eventBuffers.Put(&b)
	}, nil
}

// invoke sends one batch and classifies the answer.
func (p *Poller) invoke(ctx context.Context, records []batch.Record) (batch.Result, invokeclient.Response) {
	payload, release, err := p.event(records)
	if err != nil {
		// Can't happen with the event types; treat as a function error so retry rules apply.
		p.log.Error(err, "building the event")
		return batch.FunctionError(), invokeclient.Response{}
	}
	resp, err := p.invoker.Invoke(ctx, invokeclient.Request{Namespace: p.cfg.Namespace, FunctionName: p.cfg.Function, Payload: payload, Release: release})
	var ids map[string]bool // only a batchItemFailures response needs the batch's identifiers
	if p.cfg.Policy.ReportBatchItemFailures {
		ids = make(map[string]bool, len(records))
		for _, r := range records {
			ids[r.ID] = true
		}
	}
	res := invokeclient.Classify(resp, err, p.cfg.Policy.ReportBatchItemFailures, func(id string) bool { return ids[id] })
	batches.WithLabelValues(append(p.labels(), res.Outcome.String())...).Inc()
	if len(records) > 0 {
		iteratorAge.WithLabelValues(p.labels()...).Set(time.Since(records[len(records)-1].Timestamp).Seconds())
	}
	if res.Outcome == batch.OutcomeThrottled && p.scale != nil {
		p.scale.throttle.Add(1)
	}
	switch res.Outcome {
	case batch.OutcomeSuccess, batch.OutcomePartialFailure:
		p.setResult(ResultOK)
	case batch.OutcomeFunctionError:
		p.setResult(ResultProblem)
	default:
		if ctx.Err() == nil {
			p.log.Info("invocation did not reach the function", "outcome", res.Outcome.String(), "error", errString(err))
			p.setResult(ResultProblem)
		}
	}
	return res, resp
}

// finish settles finished stream records: the tracker moves the checkpoints.
func (p *Poller) finish(ctx context.Context, recs []batch.Record) {
	if len(recs) == 0 {
		return
	}
	if p.cfg.Policy.Mode == batch.Queue {
		p.settle(ctx, Settlement{Acked: recs})
		return
	}
	if cp := p.track.Finished(recs); len(cp) > 0 {
		p.settle(ctx, Settlement{Checkpoints: cp})
	}
}

func (p *Poller) settle(ctx context.Context, s Settlement) {
	// A stream's checkpoints are marked one settlement at a time. A scaled queue's (SQS's)
	// pollers settle at once: deletes are per message and the SDK's client is safe for
	// concurrent use; one delete at a time across all pollers would bound the drain by one
	// DeleteMessageBatch round trip (TestScaledPollersDeleteConcurrently).
	if p.scale == nil || p.cfg.Policy.Mode == batch.Stream {
		p.settleMu.Lock()
		defer p.settleMu.Unlock()
	}
	if err := p.src.Settle(ctx, s); err != nil && ctx.Err() == nil {
		// Not fatal: the records are redelivered and processed again (at least once).
		p.log.Error(err, "settling records with the event source")
	}
}

func (p *Poller) sendDiscard(ctx context.Context, d batch.Discarded, condition string) {
	p.sendDiscardWith(ctx, d, condition, invokeclient.Response{})
}

// sendDiscardWith builds the on-failure record and sends it, retrying until it is sent or
// ctx ends: a discarded batch is never dropped silently.
func (p *Poller) sendDiscardWith(ctx context.Context, d batch.Discarded, condition string, last invokeclient.Response) {
	failures.WithLabelValues(append(p.labels(), condition)...).Add(float64(len(d.Records)))
	rec := events.OnFailureRecord{
		RequestContext: events.OnFailureRequestContext{
			RequestID:              last.RequestID,
			FunctionARN:            p.cfg.FunctionARN,
			Condition:              condition,
			ApproximateInvokeCount: d.InvokeCount,
		},
		Version:   events.OnFailureRecordVersion,
		Timestamp: events.FormatTimestamp(time.Now()),
	}
	if rec.RequestContext.RequestID == "" {
		rec.RequestContext.RequestID = contract.NewRequestID()
	}
	if d.InvokeCount > 0 {
		rc := &events.OnFailureResponseContext{StatusCode: 200, ExecutedVersion: last.ExecutedVersion, FunctionError: last.FunctionError}
		if last.StatusCode != 0 {
			rc.StatusCode = last.StatusCode
		}
		if rc.ExecutedVersion == "" {
			rc.ExecutedVersion = contract.Latest
		}
		if rc.FunctionError == "" && d.LastOutcome == batch.OutcomeFunctionError {
			rc.FunctionError = "Unhandled"
		}
		rec.ResponseContext = rc
	}
	p.src.DescribeFailure(&rec, d.Records)
	body, err := json.Marshal(rec)
	if err != nil {
		p.log.Error(err, "encoding the on-failure record")
		return
	}
	if p.cfg.OnFailure == nil {
		p.log.Info("discarded records (no on-failure destination)", "condition", condition, "records", len(d.Records), "record", string(body))
		return
	}
	for attempt := 1; ; attempt++ {
		err := p.cfg.OnFailure.Send(ctx, body)
		if err == nil {
			return
		}
		destinationErrors.WithLabelValues(p.labels()...).Inc()
		p.log.Error(err, "sending the on-failure record", "attempt", attempt)
		if !sleep(ctx, batch.Backoff{}.Delay(attempt)) {
			return
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// sleepStop sleeps like sleep, and also ends (false) when stop is closed (a nil stop never
// is).
func sleepStop(ctx context.Context, stop <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-stop:
		return false
	case <-t.C:
		return true
	}
}

// closed tells whether stop is closed (a nil stop never is).
func closed(stop <-chan struct{}) bool {
	select {
	case <-stop:
		return true
	default:
		return false
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return fmt.Sprint(err)
}
