package poller

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klambda/klambda/eventsources/batch"
)

// Scaling is Lambda's scaling of a queue's pollers (SQS): Start concurrent pollers, each
// receiving and invoking on its own (one batch in flight each); after every Interval, Step
// more while that interval's receives came back full and no invocation was throttled; halved
// (not below Start) after an interval whose receives came back empty and none full; never
// more than Max (scalingConfig.maximumConcurrency and the function's reserved concurrency).
// An interval with a throttled invocation, or with a batch waiting out a throttle's backoff,
// adds none: throttles slow the ramp.
type Scaling struct {
	Start, Max int
	// Interval between decisions (default 1 s) and Step, pollers added per interval
	// (default 5: Lambda adds up to 300 per minute).
	Interval time.Duration
	Step     int
	// Full is the number of messages of a full receive (SQS: 10).
	Full int
}

// scaler holds a scaled poller's target and what its pollers saw in the current interval.
type scaler struct {
	cfg                            Scaling
	target, active                 atomic.Int32
	full, empty, partial, throttle atomic.Int64
	// backingOff counts lanes waiting out a throttle (or an activator error) before retrying.
	backingOff atomic.Int32
}

func (s *scaler) received(n int) {
	switch {
	case n == 0:
		s.empty.Add(1)
	case n >= s.cfg.Full:
		s.full.Add(1)
	default:
		s.partial.Add(1)
	}
}

// decide sets the next interval's target from what the last one saw.
func (s *scaler) decide() int {
	full, empty, thr := s.full.Swap(0), s.empty.Swap(0), s.throttle.Swap(0)
	s.partial.Store(0)
	t := int(s.target.Load())
	switch {
	case thr > 0 || s.backingOff.Load() > 0:
		// Throttled: no more pollers while batches wait out throttles.
	case full > 0 && empty == 0:
		t = min(s.cfg.Max, t+s.cfg.Step)
	case empty > 0 && full == 0:
		t = max(s.cfg.Start, t/2)
	}
	s.target.Store(int32(t))
	return t
}

// leave is true (and counts the poller out) when more pollers run than the target.
func (s *scaler) leave() bool {
	for {
		a := s.active.Load()
		if a <= s.target.Load() {
			return false
		}
		if s.active.CompareAndSwap(a, a-1) {
			return true
		}
	}
}

// Concurrency is a scaled poller's current target of concurrent pollers (0 when the mapping
// is not scaled).
func (p *Poller) Concurrency() int {
	if p.scale == nil {
		return 0
	}
	return int(p.scale.target.Load())
}

// runScaled runs a queue's pollers under Scaling until ctx ends.
func (p *Poller) runScaled(ctx context.Context) error {
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
	s := p.scale
	grow := func() {
		for int(s.active.Load()) < int(s.target.Load()) {
			s.active.Add(1)
			wg.Go(func() { p.worker(ctx, s) })
		}
	}
	grow()
	concurrency.WithLabelValues(p.labels()...).Set(float64(s.cfg.Start))
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		concurrency.WithLabelValues(p.labels()...).Set(float64(s.decide()))
		grow()
	}
}

// worker is one poller of a scaled queue: it receives, and its lane batches and invokes
// (the next receive happens while the lane invokes). It leaves when the target falls below
// the pollers running, after its lane delivered what it holds.
func (p *Poller) worker(ctx context.Context, s *scaler) {
	l := &lane{key: "worker", in: make(chan []Message, 1), stop: make(chan struct{}), done: make(chan struct{}), drain: make(chan struct{})}
	go func() {
		defer close(l.done)
		p.runLane(ctx, l)
	}()
	defer func() {
		close(l.drain)
		<-l.done
	}()
	for !s.leave() {
		msgs, err := p.src.Fetch(ctx)
		if ctx.Err() != nil {
			s.active.Add(-1)
			return
		}
		if err != nil {
			p.log.Error(err, "polling the event source")
			if !sleep(ctx, time.Second) {
				s.active.Add(-1)
				return
			}
			continue
		}
		s.received(len(msgs))
		if len(msgs) == 0 {
			continue
		}
		recordsInvoked.WithLabelValues(p.labels()...).Add(float64(len(msgs)))
		kept := msgs[:0:0]
		var filtered []batch.Record
		for _, m := range msgs {
			if p.cfg.Filter != nil && p.cfg.Filter.Filters() > 0 && !p.cfg.Filter.Match(p.src.FilterRecord(m.Record)) {
				filtered = append(filtered, m.Record)
				continue
			}
			kept = append(kept, m)
		}
		if len(filtered) > 0 {
			recordsFiltered.WithLabelValues(p.labels()...).Add(float64(len(filtered)))
			p.finish(ctx, filtered)
		}
		if len(kept) == 0 {
			continue
		}
		select {
		case l.in <- kept:
		case <-l.done: // the lane ended (bad batching settings, logged): so does the poller
			s.active.Add(-1)
			return
		case <-ctx.Done():
			s.active.Add(-1)
			return
		}
	}
}
