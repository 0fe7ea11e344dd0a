package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	"github.com/klambda/klambda/activator/async"
	"github.com/klambda/klambda/activator/invoke"
	"github.com/klambda/klambda/internal/netguard"
)

// asyncQueueNATS are the NATS connections of asynchronous invocations: the queue's, and
// the one tenants' NATS destinations without servers publish on (nil: none).
type asyncQueueNATS struct {
	queue, destinations *nats.Conn
	// destinationsJetStream: the destinations connection publishes to JetStream.
	destinationsJetStream bool
	// shutdown stops the embedded NATS (a no-op for an external one).
	shutdown func()
}

// startAsync starts the embedded NATS and opens the queue on it, or starts opening the
// queue on an external NATS in the background; once the queue is open it runs the workers
// that invoke queued events through inv (the core, or the router to each namespace's
// owner) once the informers have synced. It sets core.Async, and returns the func that
// stops the embedded NATS and the queue's readiness (nil once Event invocations are
// accepted; /readyz/async).
func startAsync(ctx context.Context, a *asyncOptions, o *options, core *invoke.Core, inv invoke.Invoker, informers cache.Cache, cs kubernetes.Interface, reg *prometheus.Registry, log logr.Logger) (stop func(), ready func() error) {
	natsErrors := nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		log.Error(err, "NATS")
	})
	signer := asyncSigner(a, log)
	delays, err := async.ParseRetryDelays(*a.delays)
	if err != nil {
		fatal(log, err, "--async-retry-delays")
	}
	am := async.NewMetrics(reg)
	limits, err := asyncLimits(*a.maxBytes, *a.maxMsgs, *a.nsMaxBytes, *a.nsMaxMsgs)
	if err != nil {
		fatal(log, err, "async queue limits")
	}
	egress, err := egressPolicy(*a.egressDeny, *a.egressAllow, *a.egressAllowLoopback)
	if err != nil {
		fatal(log, err, "egress policy")
	}
	qopts := async.QueueOptions{Metrics: am, Signer: signer, AcceptUnsigned: *a.unsigned,
		Limits: limits, Shared: *a.nats != "", Replicas: *a.replicas}
	// run starts the deliverer and the workers of an open queue.
	run := func(queue *async.Queue, conns asyncQueueNATS) {
		secrets := func(ctx context.Context, ns, name string) (map[string][]byte, error) {
			s, err := cs.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return nil, err
			}
			return s.Data, nil
		}
		deliverer := async.NewDeliverer(queue, secrets,
			async.DestinationOptions{Egress: egress, MaxClients: *a.destMaxClients, IdleTimeout: *a.destIdle})
		if conns.destinations != nil {
			deliverer.SetLocalNATS(conns.destinations, conns.destinationsJetStream)
		}
		if *o.authOn {
			// A function destination is invoked only if the source function's own
			// ServiceAccount may invoke it (not with the activator's authority).
			deliverer.FunctionDestinations = &async.FunctionDestinationAuthorizer{Reader: informers, Review: async.KubeReview(cs)}
		}
		// The event was authorized when it was accepted: the workers call the core directly.
		workers := async.NewWorkers(queue, async.CoreInvoker{Core: inv},
			&async.KubeConfigSource{Client: informers, RetryDelayAnnotation: *a.delayAnn}, deliverer,
			async.WorkerOptions{Concurrency: *a.workers, MaxPerFunction: *a.perFunction, Region: *o.region, AccountID: *o.accountID,
				AckWait: *a.ackWait, Retry: async.RetryPolicy{FunctionErrorDelays: delays},
				Log: log.WithName("async"), Metrics: am})
		go func() {
			if informers.WaitForCacheSync(ctx) {
				_ = workers.Run(ctx)
				deliverer.Close()
			}
		}()
	}
	if *a.nats == "" {
		conns := embeddedNATS(a, natsErrors, log)
		queue, err := async.NewQueue(ctx, conns.queue, qopts)
		if err != nil {
			fatal(log, err, "creating the asynchronous invocation queue")
		}
		run(queue, conns)
		core.Async = async.Acceptor{Queue: queue} // 429 over a namespace's quota
		return conns.shutdown, func() error { return nil }
	}
	// An external NATS may start after the activator (the chart's NATS cluster) or be
	// down: synchronous invocations are served meanwhile, Event invocations get a
	// retryable ServiceException, and the queue opens as soon as NATS answers.
	ext := externalNATS(a, log)
	opening, err := async.OpenInBackground(ctx, async.OpenOptions{
		Connect: func() (*nats.Conn, error) { return ext.ConnectQueue(natsErrors) },
		Queue:   qopts,
		Log:     log.WithName("async").WithValues("url", *a.nats),
	}, func(queue *async.Queue) {
		conns := asyncQueueNATS{destinationsJetStream: true}
		// NATS answers: the destinations identity connects now, or keeps trying in the
		// background (a delivery meanwhile fails and is counted).
		dnc, err := ext.ConnectDestinations(natsErrors, nats.RetryOnFailedConnect(true))
		switch {
		case err != nil:
			log.Error(err, "connecting to NATS for tenants' destinations: NATS destinations without servers will fail", "url", *a.nats)
		case dnc == nil:
			log.Info("no NATS identity for tenants' destinations (--async-nats-destinations-*): NATS destinations without servers will fail")
		}
		conns.destinations = dnc
		run(queue, conns)
		go moveEmbeddedStore(ctx, *a.store, queue, log.WithName("async"))
	})
	if err != nil {
		fatal(log, err, "async queue options")
	}
	core.Async = opening // ServiceException until open, then 429 over a namespace's quota
	return func() {}, opening.Err
}

// moveEmbeddedStore moves the events an embedded queue left in dir (an install switched
// to an external NATS, the old store still mounted) into queue, trying again with backoff
// until it succeeds or ctx ends.
func moveEmbeddedStore(ctx context.Context, dir string, queue *async.Queue, log logr.Logger) {
	log = log.WithValues("storeDir", dir)
	for wait := time.Second; ; wait = min(2*wait, time.Minute) {
		pending, err := async.EmbeddedStorePending(dir)
		if err == nil && !pending {
			return
		}
		if err == nil {
			log.Info("The embedded queue's store may hold events: moving them into the external NATS")
			var moved int
			moved, err = async.MoveEmbeddedStore(ctx, dir, queue, log)
			if err == nil {
				log.Info("The embedded queue's store is drained: every event it held is in the external NATS", "moved", moved,
					"marker", filepath.Join(dir, async.DrainedMarker))
				return
			}
			log.Info("Events moved before the error", "moved", moved)
		}
		log.Error(err, "Moving the embedded queue's events into the external NATS failed; they stay in the store, trying again", "retryIn", wait.String())
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return
		}
	}
}

// embeddedNATS starts the NATS server in process and connects to its queue and
// destinations accounts.
func embeddedNATS(a *asyncOptions, natsErrors nats.Option, log logr.Logger) asyncQueueNATS {
	if !a.ext.Auth.IsZero() || !a.ext.Destinations.IsZero() || a.ext.TLS != (async.NATSTLS{}) {
		fatal(log, errors.New("--async-nats-creds, -nkey-seed, -user, -password-file, -tls-* and -destinations-* (but -destinations-password-file) apply to --async-nats-url only"), "async flags")
	}
	if *a.replicas != 1 {
		fatal(log, fmt.Errorf("--async-stream-replicas=%d needs --async-nats-url (a NATS JetStream cluster of at least that many servers): the embedded NATS is a single server", *a.replicas), "async flags")
	}
	var dstPassword string
	if a.dstPasswordFile != "" {
		if *a.listen == "" {
			fatal(log, errors.New("--async-nats-destinations-password-file with the embedded NATS needs --async-nats-listen"), "async flags")
		}
		b, err := os.ReadFile(a.dstPasswordFile)
		if err == nil && strings.TrimSpace(string(b)) == "" {
			err = fmt.Errorf("%s is empty", a.dstPasswordFile)
		}
		if err != nil {
			fatal(log, err, "--async-nats-destinations-password-file")
		}
		dstPassword = strings.TrimRight(string(b), "\r\n")
	}
	ns, err := async.StartServer(async.ServerOptions{StoreDir: *a.store, Listen: *a.listen, SyncAlways: *a.fsync,
		DestinationsPassword: dstPassword})
	if err != nil {
		fatal(log, err, "starting the embedded NATS for asynchronous invocations")
	}
	conns := asyncQueueNATS{shutdown: ns.Shutdown}
	if conns.queue, err = ns.Connect(natsErrors); err != nil {
		fatal(log, err, "connecting to the embedded NATS")
	}
	if conns.destinations, err = ns.ConnectDestinations(natsErrors); err != nil {
		fatal(log, err, "connecting to the embedded NATS's destinations account")
	}
	return conns
}

// externalNATS checks the flags of an external NATS (--async-nats-url): the queue's and
// the destinations' identities, TLS, the stream's replicas and the signing key.
func externalNATS(a *asyncOptions, log logr.Logger) async.ExternalNATS {
	ext := a.ext
	ext.URL, ext.Destinations.PasswordFile = *a.nats, a.dstPasswordFile
	if err := ext.Validate(); err != nil {
		fatal(log, err, "async NATS flags")
	}
	if r := *a.replicas; r < 1 || r > async.MaxReplicas {
		fatal(log, fmt.Errorf("--async-stream-replicas=%d: JetStream allows 1 to %d", r, async.MaxReplicas), "async flags")
	}
	if *a.signingKey == "" {
		fatal(log, errors.New("--async-nats-url needs --async-signing-key-file: whoever else can publish on that NATS must not run functions"), "async flags")
	}
	return ext
}

// asyncSigner reads --async-signing-key-file (nil without one).
func asyncSigner(a *asyncOptions, log logr.Logger) *async.Signer {
	if *a.signingKey == "" {
		if *a.unsigned {
			fatal(log, errors.New("--async-accept-unsigned needs --async-signing-key-file"), "async flags")
		}
		return nil
	}
	b, err := os.ReadFile(*a.signingKey)
	var keys [][]byte
	if err == nil {
		keys, err = async.ParseSigningKeys(b)
	}
	var signer *async.Signer
	if err == nil {
		signer, err = async.NewSigner(keys...)
	}
	if err != nil {
		fatal(log, err, "--async-signing-key-file", "file", *a.signingKey)
	}
	return signer
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
