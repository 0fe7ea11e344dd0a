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

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	"github.com/klambda/klambda/eventsources/controller"
	"github.com/klambda/klambda/eventsources/invoke"
	"github.com/klambda/klambda/eventsources/poller"
	"github.com/klambda/klambda/internal/metricsauth"
	"github.com/klambda/klambda/internal/netguard"
)

func main() {
	var (
		activatorURL, tokenFile, metricsAddr, probeAddr  string
		leaseNamespace, identity, region, account, natsS string
		leaseDuration, renewDeadline, retryPeriod        time.Duration
	)
	hostname, _ := os.Hostname()
	flag.StringVar(&activatorURL, "activator-url", "http://klambda-activator.klambda-system.svc:8080", "Base URL of the activator's Lambda Invoke API.")
	flag.StringVar(&tokenFile, "token-file", DefaultTokenFile, "Kubernetes token sent to the activator as Authorization: Bearer: a projected ServiceAccount token whose audience is the activator's (klambda), not the pod's API token (re-read when the kubelet rotates it); empty sends none.")
	activatorCA := flag.String("activator-ca-file", "", "PEM CA bundle that signed the activator's certificate, for an https --activator-url (empty: the system's roots).")
	activatorServerName := flag.String("activator-server-name", "", "Name to verify the activator's certificate against, when --activator-url names it otherwise (e.g. by a node IP).")
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8080", "Address the Prometheus metrics endpoint binds to; 0 disables it.")
	metricsSecure := flag.Bool("metrics-secure", true, "Serve the metrics endpoint over HTTPS to callers the API server authenticates and allows get on the non-resource URL /metrics (TokenReview, SubjectAccessReview); false: plain HTTP to anyone.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address the health and readiness probes bind to.")
	flag.StringVar(&leaseNamespace, "lease-namespace", os.Getenv("POD_NAMESPACE"), "Namespace of the per-mapping Leases that assign mappings to replicas.")
	flag.StringVar(&identity, "identity", hostname, "This replica's identity in the Leases.")
	flag.DurationVar(&leaseDuration, "lease-duration", 15*time.Second, "How long a mapping's Lease lasts without renewal before another replica takes the mapping over.")
	flag.DurationVar(&renewDeadline, "lease-renew-deadline", 10*time.Second, "How long the holder keeps trying to renew before giving the mapping up.")
	flag.DurationVar(&retryPeriod, "lease-retry-period", 2*time.Second, "How often replicas try to acquire or renew Leases.")
	flag.StringVar(&region, "region", "us-east-1", "Region in the ARNs klambda writes.")
	flag.StringVar(&account, "account", "000000000000", "Account ID in the ARNs klambda writes.")
	flag.StringVar(&natsS, "nats-servers", "", "Comma-separated NATS URLs for on-failure NATS destinations that name no servers (the activator's NATS).")
	opts := zap.Options{}
	// The egress policy of tenant-supplied on-failure destinations (issue #15, finding 12).
	var egressDeny, egressAllow string
	var egressLoopback bool
	flag.StringVar(&egressDeny, "egress-deny-cidrs", "", "Comma-separated CIDRs on-failure destinations may not reach (e.g. the cluster's pod, service and node ranges), besides loopback, link-local, multicast and unspecified addresses, which are always refused.")
	flag.StringVar(&egressAllow, "egress-allow-cidrs", "", "Comma-separated CIDRs let through although --egress-deny-cidrs covers them.")
	flag.BoolVar(&egressLoopback, "egress-allow-loopback", false, "Let on-failure destinations reach loopback addresses (single-node development and tests only).")
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))
	log := ctrl.Log.WithName("setup")
	if leaseNamespace == "" {
		leaseNamespace = "klambda-system"
	}

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(lambdav1alpha1.AddToScheme(scheme))
	utilruntime.Must(poller.Register(ctrlmetrics.Registry))

	cfg := ctrl.GetConfigOrDie()
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsauth.Options(metricsAddr, *metricsSecure),
		HealthProbeBindAddress: probeAddr,
	})
	if err != nil {
		log.Error(err, "unable to create the manager")
		os.Exit(1)
	}
	var tokens invoke.TokenSource
	if tokenFile != "" {
		tokens = invoke.NewFileToken(tokenFile)
	}
	activatorTLS, err := activatorTLSConfig(*activatorCA, *activatorServerName)
	if err != nil {
		log.Error(err, "--activator-ca-file")
		os.Exit(1)
	}
	var natsServers []string
	if natsS != "" {
		natsServers = strings.Split(natsS, ",")
	}
	kube := kubernetes.NewForConfigOrDie(cfg)
	builder := &controller.Builder{
		Authorizer:         controller.KubeAuthorizer{Client: kube},
		Reader:             mgr.GetAPIReader(),
		Invoker:            &invoke.LambdaInvoker{ActivatorURL: activatorURL, Tokens: tokens, Region: region, TLS: activatorTLS},
		Region:             region,
		Account:            account,
		DefaultNATSServers: natsServers,
	}
	if builder.Egress.Deny, err = netguard.ParsePrefixes(egressDeny); err != nil {
		log.Error(err, "--egress-deny-cidrs")
		os.Exit(1)
	}
	if builder.Egress.Allow, err = netguard.ParsePrefixes(egressAllow); err != nil {
		log.Error(err, "--egress-allow-cidrs")
		os.Exit(1)
	}
	builder.Egress.AllowLoopback = egressLoopback
	r := &controller.Reconciler{
		Client:  mgr.GetClient(),
		Builder: builder,
		Pollers: &controller.Pollers{
			Kube:           kube,
			LeaseNamespace: leaseNamespace,
			Identity:       identity,
			LeaseDuration:  leaseDuration,
			RenewDeadline:  renewDeadline,
			RetryPeriod:    retryPeriod,
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
	log.Info("starting event source pollers", "activator", activatorURL, "identity", identity)
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		log.Error(err, "manager stopped with an error")
		os.Exit(1)
	}
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
