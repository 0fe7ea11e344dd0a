package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/klambda/klambda/api/contract"

	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/yaml"

	"github.com/klambda/klambda/activator/async"
	"github.com/klambda/klambda/activator/scaler"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	"github.com/klambda/klambda/internal/buildinfo"
)

// fileConfig is the activator's configuration file (--config, the chart's
// klambda.activatorConfig). A key it does not know is an error naming it, not ignored.
type fileConfig struct {
	Region      string `json:"region"`
	Concurrency struct {
		NamespaceLimit *int32  `json:"namespaceLimit"`
		IdleTimeout    *string `json:"idleTimeout"`
	} `json:"concurrency"`
}

// options are the activator's flags.
type options struct {
	configFile, listen, metricsAddr, defaultNS, region, accountID *string
	// urlDomain serves host-based function URLs <url-id>.lambda-url.<domain>.
	urlDomain                                               *string
	waitDeadline, idleTimeout, scaleInterval, probeInterval *time.Duration
	resizeAfterInit, authOn                                 *bool
	namespaceLimit                                          *int
	// scaling: the scaling rate's model, burst, environments per interval and interval.
	scalingModel             *string
	scalingBurst, scalingPer *int
	scalingInterval          *time.Duration

	async asyncOptions
	// replicas: shard ownership among several replicas, and the peer port (replicas.go).
	replicas *replicaOptions
	// frontDoor: TLS, server timeouts, request budget, token audience, review limits,
	// metrics authorization (frontdoor.go).
	frontDoor *frontDoor
	// controlAPI: the Lambda control-plane API (controlapi.go).
	controlAPI *controlAPIOptions
	zap        zap.Options
}

// asyncOptions are the flags of asynchronous invocations: the queue, its NATS, its
// workers, destination clients and the egress policy of tenant-supplied destinations.
type asyncOptions struct {
	on, fsync, delayAnn, unsigned, egressAllowLoopback *bool
	store, nats, listen, delays, signingKey            *string
	workers, perFunction, destMaxClients, replicas     *int
	ackWait, destIdle                                  *time.Duration
	maxBytes, nsMaxBytes, egressDeny, egressAllow      *string
	maxMsgs, nsMaxMsgs                                 *int64
	ext                                                async.ExternalNATS
	dstPasswordFile                                    string
}

// parseFlags binds and parses the command line.
func parseFlags() *options {
	o := &options{
		configFile:      flag.String("config", "", "Configuration file (YAML: region, concurrency.namespaceLimit, concurrency.idleTimeout; any other key is an error); flags given explicitly win."),
		listen:          flag.String("listen-address", ":8080", "Address of the Invoke API."),
		metricsAddr:     flag.String("metrics-address", ":9090", "Address of the Prometheus metrics endpoint; empty disables it."),
		defaultNS:       flag.String("default-namespace", "default", "Namespace of functions invoked without a /namespaces/{ns} path prefix."),
		region:          flag.String("region", lambdav1alpha1.DefaultRegion, "Region in function ARNs."),
		accountID:       flag.String("account-id", lambdav1alpha1.DefaultAccountID, "Account id in function ARNs."),
		waitDeadline:    flag.Duration("wait-deadline", 30*time.Second, "How long a request waits for an execution environment (scale-up included) before ServiceException."),
		resizeAfterInit: flag.Bool("resize-after-init", true, "Resize an environment that started with the init CPU (annotation lambda.klambda.dev/cpu-limit) to its CPU share once it is ready (pods/resize)."),
		idleTimeout:     flag.Duration("idle-timeout", 10*time.Minute, "How long an idle environment stays warm before it is removed."),
		namespaceLimit:  flag.Int("namespace-concurrency-limit", 1000, "Concurrency shared by a namespace's functions without reserved concurrency (Lambda's account limit); -1 for none."),
		scalingModel:    flag.String("scaling-model", string(scaler.DefaultRate.Model), "What shares one bucket of new environments: function (Lambda today: each function scales on its own), namespace (Lambda's earlier account-wide burst, e.g. --scaling-burst 3000 --scaling-rate 500 --scaling-interval 1m) or none. Requests waiting beyond the rate get 429 TooManyRequestsException."),
		scalingBurst:    flag.Int("scaling-burst", scaler.DefaultRate.Burst, "Environments a function (or namespace, see --scaling-model) may add at once."),
		scalingPer:      flag.Int("scaling-rate", scaler.DefaultRate.Per, "Environments a function (or namespace) may add per --scaling-interval after the burst."),
		scalingInterval: flag.Duration("scaling-interval", scaler.DefaultRate.Interval, "Interval of --scaling-rate."),
		urlDomain:       flag.String("function-url-domain", "", "Serve host-based function URLs <url-id>.lambda-url.<domain> on the Invoke API's listener (needs wildcard DNS to the activator); path-based URLs /lambda-url/<url-id>/ are served always."),
		authOn:          flag.Bool("auth", true, "Require a Kubernetes token (TokenReview) allowed to invoke the function (SubjectAccessReview). Disable only for local development."),
		scaleInterval:   flag.Duration("scale-interval", time.Second, "Interval between scaler passes when no request wakes it."),
		probeInterval:   flag.Duration("probe-interval", 25*time.Millisecond, "How often a starting pod's shim is asked whether it is ready (/readyz), until the kubelet reports it; 0 waits for the kubelet's Ready only."),
	}
	bindAsyncFlags(flag.CommandLine, &o.async)
	o.replicas = bindReplicaFlags(flag.CommandLine)
	o.frontDoor = bindFrontDoorFlags(flag.CommandLine)
	o.controlAPI = bindControlAPIFlags(flag.CommandLine)
	o.zap.BindFlags(flag.CommandLine)
	buildinfo.RegisterFlag(flag.CommandLine, "activator")
	flag.Parse()
	return o
}

func bindAsyncFlags(fs *flag.FlagSet, a *asyncOptions) {
	a.on = fs.Bool("async", true, "Accept Event (asynchronous) invocations into a durable NATS JetStream queue (activator/async).")
	a.store = fs.String("async-store-dir", "/var/lib/klambda/async", "JetStream file store of the embedded NATS for asynchronous invocations (a PersistentVolumeClaim).")
	a.nats = fs.String("async-nats-url", "", "External NATS (JetStream) URL for asynchronous invocations; empty runs NATS embedded.")
	a.replicas = fs.Int("async-stream-replicas", 1, "Replicas (1-5) of the async queue's JetStream stream, consumers and state bucket; more than 1 needs --async-nats-url, a NATS JetStream cluster of at least that many servers (3 for several activator replicas). An existing stream is updated to it.")
	a.listen = fs.String("async-nats-listen", "", "Also serve the embedded NATS on this address (e.g. :4222); empty: in-process only.")
	a.fsync = fs.Bool("async-sync-always", false, "fsync every accepted event before answering 202 (survives node crashes; slower).")
	a.workers = fs.Int("async-workers", 64, "Asynchronous events invoked at once.")
	a.delays = fs.String("async-retry-delays", "1m,2m", "Waits before the 2nd and 3rd attempt of an asynchronous event after a function error (Lambda's: 1m,2m).")
	a.delayAnn = fs.Bool("async-retry-delay-annotation", false, "Let a Function's "+contract.AnnotationAsyncRetryDelays+" annotation set its own retry delays (for test clusters).")
	a.ackWait = fs.Duration("async-ack-wait", 60*time.Second, "How long JetStream waits before redelivering an event whose worker went silent (e.g. the activator was killed).")
	a.signingKey = fs.String("async-signing-key-file", "", "File of the key(s) that sign stored async events (one per line, at least 32 bytes; the first signs, all verify); workers then refuse messages without a valid signature. Needed with --async-nats-url.")
	a.unsigned = fs.Bool("async-accept-unsigned", false, "Also run async events without a signature (while a queue filled by an activator older than signing drains); a wrong signature is always refused.")
	ext := &a.ext
	fs.StringVar(&ext.Auth.CredsFile, "async-nats-creds", "", "External NATS: the activator's .creds file (JWT and nkey seed).")
	fs.StringVar(&ext.Auth.NKeySeedFile, "async-nats-nkey-seed", "", "External NATS: the activator's nkey seed file.")
	fs.StringVar(&ext.Auth.User, "async-nats-user", "", "External NATS: the activator's user (with --async-nats-password-file).")
	fs.StringVar(&ext.Auth.PasswordFile, "async-nats-password-file", "", "External NATS: file holding the password of --async-nats-user.")
	fs.StringVar(&ext.TLS.CAFile, "async-nats-tls-ca", "", "External NATS: CA bundle (PEM) that signed the server's certificate.")
	fs.StringVar(&ext.TLS.CertFile, "async-nats-tls-cert", "", "External NATS: client certificate (PEM).")
	fs.StringVar(&ext.TLS.KeyFile, "async-nats-tls-key", "", "External NATS: client key (PEM).")
	fs.StringVar(&ext.TLS.ServerName, "async-nats-tls-server-name", "", "External NATS: name the server's certificate must carry, when not the URL's host.")
	fs.StringVar(&ext.Destinations.CredsFile, "async-nats-destinations-creds", "", "External NATS: .creds file of the identity tenants' NATS destinations without servers publish with (not the queue's).")
	fs.StringVar(&ext.Destinations.NKeySeedFile, "async-nats-destinations-nkey-seed", "", "External NATS: nkey seed file of the destinations identity.")
	fs.StringVar(&ext.Destinations.User, "async-nats-destinations-user", "", "External NATS: user of the destinations identity (with --async-nats-destinations-password-file).")
	fs.StringVar(&a.dstPasswordFile, "async-nats-destinations-password-file", "", "External NATS: password file of --async-nats-destinations-user. Embedded NATS: password of user "+async.DestinationsUser+" over --async-nats-listen (subscribers of destinations without servers).")
	// Bounds of the async queue, fairness of its workers, destination clients and the
	// egress policy of tenant-supplied destination endpoints (issue #15, findings 10, 12).
	a.maxBytes = fs.String("async-max-bytes", "512Mi", "Bound of the whole async queue (JetStream stream bytes; a full queue refuses events with 429). Must fit in the JetStream store.")
	a.maxMsgs = fs.Int64("async-max-messages", async.DefaultMaxMessages, "Bound of the whole async queue in events.")
	a.nsMaxBytes = fs.String("async-namespace-max-bytes", "128Mi", "Payload bytes one namespace's waiting async events may hold; past it the namespace's Event invocations get 429 TooManyRequestsException.")
	a.nsMaxMsgs = fs.Int64("async-namespace-max-messages", async.DefaultNamespaceMaxMessages, "Async events one namespace may have waiting (also each function's bound).")
	a.perFunction = fs.Int("async-workers-per-function", 0, "Async workers one function's events may hold at once; 0: a quarter of --async-workers.")
	a.destMaxClients = fs.Int("destination-max-clients", async.DefaultMaxDestinationClients, "Destination clients (NATS, Kafka, SQS endpoints) kept at most; the least recently used is closed.")
	a.destIdle = fs.Duration("destination-idle-timeout", async.DefaultDestinationIdleTimeout, "A destination client unused this long is closed.")
	a.egressDeny = fs.String("egress-deny-cidrs", "", "Comma-separated CIDRs tenant-supplied destination endpoints may not reach (e.g. the cluster's pod, service and node ranges), besides loopback, link-local, multicast and unspecified addresses, which are always refused.")
	a.egressAllow = fs.String("egress-allow-cidrs", "", "Comma-separated CIDRs let through although --egress-deny-cidrs covers them.")
	a.egressAllowLoopback = fs.Bool("egress-allow-loopback", false, "Let destinations reach loopback addresses (single-node development and tests only).")
}

// applyConfigFile takes region and concurrency settings from --config where the
// corresponding flag was not given.
func (o *options) applyConfigFile() error {
	if *o.configFile == "" {
		return nil
	}
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	b, err := os.ReadFile(*o.configFile)
	var fc fileConfig
	if err == nil {
		fc, err = parseFileConfig(b)
	}
	if err != nil {
		return fmt.Errorf("reading the configuration file %s: %w", *o.configFile, err)
	}
	if fc.Region != "" && !set["region"] {
		*o.region = fc.Region
	}
	if fc.Concurrency.NamespaceLimit != nil && !set["namespace-concurrency-limit"] {
		*o.namespaceLimit = int(*fc.Concurrency.NamespaceLimit)
	}
	if fc.Concurrency.IdleTimeout != nil && !set["idle-timeout"] {
		d, err := time.ParseDuration(*fc.Concurrency.IdleTimeout)
		if err != nil {
			return fmt.Errorf("concurrency.idleTimeout in %s: %w", *o.configFile, err)
		}
		*o.idleTimeout = d
	}
	return nil
}

// parseFileConfig reads the configuration file strictly: an unknown key (a typo, or a
// setting the activator does not implement) is an error that names it.
func parseFileConfig(b []byte) (fileConfig, error) {
	var fc fileConfig
	if err := yaml.UnmarshalStrict(b, &fc); err != nil {
		return fileConfig{}, err
	}
	return fc, nil
}
