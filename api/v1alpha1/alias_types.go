package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// AliasRoutingConfiguration is Lambda's AliasRoutingConfiguration.
type AliasRoutingConfiguration struct {
	// additionalVersionWeights sends a fraction (0.0–1.0) of invocations to one more version,
	// e.g. {"2": 0.1}; the primary functionVersion gets the rest. At most one entry; the key
	// is a version number other than the primary version.
	// +optional
	// +kubebuilder:validation:MaxProperties=1
	// +kubebuilder:validation:XValidation:rule="self.all(k, k.matches('^[0-9]+$') && size(k) <= 1024)",message="additional version keys must be version numbers"
	// +kubebuilder:validation:XValidation:rule="self.all(k, self[k] >= 0.0 && self[k] <= 1.0)",message="additional version weights must be between 0.0 and 1.0"
	AdditionalVersionWeights map[string]float64 `json:"additionalVersionWeights,omitempty"`

	// additionalVersionRefWeights is additionalVersionWeights keyed by the name of a Version
	// object (in the alias's namespace, of the same function) instead of a version number:
	// the canary a Git repository can describe without knowing the numbers the cluster
	// assigns. At most one entry, and not together with additionalVersionWeights.
	// +optional
	// +kubebuilder:validation:MaxProperties=1
	// +kubebuilder:validation:XValidation:rule="self.all(k, size(k) <= 253 && k.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$'))",message="additional version refs must be Version object names"
	// +kubebuilder:validation:XValidation:rule="self.all(k, self[k] >= 0.0 && self[k] <= 1.0)",message="additional version weights must be between 0.0 and 1.0"
	AdditionalVersionRefWeights map[string]float64 `json:"additionalVersionRefWeights,omitempty"`
}

// VersionReference names a Version object in the alias's namespace.
type VersionReference struct {
	// name of the Version object.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// AliasSpec is Lambda's CreateAlias / UpdateAlias request.
// +kubebuilder:validation:XValidation:rule="has(self.name) == has(oldSelf.name) && (!has(self.name) || self.name == oldSelf.name)",fieldPath=".name",message="name is immutable"
// +kubebuilder:validation:XValidation:rule="has(self.functionVersion) != has(self.functionVersionRef)",message="exactly one of functionVersion and functionVersionRef must be set"
// +kubebuilder:validation:XValidation:rule="!has(self.routingConfig) || !has(self.routingConfig.additionalVersionWeights) || !has(self.routingConfig.additionalVersionRefWeights) || size(self.routingConfig.additionalVersionWeights) + size(self.routingConfig.additionalVersionRefWeights) <= 1",fieldPath=".routingConfig",message="routingConfig: at most one additional version, in additionalVersionWeights or additionalVersionRefWeights"
// +kubebuilder:validation:XValidation:rule="!has(self.routingConfig) || !has(self.routingConfig.additionalVersionWeights) || !has(self.functionVersion) || !(self.functionVersion in self.routingConfig.additionalVersionWeights)",fieldPath=".routingConfig.additionalVersionWeights",message="routingConfig.additionalVersionWeights: the additional version must differ from functionVersion"
// +kubebuilder:validation:XValidation:rule="!has(self.routingConfig) || !has(self.routingConfig.additionalVersionRefWeights) || !has(self.functionVersionRef) || !(self.functionVersionRef.name in self.routingConfig.additionalVersionRefWeights)",fieldPath=".routingConfig.additionalVersionRefWeights",message="routingConfig.additionalVersionRefWeights: the additional version must differ from functionVersionRef"
// +kubebuilder:validation:XValidation:rule="!has(self.routingConfig) || ((!has(self.routingConfig.additionalVersionWeights) || size(self.routingConfig.additionalVersionWeights) == 0) && (!has(self.routingConfig.additionalVersionRefWeights) || size(self.routingConfig.additionalVersionRefWeights) == 0)) || !has(self.functionVersion) || self.functionVersion != '$LATEST'",fieldPath=".functionVersion",message="functionVersion: an alias with routingConfig must point to a published version, not $LATEST"
// +kubebuilder:validation:XValidation:rule="!has(self.routingConfig) || ((!has(self.routingConfig.additionalVersionWeights) || size(self.routingConfig.additionalVersionWeights) == 0) && (!has(self.routingConfig.additionalVersionRefWeights) || size(self.routingConfig.additionalVersionRefWeights) == 0)) || (has(self.provisionedConcurrentExecutions) == has(oldSelf.provisionedConcurrentExecutions) && (!has(self.provisionedConcurrentExecutions) || self.provisionedConcurrentExecutions == oldSelf.provisionedConcurrentExecutions))",fieldPath=".provisionedConcurrentExecutions",message="you can't manage provisioned concurrency on the alias while the routing configuration is in place"
type AliasSpec struct {
	// functionName is the Function (in the same namespace) the alias belongs to; immutable.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="functionName is immutable"
	FunctionName string `json:"functionName"`

	// name of the alias as callers use it (the qualifier); defaults to metadata.name. 1–128
	// characters of letters, digits, - and _, not all digits (so it never looks like a
	// version). Immutable.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	Name string `json:"name,omitempty"`

	// functionVersion the alias points to: $LATEST or a version number. Exactly one of
	// functionVersion and functionVersionRef.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:Pattern=`^(\$LATEST|[0-9]+)$`
	FunctionVersion string `json:"functionVersion,omitempty"`

	// functionVersionRef points the alias at the version a Version object published (in the
	// alias's namespace, of the same function), whatever number the cluster gave it: what a
	// Git repository can describe ("live is the version I published from this commit").
	// The alias routes once that Version is published; until then it keeps its last valid
	// routing. Exactly one of functionVersion and functionVersionRef.
	// +optional
	FunctionVersionRef *VersionReference `json:"functionVersionRef,omitempty"`

	// description of the alias (at most 256 characters).
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Description string `json:"description,omitempty"`

	// routingConfig splits invocations between functionVersion and one more version.
	// +optional
	RoutingConfig *AliasRoutingConfiguration `json:"routingConfig,omitempty"`

	// provisionedConcurrentExecutions keeps this many environments initialised for the
	// alias's version(s) (at least 1); a weighted alias spreads them by weight.
	// +optional
	// +kubebuilder:validation:Minimum=1
	ProvisionedConcurrentExecutions *int32 `json:"provisionedConcurrentExecutions,omitempty"`

	// eventInvokeConfig: asynchronous invocation settings for the alias.
	// +optional
	EventInvokeConfig *EventInvokeConfig `json:"eventInvokeConfig,omitempty"`

	// functionUrlConfig gives the alias a function URL.
	// +optional
	FunctionURLConfig *FunctionURLConfig `json:"functionUrlConfig,omitempty"`
}

// AliasStatus is Lambda's AliasConfiguration, resolved.
type AliasStatus struct {
	// observedGeneration is the generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// name is the effective alias name (spec.name or metadata.name).
	// +optional
	Name string `json:"name,omitempty"`

	// aliasArn: …:function:<function>:<alias>.
	// +optional
	AliasARN string `json:"aliasArn,omitempty"`

	// functionVersion and additionalVersionWeights as the router uses them.
	// +optional
	FunctionVersion string `json:"functionVersion,omitempty"`
	// +optional
	AdditionalVersionWeights map[string]float64 `json:"additionalVersionWeights,omitempty"`

	// revisionId changes whenever the alias changes.
	// +optional
	RevisionID string `json:"revisionId,omitempty"`

	// provisionedConcurrency reports spec.provisionedConcurrentExecutions.
	// +optional
	ProvisionedConcurrency *ProvisionedConcurrencyStatus `json:"provisionedConcurrency,omitempty"`

	// functionUrl is the alias's function URL, when functionUrlConfig is set.
	// +optional
	FunctionURL string `json:"functionUrl,omitempty"`

	// conditions: Ready (the routing is validated and in effect), Reconciling (waiting for
	// its function or a version to be published), Stalled (a duplicate name, versions that
	// disagree), each with its observedGeneration (docs/status.md).
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// Alias is a named pointer to a version of a Function, optionally weighted across two versions.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=fna,categories=klambda
// +kubebuilder:metadata:labels="app.kubernetes.io/name=klambda"
// +kubebuilder:printcolumn:name="Function",type=string,JSONPath=`.spec.functionName`
// +kubebuilder:printcolumn:name="Alias",type=string,JSONPath=`.status.name`,priority=1
// +kubebuilder:printcolumn:name="Version",type=string,JSONPath=`.status.functionVersion`
// +kubebuilder:printcolumn:name="Weights",type=string,JSONPath=`.status.additionalVersionWeights`
// +kubebuilder:printcolumn:name="Provisioned",type=integer,JSONPath=`.spec.provisionedConcurrentExecutions`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="(has(self.spec.name) ? self.spec.name : self.metadata.name).matches('^[a-zA-Z0-9-_]+$')",fieldPath=".spec.name",message="spec.name: an alias name (spec.name, or metadata.name when it is empty) may contain only letters, digits, hyphens and underscores"
// +kubebuilder:validation:XValidation:rule="size(has(self.spec.name) ? self.spec.name : self.metadata.name) <= 128",fieldPath=".spec.name",message="spec.name: an alias name (spec.name, or metadata.name when it is empty) is at most 128 characters"
// +kubebuilder:validation:XValidation:rule="!(has(self.spec.name) ? self.spec.name : self.metadata.name).matches('^[0-9]+$')",fieldPath=".spec.name",message="spec.name: an alias name (spec.name, or metadata.name when it is empty) can't be all digits"
type Alias struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec AliasSpec `json:"spec"`
	// +optional
	Status AliasStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// AliasList is a list of Aliases.
type AliasList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Alias `json:"items"`
}

func init() {
	SchemeBuilder.Register(&Alias{}, &AliasList{})
}
