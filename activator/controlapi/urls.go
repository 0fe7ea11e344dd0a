package controlapi

import (
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/activator/invoke"
	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// A function URL config is spec.functionUrlConfig of the Function (no Qualifier, or
// $LATEST) or of the Alias the Qualifier names; FunctionUrl is their status.functionUrl,
// which the function and alias controllers write (the activator serves the URL).

// URLWait bounds how long CreateFunctionUrlConfig waits for the controller to report the
// new URL (Lambda answers it at once).
var URLWait = 30 * time.Second

// urlTarget authorizes verb on what the function name and Qualifier name and reads it.
func (c *call) urlTarget(verb, action string) (string, string, *qualified, *invoke.Error) {
	name, qual, e := c.target()
	if e != nil {
		return "", "", nil, e
	}
	if isNumber(qual) {
		return "", "", nil, errValidation("1 validation error detected: Value '" + qual + "' at 'qualifier' failed to satisfy constraint: Member must satisfy regular expression pattern: ((?!^\\d+$)^[0-9a-zA-Z-_]+$)")
	}
	if qual == contract.Latest {
		qual = ""
	}
	q, e := c.object(verb, action, name, qual)
	if e != nil {
		return "", "", nil, e
	}
	return name, qual, q, nil
}

// urlConfigs is the function URL config of the Function and Aliases (Versions have none).
var urlConfigs = setting[lambdav1alpha1.FunctionURLConfig]{
	fn:       func(f *lambdav1alpha1.Function) **lambdav1alpha1.FunctionURLConfig { return &f.Spec.FunctionURLConfig },
	alias:    func(a *lambdav1alpha1.Alias) **lambdav1alpha1.FunctionURLConfig { return &a.Spec.FunctionURLConfig },
	target:   (*call).urlTarget,
	notFound: errURLNotFound,
}

// urlConfig is the object's URL config (to read or set) and its reported URL.
func urlConfig(q *qualified) (**lambdav1alpha1.FunctionURLConfig, string) {
	if q.fn != nil {
		return urlConfigs.of(q), q.fn.Status.FunctionURL
	}
	return urlConfigs.of(q), q.alias.Status.FunctionURL
}

func errURLNotFound(arn string) *invoke.Error {
	return errNotFound("The resource you requested does not exist: no function URL config for " + arn)
}

// urlInput is what CreateFunctionUrlConfig and UpdateFunctionUrlConfig take.
type urlInput struct {
	AuthType   types.FunctionUrlAuthType
	Cors       *types.Cors
	InvokeMode types.InvokeMode
}

// apply writes the members given into cfg.
func (in *urlInput) apply(cfg *lambdav1alpha1.FunctionURLConfig) *invoke.Error {
	switch in.AuthType {
	case "":
	case types.FunctionUrlAuthTypeNone, types.FunctionUrlAuthTypeAwsIam, types.FunctionUrlAuthType(lambdav1alpha1.FunctionURLAuthKubernetes):
		cfg.AuthType = lambdav1alpha1.FunctionURLAuthType(in.AuthType)
	default:
		return errValidation("1 validation error detected: Value '" + string(in.AuthType) + "' at 'authType' failed to satisfy constraint: Member must satisfy enum value set: [AWS_IAM, NONE] (klambda also takes KUBERNETES, the same as AWS_IAM)")
	}
	switch in.InvokeMode {
	case "":
	case types.InvokeModeBuffered, types.InvokeModeResponseStream:
		cfg.InvokeMode = lambdav1alpha1.InvokeMode(in.InvokeMode)
	default:
		return errValidation("1 validation error detected: Value '" + string(in.InvokeMode) + "' at 'invokeMode' failed to satisfy constraint: Member must satisfy enum value set: [BUFFERED, RESPONSE_STREAM]")
	}
	if in.Cors != nil {
		cfg.Cors = &lambdav1alpha1.Cors{AllowCredentials: aws.ToBool(in.Cors.AllowCredentials), AllowHeaders: in.Cors.AllowHeaders,
			AllowMethods: in.Cors.AllowMethods, AllowOrigins: in.Cors.AllowOrigins, ExposeHeaders: in.Cors.ExposeHeaders, MaxAge: in.Cors.MaxAge}
	}
	return nil
}

// urlOutput is Lambda's FunctionUrlConfig of the object q: CreationTime is the object's
// creation and LastModifiedTime the last write of its spec (klambda keeps no timestamps of
// the URL config itself).
func (h *Handler) urlOutput(name, qual string, obj client.Object, cfg *lambdav1alpha1.FunctionURLConfig, url string) types.FunctionUrlConfig {
	out := types.FunctionUrlConfig{
		FunctionUrl:      strOrNil(url),
		FunctionArn:      aws.String(h.arn(name, qual)),
		AuthType:         types.FunctionUrlAuthType(cfg.AuthType),
		InvokeMode:       types.InvokeMode(cfg.InvokeMode),
		CreationTime:     aws.String(isoTime(obj.GetCreationTimestamp().Time)),
		LastModifiedTime: aws.String(isoTime(specModified(obj))),
	}
	if out.InvokeMode == "" {
		out.InvokeMode = types.InvokeModeBuffered
	}
	if c := cfg.Cors; c != nil {
		out.Cors = &types.Cors{AllowCredentials: aws.Bool(c.AllowCredentials), AllowHeaders: c.AllowHeaders, AllowMethods: c.AllowMethods,
			AllowOrigins: c.AllowOrigins, ExposeHeaders: c.ExposeHeaders, MaxAge: c.MaxAge}
	}
	return out
}

func (h *Handler) createURL(c *call) (int, any, *invoke.Error) {
	var in urlInput
	if e := c.decode(&in); e != nil {
		return 0, nil, e
	}
	if in.AuthType == "" {
		return 0, nil, errValidation("1 validation error detected: Value null at 'authType' failed to satisfy constraint: Member must not be null")
	}
	name, qual, q, e := c.urlTarget("update", "CreateFunctionUrlConfig")
	if e != nil {
		return 0, nil, e
	}
	spec, _ := urlConfig(q)
	if *spec != nil {
		return 0, nil, errConflict("Failed to create function url config for [functionArn = " + h.arn(name, qual) + "]. Error message:  FunctionUrlConfig exists for this Lambda function")
	}
	cfg := &lambdav1alpha1.FunctionURLConfig{}
	if e := in.apply(cfg); e != nil {
		return 0, nil, e
	}
	*spec = cfg
	obj := q.object()
	if err := h.Client.Update(c, obj, client.FieldOwner(FieldManager)); err != nil {
		return 0, nil, fromAPI(err, q.kind())
	}
	url := c.awaitURL(q)
	spec, _ = urlConfig(q)
	out := h.urlOutput(name, qual, obj, *spec, url)
	out.LastModifiedTime = nil
	return http.StatusCreated, out, nil
}

// awaitURL waits (at most URLWait) for the controller to report the object's URL, and
// answers it ("" if it did not in time: GetFunctionUrlConfig shows it once it has).
func (c *call) awaitURL(q *qualified) string {
	deadline := time.Now().Add(URLWait)
	for {
		if _, url := urlConfig(q); url != "" {
			return url
		}
		if time.Now().After(deadline) {
			return ""
		}
		select {
		case <-c.Done():
			return ""
		case <-time.After(200 * time.Millisecond):
		}
		if err := c.h.Client.Get(c, client.ObjectKeyFromObject(q.object()), q.object()); err != nil {
			return ""
		}
	}
}

func (h *Handler) getURL(c *call) (int, any, *invoke.Error) {
	name, qual, q, e := c.urlTarget("get", "GetFunctionUrlConfig")
	if e != nil {
		return 0, nil, e
	}
	spec, url := urlConfig(q)
	if *spec == nil {
		return 0, nil, errURLNotFound(h.arn(name, qual))
	}
	return http.StatusOK, h.urlOutput(name, qual, q.object(), *spec, url), nil
}

func (h *Handler) updateURL(c *call) (int, any, *invoke.Error) {
	var in urlInput
	if e := c.decode(&in); e != nil {
		return 0, nil, e
	}
	name, qual, q, e := c.urlTarget("update", "UpdateFunctionUrlConfig")
	if e != nil {
		return 0, nil, e
	}
	spec, url := urlConfig(q)
	if *spec == nil {
		return 0, nil, errURLNotFound(h.arn(name, qual))
	}
	if e := in.apply(*spec); e != nil {
		return 0, nil, e
	}
	if err := h.Client.Update(c, q.object(), client.FieldOwner(FieldManager)); err != nil {
		return 0, nil, fromAPI(err, q.kind())
	}
	spec, _ = urlConfig(q)
	return http.StatusOK, h.urlOutput(name, qual, q.object(), *spec, url), nil
}

func (h *Handler) listURLs(c *call) (int, any, *invoke.Error) {
	name, page, next, e := urlConfigs.list(c, "ListFunctionUrlConfigs", func(_ string, it held[lambdav1alpha1.FunctionURLConfig]) string {
		if it.q.fn != nil {
			return "\x00"
		}
		return "\x01" + it.qual
	})
	if e != nil {
		return 0, nil, e
	}
	out := []types.FunctionUrlConfig{}
	for _, it := range page {
		qual := it.qual
		if it.q.fn != nil {
			qual = ""
		}
		_, url := urlConfig(it.q)
		out = append(out, h.urlOutput(name, qual, it.q.object(), it.cfg, url))
	}
	return http.StatusOK, map[string]any{"FunctionUrlConfigs": out, "NextMarker": next}, nil
}
