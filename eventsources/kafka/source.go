// Package kafka is the self-managed Kafka event source: a franz-go group consumer whose
// group is the mapping's UUID (or consumerGroupId), so that poller replicas share the
// topic's partitions through the broker and never read a partition twice. Records become
// Lambda's SelfManagedKafka event; offsets are committed (offset+1) once a record and every
// record before it in its partition are finished, by marking them and committing the marks
// every second, on partition revocation and on close.
//
// A record's batchItemFailures identifier is "<topic>-<partition>@<offset>" (e.g.
// "orders-0@15"): Kafka offsets repeat across partitions, and a batch may span several.
package kafka

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/klambda/klambda/eventsources/access"
	"github.com/klambda/klambda/eventsources/batch"
	"github.com/klambda/klambda/eventsources/events"
	"github.com/klambda/klambda/eventsources/filter"
	"github.com/klambda/klambda/eventsources/poller"
)

// Config is a Kafka source.
type Config struct {
	BootstrapServers []string
	Topic            string
	// Group is the consumer group: consumerGroupId, else the mapping's UUID.
	Group string
	// FromStart is startingPosition TRIM_HORIZON (else LATEST). A group's committed offsets
	// win over it, as in Lambda.
	FromStart bool
	Access    access.Access
	// CommitInterval between commits of finished offsets (default 1 s).
	CommitInterval time.Duration
	// MaxPollRecords bounds the records one Fetch returns (default DefaultMaxPollRecords).
	// The client's fetches are taken whole and kept in the Source; each Fetch hands on a
	// share of every partition's records, in order.
	MaxPollRecords int
	// BatchSize is the mapping's batch size: a Fetch's share of a partition is a multiple
	// of it when the share holds one at least, so that the share's end does not cut the
	// partition's next batch short (0: no rounding).
	BatchSize int
	// FetchMaxPartitionBytes bounds one partition's data in one fetch from the broker, as
	// the broker stores it (compressed; default DefaultFetchMaxPartitionBytes). The bound
	// asked for is lower while the topic's batches decompress to more than
	// FetchPartitionTarget per fetch (see fetchSizer).
	FetchMaxPartitionBytes int
	// Extra options (tests: a faster session timeout).
	Extra []kgo.Opt
}

// DefaultMaxPollRecords is Config.MaxPollRecords when it is 0. Without a bound a Fetch
// turned whatever the client had fetched into poller messages at once: a backlog's first
// poll held ~190,000 records in bench/eventsources (20 MB of messages, their IDs and tracker
// entries, written at once and read again long after, out of the CPU's caches). The poller
// queues a few polls per partition, so this also bounds how far ahead it converts.
const DefaultMaxPollRecords = 1000

// DefaultFetchMaxPartitionBytes is Config.FetchMaxPartitionBytes when it is 0 (Kafka's and
// franz-go's default).
const DefaultFetchMaxPartitionBytes = 1 << 20

// Fetch sizing by what the records decompress into (fetchSizer).
const (
	// FetchPartitionTarget is about how many bytes of records (decompressed) one
	// partition's part of a fetch should hold: a compressed bound of 1 MiB held tens of MB of
	// well-compressed records per partition (a value repeated), and the client decompresses
	// a whole fetch at once: a 16-partition backlog of 1M such records took 627–756 MB of
	// heap in process and got the pollers' container (512 MiB) OOMKilled (bench/README.md,
	// issue 22).
	FetchPartitionTarget = 2 << 20
	// fetchPartitionFirst is the bound of the first fetches, before any batch was read.
	fetchPartitionFirst = 64 << 10
	// fetchPartitionFloor is the least bound asked for.
	fetchPartitionFloor = 16 << 10
	// fetchSizerWindow is how many compressed bytes of batches are read between two
	// decisions.
	fetchSizerWindow = 256 << 10
)

// Source reads one topic.
type Source struct {
	cfg       Config
	cl        *kgo.Client
	bootstrap string
	mu        sync.Mutex
	highest   map[string]int64 // per partition key, the highest offset fetched this session
	lag       map[string]int64
	owned     map[string]bool // partitions assigned to this member
	// held are the records of the client's last poll not handed on by Fetch yet, per
	// partition in the poll's order (MaxPollRecords).
	held []heldPart

	sizer *fetchSizer

	rebalanceMu sync.Mutex
	onRebalance func(assigned bool, partitions []string)
}

var (
	_ poller.Source           = (*Source)(nil)
	_ poller.Rebalancer       = (*Source)(nil)
	_ poller.EventAppender    = (*Source)(nil)
	_ poller.PartitionGrouper = (*Source)(nil)
)

// ClientOpts are the connection options (servers, SASL, TLS) for consumers and producers.
func ClientOpts(servers []string, a access.Access) ([]kgo.Opt, error) {
	opts := []kgo.Opt{kgo.SeedBrokers(servers...)}
	tlsCfg, err := a.TLSConfig()
	if err != nil {
		return nil, err
	}
	switch {
	case a.SCRAM512 != nil:
		opts = append(opts, kgo.SASL(scram.Auth{User: a.SCRAM512.Username, Pass: a.SCRAM512.Password}.AsSha512Mechanism()))
	case a.SCRAM256 != nil:
		opts = append(opts, kgo.SASL(scram.Auth{User: a.SCRAM256.Username, Pass: a.SCRAM256.Password}.AsSha256Mechanism()))
	case a.BasicAuth != nil:
		// SASL/PLAIN sends the password in the clear: Lambda requires TLS with it.
		opts = append(opts, kgo.SASL(plain.Auth{User: a.BasicAuth.Username, Pass: a.BasicAuth.Password}.AsMechanism()))
		if tlsCfg == nil {
			tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12}
		}
	}
	if tlsCfg != nil {
		opts = append(opts, kgo.Dialer((&tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second}, Config: tlsCfg}).DialContext))
	}
	return opts, nil
}

// Open joins the consumer group.
func Open(cfg Config) (*Source, error) {
	if cfg.Group == "" || cfg.Topic == "" || len(cfg.BootstrapServers) == 0 {
		return nil, errors.New("kafka source: servers, topic and group are required")
	}
	if cfg.CommitInterval <= 0 {
		cfg.CommitInterval = time.Second
	}
	if cfg.MaxPollRecords < 0 {
		return nil, fmt.Errorf("kafka source: MaxPollRecords %d is negative", cfg.MaxPollRecords)
	}
	if cfg.MaxPollRecords == 0 {
		cfg.MaxPollRecords = DefaultMaxPollRecords
	}
	if cfg.BatchSize < 0 {
		return nil, fmt.Errorf("kafka source: BatchSize %d is negative", cfg.BatchSize)
	}
	opts, err := ClientOpts(cfg.BootstrapServers, cfg.Access)
	if err != nil {
		return nil, err
	}
	reset := kgo.NewOffset().AtEnd()
	if cfg.FromStart {
		reset = kgo.NewOffset().AtStart()
	}
	if cfg.FetchMaxPartitionBytes < 0 {
		return nil, fmt.Errorf("kafka source: FetchMaxPartitionBytes %d is negative", cfg.FetchMaxPartitionBytes)
	}
	if cfg.FetchMaxPartitionBytes == 0 {
		cfg.FetchMaxPartitionBytes = DefaultFetchMaxPartitionBytes
	}
	sizer := newFetchSizer(int32(min(cfg.FetchMaxPartitionBytes, math.MaxInt32)))
	opts = append(opts,
		kgo.FetchMaxBytes(fetchMaxBytes),
		kgo.FetchMaxPartitionBytes(sizer.part.Load()),
		kgo.WithHooks(sizer),
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(cfg.Topic),
		kgo.ConsumeResetOffset(reset),
		kgo.AutoCommitMarks(),
		kgo.AutoCommitInterval(cfg.CommitInterval),
	)
	s := &Source{cfg: cfg, bootstrap: strings.Join(cfg.BootstrapServers, ","), highest: map[string]int64{}, lag: map[string]int64{}, owned: map[string]bool{}}
	// Partitions move between the group's members (poller replicas): before a partition
	// leaves, the poller finishes the invocation it is in and marks what the function
	// answered for, and that is committed; the next owner resumes from there.
	opts = append(opts,
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
			s.rebalance(true, assigned)
		}),
		kgo.OnPartitionsRevoked(func(ctx context.Context, cl *kgo.Client, revoked map[string][]int32) {
			s.rebalance(false, revoked)
			_ = cl.CommitMarkedOffsets(ctx)
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
			s.rebalance(false, lost) // nothing to commit: the group has moved on
		}),
	)
	opts = append(opts, cfg.Extra...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	s.cl = cl
	s.sizer = sizer
	sizer.cl.Store(cl)
	return s, nil
}

// fetchMaxBytes bounds a whole fetch (franz-go's and Kafka's default, 50 MiB).
const fetchMaxBytes = 50 << 20

// fetchSizer is a franz-go hook that sizes the client's fetches by what the topic's record
// batches decompress into: the per-partition bound of a fetch is FetchPartitionTarget over
// the compression ratio of the batches read lately, between fetchPartitionFloor and the
// configured bound (ceiling). franz-go decompresses a fetch whole when it arrives, and the
// Source holds a poll until it has handed it all on, so what a fetch holds decompressed is
// what the poller's memory holds (twice: one poll in the Source, the next fetch buffered
// in the client). A topic of incompressible records is fetched with the ceiling, as before.
// A batch over the bound is still returned whole by the broker (for the first partition of
// a fetch at least), and the bound follows the ratio, so a batch of at most
// FetchPartitionTarget bytes decompressed fits it.
type fetchSizer struct {
	cl      atomic.Pointer[kgo.Client] // set once the client exists
	ceiling int32
	part    atomic.Int32 // the bound asked for now

	mu                       sync.Mutex
	compressed, uncompressed int64 // batches read since the last decision
}

var _ kgo.HookFetchBatchRead = (*fetchSizer)(nil)

func newFetchSizer(ceiling int32) *fetchSizer {
	f := &fetchSizer{ceiling: ceiling}
	f.part.Store(min(ceiling, fetchPartitionFirst))
	return f
}

// OnFetchBatchRead implements kgo.HookFetchBatchRead: every fetchSizerWindow compressed
// bytes read, the bound is set again from their ratio.
func (f *fetchSizer) OnFetchBatchRead(_ kgo.BrokerMetadata, _ string, _ int32, m kgo.FetchBatchMetrics) {
	if m.CompressedBytes <= 0 || m.UncompressedBytes <= 0 {
		return
	}
	f.mu.Lock()
	f.compressed += int64(m.CompressedBytes)
	f.uncompressed += int64(m.UncompressedBytes)
	if f.compressed < fetchSizerWindow {
		f.mu.Unlock()
		return
	}
	c, u := f.compressed, f.uncompressed
	f.compressed, f.uncompressed = 0, 0
	f.resize(c, u) // under mu: the client's bound is the last one decided
	f.mu.Unlock()
}

// resize sets the bound for records that decompressed from c bytes into u. Called with mu
// held.
func (f *fetchSizer) resize(c, u int64) {
	want := int32(min(max(FetchPartitionTarget*c/max(u, 1), fetchPartitionFloor), int64(f.ceiling)))
	if f.part.Swap(want) == want {
		return
	}
	if cl := f.cl.Load(); cl != nil {
		cl.UpdateFetchMaxBytes(fetchMaxBytes, want)
	}
}

// OnRebalance implements poller.Rebalancer.
func (s *Source) OnRebalance(f func(assigned bool, partitions []string)) {
	s.rebalanceMu.Lock()
	s.onRebalance = f
	s.rebalanceMu.Unlock()
}

func (s *Source) rebalance(assigned bool, tps map[string][]int32) {
	var keys []string
	for topic, ps := range tps {
		for _, p := range ps {
			keys = append(keys, events.KafkaPartitionKey(topic, p))
		}
	}
	if len(keys) == 0 {
		return
	}
	if assigned {
		s.mu.Lock()
		for _, k := range keys {
			s.owned[k] = true
		}
		s.mu.Unlock()
	}
	s.rebalanceMu.Lock()
	f := s.onRebalance
	s.rebalanceMu.Unlock()
	if f != nil {
		f(assigned, keys)
	}
	if !assigned {
		// A partition given back later is read again from its committed offset, and what
		// Fetch still held of it is dropped (handed on after a new assignment, it would
		// come before the records refetched from that offset).
		s.mu.Lock()
		for _, k := range keys {
			delete(s.owned, k)
			delete(s.highest, k)
			delete(s.lag, k)
		}
		s.dropHeld(keys)
		s.mu.Unlock()
	}
}

// dropHeld forgets the held records of partitions. Called with mu held.
func (s *Source) dropHeld(keys []string) {
	kept := s.held[:0]
	for _, p := range s.held {
		if !slices.Contains(keys, p.key) {
			kept = append(kept, p)
		}
	}
	clear(s.held[len(kept):])
	s.held = kept
}

// GroupsPartitions is true: the event's records are grouped by topic-partition, so one
// invocation carries the records of every partition that has some ready and no batch in
// flight (poller.PartitionGrouper), as Lambda's Kafka poller's.
func (s *Source) GroupsPartitions() bool { return true }

// Mode is Stream.
func (s *Source) Mode() batch.Mode { return batch.Stream }

// heldPart is one partition's records of the client's last poll that Fetch has not handed
// on yet, and the partition's high watermark in that poll.
type heldPart struct {
	key  string
	hw   int64
	recs []*kgo.Record
}

// Fetch returns at most MaxPollRecords records: the rest of the client's last poll while
// some are held, else a new poll's. Each Fetch takes a share of every held partition's
// records (in order), so that every partition has records queued in the poller.
func (s *Source) Fetch(ctx context.Context) ([]poller.Message, error) {
	s.mu.Lock()
	empty := len(s.held) == 0
	s.mu.Unlock()
	var errs []error
	if empty {
		fs := s.cl.PollFetches(ctx)
		if fs.IsClientClosed() {
			return nil, errors.New("kafka client closed")
		}
		fs.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				errs = append(errs, fmt.Errorf("%s: %w", events.KafkaPartitionKey(topic, p), err))
			}
		})
		s.mu.Lock()
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			if len(p.Records) > 0 {
				s.held = append(s.held, heldPart{key: events.KafkaPartitionKey(p.Topic, p.Partition), hw: p.HighWatermark, recs: p.Records})
			}
		})
		s.mu.Unlock()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	taken := s.take()
	out := make([]poller.Message, 0, s.cfg.MaxPollRecords)
	// The poll's record IDs and keys are written into one buffer and become substrings of
	// one string: two allocations per poll instead of two per record.
	size := 0
	for _, p := range taken {
		for _, r := range p.recs {
			size += len(p.key) + 22 + len(r.Key) // "<topic>-<partition>@<offset>" and the key
		}
	}
	// A Builder: its String is the buffer itself, not a copy of it.
	var text strings.Builder
	text.Grow(size)
	var num [20]byte
	ends := make([]int, 0, 2*cap(out)) // per message, where its ID and its key end in text
	for _, p := range taken {
		key := p.key
		if !s.owned[key] {
			continue // fetched before the partition was revoked: its next owner reads it
		}
		h, seen := s.highest[key]
		for _, r := range p.recs {
			if seen && r.Offset <= h {
				continue // refetched after a rebalance while still held here
			}
			h, seen = r.Offset, true
			text.WriteString(key)
			text.WriteByte('@')
			text.Write(strconv.AppendInt(num[:0], r.Offset, 10))
			ends = append(ends, text.Len())
			text.Write(r.Key)
			ends = append(ends, text.Len())
			out = append(out, s.message(key, r))
		}
		if seen {
			s.highest[key] = h
			if p.hw > 0 {
				s.lag[key] = max(0, p.hw-h-1)
			}
		}
	}
	if len(out) == 0 && len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	all, start := text.String(), 0
	for i := range out {
		idEnd, keyEnd := ends[2*i], ends[2*i+1]
		out[i].Record.ID, out[i].Key = all[start:idEnd], all[idEnd:keyEnd]
		start = keyEnd
	}
	return out, nil
}

// take removes up to MaxPollRecords records from held, an equal share from each partition
// (at least one record each; rounded down to whole batches when it holds one), in order.
// Called with mu held.
func (s *Source) take() []heldPart {
	if len(s.held) == 0 {
		return nil
	}
	per := max(1, s.cfg.MaxPollRecords/len(s.held))
	if b := s.cfg.BatchSize; b > 0 && per > b {
		per -= per % b
	}
	taken := make([]heldPart, 0, len(s.held))
	left := s.cfg.MaxPollRecords
	kept := s.held[:0]
	for _, p := range s.held {
		if n := min(per, left, len(p.recs)); n > 0 {
			taken = append(taken, heldPart{key: p.key, hw: p.hw, recs: p.recs[:n:n]})
			p.recs = p.recs[n:]
			left -= n
		}
		if len(p.recs) > 0 {
			kept = append(kept, p)
		}
	}
	clear(s.held[len(kept):])
	s.held = kept
	return taken
}

// Lag is the sum over partitions of records behind the high watermark.
func (s *Source) Lag() (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, l := range s.lag {
		n += l
	}
	return n, len(s.lag) > 0
}

func eventRecord(r *kgo.Record) events.KafkaRecord {
	er := events.KafkaRecord{
		Topic: r.Topic, Partition: r.Partition, Offset: r.Offset,
		Timestamp: r.Timestamp.UnixMilli(), TimestampType: events.KafkaCreateTime,
		Key: r.Key, Value: r.Value, Headers: events.KafkaHeaders{},
	}
	if r.Attrs.TimestampType() == 1 {
		er.TimestampType = events.KafkaLogAppendTime
	}
	for _, h := range r.Headers {
		er.Headers = append(er.Headers, events.KafkaHeader{Key: h.Key, Value: h.Value})
	}
	return er
}

// message is r as the poller sees it, without its ID and Key (Fetch sets them).
func (s *Source) message(key string, r *kgo.Record) poller.Message {
	return poller.Message{
		Record: batch.Record{
			Partition: key,
			Offset:    r.Offset,
			Size:      recordSize(r),
			Timestamp: r.Timestamp,
			Ref:       r,
		},
	}
}

// FilterRecord is the record as filters see it (poller.Source).
func (s *Source) FilterRecord(r batch.Record) filter.Record {
	return filter.FromKafka(eventRecord(r.Ref.(*kgo.Record)))
}

// recordSize bounds a record's JSON from above without marshalling it: base64 payloads,
// headers as signed byte numbers (at most 5 characters each), and the fixed fields.
func recordSize(r *kgo.Record) int {
	n := 160 + 2*len(r.Topic) + b64(len(r.Key)) + b64(len(r.Value))
	for _, h := range r.Headers {
		n += 8 + 2*len(h.Key) + 5*len(h.Value)
	}
	return n
}

func b64(n int) int { return (n + 2) / 3 * 4 }

// EnvelopeBytes bounds the event around its records.
func (s *Source) EnvelopeBytes() int {
	return 100 + len(strings.Join(s.cfg.BootstrapServers, ",")) + 2*len(s.cfg.Topic) + 16
}

// Event builds the SelfManagedKafka event (see appendEvent).
func (s *Source) Event(records []batch.Record) ([]byte, error) {
	return s.AppendEvent(nil, records)
}

// AppendEvent appends the SelfManagedKafka event to dst (poller.EventAppender), growing it
// once to a bound of the event's size.
func (s *Source) AppendEvent(dst []byte, records []batch.Record) ([]byte, error) {
	n := s.EnvelopeBytes()
	recs := make([]*kgo.Record, len(records))
	for i, r := range records {
		recs[i] = r.Ref.(*kgo.Record)
		n += r.Size + 1
	}
	return appendEvent(slices.Grow(dst[:0], n), s.bootstrap, recs), nil
}

// Settle marks checkpoints for commit (offset+1).
func (s *Source) Settle(_ context.Context, st poller.Settlement) error {
	if len(st.Checkpoints) == 0 {
		return nil
	}
	marks := map[string]map[int32]kgo.EpochOffset{}
	for key, off := range st.Checkpoints {
		topic, p, err := splitKey(key)
		if err != nil {
			return err
		}
		if marks[topic] == nil {
			marks[topic] = map[int32]kgo.EpochOffset{}
		}
		marks[topic][p] = kgo.EpochOffset{Epoch: -1, Offset: off + 1}
	}
	s.cl.MarkCommitOffsets(marks)
	return nil
}

func splitKey(key string) (string, int32, error) {
	i := strings.LastIndexByte(key, '-')
	if i < 0 {
		return "", 0, fmt.Errorf("bad partition key %q", key)
	}
	p, err := strconv.ParseInt(key[i+1:], 10, 32)
	if err != nil {
		return "", 0, fmt.Errorf("bad partition key %q", key)
	}
	return key[:i], int32(p), nil
}

// DescribeFailure fills KafkaBatchInfo.
func (s *Source) DescribeFailure(rec *events.OnFailureRecord, records []batch.Record) {
	info := &events.KafkaBatchInfo{
		BatchSize:        len(records),
		BootstrapServers: strings.Join(s.cfg.BootstrapServers, ","),
		RecordsInfo:      map[string]events.KafkaPartitionRange{},
	}
	for _, r := range records {
		info.PayloadSize += r.Size
		ts := events.FormatTimestamp(r.Timestamp)
		off := strconv.FormatInt(r.Offset, 10)
		pr, ok := info.RecordsInfo[r.Partition]
		if !ok {
			pr.FirstRecordOffset, pr.FirstRecordTimestamp = off, ts
		}
		pr.LastRecordOffset, pr.LastRecordTimestamp = off, ts
		info.RecordsInfo[r.Partition] = pr
	}
	rec.KafkaBatchInfo = info
}

// Close commits what is finished and leaves the group.
func (s *Source) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := s.cl.CommitMarkedOffsets(ctx)
	s.cl.Close()
	return err
}
