package controlapi

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"os"
	"sort"
	"strconv"
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
	"github.com/klambda/klambda/internal/codestore"
)

func (h *Handler) routes() []route {
	return []route{
		{"POST /2015-03-31/functions", h.serve("CreateFunction", true, h.createFunction)},
		{"POST /2015-03-31/functions/{$}", h.serve("CreateFunction", true, h.createFunction)},
		{"GET /2015-03-31/functions", h.serve("ListFunctions", false, h.listFunctions)},
		{"GET /2015-03-31/functions/{$}", h.serve("ListFunctions", false, h.listFunctions)},
		{"GET /2015-03-31/functions/{fn}", h.serve("GetFunction", false, h.getFunction)},
		{"DELETE /2015-03-31/functions/{fn}", h.serve("DeleteFunction", false, h.deleteFunction)},
		{"GET /2015-03-31/functions/{fn}/configuration", h.serve("GetFunctionConfiguration", false, h.getFunctionConfiguration)},
		{"PUT /2015-03-31/functions/{fn}/configuration", h.serve("UpdateFunctionConfiguration", false, h.updateFunctionConfiguration)},
		{"PUT /2015-03-31/functions/{fn}/code", h.serve("UpdateFunctionCode", true, h.updateFunctionCode)},
		{"POST /2015-03-31/functions/{fn}/versions", h.serve("PublishVersion", false, h.publishVersion)},
		{"GET /2015-03-31/functions/{fn}/versions", h.serve("ListVersionsByFunction", false, h.listVersions)},
		{"POST /2015-03-31/functions/{fn}/aliases", h.serve("CreateAlias", false, h.createAlias)},
		{"GET /2015-03-31/functions/{fn}/aliases", h.serve("ListAliases", false, h.listAliases)},
		{"GET /2015-03-31/functions/{fn}/aliases/{alias}", h.serve("GetAlias", false, h.getAlias)},
		{"PUT /2015-03-31/functions/{fn}/aliases/{alias}", h.serve("UpdateAlias", false, h.updateAlias)},
		{"DELETE /2015-03-31/functions/{fn}/aliases/{alias}", h.serve("DeleteAlias", false, h.deleteAlias)},
		{"PUT /2017-10-31/functions/{fn}/concurrency", h.serve("PutFunctionConcurrency", false, h.putConcurrency)},
		{"DELETE /2017-10-31/functions/{fn}/concurrency", h.serve("DeleteFunctionConcurrency", false, h.deleteConcurrency)},
		{"GET /2019-09-30/functions/{fn}/concurrency", h.serve("GetFunctionConcurrency", false, h.getConcurrency)},
		{"PUT /2019-09-30/functions/{fn}/provisioned-concurrency", h.serve("PutProvisionedConcurrencyConfig", false, h.putProvisioned)},
		{"GET /2019-09-30/functions/{fn}/provisioned-concurrency", h.serve("GetProvisionedConcurrencyConfig", false, h.getProvisioned)},
		{"DELETE /2019-09-30/functions/{fn}/provisioned-concurrency", h.serve("DeleteProvisionedConcurrencyConfig", false, provisionedConfigs.delete("DeleteProvisionedConcurrencyConfig"))},
		{"POST /2017-03-31/tags/{arn}", h.serve("TagResource", false, h.tagResource)},
		{"DELETE /2017-03-31/tags/{arn}", h.serve("UntagResource", false, h.untagResource)},
		{"GET /2017-03-31/tags/{arn}", h.serve("ListTags", false, h.listTags)},
		{"POST /2021-10-31/functions/{fn}/url", h.serve("CreateFunctionUrlConfig", false, h.createURL)},
		{"GET /2021-10-31/functions/{fn}/url", h.serve("GetFunctionUrlConfig", false, h.getURL)},
		{"PUT /2021-10-31/functions/{fn}/url", h.serve("UpdateFunctionUrlConfig", false, h.updateURL)},
		{"DELETE /2021-10-31/functions/{fn}/url", h.serve("DeleteFunctionUrlConfig", false, urlConfigs.delete("DeleteFunctionUrlConfig"))},
		{"GET /2021-10-31/functions/{fn}/urls", h.serve("ListFunctionUrlConfigs", false, h.listURLs)},
		{"PUT /2019-09-25/functions/{fn}/event-invoke-config", h.serve("PutFunctionEventInvokeConfig", false, h.putEventInvokeConfig(true, "PutFunctionEventInvokeConfig"))},
		{"POST /2019-09-25/functions/{fn}/event-invoke-config", h.serve("UpdateFunctionEventInvokeConfig", false, h.putEventInvokeConfig(false, "UpdateFunctionEventInvokeConfig"))},
		{"GET /2019-09-25/functions/{fn}/event-invoke-config", h.serve("GetFunctionEventInvokeConfig", false, h.getEventInvokeConfig)},
		{"DELETE /2019-09-25/functions/{fn}/event-invoke-config", h.serve("DeleteFunctionEventInvokeConfig", false, eventInvokeConfigs.delete("DeleteFunctionEventInvokeConfig"))},
		{"GET /2019-09-25/functions/{fn}/event-invoke-config/list", h.serve("ListFunctionEventInvokeConfigs", false, h.listEventInvokeConfigs)},
		{"POST /2015-03-31/event-source-mappings", h.serve("CreateEventSourceMapping", false, h.createESM)},
		{"POST /2015-03-31/event-source-mappings/{$}", h.serve("CreateEventSourceMapping", false, h.createESM)},
		{"GET /2015-03-31/event-source-mappings", h.serve("ListEventSourceMappings", false, h.listESMs)},
		{"GET /2015-03-31/event-source-mappings/{$}", h.serve("ListEventSourceMappings", false, h.listESMs)},
		{"GET /2015-03-31/event-source-mappings/{uuid}", h.serve("GetEventSourceMapping", false, h.getESM)},
		{"PUT /2015-03-31/event-source-mappings/{uuid}", h.serve("UpdateEventSourceMapping", false, h.updateESM)},
		{"DELETE /2015-03-31/event-source-mappings/{uuid}", h.serve("DeleteEventSourceMapping", false, h.deleteESM)},
		{"POST /2018-10-31/layers/{layer}/versions", h.serve("PublishLayerVersion", true, h.publishLayerVersion)},
		{"GET /2018-10-31/layers/{layer}/versions", h.serve("ListLayerVersions", false, h.listLayerVersions)},
		{"GET /2018-10-31/layers/{layer}/versions/{num}", h.serve("GetLayerVersion", false, h.getLayerVersion)},
		{"DELETE /2018-10-31/layers/{layer}/versions/{num}", h.serve("DeleteLayerVersion", false, h.deleteLayerVersion)},
		{"GET /2018-10-31/layers", h.serve("ListLayers", false, h.listLayers)},
		{"GET /2018-10-31/layers/{$}", h.serve("ListLayers", false, h.listLayers)},
		{"GET /2016-08-19/account-settings", h.serve("GetAccountSettings", false, h.getAccountSettings)},
		{"GET /2016-08-19/account-settings/{$}", h.serve("GetAccountSettings", false, h.getAccountSettings)},
	}
}

// target is the function (and qualifier) a call names: the {fn} path parameter and the
// Qualifier query parameter.
func (c *call) target() (name, qualifier string, e *invoke.Error) {
	name, qualifier, e = parseFunctionName(c.r.PathValue("fn"))
	if e != nil {
		return "", "", e
	}
	if q := c.query.Get("Qualifier"); q != "" {
		if !qualifierRE.MatchString(q) {
			return "", "", errValidation("1 validation error detected: Value '" + q + "' at 'qualifier' failed to satisfy constraint: Member must satisfy regular expression pattern: (|[a-zA-Z0-9$_-]+)")
		}
		if qualifier != "" && qualifier != q {
			return "", "", errInvalid("The derived qualifier from the function name does not match the specified qualifier.")
		}
		qualifier = q
	}
	return name, qualifier, nil
}

func (h *Handler) arn(name, qualifier string) string {
	if qualifier == "" {
		return contract.FunctionARN(h.Region, h.AccountID, name)
	}
	return contract.QualifiedFunctionARN(h.Region, h.AccountID, name, qualifier)
}

func (c *call) function(name string) (*lambdav1alpha1.Function, *invoke.Error) {
	var f lambdav1alpha1.Function
	if err := c.h.Client.Get(c, client.ObjectKey{Namespace: c.ns, Name: name}, &f); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, errFunctionNotFound(c.h.arn(name, ""))
		}
		return nil, fromAPI(err, "function")
	}
	return &f, nil
}

// writable refuses to change an object the API did not create (README.md, "Who owns an
// object"): it names the field managers that own its spec.
func writable(obj client.Object, kind string) *invoke.Error {
	if obj.GetLabels()[LabelManagedBy] == ManagedByValue || obj.GetAnnotations()[AnnotationWritable] == "true" {
		return nil
	}
	var owners []string
	for _, mf := range obj.GetManagedFields() {
		if mf.Manager == FieldManager || mf.Subresource != "" || mf.FieldsV1 == nil || !bytes.Contains(mf.FieldsV1.GetRawBytes(), []byte(`"f:spec"`)) {
			continue
		}
		owners = append(owners, mf.Manager+" ("+string(mf.Operation)+")")
	}
	for _, a := range []string{"argocd.argoproj.io/tracking-id", "kustomize.toolkit.fluxcd.io/name", "meta.helm.sh/release-name"} {
		if v, ok := obj.GetAnnotations()[a]; ok {
			owners = append(owners, a+"="+v)
		}
	}
	if len(owners) == 0 {
		owners = []string{"another client"}
	}
	return errConflict("The " + kind + " " + obj.GetName() + " is managed by " + strings.Join(owners, ", ") +
		": the Lambda API changes only the objects it created (label " + LabelManagedBy + "=" + ManagedByValue +
		"). Change it where it is managed, or annotate it " + AnnotationWritable + "=true to let the API change it.")
}

// ---- code ----

// codeInput is Lambda's code members (CreateFunction's Code, UpdateFunctionCode's).
type codeInput struct {
	ZipFile                          []byte
	S3Bucket, S3Key, S3ObjectVersion *string
	ImageURI                         *string
	SourceKMSKeyArn                  *string
}

// code turns Lambda's code members into the Function's code, storing a ZipFile in the
// code store (unless dryRun): the Function then names the archive by its URL in the store
// and its sha256, which the manager finds already stored.
func (c *call) code(ci codeInput, dryRun bool) (lambdav1alpha1.FunctionCode, lambdav1alpha1.PackageType, *invoke.Error) {
	var out lambdav1alpha1.FunctionCode
	n := 0
	if ci.ZipFile != nil {
		n++
	}
	if ci.S3Bucket != nil || ci.S3Key != nil || ci.S3ObjectVersion != nil {
		n++
	}
	if ci.ImageURI != nil {
		n++
	}
	switch {
	case n == 0:
		return out, "", errInvalid("Please provide a source for function code: ZipFile, S3Bucket and S3Key, or ImageUri.")
	case n > 1:
		return out, "", errInvalid("Please don't provide more than one source for function code: ZipFile, S3Bucket and S3Key, or ImageUri.")
	case ci.SourceKMSKeyArn != nil:
		return out, "", errInvalid("klambda does not support SourceKMSKeyArn: the code store keeps archives as uploaded")
	}
	switch {
	case ci.ImageURI != nil:
		out.ImageURI = *ci.ImageURI
		return out, lambdav1alpha1.PackageTypeImage, nil
	case ci.S3Bucket != nil || ci.S3Key != nil:
		if ci.S3Bucket == nil || ci.S3Key == nil {
			return out, "", errInvalid("S3Bucket and S3Key go together.")
		}
		out.S3 = &lambdav1alpha1.S3Location{Bucket: *ci.S3Bucket, Key: *ci.S3Key, ObjectVersion: aws.ToString(ci.S3ObjectVersion)}
		return out, lambdav1alpha1.PackageTypeZip, nil
	}
	if _, err := zip.NewReader(bytes.NewReader(ci.ZipFile), int64(len(ci.ZipFile))); err != nil {
		return out, "", errInvalid("Could not unzip uploaded file. Please check your file, then try to upload again.")
	}
	sum := sha256.Sum256(ci.ZipFile)
	hx := hex.EncodeToString(sum[:])
	st := c.h.Store
	if st == nil {
		return out, "", errInvalid("ZipFile needs klambda's code store, which this installation has not configured (chart value codeStore.repository); give S3Bucket/S3Key or ImageUri, or a Function with code.url or code.configMapRef")
	}
	if !dryRun {
		if e := c.put(st, ci.ZipFile, hx); e != nil {
			return out, "", e
		}
	}
	out.URL = storeBlobURL(st.Location(), hx)
	out.SHA256 = hx
	return out, lambdav1alpha1.PackageTypeZip, nil
}

func (c *call) put(st codestore.Store, data []byte, hx string) *invoke.Error {
	f, err := os.CreateTemp("", "klambda-upload-*.zip")
	if err != nil {
		return errService("could not keep the upload: " + err.Error())
	}
	defer func() { _ = os.Remove(f.Name()) }()
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return errService("could not keep the upload: " + err.Error())
	}
	if err := f.Close(); err != nil {
		return errService("could not keep the upload: " + err.Error())
	}
	if _, err := st.Put(c, f.Name(), hx); err != nil {
		return errService("the code store: " + err.Error())
	}
	return nil
}

// ---- configuration ----

// configInput is what CreateFunction and UpdateFunctionConfiguration share.
type configInput struct {
	Description          *string
	Handler              *string
	Runtime              types.Runtime
	MemorySize, Timeout  *int32
	Role                 *string
	Environment          *types.Environment
	EphemeralStorage     *types.EphemeralStorage
	TracingConfig        *types.TracingConfig
	ImageConfig          *types.ImageConfig
	Layers               []string
	layersSet            bool
	DeadLetterConfig     *types.DeadLetterConfig
	FileSystemConfigs    []types.FileSystemConfig
	VpcConfig            *types.VpcConfig
	KMSKeyArn            *string
	SnapStart            *types.SnapStart
	LoggingConfig        *types.LoggingConfig
	CodeSigningConfigArn *string
}

// apply writes the members that were given into c; members klambda has no equivalent for
// are refused, never ignored.
func (in *configInput) apply(fc *lambdav1alpha1.FunctionConfiguration) *invoke.Error {
	switch {
	case in.VpcConfig != nil && (len(in.VpcConfig.SubnetIds) > 0 || len(in.VpcConfig.SecurityGroupIds) > 0):
		return errInvalid("klambda does not support VpcConfig: functions run in the cluster's network (use NetworkPolicies)")
	case in.KMSKeyArn != nil && *in.KMSKeyArn != "":
		return errInvalid("klambda does not support KMSKeyArn: environment variables are kept in the Function object (use Secrets)")
	case in.SnapStart != nil && in.SnapStart.ApplyOn != "" && in.SnapStart.ApplyOn != types.SnapStartApplyOnNone:
		return errInvalid("klambda does not support SnapStart")
	case in.CodeSigningConfigArn != nil:
		return errInvalid("klambda does not support CodeSigningConfigArn")
	case in.LoggingConfig != nil:
		return errInvalid("klambda does not support LoggingConfig: function logs are the pods' logs")
	case in.DeadLetterConfig != nil && in.DeadLetterConfig.TargetArn != nil && *in.DeadLetterConfig.TargetArn != "":
		return errInvalid("klambda does not take DeadLetterConfig.TargetArn: set the Function's deadLetterConfig (a Function, NATS, Kafka or SQS destination) with kubectl")
	case len(in.FileSystemConfigs) > 0:
		return errInvalid("klambda does not take EFS FileSystemConfigs: set the Function's fileSystemConfigs (a PersistentVolumeClaim) with kubectl")
	}
	if in.Description != nil {
		fc.Description = *in.Description
	}
	if in.Handler != nil {
		fc.Handler = *in.Handler
	}
	if in.Runtime != "" {
		fc.Runtime = lambdav1alpha1.Runtime(in.Runtime)
	}
	if in.MemorySize != nil {
		fc.MemorySize = *in.MemorySize
	}
	if in.Timeout != nil {
		fc.Timeout = *in.Timeout
	}
	if in.Role != nil {
		sa, e := roleToServiceAccount(*in.Role)
		if e != nil {
			return e
		}
		fc.ServiceAccountName = sa
	}
	if in.Environment != nil {
		// Variables from Secrets (valueFrom) are kept: the API shows and sets literal values only.
		var keep []lambdav1alpha1.EnvVar
		if fc.Environment != nil {
			for _, v := range fc.Environment.Variables {
				if v.ValueFrom != nil {
					if _, set := in.Environment.Variables[v.Name]; !set {
						keep = append(keep, v)
					}
				}
			}
		}
		for _, k := range sortedKeys(in.Environment.Variables) {
			keep = append(keep, lambdav1alpha1.EnvVar{Name: k, Value: in.Environment.Variables[k]})
		}
		fc.Environment = nil
		if len(keep) > 0 {
			fc.Environment = &lambdav1alpha1.Environment{Variables: keep}
		}
	}
	if in.EphemeralStorage != nil && in.EphemeralStorage.Size != nil {
		fc.EphemeralStorage = &lambdav1alpha1.EphemeralStorage{Size: *in.EphemeralStorage.Size}
	}
	if in.TracingConfig != nil && in.TracingConfig.Mode != "" {
		fc.TracingConfig = &lambdav1alpha1.TracingConfig{Mode: lambdav1alpha1.TracingMode(in.TracingConfig.Mode)}
	}
	if in.ImageConfig != nil {
		fc.ImageConfig = &lambdav1alpha1.ImageConfig{EntryPoint: in.ImageConfig.EntryPoint, Command: in.ImageConfig.Command,
			WorkingDirectory: aws.ToString(in.ImageConfig.WorkingDirectory)}
	}
	if in.layersSet {
		fc.Layers = nil
		for _, l := range in.Layers {
			ref, e := layerRef(l)
			if e != nil {
				return e
			}
			fc.Layers = append(fc.Layers, ref)
		}
	}
	return nil
}

// ---- operations ----

func (h *Handler) createFunction(c *call) (int, any, *invoke.Error) {
	var in lambda.CreateFunctionInput
	if e := c.decode(&in); e != nil {
		return 0, nil, e
	}
	if in.FunctionName == nil {
		return 0, nil, errValidation("1 validation error detected: Value null at 'functionName' failed to satisfy constraint: Member must not be null")
	}
	name, qual, e := parseFunctionName(*in.FunctionName)
	if e != nil {
		return 0, nil, e
	}
	if qual != "" {
		return 0, nil, errInvalid("A function name can't have a qualifier when the function is created.")
	}
	if e := c.authorize(Permission{"create", "functions", ""}, "CreateFunction", h.arn(name, "")); e != nil {
		return 0, nil, e
	}
	switch {
	case in.Role == nil:
		return 0, nil, errValidation("1 validation error detected: Value null at 'role' failed to satisfy constraint: Member must not be null")
	case in.Code == nil:
		return 0, nil, errValidation("1 validation error detected: Value null at 'code' failed to satisfy constraint: Member must not be null")
	case in.CapacityProviderConfig != nil, in.DurableConfig != nil, in.TenancyConfig != nil, in.PublishTo != "":
		return 0, nil, errInvalid("klambda does not support CapacityProviderConfig, DurableConfig, TenancyConfig or PublishTo")
	}
	f := &lambdav1alpha1.Function{ObjectMeta: metav1.ObjectMeta{Namespace: c.ns, Name: name,
		Labels: map[string]string{LabelManagedBy: ManagedByValue}}}
	cfg := configInput{Description: in.Description, Handler: in.Handler, Runtime: in.Runtime, MemorySize: in.MemorySize,
		Timeout: in.Timeout, Role: in.Role, Environment: in.Environment, EphemeralStorage: in.EphemeralStorage,
		TracingConfig: in.TracingConfig, ImageConfig: in.ImageConfig, Layers: in.Layers, layersSet: in.Layers != nil,
		DeadLetterConfig: in.DeadLetterConfig, FileSystemConfigs: in.FileSystemConfigs, VpcConfig: in.VpcConfig,
		KMSKeyArn: in.KMSKeyArn, SnapStart: in.SnapStart, LoggingConfig: in.LoggingConfig, CodeSigningConfigArn: in.CodeSigningConfigArn}
	if e := cfg.apply(&f.Spec.FunctionConfiguration); e != nil {
		return 0, nil, e
	}
	for _, a := range in.Architectures {
		f.Spec.Architectures = append(f.Spec.Architectures, lambdav1alpha1.Architecture(a))
	}
	f.Spec.Tags = in.Tags
	// The name must be free before the code is uploaded.
	var existing lambdav1alpha1.Function
	if err := h.Client.Get(c, client.ObjectKey{Namespace: c.ns, Name: name}, &existing); err == nil {
		return 0, nil, errConflict("Function already exist: " + name)
	} else if !apierrors.IsNotFound(err) {
		return 0, nil, fromAPI(err, "function")
	}
	code, pt, e := c.code(codeInput{ZipFile: in.Code.ZipFile, S3Bucket: in.Code.S3Bucket, S3Key: in.Code.S3Key,
		S3ObjectVersion: in.Code.S3ObjectVersion, ImageURI: in.Code.ImageUri, SourceKMSKeyArn: in.Code.SourceKMSKeyArn}, false)
	if e != nil {
		return 0, nil, e
	}
	if in.PackageType != "" && string(in.PackageType) != string(pt) {
		return 0, nil, errInvalid("PackageType " + string(in.PackageType) + " does not match the code given (" + string(pt) + ")")
	}
	f.Spec.Code = code
	f.Spec.PackageType = pt
	if err := h.Client.Create(c, f, client.FieldOwner(FieldManager)); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return 0, nil, errConflict("Function already exist: " + name)
		}
		return 0, nil, fromAPI(err, "function")
	}
	if in.Publish {
		if _, e := c.newVersion(f, "", "", ""); e != nil {
			return 0, nil, e
		}
	}
	return http.StatusCreated, h.configuration(name, contract.Latest, &f.Spec.FunctionConfiguration, functionState(f)), nil
}

// resolve is the configuration of fn's $LATEST, version or alias (the alias's primary version).
func (c *call) resolve(name, qualifier string) (*lambdav1alpha1.Function, types.FunctionConfiguration, *invoke.Error) {
	f, _, cfg, e := c.resolveVersion(name, qualifier)
	return f, cfg, e
}

// resolveVersion is resolve, with the Version the configuration is of (nil: $LATEST).
func (c *call) resolveVersion(name, qualifier string) (*lambdav1alpha1.Function, *lambdav1alpha1.Version, types.FunctionConfiguration, *invoke.Error) {
	f, e := c.function(name)
	if e != nil {
		return nil, nil, types.FunctionConfiguration{}, e
	}
	if qualifier == "" || qualifier == contract.Latest {
		return f, nil, c.h.configuration(name, contract.Latest, &f.Spec.FunctionConfiguration, functionState(f)), nil
	}
	num := qualifier
	if !isNumber(qualifier) {
		a, e := c.alias(name, qualifier)
		if e != nil {
			return nil, nil, types.FunctionConfiguration{}, e
		}
		num = a.Spec.FunctionVersion
		if num == contract.Latest {
			return f, nil, c.h.configuration(name, contract.Latest, &f.Spec.FunctionConfiguration, functionState(f)), nil
		}
	}
	v, e := c.version(name, num)
	if e != nil {
		return nil, nil, types.FunctionConfiguration{}, e
	}
	return f, v, c.h.versionConfiguration(name, v), nil
}

func (h *Handler) versionConfiguration(name string, v *lambdav1alpha1.Version) types.FunctionConfiguration {
	cfg := v.Status.Configuration
	if cfg == nil {
		cfg = &lambdav1alpha1.FunctionConfiguration{}
	}
	return h.configuration(name, v.Status.Version, cfg, versionState(v))
}

func isNumber(s string) bool {
	if s == "" {
		return false
	}
	_, err := strconv.ParseUint(s, 10, 64)
	return err == nil
}

func (h *Handler) getFunction(c *call) (int, any, *invoke.Error) {
	name, qual, e := c.target()
	if e != nil {
		return 0, nil, e
	}
	if e := c.authorize(Permission{"get", "functions", name}, "GetFunction", h.arn(name, qual)); e != nil {
		return 0, nil, e
	}
	f, v, cfg, e := c.resolveVersion(name, qual)
	if e != nil {
		return 0, nil, e
	}
	out := &lambda.GetFunctionOutput{Configuration: &cfg, Tags: f.Spec.Tags, Code: c.codeLocation(f, v, cfg)}
	if f.Spec.ReservedConcurrentExecutions != nil {
		out.Concurrency = &types.Concurrency{ReservedConcurrentExecutions: f.Spec.ReservedConcurrentExecutions}
	}
	return http.StatusOK, map[string]any{"Configuration": out.Configuration, "Code": out.Code, "Tags": out.Tags, "Concurrency": out.Concurrency}, nil
}

// codeLocation is GetFunction's Code: the image; a link valid CodeLocationTTL to the
// archive in the code store when the store holds the code of cfg (of version v, or of the
// function's $LATEST when v is nil); else where the code comes from (code.url, s3://).
func (c *call) codeLocation(f *lambdav1alpha1.Function, v *lambdav1alpha1.Version, cfg types.FunctionConfiguration) *types.FunctionCodeLocation {
	loc := &types.FunctionCodeLocation{}
	code := f.Spec.Code
	if code.ImageURI != "" {
		loc.RepositoryType, loc.ImageUri = aws.String("ECR"), aws.String(code.ImageURI)
		loc.ResolvedImageUri = strOrNil(f.Status.ResolvedImageURI)
		return loc
	}
	sum := aws.ToString(cfg.CodeSha256)
	if sum == "" && v == nil && code.SHA256 != "" {
		sum = hexToB64(strings.ToLower(code.SHA256)) // the controller has not reported a digest yet
	}
	stored, specURL, specSHA := f.Status.CodeStoreRef != "" && f.Status.CodeSha256 == sum, code.URL, code.SHA256
	if v != nil {
		stored, specURL, specSHA = v.Status.CodeStoreRef != "" && v.Status.CodeSha256 == sum, "", ""
	}
	if hx := c.h.storedCode(sum, stored, specURL, specSHA); hx != "" {
		loc.RepositoryType, loc.Location = aws.String("S3"), aws.String(c.codeLink(hx))
		return loc
	}
	switch {
	case code.URL != "":
		loc.RepositoryType, loc.Location = aws.String("S3"), aws.String(code.URL)
	case code.S3 != nil:
		loc.RepositoryType = aws.String("S3")
		loc.Location = aws.String("s3://" + code.S3.Bucket + "/" + code.S3.Key)
	}
	return loc
}

func (h *Handler) getFunctionConfiguration(c *call) (int, any, *invoke.Error) {
	name, qual, e := c.target()
	if e != nil {
		return 0, nil, e
	}
	if e := c.authorize(Permission{"get", "functions", name}, "GetFunctionConfiguration", h.arn(name, qual)); e != nil {
		return 0, nil, e
	}
	_, cfg, e := c.resolve(name, qual)
	if e != nil {
		return 0, nil, e
	}
	return http.StatusOK, cfg, nil
}

// listPage pages a sorted list by Marker (the base64 key of the last item answered) and
// MaxItems (1–max, default def).
func listPage[T any](c *call, items []T, key func(T) string, def, maxItems int) ([]T, *string, *invoke.Error) {
	n := def
	if s := c.query.Get("MaxItems"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 || v > maxItems {
			return nil, nil, errValidation("1 validation error detected: Value '" + s + "' at 'maxItems' failed to satisfy constraint: Member must have value between 1 and " + strconv.Itoa(maxItems))
		}
		n = v
	}
	start := 0
	if m := c.query.Get("Marker"); m != "" {
		after, err := base64.RawURLEncoding.DecodeString(m)
		if err != nil {
			return nil, nil, errInvalid("Invalid Marker: " + m)
		}
		start = sort.Search(len(items), func(i int) bool { return key(items[i]) > string(after) })
	}
	end := min(start+n, len(items))
	page := items[start:end]
	if end < len(items) {
		return page, aws.String(base64.RawURLEncoding.EncodeToString([]byte(key(items[end-1])))), nil
	}
	return page, nil, nil
}

func (h *Handler) listFunctions(c *call) (int, any, *invoke.Error) {
	if e := c.authorize(Permission{"list", "functions", ""}, "ListFunctions", "*"); e != nil {
		return 0, nil, e
	}
	all := false
	switch v := c.query.Get("FunctionVersion"); v {
	case "":
	case "ALL":
		all = true
	default:
		return 0, nil, errValidation("1 validation error detected: Value '" + v + "' at 'functionVersion' failed to satisfy constraint: Member must satisfy enum value set: [ALL]")
	}
	if c.query.Get("MasterRegion") != "" {
		return 0, nil, errInvalid("klambda has no Lambda@Edge replicas: MasterRegion is not supported")
	}
	var fl lambdav1alpha1.FunctionList
	if err := h.Client.List(c, &fl, client.InNamespace(c.ns)); err != nil {
		return 0, nil, fromAPI(err, "functions")
	}
	type item struct {
		key string
		cfg types.FunctionConfiguration
	}
	var items []item
	for i := range fl.Items {
		f := &fl.Items[i]
		items = append(items, item{f.Name + "\x00", h.configuration(f.Name, contract.Latest, &f.Spec.FunctionConfiguration, functionState(f))})
	}
	if all {
		var vl lambdav1alpha1.VersionList
		if err := h.Client.List(c, &vl, client.InNamespace(c.ns)); err != nil {
			return 0, nil, fromAPI(err, "versions")
		}
		for _, v := range publishedVersions(vl.Items) {
			items = append(items, item{v.Spec.FunctionName + "\x00" + versionSortKey(v.Status.Version), h.versionConfiguration(v.Spec.FunctionName, v)})
		}
	}
	sort.Slice(items, func(i, j int) bool { return items[i].key < items[j].key })
	page, next, e := listPage(c, items, func(it item) string { return it.key }, 50, 10000)
	if e != nil {
		return 0, nil, e
	}
	out := lambda.ListFunctionsOutput{NextMarker: next, Functions: []types.FunctionConfiguration{}}
	for _, it := range page {
		out.Functions = append(out.Functions, it.cfg)
	}
	return http.StatusOK, map[string]any{"Functions": out.Functions, "NextMarker": out.NextMarker}, nil
}

// versionSortKey sorts version numbers numerically.
func versionSortKey(v string) string { return strings.Repeat("0", max(0, 20-len(v))) + v }

// beginUpdate authorizes and reads the function for an update: it must be the API's to change, its last
// update must be over (Lambda's ResourceConflictException while InProgress) and RevisionId,
// when given, must still be its revision.
func (c *call) beginUpdate(action, name string, revision *string) (*lambdav1alpha1.Function, *invoke.Error) {
	f, e := c.functionToChange("update", action, name)
	if e != nil {
		return nil, e
	}
	st := functionState(f)
	if revision != nil && *revision != st.revisionID {
		return nil, errRevision()
	}
	if st.update == lambdav1alpha1.LastUpdateInProgress || st.state == lambdav1alpha1.StatePending {
		return nil, errUpdateInProgress(c.h.arn(name, ""))
	}
	return f, nil
}

func (h *Handler) updateFunctionCode(c *call) (int, any, *invoke.Error) {
	name, qual, e := parseFunctionName(c.r.PathValue("fn"))
	if e != nil {
		return 0, nil, e
	}
	if qual != "" {
		return 0, nil, errInvalid("UpdateFunctionCode updates $LATEST: the function name can't have a qualifier.")
	}
	var in lambda.UpdateFunctionCodeInput
	if e := c.decode(&in); e != nil {
		return 0, nil, e
	}
	if in.PublishTo != "" || in.S3ObjectStorageMode != "" {
		return 0, nil, errInvalid("klambda does not support PublishTo or S3ObjectStorageMode")
	}
	f, e := c.beginUpdate("UpdateFunctionCode", name, in.RevisionId)
	if e != nil {
		return 0, nil, e
	}
	code, pt, e := c.code(codeInput{ZipFile: in.ZipFile, S3Bucket: in.S3Bucket, S3Key: in.S3Key, S3ObjectVersion: in.S3ObjectVersion,
		ImageURI: in.ImageUri, SourceKMSKeyArn: in.SourceKMSKeyArn}, in.DryRun)
	if e != nil {
		return 0, nil, e
	}
	if pt != f.Spec.PackageType && f.Spec.PackageType != "" {
		return 0, nil, errInvalid("Please provide ImageUri when updating a function with packageType Image, and ZipFile or S3 for packageType Zip.")
	}
	f.Spec.Code = code
	if len(in.Architectures) > 0 {
		f.Spec.Architectures = nil
		for _, a := range in.Architectures {
			f.Spec.Architectures = append(f.Spec.Architectures, lambdav1alpha1.Architecture(a))
		}
	}
	// Publish: the version must capture this code, not the code $LATEST still runs while
	// the update is in progress: its codeSha256 precondition holds it until the function
	// runs the new code (an S3 or image source's digest is known only once it is resolved).
	publishSha := ""
	if in.Publish && code.SHA256 != "" {
		publishSha = hexToB64(code.SHA256)
	}
	return c.finishUpdate(f, in.DryRun, in.Publish, publishSha)
}

// finishUpdate writes f (optimistically: a change since it was read is
// PreconditionFailedException), or only has the apiserver validate it for DryRun. With
// publish it then publishes a version, as PublishVersion with codeSha256 does, and answers
// that version's configuration, as Lambda does.
func (c *call) finishUpdate(f *lambdav1alpha1.Function, dryRun, publish bool, codeSha256 string) (int, any, *invoke.Error) {
	opts := []client.UpdateOption{client.FieldOwner(FieldManager)}
	if dryRun {
		opts = append(opts, client.DryRunAll)
	}
	if err := c.h.Client.Update(c, f, opts...); err != nil {
		return 0, nil, fromAPI(err, "function")
	}
	if publish && !dryRun {
		v, e := c.newVersion(f, "", codeSha256, "")
		if e != nil {
			return 0, nil, e
		}
		_, cfg, e := c.awaitVersion(f.Name, v)
		if e != nil {
			return 0, nil, e
		}
		return http.StatusOK, cfg, nil
	}
	return http.StatusOK, c.h.configuration(f.Name, contract.Latest, &f.Spec.FunctionConfiguration, functionState(f)), nil
}

func (h *Handler) updateFunctionConfiguration(c *call) (int, any, *invoke.Error) {
	name, qual, e := parseFunctionName(c.r.PathValue("fn"))
	if e != nil {
		return 0, nil, e
	}
	if qual != "" {
		return 0, nil, errInvalid("UpdateFunctionConfiguration updates $LATEST: the function name can't have a qualifier.")
	}
	var in lambda.UpdateFunctionConfigurationInput
	if e := c.decode(&in); e != nil {
		return 0, nil, e
	}
	if in.CapacityProviderConfig != nil || in.DurableConfig != nil {
		return 0, nil, errInvalid("klambda does not support CapacityProviderConfig or DurableConfig")
	}
	f, e := c.beginUpdate("UpdateFunctionConfiguration", name, in.RevisionId)
	if e != nil {
		return 0, nil, e
	}
	cfg := configInput{Description: in.Description, Handler: in.Handler, Runtime: in.Runtime, MemorySize: in.MemorySize,
		Timeout: in.Timeout, Role: in.Role, Environment: in.Environment, EphemeralStorage: in.EphemeralStorage,
		TracingConfig: in.TracingConfig, ImageConfig: in.ImageConfig, Layers: in.Layers, layersSet: in.Layers != nil,
		DeadLetterConfig: in.DeadLetterConfig, FileSystemConfigs: in.FileSystemConfigs, VpcConfig: in.VpcConfig,
		KMSKeyArn: in.KMSKeyArn, SnapStart: in.SnapStart, LoggingConfig: in.LoggingConfig}
	if e := cfg.apply(&f.Spec.FunctionConfiguration); e != nil {
		return 0, nil, e
	}
	return c.finishUpdate(f, false, false, "")
}

func (h *Handler) deleteFunction(c *call) (int, any, *invoke.Error) {
	name, qual, e := c.target()
	if e != nil {
		return 0, nil, e
	}
	if qual == contract.Latest {
		return 0, nil, errInvalid("$LATEST version cannot be deleted without deleting the function.")
	}
	if qual != "" && !isNumber(qual) {
		return 0, nil, errInvalid("Deletion of aliases is not supported with DeleteFunction: use DeleteAlias.")
	}
	if qual != "" {
		if _, e := c.object("delete", "DeleteFunction", name, qual); e != nil {
			return 0, nil, e
		}
		var al lambdav1alpha1.AliasList
		if err := h.Client.List(c, &al, client.InNamespace(c.ns)); err != nil {
			return 0, nil, fromAPI(err, "aliases")
		}
		var users []string
		for _, a := range al.Items {
			if a.Spec.FunctionName == name && (a.Spec.FunctionVersion == qual || hasWeight(a, qual)) {
				users = append(users, aliasName(&a))
			}
		}
		if len(users) > 0 {
			return 0, nil, errConflict("Unable to delete version because the following aliases reference it: " + strings.Join(users, ", "))
		}
		for _, d := range c.versionObjects(name, qual) {
			if err := h.Client.Delete(c, d); err != nil && !apierrors.IsNotFound(err) {
				return 0, nil, fromAPI(err, "version")
			}
		}
		return http.StatusNoContent, nil, nil
	}
	f, e := c.functionToChange("delete", "DeleteFunction", name)
	if e != nil {
		return 0, nil, e
	}
	// Its Versions and Aliases go with it (their controller references the Function).
	if err := h.Client.Delete(c, f, client.Preconditions{UID: &f.UID}, client.PropagationPolicy(metav1.DeletePropagationBackground)); err != nil {
		if apierrors.IsNotFound(err) {
			return 0, nil, errFunctionNotFound(h.arn(name, ""))
		}
		return 0, nil, fromAPI(err, "function")
	}
	return http.StatusNoContent, nil, nil
}
