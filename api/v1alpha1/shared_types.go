package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Types used by several kinds: code sources, Secret references, destinations, the
// asynchronous invocation configuration, the dead-letter target and function URLs.

// SecretReference names a Secret in the object's namespace.
type SecretReference struct {
	// name of the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// ConfigMapCodeSource is code (or layer content) kept in a ConfigMap in the object's namespace.
type ConfigMapCodeSource struct {
	// name of the ConfigMap.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// key of a binaryData entry that holds a .zip archive. When empty, every key of the
	// ConfigMap (data and binaryData) becomes a file of that name at the top of the package.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	Key string `json:"key,omitempty"`
}

// S3Location is a .zip archive in a bucket of any S3-compatible object store; it takes the
// place of Lambda's S3Bucket, S3Key and S3ObjectVersion.
type S3Location struct {
	// endpoint of the S3-compatible service, e.g. https://minio.storage.svc:9000. Empty means
	// AWS S3 itself (the endpoint follows from region).
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:Pattern=`^https?://`
	Endpoint string `json:"endpoint,omitempty"`

	// region of the bucket; S3-compatible services usually accept any value (default us-east-1).
	// +optional
	// +kubebuilder:validation:MaxLength=64
	Region string `json:"region,omitempty"`

	// bucket name, as Lambda's S3Bucket (3–63 characters).
	// +required
	// +kubebuilder:validation:MinLength=3
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[0-9A-Za-z.\-_]*[0-9A-Za-z\-_]$`
	Bucket string `json:"bucket"`

	// key of the object, as Lambda's S3Key (1–1024 characters).
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	Key string `json:"key"`

	// objectVersion pins a version of a versioned bucket, as Lambda's S3ObjectVersion.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	ObjectVersion string `json:"objectVersion,omitempty"`

	// credentials names a Secret with the keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY
	// (and optionally AWS_SESSION_TOKEN). Without it the bucket is read anonymously.
	// +optional
	Credentials *SecretReference `json:"credentials,omitempty"`
}

// CodeSource is where a .zip package (function code or layer content) comes from: exactly
// one of configMapRef, url (with its sha256) or s3.
// +kubebuilder:validation:XValidation:rule="!has(self.url) || has(self.sha256)",message="url requires sha256"
// +kubebuilder:validation:XValidation:rule="!has(self.sha256) || has(self.url)",message="sha256 is only valid with url"
// +kubebuilder:validation:XValidation:rule="[has(self.configMapRef), has(self.url), has(self.s3)].filter(x, x).size() <= 1",message="at most one of configMapRef, url and s3 may be set"
type CodeSource struct {
	// configMapRef takes the package from a ConfigMap.
	// +optional
	ConfigMapRef *ConfigMapCodeSource `json:"configMapRef,omitempty"`

	// url downloads a .zip archive over HTTP(S); sha256 is required with it.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:Pattern=`^https?://[^\s]+$`
	URL string `json:"url,omitempty"`

	// sha256 is the hex SHA-256 of the archive at url (64 hex digits); a download that does
	// not match is rejected. (status.codeSha256 is Lambda's base64 form of the same digest.)
	// +optional
	// +kubebuilder:validation:Pattern=`^[a-fA-F0-9]{64}$`
	SHA256 string `json:"sha256,omitempty"`

	// s3 takes the package from an S3-compatible bucket.
	// +optional
	S3 *S3Location `json:"s3,omitempty"`
}

// Destination is where klambda sends an invocation record or a failed event: exactly one of
// a Function, a NATS subject, a Kafka topic or an SQS-compatible queue. It replaces Lambda's
// destination ARNs (SQS, SNS, EventBridge, Lambda).
// +kubebuilder:validation:XValidation:rule="[has(self.function), has(self.nats), has(self.kafka), has(self.sqs)].filter(x, x).size() == 1",message="exactly one of function, nats, kafka and sqs must be set"
type Destination struct {
	// function invokes a Function (asynchronously) with the record.
	// +optional
	Function *FunctionDestination `json:"function,omitempty"`

	// nats publishes the record to a NATS subject.
	// +optional
	NATS *NATSDestination `json:"nats,omitempty"`

	// kafka produces the record to a Kafka topic.
	// +optional
	Kafka *KafkaDestination `json:"kafka,omitempty"`

	// sqs sends the record to an SQS-compatible queue.
	// +optional
	SQS *SQSQueue `json:"sqs,omitempty"`
}

// FunctionDestination is a Function in the same namespace, optionally qualified.
type FunctionDestination struct {
	// name of the Function.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// qualifier: $LATEST, a version number or an alias name. Empty means $LATEST.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern=`^(\$LATEST|[a-zA-Z0-9-_]+)$`
	Qualifier string `json:"qualifier,omitempty"`
}

// NATSDestination is a NATS subject.
type NATSDestination struct {
	// servers are NATS URLs (nats://host:4222). Empty means the NATS server klambda's
	// activator uses for asynchronous invocations.
	// +optional
	// +kubebuilder:validation:MaxItems=10
	// +kubebuilder:validation:items:MaxLength=512
	Servers []string `json:"servers,omitempty"`

	// subject to publish to: dot-separated tokens without wildcards (*, >) or whitespace,
	// not starting with $ or _ (NATS reserves those for its own APIs: $JS.API, $SYS,
	// _INBOX, ...). The activator checks the same again at delivery.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:Pattern=`^[^\x00-\x20\x7f*>.]+(\.[^\x00-\x20\x7f*>.]+)*$`
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('$') && !self.startsWith('_')",message="a subject starting with $ or _ is reserved for NATS itself ($JS.API, $SYS, _INBOX, ...)"
	Subject string `json:"subject"`
}

// KafkaDestination is a Kafka topic.
type KafkaDestination struct {
	// bootstrapServers are host:port pairs (1–10).
	// +required
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=10
	// +kubebuilder:validation:items:MaxLength=300
	BootstrapServers []string `json:"bootstrapServers"`

	// topic to produce to (1–249 characters).
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=249
	// +kubebuilder:validation:Pattern=`^[a-zA-Z0-9._-]+$`
	Topic string `json:"topic"`
}

// SQSQueue is a queue of an SQS-compatible service (AWS SQS, ElasticMQ, LocalStack, ...).
type SQSQueue struct {
	// queueUrl is the queue's URL; a URL ending in .fifo is a FIFO queue.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:Pattern=`^https?://[^\s]+$`
	QueueURL string `json:"queueUrl"`

	// endpoint of the SQS-compatible service; empty means the host of queueUrl.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:Pattern=`^https?://`
	Endpoint string `json:"endpoint,omitempty"`

	// region used to sign requests (default us-east-1).
	// +optional
	// +kubebuilder:validation:MaxLength=64
	Region string `json:"region,omitempty"`

	// credentials names a Secret with the keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY
	// (and optionally AWS_SESSION_TOKEN); it takes the place of the execution role.
	// +optional
	Credentials *SecretReference `json:"credentials,omitempty"`
}

// DestinationConfig is where records of asynchronous invocations go.
type DestinationConfig struct {
	// onSuccess receives a record of each successful invocation.
	// +optional
	OnSuccess *Destination `json:"onSuccess,omitempty"`

	// onFailure receives a record of each event that exhausted its attempts or its maximum age.
	// +optional
	OnFailure *Destination `json:"onFailure,omitempty"`
}

// EventInvokeConfig is Lambda's asynchronous invocation configuration
// (PutFunctionEventInvokeConfig) for $LATEST, a version or an alias.
type EventInvokeConfig struct {
	// maximumRetryAttempts after a function error (0–2, default 2).
	// +optional
	// +kubebuilder:default=2
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=2
	MaximumRetryAttempts *int32 `json:"maximumRetryAttempts,omitempty"`

	// maximumEventAgeInSeconds an event is kept for before it is discarded (60–21600, default 21600).
	// +optional
	// +kubebuilder:default=21600
	// +kubebuilder:validation:Minimum=60
	// +kubebuilder:validation:Maximum=21600
	MaximumEventAgeInSeconds *int32 `json:"maximumEventAgeInSeconds,omitempty"`

	// destinationConfig: where records of successful and failed invocations go.
	// +optional
	DestinationConfig *DestinationConfig `json:"destinationConfig,omitempty"`
}

// DeadLetterConfig is where an asynchronous event goes, as is, after its last failed attempt.
// It takes the place of Lambda's TargetArn (an SQS queue or SNS topic).
type DeadLetterConfig struct {
	// target receives the failed event.
	// +required
	Target Destination `json:"target"`
}

// FunctionURLAuthType says who may call a function URL.
// +kubebuilder:validation:Enum=NONE;AWS_IAM;KUBERNETES
type FunctionURLAuthType string

const (
	// FunctionURLAuthNone lets anyone call the URL (Lambda's NONE).
	FunctionURLAuthNone FunctionURLAuthType = "NONE"
	// FunctionURLAuthKubernetes requires a Kubernetes bearer token allowed to `invoke`
	// functions (it takes the place of Lambda's AWS_IAM).
	FunctionURLAuthKubernetes FunctionURLAuthType = "KUBERNETES"
	// FunctionURLAuthAWSIAM is Lambda's name for authenticated URLs; klambda checks it as
	// KUBERNETES (the Kubernetes token as Bearer or as the SigV4 session token), so
	// Lambda's templates keep working.
	FunctionURLAuthAWSIAM FunctionURLAuthType = "AWS_IAM"
)

// InvokeMode is how a function URL returns the response.
// +kubebuilder:validation:Enum=BUFFERED;RESPONSE_STREAM
type InvokeMode string

const (
	InvokeModeBuffered       InvokeMode = "BUFFERED"
	InvokeModeResponseStream InvokeMode = "RESPONSE_STREAM"
)

// FunctionURLConfig is a dedicated HTTP endpoint for $LATEST or an alias (Lambda's function URL).
type FunctionURLConfig struct {
	// authType: NONE (public), or AWS_IAM / KUBERNETES (the same: a Kubernetes token, as
	// Bearer or as the SigV4 session token, allowed to invoke the function, checked as the
	// Invoke API checks it).
	// +required
	AuthType FunctionURLAuthType `json:"authType"`

	// cors settings for the URL.
	// +optional
	Cors *Cors `json:"cors,omitempty"`

	// invokeMode: BUFFERED (default) or RESPONSE_STREAM.
	// +optional
	// +kubebuilder:default=BUFFERED
	InvokeMode InvokeMode `json:"invokeMode,omitempty"`
}

// Cors is Lambda's cross-origin resource sharing configuration of a function URL.
type Cors struct {
	// allowCredentials allows cookies and other credentials in requests.
	// +optional
	AllowCredentials bool `json:"allowCredentials,omitempty"`

	// allowHeaders (at most 100, each at most 1024 characters).
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=100
	// +kubebuilder:validation:items:MaxLength=1024
	AllowHeaders []string `json:"allowHeaders,omitempty"`

	// allowMethods: HTTP methods or * (at most 6, each at most 6 characters).
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=6
	// +kubebuilder:validation:items:MaxLength=6
	// +kubebuilder:validation:items:Pattern=`^[A-Z*]+$`
	AllowMethods []string `json:"allowMethods,omitempty"`

	// allowOrigins or * (at most 100, each 1–253 characters).
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=100
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=253
	AllowOrigins []string `json:"allowOrigins,omitempty"`

	// exposeHeaders (at most 100, each at most 1024 characters).
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=100
	// +kubebuilder:validation:items:MaxLength=1024
	ExposeHeaders []string `json:"exposeHeaders,omitempty"`

	// maxAge in seconds a browser caches the preflight result (0–86400, default 0).
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=86400
	MaxAge *int32 `json:"maxAge,omitempty"`
}

// ProvisionedConcurrencyStatusValue is Lambda's ProvisionedConcurrencyConfig Status.
// +kubebuilder:validation:Enum=IN_PROGRESS;READY;FAILED
type ProvisionedConcurrencyStatusValue string

const (
	ProvisionedConcurrencyInProgress ProvisionedConcurrencyStatusValue = "IN_PROGRESS"
	ProvisionedConcurrencyReady      ProvisionedConcurrencyStatusValue = "READY"
	ProvisionedConcurrencyFailed     ProvisionedConcurrencyStatusValue = "FAILED"
)

// ProvisionedConcurrencyStatus is Lambda's GetProvisionedConcurrencyConfig response.
type ProvisionedConcurrencyStatus struct {
	// requestedProvisionedConcurrentExecutions: the amount asked for.
	// +optional
	RequestedProvisionedConcurrentExecutions int32 `json:"requestedProvisionedConcurrentExecutions,omitempty"`
	// allocatedProvisionedConcurrentExecutions: environments allocated so far.
	// +optional
	AllocatedProvisionedConcurrentExecutions int32 `json:"allocatedProvisionedConcurrentExecutions,omitempty"`
	// availableProvisionedConcurrentExecutions: allocated environments that are ready.
	// +optional
	AvailableProvisionedConcurrentExecutions int32 `json:"availableProvisionedConcurrentExecutions,omitempty"`
	// status: IN_PROGRESS, READY or FAILED.
	// +optional
	Status ProvisionedConcurrencyStatusValue `json:"status,omitempty"`
	// statusReason explains a FAILED status.
	// +optional
	StatusReason string `json:"statusReason,omitempty"`
	// lastModified is when the configuration last changed.
	// +optional
	LastModified *metav1.Time `json:"lastModified,omitempty"`
}
