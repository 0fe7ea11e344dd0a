package controlapi

import (
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/activator/invoke"
	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// A layer version is a LayerVersion object (spec.layerName: the layer; status.version: its
// number, which the layer version controller assigns once the content is resolved).
// PublishLayerVersion keeps a ZipFile in the code store as CreateFunction does.

var layerNameRE = regexp.MustCompile(`^[a-zA-Z0-9-_]{1,140}$`)

// layerName reads the {layer} path parameter: a name or a layer ARN.
func layerName(s string) (string, *invoke.Error) {
	name := s
	if strings.HasPrefix(s, "arn:") {
		p := strings.Split(s, ":")
		if len(p) != 7 || p[2] != "lambda" || p[5] != "layer" {
			name = ""
		} else {
			name = p[6]
		}
	}
	if !layerNameRE.MatchString(name) {
		return "", errValidation("1 validation error detected: Value '" + s + "' at 'layerName' failed to satisfy constraint: Member must satisfy regular expression pattern: (arn:[a-zA-Z0-9-]+:lambda:[a-zA-Z0-9-]+:\\d{12}:layer:[a-zA-Z0-9-_]+)|[a-zA-Z0-9-_]+")
	}
	return name, nil
}

// layerVersions are the published, not deleted versions of layer (all layers for ""),
// by name, then newest first.
func (c *call) layerVersions(layer string) ([]*lambdav1alpha1.LayerVersion, *invoke.Error) {
	var l lambdav1alpha1.LayerVersionList
	if err := c.h.Client.List(c, &l, client.InNamespace(c.ns)); err != nil {
		return nil, fromAPI(err, "layer versions")
	}
	var out []*lambdav1alpha1.LayerVersion
	for i := range l.Items {
		lv := &l.Items[i]
		if lv.Status.Version == 0 || lv.DeletionTimestamp != nil || (layer != "" && lv.EffectiveLayerName() != layer) {
			continue
		}
		out = append(out, lv)
	}
	sort.Slice(out, func(i, j int) bool {
		if a, b := out[i].EffectiveLayerName(), out[j].EffectiveLayerName(); a != b {
			return a < b
		}
		return out[i].Status.Version > out[j].Status.Version
	})
	return out, nil
}

func (c *call) layerVersion(layer string, num int64) (*lambdav1alpha1.LayerVersion, *invoke.Error) {
	vs, e := c.layerVersions(layer)
	if e != nil {
		return nil, e
	}
	for _, lv := range vs {
		if lv.Status.Version == num {
			return lv, nil
		}
	}
	return nil, errNotFound("The resource you requested does not exist: " + contract.LayerVersionARN(c.h.Region, c.h.AccountID, layer, num))
}

// layerVersionTarget reads {layer} and {num}.
func (c *call) layerVersionTarget() (string, int64, *invoke.Error) {
	layer, e := layerName(c.r.PathValue("layer"))
	if e != nil {
		return "", 0, e
	}
	s := c.r.PathValue("num")
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 1 {
		return "", 0, errValidation("1 validation error detected: Value '" + s + "' at 'versionNumber' failed to satisfy constraint: Member must be a version number")
	}
	return layer, n, nil
}

// layerOutput is Lambda's GetLayerVersion answer for lv: Content.Location is a link valid
// CodeLocationTTL when the code store holds the content, else where it comes from.
func (c *call) layerOutput(lv *lambdav1alpha1.LayerVersion) map[string]any {
	h := c.h
	item := h.layerListItem(lv)
	content := types.LayerVersionContentOutput{CodeSha256: strOrNil(lv.Status.CodeSha256), CodeSize: lv.Status.CodeSize}
	src := lv.Spec.Content
	switch hx := h.storedCode(lv.Status.CodeSha256, lv.Status.CodeStoreRef != "", src.URL, src.SHA256); {
	case hx != "":
		content.Location = aws.String(c.codeLink(hx))
	case src.URL != "":
		content.Location = aws.String(src.URL)
	case src.S3 != nil:
		content.Location = aws.String("s3://" + src.S3.Bucket + "/" + src.S3.Key)
	}
	return map[string]any{"Content": content, "LayerArn": h.layerARNOf(lv), "LayerVersionArn": item.LayerVersionArn,
		"Version": item.Version, "Description": item.Description, "CreatedDate": item.CreatedDate, "LicenseInfo": item.LicenseInfo,
		"CompatibleRuntimes": item.CompatibleRuntimes, "CompatibleArchitectures": item.CompatibleArchitectures}
}

func (h *Handler) layerARNOf(lv *lambdav1alpha1.LayerVersion) string {
	return contract.LayerARN(h.Region, h.AccountID, lv.EffectiveLayerName())
}

func (h *Handler) layerListItem(lv *lambdav1alpha1.LayerVersion) types.LayerVersionsListItem {
	out := types.LayerVersionsListItem{
		LayerVersionArn: aws.String(contract.LayerVersionARN(h.Region, h.AccountID, lv.EffectiveLayerName(), lv.Status.Version)),
		Version:         lv.Status.Version, Description: strOrNil(lv.Spec.Description), LicenseInfo: strOrNil(lv.Spec.LicenseInfo),
	}
	if lv.Status.CreatedDate != nil {
		out.CreatedDate = aws.String(lambdaTime(lv.Status.CreatedDate.Time))
	}
	for _, r := range lv.Spec.CompatibleRuntimes {
		out.CompatibleRuntimes = append(out.CompatibleRuntimes, types.Runtime(r))
	}
	for _, a := range lv.Spec.CompatibleArchitectures {
		out.CompatibleArchitectures = append(out.CompatibleArchitectures, types.Architecture(a))
	}
	return out
}

// layerObjectPrefix is the generateName of a layer's LayerVersion objects.
func layerObjectPrefix(layer string) string {
	p := sanitize(layer)
	if p == "" {
		p = "layer"
	}
	return p + "-"
}

func (h *Handler) publishLayerVersion(c *call) (int, any, *invoke.Error) {
	layer, e := layerName(c.r.PathValue("layer"))
	if e != nil {
		return 0, nil, e
	}
	var in lambda.PublishLayerVersionInput
	if e := c.decode(&in); e != nil {
		return 0, nil, e
	}
	if in.Content == nil {
		return 0, nil, errValidation("1 validation error detected: Value null at 'content' failed to satisfy constraint: Member must not be null")
	}
	if e := c.authorize(Permission{"create", "layerversions", ""}, "PublishLayerVersion", contract.LayerARN(h.Region, h.AccountID, layer)); e != nil {
		return 0, nil, e
	}
	code, _, e := c.code(codeInput{ZipFile: in.Content.ZipFile, S3Bucket: in.Content.S3Bucket, S3Key: in.Content.S3Key,
		S3ObjectVersion: in.Content.S3ObjectVersion}, false)
	if e != nil {
		return 0, nil, e
	}
	lv := &lambdav1alpha1.LayerVersion{ObjectMeta: metav1.ObjectMeta{Namespace: c.ns, GenerateName: layerObjectPrefix(layer),
		Labels: map[string]string{LabelManagedBy: ManagedByValue}},
		Spec: lambdav1alpha1.LayerVersionSpec{LayerName: layer, Content: code.CodeSource, Description: aws.ToString(in.Description),
			LicenseInfo: aws.ToString(in.LicenseInfo)}}
	for _, r := range in.CompatibleRuntimes {
		lv.Spec.CompatibleRuntimes = append(lv.Spec.CompatibleRuntimes, lambdav1alpha1.Runtime(r))
	}
	for _, a := range in.CompatibleArchitectures {
		lv.Spec.CompatibleArchitectures = append(lv.Spec.CompatibleArchitectures, lambdav1alpha1.Architecture(a))
	}
	if err := h.Client.Create(c, lv, client.FieldOwner(FieldManager)); err != nil {
		return 0, nil, fromAPI(err, "layer version")
	}
	// Wait for the layer version controller to resolve the content and number it (or refuse it).
	deadline := time.Now().Add(PublishWait)
	for {
		var got lambdav1alpha1.LayerVersion
		if err := h.Client.Get(c, client.ObjectKeyFromObject(lv), &got); err != nil {
			return 0, nil, fromAPI(err, "layer version")
		}
		if got.Status.Version != 0 && meta.IsStatusConditionTrue(got.Status.Conditions, contract.ConditionReady) {
			return http.StatusCreated, c.layerOutput(&got), nil
		}
		if st := meta.FindStatusCondition(got.Status.Conditions, contract.ConditionStalled); st != nil && st.Status == metav1.ConditionTrue &&
			st.ObservedGeneration == got.Generation {
			_ = h.Client.Delete(c, &got)
			return 0, nil, errInvalid("The layer version could not be published: " + st.Message)
		}
		if time.Now().After(deadline) {
			return 0, nil, errService("the layer version controller did not publish " + got.Name + " within " + PublishWait.String() + " (kubectl get lv " + got.Name + ")")
		}
		select {
		case <-c.Done():
			return 0, nil, errService("the request was cancelled")
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (h *Handler) getLayerVersion(c *call) (int, any, *invoke.Error) {
	layer, num, e := c.layerVersionTarget()
	if e != nil {
		return 0, nil, e
	}
	return h.answerLayerVersion(c, "GetLayerVersion", layer, num)
}

func (h *Handler) answerLayerVersion(c *call, action, layer string, num int64) (int, any, *invoke.Error) {
	if e := c.authorize(Permission{"get", "layerversions", ""}, action, contract.LayerVersionARN(h.Region, h.AccountID, layer, num)); e != nil {
		return 0, nil, e
	}
	lv, e := c.layerVersion(layer, num)
	if e != nil {
		return 0, nil, e
	}
	return http.StatusOK, c.layerOutput(lv), nil
}

// getLayerVersionByARN is GET /2018-10-31/layers?find=LayerVersion&Arn=….
func (h *Handler) getLayerVersionByARN(c *call) (int, any, *invoke.Error) {
	arn := c.query.Get("Arn")
	p := strings.Split(arn, ":")
	if len(p) != 8 || p[0] != "arn" || p[2] != "lambda" || p[5] != "layer" {
		return 0, nil, errValidation("1 validation error detected: Value '" + arn + "' at 'arn' failed to satisfy constraint: Member must satisfy regular expression pattern: arn:[a-zA-Z0-9-]+:lambda:[a-zA-Z0-9-]+:\\d{12}:layer:[a-zA-Z0-9-_]+:[0-9]+")
	}
	layer, e := layerName(p[6])
	if e != nil {
		return 0, nil, e
	}
	num, err := strconv.ParseInt(p[7], 10, 64)
	if err != nil || num < 1 {
		return 0, nil, errValidation("1 validation error detected: Value '" + arn + "' at 'arn' failed to satisfy constraint: the version must be a number")
	}
	return h.answerLayerVersion(c, "GetLayerVersionByArn", layer, num)
}

// matches: the version is compatible with the CompatibleRuntime and CompatibleArchitecture filters.
func (c *call) matches(lv *lambdav1alpha1.LayerVersion) bool {
	if r := c.query.Get("CompatibleRuntime"); r != "" && !containsString(lv.Spec.CompatibleRuntimes, r) {
		return false
	}
	if a := c.query.Get("CompatibleArchitecture"); a != "" && !containsString(lv.Spec.CompatibleArchitectures, a) {
		return false
	}
	return true
}

func containsString[S ~string](list []S, s string) bool {
	for _, v := range list {
		if string(v) == s {
			return true
		}
	}
	return false
}

func (h *Handler) listLayers(c *call) (int, any, *invoke.Error) {
	if c.query.Get("find") == "LayerVersion" {
		return h.getLayerVersionByARN(c)
	}
	if e := c.authorize(Permission{"list", "layerversions", ""}, "ListLayers", "*"); e != nil {
		return 0, nil, e
	}
	vs, e := c.layerVersions("")
	if e != nil {
		return 0, nil, e
	}
	var items []types.LayersListItem
	for _, lv := range vs { // by name, newest first: the first match of each name is its latest
		name := lv.EffectiveLayerName()
		if !c.matches(lv) || (len(items) > 0 && aws.ToString(items[len(items)-1].LayerName) == name) {
			continue
		}
		it := h.layerListItem(lv)
		items = append(items, types.LayersListItem{LayerName: aws.String(name), LayerArn: aws.String(h.layerARNOf(lv)), LatestMatchingVersion: &it})
	}
	page, next, e := listPage(c, items, func(it types.LayersListItem) string { return aws.ToString(it.LayerName) }, 50, 50)
	if e != nil {
		return 0, nil, e
	}
	if page == nil {
		page = []types.LayersListItem{}
	}
	return http.StatusOK, map[string]any{"Layers": page, "NextMarker": next}, nil
}

func (h *Handler) listLayerVersions(c *call) (int, any, *invoke.Error) {
	layer, e := layerName(c.r.PathValue("layer"))
	if e != nil {
		return 0, nil, e
	}
	if e := c.authorize(Permission{"list", "layerversions", ""}, "ListLayerVersions", contract.LayerARN(h.Region, h.AccountID, layer)); e != nil {
		return 0, nil, e
	}
	vs, e := c.layerVersions(layer)
	if e != nil {
		return 0, nil, e
	}
	var items []*lambdav1alpha1.LayerVersion
	for _, lv := range vs {
		if c.matches(lv) {
			items = append(items, lv)
		}
	}
	// Newest first: the marker is the last number answered, as a key that sorts downwards.
	key := func(lv *lambdav1alpha1.LayerVersion) string {
		return versionSortKey(strconv.FormatInt(1<<62-lv.Status.Version, 10))
	}
	page, next, e := listPage(c, items, key, 50, 50)
	if e != nil {
		return 0, nil, e
	}
	out := []types.LayerVersionsListItem{}
	for _, lv := range page {
		out = append(out, h.layerListItem(lv))
	}
	return http.StatusOK, map[string]any{"LayerVersions": out, "NextMarker": next}, nil
}

func (h *Handler) deleteLayerVersion(c *call) (int, any, *invoke.Error) {
	layer, num, e := c.layerVersionTarget()
	if e != nil {
		return 0, nil, e
	}
	if e := c.authorize(Permission{"delete", "layerversions", ""}, "DeleteLayerVersion", contract.LayerVersionARN(h.Region, h.AccountID, layer, num)); e != nil {
		return 0, nil, e
	}
	lv, e := c.layerVersion(layer, num)
	if e != nil {
		if e.Type == "ResourceNotFoundException" {
			return http.StatusNoContent, nil, nil // Lambda's DeleteLayerVersion is idempotent
		}
		return 0, nil, e
	}
	if e := writable(lv, "layer version"); e != nil {
		return 0, nil, e
	}
	// The controller keeps it (finalizer) while a Function or Version still uses it, as
	// Lambda keeps a copy for the functions that use a deleted version.
	if err := h.Client.Delete(c, lv, client.Preconditions{UID: &lv.UID}); err != nil && !apierrors.IsNotFound(err) {
		return 0, nil, fromAPI(err, "layer version")
	}
	return http.StatusNoContent, nil, nil
}
