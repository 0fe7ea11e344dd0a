// Package destination sends a mapping's on-failure records (events.OnFailureRecord, JSON) to
// the API's Destination: a NATS subject, a Kafka topic, an SQS-compatible queue or a Function
// (invoked asynchronously through the activator), in place of Lambda's SQS and SNS targets.
//
// Destinations are tenant-supplied endpoints: NewNATS, NewKafka and NewSQS dial them only
// through the egress policy (internal/netguard) — loopback, link-local (cloud metadata),
// multicast and unspecified addresses are always refused, the operator's Deny ranges too —
// checked on the address actually dialed (after DNS, on every reconnect). A nil policy
// checks nothing; it is for operator-configured endpoints (the default NATS servers).
// Each mapping holds one client for the life of its poller, closed when the poller stops
// (an edit of the mapping rebuilds it), so the number of live clients is bounded by the
// number of running mappings.
package destination

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/nats-io/nats.go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/klambda/klambda/eventsources/invokeclient"
	"github.com/klambda/klambda/internal/netguard"
)

// Sender delivers one on-failure record. Implementations are safe for concurrent use.
type Sender interface {
	Send(ctx context.Context, record []byte) error
	Close()
}

// Kafka produces records to a topic.
type Kafka struct {
	Client *kgo.Client
	Topic  string
	denied atomic.Pointer[error] // the last dial the egress policy refused
}

// dialTimeout bounds one connection attempt to a destination.
const dialTimeout = 10 * time.Second

// NewKafka makes a producer for brokers; every dial goes through egress.
func NewKafka(brokers []string, topic string, egress *netguard.Policy, opts ...kgo.Opt) (*Kafka, error) {
	if err := checkLiteral(egress, brokers...); err != nil {
		return nil, err
	}
	k := &Kafka{Topic: topic}
	dialer := egress.Dialer(dialTimeout)
	dial := func(ctx context.Context, network, host string) (net.Conn, error) {
		c, err := dialer.DialContext(ctx, network, host)
		if netguard.Denied(err) {
			k.denied.Store(&err)
		}
		return c, err
	}
	cl, err := kgo.NewClient(append(opts, kgo.SeedBrokers(brokers...), kgo.Dialer(dial))...)
	if err != nil {
		return nil, fmt.Errorf("kafka destination: %w", err)
	}
	k.Client = cl
	return k, nil
}

// Send produces synchronously.
func (k *Kafka) Send(ctx context.Context, record []byte) error {
	if err := k.Client.ProduceSync(ctx, &kgo.Record{Topic: k.Topic, Value: record}).FirstErr(); err != nil {
		// franz-go retries refused dials until the deadline; say why.
		if denied := k.denied.Load(); denied != nil {
			return fmt.Errorf("kafka destination: %w", *denied)
		}
		return err
	}
	return nil
}

// Close closes the producer.
func (k *Kafka) Close() { k.Client.Close() }

// NATS publishes to a subject; when the subject belongs to a JetStream stream, the publish
// waits for the stream's acknowledgement.
type NATS struct {
	Conn    *nats.Conn
	Subject string
}

// NewNATS connects; every dial, reconnects included, goes through egress.
func NewNATS(servers []string, subject string, egress *netguard.Policy, opts ...nats.Option) (*NATS, error) {
	for _, s := range servers {
		for _, one := range strings.Split(s, ",") {
			if u, err := url.Parse(strings.TrimSpace(one)); err == nil && u.Host != "" {
				if err := checkLiteral(egress, u.Host); err != nil {
					return nil, err
				}
			}
		}
	}
	opts = append([]nats.Option{nats.SetCustomDialer(egress.Dialer(dialTimeout))}, opts...)
	nc, err := nats.Connect(strings.Join(servers, ","), opts...)
	if err != nil {
		return nil, fmt.Errorf("nats destination: %w", err)
	}
	return &NATS{Conn: nc, Subject: subject}, nil
}

// Send publishes, through JetStream when a stream captures the subject.
func (n *NATS) Send(ctx context.Context, record []byte) error {
	js, err := n.Conn.JetStream()
	if err == nil {
		if _, err := js.Publish(n.Subject, record, nats.Context(ctx)); err == nil {
			return nil
		} else if !errors.Is(err, nats.ErrNoStreamResponse) && !errors.Is(err, nats.ErrNoResponders) {
			return err
		}
	}
	if err := n.Conn.Publish(n.Subject, record); err != nil {
		return err
	}
	return n.Conn.FlushWithContext(ctx)
}

// Close closes the connection.
func (n *NATS) Close() { n.Conn.Close() }

// SQS sends to a queue.
type SQS struct {
	Client   *sqs.Client
	QueueURL string
	close    func()
}

// NewSQS sends to queueURL with c's settings, over an HTTP client whose every dial goes
// through egress (no proxy: the policy checks the endpoint's own address).
func NewSQS(c *sqs.Client, queueURL string, egress *netguard.Policy) (*SQS, error) {
	o := c.Options()
	endpoint := aws.ToString(o.BaseEndpoint)
	if endpoint == "" {
		endpoint = queueURL
	}
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("sqs destination: endpoint %q is not a URL", endpoint)
	}
	if err := checkLiteral(egress, u.Host); err != nil {
		return nil, err
	}
	tr := &http.Transport{DialContext: egress.Dialer(dialTimeout).DialContext, ForceAttemptHTTP2: true,
		MaxIdleConnsPerHost: 4, IdleConnTimeout: 90 * time.Second, TLSHandshakeTimeout: dialTimeout}
	guarded := sqs.New(o, func(o *sqs.Options) { o.HTTPClient = &http.Client{Transport: tr} })
	return &SQS{Client: guarded, QueueURL: queueURL, close: tr.CloseIdleConnections}, nil
}

// checkLiteral refuses an endpoint whose host is an IP address the policy denies before
// any client is made (a clear error at once); names are checked when they are dialed.
func checkLiteral(egress *netguard.Policy, hostports ...string) error {
	for _, hp := range hostports {
		host := hp
		if h, _, err := net.SplitHostPort(hp); err == nil {
			host = h
		}
		if a, err := netip.ParseAddr(host); err == nil {
			if err := egress.Check(a); err != nil {
				return fmt.Errorf("destination endpoint %s: %w", hp, err)
			}
		}
	}
	return nil
}

// Send sends one message.
func (s *SQS) Send(ctx context.Context, record []byte) error {
	_, err := s.Client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(s.QueueURL), MessageBody: aws.String(string(record))})
	return err
}

// Close drops the idle connections of a client made by NewSQS.
func (s *SQS) Close() {
	if s.close != nil {
		s.close()
	}
}

// Function invokes a function asynchronously (InvocationType Event) with the record.
type Function struct {
	Invoker   invokeclient.Invoker
	Namespace string
	Name      string // name or name:qualifier
}

// Send invokes.
func (f *Function) Send(ctx context.Context, record []byte) error {
	resp, err := f.Invoker.Invoke(ctx, invokeclient.Request{Namespace: f.Namespace, FunctionName: f.Name, Payload: record, Async: true})
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		return fmt.Errorf("invoking %s: status %d", f.Name, resp.StatusCode)
	}
	return nil
}

// Close does nothing.
func (f *Function) Close() {}
