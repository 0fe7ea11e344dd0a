package controlapi

import (
	"net/http"
	"sort"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/activator/invoke"
	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// PublishWait bounds how long PublishVersion waits for the version controller to number
// the version.
var PublishWait = 60 * time.Second

// unchanged: a Version that only refers to an earlier one (nothing changed when it was
// published).
func unchanged(v *lambdav1alpha1.Version) bool {
	c := meta.FindStatusCondition(v.Status.Conditions, contract.ConditionPublished)
	return c != nil && c.Reason == contract.ReasonUnchanged
}

// publishedVersions are the Versions that own their number, sorted by function and number.
func publishedVersions(items []lambdav1alpha1.Version) []*lambdav1alpha1.Version {
	var out []*lambdav1alpha1.Version
	for i := range items {
		v := &items[i]
		if v.Status.Version != "" && !unchanged(v) && v.DeletionTimestamp == nil {
			out = append(out, v)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Spec.FunctionName != out[j].Spec.FunctionName {
			return out[i].Spec.FunctionName < out[j].Spec.FunctionName
		}
		return versionSortKey(out[i].Status.Version) < versionSortKey(out[j].Status.Version)
	})
	return out
}

func (c *call) versionsOf(name string) ([]lambdav1alpha1.Version, *invoke.Error) {
	var vl lambdav1alpha1.VersionList
	if err := c.h.Client.List(c, &vl, client.InNamespace(c.ns)); err != nil {
		return nil, fromAPI(err, "versions")
	}
	var out []lambdav1alpha1.Version
	for _, v := range vl.Items {
		if v.Spec.FunctionName == name {
			out = append(out, v)
		}
	}
	return out, nil
}

// version is the Version numbered num of function name.
func (c *call) version(name, num string) (*lambdav1alpha1.Version, *invoke.Error) {
	vs, e := c.versionsOf(name)
	if e != nil {
		return nil, e
	}
	for _, v := range publishedVersions(vs) {
		if v.Status.Version == num {
			return v, nil
		}
	}
	return nil, errFunctionNotFound(c.h.arn(name, num))
}

// versionObjects are all the Version objects that stand for number num (the one that owns
// it and those that refer to it).
func (c *call) versionObjects(name, num string) []*lambdav1alpha1.Version {
	vs, _ := c.versionsOf(name)
	var out []*lambdav1alpha1.Version
	for i := range vs {
		if vs[i].Status.Version == num {
			out = append(out, &vs[i])
		}
	}
	return out
}

// newVersion creates a Version object publishing f's current code and configuration.
func (c *call) newVersion(f *lambdav1alpha1.Function, description, codeSha256, revisionID string) (*lambdav1alpha1.Version, *invoke.Error) {
	prefix := f.Name
	if len(prefix) > 50 {
		prefix = prefix[:50]
	}
	v := &lambdav1alpha1.Version{ObjectMeta: metav1.ObjectMeta{Namespace: c.ns, GenerateName: prefix + "-v-",
		Labels: map[string]string{LabelManagedBy: ManagedByValue}},
		Spec: lambdav1alpha1.VersionSpec{FunctionName: f.Name, Description: description, CodeSha256: codeSha256, RevisionID: revisionID}}
	if err := c.h.Client.Create(c, v, client.FieldOwner(FieldManager)); err != nil {
		return nil, fromAPI(err, "version")
	}
	return v, nil
}

func (h *Handler) publishVersion(c *call) (int, any, *invoke.Error) {
	name, qual, e := parseFunctionName(c.r.PathValue("fn"))
	if e != nil {
		return 0, nil, e
	}
	if qual != "" {
		return 0, nil, errInvalid("PublishVersion publishes $LATEST: the function name can't have a qualifier.")
	}
	var in lambda.PublishVersionInput
	if e := c.decode(&in); e != nil {
		return 0, nil, e
	}
	if e := c.authorize(Permission{"create", "versions", ""}, "PublishVersion", h.arn(name, "")); e != nil {
		return 0, nil, e
	}
	if in.PublishTo != "" {
		return 0, nil, errInvalid("klambda does not support PublishTo")
	}
	f, e := c.function(name)
	if e != nil {
		return 0, nil, e
	}
	st := functionState(f)
	if st.update == lambdav1alpha1.LastUpdateInProgress || st.state == lambdav1alpha1.StatePending {
		return 0, nil, errUpdateInProgress(h.arn(name, ""))
	}
	if in.CodeSha256 != nil && *in.CodeSha256 != st.codeSha256 {
		return 0, nil, errPrecondition("CodeSHA256 (" + *in.CodeSha256 + ") is different from current CodeSHA256 in $LATEST (" + st.codeSha256 + "). Please try again with the CodeSHA256 in $LATEST.")
	}
	if in.RevisionId != nil && *in.RevisionId != st.revisionID {
		return 0, nil, errRevision()
	}
	v, e := c.newVersion(f, derefOr(in.Description, ""), derefOr(in.CodeSha256, ""), derefOr(in.RevisionId, ""))
	if e != nil {
		return 0, nil, e
	}
	return c.awaitVersion(name, v)
}

// awaitVersion waits for the version controller to number v (or refuse it) and answers
// the published version's configuration: v's, or the existing version's when nothing
// changed since it (then v is deleted, as Lambda publishes nothing new).
func (c *call) awaitVersion(name string, v *lambdav1alpha1.Version) (int, any, *invoke.Error) {
	h := c.h
	deadline := time.Now().Add(PublishWait)
	for {
		var got lambdav1alpha1.Version
		if err := h.Client.Get(c, client.ObjectKeyFromObject(v), &got); err != nil {
			return 0, nil, fromAPI(err, "version")
		}
		pc := meta.FindStatusCondition(got.Status.Conditions, contract.ConditionPublished)
		switch {
		case pc != nil && pc.Reason == contract.ReasonPreconditionFailed:
			_ = h.Client.Delete(c, &got)
			return 0, nil, errPrecondition(pc.Message)
		case got.Status.Version != "" && unchanged(&got):
			// Nothing changed since that version: Lambda answers it; this object is not needed.
			num := got.Status.Version
			_ = h.Client.Delete(c, &got)
			prev, e := c.version(name, num)
			if e != nil {
				return 0, nil, e
			}
			return http.StatusCreated, h.versionConfiguration(name, prev), nil
		case got.Status.Version != "":
			return http.StatusCreated, h.versionConfiguration(name, &got), nil
		}
		if time.Now().After(deadline) {
			return 0, nil, errService("the version controller did not publish " + got.Name + " within " + PublishWait.String() + "; it is published when the function's update is over (kubectl get fnv " + got.Name + ")")
		}
		select {
		case <-c.Done():
			return 0, nil, errService("the request was cancelled")
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func derefOr(p *string, d string) string {
	if p == nil {
		return d
	}
	return *p
}

func (h *Handler) listVersions(c *call) (int, any, *invoke.Error) {
	name, qual, e := parseFunctionName(c.r.PathValue("fn"))
	if e != nil {
		return 0, nil, e
	}
	if qual != "" {
		return 0, nil, errInvalid("ListVersionsByFunction takes an unqualified function name.")
	}
	if e := c.authorize(Permission{"list", "versions", ""}, "ListVersionsByFunction", h.arn(name, "")); e != nil {
		return 0, nil, e
	}
	f, e := c.function(name)
	if e != nil {
		return 0, nil, e
	}
	vs, e := c.versionsOf(name)
	if e != nil {
		return 0, nil, e
	}
	type item struct {
		key string
		cfg types.FunctionConfiguration
	}
	items := []item{{"\x00", h.configuration(name, contract.Latest, &f.Spec.FunctionConfiguration, functionState(f))}}
	for _, v := range publishedVersions(vs) {
		items = append(items, item{versionSortKey(v.Status.Version), h.versionConfiguration(name, v)})
	}
	page, next, e := listPage(c, items, func(it item) string { return it.key }, 50, 10000)
	if e != nil {
		return 0, nil, e
	}
	out := []types.FunctionConfiguration{}
	for _, it := range page {
		out = append(out, it.cfg)
	}
	return http.StatusOK, map[string]any{"Versions": out, "NextMarker": next}, nil
}
