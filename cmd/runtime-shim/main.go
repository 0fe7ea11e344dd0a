// Command runtime-shim serves the Lambda Runtime, Extensions and Logs APIs and the invoke
// endpoint for one execution environment. See shim/README.md.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/klambda/klambda/api/contract"
	"github.com/klambda/klambda/internal/buildinfo"
	"github.com/klambda/klambda/internal/codeloader"
	"github.com/klambda/klambda/shim"
)

type flags struct {
	listen, runtimeAPI, secretFile, marker string
	extensionsDir                          string
	initTimeout, shutdownGrace             time.Duration
	procs                                  int
	// exec mode in a pod without a load-code init container: the shim loads the code.
	load codeloader.Options
}

func main() {
	var f flags
	root := &cobra.Command{
		Use:          "runtime-shim",
		Short:        "Lambda Runtime API and invoke endpoint for one execution environment",
		SilenceUsage: true,
		Version:      buildinfo.Get().String(),
	}
	root.SetVersionTemplate("{{.Name}} {{.Version}}\n")
	root.PersistentFlags().StringVar(&f.listen, "listen", ":9000", "address of the invoke endpoint (and /healthz, /readyz)")
	root.PersistentFlags().StringVar(&f.runtimeAPI, "runtime-api", "127.0.0.1:9001", "address of the Runtime, Extensions and Logs APIs")
	root.PersistentFlags().StringVar(&f.secretFile, "secret-file", "", "file holding the invoke secret (overrides KLAMBDA_INVOKE_SECRET)")
	root.PersistentFlags().DurationVar(&f.initTimeout, "init-timeout", shim.DefaultInitTimeout, "Init phase limit; a longer init is retried inside the first invoke")
	root.PersistentFlags().IntVar(&f.procs, "procs", 1, "GOMAXPROCS of the shim (0: Go's default); one invocation at a time needs one")
	root.PersistentFlags().DurationVar(&f.shutdownGrace, "shutdown-grace", 0, "time between SIGTERM/SHUTDOWN and SIGKILL (0: Lambda's 300 ms, 2 s with external extensions)")

	execCmd := &cobra.Command{
		Use:   "exec [flags] -- CMD [ARGS...]",
		Short: "start the runtime as a child process with AWS_LAMBDA_RUNTIME_API set, and restart it on reset",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.load.Code != "" || len(f.load.Layers) > 0 {
				// The pod's one container: unpack the code before anything listens, so that
				// a package that cannot be loaded never looks like an environment.
				if err := codeloader.Load(cmd.Context(), f.load, os.Stderr); err != nil {
					return fmt.Errorf("loading the code: %w", err)
				}
			}
			return run(f, shim.ModeExec, args)
		},
	}
	execCmd.Flags().StringVar(&f.extensionsDir, "extensions-dir", "/opt/extensions", "external extensions to start before the runtime (every executable in it)")
	execCmd.Flags().StringVar(&f.load.Code, "code", "", "before starting the runtime, unpack this code archive (a load-code SOURCE) into --task-root")
	execCmd.Flags().StringArrayVar(&f.load.Layers, "layer", nil, "before starting the runtime, unpack this layer archive into --opt; repeat, in order")
	execCmd.Flags().StringVar(&f.load.TaskRoot, "task-root", "/var/task", "folder --code is unpacked into")
	execCmd.Flags().StringVar(&f.load.Opt, "opt", "/opt", "folder the --layer archives are unpacked into")
	execCmd.Flags().StringVar(&f.load.Scratch, "scratch", "", "folder for downloads while they are checked (default: the system's temporary folder)")
	genericCmd := &cobra.Command{
		Use:   "generic [--task-root=DIR] [--opt=DIR] [--scratch=DIR]",
		Short: "a pool's pre-warmed environment: wait, with no function, for one specialization (docs/pools.md)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runGeneric(f)
		},
	}
	genericCmd.Flags().StringVar(&f.extensionsDir, "extensions-dir", "/opt/extensions", "external extensions to start before the runtime, once specialized")
	genericCmd.Flags().StringVar(&f.load.TaskRoot, "task-root", "/var/task", "folder the function's code is unpacked into (must be empty)")
	genericCmd.Flags().StringVar(&f.load.Opt, "opt", "/opt", "folder the function's layers are unpacked into (must be empty)")
	genericCmd.Flags().StringVar(&f.load.Scratch, "scratch", "", "folder for downloads while they are checked (default: the system's temporary folder)")
	sidecarCmd := &cobra.Command{
		Use:   "sidecar",
		Short: "serve a runtime that runs in another container of the pod (shared process namespace)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return run(f, shim.ModeSidecar, nil)
		},
	}
	sidecarCmd.Flags().StringVar(&f.marker, "runtime-marker", "", "NAME=VALUE: only processes with this environment entry are the runtime's (default: every process but the shim and pid 1)")
	pipeCmd := &cobra.Command{
		Use:   "pipe -- CMD [ARGS...]",
		Short: "sidecar mode, in the function container: run CMD and stream its output to the sidecar (and to stdout)",
		Args:  cobra.MinimumNArgs(1),
		Run: func(cmd *cobra.Command, args []string) {
			api := os.Getenv("AWS_LAMBDA_RUNTIME_API")
			if api == "" {
				api = "127.0.0.1:9001"
			}
			os.Exit(shim.RunPipe(api, args))
		},
	}
	loadCodeCmd := &cobra.Command{
		Use:                "load-code [--task-root=DIR] [--opt=DIR] [--scratch=DIR] [--code=SOURCE] [--layer=SOURCE]...",
		Short:              "init container: unpack the function's code into the task root and its layers into /opt",
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return codeloader.Main(cmd.Context(), args)
		},
	}
	root.AddCommand(execCmd, genericCmd, sidecarCmd, pipeCmd, loadCodeCmd)
	if err := root.Execute(); err != nil {
		os.Exit(1)
	}
}

func run(f flags, mode shim.Mode, command []string) error {
	cfg, err := shim.ConfigFromEnv(os.Getenv)
	if err != nil {
		return err
	}
	if f.secretFile != "" {
		b, err := os.ReadFile(f.secretFile)
		if err != nil {
			return fmt.Errorf("reading the invoke secret: %w", err)
		}
		cfg.InvokeSecret = strings.TrimSpace(string(b))
	}
	if mode == shim.ModeSidecar && cfg.InvokeSecret == "" {
		fmt.Fprintln(os.Stderr, "runtime-shim: warning: sidecar mode without an invoke secret; anyone who reaches the port can invoke")
	}
	if f.procs > 0 {
		runtime.GOMAXPROCS(f.procs)
	}
	cfg.InitTimeout = f.initTimeout
	cfg.ShutdownGrace = f.shutdownGrace
	s, err := shim.New(shim.Options{Config: cfg, Mode: mode, Listen: f.listen, RuntimeAPI: f.runtimeAPI, Command: command, RuntimeMarker: f.marker, ExtensionsDir: f.extensionsDir})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return s.Run(ctx)
}

func runGeneric(f flags) error {
	secret := os.Getenv(contract.PoolSecretEnv)
	if f.secretFile != "" {
		b, err := os.ReadFile(f.secretFile)
		if err != nil {
			return fmt.Errorf("reading the pool secret: %w", err)
		}
		secret = string(b)
	}
	if f.procs > 0 {
		runtime.GOMAXPROCS(f.procs)
	}
	g, err := shim.NewGeneric(shim.GenericOptions{
		Listen: f.listen, RuntimeAPI: f.runtimeAPI, PoolSecret: strings.TrimSpace(secret),
		Load: f.load, ExtensionsDir: f.extensionsDir, InitTimeout: f.initTimeout, ShutdownGrace: f.shutdownGrace,
	})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return g.Run(ctx)
}
