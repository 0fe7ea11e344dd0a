package async

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/twmb/franz-go/pkg/kgo"

	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
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

// Deliverer sends letters to Function, NATS, Kafka and SQS destinations, keeping one client
// per distinct target endpoint.
type Deliverer struct {
	queue   *Queue
	secrets SecretGetter
	timeout time.Duration

	// local is the connection NATS destinations without servers publish on (SetLocalNATS).
	local   *nats.Conn
	localJS bool

	mu    sync.Mutex
	nats  map[string]*nats.Conn
	kafka map[string]*kgo.Client
	sqs   map[string]*sqs.Client
}

// NewDeliverer sends Function letters into q. secrets may be nil when no SQS destination
// names credentials. NATS destinations without servers need SetLocalNATS.
func NewDeliverer(q *Queue, secrets SecretGetter) *Deliverer {
	return &Deliverer{
		queue: q, secrets: secrets, timeout: 10 * time.Second,
		nats: map[string]*nats.Conn{}, kafka: map[string]*kgo.Client{}, sqs: map[string]*sqs.Client{},
	}
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

// Close closes the clients Deliver opened.
func (d *Deliverer) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.nats {
		c.Close()
	}
	for _, c := range d.kafka {
		c.Close()
	}
	d.nats, d.kafka, d.sqs = map[string]*nats.Conn{}, map[string]*kgo.Client{}, map[string]*sqs.Client{}
}

func (d *Deliverer) deliverNATS(ctx context.Context, dest *lambdav1alpha1.NATSDestination, l Letter) error {
	// Checked again here: a stale object, or one written before the schema refused it.
	if err := lambdav1alpha1.ValidateNATSDestinationSubject(dest.Subject); err != nil {
		return err
	}
	nc, lookup := d.local, d.localJS
	if len(dest.Servers) > 0 {
		var err error
		if nc, err = d.natsConn(dest.Servers); err != nil {
			return err
		}
		lookup = true
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

func (d *Deliverer) natsConn(servers []string) (*nats.Conn, error) {
	key := strings.Join(servers, ",")
	d.mu.Lock()
	defer d.mu.Unlock()
	if c, ok := d.nats[key]; ok && !c.IsClosed() {
		return c, nil
	}
	c, err := nats.Connect(key, nats.Name("klambda-destinations"), nats.Timeout(d.timeout), nats.MaxReconnects(-1))
	if err != nil {
		return nil, fmt.Errorf("connecting to NATS %s: %w", key, err)
	}
	d.nats[key] = c
	return c, nil
}

func (d *Deliverer) deliverKafka(ctx context.Context, dest *lambdav1alpha1.KafkaDestination, l Letter) error {
	c, err := d.kafkaClient(dest.BootstrapServers)
	if err != nil {
		return err
	}
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
	return c.ProduceSync(ctx, r).FirstErr()
}

func (d *Deliverer) kafkaClient(brokers []string) (*kgo.Client, error) {
	key := strings.Join(brokers, ",")
	d.mu.Lock()
	defer d.mu.Unlock()
	if c, ok := d.kafka[key]; ok {
		return c, nil
	}
	c, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ClientID("klambda-destinations"),
		kgo.RecordDeliveryTimeout(d.timeout), kgo.ProducerLinger(0))
	if err != nil {
		return nil, fmt.Errorf("creating Kafka client for %s: %w", key, err)
	}
	d.kafka[key] = c
	return c, nil
}

func (d *Deliverer) deliverSQS(ctx context.Context, namespace string, dest *lambdav1alpha1.SQSQueue, l Letter) error {
	c, err := d.sqsClient(ctx, namespace, dest)
	if err != nil {
		return err
	}
	in := &sqs.SendMessageInput{QueueUrl: aws.String(dest.QueueURL), MessageBody: aws.String(string(l.Body))}
	if l.DeadLetter {
		in.MessageAttributes = map[string]sqstypes.MessageAttributeValue{
			"RequestID":    {DataType: aws.String("String"), StringValue: aws.String(l.RequestID)},
			"ErrorCode":    {DataType: aws.String("Number"), StringValue: aws.String(strconv.Itoa(l.ErrorCode))},
			"ErrorMessage": {DataType: aws.String("String"), StringValue: aws.String(nonEmpty(l.ErrorMessage))},
		}
	}
	_, err = c.SendMessage(ctx, in)
	return err
}

func (d *Deliverer) sqsClient(ctx context.Context, namespace string, dest *lambdav1alpha1.SQSQueue) (*sqs.Client, error) {
	endpoint := dest.Endpoint
	if endpoint == "" {
		u, err := url.Parse(dest.QueueURL)
		if err != nil {
			return nil, fmt.Errorf("SQS queue URL %q: %w", dest.QueueURL, err)
		}
		endpoint = u.Scheme + "://" + u.Host
	}
	region := dest.Region
	if region == "" {
		region = "us-east-1"
	}
	var creds aws.CredentialsProvider = aws.AnonymousCredentials{}
	credKey := ""
	if dest.Credentials != nil {
		if d.secrets == nil {
			return nil, errors.New("SQS credentials named but no Secret reader configured")
		}
		data, err := d.secrets(ctx, namespace, dest.Credentials.Name)
		if err != nil {
			return nil, fmt.Errorf("reading SQS credentials Secret %s/%s: %w", namespace, dest.Credentials.Name, err)
		}
		id, secret, token := string(data["AWS_ACCESS_KEY_ID"]), string(data["AWS_SECRET_ACCESS_KEY"]), string(data["AWS_SESSION_TOKEN"])
		creds = credentials.NewStaticCredentialsProvider(id, secret, token)
		credKey = id + "\x00" + secret + "\x00" + token
	}
	key := endpoint + "\x00" + region + "\x00" + credKey
	d.mu.Lock()
	defer d.mu.Unlock()
	if c, ok := d.sqs[key]; ok {
		return c, nil
	}
	c := sqs.New(sqs.Options{
		Region: region, BaseEndpoint: aws.String(endpoint), Credentials: creds,
		RetryMaxAttempts: 1, // the worker retries, bounded
	})
	d.sqs[key] = c
	return c, nil
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
