package controllers

import (
	"context"
	"fmt"
	"sort"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

const (
	pcOnLatest         = contract.ProvisionedOnLatest
	pcOverReserved     = contract.ProvisionedOverReserved
	pcAliasOnVersion   = contract.ProvisionedAliasOnVersion
	pcVersionOfAlias   = contract.ProvisionedVersionOfAlias
	pcReasonInvalid    = "InvalidParameterValueException" // Lambda's error types, as Stalled reasons
	pcReasonConflict   = "ResourceConflictException"
	pcReasonAllocation = "ProvisionedConcurrencyFailed" // environments that can't start
)

// pcConfig is one provisioned-concurrency configuration of a function: a Version's own or
// an Alias's, the versions it keeps warm and how many environments in each.
type pcConfig struct {
	obj     metav1.Object
	isAlias bool
	shares  map[string]int32 // version number → environments
}

// aliasShares spreads an alias's provisioned concurrency over the versions it routes to,
// by weight, as the activator's router does (ceilShare).
func aliasShares(pc int32, primary string, weights map[string]float64) map[string]int32 {
	out := map[string]int32{}
	var extra string
	var w float64
	for k, v := range weights {
		extra, w = k, v
	}
	if extra == "" {
		out[primary] = pc
		return out
	}
	out[primary] = ceilShare(pc, 1-w)
	out[extra] += ceilShare(pc, w)
	return out
}

func ceilShare(n int32, w float64) int32 {
	x := float64(n) * w
	c := int32(x)
	if float64(c) < x {
		c++
	}
	return c
}

// precedes orders provisioned-concurrency configurations as Lambda does, first come first
// served: the older object (creationTimestamp, then name) keeps its configuration.
func precedes(a, b metav1.Object) bool {
	ta, tb := a.GetCreationTimestamp(), b.GetCreationTimestamp()
	if !ta.Equal(&tb) {
		return ta.Before(&tb)
	}
	return a.GetName() < b.GetName()
}

// pcRefusal answers why Lambda would refuse self's provisioned-concurrency configuration
// (reason and message; "" when it is allowed): on $LATEST; more than the function's
// reserved concurrency together with the configurations before it; or on a version that a
// configuration before it already provisions (one configuration per version).
func pcRefusal(ctx context.Context, c client.Reader, fn *lambdav1alpha1.Function, self pcConfig) (string, string, error) {
	for v := range self.shares {
		if v == contract.Latest || v == "" {
			return pcReasonInvalid, pcOnLatest, nil
		}
	}
	var versions lambdav1alpha1.VersionList
	if err := c.List(ctx, &versions, client.InNamespace(fn.Namespace), client.MatchingFields{indexFunctionName: fn.Name}); err != nil {
		return "", "", err
	}
	var aliases lambdav1alpha1.AliasList
	if err := c.List(ctx, &aliases, client.InNamespace(fn.Namespace), client.MatchingFields{indexFunctionName: fn.Name}); err != nil {
		return "", "", err
	}
	var before []pcConfig
	for i := range versions.Items {
		v := &versions.Items[i]
		if v.UID == self.obj.GetUID() || v.Spec.ProvisionedConcurrentExecutions == nil || !isCanonical(v) || !v.DeletionTimestamp.IsZero() || !precedes(v, self.obj) || refused(v.Status.ProvisionedConcurrency) {
			continue
		}
		before = append(before, pcConfig{obj: v, shares: map[string]int32{v.Status.Version: *v.Spec.ProvisionedConcurrentExecutions}})
	}
	for i := range aliases.Items {
		a := &aliases.Items[i]
		if a.UID == self.obj.GetUID() || a.Spec.ProvisionedConcurrentExecutions == nil || a.Status.FunctionVersion == "" || !a.DeletionTimestamp.IsZero() || !precedes(a, self.obj) || refused(a.Status.ProvisionedConcurrency) {
			continue
		}
		before = append(before, pcConfig{obj: a, isAlias: true, shares: aliasShares(*a.Spec.ProvisionedConcurrentExecutions, a.Status.FunctionVersion, a.Status.AdditionalVersionWeights)})
	}
	if rc := fn.Spec.ReservedConcurrentExecutions; rc != nil {
		sum := int64(0)
		for _, b := range append(before, self) {
			for _, n := range b.shares {
				sum += int64(n)
			}
		}
		if sum > int64(*rc) {
			return pcReasonInvalid, pcOverReserved, nil
		}
	}
	for _, b := range before {
		for v := range self.shares {
			if _, ok := b.shares[v]; !ok {
				continue
			}
			if self.isAlias {
				return pcReasonConflict, pcAliasOnVersion, nil
			}
			return pcReasonConflict, pcVersionOfAlias, nil
		}
	}
	return "", "", nil
}

// refused: a configuration Lambda would not have taken (it holds no concurrency), as
// opposed to one whose environments failed to start.
func refused(st *lambdav1alpha1.ProvisionedConcurrencyStatus) bool {
	return st != nil && st.Status == lambdav1alpha1.ProvisionedConcurrencyFailed && contract.ProvisionedRefused(st.StatusReason)
}

// pcAllocation is how many of self's environments are allocated and available in the
// Deployments of the versions it provisions, and why allocation failed ("" when it did
// not): a Deployment whose rollout exceeded its progress deadline.
func pcAllocation(ctx context.Context, c client.Reader, ns, fn string, shares map[string]int32) (allocated, available int32, failed string, err error) {
	keys := make([]string, 0, len(shares))
	for v := range shares {
		keys = append(keys, v)
	}
	sort.Strings(keys)
	for _, v := range keys {
		want := shares[v]
		var d appsv1.Deployment
		err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: WorkloadName(fn, v)}, &d)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return 0, 0, "", err
		}
		allocated += min(d.Status.Replicas, want)
		available += min(d.Status.AvailableReplicas, want)
		for _, cond := range d.Status.Conditions {
			if cond.Type == appsv1.DeploymentProgressing && cond.Status == "False" && cond.Reason == "ProgressDeadlineExceeded" {
				failed = fmt.Sprintf("the environments of version %s could not be started: %s", v, cond.Message)
			}
		}
	}
	return allocated, available, failed, nil
}

// nextPCStatus is the configuration's new status: requested pc, FAILED with reason when
// refused or allocation failed, READY once available reaches pc, IN_PROGRESS until then;
// lastModified moves only when the status changes.
func nextPCStatus(old *lambdav1alpha1.ProvisionedConcurrencyStatus, pc, allocated, available int32, failed string) *lambdav1alpha1.ProvisionedConcurrencyStatus {
	ps := &lambdav1alpha1.ProvisionedConcurrencyStatus{RequestedProvisionedConcurrentExecutions: pc,
		AllocatedProvisionedConcurrentExecutions: allocated, AvailableProvisionedConcurrentExecutions: available}
	switch {
	case failed != "":
		ps.Status, ps.StatusReason = lambdav1alpha1.ProvisionedConcurrencyFailed, failed
		ps.AllocatedProvisionedConcurrentExecutions, ps.AvailableProvisionedConcurrentExecutions = 0, 0
	case available >= pc:
		ps.Status = lambdav1alpha1.ProvisionedConcurrencyReady
	default:
		ps.Status = lambdav1alpha1.ProvisionedConcurrencyInProgress
	}
	if old != nil && old.Status == ps.Status && old.RequestedProvisionedConcurrentExecutions == pc &&
		old.AvailableProvisionedConcurrentExecutions == ps.AvailableProvisionedConcurrentExecutions && old.StatusReason == ps.StatusReason {
		ps.LastModified = old.LastModified
	} else {
		now := metav1.Now()
		ps.LastModified = &now
	}
	return ps
}

// versionProvisioned: a provisioned-concurrency configuration the controllers have not
// refused keeps environments of version v warm, its own or an alias's routing to it. Its
// environments are started ahead of invocations, and see
// AWS_LAMBDA_INITIALIZATION_TYPE=provisioned-concurrency.
func versionProvisioned(ctx context.Context, c client.Reader, v *lambdav1alpha1.Version, fn *lambdav1alpha1.Function) (bool, error) {
	if pc := v.Spec.ProvisionedConcurrentExecutions; pc != nil {
		_, msg, err := pcRefusal(ctx, c, fn, pcConfig{obj: v, shares: map[string]int32{v.Status.Version: *pc}})
		if err != nil || msg == "" {
			return msg == "", err
		}
	}
	var aliases lambdav1alpha1.AliasList
	if err := c.List(ctx, &aliases, client.InNamespace(fn.Namespace), client.MatchingFields{indexFunctionName: fn.Name}); err != nil {
		return false, err
	}
	for i := range aliases.Items {
		a := &aliases.Items[i]
		if a.Spec.ProvisionedConcurrentExecutions == nil || a.Status.ProvisionedConcurrency == nil || refused(a.Status.ProvisionedConcurrency) || !a.DeletionTimestamp.IsZero() {
			continue
		}
		if _, ok := aliasShares(*a.Spec.ProvisionedConcurrentExecutions, a.Status.FunctionVersion, a.Status.AdditionalVersionWeights)[v.Status.Version]; ok {
			return true, nil
		}
	}
	return false, nil
}
