package shim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/klambda/klambda/api/contract"
	"github.com/klambda/klambda/internal/transport"
	"github.com/klambda/klambda/shim/internal/api"
	"github.com/klambda/klambda/shim/internal/environment"
)

// Mode is how the shim finds the runtime.
type Mode string

const (
	// ModeExec: the shim starts the runtime as its child.
	ModeExec Mode = "exec"
	// ModeSidecar: the runtime runs in another container of the pod.
	ModeSidecar Mode = "sidecar"
)

// Options configure a Shim.
type Options struct {
	Config     Config
	Mode       Mode
	Listen     string   // invoke endpoint, default ":9000"
	RuntimeAPI string   // Runtime API, default "127.0.0.1:9001"
	Command    []string // exec mode: the runtime's command
	// ExtensionsDir: exec mode, external extensions to start first (Lambda's /opt/extensions).
	ExtensionsDir string
	// RuntimeMarker: sidecar mode, see SidecarSupervisor.Marker.
	RuntimeMarker string
	Stdout        io.Writer // the shim's log, default os.Stdout
}

// Shim is a running runtime shim: one environment, its Runtime API and invoke endpoint.
type Shim struct {
	opts      Options
	Env       *environment.Environment
	Logs      *environment.LogSink
	invokeLn  net.Listener
	rapiLn    net.Listener
	invokeSrv *transport.Server
	rapiSrv   *transport.Server
	// invokeHandler serves the invoke endpoint (invokeSrv's handler; a generic shim's
	// front server hands requests to it once specialized).
	invokeHandler http.Handler
	quit          chan struct{}
	sidecar       *SidecarSupervisor
}

// New listens on both addresses and prepares the environment; Start begins it.
func New(opts Options) (*Shim, error) {
	if opts.Listen == "" {
		opts.Listen = ":9000"
	}
	if opts.RuntimeAPI == "" {
		opts.RuntimeAPI = "127.0.0.1:9001"
	}
	if opts.Stdout == nil {
		opts.Stdout = os.Stdout
	}
	s := &Shim{opts: opts, quit: make(chan struct{})}
	if opts.Mode != ModeExec && opts.Mode != ModeSidecar {
		return nil, fmt.Errorf("unknown mode %q", opts.Mode)
	}
	if opts.Mode == ModeExec && len(opts.Command) == 0 {
		return nil, errors.New("exec mode needs the runtime's command")
	}
	var err error
	if s.rapiLn, err = net.Listen("tcp", opts.RuntimeAPI); err != nil {
		return nil, fmt.Errorf("listening for the Runtime API on %s: %w", opts.RuntimeAPI, err)
	}
	if s.invokeLn, err = net.Listen("tcp", opts.Listen); err != nil {
		s.rapiLn.Close()
		return nil, fmt.Errorf("listening for invokes on %s: %w", opts.Listen, err)
	}
	if err := s.assemble(os.Environ()); err != nil {
		s.rapiLn.Close()
		s.invokeLn.Close()
		return nil, err
	}
	return s, nil
}

// assemble builds the environment, its supervisor and both servers over the listeners
// s already holds. baseEnv is what the runtime's environment starts from in exec mode
// (childEnv adds Lambda's variables and removes the invoke secret).
func (s *Shim) assemble(baseEnv []string) error {
	opts := s.opts
	cfg := opts.Config
	if cfg.InitTimeout == 0 {
		cfg.InitTimeout = environment.DefaultInitTimeout
	}
	s.Logs = environment.NewLogSink(opts.Stdout)
	var sup environment.Supervisor
	switch opts.Mode {
	case ModeExec:
		sup = &ExecSupervisor{Command: opts.Command, ExtensionsDir: opts.ExtensionsDir, InitTimeout: cfg.InitTimeout}
	case ModeSidecar:
		s.sidecar = &SidecarSupervisor{Marker: opts.RuntimeMarker}
		sup = s.sidecar
	}
	s.Env = environment.NewEnvironment(&cfg, s.Logs, sup)
	switch sv := sup.(type) {
	case *ExecSupervisor:
		sv.Env = childEnv(baseEnv, &cfg, s.rapiLn.Addr().String())
		sv.Attach(s.Env, s.Logs)
	case *SidecarSupervisor:
		if err := sv.Attach(s.Env); err != nil {
			return err
		}
	}
	rapi, invoke := api.NewRuntimeAPI(s.Env, s.quit), api.NewInvokeServer(s.Env)
	s.invokeHandler = invoke
	s.rapiSrv = &transport.Server{Handler: rapi, ReadHeaderTimeout: 10 * time.Second}
	s.invokeSrv = &transport.Server{Handler: invoke, ReadHeaderTimeout: 10 * time.Second, BodyTimeout: cfg.EffectiveBodyTimeout(), MaxHeaderBytes: api.InvokeMaxHeaderBytes}
	return nil
}

// childEnv is the runtime's environment in exec mode: the shim's own, without the invoke
// secret, plus what Lambda defines for a runtime.
func childEnv(base []string, cfg *environment.Config, runtimeAPI string) []string {
	set := map[string]string{
		"AWS_LAMBDA_RUNTIME_API":          runtimeAPI,
		"AWS_LAMBDA_FUNCTION_NAME":        cfg.FunctionName,
		"AWS_LAMBDA_FUNCTION_VERSION":     cfg.FunctionVersion,
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": fmt.Sprint(cfg.MemorySizeMB),
		"AWS_LAMBDA_LOG_GROUP_NAME":       cfg.LogGroupName,
		"AWS_LAMBDA_LOG_STREAM_NAME":      cfg.LogStreamName,
		"AWS_REGION":                      cfg.Region,
		"AWS_LAMBDA_INITIALIZATION_TYPE":  "on-demand",
	}
	// An environment the manager started for provisioned concurrency says so in the
	// shim's own environment (the pod template); anything else is on-demand.
	for _, kv := range base {
		if kv == "AWS_LAMBDA_INITIALIZATION_TYPE=provisioned-concurrency" {
			set["AWS_LAMBDA_INITIALIZATION_TYPE"] = "provisioned-concurrency"
		}
	}
	if cfg.Handler != "" {
		set["_HANDLER"] = cfg.Handler
	}
	out := make([]string, 0, len(base)+len(set))
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		if _, ok := set[k]; ok || k == contract.InvokeSecretEnv {
			continue
		}
		out = append(out, kv)
	}
	for k, v := range set {
		out = append(out, k+"="+v)
	}
	return out
}

// InvokeAddr is the invoke endpoint's address.
func (s *Shim) InvokeAddr() string { return s.invokeLn.Addr().String() }

// RuntimeAPIAddr is the Runtime API's address.
func (s *Shim) RuntimeAPIAddr() string { return s.rapiLn.Addr().String() }

// Start serves both endpoints and starts the runtime (exec mode).
func (s *Shim) Start() {
	go func() { _ = s.rapiSrv.Serve(transport.Listener{Listener: s.rapiLn}) }()
	go func() { _ = s.invokeSrv.Serve(transport.Listener{Listener: s.invokeLn}) }()
	s.Env.Begin()
}

// Close shuts the environment down (SHUTDOWN to extensions, runtime stopped) and the
// servers with it.
func (s *Shim) Close() {
	select {
	case <-s.quit:
		return
	default:
	}
	close(s.quit)
	s.Env.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = s.invokeSrv.Shutdown(ctx)
	_ = s.rapiSrv.Shutdown(ctx)
	if s.sidecar != nil {
		s.sidecar.Close()
	}
	s.Logs.Flush()
}

// Run starts the shim and stops it when ctx ends.
func (s *Shim) Run(ctx context.Context) error {
	s.Start()
	<-ctx.Done()
	s.Close()
	return nil
}

// Config is the function configuration the control plane puts in the pod's environment
// (see README.md, "Configuration").
type Config = environment.Config

// DefaultInitTimeout is Lambda's limit on the Init phase.
const DefaultInitTimeout = environment.DefaultInitTimeout

// ConfigFromEnv reads the variables the control plane sets, with the emulator's defaults
// for the ones it leaves out.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	return environment.ConfigFromEnv(getenv)
}
