package controlapi

import (
	"net/http"
	"regexp"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/activator/invoke"
	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

var aliasNameRE = regexp.MustCompile(`^(?:[a-zA-Z0-9-_]*[a-zA-Z-_][a-zA-Z0-9-_]*)$`)

func aliasName(a *lambdav1alpha1.Alias) string {
	if a.Spec.Name != "" {
		return a.Spec.Name
	}
	return a.Name
}

func hasWeight(a lambdav1alpha1.Alias, num string) bool {
	if a.Spec.RoutingConfig == nil {
		return false
	}
	_, ok := a.Spec.RoutingConfig.AdditionalVersionWeights[num]
	return ok
}

func (c *call) aliasesOf(name string) ([]lambdav1alpha1.Alias, *invoke.Error) {
	var al lambdav1alpha1.AliasList
	if err := c.h.Client.List(c, &al, client.InNamespace(c.ns)); err != nil {
		return nil, fromAPI(err, "aliases")
	}
	var out []lambdav1alpha1.Alias
	for _, a := range al.Items {
		if a.Spec.FunctionName == name && a.DeletionTimestamp == nil {
			out = append(out, a)
		}
	}
	sort.Slice(out, func(i, j int) bool { return aliasName(&out[i]) < aliasName(&out[j]) })
	return out, nil
}

func (c *call) alias(fn, name string) (*lambdav1alpha1.Alias, *invoke.Error) {
	as, e := c.aliasesOf(fn)
	if e != nil {
		return nil, e
	}
	for i := range as {
		if aliasName(&as[i]) == name {
			return &as[i], nil
		}
	}
	return nil, errNotFound("Alias not found: " + c.h.arn(fn, name))
}

func (h *Handler) aliasConfiguration(fn string, a *lambdav1alpha1.Alias) types.AliasConfiguration {
	out := types.AliasConfiguration{
		AliasArn:        aws.String(h.arn(fn, aliasName(a))),
		Name:            aws.String(aliasName(a)),
		FunctionVersion: aws.String(a.Spec.FunctionVersion),
		Description:     aws.String(a.Spec.Description),
		RevisionId:      strOrNil(a.Status.RevisionID),
	}
	if a.Spec.RoutingConfig != nil && len(a.Spec.RoutingConfig.AdditionalVersionWeights) > 0 {
		out.RoutingConfig = &types.AliasRoutingConfiguration{AdditionalVersionWeights: a.Spec.RoutingConfig.AdditionalVersionWeights}
	}
	return out
}

// aliasTarget reads the function and alias path parameters.
func (c *call) aliasTarget() (fn, name string, e *invoke.Error) {
	fn, qual, e := parseFunctionName(c.r.PathValue("fn"))
	if e != nil {
		return "", "", e
	}
	if qual != "" {
		return "", "", errInvalid("The function name of an alias operation can't have a qualifier.")
	}
	name = c.r.PathValue("alias")
	if name != "" && (len(name) > 128 || !aliasNameRE.MatchString(name)) {
		return "", "", errValidation("1 validation error detected: Value '" + name + "' at 'name' failed to satisfy constraint: Member must satisfy regular expression pattern: (?!^[0-9]+$)([a-zA-Z0-9-_]+)")
	}
	return fn, name, nil
}

func routing(rc *types.AliasRoutingConfiguration) *lambdav1alpha1.AliasRoutingConfiguration {
	if rc == nil {
		return nil
	}
	if len(rc.AdditionalVersionWeights) == 0 {
		return nil
	}
	return &lambdav1alpha1.AliasRoutingConfiguration{AdditionalVersionWeights: rc.AdditionalVersionWeights}
}

// checkVersions: the alias's versions must exist (Lambda checks at once).
func (c *call) checkVersions(fn, primary string, rc *lambdav1alpha1.AliasRoutingConfiguration) *invoke.Error {
	nums := []string{primary}
	if rc != nil {
		for k := range rc.AdditionalVersionWeights {
			nums = append(nums, k)
		}
	}
	for _, n := range nums {
		if n == contract.Latest {
			continue
		}
		if !isNumber(n) {
			return errValidation("1 validation error detected: Value '" + n + "' at 'functionVersion' failed to satisfy constraint: Member must satisfy regular expression pattern: (\\$LATEST|[0-9]+)")
		}
		if _, e := c.version(fn, n); e != nil {
			return e
		}
	}
	return nil
}

func (h *Handler) createAlias(c *call) (int, any, *invoke.Error) {
	fn, _, e := c.aliasTarget()
	if e != nil {
		return 0, nil, e
	}
	var in lambda.CreateAliasInput
	if e := c.decode(&in); e != nil {
		return 0, nil, e
	}
	if in.Name == nil || in.FunctionVersion == nil {
		return 0, nil, errValidation("1 validation error detected: Name and FunctionVersion must not be null")
	}
	name := *in.Name
	if len(name) > 128 || !aliasNameRE.MatchString(name) {
		return 0, nil, errValidation("1 validation error detected: Value '" + name + "' at 'name' failed to satisfy constraint: Member must satisfy regular expression pattern: (?!^[0-9]+$)([a-zA-Z0-9-_]+)")
	}
	if e := c.authorize(Permission{"create", "aliases", ""}, "CreateAlias", h.arn(fn, name)); e != nil {
		return 0, nil, e
	}
	f, e := c.function(fn)
	if e != nil {
		return 0, nil, e
	}
	if _, e := c.alias(fn, name); e == nil {
		return 0, nil, errConflict("Alias already exists: " + h.arn(fn, name))
	}
	rc := routing(in.RoutingConfig)
	if e := c.checkVersions(fn, *in.FunctionVersion, rc); e != nil {
		return 0, nil, e
	}
	prefix := fn
	if len(prefix) > 50 {
		prefix = prefix[:50]
	}
	a := &lambdav1alpha1.Alias{ObjectMeta: metav1.ObjectMeta{Namespace: c.ns, GenerateName: prefix + "-" + strings.ToLower(sanitize(name)) + "-",
		Labels: map[string]string{LabelManagedBy: ManagedByValue}},
		Spec: lambdav1alpha1.AliasSpec{FunctionName: f.Name, Name: name, FunctionVersion: *in.FunctionVersion,
			Description: derefOr(in.Description, ""), RoutingConfig: rc}}
	if err := h.Client.Create(c, a, client.FieldOwner(FieldManager)); err != nil {
		return 0, nil, fromAPI(err, "alias")
	}
	return http.StatusCreated, h.aliasConfiguration(fn, a), nil
}

// sanitize keeps what a Kubernetes name may hold of an alias name (at most 40 characters).
func sanitize(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
		if b.Len() >= 40 {
			break
		}
	}
	return strings.Trim(b.String(), "-")
}

func (h *Handler) getAlias(c *call) (int, any, *invoke.Error) {
	fn, name, e := c.aliasTarget()
	if e != nil {
		return 0, nil, e
	}
	q, e := c.object("get", "GetAlias", fn, name)
	if e != nil {
		return 0, nil, e
	}
	return http.StatusOK, h.aliasConfiguration(fn, q.alias), nil
}

func (h *Handler) listAliases(c *call) (int, any, *invoke.Error) {
	fn, _, e := c.aliasTarget()
	if e != nil {
		return 0, nil, e
	}
	if e := c.authorize(Permission{"list", "aliases", ""}, "ListAliases", h.arn(fn, "")); e != nil {
		return 0, nil, e
	}
	if _, e := c.function(fn); e != nil {
		return 0, nil, e
	}
	as, e := c.aliasesOf(fn)
	if e != nil {
		return 0, nil, e
	}
	fv := c.query.Get("FunctionVersion")
	var items []*lambdav1alpha1.Alias
	for i := range as {
		if fv == "" || as[i].Spec.FunctionVersion == fv {
			items = append(items, &as[i])
		}
	}
	page, next, e := listPage(c, items, aliasName, 50, 10000)
	if e != nil {
		return 0, nil, e
	}
	out := []types.AliasConfiguration{}
	for _, a := range page {
		out = append(out, h.aliasConfiguration(fn, a))
	}
	return http.StatusOK, map[string]any{"Aliases": out, "NextMarker": next}, nil
}

func (h *Handler) updateAlias(c *call) (int, any, *invoke.Error) {
	fn, name, e := c.aliasTarget()
	if e != nil {
		return 0, nil, e
	}
	var in lambda.UpdateAliasInput
	if e := c.decode(&in); e != nil {
		return 0, nil, e
	}
	q, e := c.object("update", "UpdateAlias", fn, name)
	if e != nil {
		return 0, nil, e
	}
	a := q.alias
	if in.RevisionId != nil && *in.RevisionId != a.Status.RevisionID {
		return 0, nil, errRevision()
	}
	if in.FunctionVersion != nil {
		a.Spec.FunctionVersion = *in.FunctionVersion
	}
	if in.Description != nil {
		a.Spec.Description = *in.Description
	}
	if in.RoutingConfig != nil {
		a.Spec.RoutingConfig = routing(in.RoutingConfig)
	}
	if e := c.checkVersions(fn, a.Spec.FunctionVersion, a.Spec.RoutingConfig); e != nil {
		return 0, nil, e
	}
	if err := h.Client.Update(c, a, client.FieldOwner(FieldManager)); err != nil {
		return 0, nil, fromAPI(err, "alias")
	}
	return http.StatusOK, h.aliasConfiguration(fn, a), nil
}

func (h *Handler) deleteAlias(c *call) (int, any, *invoke.Error) {
	fn, name, e := c.aliasTarget()
	if e != nil {
		return 0, nil, e
	}
	q, e := c.object("delete", "DeleteAlias", fn, name)
	if e != nil {
		if e.Type == "ResourceNotFoundException" {
			return http.StatusNoContent, nil, nil // Lambda's DeleteAlias is idempotent
		}
		return 0, nil, e
	}
	if err := h.Client.Delete(c, q.alias); err != nil && !apierrors.IsNotFound(err) {
		return 0, nil, fromAPI(err, "alias")
	}
	return http.StatusNoContent, nil, nil
}
