package shim

import (
	"bufio"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/klambda/klambda/internal/transport"
	"github.com/klambda/klambda/shim/internal/environment"
)

// ExecSupervisor runs the runtime as a child process (runtime-shim exec), like the
// emulator does, and restarts it when the environment is reset.
type ExecSupervisor struct {
	Command []string
	Env     []string // the child's environment, AWS_LAMBDA_RUNTIME_API included
	Dir     string
	// ExtensionsDir holds external extensions (Lambda: /opt/extensions): every executable
	// in it is started, in parallel, before the runtime, which starts once each has
	// registered (or exited, or the init limit passed).
	ExtensionsDir string
	// InitTimeout bounds the wait for extensions to register.
	InitTimeout time.Duration

	env  *environment.Environment
	logs *environment.LogSink

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	pipe    *os.File
	reading atomic.Int32
	// lastPeakKB is the peak RSS of the last child that exited (from its rusage).
	lastPeakKB atomic.Int64
	status     *statusReader // the running child's /proc/<pid>/status
	extProcs   []*exec.Cmd
	hadExts    atomic.Bool
}

// hiddenFromExtensions are the variables Lambda does not give external extensions (spec §7.1).
var hiddenFromExtensions = map[string]bool{
	"AWS_EXECUTION_ENV": true, "AWS_LAMBDA_LOG_GROUP_NAME": true, "AWS_LAMBDA_LOG_STREAM_NAME": true,
	"AWS_XRAY_CONTEXT_MISSING": true, "AWS_XRAY_DAEMON_ADDRESS": true, "LAMBDA_RUNTIME_DIR": true,
	"LAMBDA_TASK_ROOT": true, "_AWS_XRAY_DAEMON_ADDRESS": true, "_AWS_XRAY_DAEMON_PORT": true, "_HANDLER": true,
}

// extensionPaths lists the executables of ExtensionsDir, in name order.
func (s *ExecSupervisor) extensionPaths() []string {
	if s.ExtensionsDir == "" {
		return nil
	}
	entries, err := os.ReadDir(s.ExtensionsDir)
	if err != nil {
		return nil
	}
	var paths []string
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || info.IsDir() || info.Mode()&0o111 == 0 {
			continue
		}
		paths = append(paths, filepath.Join(s.ExtensionsDir, e.Name()))
	}
	return paths
}

// startExtensions starts the external extensions with the output pipe w and waits until
// they have registered (or exited, or the init limit passed).
func (s *ExecSupervisor) startExtensions(w *os.File) {
	paths := s.extensionPaths()
	if len(paths) == 0 {
		return
	}
	s.hadExts.Store(true)
	var env []string
	for _, kv := range s.Env {
		k, _, _ := strings.Cut(kv, "=")
		if !hiddenFromExtensions[k] {
			env = append(env, kv)
		}
	}
	var started []*exec.Cmd
	exited := make(chan struct{}, len(paths))
	for _, p := range paths {
		cmd := exec.Command(p)
		cmd.Env = env
		cmd.Dir = s.Dir
		cmd.Stdout, cmd.Stderr = w, w
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			s.logs.Platform(nil, "EXTENSION "+filepath.Base(p)+" could not start: "+err.Error())
			continue
		}
		started = append(started, cmd)
		go func() { _ = cmd.Wait(); exited <- struct{}{} }()
	}
	s.mu.Lock()
	s.extProcs = started
	s.mu.Unlock()
	limit := s.InitTimeout
	if limit == 0 {
		limit = environment.DefaultInitTimeout
	}
	deadline := time.Now().Add(limit)
	gone := 0
	for time.Now().Before(deadline) && s.env.RegisteredExtensions()+gone < len(started) {
		select {
		case <-exited:
			gone++
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// Attach connects the supervisor to its environment and log sink.
func (s *ExecSupervisor) Attach(env *environment.Environment, logs *environment.LogSink) {
	s.env = env
	s.logs = logs
	logs.SetDrain(s.drain)
}

// HasExternalExtensions: extensions were started from ExtensionsDir.
func (s *ExecSupervisor) HasExternalExtensions() bool { return s.hadExts.Load() }

// HasRestartingRuntime: the shim itself restarts the child, nothing else does.
func (s *ExecSupervisor) HasRestartingRuntime() bool { return false }

// Start starts the runtime of generation gen. Its stdout and stderr share one pipe (as
// in Lambda, where both go to the same log stream).
func (s *ExecSupervisor) Start(gen uint64) error {
	if len(s.Command) == 0 {
		return errors.New("no runtime command")
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	s.startExtensions(w)
	cmd := exec.Command(s.Command[0], s.Command[1:]...)
	cmd.Env = s.Env
	cmd.Dir = s.Dir
	cmd.Stdout = w
	cmd.Stderr = w
	// Its own process group, so that a reset stops everything it started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return &environment.EntrypointError{Err: err}
	}
	w.Close()
	exited := make(chan struct{})
	status := openStatus(cmd.Process.Pid)
	s.mu.Lock()
	s.cmd, s.exited, s.pipe, s.status = cmd, exited, r, status
	s.mu.Unlock()
	outputDone := make(chan struct{})
	go func() {
		s.copyOutput(r)
		close(outputDone)
	}()
	go func() {
		err := cmd.Wait()
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			s.lastPeakKB.Store(ru.Maxrss) // kB on Linux
		}
		s.mu.Lock()
		if s.status == status {
			s.status = nil
		}
		s.mu.Unlock()
		if status != nil {
			status.close()
		}
		// Let its last lines reach the log before the exit is reported.
		select {
		case <-outputDone:
		case <-time.After(50 * time.Millisecond):
		}
		close(exited)
		if err == nil {
			err = errors.New("exit status 0")
		}
		s.env.RuntimeExited(gen, err)
	}()
	return nil
}

func (s *ExecSupervisor) copyOutput(r *os.File) {
	defer r.Close()
	br := bufio.NewReaderSize(transport.NewRawFileReader(r), 64*1024)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			s.reading.Store(1)
			if line[len(line)-1] != '\n' {
				line = append(line, '\n')
			}
			s.logs.Function(line)
			s.reading.Store(0)
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			if err != io.EOF {
				return
			}
			return
		}
	}
}

// drain waits (briefly) until output the runtime wrote so far has been logged: the pipe
// holds no unread bytes and no line is being processed.
func (s *ExecSupervisor) drain() {
	s.mu.Lock()
	p := s.pipe
	s.mu.Unlock()
	if p == nil {
		return
	}
	rc, err := p.SyscallConn()
	if err != nil {
		return
	}
	deadline := time.Now().Add(20 * time.Millisecond)
	for {
		n := 0
		_ = rc.Control(func(fd uintptr) { n = transport.RawInq(fd) })
		if (n == 0 && s.reading.Load() == 0) || time.Now().After(deadline) {
			return
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// Stop stops the runtime's process group: SIGTERM and up to grace to exit, then SIGKILL.
func (s *ExecSupervisor) Stop(grace time.Duration) {
	s.mu.Lock()
	cmd, exited, exts := s.cmd, s.exited, s.extProcs
	s.cmd, s.extProcs = nil, nil
	s.mu.Unlock()
	for _, x := range exts {
		if grace > 0 {
			_ = syscall.Kill(-x.Process.Pid, syscall.SIGTERM)
		}
	}
	defer func() {
		for _, x := range exts {
			_ = syscall.Kill(-x.Process.Pid, syscall.SIGKILL)
		}
	}()
	if cmd == nil || cmd.Process == nil {
		return
	}
	pgid := cmd.Process.Pid
	if grace > 0 {
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(grace):
		}
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
	}
}

// MaxMemoryUsedMB is the child's peak resident set: VmHWM from /proc while it runs, its
// rusage ru_maxrss once it has exited. It counts the runtime's main process only, not
// processes it forks; Lambda measures the whole sandbox.
func (s *ExecSupervisor) MaxMemoryUsedMB() int {
	kb := int64(0)
	s.mu.Lock()
	if s.status != nil {
		kb = s.status.peakKB()
	}
	s.mu.Unlock()
	if kb == 0 {
		kb = s.lastPeakKB.Load()
	}
	return int((kb + 1023) / 1024)
}

// KeepsPeakUntilStart: MaxMemoryUsedMB reads the child's VmHWM while it runs and its
// rusage once it has exited, until Start replaces it (PeakKeeper).
func (s *ExecSupervisor) KeepsPeakUntilStart() {}
