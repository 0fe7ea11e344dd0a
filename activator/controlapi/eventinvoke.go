package controlapi

import (
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/activator/invoke"
	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// Asynchronous invocation settings are spec.eventInvokeConfig of the Function (no
// Qualifier, or $LATEST), the Version (a number) or the Alias (a name) the call names.

// eventInvokeConfigs is the event invoke config of the Function, Versions and Aliases.
var eventInvokeConfigs = setting[lambdav1alpha1.EventInvokeConfig]{
	fn:       func(f *lambdav1alpha1.Function) **lambdav1alpha1.EventInvokeConfig { return &f.Spec.EventInvokeConfig },
	version:  func(v *lambdav1alpha1.Version) **lambdav1alpha1.EventInvokeConfig { return &v.Spec.EventInvokeConfig },
	alias:    func(a *lambdav1alpha1.Alias) **lambdav1alpha1.EventInvokeConfig { return &a.Spec.EventInvokeConfig },
	target:   (*call).eicTarget,
	notFound: errEICNotFound,
}

// eicTarget authorizes verb on what the function name and Qualifier name and reads it; the
// qualifier answered is $LATEST for the function itself.
func (c *call) eicTarget(verb, action string) (string, string, *qualified, *invoke.Error) {
	name, qual, e := c.target()
	if e != nil {
		return "", "", nil, e
	}
	q, e := c.object(verb, action, name, qual)
	if e != nil {
		return "", "", nil, e
	}
	if qual == "" {
		qual = contract.Latest
	}
	return name, qual, q, nil
}

func errEICNotFound(arn string) *invoke.Error {
	return errNotFound("The function " + arn + " doesn't have an EventInvokeConfig")
}

// eicInput is what PutFunctionEventInvokeConfig and UpdateFunctionEventInvokeConfig take.
type eicInput struct {
	MaximumRetryAttempts     *int32
	MaximumEventAgeInSeconds *int32
	DestinationConfig        *types.DestinationConfig
}

// apply writes the members given into cfg (the CRD's schema checks their ranges).
func (in *eicInput) apply(cfg *lambdav1alpha1.EventInvokeConfig) *invoke.Error {
	if in.MaximumRetryAttempts != nil {
		cfg.MaximumRetryAttempts = in.MaximumRetryAttempts
	}
	if in.MaximumEventAgeInSeconds != nil {
		cfg.MaximumEventAgeInSeconds = in.MaximumEventAgeInSeconds
	}
	if dc := in.DestinationConfig; dc != nil {
		if cfg.DestinationConfig == nil {
			cfg.DestinationConfig = &lambdav1alpha1.DestinationConfig{}
		}
		if dc.OnSuccess != nil {
			d, e := destination(aws.ToString(dc.OnSuccess.Destination))
			if e != nil {
				return e
			}
			cfg.DestinationConfig.OnSuccess = d
		}
		if dc.OnFailure != nil {
			d, e := destination(aws.ToString(dc.OnFailure.Destination))
			if e != nil {
				return e
			}
			cfg.DestinationConfig.OnFailure = d
		}
		if cfg.DestinationConfig.OnSuccess == nil && cfg.DestinationConfig.OnFailure == nil {
			cfg.DestinationConfig = nil
		}
	}
	return nil
}

// destination reads a destination ARN: "" removes the destination; a function ARN is a
// Function destination. Queues, topics and buses are refused: klambda's SQS, NATS and Kafka
// destinations need a URL or servers (and credentials) an ARN does not carry.
func destination(arn string) (*lambdav1alpha1.Destination, *invoke.Error) {
	if arn == "" {
		return nil, nil
	}
	if !strings.HasPrefix(arn, "arn:") || !strings.Contains(arn, ":lambda:") || !strings.Contains(arn, ":function:") {
		return nil, errInvalid("klambda takes a Lambda function ARN (arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]) as a destination through this API; " +
			"an SQS queue, NATS subject or Kafka topic needs a URL or servers (and credentials) an ARN does not carry: set the destination with kubectl (got " + arn + ")")
	}
	name, qual, e := parseFunctionName(arn)
	if e != nil {
		return nil, e
	}
	return &lambdav1alpha1.Destination{Function: &lambdav1alpha1.FunctionDestination{Name: name, Qualifier: qual}}, nil
}

// destinationString is how a destination is answered: a function's ARN; for the
// destinations only kubectl can set, the queue's URL, nats:<subject> or kafka:<topic>.
func (h *Handler) destinationString(d *lambdav1alpha1.Destination) *string {
	switch {
	case d == nil:
		return nil
	case d.Function != nil:
		return aws.String(h.arn(d.Function.Name, d.Function.Qualifier))
	case d.SQS != nil:
		return aws.String(d.SQS.QueueURL)
	case d.NATS != nil:
		return aws.String("nats:" + d.NATS.Subject)
	case d.Kafka != nil:
		return aws.String("kafka:" + d.Kafka.Topic)
	}
	return nil
}

// eicOutput is Lambda's FunctionEventInvokeConfig; LastModified is the last write of the
// object's spec (klambda keeps no timestamp of the setting itself).
func (h *Handler) eicOutput(name, qual string, obj client.Object, cfg *lambdav1alpha1.EventInvokeConfig) (map[string]any, *invoke.Error) {
	out := types.FunctionEventInvokeConfig{FunctionArn: aws.String(h.arn(name, qual)),
		MaximumRetryAttempts: cfg.MaximumRetryAttempts, MaximumEventAgeInSeconds: cfg.MaximumEventAgeInSeconds}
	if dc := cfg.DestinationConfig; dc != nil {
		out.DestinationConfig = &types.DestinationConfig{}
		if s := h.destinationString(dc.OnSuccess); s != nil {
			out.DestinationConfig.OnSuccess = &types.OnSuccess{Destination: s}
		}
		if s := h.destinationString(dc.OnFailure); s != nil {
			out.DestinationConfig.OnFailure = &types.OnFailure{Destination: s}
		}
	}
	t := specModified(obj)
	return jsonObject(out, map[string]*time.Time{"LastModified": &t})
}

// putEventInvokeConfig serves Put (replace: members left out are removed) and Update
// (merge: members left out are kept; no configuration yet starts from none).
func (h *Handler) putEventInvokeConfig(replace bool, action string) op {
	return func(c *call) (int, any, *invoke.Error) {
		var in eicInput
		if e := c.decode(&in); e != nil {
			return 0, nil, e
		}
		name, qual, q, e := c.eicTarget("update", action)
		if e != nil {
			return 0, nil, e
		}
		spec := eventInvokeConfigs.of(q)
		cfg := &lambdav1alpha1.EventInvokeConfig{}
		if !replace && *spec != nil {
			cfg = (*spec).DeepCopy()
		}
		if e := in.apply(cfg); e != nil {
			return 0, nil, e
		}
		*spec = cfg
		if err := h.Client.Update(c, q.object(), client.FieldOwner(FieldManager)); err != nil {
			return 0, nil, fromAPI(err, q.kind())
		}
		out, e := h.eicOutput(name, qual, q.object(), *eventInvokeConfigs.of(q))
		if e != nil {
			return 0, nil, e
		}
		return http.StatusOK, out, nil
	}
}

func (h *Handler) getEventInvokeConfig(c *call) (int, any, *invoke.Error) {
	name, qual, q, e := c.eicTarget("get", "GetFunctionEventInvokeConfig")
	if e != nil {
		return 0, nil, e
	}
	cfg := *eventInvokeConfigs.of(q)
	if cfg == nil {
		return 0, nil, errEICNotFound(h.arn(name, qual))
	}
	out, e := h.eicOutput(name, qual, q.object(), cfg)
	if e != nil {
		return 0, nil, e
	}
	return http.StatusOK, out, nil
}

func (h *Handler) listEventInvokeConfigs(c *call) (int, any, *invoke.Error) {
	name, page, next, e := eventInvokeConfigs.list(c, "ListFunctionEventInvokeConfigs",
		func(_ string, it held[lambdav1alpha1.EventInvokeConfig]) string {
			switch {
			case it.q.fn != nil:
				return "\x00"
			case it.q.version != nil:
				return "\x01" + versionSortKey(it.qual)
			}
			return "\x02" + it.qual
		})
	if e != nil {
		return 0, nil, e
	}
	out := []map[string]any{}
	for _, it := range page {
		o, e := h.eicOutput(name, it.qual, it.q.object(), it.cfg)
		if e != nil {
			return 0, nil, e
		}
		out = append(out, o)
	}
	return http.StatusOK, map[string]any{"FunctionEventInvokeConfigs": out, "NextMarker": next}, nil
}
