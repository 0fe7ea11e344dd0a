package shim

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klambda/klambda/api/contract"
	"github.com/klambda/klambda/internal/codeloader"
	"github.com/klambda/klambda/internal/transport"
	"github.com/klambda/klambda/shim/internal/api"
)

// GenericOptions configure a generic shim: a pre-warmed environment of a pool, up and
// waiting with no function code, secrets or identity (docs/pools.md).
type GenericOptions struct {
	Listen     string // default ":9000"
	RuntimeAPI string // default "127.0.0.1:9001"
	// PoolSecret must be presented (contract.HeaderPoolSecret) on the specialization.
	PoolSecret string
	// Load says where the code and layers of the specialization are unpacked (TaskRoot,
	// Opt, Scratch, AllowLoopback); its Code and Layers are ignored. TaskRoot and Opt must
	// be empty when the shim starts: a generic environment has never held anyone's code.
	Load codeloader.Options
	// ExtensionsDir, InitTimeout, ShutdownGrace: as Options and Config.
	ExtensionsDir string
	InitTimeout   time.Duration
	ShutdownGrace time.Duration
	// BaseEnv is what the runtime's environment starts from (default: the shim's own,
	// without the pool's secret); the specialization's variables are set over it.
	BaseEnv []string
	Stdout  io.Writer
}

// Generic is a generic shim. Until it is specialized it answers /healthz, /readyz (200:
// it can be specialized) and the specialization; an invoke gets 502
// ResourceNotReadyException. Specialized, it is an exec-mode Shim for that function and
// serves exactly as one; it can never be specialized again.
type Generic struct {
	opts     GenericOptions
	invokeLn net.Listener
	rapiLn   net.Listener
	front    *transport.Server
	secret   []byte

	// state: genericWaiting → genericSpecializing → genericSpecialized | genericFailed.
	state  atomic.Int32
	failed atomic.Value // string: why the specialization failed
	mu     sync.Mutex
	shim   *Shim
	quit   chan struct{}
}

const (
	genericWaiting int32 = iota
	genericSpecializing
	genericSpecialized
	genericFailed
)

// NewGeneric listens on both addresses. It refuses to start when the task root or /opt
// holds anything: a container restarted after a specialization must not come back as a
// generic environment holding a function's files.
func NewGeneric(opts GenericOptions) (*Generic, error) {
	if opts.Listen == "" {
		opts.Listen = ":9000"
	}
	if opts.RuntimeAPI == "" {
		opts.RuntimeAPI = "127.0.0.1:9001"
	}
	if opts.Stdout == nil {
		opts.Stdout = os.Stdout
	}
	if opts.PoolSecret == "" {
		return nil, errors.New("a generic environment needs the pool's secret (" + contract.PoolSecretEnv + ")")
	}
	if opts.Load.TaskRoot == "" || opts.Load.Opt == "" {
		return nil, errors.New("a generic environment needs --task-root and --opt")
	}
	for _, dir := range []string{opts.Load.TaskRoot, opts.Load.Opt} {
		if err := mustBeEmpty(dir); err != nil {
			return nil, err
		}
	}
	if opts.BaseEnv == nil {
		opts.BaseEnv = withoutVar(os.Environ(), contract.PoolSecretEnv)
	}
	g := &Generic{opts: opts, secret: []byte(opts.PoolSecret), quit: make(chan struct{})}
	var err error
	if g.rapiLn, err = net.Listen("tcp", opts.RuntimeAPI); err != nil {
		return nil, fmt.Errorf("listening for the Runtime API on %s: %w", opts.RuntimeAPI, err)
	}
	if g.invokeLn, err = net.Listen("tcp", opts.Listen); err != nil {
		g.rapiLn.Close()
		return nil, fmt.Errorf("listening for invokes on %s: %w", opts.Listen, err)
	}
	g.front = &transport.Server{Handler: g, ReadHeaderTimeout: 10 * time.Second, BodyTimeout: 10 * time.Second, MaxHeaderBytes: api.InvokeMaxHeaderBytes}
	return g, nil
}

func mustBeEmpty(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("generic environment: reading %s: %w", dir, err)
	}
	if len(entries) > 0 {
		return fmt.Errorf("generic environment: %s is not empty (this container was specialized before); refusing to wait for another function", dir)
	}
	return nil
}

func withoutVar(env []string, name string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); k != name {
			out = append(out, kv)
		}
	}
	return out
}

// InvokeAddr is the invoke endpoint's address.
func (g *Generic) InvokeAddr() string { return g.invokeLn.Addr().String() }

// RuntimeAPIAddr is the Runtime API's address.
func (g *Generic) RuntimeAPIAddr() string { return g.rapiLn.Addr().String() }

// Start serves the invoke endpoint; the Runtime API is served once specialized.
func (g *Generic) Start() {
	go func() { _ = g.front.Serve(transport.Listener{Listener: g.invokeLn}) }()
}

// Specialized is the function's Shim once specialized, else nil.
func (g *Generic) Specialized() *Shim {
	if g.state.Load() != genericSpecialized {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.shim
}

// Close stops the shim (and the function's runtime, when specialized).
func (g *Generic) Close() {
	g.mu.Lock()
	select {
	case <-g.quit:
		g.mu.Unlock()
		return
	default:
	}
	close(g.quit)
	s := g.shim
	g.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if s != nil {
		s.Close()
	} else {
		g.rapiLn.Close()
	}
	_ = g.front.Shutdown(ctx)
}

// Run starts the shim and stops it when ctx ends.
func (g *Generic) Run(ctx context.Context) error {
	g.Start()
	<-ctx.Done()
	g.Close()
	return nil
}

// ServeHTTP serves the invoke port: the specialization, health and readiness, and once
// specialized, everything the function's invoke endpoint serves.
func (g *Generic) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == contract.SpecializePath {
		g.specialize(w, r)
		return
	}
	if s := g.Specialized(); s != nil {
		s.invokeHandler.ServeHTTP(w, r)
		return
	}
	switch r.URL.Path {
	case contract.HealthPath:
		w.Header()[contract.HeaderBusy] = []string{"false"}
		plain(w, http.StatusOK, "ok\n")
	case contract.ReadyPath:
		switch g.state.Load() {
		case genericWaiting:
			plain(w, http.StatusOK, "generic\n")
		case genericFailed:
			plain(w, http.StatusServiceUnavailable, "not ready: specialization failed: "+g.failed.Load().(string)+"\n")
		default:
			plain(w, http.StatusServiceUnavailable, "not ready: specializing\n")
		}
	default:
		jsonError(w, http.StatusBadGateway, "ResourceNotReadyException", "this environment has not been given a function yet")
	}
}

func plain(w http.ResponseWriter, status int, body string) {
	w.Header()["Content-Type"] = []string{"text/plain; charset=utf-8"}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

func jsonError(w http.ResponseWriter, status int, errType, msg string) {
	b, _ := json.Marshal(map[string]string{"Type": "User", "message": msg})
	w.Header()[contract.HeaderErrorType] = []string{errType}
	w.Header()["Content-Type"] = []string{"application/json"}
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// specialize makes this environment the function's, once: the pool's secret is checked
// before the body is read; the code is unpacked, the runtime started with the function's
// environment, and the function's invoke secret required from then on. The answer comes
// once the runtime has been started (its init runs on; the next invoke waits for it and
// reports its Init Duration).
func (g *Generic) specialize(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		jsonError(w, http.StatusMethodNotAllowed, "InvalidRequestContentException", "specialize with POST")
		return
	}
	if subtle.ConstantTimeCompare([]byte(r.Header.Get(contract.HeaderPoolSecret)), g.secret) != 1 {
		w.Header()["Connection"] = []string{"close"}
		jsonError(w, http.StatusUnauthorized, "UnauthorizedException", "missing or wrong pool secret")
		return
	}
	if !g.state.CompareAndSwap(genericWaiting, genericSpecializing) {
		jsonError(w, http.StatusConflict, "ResourceConflictException", "this environment already belongs to a function")
		return
	}
	spec, err := readSpecialization(r.Body)
	if err != nil {
		// Nothing of anyone's was loaded: the environment stays generic.
		g.state.Store(genericWaiting)
		jsonError(w, http.StatusBadRequest, "InvalidParameterValueException", err.Error())
		return
	}
	if err := g.become(r.Context(), spec); err != nil {
		g.failed.Store(err.Error())
		g.state.Store(genericFailed)
		fmt.Fprintf(g.opts.Stdout, "runtime-shim: specialization failed: %v\n", err)
		jsonError(w, http.StatusInternalServerError, "ServiceException", "specialization failed: "+err.Error())
		return
	}
	g.state.Store(genericSpecialized)
	w.Header()["Content-Type"] = []string{"application/json"}
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, `{"status":"OK"}`)
}

func readSpecialization(body io.Reader) (*contract.Specialization, error) {
	b, err := io.ReadAll(io.LimitReader(body, contract.MaxSpecializationBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading the specialization: %w", err)
	}
	if len(b) > contract.MaxSpecializationBytes {
		return nil, fmt.Errorf("the specialization is larger than %d bytes", contract.MaxSpecializationBytes)
	}
	var spec contract.Specialization
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&spec); err != nil {
		return nil, fmt.Errorf("the specialization is not valid JSON: %w", err)
	}
	if len(spec.Command) == 0 || spec.Command[0] == "" {
		return nil, errors.New("the specialization has no runtime command")
	}
	if spec.InvokeSecret == "" {
		return nil, errors.New("the specialization has no invoke secret")
	}
	for _, v := range spec.Env {
		if v.Name == "" || strings.ContainsAny(v.Name, "=\x00") || strings.Contains(v.Value, "\x00") {
			return nil, fmt.Errorf("the specialization has an invalid variable %q", v.Name)
		}
	}
	return &spec, nil
}

// become loads the code and starts the function's runtime behind a Shim that uses this
// generic shim's listeners.
func (g *Generic) become(ctx context.Context, spec *contract.Specialization) error {
	if spec.Code != "" || len(spec.Layers) > 0 {
		lo := g.opts.Load
		lo.Code, lo.Layers = spec.Code, spec.Layers
		if err := codeloader.Load(ctx, lo, g.opts.Stdout); err != nil {
			return fmt.Errorf("loading the code: %w", err)
		}
	}
	env := mergeEnv(g.opts.BaseEnv, spec.Env)
	vars := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	cfg, err := ConfigFromEnv(func(k string) string { return vars[k] })
	if err != nil {
		return err
	}
	cfg.InvokeSecret = spec.InvokeSecret
	cfg.InitTimeout, cfg.ShutdownGrace = g.opts.InitTimeout, g.opts.ShutdownGrace
	s := &Shim{
		opts:     Options{Config: cfg, Mode: ModeExec, Listen: g.opts.Listen, RuntimeAPI: g.opts.RuntimeAPI, Command: spec.Command, ExtensionsDir: g.opts.ExtensionsDir, Stdout: g.opts.Stdout},
		quit:     make(chan struct{}),
		invokeLn: g.invokeLn,
		rapiLn:   g.rapiLn,
	}
	if err := s.assemble(env); err != nil {
		return err
	}
	g.mu.Lock()
	select {
	case <-g.quit:
		g.mu.Unlock()
		return errors.New("the shim is shutting down")
	default:
	}
	g.shim = s
	g.mu.Unlock()
	// The front server keeps the invoke port; the function's invoke server is its
	// handler (s.invokeHandler), never a second listener.
	go func() { _ = s.rapiSrv.Serve(transport.Listener{Listener: s.rapiLn}) }()
	s.Env.Begin()
	return nil
}

// mergeEnv sets vars over base, in order; a later variable replaces an earlier one.
func mergeEnv(base []string, vars []contract.EnvVar) []string {
	idx := map[string]int{}
	out := make([]string, 0, len(base)+len(vars))
	add := func(k, kv string) {
		if i, ok := idx[k]; ok {
			out[i] = kv
			return
		}
		idx[k] = len(out)
		out = append(out, kv)
	}
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		add(k, kv)
	}
	for _, v := range vars {
		add(v.Name, v.Name+"="+v.Value)
	}
	return out
}
