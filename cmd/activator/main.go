// Command activator serves the Lambda Invoke API for klambda functions and owns the
// replicas of their Deployments. Behaviour lives in package activator; this file only
// reads flags and wires the parts together: flags.go reads the command line, async.go
// sets up asynchronous invocations, frontdoor.go the servers' TLS and limits.
package main

import (
	"context"
	"errors"
	"flag"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/klambda/klambda/activator/auth"
	"github.com/klambda/klambda/activator/dispatch"
	"github.com/klambda/klambda/activator/feeder"
	"github.com/klambda/klambda/activator/functionurl"
	"github.com/klambda/klambda/activator/invoke"
	"github.com/klambda/klambda/activator/invokesecret"
	"github.com/klambda/klambda/activator/metrics"
	"github.com/klambda/klambda/activator/peer"
	"github.com/klambda/klambda/activator/pool"
	"github.com/klambda/klambda/activator/router"
	"github.com/klambda/klambda/activator/scaleclient"
	"github.com/klambda/klambda/activator/scaler"
	"github.com/klambda/klambda/activator/shimclient"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	"github.com/klambda/klambda/internal/buildinfo"
	"github.com/klambda/klambda/internal/memlimit"
)

func main() {
	o := parseFlags()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&o.zap)))
	log := ctrl.Log.WithName("activator")
	// The Go heap stays under the container's memory limit (90 %; GOMEMLIMIT or AUTOMEMLIMIT win).
	memlimit.Set(log, nil)
	if err := o.applyConfigFile(); err != nil {
		fatal(log, err, "--config")
	}
	explicit := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
	if err := o.replicas.check(explicit); err != nil {
		fatal(log, err, "--shards")
	}

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(lambdav1alpha1.AddToScheme(scheme))
	cfg := ctrl.GetConfigOrDie()
	cs := kubernetes.NewForConfigOrDie(cfg)
	informers, err := feeder.NewCache(cfg, scheme)
	if err != nil {
		fatal(log, err, "building the informer cache")
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildinfo.NewCollector())

	table := router.NewTable()
	disp := dispatch.New(nil)
	// The dispatcher owns every concurrency limit; the scaler reads the namespace's from it.
	disp.SetNamespaceLimit(int32(*o.namespaceLimit), table)
	deployments := &scaleclient.Deployments{Reader: informers, Client: cs}
	sc := newScaler(o, disp, table, deployments, log)
	core, h := newInvokePath(o, table, disp, cs, metrics.New(reg), log)
	// Function URLs share the Invoke API's listener, authorization, bounds and invoker.
	urls := &functionurl.Handler{Table: functionurl.NewTable(), API: h, AccountID: *o.accountID, Domain: *o.urlDomain, Reservations: table}

	ctx := ctrl.SetupSignalHandler()
	// With several replicas, each invocation goes to its namespace's owner.
	steer := o.replicas.steering(reg)
	rp, inv := startReplicas(ctx, o.replicas, cs, core, disp, sc, steer, reg, log)
	h.Invoker, urls.Invoker = inv, inv
	feed := startFeeder(ctx, o, informers, table, urls.Table, disp, cs, log)
	startPools(ctx, cfg, scheme, sc, disp, deployments, cs, reg, log)
	asyncReady := func() error { return errors.New("asynchronous invocation is off (--async=false)") }
	if *o.async.on {
		stopAsync, ready := startAsync(ctx, &o.async, o, core, inv, informers, cs, reg, log)
		defer stopAsync()
		asyncReady = ready
	}
	var ready atomic.Bool
	synced := make(chan struct{})
	core.Synced, urls.Synced, urls.WaitDeadline = synced, synced, core.WaitDeadline
	startInformers(ctx, informers, feed.HasSynced, func() { close(synced); rp.start(ctx); sc.Run(ctx) }, &ready, log)
	var checker *auth.Checker
	if c, ok := h.Auth.(*auth.Checker); ok {
		checker = c
	}
	api, err := o.controlAPI.wrap(h, scheme, cfg, cs, checker, *o.authOn, o, log)
	if err != nil {
		fatal(log, err, "--control-api")
	}
	serveInvokeAPI(ctx, o, api, urls, steer, &ready, asyncReady, reg, cfg, cs, log)
	// The drain is over: the shards go to the other replicas once this one's invocations
	// have ended (already, but for the async workers'); the peer port closes last.
	stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rp.stop(stopCtx)
}

// fatal logs err and exits.
func fatal(log logr.Logger, err error, msg string, kv ...any) {
	log.Error(err, msg, kv...)
	os.Exit(1)
}

// newScaler builds the scaler of function Deployments and makes it the dispatcher's waker.
func newScaler(o *options, disp *dispatch.Dispatcher, table *router.Table, deployments scaler.Deployments, log logr.Logger) *scaler.Scaler {
	sc := scaler.New(disp, table, deployments)
	sc.IdleTimeout = *o.idleTimeout
	sc.Interval = *o.scaleInterval
	sc.Rate = scaler.Rate{Model: scaler.Model(*o.scalingModel), Burst: *o.scalingBurst, Per: *o.scalingPer, Interval: *o.scalingInterval}
	if err := sc.Rate.Validate(); err != nil {
		fatal(log, err, "--scaling-model, --scaling-burst, --scaling-rate, --scaling-interval")
	}
	sc.Log = log.WithName("scaler")
	disp.SetWaker(sc)
	// Shims report whether they run an invocation (a previous activator's, after a restart).
	stateClient := shimclient.New()
	disp.Check = func(ctx context.Context, e dispatch.Environment) (bool, error) { return stateClient.Busy(ctx, e.Addr) }
	return sc
}

// newInvokePath builds the typed invoke core and the Invoke API handler over it, with
// their admission bounds (request bytes in the handler, waiting requests in the core) and
// the handler's authorization.
func newInvokePath(o *options, table *router.Table, disp *dispatch.Dispatcher, cs kubernetes.Interface, m *metrics.Metrics, log logr.Logger) (*invoke.Core, *invoke.Handler) {
	adm, err := o.frontDoor.admission()
	if err != nil {
		fatal(log, err, "--request-bytes, --request-bytes-per-namespace, --max-waiting-requests")
	}
	core := &invoke.Core{
		Region:       *o.region,
		AccountID:    *o.accountID,
		Router:       table,
		Dispatcher:   disp,
		Shim:         shimclient.New(),
		WaitDeadline: *o.waitDeadline,
		ShimGrace:    15 * time.Second,
		Admission:    adm,
		Metrics:      m,
		Log:          log.WithName("invoke"),
	}
	h := &invoke.Handler{
		DefaultNamespace: *o.defaultNS,
		Region:           *o.region,
		AccountID:        *o.accountID,
		Invoker:          core,
		Admission:        adm,
		Metrics:          m,
		Log:              log.WithName("invoke-api"),
	}
	if *o.authOn {
		checker, err := o.frontDoor.checker(cs)
		if err != nil {
			fatal(log, err, "authorization flags")
		}
		h.Auth = checker
	} else {
		log.Info("authorization is OFF: anyone who reaches the activator can invoke any function")
	}
	return core, h
}

// startFeeder registers the informers' handlers that feed the router's table and the
// dispatcher's environments.
func startFeeder(ctx context.Context, o *options, informers cache.Cache, table *router.Table, urls *functionurl.Table, disp *dispatch.Dispatcher, cs kubernetes.Interface, log logr.Logger) *feeder.Feeder {
	feed := &feeder.Feeder{Cache: informers, Table: table, URLs: urls, Dispatcher: disp, Secrets: &invokesecret.Reader{Client: cs},
		Log: log.WithName("feeder")}
	if *o.resizeAfterInit {
		feed.Resize = feeder.PodResizer(cs)
	}
	if *o.probeInterval > 0 {
		feed.Probe = feeder.HTTPProbe(&http.Client{Timeout: 500 * time.Millisecond})
		feed.ProbeInterval = *o.probeInterval
	}
	if err := feed.Register(ctx); err != nil {
		fatal(log, err, "registering informers")
	}
	return feed
}

// startPools lets the scaler take pre-warmed generic environments for cold starts
// (docs/pools.md): an informer of the generic pods feeds the pools' index. Without pools
// in the manager's configuration there are no such pods, and every cold start misses.
func startPools(ctx context.Context, cfg *rest.Config, scheme *runtime.Scheme, sc *scaler.Scaler, disp *dispatch.Dispatcher,
	deployments *scaleclient.Deployments, cs kubernetes.Interface, reg prometheus.Registerer, log logr.Logger) {
	podCache, err := pool.NewCache(cfg, scheme)
	if err != nil {
		fatal(log, err, "building the generic pods' cache")
	}
	idx := pool.NewIndex(pool.NewMetrics(reg))
	if err := idx.Register(ctx, podCache); err != nil {
		fatal(log, err, "registering the generic pods' informer")
	}
	sc.Prewarmed = &pool.Starter{Index: idx, Client: cs, HTTP: &http.Client{}, Versions: deployments,
		InvokeSecrets: &invokesecret.Reader{Client: cs}, Environments: disp, Wake: sc.Wake, Log: log.WithName("pools")}
	go func() {
		if err := podCache.Start(ctx); err != nil {
			fatal(log, err, "generic pods' cache stopped")
		}
	}()
}

// startInformers starts the informer cache; once it has synced and fed has been given
// every object the informers first listed (the feeder's handlers, which run after the
// cache's own sync), the activator is ready and synced runs (invocations proceed, the
// shard ownership and the scaler start; it may block).
func startInformers(ctx context.Context, informers cache.Cache, fed func() bool, synced func(), ready *atomic.Bool, log logr.Logger) {
	go func() {
		if err := informers.Start(ctx); err != nil {
			fatal(log, err, "informer cache stopped")
		}
	}()
	go func() {
		if informers.WaitForCacheSync(ctx) && toolscache.WaitForCacheSync(ctx.Done(), fed) {
			ready.Store(true)
			log.Info("informers synced; serving")
			synced()
		}
	}()
}

// serveInvokeAPI serves the Invoke API (with /healthz, /readyz and /readyz/async) and function URLs
// (host-based ones before any path; path-based ones under /lambda-url/) and the metrics
// endpoint until ctx ends.
func serveInvokeAPI(ctx context.Context, o *options, h http.Handler, urls *functionurl.Handler, steer *peer.Steering, ready *atomic.Bool, asyncReady func() error, reg *prometheus.Registry, cfg *rest.Config, cs kubernetes.Interface, log logr.Logger) {
	fd := o.frontDoor
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	drain := &drainer{delay: fd.shutdownDelay, timeout: fd.shutdownTimeout, log: log}
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() || drain.Draining() {
			http.Error(w, "informers not synced, or draining", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	// The pod's readiness is the synchronous path's: an unreachable NATS stops Event
	// invocations only (ServiceException), reported here and by klambda_async_queue_open.
	mux.HandleFunc("/readyz/async", func(w http.ResponseWriter, _ *http.Request) {
		if err := asyncReady(); err != nil {
			http.Error(w, "asynchronous invocation queue not open: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.Handle("/", h)
	invokeTLS, err := fd.tlsConfig(ctx, *o.authOn, cs, os.Getenv("POD_NAMESPACE"), log)
	if err != nil {
		fatal(log, err, "serving the Invoke API")
	}
	api := urls.Wrap(mux)
	if steer != nil { // several replicas: callers' connections move towards their namespace's owner
		api = steer.Handler(api)
	}
	srv := fd.invokeServer(*o.listen, drain.Handler(api), invokeTLS)
	if steer != nil {
		srv.setConnContext(steer.ConnContext)
	}
	if *o.metricsAddr != "" {
		ms, metricsTLS, err := fd.metricsServer(*o.metricsAddr, reg, cfg, invokeTLS, log.WithName("metrics"))
		if err != nil {
			fatal(log, err, "building the metrics server")
		}
		go func() {
			if err := serve(ms, metricsTLS); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error(err, "metrics server stopped")
			}
		}()
	}
	drained := make(chan struct{})
	go func() { drain.run(ctx, srv); close(drained) }()
	log.Info("serving the Invoke API", "address", *o.listen, "defaultNamespace", *o.defaultNS, "auth", *o.authOn, "tls", invokeTLS != nil)
	if err := srv.serve(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fatal(log, err, "Invoke API server stopped")
	}
	<-drained // Serve returns as the drain begins; the invocations in flight end first
}
