// Command activator serves the Lambda Invoke API for klambda functions and owns the
// replicas of their Deployments. Behaviour lives in package activator; this file only
// reads flags and wires the parts together.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/yaml"

	"github.com/klambda/klambda/activator/async"
	"github.com/klambda/klambda/activator/dispatch"
	"github.com/klambda/klambda/activator/feeder"
	"github.com/klambda/klambda/activator/invoke"
	"github.com/klambda/klambda/activator/invokesecret"
	"github.com/klambda/klambda/activator/metrics"
	"github.com/klambda/klambda/activator/router"
	"github.com/klambda/klambda/activator/scaleclient"
	"github.com/klambda/klambda/activator/scaler"
	"github.com/klambda/klambda/activator/shimclient"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	"github.com/klambda/klambda/internal/netguard"
)

// fileConfig is the part of the shared configuration file (--config, the chart's
// klambda.config) that the activator reads.
type fileConfig struct {
	Region      string `json:"region"`
	Concurrency struct {
		NamespaceLimit *int32  `json:"namespaceLimit"`
		IdleTimeout    *string `json:"idleTimeout"`
	} `json:"concurrency"`
}

func main() {
	var (
		configFile      = flag.String("config", "", "Shared klambda configuration file (region, concurrency.namespaceLimit, concurrency.idleTimeout); flags given explicitly win.")
		listen          = flag.String("listen-address", ":8080", "Address of the Invoke API.")
		metricsAddr     = flag.String("metrics-address", ":9090", "Address of the Prometheus metrics endpoint; empty disables it.")
		defaultNS       = flag.String("default-namespace", "default", "Namespace of functions invoked without a /namespaces/{ns} path prefix.")
		region          = flag.String("region", lambdav1alpha1.DefaultRegion, "Region in function ARNs.")
		accountID       = flag.String("account-id", lambdav1alpha1.DefaultAccountID, "Account id in function ARNs.")
		waitDeadline    = flag.Duration("wait-deadline", 30*time.Second, "How long a request waits for an execution environment (scale-up included) before ServiceException.")
		resizeAfterInit = flag.Bool("resize-after-init", true, "Resize an environment that started with the init CPU (annotation lambda.klambda.dev/cpu-limit) to its CPU share once it is ready (pods/resize).")
		idleTimeout     = flag.Duration("idle-timeout", 10*time.Minute, "How long an idle environment stays warm before it is removed.")
		namespaceLimit  = flag.Int("namespace-concurrency-limit", 1000, "Concurrency shared by a namespace's functions without reserved concurrency (Lambda's account limit); -1 for none.")
		burst           = flag.Int("burst-limit", 0, "Environments a namespace may add at once (Lambda's burst concurrency, e.g. 3000); 0 disables the burst model.")
		burstPerMinute  = flag.Int("burst-per-minute", 500, "Environments a namespace may add per minute after the burst.")
		authOn          = flag.Bool("auth", true, "Require a Kubernetes token (TokenReview) allowed to invoke the function (SubjectAccessReview). Disable only for local development.")
		scaleInterval   = flag.Duration("scale-interval", time.Second, "Interval between scaler passes when no request wakes it.")
		probeInterval   = flag.Duration("probe-interval", 25*time.Millisecond, "How often a starting pod's shim is asked whether it is ready (/readyz), until the kubelet reports it; 0 waits for the kubelet's Ready only.")
		asyncOn         = flag.Bool("async", true, "Accept Event (asynchronous) invocations into a durable NATS JetStream queue (activator/async).")
		asyncStore      = flag.String("async-store-dir", "/var/lib/klambda/async", "JetStream file store of the embedded NATS for asynchronous invocations (a PersistentVolumeClaim).")
		asyncNATS       = flag.String("async-nats-url", "", "External NATS (JetStream) URL for asynchronous invocations; empty runs NATS embedded.")
		asyncListen     = flag.String("async-nats-listen", "", "Also serve the embedded NATS on this address (e.g. :4222); empty: in-process only.")
		asyncFsync      = flag.Bool("async-sync-always", false, "fsync every accepted event before answering 202 (survives node crashes; slower).")
		asyncWorkers    = flag.Int("async-workers", 64, "Asynchronous events invoked at once.")
		asyncDelays     = flag.String("async-retry-delays", "1m,2m", "Waits before the 2nd and 3rd attempt of an asynchronous event after a function error (Lambda's: 1m,2m).")
		asyncDelayAnn   = flag.Bool("async-retry-delay-annotation", false, "Let a Function's "+async.AnnotationRetryDelays+" annotation set its own retry delays (for test clusters).")
		asyncAckWait    = flag.Duration("async-ack-wait", 60*time.Second, "How long JetStream waits before redelivering an event whose worker went silent (e.g. the activator was killed).")
		asyncSigningKey = flag.String("async-signing-key-file", "", "File of the key(s) that sign stored async events (one per line, at least 32 bytes; the first signs, all verify); workers then refuse messages without a valid signature. Needed with --async-nats-url.")
		asyncUnsigned   = flag.Bool("async-accept-unsigned", false, "Also run async events without a signature (while a queue filled by an activator older than signing drains); a wrong signature is always refused.")
		ext             async.ExternalNATS
		dstPasswordFile string
	)
	flag.StringVar(&ext.Auth.CredsFile, "async-nats-creds", "", "External NATS: the activator's .creds file (JWT and nkey seed).")
	flag.StringVar(&ext.Auth.NKeySeedFile, "async-nats-nkey-seed", "", "External NATS: the activator's nkey seed file.")
	flag.StringVar(&ext.Auth.User, "async-nats-user", "", "External NATS: the activator's user (with --async-nats-password-file).")
	flag.StringVar(&ext.Auth.PasswordFile, "async-nats-password-file", "", "External NATS: file holding the password of --async-nats-user.")
	flag.StringVar(&ext.TLS.CAFile, "async-nats-tls-ca", "", "External NATS: CA bundle (PEM) that signed the server's certificate.")
	flag.StringVar(&ext.TLS.CertFile, "async-nats-tls-cert", "", "External NATS: client certificate (PEM).")
	flag.StringVar(&ext.TLS.KeyFile, "async-nats-tls-key", "", "External NATS: client key (PEM).")
	flag.StringVar(&ext.TLS.ServerName, "async-nats-tls-server-name", "", "External NATS: name the server's certificate must carry, when not the URL's host.")
	flag.StringVar(&ext.Destinations.CredsFile, "async-nats-destinations-creds", "", "External NATS: .creds file of the identity tenants' NATS destinations without servers publish with (not the queue's).")
	flag.StringVar(&ext.Destinations.NKeySeedFile, "async-nats-destinations-nkey-seed", "", "External NATS: nkey seed file of the destinations identity.")
	flag.StringVar(&ext.Destinations.User, "async-nats-destinations-user", "", "External NATS: user of the destinations identity (with --async-nats-destinations-password-file).")
	flag.StringVar(&dstPasswordFile, "async-nats-destinations-password-file", "", "External NATS: password file of --async-nats-destinations-user. Embedded NATS: password of user "+async.DestinationsUser+" over --async-nats-listen (subscribers of destinations without servers).")
	// Bounds of the async queue, fairness of its workers, destination clients and the
	// egress policy of tenant-supplied destination endpoints (issue #15, findings 10, 12).
	var (
		asyncMaxBytes     = flag.String("async-max-bytes", "512Mi", "Bound of the whole async queue (JetStream stream bytes; a full queue refuses events with 429). Must fit in the JetStream store.")
		asyncMaxMsgs      = flag.Int64("async-max-messages", async.DefaultMaxMessages, "Bound of the whole async queue in events.")
		asyncNSMaxBytes   = flag.String("async-namespace-max-bytes", "128Mi", "Payload bytes one namespace's waiting async events may hold; past it the namespace's Event invocations get 429 TooManyRequestsException.")
		asyncNSMaxMsgs    = flag.Int64("async-namespace-max-messages", async.DefaultNamespaceMaxMessages, "Async events one namespace may have waiting (also each function's bound).")
		asyncPerFunction  = flag.Int("async-workers-per-function", 0, "Async workers one function's events may hold at once; 0: a quarter of --async-workers.")
		destMaxClients    = flag.Int("destination-max-clients", async.DefaultMaxDestinationClients, "Destination clients (NATS, Kafka, SQS endpoints) kept at most; the least recently used is closed.")
		destIdle          = flag.Duration("destination-idle-timeout", async.DefaultDestinationIdleTimeout, "A destination client unused this long is closed.")
		egressDeny        = flag.String("egress-deny-cidrs", "", "Comma-separated CIDRs tenant-supplied destination endpoints may not reach (e.g. the cluster's pod, service and node ranges), besides loopback, link-local, multicast and unspecified addresses, which are always refused.")
		egressAllow       = flag.String("egress-allow-cidrs", "", "Comma-separated CIDRs let through although --egress-deny-cidrs covers them.")
		egressAllowLoopbk = flag.Bool("egress-allow-loopback", false, "Let destinations reach loopback addresses (single-node development and tests only).")
	)
	// The front door's flags (TLS, server timeouts, request budget, token audience,
	// review limits, metrics authorization): frontdoor.go.
	fd := bindFrontDoorFlags(flag.CommandLine)
	opts := zap.Options{}
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))
	log := ctrl.Log.WithName("activator")

	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *configFile != "" {
		b, err := os.ReadFile(*configFile)
		var fc fileConfig
		if err == nil {
			err = yaml.Unmarshal(b, &fc)
		}
		if err != nil {
			log.Error(err, "reading the configuration file", "file", *configFile)
			os.Exit(1)
		}
		if fc.Region != "" && !set["region"] {
			*region = fc.Region
		}
		if fc.Concurrency.NamespaceLimit != nil && !set["namespace-concurrency-limit"] {
			*namespaceLimit = int(*fc.Concurrency.NamespaceLimit)
		}
		if fc.Concurrency.IdleTimeout != nil && !set["idle-timeout"] {
			d, err := time.ParseDuration(*fc.Concurrency.IdleTimeout)
			if err != nil {
				log.Error(err, "concurrency.idleTimeout", "file", *configFile)
				os.Exit(1)
			}
			*idleTimeout = d
		}
	}

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(lambdav1alpha1.AddToScheme(scheme))
	cfg := ctrl.GetConfigOrDie()
	cs := kubernetes.NewForConfigOrDie(cfg)
	informers, err := feeder.NewCache(cfg, scheme)
	if err != nil {
		log.Error(err, "building the informer cache")
		os.Exit(1)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := metrics.New(reg)

	table := router.NewTable()
	disp := dispatch.New(nil)
	deployments := &scaleclient.Deployments{Reader: informers, Client: cs}
	sc := scaler.New(disp, table, deployments)
	sc.IdleTimeout = *idleTimeout
	sc.Interval = *scaleInterval
	sc.NamespaceLimit = int32(*namespaceLimit)
	sc.Burst, sc.BurstPerMinute = *burst, *burstPerMinute
	sc.Log = log.WithName("scaler")
	disp.SetWaker(sc)
	// Shims report whether they run an invocation (a previous activator's, after a restart).
	stateClient := shimclient.New()
	disp.Check = func(ctx context.Context, e dispatch.Environment) (bool, error) { return stateClient.Busy(ctx, e.Addr) }

	h := &invoke.Handler{
		DefaultNamespace: *defaultNS,
		Region:           *region,
		AccountID:        *accountID,
		Router:           table,
		Dispatcher:       disp,
		Shim:             shimclient.New(),
		WaitDeadline:     *waitDeadline,
		NamespaceLimit:   int32(*namespaceLimit),
		ShimGrace:        15 * time.Second,
		Metrics:          m,
		Log:              log.WithName("invoke"),
	}
	adm, err := fd.admission()
	if err != nil {
		log.Error(err, "--request-bytes, --request-bytes-per-namespace, --max-waiting-requests")
		os.Exit(1)
	}
	h.Admission = adm
	if *authOn {
		checker, err := fd.checker(cs)
		if err != nil {
			log.Error(err, "authorization flags")
			os.Exit(1)
		}
		h.Auth = checker
	} else {
		log.Info("authorization is OFF: anyone who reaches the activator can invoke any function")
	}

	ctx := ctrl.SetupSignalHandler()
	feed := &feeder.Feeder{Cache: informers, Table: table, Dispatcher: disp, Secrets: &invokesecret.Reader{Client: cs},
		Log: log.WithName("feeder")}
	if *resizeAfterInit {
		feed.Resize = feeder.PodResizer(cs)
	}
	if *probeInterval > 0 {
		feed.Probe = feeder.HTTPProbe(&http.Client{Timeout: 500 * time.Millisecond})
		feed.ProbeInterval = *probeInterval
	}
	if err := feed.Register(ctx); err != nil {
		log.Error(err, "registering informers")
		os.Exit(1)
	}
	if *asyncOn {
		var nc, dnc *nats.Conn
		dstJetStream := false
		natsErrors := nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			log.Error(err, "NATS")
		})
		if *asyncNATS == "" {
			if !ext.Auth.IsZero() || !ext.Destinations.IsZero() || ext.TLS != (async.NATSTLS{}) {
				log.Error(errors.New("--async-nats-creds, -nkey-seed, -user, -password-file, -tls-* and -destinations-* (but -destinations-password-file) apply to --async-nats-url only"), "async flags")
				os.Exit(1)
			}
			var dstPassword string
			if dstPasswordFile != "" {
				if *asyncListen == "" {
					log.Error(errors.New("--async-nats-destinations-password-file with the embedded NATS needs --async-nats-listen"), "async flags")
					os.Exit(1)
				}
				b, err := os.ReadFile(dstPasswordFile)
				if err == nil && strings.TrimSpace(string(b)) == "" {
					err = fmt.Errorf("%s is empty", dstPasswordFile)
				}
				if err != nil {
					log.Error(err, "--async-nats-destinations-password-file")
					os.Exit(1)
				}
				dstPassword = strings.TrimRight(string(b), "\r\n")
			}
			ns, err := async.StartServer(async.ServerOptions{StoreDir: *asyncStore, Listen: *asyncListen, SyncAlways: *asyncFsync,
				DestinationsPassword: dstPassword})
			if err != nil {
				log.Error(err, "starting the embedded NATS for asynchronous invocations")
				os.Exit(1)
			}
			defer ns.Shutdown()
			if nc, err = ns.Connect(natsErrors); err != nil {
				log.Error(err, "connecting to the embedded NATS")
				os.Exit(1)
			}
			if dnc, err = ns.ConnectDestinations(natsErrors); err != nil {
				log.Error(err, "connecting to the embedded NATS's destinations account")
				os.Exit(1)
			}
		} else {
			ext.URL, ext.Destinations.PasswordFile = *asyncNATS, dstPasswordFile
			if err := ext.Validate(); err != nil {
				log.Error(err, "async NATS flags")
				os.Exit(1)
			}
			if *asyncSigningKey == "" {
				log.Error(errors.New("--async-nats-url needs --async-signing-key-file: whoever else can publish on that NATS must not run functions"), "async flags")
				os.Exit(1)
			}
			if nc, err = ext.ConnectQueue(natsErrors); err != nil {
				log.Error(err, "connecting to NATS for asynchronous invocations", "url", *asyncNATS)
				os.Exit(1)
			}
			if dnc, err = ext.ConnectDestinations(natsErrors); err != nil {
				log.Error(err, "connecting to NATS for tenants' destinations", "url", *asyncNATS)
				os.Exit(1)
			}
			if dnc == nil {
				log.Info("no NATS identity for tenants' destinations (--async-nats-destinations-*): NATS destinations without servers will fail")
			}
			dstJetStream = true
		}
		var signer *async.Signer
		if *asyncSigningKey != "" {
			b, err := os.ReadFile(*asyncSigningKey)
			var keys [][]byte
			if err == nil {
				keys, err = async.ParseSigningKeys(b)
			}
			if err == nil {
				signer, err = async.NewSigner(keys...)
			}
			if err != nil {
				log.Error(err, "--async-signing-key-file", "file", *asyncSigningKey)
				os.Exit(1)
			}
		} else if *asyncUnsigned {
			log.Error(errors.New("--async-accept-unsigned needs --async-signing-key-file"), "async flags")
			os.Exit(1)
		}
		delays, err := async.ParseRetryDelays(*asyncDelays)
		if err != nil {
			log.Error(err, "--async-retry-delays")
			os.Exit(1)
		}
		am := async.NewMetrics(reg)
		limits, err := asyncLimits(*asyncMaxBytes, *asyncMaxMsgs, *asyncNSMaxBytes, *asyncNSMaxMsgs)
		if err != nil {
			log.Error(err, "async queue limits")
			os.Exit(1)
		}
		egress, err := egressPolicy(*egressDeny, *egressAllow, *egressAllowLoopbk)
		if err != nil {
			log.Error(err, "egress policy")
			os.Exit(1)
		}
		queue, err := async.NewQueue(ctx, nc, async.QueueOptions{Metrics: am, Signer: signer, AcceptUnsigned: *asyncUnsigned,
			Limits: limits, Shared: *asyncNATS != ""})
		if err != nil {
			log.Error(err, "creating the asynchronous invocation queue")
			os.Exit(1)
		}
		secrets := func(ctx context.Context, ns, name string) (map[string][]byte, error) {
			s, err := cs.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return nil, err
			}
			return s.Data, nil
		}
		deliverer := async.NewDeliverer(queue, secrets,
			async.DestinationOptions{Egress: egress, MaxClients: *destMaxClients, IdleTimeout: *destIdle})
		if dnc != nil {
			deliverer.SetLocalNATS(dnc, dstJetStream)
		}
		if *authOn {
			// A function destination is invoked only if the source function's own
			// ServiceAccount may invoke it (not with the activator's authority).
			deliverer.FunctionDestinations = &async.FunctionDestinationAuthorizer{Reader: informers, Review: async.KubeReview(cs)}
		}
		internal := *h // same routing, dispatcher and limits; the event was authorized when accepted
		internal.Auth = nil
		workers := async.NewWorkers(queue, async.HTTPInvoker{Handler: &internal},
			&async.KubeConfigSource{Client: informers, RetryDelayAnnotation: *asyncDelayAnn}, deliverer,
			async.WorkerOptions{Concurrency: *asyncWorkers, MaxPerFunction: *asyncPerFunction, Region: *region, AccountID: *accountID,
				AckWait: *asyncAckWait, Retry: async.RetryPolicy{FunctionErrorDelays: delays},
				Log: log.WithName("async"), Metrics: am})
		h.Async = async.Acceptor{Queue: queue} // 429 over a namespace's quota
		go func() {
			if informers.WaitForCacheSync(ctx) {
				_ = workers.Run(ctx)
				deliverer.Close()
			}
		}()
	}
	go func() {
		if err := informers.Start(ctx); err != nil {
			log.Error(err, "informer cache stopped")
			os.Exit(1)
		}
	}()
	var ready atomic.Bool
	go func() {
		if informers.WaitForCacheSync(ctx) {
			ready.Store(true)
			log.Info("informers synced; serving")
			sc.Run(ctx)
		}
	}()

	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "informers not synced", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.Handle("/", h)
	srv := fd.invokeServer(*listen, mux)
	invokeTLS, err := fd.tlsConfig(ctx, *authOn, log)
	if err != nil {
		log.Error(err, "serving the Invoke API")
		os.Exit(1)
	}
	if *metricsAddr != "" {
		ms, metricsTLS, err := fd.metricsServer(*metricsAddr, reg, cfg, invokeTLS, log.WithName("metrics"))
		if err != nil {
			log.Error(err, "building the metrics server")
			os.Exit(1)
		}
		go func() {
			if err := serve(ms, metricsTLS); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error(err, "metrics server stopped")
			}
		}()
	}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	log.Info("serving the Invoke API", "address", *listen, "defaultNamespace", *defaultNS, "auth", *authOn, "tls", invokeTLS != nil)
	if err := serve(srv, invokeTLS); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error(err, "Invoke API server stopped")
		os.Exit(1)
	}
}

// asyncLimits reads the async queue's bounds (quantities such as 512Mi).
func asyncLimits(maxBytes string, maxMsgs int64, nsMaxBytes string, nsMaxMsgs int64) (async.Limits, error) {
	mb, err := resource.ParseQuantity(maxBytes)
	if err != nil {
		return async.Limits{}, fmt.Errorf("--async-max-bytes %q: %w", maxBytes, err)
	}
	nb, err := resource.ParseQuantity(nsMaxBytes)
	if err != nil {
		return async.Limits{}, fmt.Errorf("--async-namespace-max-bytes %q: %w", nsMaxBytes, err)
	}
	if mb.Value() <= 0 || nb.Value() <= 0 || maxMsgs <= 0 || nsMaxMsgs <= 0 {
		return async.Limits{}, errors.New("async queue limits must be positive")
	}
	return async.Limits{MaxBytes: mb.Value(), MaxMessages: maxMsgs, NamespaceMaxBytes: nb.Value(), NamespaceMaxMessages: nsMaxMsgs}, nil
}

// egressPolicy builds the address policy of tenant-supplied destination endpoints.
func egressPolicy(deny, allow string, loopback bool) (netguard.Policy, error) {
	d, err := netguard.ParsePrefixes(deny)
	if err != nil {
		return netguard.Policy{}, fmt.Errorf("--egress-deny-cidrs: %w", err)
	}
	a, err := netguard.ParsePrefixes(allow)
	if err != nil {
		return netguard.Policy{}, fmt.Errorf("--egress-allow-cidrs: %w", err)
	}
	return netguard.Policy{Deny: d, Allow: a, AllowLoopback: loopback}, nil
}
