package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Runtime is a Lambda runtime identifier: Lambda's enum from the 2021 API reference plus the
// newer runtimes users need. Zip functions run in the base image klambda maps it to.
// +kubebuilder:validation:Enum=nodejs;nodejs4.3;nodejs6.10;nodejs8.10;nodejs10.x;nodejs12.x;nodejs14.x;nodejs16.x;nodejs18.x;nodejs20.x;nodejs22.x;java8;java8.al2;java11;java17;java21;python2.7;python3.6;python3.7;python3.8;python3.9;python3.10;python3.11;python3.12;python3.13;dotnetcore1.0;dotnetcore2.0;dotnetcore2.1;dotnetcore3.1;dotnet6;dotnet8;nodejs4.3-edge;go1.x;ruby2.5;ruby2.7;ruby3.2;ruby3.3;provided;provided.al2;provided.al2023
type Runtime string

// PackageType is how the code is delivered: a .zip package run in the runtime's base image,
// or a container image.
// +kubebuilder:validation:Enum=Zip;Image
type PackageType string

const (
	PackageTypeZip   PackageType = "Zip"
	PackageTypeImage PackageType = "Image"
)

// Architecture is the instruction set a function runs on; it maps to kubernetes.io/arch.
// +kubebuilder:validation:Enum=x86_64;arm64
type Architecture string

const (
	ArchitectureX8664 Architecture = "x86_64"
	ArchitectureArm64 Architecture = "arm64"
)

// TracingMode is Lambda's TracingConfig.Mode.
// +kubebuilder:validation:Enum=Active;PassThrough
type TracingMode string

const (
	TracingModeActive      TracingMode = "Active"
	TracingModePassThrough TracingMode = "PassThrough"
)

// FunctionCode is the function's code: imageUri for packageType Image, otherwise one .zip source.
// +kubebuilder:validation:XValidation:rule="!has(self.imageUri) || !(has(self.configMapRef) || has(self.url) || has(self.s3))",message="imageUri can't be combined with configMapRef, url or s3"
type FunctionCode struct {
	// imageUri is a container image reference (packageType Image only). klambda resolves a
	// tag to a digest when the code is deployed (status.resolvedImageUri); re-pointing the
	// tag later changes nothing until the code is updated, as in Lambda.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:Pattern=`^[^\s]+$`
	ImageURI string `json:"imageUri,omitempty"`

	// The .zip sources (packageType Zip only): exactly one of configMapRef, url + sha256, s3.
	CodeSource `json:",inline"`
}

// ImageConfig overrides the container image's ENTRYPOINT, CMD and WORKDIR.
type ImageConfig struct {
	// entryPoint overrides ENTRYPOINT (at most 1500 items).
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=1500
	// +kubebuilder:validation:items:MaxLength=1024
	EntryPoint []string `json:"entryPoint,omitempty"`

	// command overrides CMD (at most 1500 items).
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=1500
	// +kubebuilder:validation:items:MaxLength=1024
	Command []string `json:"command,omitempty"`

	// workingDirectory overrides WORKDIR (at most 1000 characters).
	// +optional
	// +kubebuilder:validation:MaxLength=1000
	WorkingDirectory string `json:"workingDirectory,omitempty"`
}

// EphemeralStorage is the size of /tmp.
type EphemeralStorage struct {
	// size of /tmp in MB (512–10240, default 512).
	// +required
	// +kubebuilder:default=512
	// +kubebuilder:validation:Minimum=512
	// +kubebuilder:validation:Maximum=10240
	Size int32 `json:"size"`
}

// EnvVarSource is where a variable's value comes from when it isn't literal. It takes the
// place of Lambda's KMS-encrypted variables.
type EnvVarSource struct {
	// secretKeyRef selects a key of a Secret in the function's namespace.
	// +required
	SecretKeyRef *corev1.SecretKeySelector `json:"secretKeyRef"`
}

// EnvVar is one environment variable: a literal value or a value from a Secret.
// +kubebuilder:validation:XValidation:rule="!(has(self.value) && has(self.valueFrom))",message="value and valueFrom are mutually exclusive"
type EnvVar struct {
	// name: a letter, then at least one letter, digit or underscore; not one of Lambda's
	// reserved names.
	// +required
	// +kubebuilder:validation:MinLength=2
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:Pattern=`^[a-zA-Z]([a-zA-Z0-9_])+$`
	// +kubebuilder:validation:XValidation:rule="!(self in ['_HANDLER', '_X_AMZN_TRACE_ID', 'AWS_REGION', 'AWS_EXECUTION_ENV', 'AWS_LAMBDA_FUNCTION_NAME', 'AWS_LAMBDA_FUNCTION_MEMORY_SIZE', 'AWS_LAMBDA_FUNCTION_VERSION', 'AWS_LAMBDA_INITIALIZATION_TYPE', 'AWS_LAMBDA_LOG_GROUP_NAME', 'AWS_LAMBDA_LOG_STREAM_NAME', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_LAMBDA_RUNTIME_API', 'LAMBDA_TASK_ROOT', 'LAMBDA_RUNTIME_DIR', 'TZ'])",message="is a reserved key that is currently not supported for modification"
	Name string `json:"name"`

	// value is the literal value; it is never expanded.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Value string `json:"value,omitempty"`

	// valueFrom takes the value from a Secret.
	// +optional
	ValueFrom *EnvVarSource `json:"valueFrom,omitempty"`
}

// Environment is the function's environment variables. Lambda limits them to 4 KB counted as
// the UTF-8 bytes of the compact JSON of the name→value map (braces, quotes, colons, commas,
// escapes); the schema counts the literal values that way. Values from Secrets can't be
// counted at admission: the function controller adds them and reports a function over 4 KB
// in its status.
type Environment struct {
	// variables, by name.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=512
	// +kubebuilder:validation:XValidation:rule=`self.map(v, has(v.valueFrom) ? 0 : 6 + size(bytes(v.name)) + (has(v.value) ? size(bytes(v.value)) + size(v.value.findAll('["\\\\\\n\\r\\t]')) : 0)).sum() + 1 <= 4096`,message="the environment variables exceed the 4KB limit (compact JSON of names and values)"
	Variables []EnvVar `json:"variables,omitempty"`
}

// DeadLetter, tracing and file systems.

// TracingConfig is Lambda's TracingConfig.
type TracingConfig struct {
	// mode: Active samples requests that arrive without a trace header; PassThrough (default)
	// only propagates one.
	// +optional
	// +kubebuilder:default=PassThrough
	Mode TracingMode `json:"mode,omitempty"`
}

// FileSystemConfig mounts a PersistentVolumeClaim, in place of Lambda's EFS access point.
type FileSystemConfig struct {
	// claimName is a PersistentVolumeClaim in the function's namespace.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	ClaimName string `json:"claimName"`

	// localMountPath: where it is mounted, under /mnt/.
	// +required
	// +kubebuilder:validation:MaxLength=160
	// +kubebuilder:validation:Pattern=`^/mnt/[a-zA-Z0-9-_.]+$`
	LocalMountPath string `json:"localMountPath"`
}

// FunctionConfiguration is the version-specific configuration of a function: what
// UpdateFunctionConfiguration and UpdateFunctionCode change on $LATEST, and what a Version
// freezes (the Version controller copies it verbatim into Version.status.configuration).
// +kubebuilder:validation:XValidation:rule="self.packageType != 'Zip' || (has(self.runtime) && has(self.handler))",message="runtime and handler are required when packageType is Zip"
// +kubebuilder:validation:XValidation:rule="self.packageType != 'Image' || (!has(self.runtime) && !has(self.handler))",message="runtime and handler are not supported when packageType is Image"
// +kubebuilder:validation:XValidation:rule="self.packageType != 'Image' || has(self.code.imageUri)",fieldPath=".code.imageUri",message="code.imageUri is required when packageType is Image"
// +kubebuilder:validation:XValidation:rule="self.packageType != 'Zip' || !has(self.code.imageUri)",fieldPath=".code.imageUri",message="code.imageUri is only supported when packageType is Image"
// +kubebuilder:validation:XValidation:rule="self.packageType != 'Zip' || has(self.code.configMapRef) || has(self.code.url) || has(self.code.s3)",fieldPath=".code",message="packageType Zip requires one of code.configMapRef, code.url and code.s3"
// +kubebuilder:validation:XValidation:rule="self.packageType == 'Zip' || !has(self.layers) || size(self.layers) == 0",fieldPath=".layers",message="layers are only supported when packageType is Zip"
// +kubebuilder:validation:XValidation:rule="self.packageType == 'Image' || !has(self.imageConfig)",fieldPath=".imageConfig",message="imageConfig is only supported when packageType is Image"
type FunctionConfiguration struct {
	// description of the function (at most 256 characters).
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Description string `json:"description,omitempty"`

	// packageType: Zip (default) or Image. It can't be changed after the function is created.
	// +optional
	// +kubebuilder:default=Zip
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="packageType cannot be changed after the function is created"
	PackageType PackageType `json:"packageType,omitempty"`

	// runtime: required for packageType Zip, not supported for Image.
	// +optional
	Runtime Runtime `json:"runtime,omitempty"`

	// handler, e.g. index.handler: required for packageType Zip, not supported for Image
	// (at most 128 characters, no whitespace).
	// +optional
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern=`^[^\s]+$`
	Handler string `json:"handler,omitempty"`

	// code of the function.
	// +required
	Code FunctionCode `json:"code"`

	// memorySize in MB (128–10240, default 128). It is the container's memory limit; CPU is
	// proportional to it, as in Lambda (1769 MB = 1 vCPU).
	// +optional
	// +kubebuilder:default=128
	// +kubebuilder:validation:Minimum=128
	// +kubebuilder:validation:Maximum=10240
	MemorySize int32 `json:"memorySize,omitempty"`

	// timeout in seconds (1–900, default 3).
	// +optional
	// +kubebuilder:default=3
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=900
	Timeout int32 `json:"timeout,omitempty"`

	// ephemeralStorage is the size of /tmp (default 512 MB).
	// +optional
	// +kubebuilder:default={size: 512}
	EphemeralStorage *EphemeralStorage `json:"ephemeralStorage,omitempty"`

	// environment variables.
	// +optional
	Environment *Environment `json:"environment,omitempty"`

	// architectures: exactly one of x86_64 (default) and arm64.
	// +optional
	// +listType=atomic
	// +kubebuilder:default={x86_64}
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=1
	Architectures []Architecture `json:"architectures,omitempty"`

	// imageConfig overrides the image's ENTRYPOINT, CMD and WORKDIR (packageType Image only).
	// +optional
	ImageConfig *ImageConfig `json:"imageConfig,omitempty"`

	// layers (at most 5, packageType Zip only), extracted into /opt in order, the last
	// winning. Each names a LayerVersion object in the same namespace (e.g. my-layer-3), or
	// is <layerName>:<version> (e.g. my_layer:3).
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=5
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:items:Pattern=`^([a-z0-9]([-a-z0-9.]*[a-z0-9])?|[a-zA-Z0-9-_]{1,140}:[0-9]+)$`
	Layers []string `json:"layers,omitempty"`

	// deadLetterConfig: where asynchronous events go after their last failed attempt.
	// +optional
	DeadLetterConfig *DeadLetterConfig `json:"deadLetterConfig,omitempty"`

	// tracingConfig: X-Ray style tracing (default PassThrough).
	// +optional
	// +kubebuilder:default={mode: PassThrough}
	TracingConfig *TracingConfig `json:"tracingConfig,omitempty"`

	// serviceAccountName the function's pods run as; it takes the place of the execution
	// role. Empty means the namespace's default ServiceAccount.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	ServiceAccountName string `json:"serviceAccountName,omitempty"`

	// fileSystemConfigs (at most 1) mounts a PersistentVolumeClaim under /mnt/.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=1
	FileSystemConfigs []FileSystemConfig `json:"fileSystemConfigs,omitempty"`
}

// FunctionSpec is a Lambda function: its $LATEST configuration and the function-level settings.
type FunctionSpec struct {
	// The version-specific configuration ($LATEST).
	FunctionConfiguration `json:",inline"`

	// reservedConcurrentExecutions caps and guarantees the function's concurrency across all
	// its versions and aliases; 0 throttles every invocation. Unset means unreserved.
	// +optional
	// +kubebuilder:validation:Minimum=0
	ReservedConcurrentExecutions *int32 `json:"reservedConcurrentExecutions,omitempty"`

	// eventInvokeConfig: asynchronous invocation settings for $LATEST (and unqualified calls).
	// +optional
	EventInvokeConfig *EventInvokeConfig `json:"eventInvokeConfig,omitempty"`

	// functionUrlConfig gives $LATEST a function URL.
	// +optional
	FunctionURLConfig *FunctionURLConfig `json:"functionUrlConfig,omitempty"`

	// tags (at most 50; keys at most 128 characters and not starting with aws:, values at most 256).
	// +optional
	// +kubebuilder:validation:MaxProperties=50
	// +kubebuilder:validation:XValidation:rule="self.all(k, size(k) >= 1 && size(k) <= 128 && size(self[k]) <= 256)",message="tag keys must be 1-128 characters and values at most 256 characters"
	// +kubebuilder:validation:XValidation:rule="self.all(k, !k.startsWith('aws:'))",message="tag keys starting with aws: are reserved"
	Tags map[string]string `json:"tags,omitempty"`
}

// State is Lambda's function State.
// +kubebuilder:validation:Enum=Pending;Active;Inactive;Failed
type State string

const (
	StatePending  State = "Pending"
	StateActive   State = "Active"
	StateInactive State = "Inactive"
	StateFailed   State = "Failed"
)

// StateReasonCode is Lambda's StateReasonCode (the 2021 guide's values plus the newer
// InvalidRuntime, InvalidZipFileException, FunctionError and EFS* codes).
// +kubebuilder:validation:Enum=Idle;Creating;Restoring;EniLimitExceeded;InsufficientRolePermissions;InvalidConfiguration;InternalError;SubnetOutOfIPAddresses;InvalidSubnet;InvalidSecurityGroup;ImageDeleted;ImageAccessDenied;InvalidImage;InvalidRuntime;InvalidZipFileException;FunctionError;EFSIOError;EFSMountConnectivityError;EFSMountFailure;EFSMountTimeout
type StateReasonCode string

const (
	StateReasonIdle                 StateReasonCode = "Idle"
	StateReasonCreating             StateReasonCode = "Creating"
	StateReasonRestoring            StateReasonCode = "Restoring"
	StateReasonInvalidConfiguration StateReasonCode = "InvalidConfiguration"
	StateReasonInternalError        StateReasonCode = "InternalError"
	StateReasonImageDeleted         StateReasonCode = "ImageDeleted"
	StateReasonImageAccessDenied    StateReasonCode = "ImageAccessDenied"
	StateReasonInvalidImage         StateReasonCode = "InvalidImage"
	StateReasonInvalidRuntime       StateReasonCode = "InvalidRuntime"
	StateReasonInvalidZipFile       StateReasonCode = "InvalidZipFileException"
	StateReasonFunctionError        StateReasonCode = "FunctionError"
	StateReasonEFSMountFailure      StateReasonCode = "EFSMountFailure"
)

// LastUpdateStatus is Lambda's LastUpdateStatus.
// +kubebuilder:validation:Enum=InProgress;Successful;Failed
type LastUpdateStatus string

const (
	LastUpdateInProgress LastUpdateStatus = "InProgress"
	LastUpdateSuccessful LastUpdateStatus = "Successful"
	LastUpdateFailed     LastUpdateStatus = "Failed"
)

// LastUpdateStatusReasonCode is Lambda's LastUpdateStatusReasonCode (with the same newer codes).
// +kubebuilder:validation:Enum=EniLimitExceeded;InsufficientRolePermissions;InvalidConfiguration;InternalError;SubnetOutOfIPAddresses;InvalidSubnet;InvalidSecurityGroup;ImageDeleted;ImageAccessDenied;InvalidImage;InvalidRuntime;InvalidZipFileException;FunctionError;EFSIOError;EFSMountConnectivityError;EFSMountFailure;EFSMountTimeout
type LastUpdateStatusReasonCode string

// ResolvedLayer is a layer as the function uses it (Lambda's Layer in FunctionConfiguration).
type ResolvedLayer struct {
	// name of the LayerVersion object.
	Name string `json:"name"`
	// version number of the layer.
	Version int64 `json:"version"`
	// arn is the layer version ARN.
	// +optional
	ARN string `json:"arn,omitempty"`
	// codeSha256 of the layer content (base64, as Lambda).
	// +optional
	CodeSha256 string `json:"codeSha256,omitempty"`
	// codeSize in bytes.
	// +optional
	CodeSize int64 `json:"codeSize,omitempty"`
}

// FunctionStatus is Lambda's FunctionConfiguration response for $LATEST, plus Kubernetes conditions.
type FunctionStatus struct {
	// observedGeneration is the generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// functionArn: arn:aws:lambda:<region>:<account>:function:<name>; see FunctionARN.
	// +optional
	FunctionARN string `json:"functionArn,omitempty"`

	// version is always $LATEST.
	// +optional
	Version string `json:"version,omitempty"`

	// state: Pending, Active, Inactive or Failed; only Active can be invoked.
	// +optional
	State State `json:"state,omitempty"`
	// +optional
	StateReason string `json:"stateReason,omitempty"`
	// +optional
	StateReasonCode StateReasonCode `json:"stateReasonCode,omitempty"`

	// lastUpdateStatus: InProgress while an update rolls out (invocations keep using the
	// previous code and configuration), then Successful or Failed.
	// +optional
	LastUpdateStatus LastUpdateStatus `json:"lastUpdateStatus,omitempty"`
	// +optional
	LastUpdateStatusReason string `json:"lastUpdateStatusReason,omitempty"`
	// +optional
	LastUpdateStatusReasonCode LastUpdateStatusReasonCode `json:"lastUpdateStatusReasonCode,omitempty"`

	// codeSha256 is the base64 SHA-256 of the deployed package (or image manifest), as Lambda prints it.
	// +optional
	CodeSha256 string `json:"codeSha256,omitempty"`
	// codeSize in bytes.
	// +optional
	CodeSize int64 `json:"codeSize,omitempty"`
	// revisionId changes whenever code or configuration change (PublishVersion's precondition).
	// +optional
	RevisionID string `json:"revisionId,omitempty"`
	// lastModified is when code or configuration last changed.
	// +optional
	LastModified *metav1.Time `json:"lastModified,omitempty"`

	// codeStoreRef is the OCI artifact in klambda's code store that holds this code
	// (registry/repository@sha256:<manifest>); its one layer is the .zip, whose digest is
	// codeSha256. Environments load the code from the store, never from the source again
	// (docs/code-store.md). Empty when the manager runs without a code store.
	// +optional
	CodeStoreRef string `json:"codeStoreRef,omitempty"`

	// resolvedImageUri is code.imageUri with its tag resolved to a digest (Image only).
	// +optional
	ResolvedImageURI string `json:"resolvedImageUri,omitempty"`

	// derivedImageUri is the image environments run (Image only, with the manager's
	// imageFunctions configured): resolvedImageUri for the function's architecture with
	// klambda's runtime-shim added, pinned by digest in klambda's repository, so that an
	// environment starts one container (controllers/README.md, "The pod"). Empty: the sidecar shape runs
	// resolvedImageUri itself.
	// +optional
	DerivedImageURI string `json:"derivedImageUri,omitempty"`

	// imageUri is the code.imageUri that resolvedImageUri was resolved from (Image only).
	// As Lambda resolves a tag only on a code update, the tag is resolved again only when
	// code.imageUri changes, not on a configuration-only update or a manager restart.
	// +optional
	ImageURI string `json:"imageUri,omitempty"`

	// layers as resolved, in order.
	// +optional
	// +listType=atomic
	Layers []ResolvedLayer `json:"layers,omitempty"`

	// lastPublishedVersion is the number of the newest Version ("" before the first publish).
	// +optional
	LastPublishedVersion string `json:"lastPublishedVersion,omitempty"`
	// nextVersionNumber is the number the next published Version gets; it only grows, so
	// numbers are never reused, even after Versions are deleted.
	// +optional
	NextVersionNumber int64 `json:"nextVersionNumber,omitempty"`

	// servingDeployment is the Deployment of $LATEST whose environments take invocations:
	// the activator routes $LATEST to its pods alone. An update creates the new code's
	// Deployment beside it (one Deployment per pod template, a revision) and switches this
	// field to it when its first environment is ready, or at once when this one runs none;
	// the previous revision is removed once its invocations have drained (controllers/README.md).
	// +optional
	ServingDeployment string `json:"servingDeployment,omitempty"`
	// servingSince is when servingDeployment last changed.
	// +optional
	ServingSince *metav1.Time `json:"servingSince,omitempty"`

	// functionUrl is the function URL of $LATEST, when functionUrlConfig is set.
	// +optional
	FunctionURL string `json:"functionUrl,omitempty"`

	// conditions: Ready (this generation rolled out and Active), Reconciling (in progress),
	// Stalled (a failed create or update, with Lambda's reason code), and others, each with
	// its observedGeneration (docs/status.md).
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// Function is a Lambda function ($LATEST). Its name is metadata.name (at most 64 characters,
// no dots, as a Lambda function name).
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=fn,categories=klambda
// +kubebuilder:metadata:labels="app.kubernetes.io/name=klambda"
// +kubebuilder:printcolumn:name="Runtime",type=string,JSONPath=`.spec.runtime`
// +kubebuilder:printcolumn:name="Package",type=string,JSONPath=`.spec.packageType`,priority=1
// +kubebuilder:printcolumn:name="Memory",type=integer,JSONPath=`.spec.memorySize`
// +kubebuilder:printcolumn:name="Timeout",type=integer,JSONPath=`.spec.timeout`
// +kubebuilder:printcolumn:name="State",type=string,JSONPath=`.status.state`
// +kubebuilder:printcolumn:name="Last-Update",type=string,JSONPath=`.status.lastUpdateStatus`
// +kubebuilder:printcolumn:name="Latest-Version",type=string,JSONPath=`.status.lastPublishedVersion`,priority=1
// +kubebuilder:printcolumn:name="Last-Modified",type=date,JSONPath=`.status.lastModified`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 64",message="metadata.name: a function name is at most 64 characters"
// +kubebuilder:validation:XValidation:rule="!self.metadata.name.contains('.')",message="metadata.name: a function name may contain only letters, digits, hyphens and underscores"
type Function struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec FunctionSpec `json:"spec"`
	// +optional
	Status FunctionStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// FunctionList is a list of Functions.
type FunctionList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Function `json:"items"`
}

func init() {
	SchemeBuilder.Register(&Function{}, &FunctionList{})
}
