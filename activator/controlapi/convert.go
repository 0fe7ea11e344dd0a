package controlapi

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/activator/invoke"

	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// functionNameRE: a Lambda function name klambda can keep as a Function's metadata.name
// (a Kubernetes name without dots; Lambda's own names may have capitals and underscores,
// which Kubernetes names can't).
var functionNameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

var qualifierRE = regexp.MustCompile(`^(\$LATEST|[a-zA-Z0-9-_]{1,128})$`)

// parseFunctionName reads a FunctionName path parameter: name, name:qualifier,
// account:function:name[:qualifier] or the full ARN.
func parseFunctionName(s string) (name, qualifier string, e *invoke.Error) {
	p := s
	if strings.HasPrefix(p, "arn:") {
		parts := strings.Split(p, ":")
		if len(parts) < 7 || parts[2] != "lambda" || parts[5] != "function" {
			return "", "", errValidation("1 validation error detected: Value '" + s + "' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: (arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}(-gov)?-[a-z]+-\\d{1}:)?(\\d{12}:)?(function:)?([a-zA-Z0-9-_]+)(:(\\$LATEST|[a-zA-Z0-9-_]+))?")
		}
		p = strings.Join(parts[6:], ":")
	} else if parts := strings.Split(p, ":"); len(parts) >= 3 && parts[1] == "function" {
		p = strings.Join(parts[2:], ":")
	}
	name, qualifier, _ = strings.Cut(p, ":")
	if len(name) == 0 || len(name) > 64 || strings.Contains(qualifier, ":") {
		return "", "", errValidation("1 validation error detected: Value '" + s + "' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: (arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}(-gov)?-[a-z]+-\\d{1}:)?(\\d{12}:)?(function:)?([a-zA-Z0-9-_]+)(:(\\$LATEST|[a-zA-Z0-9-_]+))?")
	}
	if !functionNameRE.MatchString(name) {
		return "", "", errInvalid("klambda keeps a function as a Kubernetes object named after it: a function name must be lower-case letters, digits and hyphens, starting and ending with a letter or digit (got " + name + ")")
	}
	if qualifier != "" && !qualifierRE.MatchString(qualifier) {
		return "", "", errValidation("1 validation error detected: Value '" + qualifier + "' at 'qualifier' failed to satisfy constraint: Member must satisfy regular expression pattern: (|[a-zA-Z0-9$_-]+)")
	}
	return name, qualifier, nil
}

// lambdaTime is Lambda's LastModified format.
func lambdaTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000-0700") }

// hexToB64 is a hex SHA-256 in Lambda's base64 form.
func hexToB64(h string) string {
	b, err := hex.DecodeString(h)
	if err != nil {
		return ""
	}
	return base64.StdEncoding.EncodeToString(b)
}

// roleARN is the execution role the function's ServiceAccount stands for.
func (h *Handler) roleARN(sa string) string {
	if sa == "" {
		sa = "default"
	}
	return "arn:aws:iam::" + h.AccountID + ":role/" + sa
}

// roleToServiceAccount reads Role: arn:aws:iam::<account>:role/[path/]<name> → <name>,
// the ServiceAccount the function's pods run as ("default": the namespace's default).
func roleToServiceAccount(role string) (string, *invoke.Error) {
	i := strings.LastIndex(role, "/")
	if !strings.HasPrefix(role, "arn:") || !strings.Contains(role, ":role/") || i < 0 {
		return "", errInvalid("The role defined for the function cannot be assumed by Lambda: klambda takes Role arn:aws:iam::<account>:role/<ServiceAccount name> (got " + role + ")")
	}
	sa := role[i+1:]
	if !validDNSSubdomain(sa) {
		return "", errInvalid("The role's name must be a ServiceAccount name in the function's namespace (got " + sa + ")")
	}
	if sa == "default" {
		return "", nil
	}
	return sa, nil
}

func validDNSSubdomain(s string) bool {
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if !validDNSLabel(l) {
			return false
		}
	}
	return true
}

// stateOf is what Lambda's State and LastUpdateStatus say of an object whose controller
// has (observed) or has not yet processed its latest generation.
type stateOf struct {
	state       lambdav1alpha1.State
	reason      string
	reasonCode  lambdav1alpha1.StateReasonCode
	update      lambdav1alpha1.LastUpdateStatus
	updReason   string
	updCode     lambdav1alpha1.LastUpdateStatusReasonCode
	observed    bool
	codeSha256  string
	codeSize    int64
	revisionID  string
	lastMod     time.Time
	layers      []lambdav1alpha1.ResolvedLayer
	resolvedImg string
}

func functionState(f *lambdav1alpha1.Function) stateOf {
	s := f.Status
	st := stateOf{state: s.State, reason: s.StateReason, reasonCode: s.StateReasonCode,
		update: s.LastUpdateStatus, updReason: s.LastUpdateStatusReason, updCode: s.LastUpdateStatusReasonCode,
		observed: s.ObservedGeneration == f.Generation, codeSha256: s.CodeSha256, codeSize: s.CodeSize,
		revisionID: s.RevisionID, layers: s.Layers, resolvedImg: s.ResolvedImageURI}
	if s.LastModified != nil {
		st.lastMod = s.LastModified.Time
	} else {
		st.lastMod = f.CreationTimestamp.Time
	}
	if st.state == "" {
		st.state, st.reasonCode, st.reason = lambdav1alpha1.StatePending, lambdav1alpha1.StateReasonCreating, "The function is being created."
	}
	if !st.observed {
		// The controller has not taken the latest change in yet: Lambda's update in progress.
		st.update, st.updReason, st.updCode = lambdav1alpha1.LastUpdateInProgress, "The function is being updated.", ""
		if sum := f.Spec.Code.SHA256; sum != "" {
			st.codeSha256 = hexToB64(strings.ToLower(sum))
		}
	} else if st.update == "" && st.state == lambdav1alpha1.StateActive {
		st.update = lambdav1alpha1.LastUpdateSuccessful
	}
	return st
}

func versionState(v *lambdav1alpha1.Version) stateOf {
	s := v.Status
	st := stateOf{state: s.State, reason: s.StateReason, reasonCode: s.StateReasonCode,
		update: s.LastUpdateStatus, updReason: s.LastUpdateStatusReason, updCode: s.LastUpdateStatusReasonCode,
		observed: true, codeSha256: s.CodeSha256, codeSize: s.CodeSize, revisionID: s.RevisionID,
		layers: s.Layers, resolvedImg: s.ResolvedImageURI}
	if s.LastModified != nil {
		st.lastMod = s.LastModified.Time
	}
	if st.state == "" {
		st.state = lambdav1alpha1.StatePending
	}
	if st.update == "" && st.state == lambdav1alpha1.StateActive {
		st.update = lambdav1alpha1.LastUpdateSuccessful
	}
	return st
}

// configuration is Lambda's FunctionConfiguration of a function's $LATEST or version.
func (h *Handler) configuration(name, version string, c *lambdav1alpha1.FunctionConfiguration, st stateOf) types.FunctionConfiguration {
	out := types.FunctionConfiguration{
		FunctionName:               aws.String(name),
		FunctionArn:                aws.String(contract.QualifiedFunctionARN(h.Region, h.AccountID, name, version)),
		Version:                    aws.String(version),
		Description:                aws.String(c.Description),
		PackageType:                types.PackageType(c.PackageType),
		Runtime:                    types.Runtime(c.Runtime),
		Handler:                    strOrNil(c.Handler),
		MemorySize:                 aws.Int32(orDefault(c.MemorySize, contract.DefaultMemorySize)),
		Timeout:                    aws.Int32(orDefault(c.Timeout, int32(contract.DefaultTimeout/time.Second))),
		Role:                       aws.String(h.roleARN(c.ServiceAccountName)),
		State:                      types.State(st.state),
		StateReason:                strOrNil(st.reason),
		StateReasonCode:            types.StateReasonCode(st.reasonCode),
		LastUpdateStatus:           types.LastUpdateStatus(st.update),
		LastUpdateStatusReason:     strOrNil(st.updReason),
		LastUpdateStatusReasonCode: types.LastUpdateStatusReasonCode(st.updCode),
		CodeSha256:                 aws.String(st.codeSha256),
		CodeSize:                   st.codeSize,
		RevisionId:                 strOrNil(st.revisionID),
	}
	if version == contract.Latest {
		out.FunctionArn = aws.String(contract.FunctionARN(h.Region, h.AccountID, name))
	}
	if !st.lastMod.IsZero() {
		out.LastModified = aws.String(lambdaTime(st.lastMod))
	}
	if out.PackageType == "" {
		out.PackageType = types.PackageTypeZip
	}
	for _, a := range c.Architectures {
		out.Architectures = append(out.Architectures, types.Architecture(a))
	}
	if len(out.Architectures) == 0 {
		out.Architectures = []types.Architecture{types.ArchitectureX8664}
	}
	size := int32(512)
	if c.EphemeralStorage != nil {
		size = c.EphemeralStorage.Size
	}
	out.EphemeralStorage = &types.EphemeralStorage{Size: aws.Int32(size)}
	mode := types.TracingModePassThrough
	if c.TracingConfig != nil && c.TracingConfig.Mode != "" {
		mode = types.TracingMode(c.TracingConfig.Mode)
	}
	out.TracingConfig = &types.TracingConfigResponse{Mode: mode}
	if c.Environment != nil && len(c.Environment.Variables) > 0 {
		vars := map[string]string{}
		for _, v := range c.Environment.Variables {
			if v.ValueFrom == nil { // values from Secrets are not shown (README.md)
				vars[v.Name] = v.Value
			}
		}
		out.Environment = &types.EnvironmentResponse{Variables: vars}
	}
	if c.ImageConfig != nil {
		out.ImageConfigResponse = &types.ImageConfigResponse{ImageConfig: &types.ImageConfig{
			EntryPoint: c.ImageConfig.EntryPoint, Command: c.ImageConfig.Command, WorkingDirectory: strOrNil(c.ImageConfig.WorkingDirectory)}}
	}
	for _, l := range st.layers {
		arn := l.ARN
		if arn == "" {
			arn = contract.LayerVersionARN(h.Region, h.AccountID, l.Name, l.Version)
		}
		out.Layers = append(out.Layers, types.Layer{Arn: aws.String(arn), CodeSize: l.CodeSize})
	}
	if len(st.layers) == 0 {
		for _, l := range c.Layers {
			out.Layers = append(out.Layers, types.Layer{Arn: aws.String(h.layerARN(l))})
		}
	}
	return out
}

// layerARN is the ARN of a Function's layer reference (name:version or a LayerVersion object).
func (h *Handler) layerARN(ref string) string {
	if name, ver, ok := strings.Cut(ref, ":"); ok {
		return "arn:aws:lambda:" + h.Region + ":" + h.AccountID + ":layer:" + name + ":" + ver
	}
	return ref
}

// layerRef reads a layer ARN (arn:aws:lambda:region:account:layer:name:version) as the
// Function's name:version reference.
func layerRef(arn string) (string, *invoke.Error) {
	parts := strings.Split(arn, ":")
	if len(parts) != 8 || parts[0] != "arn" || parts[2] != "lambda" || parts[5] != "layer" {
		return "", errInvalid("Layer version arn " + arn + " is not a layer version ARN (arn:aws:lambda:<region>:<account>:layer:<name>:<version>)")
	}
	return parts[6] + ":" + parts[7], nil
}

func strOrNil(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func orDefault(v, d int32) int32 {
	if v == 0 {
		return d
	}
	return v
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// specModified is when obj's spec was last written (its newest managed-fields entry outside
// the status subresource), else its creation: klambda keeps no separate timestamps for the
// settings an object holds (function URL, asynchronous invocation).
func specModified(obj client.Object) time.Time {
	t := obj.GetCreationTimestamp().Time
	for _, mf := range obj.GetManagedFields() {
		if mf.Subresource == "" && mf.Time != nil && mf.Time.After(t) {
			t = mf.Time.Time
		}
	}
	return t
}

// isoTime is the ISO 8601 form of the function URL API's CreationTime and LastModifiedTime.
func isoTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000Z") }

// jsonObject is v as a JSON object with the timestamp members named in times written as
// Lambda's epoch seconds (encoding/json would write a time.Time as an RFC 3339 string,
// which the SDKs do not read).
func jsonObject(v any, times map[string]*time.Time) (map[string]any, *invoke.Error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, errService("encoding the answer: " + err.Error())
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, errService("encoding the answer: " + err.Error())
	}
	for k, t := range times {
		delete(out, k)
		if t != nil && !t.IsZero() {
			out[k] = float64(t.UnixMilli()) / 1000
		}
	}
	return out, nil
}
