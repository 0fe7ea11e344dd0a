package async

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/go-logr/logr"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// WorkerOptions tune the workers; zero values take the defaults.
type WorkerOptions struct {
	// Concurrency is the number of events invoked at once (default 64). The dispatcher
	// still applies each function's concurrency limits.
	Concurrency int
	// MaxPerFunction is how many of the Concurrency workers one function's events may hold
	// at once (default a quarter of Concurrency, at least 1): a flood of one function's
	// events, or its long ones, leaves the rest to the other functions.
	MaxPerFunction int
	// DiscoverInterval is how often the workers look for functions with waiting events
	// that this activator did not accept itself (default 1s).
	DiscoverInterval time.Duration
	// Consumer prefixes the durable consumers' names, one per function (default
	// klambda-async-workers); activator replicas on one external NATS share them.
	Consumer string
	// AckWait before JetStream redelivers an event whose worker went silent (default 60s);
	// a worker extends it while an invocation runs.
	AckWait time.Duration
	// MaxAckPending bounds events delivered and not settled, including those waiting out a
	// retry delay (default 100000).
	MaxAckPending int
	// ShutdownGrace is how long Run waits for running invocations after its context ends
	// (default 25s); unfinished events are redelivered.
	ShutdownGrace time.Duration
	Retry         RetryPolicy
	// Region and AccountID make the functionArn of records (defaults: the API's).
	Region, AccountID string
	Log               logr.Logger
	Metrics           *Metrics
}

func (o *WorkerOptions) defaults() {
	if o.Concurrency <= 0 {
		o.Concurrency = 64
	}
	if o.MaxPerFunction <= 0 {
		o.MaxPerFunction = max(1, o.Concurrency/4)
	}
	o.MaxPerFunction = min(o.MaxPerFunction, o.Concurrency)
	if o.DiscoverInterval <= 0 {
		o.DiscoverInterval = time.Second
	}
	if o.Consumer == "" {
		o.Consumer = "klambda-async-workers"
	}
	if o.AckWait <= 0 {
		o.AckWait = 60 * time.Second
	}
	if o.MaxAckPending <= 0 {
		o.MaxAckPending = 100000
	}
	if o.ShutdownGrace <= 0 {
		o.ShutdownGrace = 25 * time.Second
	}
	// Unset fields of the retry policy take Lambda's values (a zero throttle backoff
	// would spin).
	d := DefaultRetryPolicy()
	r := &o.Retry
	if r.FunctionErrorDelays == nil {
		r.FunctionErrorDelays = d.FunctionErrorDelays
	}
	if r.ThrottleBase <= 0 {
		r.ThrottleBase = d.ThrottleBase
	}
	if r.ThrottleMax < r.ThrottleBase {
		r.ThrottleMax = max(d.ThrottleMax, r.ThrottleBase)
	}
	if r.DeliveryAttempts <= 0 {
		r.DeliveryAttempts = d.DeliveryAttempts
	}
	if r.DeliveryBackoff <= 0 {
		r.DeliveryBackoff = d.DeliveryBackoff
	}
	if r.DeliveryTimeout <= 0 {
		r.DeliveryTimeout = d.DeliveryTimeout
	}
	if o.Region == "" {
		o.Region = lambdav1alpha1.DefaultRegion
	}
	if o.AccountID == "" {
		o.AccountID = lambdav1alpha1.DefaultAccountID
	}
}

// Workers consume the queue: each event is invoked through the Invoker until its fate is
// settled (success and its record delivered, or the failure path done), and only then
// acknowledged. Retries wait in JetStream (NakWithDelay), not in a goroutine; the attempt
// counts live in the queue's key-value bucket, so they survive a restart.
type Workers struct {
	q       *Queue
	inv     Invoker
	configs ConfigSource
	dst     *Deliverer
	opts    WorkerOptions
	now     func() time.Time
}

// NewWorkers prepares workers; Run starts them.
func NewWorkers(q *Queue, inv Invoker, configs ConfigSource, dst *Deliverer, opts WorkerOptions) *Workers {
	opts.defaults()
	if opts.Metrics == nil {
		opts.Metrics = q.opts.Metrics
	}
	return &Workers{q: q, inv: inv, configs: configs, dst: dst, opts: opts, now: time.Now}
}

// Run consumes until ctx ends, then waits up to ShutdownGrace for running invocations.
//
// Each function has its own durable consumer (filtered on its subject), started when the
// function has events waiting and stopped when it has none left, and may hold at most
// MaxPerFunction of the Concurrency workers: a flood of events for one function — or its
// 15-minute events — leaves the other workers to the other functions, so another
// function's event waits for at most MaxPerFunction-sized turns of the functions competing
// for a worker, not for the flood. Events of one function are fetched in stream order.
func (w *Workers) Run(ctx context.Context) error {
	// Before per-function consumers, one unfiltered consumer served every function; on a
	// work-queue stream it would overlap them. Its unacknowledged events go to the new ones.
	if err := w.q.js.DeleteConsumer(ctx, w.q.opts.Stream, w.opts.Consumer); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("removing the former consumer %s: %w", w.opts.Consumer, err)
	}
	// In-flight invocations outlive ctx by ShutdownGrace, so a rolling restart does not
	// cut them off.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	f := &fetchers{w: w, ctx: ctx, work: work, slots: make(chan struct{}, w.opts.Concurrency), active: map[string]bool{}}
	notify := make(chan string, 1024)
	hook := func(subject string) {
		select {
		case notify <- subject:
		default: // the next look at the stream finds it
		}
	}
	w.q.notify.Store(&hook)
	defer w.q.notify.Store(nil)

	f.discover()
	tick := time.NewTicker(w.opts.DiscoverInterval)
	defer tick.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case s := <-notify:
			f.start(s)
		case <-tick.C:
			f.discover()
		}
	}
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(w.opts.ShutdownGrace):
		cancelWork()
		<-done
	}
	return nil
}

// fetchers run one consumer per function with waiting events, sharing the workers.
type fetchers struct {
	w         *Workers
	ctx, work context.Context
	// slots are the Concurrency workers; goroutines waiting for one are served in turn.
	slots chan struct{}
	wg    sync.WaitGroup

	mu     sync.Mutex
	active map[string]bool
}

// discover starts a consumer for every function with events in the stream (events
// another activator replica accepted, events waiting out a retry after a restart).
func (f *fetchers) discover() {
	q := f.w.q
	ctx, cancel := context.WithTimeout(f.ctx, 10*time.Second)
	defer cancel()
	info, err := q.stream.Info(ctx, jetstream.WithSubjectFilter(q.opts.SubjectPrefix+".>"))
	if err != nil {
		if f.ctx.Err() == nil {
			f.w.opts.Log.Error(err, "Listing the async queue's functions failed; retrying")
		}
		return
	}
	if q.opts.Shared {
		q.correct(info.State.Subjects)
	}
	for s := range info.State.Subjects {
		f.start(s)
	}
}

func (f *fetchers) start(subject string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.active[subject] || f.ctx.Err() != nil {
		return
	}
	f.active[subject] = true
	f.wg.Add(1)
	go f.run(subject)
}

// consumerName is a durable consumer's name for a function's subject (names cannot hold
// dots; the subject is in the consumer's filter and description).
func (w *Workers) consumerName(subject string) string {
	h := sha256.Sum256([]byte(subject))
	return w.opts.Consumer + "-" + hex.EncodeToString(h[:12])
}

// run consumes one function's events until it has none left (none waiting, none being
// handled or waiting out a retry delay) or ctx ends.
func (f *fetchers) run(subject string) {
	w := f.w
	defer f.wg.Done()
	defer func() {
		f.mu.Lock()
		delete(f.active, subject)
		f.mu.Unlock()
	}()
	cons, err := w.q.js.CreateOrUpdateConsumer(f.ctx, w.q.opts.Stream, jetstream.ConsumerConfig{
		Durable:       w.consumerName(subject),
		Description:   "klambda asynchronous invocation workers for " + subject,
		FilterSubject: subject,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       w.opts.AckWait,
		MaxDeliver:    -1, // the workers decide when an event has had enough
		MaxAckPending: w.opts.MaxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		Replicas:      w.q.opts.Replicas,
		// A consumer nobody pulls from (the function's events are all gone) is removed.
		InactiveThreshold: consumerInactive,
	})
	if err != nil {
		if f.ctx.Err() == nil {
			w.opts.Log.Error(err, "Creating an async consumer failed; retrying", "subject", subject)
		}
		return
	}
	own := make(chan struct{}, w.opts.MaxPerFunction) // this function's share of the workers
	for {
		// Take every free place of the function's share (at least one), pull that many.
		select {
		case own <- struct{}{}:
		case <-f.ctx.Done():
			return
		}
		n := 1
	more:
		for n < w.opts.MaxPerFunction {
			select {
			case own <- struct{}{}:
				n++
			default:
				break more
			}
		}
		batch, err := cons.Fetch(n, jetstream.FetchMaxWait(pullExpiry))
		got := 0
		if err == nil {
			for msg := range batch.Messages() {
				got++
				f.wg.Add(1)
				go f.handle(msg, own)
			}
			err = batch.Error()
		}
		for ; got < n; got++ {
			<-own
		}
		if f.ctx.Err() != nil {
			return
		}
		if err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
			w.opts.Log.Error(err, "Reading the async queue failed; retrying", "subject", subject)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if len(own) == 0 {
			// Nothing in hand: stop when the function has nothing left in the stream either.
			// A short wait: on a cluster whose server leading this consumer died, the
			// question goes unanswered until a new leader is elected, and pulling again
			// finds that leader sooner.
			ictx, cancel := context.WithTimeout(f.ctx, pullExpiry)
			info, err := cons.Info(ictx)
			cancel()
			if err == nil && info.NumPending == 0 && info.NumAckPending == 0 {
				return
			}
		}
	}
}

// handle waits for a worker (keeping the event alive meanwhile), then handles the event.
func (f *fetchers) handle(msg jetstream.Msg, own chan struct{}) {
	defer f.wg.Done()
	defer func() { <-own }()
	stop := f.w.keepAlive(msg)
	select {
	case f.slots <- struct{}{}:
	case <-f.ctx.Done():
		stop()
		_ = msg.Nak() // shutting down before it started: another worker takes it
		return
	}
	stop()
	defer func() { <-f.slots }()
	f.w.handle(f.work, msg)
}

const (
	pullExpiry       = 2 * time.Second
	consumerInactive = time.Hour
)

// attemptState is an event's history across deliveries, kept under its request id.
type attemptState struct {
	InvokeCount         int    `json:"invokeCount"`
	FunctionErrors      int    `json:"functionErrors"`
	Retryable           int    `json:"retryable"`
	LastStatus          int    `json:"lastStatus,omitempty"`
	LastExecutedVersion string `json:"lastExecutedVersion,omitempty"`
	LastFunctionError   string `json:"lastFunctionError,omitempty"`
	LastPayload         []byte `json:"lastPayload,omitempty"`
}

func (s *attemptState) remember(r InvokeResult) {
	s.LastStatus, s.LastExecutedVersion, s.LastFunctionError = r.StatusCode, r.ExecutedVersion, r.FunctionError
	s.LastPayload = r.Payload
	if len(s.LastPayload) > contract.MaxAsyncPayload {
		s.LastPayload = s.LastPayload[:contract.MaxAsyncPayload]
	}
}

// handle runs one delivery of an event: refuses a message that is not an event, sends an
// event past its age or at reserved concurrency 0 to the failure path, else invokes it and
// acts on the outcome.
func (w *Workers) handle(ctx context.Context, msg jetstream.Msg) {
	ev, ok := w.readOrRefuse(msg)
	if !ok {
		return
	}
	log := w.opts.Log.WithValues("namespace", ev.Namespace, "function", ev.Function, "requestId", ev.RequestID)
	stopKeepAlive := w.keepAlive(msg)
	defer stopKeepAlive()

	st, stored := w.history(ctx, msg, ev)
	cfg, err := w.configs.AsyncConfig(ctx, ev.Namespace, ev.Function, ev.Qualifier)
	if errors.Is(err, ErrFunctionNotFound) {
		cfg = ConfigFrom(nil)
		cfg.Unresolved = true
	} else if err != nil {
		log.Error(err, "Looking up the async configuration failed; retrying the event")
		st.Retryable++
		w.retryLater(ctx, msg, ev, cfg, &st, w.opts.Retry.throttleDelay(st.Retryable), log)
		return
	}

	age := w.now().Sub(ev.Received)
	if age >= cfg.MaximumEventAge {
		w.fail(ctx, msg, ev, cfg, &st, stored, ConditionEventAgeExceeded, log)
		return
	}
	if cfg.ReservedConcurrency != nil && *cfg.ReservedConcurrency == 0 {
		// Lambda: reserved concurrency 0 sends events straight to the failure path.
		st.remember(InvokeResult{StatusCode: 429, ExecutedVersion: cfg.Version,
			Payload: []byte(reservedZeroAnswer)})
		w.fail(ctx, msg, ev, cfg, &st, stored, ConditionRetriesExhausted, log)
		return
	}

	w.opts.Metrics.Age.WithLabelValues(series(ev, cfg)...).Observe(age.Seconds())
	res, err := w.inv.Invoke(ctx, InvokeRequest{
		RequestID: ev.RequestID, Namespace: ev.Namespace, Function: ev.Function, Qualifier: ev.Qualifier,
		Payload: ev.Payload, ClientContext: ev.ClientContext, TraceID: ev.TraceID,
	})
	if ctx.Err() != nil {
		// Shutting down: hand the event back for another worker, with no attempt counted.
		_ = msg.Nak()
		return
	}
	if err != nil {
		res = InvokeResult{StatusCode: 500, Payload: serviceError(err)}
	}
	w.onOutcome(ctx, msg, ev, cfg, &st, stored, res, log)
}

// readOrRefuse reads the event a message carries; a message that is not an event an
// activator accepted (issue #15) is counted, logged and terminated: never invoked, never
// redelivered.
func (w *Workers) readOrRefuse(msg jetstream.Msg) (Event, bool) {
	ev, err := w.q.readEvent(msg.Subject(), msg.Headers(), msg.Data())
	if err == nil {
		return ev, true
	}
	reason := RejectMalformed
	var re *RejectedError
	if errors.As(err, &re) {
		reason = re.Reason
	}
	w.opts.Metrics.Rejected.WithLabelValues(reason).Inc()
	w.opts.Log.Error(err, "Refusing a message on the async queue", "reason", reason)
	if msg.Term() == nil {
		w.q.settled(msg.Subject(), len(msg.Data())) // it has left the stream
	}
	return ev, false
}

// history is the event's attempts so far, and whether they were stored; only an event
// delivered before (here, or on the embedded queue it was moved from) can have any.
func (w *Workers) history(ctx context.Context, msg jetstream.Msg, ev Event) (st attemptState, stored bool) {
	md, err := msg.Metadata()
	if err == nil && (md.NumDelivered > 1 || msg.Headers().Get(hdrMoved) != "") {
		if e, err := w.q.state.Get(ctx, ev.RequestID); err == nil {
			stored = json.Unmarshal(e.Value(), &st) == nil
		}
	}
	return st, stored
}

// onOutcome acts on an invocation's result: the success destination and settling, a retry
// after a function error or a throttle, or the failure path.
func (w *Workers) onOutcome(ctx context.Context, msg jetstream.Msg, ev Event, cfg Config, st *attemptState, stored bool, res InvokeResult, log logr.Logger) {
	switch res.outcome() {
	case outcomeSuccess:
		st.InvokeCount++
		st.remember(res)
		rec := w.record(ev, ConditionSuccess, st)
		if cfg.OnSuccess != nil {
			w.deliver(ctx, ev, cfg.OnSuccess, Letter{Body: rec, RequestID: ev.RequestID}, false, log)
		}
		w.settle(ctx, msg, ev, stored, log)
	case outcomeFunctionError:
		st.InvokeCount++
		st.FunctionErrors++
		st.remember(res)
		if st.FunctionErrors > cfg.MaximumRetryAttempts {
			w.fail(ctx, msg, ev, cfg, st, stored, ConditionRetriesExhausted, log)
			return
		}
		policy := w.opts.Retry
		if cfg.FunctionErrorDelays != nil {
			policy.FunctionErrorDelays = cfg.FunctionErrorDelays
		}
		w.retryLater(ctx, msg, ev, cfg, st, policy.functionErrorDelay(st.FunctionErrors), log)
	case outcomeRetryable:
		// Throttles and system errors do not use up maximumRetryAttempts.
		st.Retryable++
		if st.LastFunctionError == "" {
			st.remember(res)
		}
		w.retryLater(ctx, msg, ev, cfg, st, w.opts.Retry.throttleDelay(st.Retryable), log)
	case outcomeInvocationError:
		st.remember(res)
		w.fail(ctx, msg, ev, cfg, st, stored, ConditionRetriesExhausted, log)
	}
}

// retryLater stores the event's history and has JetStream redeliver it after delay, or
// at its expiry when that comes first (then it goes to the failure path).
func (w *Workers) retryLater(ctx context.Context, msg jetstream.Msg, ev Event, cfg Config, st *attemptState, delay time.Duration, log logr.Logger) {
	if cfg.MaximumEventAge > 0 {
		if left := time.Until(ev.Received.Add(cfg.MaximumEventAge)); left < delay {
			delay = max(left, 0)
		}
	}
	b, _ := json.Marshal(st)
	if _, err := w.q.state.Put(ctx, ev.RequestID, b); err != nil {
		// Without the history the event would retry from scratch; let AckWait redeliver.
		log.Error(err, "Saving async attempt state failed")
	}
	if err := msg.NakWithDelay(delay); err != nil {
		log.Error(err, "Scheduling the retry failed; JetStream redelivers after AckWait")
	}
}

// fail runs the failure path: the on-failure record and the dead-letter target, then settles.
func (w *Workers) fail(ctx context.Context, msg jetstream.Msg, ev Event, cfg Config, st *attemptState, stored bool, condition string, log logr.Logger) {
	w.opts.Metrics.Dropped.WithLabelValues(series(ev, cfg)...).Inc()
	log.Info("Async event failed", "condition", condition, "invokeCount", st.InvokeCount, "status", st.LastStatus)
	if st.LastExecutedVersion == "" {
		st.LastExecutedVersion = cfg.Version
	}
	if cfg.OnFailure != nil {
		w.deliver(ctx, ev, cfg.OnFailure, Letter{Body: w.record(ev, condition, st), RequestID: ev.RequestID}, false, log)
	}
	dlq := cfg.DeadLetter
	if v := st.LastExecutedVersion; v != "" && v != cfg.Version {
		d, err := w.configs.DeadLetterConfig(ctx, ev.Namespace, ev.Function, v)
		if err == nil {
			dlq = d
		} else if !errors.Is(err, ErrFunctionNotFound) {
			log.Error(err, "Looking up the dead-letter config of the executed version failed", "version", v)
		}
	}
	if dlq != nil {
		status := st.LastStatus
		if status == 0 {
			status = 200
		}
		w.deliver(ctx, ev, &dlq.Target, Letter{
			Body: ev.Payload, DeadLetter: true, RequestID: ev.RequestID,
			ErrorCode: status, ErrorMessage: errorMessage(st.LastPayload, condition),
		}, true, log)
	}
	w.settle(ctx, msg, ev, stored, log)
}

// settle acknowledges the event (it leaves the stream) and drops its history. An event
// with a history waits for the server to confirm the ack before the history goes; a plain
// ack that is lost in a crash only means the event runs again.
func (w *Workers) settle(ctx context.Context, msg jetstream.Msg, ev Event, stored bool, log logr.Logger) {
	if !stored {
		if err := msg.Ack(); err != nil {
			log.Error(err, "Acknowledging the async event failed; it may run again")
			return
		}
		w.q.settled(msg.Subject(), len(msg.Data()))
		return
	}
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := msg.DoubleAck(actx); err != nil {
		log.Error(err, "Acknowledging the async event failed; it may run again")
		return
	}
	w.q.settled(msg.Subject(), len(msg.Data()))
	_ = w.q.state.Purge(ctx, ev.RequestID)
}

// countDeliveryFailure counts a letter that was not delivered: a dead letter's or a
// destination's.
func (w *Workers) countDeliveryFailure(ev Event, deadLetter bool) {
	if deadLetter {
		w.opts.Metrics.DeadLetterErrors.WithLabelValues(ev.Namespace, ev.Function).Inc()
	} else {
		w.opts.Metrics.DestinationFailures.WithLabelValues(ev.Namespace, ev.Function).Inc()
	}
}

// deliver sends one letter with bounded retries; a final failure is counted, not fatal.
func (w *Workers) deliver(ctx context.Context, ev Event, dest *lambdav1alpha1.Destination, l Letter, deadLetter bool, log logr.Logger) {
	if w.destinationRefused(ctx, ev, dest, deadLetter, log) {
		return
	}
	p := w.opts.Retry
	backoff := p.DeliveryBackoff
	var err error
	for attempt := 1; attempt <= p.DeliveryAttempts; attempt++ {
		dctx, cancel := context.WithTimeout(ctx, p.DeliveryTimeout)
		err = w.dst.Deliver(dctx, ev.Namespace, dest, l)
		cancel()
		if err == nil {
			return
		}
		if attempt == p.DeliveryAttempts || ctx.Err() != nil {
			break
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
		}
		backoff *= 2
	}
	w.countDeliveryFailure(ev, deadLetter)
	if deadLetter {
		log.Error(err, "Sending the failed event to its dead-letter target failed; the event is discarded")
	} else {
		log.Error(err, "Delivering the invocation record to its destination failed")
	}
}

func (w *Workers) record(ev Event, condition string, st *attemptState) []byte {
	q := ev.Qualifier
	if q == "" {
		q = contract.Latest
	}
	arn := lambdav1alpha1.QualifiedFunctionARN(w.opts.Region, w.opts.AccountID, ev.Function, q)
	status := st.LastStatus
	payload := st.LastPayload
	b, _ := json.Marshal(newRecord(w.now(), ev.RequestID, arn, condition, st.InvokeCount,
		ev.Payload, status, st.LastExecutedVersion, st.LastFunctionError, payload))
	return b
}

// keepAlive extends AckWait while an event is being handled.
func (w *Workers) keepAlive(msg jetstream.Msg) func() {
	t := time.NewTicker(w.opts.AckWait / 3)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-t.C:
				_ = msg.InProgress()
			case <-done:
				return
			}
		}
	}()
	return func() { t.Stop(); close(done) }
}

func serviceError(err error) []byte {
	b, _ := json.Marshal(map[string]string{"Type": "Service", "message": err.Error()})
	return b
}

// errorMessage is the dead letter's ErrorMessage: the error's message, first 1 KB.
func errorMessage(payload []byte, condition string) string {
	var e struct {
		ErrorMessage string `json:"errorMessage"`
		Message      string `json:"message"`
	}
	msg := ""
	if json.Unmarshal(payload, &e) == nil {
		msg = e.ErrorMessage
		if msg == "" {
			msg = e.Message
		}
	}
	if msg == "" {
		msg = string(payload)
	}
	if msg == "" {
		msg = condition
	}
	msg = strings.ToValidUTF8(msg, "\uFFFD")
	if len(msg) > deadLetterMessageLimit {
		msg = msg[:deadLetterMessageLimit]
		for !utf8.ValidString(msg) {
			msg = msg[:len(msg)-1]
		}
	}
	return msg
}

// reservedZeroAnswer is the TooManyRequestsException the invoke handler would answer at a
// reserved concurrency of 0, recorded for an event that is not tried.
const reservedZeroAnswer = `{"Type":"User","message":"` + contract.ThrottleMessage + `","Reason":"` + contract.ReasonReservedConcurrency + `"}`
