package environment

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/klambda/klambda/api/contract"
)

// Limits Lambda applies to every environment (spec §7.2, §11).
const (
	// MaxResponsePayload is the largest response a runtime may post; Lambda's error
	// message names 6291556 bytes (6 MiB + 100).
	MaxResponsePayload = 6*1024*1024 + 100
	// MaxStreamedResponse is Lambda's limit on a streamed response.
	MaxStreamedResponse = contract.MaxStreamedResponse
	// MaxErrorPayload bounds an error body posted by the runtime (Lambda logs 256 KB of it;
	// it still answers the caller with up to the response limit).
	MaxErrorPayload = MaxResponsePayload
	// DefaultInitTimeout is Lambda's limit on the Init phase.
	DefaultInitTimeout = 10 * time.Second
	// DefaultBodyTimeout bounds the arrival of an invoke's body (6 MB at 600 KB/s).
	DefaultBodyTimeout = 10 * time.Second
	// TailSize is how much of an invocation's log X-Amz-Log-Result carries.
	TailSize = 4096
	// MaxExtensions is Lambda's limit on registered extensions.
	MaxExtensions = 10
)

// Config is the function configuration the control plane puts in the pod's environment.
type Config struct {
	FunctionName    string
	FunctionVersion string
	MemorySizeMB    int
	Timeout         time.Duration
	LogGroupName    string
	LogStreamName   string
	Region          string
	Handler         string
	// AccountID only shapes the default invoked-function ARN.
	AccountID string
	// InvokeSecret, when set, must be presented on every invoke (header InvokeSecretHeader).
	InvokeSecret string
	// InitTimeout is the Init phase limit (Lambda: 10 s).
	InitTimeout time.Duration
	// ShutdownGrace is how long runtime and extensions get after SIGTERM/SHUTDOWN
	// before SIGKILL. Zero means Lambda's: 300 ms, or 2 s with external extensions.
	ShutdownGrace time.Duration
	// BodyTimeout is how long an invoke's body may take to arrive once its head has
	// (DefaultBodyTimeout when zero); a slower one is answered 408 and its connection closed.
	BodyTimeout time.Duration
}

// EffectiveBodyTimeout is BodyTimeout or its default.
func (c *Config) EffectiveBodyTimeout() time.Duration {
	if c.BodyTimeout > 0 {
		return c.BodyTimeout
	}
	return DefaultBodyTimeout
}

// ConfigFromEnv reads the variables the control plane sets (documented in README.md),
// with the emulator's defaults for the ones it leaves out.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	get := func(k, def string) string {
		if v := strings.TrimSpace(getenv(k)); v != "" {
			return v
		}
		return def
	}
	c := Config{
		FunctionName:    get("AWS_LAMBDA_FUNCTION_NAME", "function"),
		FunctionVersion: get("AWS_LAMBDA_FUNCTION_VERSION", contract.Latest),
		Region:          get("AWS_REGION", get("AWS_DEFAULT_REGION", "us-east-1")),
		Handler:         get("_HANDLER", ""),
		AccountID:       get("KLAMBDA_ACCOUNT_ID", "000000000000"),
		InvokeSecret:    getenv(contract.InvokeSecretEnv),
		InitTimeout:     DefaultInitTimeout,
	}
	c.LogGroupName = get("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/"+c.FunctionName)
	c.LogStreamName = get("AWS_LAMBDA_LOG_STREAM_NAME", time.Now().UTC().Format("2006/01/02")+"/["+c.FunctionVersion+"]"+strings.ReplaceAll(contract.NewRequestID(), "-", ""))
	mem, err := strconv.Atoi(get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
	if err != nil || mem < 1 {
		return c, fmt.Errorf("AWS_LAMBDA_FUNCTION_MEMORY_SIZE: want a positive number of MB, got %q", getenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"))
	}
	c.MemorySizeMB = mem
	// Same variable and unit as the emulator: seconds (fractions allowed for tests).
	secs, err := strconv.ParseFloat(get("AWS_LAMBDA_FUNCTION_TIMEOUT", "3"), 64)
	if err != nil || secs <= 0 {
		return c, fmt.Errorf("AWS_LAMBDA_FUNCTION_TIMEOUT: want a positive number of seconds, got %q", getenv("AWS_LAMBDA_FUNCTION_TIMEOUT"))
	}
	c.Timeout = time.Duration(secs * float64(time.Second))
	return c, nil
}

// DefaultInvokedARN is the ARN the runtime sees when the caller does not name one.
func (c *Config) DefaultInvokedARN() string {
	return contract.FunctionARN(c.Region, c.AccountID, c.FunctionName)
}

func (c *Config) shutdownGrace(externalExtensions bool) time.Duration {
	if c.ShutdownGrace > 0 {
		return c.ShutdownGrace
	}
	if externalExtensions {
		return 2 * time.Second
	}
	return 300 * time.Millisecond
}
