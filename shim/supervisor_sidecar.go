package shim

import (
	"bytes"
	"errors"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/klambda/klambda/shim/internal/environment"
)

// SidecarSupervisor is the supervisor of sidecar mode: the runtime runs in another
// container of the pod, which shares its process namespace with the shim. The shim
// cannot start it; it finds its processes in /proc, kills them on reset, and the kubelet
// restarts the container, which initialises again.
type SidecarSupervisor struct {
	// Marker, when set ("NAME=VALUE"), restricts the runtime's processes to those whose
	// environment holds it. Without it, every process but the shim and pid 1 (the pause
	// container) is the runtime's, and /proc/1 must be the pause process, so that the
	// shim never kills a host's processes by mistake.
	Marker string
	// Poll is how often /proc is scanned for a runtime that exited (default 100 ms).
	Poll time.Duration

	env  *environment.Environment
	self int

	mu   sync.Mutex
	gen  uint64
	seen bool // runtime processes were seen in this generation
	quit chan struct{}
}

// ErrNotInPod: sidecar mode without a marker outside a pod with a shared process namespace.
var ErrNotInPod = errors.New("sidecar mode needs a shared process namespace (pid 1 = pause) or --runtime-marker")

// Attach connects the supervisor to its environment and starts watching /proc.
func (s *SidecarSupervisor) Attach(env *environment.Environment) error {
	s.env = env
	s.self = os.Getpid()
	if s.Marker == "" {
		comm, _ := os.ReadFile("/proc/1/comm")
		if string(bytes.TrimSpace(comm)) != "pause" {
			return ErrNotInPod
		}
	}
	if s.Poll == 0 {
		s.Poll = 100 * time.Millisecond
	}
	s.quit = make(chan struct{})
	go s.watch()
	return nil
}

// Close stops the watcher.
func (s *SidecarSupervisor) Close() { close(s.quit) }

// HasExternalExtensions: extensions live in the function container; the shim cannot tell.
func (s *SidecarSupervisor) HasExternalExtensions() bool { return false }

// HasRestartingRuntime: the kubelet restarts the function container.
func (s *SidecarSupervisor) HasRestartingRuntime() bool { return true }

// Start records the generation; the kubelet starts the runtime.
func (s *SidecarSupervisor) Start(gen uint64) error {
	s.mu.Lock()
	s.gen, s.seen = gen, false
	s.mu.Unlock()
	return nil
}

func (s *SidecarSupervisor) watch() {
	t := time.NewTicker(s.Poll)
	defer t.Stop()
	for {
		select {
		case <-s.quit:
			return
		case <-t.C:
		}
		n := len(s.runtimePIDs())
		s.mu.Lock()
		gen, seen := s.gen, s.seen
		if n > 0 {
			s.seen = true
		}
		if n == 0 && seen {
			s.seen = false
		}
		s.mu.Unlock()
		if n == 0 && seen {
			s.env.RuntimeExited(gen, errors.New("exit status not visible to the sidecar"))
		}
	}
}

// runtimePIDs lists the runtime's processes.
func (s *SidecarSupervisor) runtimePIDs() []int {
	d, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range d {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == 1 || pid == s.self {
			continue
		}
		if s.Marker != "" {
			env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
			if err != nil || !hasEnvEntry(env, s.Marker) {
				continue
			}
		} else {
			// Kernel threads have no command line; they are never the runtime's.
			cmd, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
			if err != nil || len(cmd) == 0 {
				continue
			}
		}
		if isZombie(pid) {
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}

func hasEnvEntry(environ []byte, entry string) bool {
	for _, kv := range bytes.Split(environ, []byte{0}) {
		if string(kv) == entry {
			return true
		}
	}
	return false
}

func isZombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] == 'Z' || b[i+2] == 'X'
}

// Stop kills the runtime's processes: SIGTERM, up to grace, then SIGKILL.
func (s *SidecarSupervisor) Stop(grace time.Duration) {
	pids := s.runtimePIDs()
	if grace > 0 {
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGTERM)
		}
		until := time.Now().Add(grace)
		for time.Now().Before(until) && len(s.runtimePIDs()) > 0 {
			time.Sleep(10 * time.Millisecond)
		}
		pids = s.runtimePIDs()
	}
	for _, p := range pids {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
	until := time.Now().Add(2 * time.Second)
	for time.Now().Before(until) && len(s.runtimePIDs()) > 0 {
		time.Sleep(10 * time.Millisecond)
	}
	s.mu.Lock()
	s.seen = false
	s.mu.Unlock()
}

// MaxMemoryUsedMB sums the peak resident set (VmHWM) of the runtime's processes.
func (s *SidecarSupervisor) MaxMemoryUsedMB() int {
	var kb int64
	for _, p := range s.runtimePIDs() {
		kb += peakRSSKB(p)
	}
	return int((kb + 1023) / 1024)
}
