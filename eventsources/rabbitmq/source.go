// Package rabbitmq is the RabbitMQ event source (AMQP 0-9-1, amqp091-go): one consumer on
// the mapping's queue with manual acknowledgements and a prefetch of batch size × lanes.
// Messages become Lambda's aws:rmq event, grouped under "<queue>::<vhost>"; a success acks
// them, a failure nacks them back to the queue (after RedeliveryDelay, so a failing message
// doesn't spin), a filtered message is acked at once, as Lambda does.
//
// A message's batchItemFailures identifier is its messageId property; messages without one
// (or whose messageId is already in flight) are identified as "#<delivery tag>".
package rabbitmq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/klambda/klambda/eventsources/access"
	"github.com/klambda/klambda/eventsources/batch"
	"github.com/klambda/klambda/eventsources/events"
	"github.com/klambda/klambda/eventsources/filter"
	"github.com/klambda/klambda/eventsources/poller"
)

// Config is a RabbitMQ source.
type Config struct {
	// BrokerURL is amqp://host:5672 or amqps://host:5671 (credentials come from Access).
	BrokerURL string
	Queue     string
	Access    access.Access
	// Prefetch bounds unacknowledged messages (batch size × lanes).
	Prefetch int
	// FetchMax bounds the messages one Fetch returns (the batch size).
	FetchMax int
	// RedeliveryDelay before a failed message is returned to the queue (default 1 s).
	RedeliveryDelay time.Duration
	// ARN to show as eventSourceArn; default the broker URL.
	ARN string
}

// Source consumes one queue.
type Source struct {
	cfg        Config
	conn       *amqp.Connection
	ch         *amqp.Channel
	deliveries <-chan amqp.Delivery
	vhost      string
	key        string
	mu         sync.Mutex
	inFlight   map[string]bool
	closed     bool
	timers     sync.WaitGroup
}

var _ poller.Source = (*Source)(nil)

// Open connects and starts consuming.
func Open(cfg Config) (*Source, error) {
	if cfg.Prefetch <= 0 {
		cfg.Prefetch = 100
	}
	if cfg.FetchMax <= 0 {
		cfg.FetchMax = cfg.Prefetch
	}
	if cfg.RedeliveryDelay <= 0 {
		cfg.RedeliveryDelay = time.Second
	}
	u, err := url.Parse(cfg.BrokerURL)
	if err != nil {
		return nil, fmt.Errorf("broker URL: %w", err)
	}
	if cfg.ARN == "" {
		cfg.ARN = (&url.URL{Scheme: u.Scheme, Host: u.Host}).String()
	}
	vhost := cfg.Access.VirtualHost
	if vhost == "" {
		vhost = "/"
	}
	ac := amqp.Config{Vhost: vhost, Heartbeat: 10 * time.Second, Locale: "en_US"}
	if a := cfg.Access.BasicAuth; a != nil {
		ac.SASL = []amqp.Authentication{&amqp.PlainAuth{Username: a.Username, Password: a.Password}}
	}
	if ac.TLSClientConfig, err = cfg.Access.TLSConfig(); err != nil {
		return nil, err
	}
	conn, err := amqp.DialConfig(cfg.BrokerURL, ac)
	if err != nil {
		return nil, fmt.Errorf("connecting to RabbitMQ: %w", err)
	}
	ch, err := conn.Channel()
	if err != nil {
		conn.Close()
		return nil, err
	}
	if err := ch.Qos(cfg.Prefetch, 0, false); err != nil {
		conn.Close()
		return nil, err
	}
	d, err := ch.Consume(cfg.Queue, "", false, false, false, false, nil)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("consuming queue %s: %w", cfg.Queue, err)
	}
	return &Source{cfg: cfg, conn: conn, ch: ch, deliveries: d, vhost: vhost, key: events.RabbitMQQueueKey(cfg.Queue, vhost), inFlight: map[string]bool{}}, nil
}

// Mode is Queue.
func (s *Source) Mode() batch.Mode { return batch.Queue }

// Fetch waits for a message, then takes what else is already there (up to FetchMax).
func (s *Source) Fetch(ctx context.Context) ([]poller.Message, error) {
	var out []poller.Message
	select {
	case <-ctx.Done():
		return nil, nil
	case d, ok := <-s.deliveries:
		if !ok {
			return nil, errors.New("RabbitMQ consumer closed")
		}
		out = append(out, s.message(d))
	}
	for len(out) < s.cfg.FetchMax {
		select {
		case d, ok := <-s.deliveries:
			if !ok {
				return out, nil
			}
			out = append(out, s.message(d))
		default:
			return out, nil
		}
	}
	return out, nil
}

func eventMessage(d amqp.Delivery) events.RabbitMQMessage {
	str := func(v string) *string {
		if v == "" {
			return nil
		}
		return &v
	}
	p := events.RabbitMQBasicProperties{
		ContentType: str(d.ContentType), ContentEncoding: str(d.ContentEncoding),
		CorrelationID: str(d.CorrelationId), ReplyTo: str(d.ReplyTo), Expiration: str(d.Expiration),
		MessageID: str(d.MessageId), Type: str(d.Type), UserID: str(d.UserId), AppID: str(d.AppId),
		BodySize: uint64(len(d.Body)),
	}
	if d.DeliveryMode != 0 {
		v := d.DeliveryMode
		p.DeliveryMode = &v
	}
	if d.Priority != 0 {
		v := d.Priority
		p.Priority = &v
	}
	if !d.Timestamp.IsZero() {
		p.Timestamp = events.RabbitMQTimestamp(d.Timestamp)
	}
	if len(d.Headers) > 0 {
		p.Headers = map[string]any{}
		for k, v := range d.Headers {
			p.Headers[k] = headerValue(v)
		}
	}
	return events.RabbitMQMessage{BasicProperties: p, Redelivered: d.Redelivered, Data: d.Body}
}

// headerValue writes strings as Lambda does ({"bytes":[...]}), the rest as themselves.
func headerValue(v any) any {
	switch x := v.(type) {
	case string:
		return events.RabbitMQBytes(x)
	case []byte:
		return events.RabbitMQBytes(x)
	case time.Time:
		return x.Unix()
	case amqp.Table:
		m := map[string]any{}
		for k, e := range x {
			m[k] = headerValue(e)
		}
		return m
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = headerValue(e)
		}
		return out
	}
	return v
}

func (s *Source) message(d amqp.Delivery) poller.Message {
	s.mu.Lock()
	id := d.MessageId
	if id == "" || s.inFlight[id] {
		id = "#" + strconv.FormatUint(d.DeliveryTag, 10)
	}
	s.inFlight[id] = true
	s.mu.Unlock()
	ts := d.Timestamp
	if ts.IsZero() {
		ts = time.Now()
	}
	size := 420 + (len(d.Body)+2)/3*4
	for k, v := range d.Headers {
		size += 16 + 2*len(k) + 4*len(fmt.Sprint(v))
	}
	return poller.Message{
		Record: batch.Record{ID: id, Size: size, Timestamp: ts, Ref: d},
	}
}

// FilterRecord is the message as filters see it (poller.Source).
func (s *Source) FilterRecord(r batch.Record) filter.Record {
	return filter.FromRabbitMQ(eventMessage(r.Ref.(amqp.Delivery)))
}

// EnvelopeBytes bounds the event around its messages.
func (s *Source) EnvelopeBytes() int { return 80 + len(s.cfg.ARN) + 2*len(s.key) }

// Event builds the aws:rmq event.
func (s *Source) Event(records []batch.Record) ([]byte, error) {
	msgs := make([]events.RabbitMQMessage, len(records))
	for i, r := range records {
		msgs[i] = eventMessage(r.Ref.(amqp.Delivery))
	}
	return json.Marshal(events.RabbitMQEvent{EventSource: events.EventSourceRabbitMQ, EventSourceARN: s.cfg.ARN,
		MessagesByQueue: map[string][]events.RabbitMQMessage{s.key: msgs}})
}

// Settle acks finished messages and nacks failed ones back to the queue after the delay.
func (s *Source) Settle(_ context.Context, st poller.Settlement) error {
	var errs []error
	for _, r := range st.Acked {
		s.done(r.ID)
		if err := r.Ref.(amqp.Delivery).Ack(false); err != nil {
			errs = append(errs, err)
		}
	}
	for _, r := range st.Released {
		s.done(r.ID)
		d := r.Ref.(amqp.Delivery)
		s.timers.Add(1)
		time.AfterFunc(s.cfg.RedeliveryDelay, func() {
			defer s.timers.Done()
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if !closed {
				_ = d.Nack(false, true)
			}
		})
	}
	return errors.Join(errs...)
}

func (s *Source) done(id string) {
	s.mu.Lock()
	delete(s.inFlight, id)
	s.mu.Unlock()
}

// DescribeFailure fills RabbitMQBatchInfo (queue sources discard nothing today; this is for
// records too large to invoke).
func (s *Source) DescribeFailure(rec *events.OnFailureRecord, records []batch.Record) {
	qi := events.RabbitMQQueueInfo{MessageCount: len(records)}
	info := &events.RabbitMQBatchInfo{BatchSize: len(records), EventSourceARN: s.cfg.ARN}
	for i, r := range records {
		info.PayloadSize += r.Size
		d := r.Ref.(amqp.Delivery)
		if d.MessageId != "" {
			qi.MessageIDs = append(qi.MessageIDs, d.MessageId)
		}
		ts := events.FormatTimestamp(r.Timestamp)
		if i == 0 {
			qi.FirstMessageTimestamp = ts
		}
		qi.LastMessageTimestamp = ts
	}
	info.MessagesInfo = map[string]events.RabbitMQQueueInfo{s.key: qi}
	rec.RabbitMQBatchInfo = info
}

// Close closes the channel: the broker requeues every unacknowledged message.
func (s *Source) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	err := s.ch.Close()
	if cerr := s.conn.Close(); err == nil && !errors.Is(cerr, amqp.ErrClosed) {
		err = cerr
	}
	return err
}
