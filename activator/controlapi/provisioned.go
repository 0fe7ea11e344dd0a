package controlapi

import (
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/activator/invoke"
	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// Provisioned concurrency is spec.provisionedConcurrentExecutions of the Version (a version
// number) or the Alias (an alias name) the Qualifier names; its status is theirs.

func errPCNotFound(arn string) *invoke.Error {
	return userErr(http.StatusNotFound, "ProvisionedConcurrencyConfigNotFoundException", "No Provisioned Concurrency Config found for this function: "+arn)
}

// provisionedConfigs is the provisioned concurrency of Versions and Aliases.
var provisionedConfigs = setting[int32]{
	version:  func(v *lambdav1alpha1.Version) **int32 { return &v.Spec.ProvisionedConcurrentExecutions },
	alias:    func(a *lambdav1alpha1.Alias) **int32 { return &a.Spec.ProvisionedConcurrentExecutions },
	target:   (*call).pcTarget,
	notFound: errPCNotFound,
}

// provisionedStatus is the provisioned concurrency the controllers report for q's object.
func provisionedStatus(q *qualified) *lambdav1alpha1.ProvisionedConcurrencyStatus {
	if q.version != nil {
		return q.version.Status.ProvisionedConcurrency
	}
	return q.alias.Status.ProvisionedConcurrency
}

// pcTarget authorizes verb on the version or alias the call's Qualifier names and reads it.
func (c *call) pcTarget(verb, action string) (string, string, *qualified, *invoke.Error) {
	name, qual, e := c.target()
	if e != nil {
		return "", "", nil, e
	}
	switch qual {
	case "":
		return "", "", nil, errValidation("1 validation error detected: Value null at 'qualifier' failed to satisfy constraint: Member must not be null")
	case contract.Latest:
		return "", "", nil, errInvalid("Provisioned Concurrency Configs cannot be applied to unpublished function versions.")
	}
	q, e := c.object(verb, action, name, qual)
	if e != nil {
		return "", "", nil, e
	}
	return name, qual, q, nil
}

func pcOutput(requested int32, st *lambdav1alpha1.ProvisionedConcurrencyStatus) types.ProvisionedConcurrencyConfigListItem {
	out := types.ProvisionedConcurrencyConfigListItem{RequestedProvisionedConcurrentExecutions: aws.Int32(requested),
		AllocatedProvisionedConcurrentExecutions: aws.Int32(0), AvailableProvisionedConcurrentExecutions: aws.Int32(0),
		Status: types.ProvisionedConcurrencyStatusEnumInProgress}
	if st != nil && st.RequestedProvisionedConcurrentExecutions == requested {
		out.AllocatedProvisionedConcurrentExecutions = aws.Int32(st.AllocatedProvisionedConcurrentExecutions)
		out.AvailableProvisionedConcurrentExecutions = aws.Int32(st.AvailableProvisionedConcurrentExecutions)
		if st.Status != "" {
			out.Status = types.ProvisionedConcurrencyStatusEnum(st.Status)
		}
		out.StatusReason = strOrNil(st.StatusReason)
		if st.LastModified != nil {
			out.LastModified = aws.String(lambdaTime(st.LastModified.Time))
		}
	}
	return out
}

func (h *Handler) putProvisioned(c *call) (int, any, *invoke.Error) {
	if _, _, e := c.target(); e != nil {
		return 0, nil, e
	}
	var in lambda.PutProvisionedConcurrencyConfigInput
	if e := c.decode(&in); e != nil {
		return 0, nil, e
	}
	if in.ProvisionedConcurrentExecutions == nil || *in.ProvisionedConcurrentExecutions < 1 {
		return 0, nil, errValidation("1 validation error detected: Value at 'provisionedConcurrentExecutions' failed to satisfy constraint: Member must have value greater than or equal to 1")
	}
	_, _, q, e := c.pcTarget("update", "PutProvisionedConcurrencyConfig")
	if e != nil {
		return 0, nil, e
	}
	*provisionedConfigs.of(q) = in.ProvisionedConcurrentExecutions
	status := provisionedStatus(q)
	if err := h.Client.Update(c, q.object(), client.FieldOwner(FieldManager)); err != nil {
		return 0, nil, fromAPI(err, q.kind())
	}
	out := pcOutput(*in.ProvisionedConcurrentExecutions, status)
	out.FunctionArn = nil
	return http.StatusAccepted, out, nil
}

func (h *Handler) getProvisioned(c *call) (int, any, *invoke.Error) {
	if c.query.Get("List") == "ALL" {
		return h.listProvisioned(c)
	}
	name, qual, q, e := c.pcTarget("get", "GetProvisionedConcurrencyConfig")
	if e != nil {
		return 0, nil, e
	}
	spec := *provisionedConfigs.of(q)
	if spec == nil {
		return 0, nil, errPCNotFound(h.arn(name, qual))
	}
	return http.StatusOK, pcOutput(*spec, provisionedStatus(q)), nil
}

func (h *Handler) listProvisioned(c *call) (int, any, *invoke.Error) {
	name, page, next, e := provisionedConfigs.list(c, "ListProvisionedConcurrencyConfigs",
		func(name string, it held[int32]) string { return h.arn(name, it.qual) })
	if e != nil {
		return 0, nil, e
	}
	items := []types.ProvisionedConcurrencyConfigListItem{}
	for _, it := range page {
		item := pcOutput(*it.cfg, provisionedStatus(it.q))
		item.FunctionArn = aws.String(h.arn(name, it.qual))
		items = append(items, item)
	}
	return http.StatusOK, map[string]any{"ProvisionedConcurrencyConfigs": items, "NextMarker": next}, nil
}
