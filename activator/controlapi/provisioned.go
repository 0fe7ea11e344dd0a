package controlapi

import (
	"net/http"
	"sort"

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

// pcTarget is the object holding a qualifier's provisioned concurrency.
type pcTarget struct {
	obj    client.Object
	kind   string
	spec   **int32
	status *lambdav1alpha1.ProvisionedConcurrencyStatus
}

// pcTarget authorizes verb on the version or alias qual names and reads it.
func (c *call) pcTarget(verb, action, name, qual string) (*pcTarget, *invoke.Error) {
	switch qual {
	case "":
		return nil, errValidation("1 validation error detected: Value null at 'qualifier' failed to satisfy constraint: Member must not be null")
	case contract.Latest:
		return nil, errInvalid("Provisioned Concurrency Configs cannot be applied to unpublished function versions.")
	}
	q, e := c.object(verb, action, name, qual)
	if e != nil {
		return nil, e
	}
	if v := q.version; v != nil {
		return &pcTarget{obj: v, kind: "version", spec: &v.Spec.ProvisionedConcurrentExecutions, status: v.Status.ProvisionedConcurrency}, nil
	}
	a := q.alias
	return &pcTarget{obj: a, kind: "alias", spec: &a.Spec.ProvisionedConcurrentExecutions, status: a.Status.ProvisionedConcurrency}, nil
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
	name, qual, e := c.target()
	if e != nil {
		return 0, nil, e
	}
	var in lambda.PutProvisionedConcurrencyConfigInput
	if e := c.decode(&in); e != nil {
		return 0, nil, e
	}
	if in.ProvisionedConcurrentExecutions == nil || *in.ProvisionedConcurrentExecutions < 1 {
		return 0, nil, errValidation("1 validation error detected: Value at 'provisionedConcurrentExecutions' failed to satisfy constraint: Member must have value greater than or equal to 1")
	}
	t, e := c.pcTarget("update", "PutProvisionedConcurrencyConfig", name, qual)
	if e != nil {
		return 0, nil, e
	}
	*t.spec = in.ProvisionedConcurrentExecutions
	if err := h.Client.Update(c, t.obj, client.FieldOwner(FieldManager)); err != nil {
		return 0, nil, fromAPI(err, t.kind)
	}
	out := pcOutput(*in.ProvisionedConcurrentExecutions, t.status)
	out.FunctionArn = nil
	return http.StatusAccepted, out, nil
}

func (h *Handler) getProvisioned(c *call) (int, any, *invoke.Error) {
	if c.query.Get("List") == "ALL" {
		return h.listProvisioned(c)
	}
	name, qual, e := c.target()
	if e != nil {
		return 0, nil, e
	}
	t, e := c.pcTarget("get", "GetProvisionedConcurrencyConfig", name, qual)
	if e != nil {
		return 0, nil, e
	}
	if *t.spec == nil {
		return 0, nil, errPCNotFound(h.arn(name, qual))
	}
	return http.StatusOK, pcOutput(**t.spec, t.status), nil
}

func (h *Handler) deleteProvisioned(c *call) (int, any, *invoke.Error) {
	name, qual, e := c.target()
	if e != nil {
		return 0, nil, e
	}
	t, e := c.pcTarget("update", "DeleteProvisionedConcurrencyConfig", name, qual)
	if e != nil {
		return 0, nil, e
	}
	if *t.spec == nil {
		return 0, nil, errPCNotFound(h.arn(name, qual))
	}
	*t.spec = nil
	if err := h.Client.Update(c, t.obj, client.FieldOwner(FieldManager)); err != nil {
		return 0, nil, fromAPI(err, t.kind)
	}
	return http.StatusNoContent, nil, nil
}

func (h *Handler) listProvisioned(c *call) (int, any, *invoke.Error) {
	name, qual, e := parseFunctionName(c.r.PathValue("fn"))
	if e != nil {
		return 0, nil, e
	}
	if qual != "" {
		return 0, nil, errInvalid("ListProvisionedConcurrencyConfigs takes an unqualified function name.")
	}
	if e := c.authorize(Permission{"list", "versions", ""}, "ListProvisionedConcurrencyConfigs", h.arn(name, "")); e != nil {
		return 0, nil, e
	}
	if e := c.authorize(Permission{"list", "aliases", ""}, "ListProvisionedConcurrencyConfigs", h.arn(name, "")); e != nil {
		return 0, nil, e
	}
	if _, e := c.function(name); e != nil {
		return 0, nil, e
	}
	vs, e := c.versionsOf(name)
	if e != nil {
		return 0, nil, e
	}
	as, e := c.aliasesOf(name)
	if e != nil {
		return 0, nil, e
	}
	var items []types.ProvisionedConcurrencyConfigListItem
	for _, v := range publishedVersions(vs) {
		if p := v.Spec.ProvisionedConcurrentExecutions; p != nil {
			it := pcOutput(*p, v.Status.ProvisionedConcurrency)
			it.FunctionArn = aws.String(h.arn(name, v.Status.Version))
			items = append(items, it)
		}
	}
	for i := range as {
		if p := as[i].Spec.ProvisionedConcurrentExecutions; p != nil {
			it := pcOutput(*p, as[i].Status.ProvisionedConcurrency)
			it.FunctionArn = aws.String(h.arn(name, aliasName(&as[i])))
			items = append(items, it)
		}
	}
	sort.Slice(items, func(i, j int) bool { return *items[i].FunctionArn < *items[j].FunctionArn })
	page, next, e := listPage(c, items, func(it types.ProvisionedConcurrencyConfigListItem) string { return *it.FunctionArn }, 50, 50)
	if e != nil {
		return 0, nil, e
	}
	if page == nil {
		page = []types.ProvisionedConcurrencyConfigListItem{}
	}
	return http.StatusOK, map[string]any{"ProvisionedConcurrencyConfigs": page, "NextMarker": next}, nil
}
