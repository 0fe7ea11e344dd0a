package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// VersionSpec publishes a version of a function (Lambda's PublishVersion). The version freezes
// the function's code and configuration as they are when it is published; afterwards only
// provisionedConcurrentExecutions and eventInvokeConfig can change, as in Lambda.
// +kubebuilder:validation:XValidation:rule="self.functionName == oldSelf.functionName && has(self.description) == has(oldSelf.description) && (!has(self.description) || self.description == oldSelf.description) && has(self.codeSha256) == has(oldSelf.codeSha256) && (!has(self.codeSha256) || self.codeSha256 == oldSelf.codeSha256) && has(self.revisionId) == has(oldSelf.revisionId) && (!has(self.revisionId) || self.revisionId == oldSelf.revisionId)",message="a published version is immutable: only provisionedConcurrentExecutions and eventInvokeConfig can be changed"
type VersionSpec struct {
	// functionName is the Function (in the same namespace) to publish.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	FunctionName string `json:"functionName"`

	// description of the version; it overrides the function's description (at most 256 characters).
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Description string `json:"description,omitempty"`

	// codeSha256 publishes only if the function's code has this digest (base64, as
	// Function.status.codeSha256); otherwise the Version is Stalled with PreconditionFailed
	// and is evaluated again whenever the Function changes, publishing once the function's
	// code has this digest (how a Version applied together with its Function's change
	// captures that change, not the code before it).
	// +optional
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9+/]{43}=$`
	CodeSha256 string `json:"codeSha256,omitempty"`

	// revisionId publishes only if the function's revisionId still has this value
	// (evaluated again whenever the Function changes, as codeSha256).
	// +optional
	// +kubebuilder:validation:MaxLength=128
	RevisionID string `json:"revisionId,omitempty"`

	// provisionedConcurrentExecutions keeps this many environments initialised for the
	// version (at least 1). It counts against the function's reserved concurrency.
	// +optional
	// +kubebuilder:validation:Minimum=1
	ProvisionedConcurrentExecutions *int32 `json:"provisionedConcurrentExecutions,omitempty"`

	// eventInvokeConfig: asynchronous invocation settings for this version.
	// +optional
	EventInvokeConfig *EventInvokeConfig `json:"eventInvokeConfig,omitempty"`
}

// VersionStatus is Lambda's FunctionConfiguration for a published version.
type VersionStatus struct {
	// observedGeneration is the generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// version is the number Lambda-style, as a string ("1", "2", ...). When publishing
	// changed nothing since the last version, it is that version's number, as in Lambda.
	// +optional
	// +kubebuilder:validation:Pattern=`^[0-9]+$`
	Version string `json:"version,omitempty"`

	// functionArn is the version's qualified ARN (…:function:<name>:<version>).
	// +optional
	FunctionARN string `json:"functionArn,omitempty"`

	// configuration is the function's configuration frozen at publish time (with
	// description replaced by spec.description when set).
	// +optional
	Configuration *FunctionConfiguration `json:"configuration,omitempty"`

	// codeSha256 of the frozen code (base64), and its size in bytes.
	// +optional
	CodeSha256 string `json:"codeSha256,omitempty"`
	// +optional
	CodeSize int64 `json:"codeSize,omitempty"`
	// revisionId of the version.
	// +optional
	RevisionID string `json:"revisionId,omitempty"`
	// codeStoreRef is the OCI artifact in klambda's code store that holds the code frozen by this version
	// (registry/repository@sha256:<manifest>); its one layer is the .zip, whose digest is
	// codeSha256. Environments load the code from the store, never from the source again, so it outlives a change or deletion of the source
	// (docs/code-store.md). Empty when the manager runs without a code store.
	// +optional
	CodeStoreRef string `json:"codeStoreRef,omitempty"`
	// resolvedImageUri: the image digest the version runs (Image only).
	// +optional
	ResolvedImageURI string `json:"resolvedImageUri,omitempty"`
	// derivedImageUri: the one-container image the version runs, derived from
	// resolvedImageUri (Image only; empty: the sidecar shape).
	// +optional
	DerivedImageURI string `json:"derivedImageUri,omitempty"`
	// layers as resolved at publish time.
	// +optional
	// +listType=atomic
	Layers []ResolvedLayer `json:"layers,omitempty"`
	// lastModified is when the version was published.
	// +optional
	LastModified *metav1.Time `json:"lastModified,omitempty"`

	// state of the version: Pending, Active, Inactive or Failed.
	// +optional
	State State `json:"state,omitempty"`
	// +optional
	StateReason string `json:"stateReason,omitempty"`
	// +optional
	StateReasonCode StateReasonCode `json:"stateReasonCode,omitempty"`
	// +optional
	LastUpdateStatus LastUpdateStatus `json:"lastUpdateStatus,omitempty"`
	// +optional
	LastUpdateStatusReason string `json:"lastUpdateStatusReason,omitempty"`
	// +optional
	LastUpdateStatusReasonCode LastUpdateStatusReasonCode `json:"lastUpdateStatusReasonCode,omitempty"`

	// provisionedConcurrency reports spec.provisionedConcurrentExecutions.
	// +optional
	ProvisionedConcurrency *ProvisionedConcurrencyStatus `json:"provisionedConcurrency,omitempty"`

	// conditions: Ready (published, its environments' template applied, provisioned
	// concurrency READY if requested), Reconciling (waiting to publish, provisioning),
	// Stalled (PreconditionFailed, unusable code), and Published, each with its
	// observedGeneration (docs/status.md).
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// Version is a published, immutable version of a Function.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=fnv,categories=klambda
// +kubebuilder:metadata:labels="app.kubernetes.io/name=klambda"
// +kubebuilder:printcolumn:name="Function",type=string,JSONPath=`.spec.functionName`
// +kubebuilder:printcolumn:name="Version",type=string,JSONPath=`.status.version`
// +kubebuilder:printcolumn:name="State",type=string,JSONPath=`.status.state`
// +kubebuilder:printcolumn:name="Provisioned",type=integer,JSONPath=`.spec.provisionedConcurrentExecutions`
// +kubebuilder:printcolumn:name="PC-Status",type=string,JSONPath=`.status.provisionedConcurrency.status`,priority=1
// +kubebuilder:printcolumn:name="CodeSha256",type=string,JSONPath=`.status.codeSha256`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Version struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec VersionSpec `json:"spec"`
	// +optional
	Status VersionStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// VersionList is a list of Versions.
type VersionList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Version `json:"items"`
}

func init() {
	SchemeBuilder.Register(&Version{}, &VersionList{})
}
