package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	"github.com/klambda/klambda/eventsources/access"
	"github.com/klambda/klambda/eventsources/batch"
	"github.com/klambda/klambda/eventsources/destination"
	"github.com/klambda/klambda/eventsources/filter"
	"github.com/klambda/klambda/eventsources/invokeclient"
	"github.com/klambda/klambda/eventsources/kafka"
	"github.com/klambda/klambda/eventsources/nats"
	"github.com/klambda/klambda/eventsources/poller"
	"github.com/klambda/klambda/eventsources/rabbitmq"
	"github.com/klambda/klambda/eventsources/sqs"
	"github.com/klambda/klambda/internal/netguard"
)

// ConfigError is a mapping that can't run as written (a bad filter, a missing Secret):
// Lambda's ESM_CONFIG_NOT_VALID.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// Builder turns an EventSourceMapping into a running poller's parts.
type Builder struct {
	// Reader reads Secrets and Functions.
	Reader  client.Reader
	Invoker invokeclient.Invoker
	// Region and Account form ARNs (default us-east-1, 000000000000).
	Region, Account string
	// DefaultNATSServers for NATS destinations without servers (the activator's NATS).
	DefaultNATSServers []string
	// Egress is the address policy of tenant-supplied destination endpoints (the zero
	// value refuses loopback, link-local, multicast and unspecified addresses). The
	// DefaultNATSServers are the operator's and are not checked.
	Egress netguard.Policy
	// Authorizer checks that a mapping's ServiceAccount may do what its poller does on its
	// behalf (authorize.go); Build refuses every mapping without one.
	Authorizer Authorizer
	// SQSMaxConcurrency caps the concurrent pollers of an SQS mapping that sets no
	// scalingConfig.maximumConcurrency (--sqs-max-concurrency); 0 means
	// DefaultSQSMaxConcurrency.
	SQSMaxConcurrency int
}

// Built is a poller ready to Run, and what to close after it stops.
type Built struct {
	Poller *poller.Poller
	Close  func()
}

func intOr(p *int32, def int) int {
	if p == nil {
		return def
	}
	return int(*p)
}

// FunctionARN is the ARN of the mapping's function (name[:qualifier]), or the ARN it names.
func (b *Builder) FunctionARN(functionName string) string {
	if strings.HasPrefix(functionName, "arn:") {
		return functionName
	}
	return lambdav1alpha1.FunctionARN(b.region(), b.account(), functionName)
}

// MappingARN is the ARN of the mapping with this uuid.
func (b *Builder) MappingARN(uuid string) string {
	return lambdav1alpha1.EventSourceMappingARN(b.region(), b.account(), uuid)
}

func (b *Builder) region() string {
	if b.Region == "" {
		return lambdav1alpha1.DefaultRegion
	}
	return b.Region
}

func (b *Builder) account() string {
	if b.Account == "" {
		return lambdav1alpha1.DefaultAccountID
	}
	return b.Account
}

// functionName strips an ARN or a partial ARN (…function:name[:qualifier]) to
// name[:qualifier]. "function" must be a whole field: a name ending in "function" followed
// by a qualifier (my-function:live) is no ARN.
func functionName(fn string) string {
	fields := strings.Split(fn, ":")
	for i, f := range fields {
		if rest := len(fields) - i - 1; f == "function" && (rest == 1 || rest == 2) {
			return strings.Join(fields[i+1:], ":")
		}
	}
	return fn
}

// functionTimeout reads the Function's timeout (Lambda's default 3 s when it can't).
func (b *Builder) functionTimeout(ctx context.Context, ns, fn string) time.Duration {
	name, _, _ := strings.Cut(functionName(fn), ":")
	var f lambdav1alpha1.Function
	if err := b.Reader.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &f); err != nil {
		return contract.DefaultTimeout
	}
	return f.Spec.EffectiveTimeout()
}

// functionReserved is the function's reservedConcurrentExecutions (nil when unset or the
// function is not found).
func (b *Builder) functionReserved(ctx context.Context, ns, fn string) *int32 {
	name, _, _ := strings.Cut(functionName(fn), ":")
	var f lambdav1alpha1.Function
	if err := b.Reader.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &f); err != nil {
		return nil
	}
	return f.Spec.ReservedConcurrentExecutions
}

// Build opens the source and builds the poller for esm.
func (b *Builder) Build(ctx context.Context, esm *lambdav1alpha1.EventSourceMapping, log logr.Logger) (*Built, error) {
	if b.Authorizer == nil {
		return nil, errors.New("no Authorizer: the pollers can't check the mapping's ServiceAccount")
	}
	if err := authorize(ctx, b.Authorizer, esm); err != nil {
		return nil, err
	}
	cfg, err := b.pollerConfig(esm)
	if err != nil {
		return nil, err
	}
	acc, err := access.Resolve(ctx, b.Reader, esm.Namespace, esm.Spec.SourceAccessConfigurations)
	if err != nil {
		return nil, &ConfigError{err}
	}
	var closers []func()
	closeAll := func() {
		for _, c := range closers {
			c()
		}
	}
	spec := &esm.Spec
	if spec.DestinationConfig != nil && spec.DestinationConfig.OnFailure != nil {
		dest, err := b.destination(ctx, esm.Namespace, spec.DestinationConfig.OnFailure)
		if netguard.Denied(err) {
			err = &ConfigError{err} // an endpoint the egress policy refuses: fix the mapping
		}
		if err != nil {
			return nil, err
		}
		closers = append(closers, dest.Close)
		cfg.OnFailure = dest
	}
	source, err := b.openSource(ctx, esm, &cfg, acc)
	if err != nil {
		closeAll()
		return nil, err
	}
	return &Built{Poller: poller.New(cfg, source, b.Invoker, log), Close: closeAll}, nil
}

// pollerConfig is the poller's configuration for esm: batching, filtering and the retry
// policy, with Lambda's defaults for what the mapping leaves out.
func (b *Builder) pollerConfig(esm *lambdav1alpha1.EventSourceMapping) (poller.Config, error) {
	spec := &esm.Spec
	matcher, err := compileFilter(spec)
	if err != nil {
		return poller.Config{}, &ConfigError{err}
	}
	defBatch := 100
	if spec.SQS != nil {
		defBatch = 10
	}
	cfg := poller.Config{
		Namespace: esm.Namespace, Name: esm.Name, Function: functionName(spec.FunctionName),
		FunctionARN: b.FunctionARN(spec.FunctionName),
		BatchSize:   intOr(spec.BatchSize, defBatch),
		Window:      time.Duration(intOr(spec.MaximumBatchingWindowInSeconds, 0)) * time.Second,
		Filter:      matcher,
		Policy: batch.Policy{
			MaximumRetryAttempts:       intOr(spec.MaximumRetryAttempts, -1),
			MaximumRecordAgeInSeconds:  intOr(spec.MaximumRecordAgeInSeconds, -1),
			BisectBatchOnFunctionError: spec.BisectBatchOnFunctionError != nil && *spec.BisectBatchOnFunctionError,
		},
	}
	for _, t := range spec.FunctionResponseTypes {
		if t == lambdav1alpha1.FunctionResponseTypeReportBatchItemFailures {
			cfg.Policy.ReportBatchItemFailures = true
		}
	}
	return cfg, nil
}

// compileFilter compiles the mapping's filter criteria for its kind of source.
func compileFilter(spec *lambdav1alpha1.EventSourceMappingSpec) (*filter.Matcher, error) {
	var patterns []string
	if spec.FilterCriteria != nil {
		for _, f := range spec.FilterCriteria.Filters {
			patterns = append(patterns, f.Pattern)
		}
	}
	src := filter.SourceGeneric
	switch {
	case spec.SelfManagedEventSource != nil:
		src = filter.SourceKafka
	case spec.SQS != nil:
		src = filter.SourceSQS
	case spec.RabbitMQ != nil:
		src = filter.SourceMQ
	case spec.NATSJetStream != nil:
		src = filter.SourceNATS
	}
	return filter.CompilePatterns(patterns, filter.ForSource(src))
}

// openSource opens the mapping's event source and sets the poller's lanes for it. A
// credentials Secret it can't read is a *ConfigError; any other failure says it was
// opening the source.
func (b *Builder) openSource(ctx context.Context, esm *lambdav1alpha1.EventSourceMapping, cfg *poller.Config, acc access.Access) (poller.Source, error) {
	spec := &esm.Spec
	uuid := esm.Status.UUID
	if uuid == "" {
		uuid = string(esm.UID)
	}
	var source poller.Source
	var err error
	switch {
	case spec.SelfManagedEventSource != nil:
		group := uuid
		if c := spec.SelfManagedKafkaEventSourceConfig; c != nil && c.ConsumerGroupID != "" {
			group = c.ConsumerGroupID
		}
		cfg.Lanes = intOr(spec.ParallelizationFactor, 1)
		source, err = kafka.Open(kafka.Config{
			BootstrapServers: spec.SelfManagedEventSource.Endpoints.KafkaBootstrapServers, Topic: spec.Topics[0], Group: group,
			FromStart: spec.StartingPosition == lambdav1alpha1.StartingPositionTrimHorizon, Access: acc,
			MaxPollRecords: kafkaPollRecords(cfg.BatchSize), BatchSize: cfg.BatchSize,
		})
	case spec.NATSJetStream != nil:
		cfg.Lanes = intOr(spec.ParallelizationFactor, 1)
		source, err = nats.Open(ctx, natsConfig(spec, uuid, cfg.BatchSize, acc))
	case spec.SQS != nil:
		return b.openSQS(ctx, esm, cfg)
	case spec.RabbitMQ != nil:
		cfg.Lanes = 1
		source, err = rabbitmq.Open(rabbitmq.Config{BrokerURL: spec.RabbitMQ.BrokerURL, Queue: spec.Queues[0], Access: acc, Prefetch: cfg.BatchSize * 2, FetchMax: cfg.BatchSize})
	default:
		err = &ConfigError{errors.New("no event source set")}
	}
	if err != nil {
		return nil, fmt.Errorf("opening the event source: %w", err)
	}
	return source, nil
}

// kafkaPollRecords bounds a Kafka Fetch at two batches (at least
// kafka.DefaultMaxPollRecords): the poller queues a few polls per partition, so a
// partition's next full batch is in hand when its batch in flight ends.
func kafkaPollRecords(batchSize int) int {
	return max(kafka.DefaultMaxPollRecords, 2*batchSize)
}

// natsConfig is the JetStream consumer of a NATS mapping (durable name: the uuid unless set).
func natsConfig(spec *lambdav1alpha1.EventSourceMappingSpec, uuid string, fetch int, acc access.Access) nats.Config {
	n := spec.NATSJetStream
	durable := n.DurableName
	if durable == "" {
		durable = uuid
	}
	nc := nats.Config{Servers: n.Servers, Stream: n.Stream, Subject: n.Subject, Durable: durable, FetchSize: fetch, Access: acc}
	switch spec.StartingPosition {
	case lambdav1alpha1.StartingPositionLatest:
		nc.Start = nats.Latest
	case lambdav1alpha1.StartingPositionAtTimestamp:
		nc.Start = nats.AtTimestamp
		if spec.StartingPositionTimestamp != nil {
			nc.StartTime = spec.StartingPositionTimestamp.Time
		}
	}
	return nc
}

// DefaultSQSMaxConcurrency bounds an SQS mapping's concurrent pollers when
// scalingConfig.maximumConcurrency is not set and Builder.SQSMaxConcurrency is 0 (Lambda's
// bound is 1,000; this one keeps a mapping's connections and goroutines to what a poller
// replica holds). MaxSQSConcurrency is Lambda's bound, the most either may be.
const (
	DefaultSQSMaxConcurrency = 100
	MaxSQSConcurrency        = 1000
)

// sqsMaxConcurrency is an SQS mapping's cap of concurrent pollers: its
// scalingConfig.maximumConcurrency, else def (the pollers' --sqs-max-concurrency), and
// never more than the function's reserved concurrency when that is set (> 0).
func sqsMaxConcurrency(spec *lambdav1alpha1.EventSourceMappingSpec, reserved *int32, def int) int {
	maxConc := def
	if maxConc <= 0 {
		maxConc = DefaultSQSMaxConcurrency
	}
	if spec.ScalingConfig != nil && spec.ScalingConfig.MaximumConcurrency != nil {
		maxConc = int(*spec.ScalingConfig.MaximumConcurrency)
	}
	if reserved != nil && *reserved > 0 {
		maxConc = min(maxConc, int(*reserved))
	}
	return maxConc
}

// openSQS opens an SQS queue with the mapping's credentials; Lambda starts with five
// concurrent pollers and scales up to scalingConfig.maximumConcurrency and the function's
// reserved concurrency (poller.Scaling).
func (b *Builder) openSQS(ctx context.Context, esm *lambdav1alpha1.EventSourceMapping, cfg *poller.Config) (poller.Source, error) {
	spec := &esm.Spec
	q := spec.SQS
	id, secret, token, err := access.AWSCredentials(ctx, b.Reader, esm.Namespace, q.Credentials)
	if err != nil {
		return nil, &ConfigError{err}
	}
	maxConc := sqsMaxConcurrency(spec, b.functionReserved(ctx, esm.Namespace, spec.FunctionName), b.SQSMaxConcurrency)
	cfg.Lanes = maxConc
	cfg.Scaling = &poller.Scaling{Start: 5, Max: maxConc}
	source, err := sqs.Open(sqs.Config{
		QueueURL: q.QueueURL, Endpoint: q.Endpoint, Region: q.Region,
		AccessKeyID: id, SecretAccessKey: secret, SessionToken: token,
		VisibilityTimeout: sqs.VisibilityFor(b.functionTimeout(ctx, esm.Namespace, spec.FunctionName), cfg.Window),
	})
	if err != nil {
		return nil, fmt.Errorf("opening the event source: %w", err)
	}
	return source, nil
}

func (b *Builder) destination(ctx context.Context, ns string, d *lambdav1alpha1.Destination) (destination.Sender, error) {
	switch {
	case d.Function != nil:
		name := d.Function.Name
		if d.Function.Qualifier != "" {
			name += ":" + d.Function.Qualifier
		}
		return &destination.Function{Invoker: b.Invoker, Namespace: ns, Name: name}, nil
	case d.NATS != nil:
		servers, egress := d.NATS.Servers, &b.Egress
		if len(servers) == 0 {
			servers, egress = b.DefaultNATSServers, nil // the operator's servers
		}
		if len(servers) == 0 {
			return nil, &ConfigError{errors.New("destinationConfig.onFailure.nats: no servers, and no default NATS server is configured")}
		}
		return destination.NewNATS(servers, d.NATS.Subject, egress)
	case d.Kafka != nil:
		return destination.NewKafka(d.Kafka.BootstrapServers, d.Kafka.Topic, &b.Egress)
	case d.SQS != nil:
		id, secret, token, err := access.AWSCredentials(ctx, b.Reader, ns, d.SQS.Credentials)
		if err != nil {
			return nil, &ConfigError{err}
		}
		c, err := sqs.NewClient(sqs.Config{QueueURL: d.SQS.QueueURL, Endpoint: d.SQS.Endpoint, Region: d.SQS.Region, AccessKeyID: id, SecretAccessKey: secret, SessionToken: token})
		if err != nil {
			return nil, &ConfigError{err}
		}
		return destination.NewSQS(c, d.SQS.QueueURL, &b.Egress)
	}
	return nil, &ConfigError{errors.New("destinationConfig.onFailure: no destination set")}
}
