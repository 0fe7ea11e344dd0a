package controlapi

import (
	"net/http"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/activator/invoke"
)

// Tags are the Function's spec.tags; only function ARNs are taggable here.

func (c *call) tagTarget() (string, *invoke.Error) {
	arn := c.r.PathValue("arn")
	if !strings.HasPrefix(arn, "arn:") || !strings.Contains(arn, ":function:") {
		return "", errInvalid("klambda tags functions only: " + arn + " is not a function ARN")
	}
	name, qual, e := parseFunctionName(arn)
	if e != nil {
		return "", e
	}
	if qual != "" {
		return "", errInvalid("Tags are not supported on function versions or aliases: " + arn)
	}
	return name, nil
}

func (h *Handler) tagResource(c *call) (int, any, *invoke.Error) {
	name, e := c.tagTarget()
	if e != nil {
		return 0, nil, e
	}
	var in lambda.TagResourceInput
	if e := c.decode(&in); e != nil {
		return 0, nil, e
	}
	f, e := c.functionToChange("update", "TagResource", name)
	if e != nil {
		return 0, nil, e
	}
	if f.Spec.Tags == nil {
		f.Spec.Tags = map[string]string{}
	}
	for k, v := range in.Tags {
		f.Spec.Tags[k] = v
	}
	if err := h.Client.Update(c, f, client.FieldOwner(FieldManager)); err != nil {
		return 0, nil, fromAPI(err, "function")
	}
	return http.StatusNoContent, nil, nil
}

func (h *Handler) untagResource(c *call) (int, any, *invoke.Error) {
	name, e := c.tagTarget()
	if e != nil {
		return 0, nil, e
	}
	keys := c.query["tagKeys"]
	if len(keys) == 0 {
		return 0, nil, errValidation("1 validation error detected: Value null at 'tagKeys' failed to satisfy constraint: Member must not be null")
	}
	f, e := c.functionToChange("update", "UntagResource", name)
	if e != nil {
		return 0, nil, e
	}
	for _, k := range keys {
		delete(f.Spec.Tags, k)
	}
	if err := h.Client.Update(c, f, client.FieldOwner(FieldManager)); err != nil {
		return 0, nil, fromAPI(err, "function")
	}
	return http.StatusNoContent, nil, nil
}

func (h *Handler) listTags(c *call) (int, any, *invoke.Error) {
	name, e := c.tagTarget()
	if e != nil {
		return 0, nil, e
	}
	q, e := c.object("get", "ListTags", name, "")
	if e != nil {
		return 0, nil, e
	}
	f := q.fn
	tags := f.Spec.Tags
	if tags == nil {
		tags = map[string]string{}
	}
	return http.StatusOK, map[string]any{"Tags": tags}, nil
}
