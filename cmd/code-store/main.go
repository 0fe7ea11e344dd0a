// Command code-store is the chart's bundled code store (docs/code-store.md): the CNCF
// distribution registry's own handler (github.com/distribution/distribution/v3) over one
// filesystem root, served on two ports — a read-write port for the manager and the
// control-plane API (deletes enabled, for the manager's garbage collection), and a
// read-only port for function pods. Two ports, so that a NetworkPolicy can keep writes to
// klambda's components while every function pod may read: the registry itself has no
// authorization that tells a reader from a writer without credentials in every pod.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem" // storage
	"github.com/sirupsen/logrus"

	"github.com/klambda/klambda/internal/buildinfo"
)

// options are the command line's settings.
type options struct {
	root               string
	listen, readListen string
	shutdownGrace      time.Duration
	uploadPurgeAge     time.Duration
	logLevel           string
	showVersion        bool
}

func parseFlags(fs *flag.FlagSet, args []string) (*options, error) {
	o := &options{}
	fs.StringVar(&o.root, "root", "/var/lib/code-store", "directory holding the registry's content (a PersistentVolume or an emptyDir)")
	fs.StringVar(&o.listen, "listen", ":5000", "read-write address (the manager and the control-plane API push and delete here)")
	fs.StringVar(&o.readListen, "read-listen", ":5001", "read-only address (function pods pull code here; pushes and deletes are refused)")
	fs.DurationVar(&o.shutdownGrace, "shutdown-grace", 20*time.Second, "on SIGTERM, how long requests in flight may take to finish")
	fs.DurationVar(&o.uploadPurgeAge, "upload-purge-age", 24*time.Hour, "unfinished uploads older than this are deleted (checked every 24 h)")
	fs.StringVar(&o.logLevel, "log-level", "warn", "the registry's log level: error, warn, info or debug")
	fs.BoolVar(&o.showVersion, "version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	switch {
	case fs.NArg() != 0:
		return nil, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	case o.root == "" || !filepath.IsAbs(o.root):
		return nil, fmt.Errorf("--root must be an absolute directory, got %q", o.root)
	case o.listen == "" || o.readListen == "":
		return nil, errors.New("--listen and --read-listen are required")
	case o.listen == o.readListen && !strings.HasSuffix(o.listen, ":0"):
		return nil, fmt.Errorf("--listen and --read-listen must differ (%s): one is read-write, the other read-only", o.listen)
	case o.shutdownGrace < 0:
		return nil, fmt.Errorf("--shutdown-grace must not be negative, got %s", o.shutdownGrace)
	case o.uploadPurgeAge < time.Hour:
		return nil, fmt.Errorf("--upload-purge-age must be at least 1h (a slow upload must not be purged under its client), got %s", o.uploadPurgeAge)
	}
	if _, err := logrus.ParseLevel(o.logLevel); err != nil || !map[string]bool{"error": true, "warn": true, "info": true, "debug": true}[o.logLevel] {
		return nil, fmt.Errorf("--log-level must be error, warn, info or debug, got %q", o.logLevel)
	}
	return o, nil
}

// config is the distribution configuration of one of the two handlers over root: the
// read-write one on --listen, the read-only one on --read-listen (http.addr, where the
// server of servers listens).
func config(o *options, readOnly bool) (*configuration.Configuration, error) {
	addr := o.listen
	if readOnly {
		addr = o.readListen
	}
	purge := fmt.Sprintf("uploadpurging: {enabled: true, age: %s, interval: 24h, dryrun: false}", o.uploadPurgeAge)
	if readOnly {
		// One purger is enough, and a read-only handler must not delete anything.
		purge = "uploadpurging: {enabled: false}"
	}
	cfg, err := configuration.Parse(strings.NewReader(fmt.Sprintf(`
version: 0.1
log:
  level: %s
  accesslog: {disabled: true}
storage:
  filesystem: {rootdirectory: %q}
  delete: {enabled: %t}
  maintenance:
    %s
    readonly: {enabled: %t}
http:
  addr: %q
`, o.logLevel, o.root, !readOnly, purge, readOnly, addr)))
	if err != nil {
		return nil, fmt.Errorf("registry configuration: %w", err)
	}
	return cfg, nil
}

// servers are the read-write and read-only handlers over o.root, not yet listening.
func servers(ctx context.Context, o *options) (rw, ro *http.Server, err error) {
	if err := os.MkdirAll(o.root, 0o750); err != nil {
		return nil, nil, fmt.Errorf("--root: %w", err)
	}
	mk := func(readOnly bool) (*http.Server, error) {
		cfg, err := config(o, readOnly)
		if err != nil {
			return nil, err
		}
		return &http.Server{
			Addr:              cfg.HTTP.Addr,
			Handler:           handlers.NewApp(ctx, cfg),
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute,
			MaxHeaderBytes:    64 << 10,
		}, nil
	}
	if rw, err = mk(false); err != nil {
		return nil, nil, err
	}
	if ro, err = mk(true); err != nil {
		return nil, nil, err
	}
	return rw, ro, nil
}

// run serves until ctx ends, then lets requests in flight finish for o.shutdownGrace.
// ready, if not nil, receives the two listeners' addresses once both listen.
func run(ctx context.Context, o *options, ready func(rw, ro net.Addr)) error {
	// The registry logs through logrus' standard logger (its own start-up configures that
	// from the configuration; handlers.NewApp does not).
	level, err := logrus.ParseLevel(o.logLevel)
	if err != nil {
		return err
	}
	logrus.SetLevel(level)
	appCtx, stopApps := context.WithCancel(context.Background())
	defer stopApps()
	rw, ro, err := servers(appCtx, o)
	if err != nil {
		return err
	}
	lrw, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	lro, err := net.Listen("tcp", o.readListen)
	if err != nil {
		lrw.Close()
		return fmt.Errorf("--read-listen: %w", err)
	}
	if ready != nil {
		ready(lrw.Addr(), lro.Addr())
	}
	errs := make(chan error, 2)
	for _, s := range []struct {
		srv *http.Server
		l   net.Listener
	}{{rw, lrw}, {ro, lro}} {
		go func() {
			if err := s.srv.Serve(s.l); !errors.Is(err, http.ErrServerClosed) {
				errs <- err
				return
			}
			errs <- nil
		}()
	}
	var served error
	select {
	case <-ctx.Done():
	case served = <-errs: // a listener failed: stop the other one too
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), o.shutdownGrace)
	defer cancel()
	err = errors.Join(served, rw.Shutdown(shutdownCtx), ro.Shutdown(shutdownCtx))
	return err
}

func main() {
	o, err := parseFlags(flag.CommandLine, os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if o.showVersion {
		fmt.Println("code-store", buildinfo.Get())
		return
	}
	// The registry exports traces to localhost:4318 unless told not to.
	if os.Getenv("OTEL_TRACES_EXPORTER") == "" {
		_ = os.Setenv("OTEL_TRACES_EXPORTER", "none")
	}
	logrus.SetFormatter(&logrus.JSONFormatter{})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	fmt.Fprintf(os.Stderr, "code-store %s: %s read-write on %s, read-only on %s\n", buildinfo.Get(), o.root, o.listen, o.readListen)
	if err := run(ctx, o, nil); err != nil {
		fmt.Fprintln(os.Stderr, "code-store:", err)
		os.Exit(1)
	}
}
