package controlapi

import (
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/activator/invoke"
	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// Event source mappings are EventSourceMapping objects. Through this API a mapping reads
// a Kafka cluster (SelfManagedEventSource) or an SQS queue (EventSourceArn
// arn:aws:sqs:<region>:<account>:<queue>, read at https://sqs.<region>.amazonaws.com/<account>/<queue>);
// the other sources klambda reads (RabbitMQ, NATS JetStream) need a broker URL or servers
// an ARN does not carry, and are set with kubectl. The UUID is the object's metadata.uid
// (the CRD's status.uuid): stable for the object's life and never reused, as Lambda's.

// esmInput is what CreateEventSourceMapping and UpdateEventSourceMapping take. Members a
// list may clear are pointers, so that an empty list is told from one left out.
type esmInput struct {
	FunctionName                      *string
	EventSourceArn                    *string
	Enabled                           *bool
	BatchSize                         *int32
	MaximumBatchingWindowInSeconds    *int32
	StartingPosition                  types.EventSourcePosition
	StartingPositionTimestamp         *float64
	ParallelizationFactor             *int32
	MaximumRecordAgeInSeconds         *int32
	MaximumRetryAttempts              *int32
	BisectBatchOnFunctionError        *bool
	DestinationConfig                 *types.DestinationConfig
	TumblingWindowInSeconds           *int32
	FunctionResponseTypes             *[]types.FunctionResponseType
	Topics                            []string
	Queues                            []string
	FilterCriteria                    *types.FilterCriteria
	ScalingConfig                     *types.ScalingConfig
	SourceAccessConfigurations        *[]types.SourceAccessConfiguration
	SelfManagedEventSource            *types.SelfManagedEventSource
	SelfManagedKafkaEventSourceConfig *types.SelfManagedKafkaEventSourceConfig

	// Members klambda has no equivalent for: refused when given.
	AmazonManagedKafkaEventSourceConfig json.RawMessage
	DocumentDBEventSourceConfig         json.RawMessage
	KMSKeyArn                           json.RawMessage
	LoggingConfig                       json.RawMessage
	MetricsConfig                       json.RawMessage
	ProvisionedPollerConfig             json.RawMessage
	Tags                                json.RawMessage
}

func given(raw json.RawMessage) bool { return len(raw) > 0 && string(raw) != "null" }

// refused names the members given that klambda does not take.
func (in *esmInput) refused() *invoke.Error {
	for name, raw := range map[string]json.RawMessage{"AmazonManagedKafkaEventSourceConfig": in.AmazonManagedKafkaEventSourceConfig,
		"DocumentDBEventSourceConfig": in.DocumentDBEventSourceConfig, "KMSKeyArn": in.KMSKeyArn, "LoggingConfig": in.LoggingConfig,
		"MetricsConfig": in.MetricsConfig, "ProvisionedPollerConfig": in.ProvisionedPollerConfig, "Tags": in.Tags} {
		if given(raw) {
			return errInvalid("klambda's event source mappings do not support " + name)
		}
	}
	if k := in.SelfManagedKafkaEventSourceConfig; k != nil && (k.SchemaRegistryConfig != nil || k.ConsumptionMode != "") {
		return errInvalid("klambda's Kafka event source mappings do not support SchemaRegistryConfig or ConsumptionMode")
	}
	return nil
}

// sqsQueueURL is the AWS queue URL of an SQS queue ARN, and its region.
func sqsQueueURL(arn string) (url, region string, ok bool) {
	p := strings.Split(arn, ":")
	if len(p) != 6 || p[0] != "arn" || p[2] != "sqs" || p[3] == "" || p[4] == "" || p[5] == "" {
		return "", "", false
	}
	return "https://sqs." + p[3] + ".amazonaws.com/" + p[4] + "/" + p[5], p[3], true
}

// sqsQueueARN is the ARN of an AWS queue URL (https://sqs.<region>.amazonaws.com/<account>/<queue>).
func sqsQueueARN(url string) string {
	rest, ok := strings.CutPrefix(url, "https://sqs.")
	if !ok {
		return ""
	}
	host, path, ok := strings.Cut(rest, "/")
	region, ok2 := strings.CutSuffix(host, ".amazonaws.com")
	acct, queue, ok3 := strings.Cut(path, "/")
	if !ok || !ok2 || !ok3 || queue == "" || strings.Contains(queue, "/") {
		return ""
	}
	return "arn:aws:sqs:" + region + ":" + acct + ":" + queue
}

// secretsManagerPrefix: a SourceAccessConfiguration URI arn:aws:secretsmanager:…:secret:<name>
// names the Secret <name> of the namespace.
const secretsManagerPrefix = "arn:aws:secretsmanager:"

func (h *Handler) secretURI(name string) string {
	return secretsManagerPrefix + h.Region + ":" + h.AccountID + ":secret:" + name
}

func sourceAccess(in []types.SourceAccessConfiguration) ([]lambdav1alpha1.SourceAccessConfiguration, *invoke.Error) {
	var out []lambdav1alpha1.SourceAccessConfiguration
	for _, s := range in {
		uri := aws.ToString(s.URI)
		switch s.Type {
		case types.SourceAccessTypeVpcSubnet, types.SourceAccessTypeVpcSecurityGroup:
			return nil, errInvalid("klambda does not take " + string(s.Type) + ": pollers run in the cluster's network")
		case types.SourceAccessTypeVirtualHost:
			out = append(out, lambdav1alpha1.SourceAccessConfiguration{Type: lambdav1alpha1.SourceAccessType(s.Type), URI: uri})
			continue
		}
		name := uri
		if strings.HasPrefix(uri, secretsManagerPrefix) {
			_, name, _ = strings.Cut(uri, ":secret:")
		}
		if !validDNSSubdomain(name) {
			return nil, errInvalid("klambda reads source credentials from a Secret of the namespace: give its name, or arn:aws:secretsmanager:<region>:<account>:secret:<name>, as the URI of " + string(s.Type) + " (got " + uri + ")")
		}
		out = append(out, lambdav1alpha1.SourceAccessConfiguration{Type: lambdav1alpha1.SourceAccessType(s.Type), SecretRef: &lambdav1alpha1.SecretReference{Name: name}})
	}
	return out, nil
}

// applyCommon writes the members Create and Update share into spec.
func (in *esmInput) applyCommon(spec *lambdav1alpha1.EventSourceMappingSpec) *invoke.Error {
	if in.Enabled != nil {
		spec.Enabled = in.Enabled
	}
	for _, p := range []struct {
		from *int32
		to   **int32
	}{{in.BatchSize, &spec.BatchSize}, {in.MaximumBatchingWindowInSeconds, &spec.MaximumBatchingWindowInSeconds},
		{in.ParallelizationFactor, &spec.ParallelizationFactor}, {in.MaximumRecordAgeInSeconds, &spec.MaximumRecordAgeInSeconds},
		{in.MaximumRetryAttempts, &spec.MaximumRetryAttempts}, {in.TumblingWindowInSeconds, &spec.TumblingWindowInSeconds}} {
		if p.from != nil {
			*p.to = p.from
		}
	}
	if in.BisectBatchOnFunctionError != nil {
		spec.BisectBatchOnFunctionError = in.BisectBatchOnFunctionError
	}
	if dc := in.DestinationConfig; dc != nil {
		if dc.OnSuccess != nil && aws.ToString(dc.OnSuccess.Destination) != "" {
			return errInvalid("klambda's event source mappings send only the records of discarded batches (DestinationConfig.OnFailure), not OnSuccess")
		}
		spec.DestinationConfig = nil
		if dc.OnFailure != nil {
			d, e := destination(aws.ToString(dc.OnFailure.Destination))
			if e != nil {
				return e
			}
			if d != nil {
				spec.DestinationConfig = &lambdav1alpha1.EventSourceMappingDestinationConfig{OnFailure: d}
			}
		}
	}
	if in.FunctionResponseTypes != nil {
		spec.FunctionResponseTypes = nil
		for _, t := range *in.FunctionResponseTypes {
			spec.FunctionResponseTypes = append(spec.FunctionResponseTypes, lambdav1alpha1.FunctionResponseType(t))
		}
	}
	if fc := in.FilterCriteria; fc != nil {
		spec.FilterCriteria = nil
		if len(fc.Filters) > 0 {
			spec.FilterCriteria = &lambdav1alpha1.FilterCriteria{}
			for _, f := range fc.Filters {
				spec.FilterCriteria.Filters = append(spec.FilterCriteria.Filters, lambdav1alpha1.Filter{Pattern: aws.ToString(f.Pattern)})
			}
		}
	}
	if sc := in.ScalingConfig; sc != nil {
		spec.ScalingConfig = nil
		if sc.MaximumConcurrency != nil {
			spec.ScalingConfig = &lambdav1alpha1.ScalingConfig{MaximumConcurrency: sc.MaximumConcurrency}
		}
	}
	if in.SourceAccessConfigurations != nil {
		sa, e := sourceAccess(*in.SourceAccessConfigurations)
		if e != nil {
			return e
		}
		spec.SourceAccessConfigurations = sa
	}
	if k := in.SelfManagedKafkaEventSourceConfig; k != nil {
		spec.SelfManagedKafkaEventSourceConfig = nil
		if k.ConsumerGroupId != nil {
			spec.SelfManagedKafkaEventSourceConfig = &lambdav1alpha1.SelfManagedKafkaEventSourceConfig{ConsumerGroupID: *k.ConsumerGroupId}
		}
	}
	return nil
}

// applySource writes the source (create only): Kafka or SQS.
func (in *esmInput) applySource(spec *lambdav1alpha1.EventSourceMappingSpec) *invoke.Error {
	arn := aws.ToString(in.EventSourceArn)
	switch {
	case arn != "" && in.SelfManagedEventSource != nil:
		return errInvalid("Please specify either an EventSourceArn or a SelfManagedEventSource, not both.")
	case in.SelfManagedEventSource != nil:
		for k := range in.SelfManagedEventSource.Endpoints {
			if k != "KAFKA_BOOTSTRAP_SERVERS" {
				return errInvalid("SelfManagedEventSource.Endpoints takes KAFKA_BOOTSTRAP_SERVERS only (got " + k + ")")
			}
		}
		spec.SelfManagedEventSource = &lambdav1alpha1.SelfManagedEventSource{Endpoints: lambdav1alpha1.KafkaEndpoints{
			KafkaBootstrapServers: in.SelfManagedEventSource.Endpoints["KAFKA_BOOTSTRAP_SERVERS"]}}
		spec.Topics = in.Topics
	case arn == "":
		return errInvalid("Please specify an EventSourceArn (an SQS queue) or a SelfManagedEventSource (a Kafka cluster).")
	default:
		url, region, ok := sqsQueueURL(arn)
		if !ok {
			return errInvalid("klambda's Lambda API maps SQS queues (arn:aws:sqs:<region>:<account>:<queue>) and Kafka clusters (SelfManagedEventSource); " +
				"RabbitMQ and NATS JetStream sources are EventSourceMappings set with kubectl, and Kinesis, DynamoDB, MSK, Amazon MQ and DocumentDB are not supported (got " + arn + ")")
		}
		spec.SQS = &lambdav1alpha1.SQSQueue{QueueURL: url, Region: region}
		if len(in.Topics) > 0 {
			spec.Topics = in.Topics // the schema refuses topics without Kafka
		}
	}
	if len(in.Queues) > 0 {
		return errInvalid("Queues is for Amazon MQ sources, which klambda does not map (RabbitMQ sources are EventSourceMappings set with kubectl)")
	}
	spec.StartingPosition = lambdav1alpha1.StartingPosition(in.StartingPosition)
	if in.StartingPositionTimestamp != nil {
		sec := *in.StartingPositionTimestamp
		t := metav1.NewTime(time.UnixMilli(int64(sec * 1000)))
		spec.StartingPositionTimestamp = &t
	}
	return nil
}

// esmFunction reads FunctionName: the function (and version or alias) must exist.
func (c *call) esmFunction(fn string) (string, *invoke.Error) {
	name, qual, e := parseFunctionName(fn)
	if e != nil {
		return "", e
	}
	if _, _, e := c.resolve(name, qual); e != nil {
		return "", e
	}
	if qual != "" {
		return name + ":" + qual, nil
	}
	return name, nil
}

// esmState is Lambda's State of the mapping: Creating before the controller wrote one,
// Updating (Enabling, Disabling) while it has not taken the latest change in.
func esmState(m *lambdav1alpha1.EventSourceMapping) string {
	st := m.Status.State
	switch {
	case m.DeletionTimestamp != nil:
		return string(lambdav1alpha1.EventSourceMappingDeleting)
	case st == "":
		return string(lambdav1alpha1.EventSourceMappingCreating)
	case m.Status.ObservedGeneration < m.Generation:
		enabled := m.Spec.Enabled == nil || *m.Spec.Enabled
		switch {
		case enabled && st == lambdav1alpha1.EventSourceMappingDisabled:
			return string(lambdav1alpha1.EventSourceMappingEnabling)
		case !enabled && st == lambdav1alpha1.EventSourceMappingEnabled:
			return string(lambdav1alpha1.EventSourceMappingDisabling)
		}
		return string(lambdav1alpha1.EventSourceMappingUpdating)
	}
	return string(st)
}

// esmFunctionARN is the ARN of the spec's functionName (a name, name:qualifier or an ARN).
func (h *Handler) esmFunctionARN(fn string) string {
	name, qual, e := parseFunctionName(fn)
	if e != nil {
		return fn
	}
	return h.arn(name, qual)
}

// esmOutput is Lambda's EventSourceMappingConfiguration of m.
func (h *Handler) esmOutput(m *lambdav1alpha1.EventSourceMapping) (map[string]any, *invoke.Error) {
	s := &m.Spec
	uuid := string(m.UID)
	out := types.EventSourceMappingConfiguration{
		UUID:                           aws.String(uuid),
		EventSourceMappingArn:          aws.String(contract.EventSourceMappingARN(h.Region, h.AccountID, uuid)),
		FunctionArn:                    aws.String(h.esmFunctionARN(s.FunctionName)),
		State:                          aws.String(esmState(m)),
		StateTransitionReason:          strOrNil(m.Status.StateTransitionReason),
		LastProcessingResult:           strOrNil(m.Status.LastProcessingResult),
		BatchSize:                      s.BatchSize,
		MaximumBatchingWindowInSeconds: s.MaximumBatchingWindowInSeconds,
		StartingPosition:               types.EventSourcePosition(s.StartingPosition),
		ParallelizationFactor:          s.ParallelizationFactor,
		MaximumRecordAgeInSeconds:      s.MaximumRecordAgeInSeconds,
		MaximumRetryAttempts:           s.MaximumRetryAttempts,
		BisectBatchOnFunctionError:     s.BisectBatchOnFunctionError,
		TumblingWindowInSeconds:        s.TumblingWindowInSeconds,
		Topics:                         s.Topics,
		Queues:                         s.Queues,
	}
	if out.BatchSize == nil {
		def := int32(100)
		if s.SQS != nil {
			def = 10
		}
		out.BatchSize = &def
	}
	if out.MaximumBatchingWindowInSeconds == nil {
		out.MaximumBatchingWindowInSeconds = aws.Int32(0)
	}
	switch {
	case s.SQS != nil:
		out.EventSourceArn = strOrNil(sqsQueueARN(s.SQS.QueueURL))
	case s.SelfManagedEventSource != nil:
		out.SelfManagedEventSource = &types.SelfManagedEventSource{Endpoints: map[string][]string{
			"KAFKA_BOOTSTRAP_SERVERS": s.SelfManagedEventSource.Endpoints.KafkaBootstrapServers}}
	}
	if d := s.DestinationConfig; d != nil && d.OnFailure != nil {
		out.DestinationConfig = &types.DestinationConfig{OnFailure: &types.OnFailure{Destination: h.destinationString(d.OnFailure)}}
	}
	for _, t := range s.FunctionResponseTypes {
		out.FunctionResponseTypes = append(out.FunctionResponseTypes, types.FunctionResponseType(t))
	}
	if fc := s.FilterCriteria; fc != nil {
		out.FilterCriteria = &types.FilterCriteria{}
		for _, f := range fc.Filters {
			out.FilterCriteria.Filters = append(out.FilterCriteria.Filters, types.Filter{Pattern: aws.String(f.Pattern)})
		}
	}
	if sc := s.ScalingConfig; sc != nil {
		out.ScalingConfig = &types.ScalingConfig{MaximumConcurrency: sc.MaximumConcurrency}
	}
	for _, sa := range s.SourceAccessConfigurations {
		uri := sa.URI
		if sa.SecretRef != nil {
			uri = h.secretURI(sa.SecretRef.Name)
		}
		out.SourceAccessConfigurations = append(out.SourceAccessConfigurations, types.SourceAccessConfiguration{Type: types.SourceAccessType(sa.Type), URI: aws.String(uri)})
	}
	if k := s.SelfManagedKafkaEventSourceConfig; k != nil {
		out.SelfManagedKafkaEventSourceConfig = &types.SelfManagedKafkaEventSourceConfig{ConsumerGroupId: strOrNil(k.ConsumerGroupID)}
	}
	lastMod := specModified(m)
	if m.Status.LastModified != nil && m.Status.LastModified.After(lastMod) {
		lastMod = m.Status.LastModified.Time
	}
	var startAt *time.Time
	if s.StartingPositionTimestamp != nil {
		startAt = &s.StartingPositionTimestamp.Time
	}
	return jsonObject(out, map[string]*time.Time{"LastModified": &lastMod, "StartingPositionTimestamp": startAt})
}

// esm finds the mapping whose UUID (metadata.uid) is uuid.
func (c *call) esm(uuid string) (*lambdav1alpha1.EventSourceMapping, *invoke.Error) {
	var l lambdav1alpha1.EventSourceMappingList
	if err := c.h.Client.List(c, &l, client.InNamespace(c.ns)); err != nil {
		return nil, fromAPI(err, "event source mappings")
	}
	for i := range l.Items {
		if string(l.Items[i].UID) == uuid {
			return &l.Items[i], nil
		}
	}
	return nil, errNotFound("The resource you requested does not exist. (Service: Lambda, Status Code: 404, Request ID: event source mapping " + uuid + ")")
}

// esmToChange authorizes verb on event source mappings, finds the mapping and checks the
// API may change it.
func (c *call) esmToChange(verb, action string) (*lambdav1alpha1.EventSourceMapping, *invoke.Error) {
	uuid := c.r.PathValue("uuid")
	if e := c.authorize(Permission{verb, "eventsourcemappings", ""}, action, contract.EventSourceMappingARN(c.h.Region, c.h.AccountID, uuid)); e != nil {
		return nil, e
	}
	m, e := c.esm(uuid)
	if e != nil {
		return nil, e
	}
	if verb != "get" {
		if e := writable(m, "event source mapping"); e != nil {
			return nil, e
		}
	}
	return m, nil
}

func (h *Handler) createESM(c *call) (int, any, *invoke.Error) {
	var in esmInput
	if e := c.decode(&in); e != nil {
		return 0, nil, e
	}
	if in.FunctionName == nil {
		return 0, nil, errValidation("1 validation error detected: Value null at 'functionName' failed to satisfy constraint: Member must not be null")
	}
	if e := in.refused(); e != nil {
		return 0, nil, e
	}
	name, qual, e := parseFunctionName(*in.FunctionName)
	if e != nil {
		return 0, nil, e
	}
	if e := c.authorize(Permission{"create", "eventsourcemappings", ""}, "CreateEventSourceMapping", h.arn(name, qual)); e != nil {
		return 0, nil, e
	}
	fn, e := c.esmFunction(*in.FunctionName)
	if e != nil {
		return 0, nil, e
	}
	prefix := name
	if len(prefix) > 50 {
		prefix = prefix[:50]
	}
	m := &lambdav1alpha1.EventSourceMapping{ObjectMeta: metav1.ObjectMeta{Namespace: c.ns, GenerateName: prefix + "-esm-",
		Labels: map[string]string{LabelManagedBy: ManagedByValue}}, Spec: lambdav1alpha1.EventSourceMappingSpec{FunctionName: fn}}
	if e := in.applySource(&m.Spec); e != nil {
		return 0, nil, e
	}
	if e := in.applyCommon(&m.Spec); e != nil {
		return 0, nil, e
	}
	if err := h.Client.Create(c, m, client.FieldOwner(FieldManager)); err != nil {
		return 0, nil, fromAPI(err, "event source mapping")
	}
	out, e := h.esmOutput(m)
	if e != nil {
		return 0, nil, e
	}
	return http.StatusAccepted, out, nil
}

func (h *Handler) getESM(c *call) (int, any, *invoke.Error) {
	m, e := c.esmToChange("get", "GetEventSourceMapping")
	if e != nil {
		return 0, nil, e
	}
	out, e := h.esmOutput(m)
	if e != nil {
		return 0, nil, e
	}
	return http.StatusOK, out, nil
}

func (h *Handler) updateESM(c *call) (int, any, *invoke.Error) {
	var in esmInput
	if e := c.decode(&in); e != nil {
		return 0, nil, e
	}
	if e := in.refused(); e != nil {
		return 0, nil, e
	}
	if in.EventSourceArn != nil || in.SelfManagedEventSource != nil || in.Topics != nil || in.Queues != nil ||
		in.StartingPosition != "" || in.StartingPositionTimestamp != nil {
		return 0, nil, errInvalid("EventSourceArn, SelfManagedEventSource, Topics, Queues and StartingPosition can't be changed: create a new event source mapping")
	}
	m, e := c.esmToChange("update", "UpdateEventSourceMapping")
	if e != nil {
		return 0, nil, e
	}
	if m.DeletionTimestamp != nil {
		return 0, nil, userErr(http.StatusBadRequest, "ResourceInUseException", "Cannot update the event source mapping because it is in use (being deleted).")
	}
	if in.FunctionName != nil {
		fn, e := c.esmFunction(*in.FunctionName)
		if e != nil {
			return 0, nil, e
		}
		m.Spec.FunctionName = fn
	}
	if e := in.applyCommon(&m.Spec); e != nil {
		return 0, nil, e
	}
	if err := h.Client.Update(c, m, client.FieldOwner(FieldManager)); err != nil {
		return 0, nil, fromAPI(err, "event source mapping")
	}
	out, e := h.esmOutput(m)
	if e != nil {
		return 0, nil, e
	}
	return http.StatusAccepted, out, nil
}

func (h *Handler) deleteESM(c *call) (int, any, *invoke.Error) {
	m, e := c.esmToChange("delete", "DeleteEventSourceMapping")
	if e != nil {
		return 0, nil, e
	}
	if err := h.Client.Delete(c, m, client.Preconditions{UID: &m.UID}); err != nil && !apierrors.IsNotFound(err) {
		return 0, nil, fromAPI(err, "event source mapping")
	}
	now := metav1.Now()
	m.DeletionTimestamp = &now
	out, e := h.esmOutput(m)
	if e != nil {
		return 0, nil, e
	}
	return http.StatusAccepted, out, nil
}

func (h *Handler) listESMs(c *call) (int, any, *invoke.Error) {
	if e := c.authorize(Permission{"list", "eventsourcemappings", ""}, "ListEventSourceMappings", "*"); e != nil {
		return 0, nil, e
	}
	var fnName, fnQual string
	if fn := c.query.Get("FunctionName"); fn != "" {
		var e *invoke.Error
		if fnName, fnQual, e = parseFunctionName(fn); e != nil {
			return 0, nil, e
		}
	}
	source := c.query.Get("EventSourceArn")
	var l lambdav1alpha1.EventSourceMappingList
	if err := h.Client.List(c, &l, client.InNamespace(c.ns)); err != nil {
		return 0, nil, fromAPI(err, "event source mappings")
	}
	var items []*lambdav1alpha1.EventSourceMapping
	for i := range l.Items {
		m := &l.Items[i]
		if fnName != "" {
			name, qual, e := parseFunctionName(m.Spec.FunctionName)
			if e != nil || name != fnName || (fnQual != "" && qual != fnQual) {
				continue
			}
		}
		if source != "" && (m.Spec.SQS == nil || sqsQueueARN(m.Spec.SQS.QueueURL) != source) {
			continue
		}
		items = append(items, m)
	}
	sort.Slice(items, func(i, j int) bool { return items[i].UID < items[j].UID })
	page, next, e := listPage(c, items, func(m *lambdav1alpha1.EventSourceMapping) string { return string(m.UID) }, 100, 10000)
	if e != nil {
		return 0, nil, e
	}
	out := []map[string]any{}
	for _, m := range page {
		o, e := h.esmOutput(m)
		if e != nil {
			return 0, nil, e
		}
		out = append(out, o)
	}
	return http.StatusOK, map[string]any{"EventSourceMappings": out, "NextMarker": next}, nil
}
