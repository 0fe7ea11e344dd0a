// Package nats is the NATS JetStream event source: a durable pull consumer (named after
// the mapping's UUID unless durableName is given) with AckAll, so acknowledging a stream
// sequence is a checkpoint, as committing an offset is for Kafka. Records become klambda's
// NATS event (see package events); a record's batchItemFailures identifier is its stream
// sequence as a decimal string.
//
// Exactly one poller reads a mapping at a time (the controller holds a Lease per mapping), so
// the stream's order is kept. Messages redelivered after AckWait while still held by this
// poller are recognised by their sequence and skipped; on close, held messages are nak'ed so
// the next poller gets them at once.
package nats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/klambda/klambda/eventsources/access"
	"github.com/klambda/klambda/eventsources/batch"
	"github.com/klambda/klambda/eventsources/events"
	"github.com/klambda/klambda/eventsources/filter"
	"github.com/klambda/klambda/eventsources/poller"
)

// StartingPosition of a new consumer.
type StartingPosition int

const (
	// TrimHorizon reads the stream from its first message.
	TrimHorizon StartingPosition = iota
	// Latest reads only messages stored after the consumer is created.
	Latest
	// AtTimestamp reads from StartTime.
	AtTimestamp
)

// Config is a NATS JetStream source.
type Config struct {
	Servers []string
	Stream  string
	Subject string // filter; empty means the whole stream
	Durable string
	// Start applies when the durable consumer doesn't exist yet; an existing one keeps its
	// position, as an existing Kafka group does.
	Start     StartingPosition
	StartTime time.Time
	// FetchSize is how many messages one pull asks for (the batch size).
	FetchSize int
	// MaxWait of a pull (default 1 s).
	MaxWait time.Duration
	// AckWait of a new consumer (default 1 min).
	AckWait time.Duration
	Access  access.Access
}

// Source reads one stream.
type Source struct {
	cfg     Config
	nc      *nats.Conn
	cons    jetstream.Consumer
	arn     string
	mu      sync.Mutex
	held    map[uint64]jetstream.Msg // fetched, not yet acknowledged
	highest uint64
	lag     uint64
}

var _ poller.Source = (*Source)(nil)

// ConnectOptions are the connection options from sourceAccessConfigurations.
func ConnectOptions(a access.Access) ([]nats.Option, error) {
	var opts []nats.Option
	if a.BasicAuth != nil {
		opts = append(opts, nats.UserInfo(a.BasicAuth.Username, a.BasicAuth.Password))
	}
	tlsCfg, err := a.TLSConfig()
	if err != nil {
		return nil, err
	}
	if tlsCfg != nil {
		opts = append(opts, nats.Secure(tlsCfg))
	}
	return opts, nil
}

// Open connects and finds or creates the durable consumer.
func Open(ctx context.Context, cfg Config) (*Source, error) {
	if len(cfg.Servers) == 0 || cfg.Stream == "" || cfg.Durable == "" {
		return nil, errors.New("nats source: servers, stream and durable name are required")
	}
	if cfg.FetchSize <= 0 {
		cfg.FetchSize = 100
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = time.Second
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = time.Minute
	}
	opts, err := ConnectOptions(cfg.Access)
	if err != nil {
		return nil, err
	}
	opts = append(opts, nats.Name("klambda-eventsources"), nats.MaxReconnects(-1))
	nc, err := nats.Connect(strings.Join(cfg.Servers, ","), opts...)
	if err != nil {
		return nil, fmt.Errorf("connecting to NATS: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	stream, err := js.Stream(ctx, cfg.Stream)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("stream %s: %w", cfg.Stream, err)
	}
	cons, err := stream.Consumer(ctx, cfg.Durable)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		cc := jetstream.ConsumerConfig{
			Durable:       cfg.Durable,
			AckPolicy:     jetstream.AckAllPolicy,
			AckWait:       cfg.AckWait,
			FilterSubject: cfg.Subject,
			MaxAckPending: -1,
		}
		switch cfg.Start {
		case Latest:
			cc.DeliverPolicy = jetstream.DeliverNewPolicy
		case AtTimestamp:
			cc.DeliverPolicy = jetstream.DeliverByStartTimePolicy
			t := cfg.StartTime
			cc.OptStartTime = &t
		default:
			cc.DeliverPolicy = jetstream.DeliverAllPolicy
		}
		cons, err = stream.CreateConsumer(ctx, cc)
	}
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("durable consumer %s: %w", cfg.Durable, err)
	}
	arn := strings.TrimSuffix(cfg.Servers[0], "/") + "/" + cfg.Stream
	return &Source{cfg: cfg, nc: nc, cons: cons, arn: arn, held: map[uint64]jetstream.Msg{}}, nil
}

// Mode is Stream.
func (s *Source) Mode() batch.Mode { return batch.Stream }

// Fetch pulls up to FetchSize messages.
func (s *Source) Fetch(ctx context.Context) ([]poller.Message, error) {
	fctx, cancel := context.WithTimeout(ctx, s.cfg.MaxWait)
	defer cancel()
	b, err := s.cons.Fetch(s.cfg.FetchSize, jetstream.FetchContext(fctx))
	if err != nil {
		return nil, err
	}
	var out []poller.Message
	for m := range b.Messages() {
		md, err := m.Metadata()
		if err != nil {
			continue
		}
		s.mu.Lock()
		fresh := md.Sequence.Stream > s.highest
		if fresh {
			s.highest = md.Sequence.Stream
			s.held[md.Sequence.Stream] = m
			s.lag = md.NumPending
		}
		s.mu.Unlock()
		if fresh {
			out = append(out, s.message(m, md))
		}
	}
	if err := b.Error(); err != nil && len(out) == 0 && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		return nil, err
	}
	return out, nil
}

// Lag is the consumer's pending count at the last fetch.
func (s *Source) Lag() (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return int64(s.lag), s.highest > 0
}

func eventRecord(m jetstream.Msg, md *jetstream.MsgMetadata) events.NATSRecord {
	r := events.NATSRecord{
		Stream: md.Stream, Subject: m.Subject(), Sequence: md.Sequence.Stream,
		Timestamp: md.Timestamp.UnixMilli(), NumDelivered: md.NumDelivered, Data: m.Data(),
	}
	if h := m.Headers(); len(h) > 0 {
		r.Headers = events.NATSHeaders(h)
	}
	return r
}

func (s *Source) message(m jetstream.Msg, md *jetstream.MsgMetadata) poller.Message {
	size := 140 + len(md.Stream) + 2*len(m.Subject()) + 20 + (len(m.Data())+2)/3*4
	for k, vs := range m.Headers() {
		size += 6 + 2*len(k)
		for _, v := range vs {
			size += 3 + 2*len(v)
		}
	}
	return poller.Message{
		Record: batch.Record{
			ID:        strconv.FormatUint(md.Sequence.Stream, 10),
			Partition: md.Stream,
			Offset:    int64(md.Sequence.Stream),
			Size:      size,
			Timestamp: md.Timestamp,
			Ref:       m,
		},
		Key: m.Subject(),
	}
}

// FilterRecord is the record as filters see it (poller.Source): its metadata parsed again
// from the message's reply subject, as Event does.
func (s *Source) FilterRecord(r batch.Record) filter.Record {
	m := r.Ref.(jetstream.Msg)
	md, err := m.Metadata()
	if err != nil {
		// Not reached: Fetch kept only messages whose reply subject parsed, and it is parsed
		// the same way again here.
		return filter.FromNATS(events.NATSRecord{Subject: m.Subject(), Data: m.Data()})
	}
	return filter.FromNATS(eventRecord(m, md))
}

// EnvelopeBytes bounds the event around its records.
func (s *Source) EnvelopeBytes() int {
	return 100 + len(strings.Join(s.cfg.Servers, ",")) + len(s.arn) + 2*len(s.cfg.Stream)
}

// Event builds klambda's NATS event.
func (s *Source) Event(records []batch.Record) ([]byte, error) {
	e := events.NewNATSEvent(s.cfg.Servers, s.arn)
	for _, r := range records {
		m := r.Ref.(jetstream.Msg)
		md, err := m.Metadata()
		if err != nil {
			return nil, err
		}
		e.Add(eventRecord(m, md))
	}
	return json.Marshal(e)
}

// Settle acknowledges the checkpoint's message, which (AckAll) acknowledges all before it.
func (s *Source) Settle(ctx context.Context, st poller.Settlement) error {
	for _, off := range st.Checkpoints {
		seq := uint64(off)
		s.mu.Lock()
		m := s.held[seq]
		for q := range s.held {
			if q <= seq {
				delete(s.held, q)
			}
		}
		s.mu.Unlock()
		if m == nil {
			continue
		}
		if err := m.DoubleAck(ctx); err != nil {
			return fmt.Errorf("acknowledging sequence %d: %w", seq, err)
		}
	}
	return nil
}

// DescribeFailure fills NATSBatchInfo.
func (s *Source) DescribeFailure(rec *events.OnFailureRecord, records []batch.Record) {
	info := &events.NATSBatchInfo{
		BatchSize: len(records), EventSourceARN: s.arn, Servers: strings.Join(s.cfg.Servers, ","),
		RecordsInfo: map[string]events.NATSStreamRange{},
	}
	for _, r := range records {
		info.PayloadSize += r.Size
		seq, ts := strconv.FormatInt(r.Offset, 10), events.FormatTimestamp(r.Timestamp)
		sr, ok := info.RecordsInfo[r.Partition]
		if !ok {
			sr.FirstRecordSequence, sr.FirstRecordTimestamp = seq, ts
		}
		sr.LastRecordSequence, sr.LastRecordTimestamp = seq, ts
		info.RecordsInfo[r.Partition] = sr
	}
	rec.NATSBatchInfo = info
}

// Close naks what is held, in order, so it is redelivered at once, and disconnects.
func (s *Source) Close() error {
	s.mu.Lock()
	seqs := make([]uint64, 0, len(s.held))
	for q := range s.held {
		seqs = append(seqs, q)
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	for _, q := range seqs {
		_ = s.held[q].Nak()
	}
	s.held = map[uint64]jetstream.Msg{}
	s.mu.Unlock()
	return s.nc.Drain()
}
