package controllers

import (
	"fmt"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	"github.com/klambda/klambda/internal/codeloader"
	"github.com/klambda/klambda/internal/codestore"
	"github.com/klambda/klambda/internal/netguard"
)

// Config is the manager's configuration file (the --config flag of cmd/manager). Every
// field is optional; Load fills in the defaults below, and runtimeImages entries are merged
// over the default table, so a file only lists what it changes:
//
//	region: eu-west-1
//	shimImage: ghcr.io/klambda/runtime-shim:v0.1.0
//	imagePullPolicy: IfNotPresent
//	runtimeImages:
//	  provided.al2023: registry.local/lambda/provided:al2023
type Config struct {
	// RuntimeImages maps a Zip function's runtime to the base image its code runs in.
	RuntimeImages map[string]string `json:"runtimeImages,omitempty"`
	// ShimImage runs the runtime-shim sidecar and the load-code init container.
	ShimImage string `json:"shimImage,omitempty"`
	// ImagePullPolicy for every container of a function pod; empty leaves Kubernetes' default.
	ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy,omitempty"`
	// Region and AccountID shape ARNs and AWS_REGION.
	Region    string `json:"region,omitempty"`
	AccountID string `json:"accountId,omitempty"`
	// LogGroupPrefix + function name is AWS_LAMBDA_LOG_GROUP_NAME (default /aws/lambda/).
	LogGroupPrefix string `json:"logGroupPrefix,omitempty"`
	// RunAsUser is the uid (and gid) every container of a function pod runs as.
	RunAsUser int64 `json:"runAsUser,omitempty"`
	// CPURequestFraction of the Lambda CPU share (memorySize/1769 vCPU, which is also the
	// limit) is requested, so that idle functions don't reserve whole cores (default 0.25).
	CPURequestFraction float64 `json:"cpuRequestFraction,omitempty"`
	// EmbeddedShim lists the runtimes whose base image (runtimeImages) carries the
	// runtime-shim binary. A Zip function on such a runtime runs in one container: the shim
	// is its entrypoint, unpacks the code and layers, and starts the runtime as its child —
	// one container start on a cold start instead of three (load-code, the shim sidecar, the
	// function). Other runtimes, and Image functions, keep the sidecar shape.
	//
	//	embeddedShim:
	//	  provided.al2023: {path: /klambda/runtime-shim}
	//	  nodejs22.x: {path: /klambda/runtime-shim, entrypoint: [/lambda-entrypoint.sh]}
	EmbeddedShim map[string]EmbeddedShim `json:"embeddedShim,omitempty"`
	// InitCPU is the CPU limit an environment of the one-container shape starts with, while
	// the shim unpacks the code and the runtime initialises (default 1, one vCPU); the
	// activator resizes the container in place to Lambda's share (memorySize/1769 vCPU)
	// once the environment is ready. Unpacking a package is klambda's work, which Lambda
	// does not charge to the function's CPU either: at 128 MB (72m) a 2.6 MB package alone
	// would take over a second. "0" starts at Lambda's share and never resizes.
	InitCPU string `json:"initCPU,omitempty"`
	// initCPUMillis is InitCPU parsed.
	initCPUMillis int64
	// ResolveImageTags asks the registry for the digest of an imageUri given by tag (default
	// true). A tag that can't be resolved fails the deployment with Lambda's reason
	// (InvalidImage, ImageAccessDenied; a transient failure is retried), never running the
	// tag unpinned; false runs tags as they are (status says unpinned).
	ResolveImageTags *bool `json:"resolveImageTags,omitempty"`
	// PlainHTTPRegistries are the registries, host[:port] as an image reference spells
	// them, that the manager reaches without TLS (go-containerregistry's name.Insecure:
	// HTTPS is tried first, then plain HTTP): the registries of imageUri tags it resolves,
	// and the code store's (codeStore.repository, readRepository). It is the one place the
	// manager learns that a registry speaks plain HTTP.
	//
	//	plainHTTPRegistries: [registry.registry.svc:5000, klambda-code-store.klambda-system.svc:5000]
	PlainHTTPRegistries []string `json:"plainHTTPRegistries,omitempty"`
	// CodeFetch bounds the manager's downloads of code.url, s3 code and layer content.
	CodeFetch CodeFetchConfig `json:"codeFetch,omitempty"`
	// Egress is the address policy of every endpoint a tenant names that the manager dials
	// (code.url and its redirects, s3 endpoints, registries of imageUri tags): checked on
	// the IP after DNS, on every connection (internal/netguard).
	Egress EgressConfig `json:"egress,omitempty"`
	// NetworkPolicy: the NetworkPolicy kept next to every Function, so that only the
	// activator reaches its pods' invoke port (controllers/networkpolicy.go).
	NetworkPolicy NetworkPolicyConfig `json:"networkPolicy,omitempty"`
	// FunctionURLs: how the URLs reported in status.functionUrl are spelled (the activator
	// serves them; cmd/activator --function-url-domain).
	FunctionURLs FunctionURLsConfig `json:"functionUrls,omitempty"`
	// CodeStore: where code, layers and published versions' code are kept once resolved
	// (internal/codestore). Off when repository is empty: pods then load from the source.
	CodeStore CodeStoreConfig `json:"codeStore,omitempty"`
	// ImageFunctions: Image functions in one container, from an image klambda derives
	// (the function's image plus the runtime-shim) and keeps in a repository the nodes
	// pull from (controllers/imagefunctions.go). Off when repository is empty: Image
	// functions keep the sidecar shape.
	ImageFunctions ImageFunctionsConfig `json:"imageFunctions,omitempty"`
	// Pools of pre-warmed generic environments, per runtime, architecture and memory size
	// (controllers/pool.go, docs/pools.md). None by default.
	Pools []PoolConfig `json:"pools,omitempty"`
	// Tolerations are added to the pods of the functions (and pools) of an architecture,
	// Lambda's name (x86_64, arm64), so that they can run on tainted node pools, as arm64
	// pools often are. Function pods already select their architecture's nodes
	// (kubernetes.io/arch); a toleration only lets them onto the tainted ones:
	//
	//	tolerations:
	//	  arm64:
	//	    - {key: kubernetes.io/arch, operator: Equal, value: arm64, effect: NoSchedule}
	Tolerations map[string][]corev1.Toleration `json:"tolerations,omitempty"`
	// egressPolicy is Egress parsed.
	egressPolicy *netguard.Policy
}

// FunctionURLsConfig spells function URLs: host-based https://<url-id>.lambda-url.<domain>/
// when domain is set (scheme http for a plain-HTTP activator), else path-based
// <pathBase>/lambda-url/<url-id>/ (pathBase: the activator's address, e.g.
// http://klambda-activator.klambda-system.svc:8080; empty: the path alone).
type FunctionURLsConfig struct {
	Domain   string `json:"domain,omitempty"`
	Scheme   string `json:"scheme,omitempty"`
	PathBase string `json:"pathBase,omitempty"`
}

// FunctionURL is the URL of the function URL with url-id id.
func (c FunctionURLsConfig) FunctionURL(id string) string {
	return contract.FunctionURL(id, c.Scheme, c.Domain, c.PathBase)
}

// CodeStoreConfig is the code store: an OCI registry's repository (docs/code-store.md).
//
//	codeStore:
//	  repository: klambda-code-store.klambda-system.svc:5000/klambda/code  # the manager writes
//	  readRepository: klambda-code-store.klambda-system.svc:5001/klambda/code  # pods read (default: repository)
//	  credentialsDir: /etc/klambda/code-store   # files username and password (write access)
//	  gcInterval: 10m          # how often unreferenced code is collected (0s: never)
//	  gcGrace: 1h              # how long content stays unreferenced before it is deleted
//	  gcMaxDeletes: 100        # deletions per collection at most
//
// A registry without TLS (an in-cluster one) is listed in plainHTTPRegistries.
type CodeStoreConfig struct {
	Repository     string           `json:"repository,omitempty"`
	ReadRepository string           `json:"readRepository,omitempty"`
	CredentialsDir string           `json:"credentialsDir,omitempty"`
	GCInterval     *metav1.Duration `json:"gcInterval,omitempty"`
	GCGrace        *metav1.Duration `json:"gcGrace,omitempty"`
	GCMaxDeletes   int              `json:"gcMaxDeletes,omitempty"`
}

// Defaults of CodeStoreConfig.
const (
	DefaultCodeStoreGCInterval   = 10 * time.Minute
	DefaultCodeStoreGCGrace      = time.Hour
	DefaultCodeStoreGCMaxDeletes = 100
)

// codeStoreReadLocation is where pods read the code store.
func (c *Config) codeStoreReadLocation() codestore.Location {
	r := c.CodeStore.ReadRepository
	if r == "" {
		r = c.CodeStore.Repository
	}
	repo, err := name.NewRepository(r)
	if err != nil {
		return codestore.Location{} // refused by ParseConfig
	}
	return codestore.Location{Registry: repo.RegistryStr(), Repository: repo.RepositoryStr(), PlainHTTP: c.PlainHTTP(repo.RegistryStr())}
}

// PlainHTTP says whether registry (host[:port], as name.Registry.RegistryStr spells it)
// is listed in plainHTTPRegistries.
func (c *Config) PlainHTTP(registry string) bool {
	return slices.ContainsFunc(c.PlainHTTPRegistries, func(e string) bool {
		r, err := name.NewRegistry(e)
		return err == nil && strings.EqualFold(r.RegistryStr(), registry)
	})
}

// registryHost is host[:port]: a DNS name, an IPv4 address or a bracketed IPv6 address.
var registryHost = regexp.MustCompile(`^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?)(:[0-9]{1,5})?$`)

func validatePlainHTTPRegistries(list []string) error {
	for i, e := range list {
		bad := func(why string) error {
			return fmt.Errorf("plainHTTPRegistries[%d]: %q %s: list a registry as host[:port], e.g. registry.registry.svc:5000", i, e, why)
		}
		switch {
		case strings.Contains(e, "://"):
			return bad("has a scheme")
		case strings.Contains(e, "/"):
			return bad("has a path")
		case !registryHost.MatchString(e):
			return bad("is not a host[:port]")
		}
		if _, port, err := net.SplitHostPort(e); err == nil {
			if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
				return bad("has a port outside 1-65535")
			}
		}
		if _, err := name.NewRegistry(e, name.StrictValidation); err != nil {
			return bad("is not a registry")
		}
	}
	return nil
}

func (c *CodeStoreConfig) validate() error {
	if c.Repository == "" {
		if c.ReadRepository != "" || c.CredentialsDir != "" || c.GCInterval != nil || c.GCGrace != nil || c.GCMaxDeletes != 0 {
			return fmt.Errorf("codeStore: repository is empty (no code store), but other codeStore fields are set")
		}
		return nil
	}
	for _, r := range []string{c.Repository, c.ReadRepository} {
		if r == "" {
			continue
		}
		if _, err := name.NewRepository(r, name.StrictValidation); err != nil {
			return fmt.Errorf("codeStore: %q is not a registry/repository: %w", r, err)
		}
	}
	switch {
	case c.GCInterval != nil && c.GCInterval.Duration < 0, c.GCGrace != nil && c.GCGrace.Duration < 0:
		return fmt.Errorf("codeStore.gcInterval and codeStore.gcGrace must not be negative")
	case c.GCMaxDeletes < 0:
		return fmt.Errorf("codeStore.gcMaxDeletes must not be negative, got %d", c.GCMaxDeletes)
	}
	return nil
}

func (c *CodeStoreConfig) applyDefaults() {
	if c.Repository == "" {
		return
	}
	if c.ReadRepository == "" {
		c.ReadRepository = c.Repository
	}
	if c.GCInterval == nil {
		c.GCInterval = &metav1.Duration{Duration: DefaultCodeStoreGCInterval}
	}
	if c.GCGrace == nil {
		c.GCGrace = &metav1.Duration{Duration: DefaultCodeStoreGCGrace}
	}
	if c.GCMaxDeletes == 0 {
		c.GCMaxDeletes = DefaultCodeStoreGCMaxDeletes
	}
}

// ImageFunctionsConfig is the one-container shape of Image functions (controllers/README.md, "The pod").
//
//	imageFunctions:
//	  repository: registry.example:5000/klambda/derived  # the manager writes, the nodes pull (anonymously)
//	  credentialsDir: /etc/klambda/derived   # files username and password (write access; default anonymous)
//	  shims:                                 # the runtime-shim binary per architecture, files in the manager's container
//	    x86_64: /klambda/shims/amd64/runtime-shim
//	    arm64: /klambda/shims/arm64/runtime-shim
//	  maxConcurrent: 1                       # derivations at once; the others wait (Pending)
//	  timeout: 10m                           # one derivation (reading the image, writing it)
//	  maxBytes: 10737418240                  # the image's config and layers as stored, at most 10 GiB
//
// A registry without TLS is listed in plainHTTPRegistries (for the manager; the nodes need
// their own setting). An architecture without a shim keeps the sidecar shape.
type ImageFunctionsConfig struct {
	Repository     string            `json:"repository,omitempty"`
	CredentialsDir string            `json:"credentialsDir,omitempty"`
	Shims          map[string]string `json:"shims,omitempty"`
	MaxConcurrent  int               `json:"maxConcurrent,omitempty"`
	Timeout        *metav1.Duration  `json:"timeout,omitempty"`
	MaxBytes       int64             `json:"maxBytes,omitempty"`
}

// Defaults and bounds of ImageFunctionsConfig.
const (
	DefaultImageFunctionsMaxConcurrent = 1
	DefaultImageFunctionsTimeout       = 10 * time.Minute
	// MaxImageBytes is Lambda's limit on an image (10 GB, uncompressed; here as stored).
	MaxImageBytes = 10 << 30
)

func (c *ImageFunctionsConfig) validate() error {
	if c.Repository == "" {
		if c.CredentialsDir != "" || len(c.Shims) > 0 || c.MaxConcurrent != 0 || c.Timeout != nil || c.MaxBytes != 0 {
			return fmt.Errorf("imageFunctions: repository is empty (Image functions keep the sidecar shape), but other imageFunctions fields are set")
		}
		return nil
	}
	if _, err := name.NewRepository(c.Repository, name.StrictValidation); err != nil {
		return fmt.Errorf("imageFunctions.repository: %q is not a registry/repository: %w", c.Repository, err)
	}
	if len(c.Shims) == 0 {
		return fmt.Errorf("imageFunctions.shims: list the runtime-shim binary of at least one architecture (x86_64, arm64)")
	}
	for arch, p := range c.Shims {
		if arch != string(lambdav1alpha1.ArchitectureX8664) && arch != string(lambdav1alpha1.ArchitectureArm64) {
			return fmt.Errorf("imageFunctions.shims: %q is not an architecture (x86_64, arm64)", arch)
		}
		if !strings.HasPrefix(p, "/") {
			return fmt.Errorf("imageFunctions.shims[%s] must be an absolute path in the manager's container, got %q", arch, p)
		}
	}
	switch {
	case c.MaxConcurrent < 0:
		return fmt.Errorf("imageFunctions.maxConcurrent must be at least 1, got %d", c.MaxConcurrent)
	case c.Timeout != nil && c.Timeout.Duration <= 0:
		return fmt.Errorf("imageFunctions.timeout must be a positive duration")
	case c.MaxBytes < 0 || c.MaxBytes > MaxImageBytes:
		return fmt.Errorf("imageFunctions.maxBytes must be between 1 and %d (Lambda's 10 GB), got %d", int64(MaxImageBytes), c.MaxBytes)
	}
	return nil
}

func (c *ImageFunctionsConfig) applyDefaults() {
	if c.Repository == "" {
		return
	}
	if c.MaxConcurrent == 0 {
		c.MaxConcurrent = DefaultImageFunctionsMaxConcurrent
	}
	if c.Timeout == nil {
		c.Timeout = &metav1.Duration{Duration: DefaultImageFunctionsTimeout}
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = MaxImageBytes
	}
}

// CodeFetchConfig bounds code downloads (codeloader.Limits). Zero values are the defaults.
//
//	codeFetch:
//	  maxConcurrent: 2     # downloads at once; others wait their turn
//	  timeout: 3m          # a whole download
//	  stallTimeout: 20s    # every 20 s must bring minProgressBytes, else "timed out"
//	  minProgressBytes: 16384
//	  maxRedirects: 3      # -1: none
//	  maxBytes: 262144000  # at most Lambda's 250 MB
//	  tempDir: /tmp        # where downloads wait while they are checked
type CodeFetchConfig struct {
	MaxConcurrent    int              `json:"maxConcurrent,omitempty"`
	Timeout          *metav1.Duration `json:"timeout,omitempty"`
	StallTimeout     *metav1.Duration `json:"stallTimeout,omitempty"`
	MinProgressBytes int64            `json:"minProgressBytes,omitempty"`
	MaxRedirects     int              `json:"maxRedirects,omitempty"`
	MaxBytes         int64            `json:"maxBytes,omitempty"`
	TempDir          string           `json:"tempDir,omitempty"`
}

// DefaultMaxConcurrentFetches is codeFetch.maxConcurrent's default.
const DefaultMaxConcurrentFetches = 2

// EgressConfig is a netguard.Policy in the configuration file. Loopback, link-local (cloud
// metadata), multicast and unspecified addresses are always refused; denyCIDRs adds the
// cluster's own ranges (pod, service, node CIDRs), allowCIDRs reopens parts of them (an
// in-cluster S3 service).
type EgressConfig struct {
	DenyCIDRs  []string `json:"denyCIDRs,omitempty"`
	AllowCIDRs []string `json:"allowCIDRs,omitempty"`
	// AllowLoopback is for tests and single-node development only.
	AllowLoopback bool `json:"allowLoopback,omitempty"`
}

// Policy is the egress policy Egress describes.
func (c *Config) Policy() *netguard.Policy {
	if c.egressPolicy == nil {
		p, err := c.Egress.policy()
		if err != nil {
			// ParseConfig refuses such a file; a Config built in code that got it wrong
			// still refuses the always-refused ranges.
			return &netguard.Policy{}
		}
		c.egressPolicy = p
	}
	return c.egressPolicy
}

func (e EgressConfig) policy() (*netguard.Policy, error) {
	p := &netguard.Policy{AllowLoopback: e.AllowLoopback}
	var err error
	if p.Deny, err = netguard.ParsePrefixes(strings.Join(e.DenyCIDRs, ",")); err != nil {
		return nil, fmt.Errorf("egress.denyCIDRs: %w", err)
	}
	if p.Allow, err = netguard.ParsePrefixes(strings.Join(e.AllowCIDRs, ",")); err != nil {
		return nil, fmt.Errorf("egress.allowCIDRs: %w", err)
	}
	return p, nil
}

// FetchLimits are the codeloader.Limits of one download.
func (c *Config) FetchLimits() codeloader.Limits {
	f := c.CodeFetch
	l := codeloader.Limits{MaxBytes: f.MaxBytes, MinProgress: f.MinProgressBytes, MaxRedirects: f.MaxRedirects, Policy: c.Policy()}
	if f.Timeout != nil {
		l.Timeout = f.Timeout.Duration
	}
	if f.StallTimeout != nil {
		l.StallTimeout = f.StallTimeout.Duration
	}
	return l
}

// EmbeddedShim is where a runtime image keeps the runtime-shim binary.
type EmbeddedShim struct {
	// Path of the runtime-shim binary in the image.
	Path string `json:"path"`
	// Entrypoint is the image's own entrypoint, which the shim starts with the handler as
	// its argument (Kubernetes' command replaces the image's). Default
	// /lambda-entrypoint.sh, the Lambda base images'. Custom runtimes (provided*, go1.x)
	// run their bootstrap instead.
	Entrypoint []string `json:"entrypoint,omitempty"`
}

// DefaultEntrypoint is the Lambda base images' entrypoint.
const DefaultEntrypoint = "/lambda-entrypoint.sh"

// DefaultShimImage is the runtime-shim image when the configuration names none.
const DefaultShimImage = "ghcr.io/klambda/runtime-shim:latest"

// DefaultRuntimeImages are the public Lambda base images for every runtime of the API enum
// that has one; their entrypoint runs the runtime interface client when
// AWS_LAMBDA_RUNTIME_API is set.
func DefaultRuntimeImages() map[string]string {
	const ecr = "public.ecr.aws/lambda/"
	return map[string]string{
		"nodejs12.x": ecr + "nodejs:12", "nodejs14.x": ecr + "nodejs:14", "nodejs16.x": ecr + "nodejs:16",
		"nodejs18.x": ecr + "nodejs:18", "nodejs20.x": ecr + "nodejs:20", "nodejs22.x": ecr + "nodejs:22",
		"python3.7": ecr + "python:3.7", "python3.8": ecr + "python:3.8", "python3.9": ecr + "python:3.9",
		"python3.10": ecr + "python:3.10", "python3.11": ecr + "python:3.11", "python3.12": ecr + "python:3.12",
		"python3.13": ecr + "python:3.13",
		"java8":      ecr + "java:8", "java8.al2": ecr + "java:8.al2", "java11": ecr + "java:11",
		"java17": ecr + "java:17", "java21": ecr + "java:21",
		"dotnetcore3.1": ecr + "dotnet:core3.1", "dotnet6": ecr + "dotnet:6", "dotnet8": ecr + "dotnet:8",
		"ruby2.7": ecr + "ruby:2.7", "ruby3.2": ecr + "ruby:3.2", "ruby3.3": ecr + "ruby:3.3",
		"go1.x":    ecr + "go:1",
		"provided": ecr + "provided:alami", "provided.al2": ecr + "provided:al2", "provided.al2023": ecr + "provided:al2023",
	}
}

// DefaultConfig is the configuration without a file.
func DefaultConfig() Config {
	c := Config{}
	c.applyDefaults()
	return c
}

// LoadConfig reads a configuration file; an empty path means DefaultConfig. Unknown fields
// are an error, so that a typo doesn't silently keep a default.
func LoadConfig(path string) (Config, error) {
	if path == "" {
		return DefaultConfig(), nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("reading the manager configuration: %w", err)
	}
	return ParseConfig(data)
}

// ParseConfig parses the YAML (or JSON) of a configuration file and fills in defaults.
func ParseConfig(data []byte) (Config, error) {
	var c Config
	var err error
	if err = yaml.UnmarshalStrict(data, &c); err != nil {
		return Config{}, fmt.Errorf("parsing the manager configuration: %w", err)
	}
	for rt, e := range c.EmbeddedShim {
		if !strings.HasPrefix(e.Path, "/") {
			return Config{}, fmt.Errorf("embeddedShim[%s].path must be an absolute path in the image, got %q", rt, e.Path)
		}
	}
	if c.InitCPU != "" {
		q, err := resource.ParseQuantity(c.InitCPU)
		if err != nil || q.Sign() < 0 {
			return Config{}, fmt.Errorf("initCPU must be a CPU quantity such as 1 or 500m, got %q", c.InitCPU)
		}
	}
	if c.CPURequestFraction < 0 || c.CPURequestFraction > 1 {
		return Config{}, fmt.Errorf("cpuRequestFraction must be between 0 and 1, got %v", c.CPURequestFraction)
	}
	f := c.CodeFetch
	switch {
	case f.MaxConcurrent < 0:
		return Config{}, fmt.Errorf("codeFetch.maxConcurrent must be at least 1, got %d", f.MaxConcurrent)
	case f.MaxBytes < 0 || f.MaxBytes > codeloader.MaxArchiveSize:
		return Config{}, fmt.Errorf("codeFetch.maxBytes must be between 1 and %d (Lambda's 250 MB), got %d", codeloader.MaxArchiveSize, f.MaxBytes)
	case f.MinProgressBytes < 0:
		return Config{}, fmt.Errorf("codeFetch.minProgressBytes must not be negative, got %d", f.MinProgressBytes)
	case f.Timeout != nil && f.Timeout.Duration <= 0, f.StallTimeout != nil && f.StallTimeout.Duration <= 0:
		return Config{}, fmt.Errorf("codeFetch.timeout and codeFetch.stallTimeout must be positive durations")
	}
	if err := validatePlainHTTPRegistries(c.PlainHTTPRegistries); err != nil {
		return Config{}, err
	}
	if c.egressPolicy, err = c.Egress.policy(); err != nil {
		return Config{}, err
	}
	if err := c.NetworkPolicy.validate(); err != nil {
		return Config{}, err
	}
	if err := c.CodeStore.validate(); err != nil {
		return Config{}, err
	}
	if err := validatePools(c.Pools, c.EmbeddedShim); err != nil {
		return Config{}, err
	}
	if err := c.ImageFunctions.validate(); err != nil {
		return Config{}, err
	}
	if err := validateTolerations(c.Tolerations); err != nil {
		return Config{}, err
	}
	c.applyDefaults()
	return c, nil
}

func (c *Config) applyDefaults() {
	images := DefaultRuntimeImages()
	for k, v := range c.RuntimeImages {
		images[k] = v
	}
	c.RuntimeImages = images
	if c.ShimImage == "" {
		c.ShimImage = DefaultShimImage
	}
	if c.Region == "" {
		c.Region = lambdav1alpha1.DefaultRegion
	}
	if c.AccountID == "" {
		c.AccountID = lambdav1alpha1.DefaultAccountID
	}
	if c.LogGroupPrefix == "" {
		c.LogGroupPrefix = "/aws/lambda/"
	}
	if c.RunAsUser == 0 {
		c.RunAsUser = 993
	}
	if c.InitCPU == "" {
		c.InitCPU = "1"
	}
	if q, err := resource.ParseQuantity(c.InitCPU); err == nil {
		c.initCPUMillis = q.MilliValue()
	}
	if c.CPURequestFraction == 0 {
		c.CPURequestFraction = 0.25
	}
	if c.ResolveImageTags == nil {
		t := true
		c.ResolveImageTags = &t
	}
	if c.CodeFetch.MaxConcurrent == 0 {
		c.CodeFetch.MaxConcurrent = DefaultMaxConcurrentFetches
	}
	c.NetworkPolicy.applyDefaults()
	c.CodeStore.applyDefaults()
	c.ImageFunctions.applyDefaults()
}
