package async

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/twmb/franz-go/pkg/kgo"

	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	"github.com/klambda/klambda/internal/netguard"
)

// SecretGetter reads a Secret's data (SQS credentials); kubeconfig.go has one over a
// controller-runtime client.
type SecretGetter func(ctx context.Context, namespace, name string) (map[string][]byte, error)

// Letter is what one destination receives: an invocation record, or for a dead-letter
// target the raw event with Lambda's attributes.
type Letter struct {
	Body []byte
	// DeadLetter adds the attributes RequestID (String), ErrorCode (Number) and
	// ErrorMessage (String): SQS message attributes, NATS headers, Kafka record headers.
	DeadLetter   bool
	RequestID    string
	ErrorCode    int
	ErrorMessage string
}

// deadLetterMessageLimit is Lambda's: the first 1 KB of the error message.
const deadLetterMessageLimit = 1024

// Deliverer sends letters to Function, NATS, Kafka and SQS destinations. Clients of
// tenant-supplied endpoints are kept in a bounded cache (DestinationOptions.MaxClients,
// closed after IdleTimeout without use), and every connection they make is checked against
// the egress policy (DestinationOptions.Egress) on the address actually dialed.
type Deliverer struct {
	// FunctionDestinations, when set, refuses a function destination the source function's
	// ServiceAccount may not invoke (destauth.go).
	FunctionDestinations *FunctionDestinationAuthorizer

	queue   *Queue
	secrets SecretGetter
	timeout time.Duration
	egress  netguard.Policy
	clients *clientCache

	// local is the connection NATS destinations without servers publish on (SetLocalNATS).
	local   *nats.Conn
	localJS bool
}

// DestinationOptions bound the destination clients and say where they may connect.
type DestinationOptions struct {
	// Egress is the address policy of tenant-supplied endpoints (NATS servers, Kafka
	// brokers, SQS endpoints). The zero value refuses loopback, link-local (cloud metadata),
	// multicast and unspecified addresses; the operator adds Deny (the cluster's CIDRs) and
	// Allow ranges. AllowLoopback is for tests and single-node development.
	Egress netguard.Policy
	// MaxClients is how many destination clients are kept at most (default 128); the least
	// recently used is closed to make room.
	MaxClients int
	// IdleTimeout closes a client unused this long (default 5m).
	IdleTimeout time.Duration
}

// Defaults of DestinationOptions.
const (
	DefaultMaxDestinationClients  = 128
	DefaultDestinationIdleTimeout = 5 * time.Minute
)

// NewDeliverer sends Function letters into q. secrets may be nil when no SQS destination
// names credentials. NATS destinations without servers need SetLocalNATS. Without options,
// the default bounds and the strict egress policy apply.
func NewDeliverer(q *Queue, secrets SecretGetter, opts ...DestinationOptions) *Deliverer {
	var o DestinationOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	if o.MaxClients <= 0 {
		o.MaxClients = DefaultMaxDestinationClients
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultDestinationIdleTimeout
	}
	return &Deliverer{queue: q, secrets: secrets, timeout: 10 * time.Second, egress: o.Egress,
		clients: newClientCache(o.MaxClients, o.IdleTimeout)}
}

// ErrNoLocalNATS is a NATS destination without servers on an activator that has no
// connection for them (an external NATS without a destinations identity).
var ErrNoLocalNATS = errors.New("NATS destination without servers: this activator has no NATS identity for tenants' destinations (activator.async.nats.destinations); name the destination's servers")

// SetLocalNATS sets the connection NATS destinations without servers are published on. It
// is never the queue's (issue #15): the embedded server's destinations account
// (Server.ConnectDestinations, which has no JetStream: jetStream false), or a separate
// identity on an external NATS (jetStream true: a stream capturing the subject gets a
// stored publish). Call it before delivering.
func (d *Deliverer) SetLocalNATS(nc *nats.Conn, jetStream bool) {
	d.local, d.localJS = nc, jetStream
}

// Deliver sends one letter once.
func (d *Deliverer) Deliver(ctx context.Context, namespace string, dest *lambdav1alpha1.Destination, l Letter) error {
	switch {
	case dest == nil:
		return errors.New("no destination")
	case dest.Function != nil:
		_, err := d.queue.enqueue(ctx, Event{
			Namespace: namespace, Function: dest.Function.Name, Qualifier: dest.Function.Qualifier, Payload: l.Body,
		})
		return err
	case dest.NATS != nil:
		return d.deliverNATS(ctx, dest.NATS, l)
	case dest.Kafka != nil:
		return d.deliverKafka(ctx, dest.Kafka, l)
	case dest.SQS != nil:
		return d.deliverSQS(ctx, namespace, dest.SQS, l)
	}
	return errors.New("destination names no target")
}

// Close closes the clients Deliver opened (those in use once their delivery ends).
func (d *Deliverer) Close() { d.clients.purge() }

func (d *Deliverer) deliverNATS(ctx context.Context, dest *lambdav1alpha1.NATSDestination, l Letter) error {
	// Checked again here: a stale object, or one written before the schema refused it.
	if err := lambdav1alpha1.ValidateNATSDestinationSubject(dest.Subject); err != nil {
		return err
	}
	nc, lookup := d.local, d.localJS
	if len(dest.Servers) > 0 {
		c, release, err := d.natsConn(dest.Servers)
		if err != nil {
			return err
		}
		defer release()
		nc, lookup = c, true
	} else if nc == nil {
		return ErrNoLocalNATS
	}
	m := nats.NewMsg(dest.Subject)
	m.Data = l.Body
	if l.DeadLetter {
		m.Header.Set("RequestID", headerValue(l.RequestID))
		m.Header.Set("ErrorCode", strconv.Itoa(l.ErrorCode))
		m.Header.Set("ErrorMessage", headerValue(l.ErrorMessage))
	}
	// A subject a stream captures gets JetStream's stored acknowledgement; a plain subject
	// gets the message once the server has it. (A JetStream publish to a plain subject
	// would reach its subscribers and then wait for an ack nobody sends: a false failure,
	// and a copy per retry.)
	if lookup {
		js, err := jetstream.New(nc)
		if err != nil {
			return err
		}
		// Bounded: a user denied the JetStream API gets no answer, only a permissions
		// error on the side, and the plain publish below still needs time.
		lctx, cancel := context.WithTimeout(ctx, streamLookupTimeout)
		_, err = js.StreamNameBySubject(lctx, dest.Subject)
		cancel()
		if err == nil {
			_, err = js.PublishMsg(ctx, m)
			return err
		}
	}
	// No stream (or no JetStream on that server, or the lookup failed: a stream still
	// captures a plain publish).
	if err := nc.PublishMsg(m); err != nil {
		return err
	}
	return nc.FlushWithContext(ctx)
}

const streamLookupTimeout = 2 * time.Second

func (d *Deliverer) natsConn(servers []string) (*nats.Conn, func(), error) {
	for _, s := range servers {
		for _, one := range strings.Split(s, ",") {
			if u, err := url.Parse(strings.TrimSpace(one)); err == nil && u.Host != "" {
				if err := d.checkLiteral(u.Host); err != nil {
					return nil, nil, err
				}
			}
		}
	}
	key := strings.Join(servers, ",")
	c, release, err := d.clients.get("nats\x00"+key, func() (any, func(), error) {
		// Every dial, reconnects included, goes through the egress policy.
		c, err := nats.Connect(key, nats.Name("klambda-destinations"), nats.Timeout(d.timeout), nats.MaxReconnects(-1),
			nats.SetCustomDialer(d.egress.Dialer(d.timeout)))
		if err != nil {
			return nil, nil, fmt.Errorf("connecting to NATS %s: %w", key, err)
		}
		return c, c.Close, nil
	})
	if err != nil {
		return nil, nil, err
	}
	return c.(*nats.Conn), release, nil
}

func (d *Deliverer) deliverKafka(ctx context.Context, dest *lambdav1alpha1.KafkaDestination, l Letter) error {
	if err := d.checkLiteral(dest.BootstrapServers...); err != nil {
		return err
	}
	kc, release, err := d.kafkaClient(dest.BootstrapServers)
	if err != nil {
		return err
	}
	defer release()
	c := kc.Client
	r := &kgo.Record{Topic: dest.Topic, Value: l.Body}
	if l.RequestID != "" {
		r.Key = []byte(l.RequestID)
	}
	if l.DeadLetter {
		r.Headers = []kgo.RecordHeader{
			{Key: "RequestID", Value: []byte(l.RequestID)},
			{Key: "ErrorCode", Value: []byte(strconv.Itoa(l.ErrorCode))},
			{Key: "ErrorMessage", Value: []byte(l.ErrorMessage)},
		}
	}
	if err := c.ProduceSync(ctx, r).FirstErr(); err != nil {
		// franz-go retries refused dials until the deadline; say why.
		if denied := kc.denied.Load(); denied != nil {
			return fmt.Errorf("kafka %s: %w", strings.Join(dest.BootstrapServers, ","), *denied)
		}
		return err
	}
	return nil
}

// kafkaClient is a producer and the last refusal of its dials by the egress policy.
type kafkaClient struct {
	*kgo.Client
	denied atomic.Pointer[error]
}

func (d *Deliverer) kafkaClient(brokers []string) (*kafkaClient, func(), error) {
	key := strings.Join(brokers, ",")
	c, release, err := d.clients.get("kafka\x00"+key, func() (any, func(), error) {
		kc := &kafkaClient{}
		dialer := d.egress.Dialer(d.timeout)
		dial := func(ctx context.Context, network, host string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, network, host)
			if netguard.Denied(err) {
				kc.denied.Store(&err)
			}
			return c, err
		}
		var err error
		kc.Client, err = kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ClientID("klambda-destinations"),
			kgo.RecordDeliveryTimeout(d.timeout), kgo.ProducerLinger(0), kgo.Dialer(dial))
		if err != nil {
			return nil, nil, fmt.Errorf("creating Kafka client for %s: %w", key, err)
		}
		return kc, kc.Close, nil
	})
	if err != nil {
		return nil, nil, err
	}
	return c.(*kafkaClient), release, nil
}

// checkLiteral refuses an endpoint whose host is an IP address the egress policy denies
// before any client is made (a clear error at once); names are checked when they are
// dialed, on every address they resolve to.
func (d *Deliverer) checkLiteral(hostports ...string) error {
	for _, hp := range hostports {
		host := hp
		if h, _, err := net.SplitHostPort(hp); err == nil {
			host = h
		}
		if a, err := netip.ParseAddr(host); err == nil {
			if err := d.egress.Check(a); err != nil {
				return fmt.Errorf("destination endpoint %s: %w", hp, err)
			}
		}
	}
	return nil
}

func (d *Deliverer) deliverSQS(ctx context.Context, namespace string, dest *lambdav1alpha1.SQSQueue, l Letter) error {
	c, release, err := d.sqsClient(ctx, namespace, dest)
	if err != nil {
		return err
	}
	defer release()
	in := &sqs.SendMessageInput{QueueUrl: aws.String(dest.QueueURL), MessageBody: aws.String(string(l.Body))}
	if l.DeadLetter {
		in.MessageAttributes = map[string]sqstypes.MessageAttributeValue{
			"RequestID":    {DataType: aws.String("String"), StringValue: aws.String(l.RequestID)},
			"ErrorCode":    {DataType: aws.String("Number"), StringValue: aws.String(strconv.Itoa(l.ErrorCode))},
			"ErrorMessage": {DataType: aws.String("String"), StringValue: aws.String(sqsAttribute(l.ErrorMessage))},
		}
	}
	_, err = c.SendMessage(ctx, in)
	return err
}

func (d *Deliverer) sqsClient(ctx context.Context, namespace string, dest *lambdav1alpha1.SQSQueue) (*sqs.Client, func(), error) {
	endpoint := dest.Endpoint
	if endpoint == "" {
		u, err := url.Parse(dest.QueueURL)
		if err != nil {
			return nil, nil, fmt.Errorf("SQS queue URL %q: %w", dest.QueueURL, err)
		}
		endpoint = u.Scheme + "://" + u.Host
	}
	if u, err := url.Parse(endpoint); err != nil || u.Host == "" {
		return nil, nil, fmt.Errorf("SQS endpoint %q is not a URL", endpoint)
	} else if err := d.checkLiteral(u.Host); err != nil {
		return nil, nil, err
	}
	region := dest.Region
	if region == "" {
		region = "us-east-1"
	}
	var creds aws.CredentialsProvider = aws.AnonymousCredentials{}
	credKey := ""
	if dest.Credentials != nil {
		if d.secrets == nil {
			return nil, nil, errors.New("SQS credentials named but no Secret reader configured")
		}
		data, err := d.secrets(ctx, namespace, dest.Credentials.Name)
		if err != nil {
			return nil, nil, fmt.Errorf("reading SQS credentials Secret %s/%s: %w", namespace, dest.Credentials.Name, err)
		}
		id, secret, token := string(data["AWS_ACCESS_KEY_ID"]), string(data["AWS_SECRET_ACCESS_KEY"]), string(data["AWS_SESSION_TOKEN"])
		creds = credentials.NewStaticCredentialsProvider(id, secret, token)
		credKey = id + "\x00" + secret + "\x00" + token
	}
	// The key holds the credentials only as a hash.
	sum := sha256.Sum256([]byte(endpoint + "\x00" + region + "\x00" + credKey))
	c, release, err := d.clients.get("sqs\x00"+hex.EncodeToString(sum[:]), func() (any, func(), error) {
		// No proxy: the policy checks the address of the endpoint itself.
		tr := &http.Transport{DialContext: d.egress.Dialer(d.timeout).DialContext, ForceAttemptHTTP2: true,
			MaxIdleConnsPerHost: 4, IdleConnTimeout: 90 * time.Second, TLSHandshakeTimeout: d.timeout}
		c := sqs.New(sqs.Options{
			Region: region, BaseEndpoint: aws.String(endpoint), Credentials: creds,
			HTTPClient:       &http.Client{Transport: tr},
			RetryMaxAttempts: 1, // the worker retries, bounded
		})
		return c, tr.CloseIdleConnections, nil
	})
	if err != nil {
		return nil, nil, err
	}
	return c.(*sqs.Client), release, nil
}

// headerValue keeps a NATS header value on one line.
func headerValue(s string) string {
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
}

func nonEmpty(s string) string {
	if s == "" {
		return " " // SQS rejects an empty attribute value
	}
	return s
}

// sqsAttribute is s as a String message attribute SQS accepts: characters SQS refuses
// (control characters other than tab, LF and CR; U+FFFE, U+FFFF) become U+FFFD, and an
// empty value a space. A function's error message is the tenant's; a refused attribute
// would fail the dead letter's delivery.
func sqsAttribute(s string) string {
	s = strings.Map(func(r rune) rune {
		switch {
		case r == 0x9, r == 0xA, r == 0xD, r >= 0x20 && r <= 0xD7FF, r >= 0xE000 && r <= 0xFFFD, r >= 0x10000 && r <= 0x10FFFF:
			return r
		}
		return utf8.RuneError
	}, s)
	return nonEmpty(s)
}
