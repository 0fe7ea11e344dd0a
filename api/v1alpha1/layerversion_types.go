package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// LayerVersionSpec is Lambda's PublishLayerVersion request. A layer version is immutable:
// to change a layer, create another LayerVersion with the same layerName.
// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="a layer version is immutable: create a new LayerVersion instead"
type LayerVersionSpec struct {
	// layerName groups versions into a layer; defaults to metadata.name. 1–140 characters of
	// letters, digits, - and _.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=140
	LayerName string `json:"layerName,omitempty"`

	// content of the layer: exactly one of configMapRef, url + sha256 and s3. It is extracted into /opt.
	// +required
	// +kubebuilder:validation:XValidation:rule="has(self.configMapRef) || has(self.url) || has(self.s3)",message="exactly one of configMapRef, url and s3 must be set"
	Content CodeSource `json:"content"`

	// compatibleRuntimes (at most 15), informational as in Lambda.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=15
	CompatibleRuntimes []Runtime `json:"compatibleRuntimes,omitempty"`

	// compatibleArchitectures (at most 2), informational as in Lambda.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=2
	CompatibleArchitectures []Architecture `json:"compatibleArchitectures,omitempty"`

	// description of the version (at most 256 characters).
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Description string `json:"description,omitempty"`

	// licenseInfo: an SPDX identifier, a URL or the licence text (at most 512 characters).
	// +optional
	// +kubebuilder:validation:MaxLength=512
	LicenseInfo string `json:"licenseInfo,omitempty"`
}

// LayerVersionStatus is Lambda's PublishLayerVersion response.
type LayerVersionStatus struct {
	// observedGeneration is the generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// layerName is the effective layer name (spec.layerName or metadata.name).
	// +optional
	LayerName string `json:"layerName,omitempty"`

	// version number within the layer, from 1; numbers are never reused.
	// +optional
	Version int64 `json:"version,omitempty"`

	// layerArn: arn:aws:lambda:<region>:<account>:layer:<layerName>.
	// +optional
	LayerARN string `json:"layerArn,omitempty"`
	// layerVersionArn: <layerArn>:<version>.
	// +optional
	LayerVersionARN string `json:"layerVersionArn,omitempty"`

	// codeSha256 of the content (base64, as Lambda), and its size in bytes.
	// +optional
	CodeSha256 string `json:"codeSha256,omitempty"`
	// +optional
	CodeSize int64 `json:"codeSize,omitempty"`

	// codeStoreRef is the OCI artifact in klambda's code store that holds this layer content
	// (registry/repository@sha256:<manifest>); its one layer is the .zip, whose digest is
	// codeSha256. Environments load the code from the store, never from the source again
	// (docs/code-store.md). Empty when the manager runs without a code store.
	// +optional
	CodeStoreRef string `json:"codeStoreRef,omitempty"`

	// createdDate is when the version was published.
	// +optional
	CreatedDate *metav1.Time `json:"createdDate,omitempty"`

	// conditions: Ready (the content is available), Reconciling (being fetched), Stalled
	// (the content can't be used), each with its observedGeneration (docs/status.md).
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// LayerVersion is an immutable, numbered version of a Lambda layer.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=lv,categories=klambda
// +kubebuilder:metadata:labels="app.kubernetes.io/name=klambda"
// +kubebuilder:printcolumn:name="Layer",type=string,JSONPath=`.status.layerName`
// +kubebuilder:printcolumn:name="Version",type=integer,JSONPath=`.status.version`
// +kubebuilder:printcolumn:name="CodeSize",type=integer,JSONPath=`.status.codeSize`,priority=1
// +kubebuilder:printcolumn:name="Layer-Version-ARN",type=string,JSONPath=`.status.layerVersionArn`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="(has(self.spec.layerName) ? self.spec.layerName : self.metadata.name).matches('^[a-zA-Z0-9-_]+$')",fieldPath=".spec.layerName",message="spec.layerName: a layer name (spec.layerName, or metadata.name when it is empty) may contain only letters, digits, hyphens and underscores"
// +kubebuilder:validation:XValidation:rule="size(has(self.spec.layerName) ? self.spec.layerName : self.metadata.name) <= 140",fieldPath=".spec.layerName",message="spec.layerName: a layer name (spec.layerName, or metadata.name when it is empty) is at most 140 characters"
type LayerVersion struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec LayerVersionSpec `json:"spec"`
	// +optional
	Status LayerVersionStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// LayerVersionList is a list of LayerVersions.
type LayerVersionList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []LayerVersion `json:"items"`
}

func init() {
	SchemeBuilder.Register(&LayerVersion{}, &LayerVersionList{})
}
