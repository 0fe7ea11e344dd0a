package controllers

import (
	"fmt"
	"os"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
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
	// ResolveImageTags asks the registry for the digest of an imageUri given by tag (default
	// true). When the registry can't be reached the tag is used as is, with a Warning Event.
	ResolveImageTags *bool `json:"resolveImageTags,omitempty"`
}

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
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return Config{}, fmt.Errorf("parsing the manager configuration: %w", err)
	}
	if c.CPURequestFraction < 0 || c.CPURequestFraction > 1 {
		return Config{}, fmt.Errorf("cpuRequestFraction must be between 0 and 1, got %v", c.CPURequestFraction)
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
	if c.CPURequestFraction == 0 {
		c.CPURequestFraction = 0.25
	}
	if c.ResolveImageTags == nil {
		t := true
		c.ResolveImageTags = &t
	}
}
