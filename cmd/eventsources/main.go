// Command eventsources runs klambda's event source mapping pollers: every replica reconciles
// every EventSourceMapping and polls those whose Lease it holds.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	"github.com/klambda/klambda/eventsources/controller"
	"github.com/klambda/klambda/eventsources/invokeclient"
	"github.com/klambda/klambda/eventsources/poller"
	"github.com/klambda/klambda/internal/buildinfo"
	"github.com/klambda/klambda/internal/memlimit"
	"github.com/klambda/klambda/internal/metricsauth"
	"github.com/klambda/klambda/internal/netguard"
)

// options are the command line's settings.
type options struct {
	activatorURL, activatorCA, activatorServerName, tokenFile string
	metricsAddr, probeAddr                                    string
	metricsSecure                                             bool
	leaseNamespace, identity                                  string
	leaseDuration, renewDeadline, retryPeriod                 time.Duration
	region, account, natsServers                              string
	// The egress policy of tenant-supplied on-failure destinations (issue #15, finding 12).
	egressDeny, egressAllow string
	egressLoopback          bool
	// sqsMaxConcurrency caps an SQS mapping's pollers when it sets no maximumConcurrency.
	sqsMaxConcurrency int
	zap               zap.Options
}

func main() {
	o, err := parseFlags(flag.CommandLine, os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&o.zap)))
	log := ctrl.Log.WithName("setup")
	// The Go heap stays under the container's memory limit (90 %; GOMEMLIMIT or AUTOMEMLIMIT win).
	memlimit.Set(log, nil)

	cfg := ctrl.GetConfigOrDie()
	mgr, err := newManager(cfg, o)
	if err != nil {
		log.Error(err, "unable to create the manager")
		os.Exit(1)
	}
	kube := kubernetes.NewForConfigOrDie(cfg)
	builder := mustBuilder(o, mgr.GetAPIReader(), kube, log)
	r := &controller.Reconciler{
		Client:  mgr.GetClient(),
		Builder: builder,
		Pollers: &controller.Pollers{
			Kube:           kube,
			LeaseNamespace: o.leaseNamespace,
			Identity:       o.identity,
			LeaseDuration:  o.leaseDuration,
			RenewDeadline:  o.renewDeadline,
			RetryPeriod:    o.retryPeriod,
			Build:          builder.Build,
			Log:            ctrl.Log.WithName("pollers"),
		},
	}
	if err := r.SetupWithManager(mgr); err != nil {
		log.Error(err, "unable to set up the EventSourceMapping controller")
		os.Exit(1)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		log.Error(err, "unable to set up the health check")
		os.Exit(1)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		log.Error(err, "unable to set up the ready check")
		os.Exit(1)
	}
	log.Info("starting event source pollers", "activator", o.activatorURL, "identity", o.identity)
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		log.Error(err, "manager stopped with an error")
		os.Exit(1)
	}
}

// parseFlags reads the command line into fs.
func parseFlags(fs *flag.FlagSet, args []string) (*options, error) {
	o := &options{}
	hostname, _ := os.Hostname()
	fs.StringVar(&o.activatorURL, "activator-url", "http://klambda-activator.klambda-system.svc:8080", "Base URL of the activator's Lambda Invoke API.")
	fs.StringVar(&o.tokenFile, "token-file", DefaultTokenFile, "Kubernetes token sent to the activator as Authorization: Bearer: a projected ServiceAccount token whose audience is the activator's (klambda), not the pod's API token (re-read when the kubelet rotates it); empty sends none.")
	fs.StringVar(&o.activatorCA, "activator-ca-file", "", "PEM CA bundle that signed the activator's certificate, for an https --activator-url (empty: the system's roots).")
	fs.StringVar(&o.activatorServerName, "activator-server-name", "", "Name to verify the activator's certificate against, when --activator-url names it otherwise (e.g. by a node IP).")
	fs.StringVar(&o.metricsAddr, "metrics-bind-address", ":8080", "Address the Prometheus metrics endpoint binds to; 0 disables it.")
	fs.BoolVar(&o.metricsSecure, "metrics-secure", true, "Serve the metrics endpoint over HTTPS to callers the API server authenticates and allows get on the non-resource URL /metrics (TokenReview, SubjectAccessReview); false: plain HTTP to anyone.")
	fs.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081", "Address the health and readiness probes bind to.")
	fs.StringVar(&o.leaseNamespace, "lease-namespace", os.Getenv("POD_NAMESPACE"), "Namespace of the per-mapping Leases that assign mappings to replicas.")
	fs.StringVar(&o.identity, "identity", hostname, "This replica's identity in the Leases.")
	fs.DurationVar(&o.leaseDuration, "lease-duration", 15*time.Second, "How long a mapping's Lease lasts without renewal before another replica takes the mapping over.")
	fs.DurationVar(&o.renewDeadline, "lease-renew-deadline", 10*time.Second, "How long the holder keeps trying to renew before giving the mapping up.")
	fs.DurationVar(&o.retryPeriod, "lease-retry-period", 2*time.Second, "How often replicas try to acquire or renew Leases.")
	fs.StringVar(&o.region, "region", lambdav1alpha1.DefaultRegion, "Region in the ARNs klambda writes.")
	fs.StringVar(&o.account, "account", lambdav1alpha1.DefaultAccountID, "Account ID in the ARNs klambda writes.")
	fs.StringVar(&o.natsServers, "nats-servers", "", "Comma-separated NATS URLs for on-failure NATS destinations that name no servers (the activator's NATS).")
	fs.StringVar(&o.egressDeny, "egress-deny-cidrs", "", "Comma-separated CIDRs on-failure destinations may not reach (e.g. the cluster's pod, service and node ranges), besides loopback, link-local, multicast and unspecified addresses, which are always refused.")
	fs.StringVar(&o.egressAllow, "egress-allow-cidrs", "", "Comma-separated CIDRs let through although --egress-deny-cidrs covers them.")
	fs.BoolVar(&o.egressLoopback, "egress-allow-loopback", false, "Let on-failure destinations reach loopback addresses (single-node development and tests only).")
	fs.IntVar(&o.sqsMaxConcurrency, "sqs-max-concurrency", controller.DefaultSQSMaxConcurrency, fmt.Sprintf("Most concurrent pollers (batches in flight) of an SQS mapping that sets no scalingConfig.maximumConcurrency, 2-%d (Lambda's bound is %d; the pollers of a mapping run in one replica).", controller.MaxSQSConcurrency, controller.MaxSQSConcurrency))
	o.zap.BindFlags(fs)
	buildinfo.RegisterFlag(fs, "eventsources")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if o.sqsMaxConcurrency < 2 || o.sqsMaxConcurrency > controller.MaxSQSConcurrency {
		return nil, fmt.Errorf("--sqs-max-concurrency=%d: must be between 2 and %d (scalingConfig.maximumConcurrency's range)", o.sqsMaxConcurrency, controller.MaxSQSConcurrency)
	}
	if o.leaseNamespace == "" {
		o.leaseNamespace = "klambda-system"
	}
	return o, nil
}

// newManager is the controller manager with klambda's types and the pollers' metrics
// registered.
func newManager(cfg *rest.Config, o *options) (ctrl.Manager, error) {
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(lambdav1alpha1.AddToScheme(scheme))
	utilruntime.Must(poller.Register(ctrlmetrics.Registry))
	utilruntime.Must(ctrlmetrics.Registry.Register(buildinfo.NewCollector()))
	return ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsauth.Options(o.metricsAddr, o.metricsSecure),
		HealthProbeBindAddress: o.probeAddr,
	})
}

// mustBuilder is what turns a mapping into a running poller: the invoker that reaches the
// activator and the egress policy of on-failure destinations. A flag that does not parse
// ends the process.
func mustBuilder(o *options, reader client.Reader, kube kubernetes.Interface, log logr.Logger) *controller.Builder {
	var tokens invokeclient.TokenSource
	if o.tokenFile != "" {
		tokens = invokeclient.NewFileToken(o.tokenFile)
	}
	activatorTLS, err := activatorTLSConfig(o.activatorCA, o.activatorServerName)
	if err != nil {
		log.Error(err, "--activator-ca-file")
		os.Exit(1)
	}
	var natsServers []string
	if o.natsServers != "" {
		natsServers = strings.Split(o.natsServers, ",")
	}
	builder := &controller.Builder{
		Authorizer:         controller.KubeAuthorizer{Client: kube},
		Reader:             reader,
		Invoker:            invokeclient.NewConnInvoker(o.activatorURL, tokens, activatorTLS),
		Region:             o.region,
		Account:            o.account,
		DefaultNATSServers: natsServers,
		SQSMaxConcurrency:  o.sqsMaxConcurrency,
	}
	if builder.Egress.Deny, err = netguard.ParsePrefixes(o.egressDeny); err != nil {
		log.Error(err, "--egress-deny-cidrs")
		os.Exit(1)
	}
	if builder.Egress.Allow, err = netguard.ParsePrefixes(o.egressAllow); err != nil {
		log.Error(err, "--egress-allow-cidrs")
		os.Exit(1)
	}
	builder.Egress.AllowLoopback = o.egressLoopback
	return builder
}

// DefaultTokenFile is where the chart mounts the pollers' projected ServiceAccount token
// with audience klambda (charts/klambda/templates/eventsources.yaml).
const DefaultTokenFile = "/var/run/secrets/klambda/token"

// activatorTLSConfig trusts caFile's CAs (and checks serverName) for the activator; nil
// when neither is given (the SDK's defaults).
func activatorTLSConfig(caFile, serverName string) (*tls.Config, error) {
	if caFile == "" && serverName == "" {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", caFile)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}
