package controlapi

import (
	"net/http"

	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/activator/invoke"
	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

func (c *call) unqualified(action string) (string, *invoke.Error) {
	name, qual, e := parseFunctionName(c.r.PathValue("fn"))
	if e != nil {
		return "", e
	}
	if qual != "" {
		return "", errInvalid(action + " takes an unqualified function name.")
	}
	return name, nil
}

func (h *Handler) putConcurrency(c *call) (int, any, *invoke.Error) {
	name, e := c.unqualified("PutFunctionConcurrency")
	if e != nil {
		return 0, nil, e
	}
	var in lambda.PutFunctionConcurrencyInput
	if e := c.decode(&in); e != nil {
		return 0, nil, e
	}
	if in.ReservedConcurrentExecutions == nil || *in.ReservedConcurrentExecutions < 0 {
		return 0, nil, errValidation("1 validation error detected: Value at 'reservedConcurrentExecutions' failed to satisfy constraint: Member must have value greater than or equal to 0")
	}
	f, e := c.functionToChange("update", "PutFunctionConcurrency", name)
	if e != nil {
		return 0, nil, e
	}
	if h.NamespaceConcurrency > 0 {
		var fl lambdav1alpha1.FunctionList
		if err := h.Client.List(c, &fl, client.InNamespace(c.ns)); err != nil {
			return 0, nil, fromAPI(err, "functions")
		}
		others := int32(0)
		for _, o := range fl.Items {
			if o.Name != name && o.Spec.ReservedConcurrentExecutions != nil {
				others += *o.Spec.ReservedConcurrentExecutions
			}
		}
		if others+*in.ReservedConcurrentExecutions > h.NamespaceConcurrency {
			return 0, nil, errInvalid("Specified ReservedConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [0].")
		}
	}
	f.Spec.ReservedConcurrentExecutions = in.ReservedConcurrentExecutions
	if err := h.Client.Update(c, f, client.FieldOwner(FieldManager)); err != nil {
		return 0, nil, fromAPI(err, "function")
	}
	return http.StatusOK, types.Concurrency{ReservedConcurrentExecutions: in.ReservedConcurrentExecutions}, nil
}

func (h *Handler) getConcurrency(c *call) (int, any, *invoke.Error) {
	name, e := c.unqualified("GetFunctionConcurrency")
	if e != nil {
		return 0, nil, e
	}
	q, e := c.object("get", "GetFunctionConcurrency", name, "")
	if e != nil {
		return 0, nil, e
	}
	f := q.fn
	return http.StatusOK, map[string]any{"ReservedConcurrentExecutions": f.Spec.ReservedConcurrentExecutions}, nil
}

func (h *Handler) deleteConcurrency(c *call) (int, any, *invoke.Error) {
	name, e := c.unqualified("DeleteFunctionConcurrency")
	if e != nil {
		return 0, nil, e
	}
	f, e := c.functionToChange("update", "DeleteFunctionConcurrency", name)
	if e != nil {
		return 0, nil, e
	}
	f.Spec.ReservedConcurrentExecutions = nil
	if err := h.Client.Update(c, f, client.FieldOwner(FieldManager)); err != nil {
		return 0, nil, fromAPI(err, "function")
	}
	return http.StatusNoContent, nil, nil
}

func (h *Handler) getAccountSettings(c *call) (int, any, *invoke.Error) {
	if e := c.authorize(Permission{"list", "functions", ""}, "GetAccountSettings", "*"); e != nil {
		return 0, nil, e
	}
	var fl lambdav1alpha1.FunctionList
	if err := h.Client.List(c, &fl, client.InNamespace(c.ns)); err != nil {
		return 0, nil, fromAPI(err, "functions")
	}
	reserved, size := int32(0), int64(0)
	for _, f := range fl.Items {
		if f.Spec.ReservedConcurrentExecutions != nil {
			reserved += *f.Spec.ReservedConcurrentExecutions
		}
		size += f.Status.CodeSize
	}
	limit := types.AccountLimit{ConcurrentExecutions: h.NamespaceConcurrency, CodeSizeUnzipped: contract.MaxCodeSizeUnzipped,
		CodeSizeZipped: 50 * 1024 * 1024}
	if h.NamespaceConcurrency > 0 {
		u := max(h.NamespaceConcurrency-reserved, 0)
		limit.UnreservedConcurrentExecutions = &u
	}
	return http.StatusOK, map[string]any{"AccountLimit": limit,
		"AccountUsage": types.AccountUsage{FunctionCount: int64(len(fl.Items)), TotalCodeSize: size}}, nil
}
