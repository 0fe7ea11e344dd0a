package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/transport"

	"github.com/klambda/klambda/activator/auth"
	"github.com/klambda/klambda/activator/dispatch"
	"github.com/klambda/klambda/activator/invoke"
	"github.com/klambda/klambda/activator/ownership"
	"github.com/klambda/klambda/activator/peer"
	"github.com/klambda/klambda/activator/replicas"
	"github.com/klambda/klambda/activator/scaler"
)

// Several activator replicas (activator/README.md, "Several replicas"): the namespaces are
// divided into shards, each held by one replica with a coordination Lease
// (activator/ownership); a replica runs the invocations of the namespaces it owns and
// forwards the others to their owner's peer port (activator/peer).

// replicaOptions are the flags of shard ownership and the peer port.
type replicaOptions struct {
	shards                                      *int
	peerListen, leaseNamespace, leaseName       *string
	podName, podIP, membersService, peerAccount *string
	peerTokenFile                               *string
	handoffWait                                 *time.Duration
	steer                                       *bool
	steerRate                                   *float64
}

func bindReplicaFlags(fs *flag.FlagSet) *replicaOptions {
	return &replicaOptions{
		shards:         fs.Int("shards", 0, "Shards (1-256) the namespaces are divided into among the activator's replicas, each held by one replica with a coordination Lease; 0: this activator serves every namespace alone (run exactly one replica)."),
		peerListen:     fs.String("peer-listen-address", ":8082", "With --shards: address of the peer port, where replicas forward the invocations of namespaces they do not own."),
		leaseNamespace: fs.String("lease-namespace", os.Getenv("POD_NAMESPACE"), "With --shards: namespace of the shard Leases and of --members-service (default: $POD_NAMESPACE)."),
		leaseName:      fs.String("lease-name", "klambda-activator", "With --shards: prefix of the shard Leases (<name>-shard-<i>)."),
		podName:        fs.String("pod-name", os.Getenv("POD_NAME"), "With --shards: this replica's identity in the Leases (default: $POD_NAME)."),
		podIP:          fs.String("pod-ip", os.Getenv("POD_IP"), "With --shards: the address peers reach this replica at (default: $POD_IP)."),
		membersService: fs.String("members-service", "", "With --shards: the Service whose ready endpoints are the replicas sharing the shards (each takes its share)."),
		peerAccount:    fs.String("peer-service-account", "", "With --shards: the activators' ServiceAccount (system:serviceaccount:<namespace>:<name>); only its tokens may call the peer port."),
		peerTokenFile:  fs.String("peer-token-file", "", "With --shards: this replica's token for the peer port (a projected ServiceAccount token with audience "+peer.Audience+"); re-read as the kubelet rotates it."),
		handoffWait:    fs.Duration("shard-handoff-wait", 20*time.Second, "With --shards: how long an invocation waits for its namespace's shard to find an owner (a replica died: its Leases expire first)."),
		steer:          fs.Bool("steer-connections", true, "With --shards: answer with \"Connection: close\" a caller's kept-alive connection whose requests keep being forwarded to the same owner (two in a row), so that its next connection may reach the owner through the Service; false: never."),
		steerRate:      fs.Float64("steer-rate", 10, "With --steer-connections: at most this many such closes a second by this replica (a token bucket of as many; each costs the caller a new connection, over TLS a handshake)."),
	}
}

// replicaFlags are the flags that mean something only with --shards.
var replicaFlags = []string{"peer-listen-address", "lease-namespace", "lease-name", "pod-name", "pod-ip",
	"members-service", "peer-service-account", "peer-token-file", "shard-handoff-wait", "steer-connections", "steer-rate"}

// check refuses incomplete ownership settings (every one is needed once --shards is set),
// and ownership flags given without --shards (set: the flags given explicitly).
func (r *replicaOptions) check(set map[string]bool) error {
	if *r.shards == 0 {
		for _, name := range replicaFlags {
			if set[name] {
				return fmt.Errorf("--%s applies only with --shards (several replicas)", name)
			}
		}
		return nil
	}
	if *r.shards < 0 || *r.shards > 256 {
		return fmt.Errorf("--shards %d: want 0 (one replica) or 1 to 256", *r.shards)
	}
	missing := []string{}
	for name, v := range map[string]string{"--lease-namespace": *r.leaseNamespace, "--pod-name": *r.podName, "--pod-ip": *r.podIP,
		"--members-service": *r.membersService, "--peer-service-account": *r.peerAccount, "--peer-token-file": *r.peerTokenFile} {
		if v == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("--shards needs %s", strings.Join(missing, ", "))
	}
	if *r.handoffWait <= 0 {
		return errors.New("--shard-handoff-wait must be positive")
	}
	if !*r.steer && set["steer-rate"] {
		return errors.New("--steer-rate applies only with --steer-connections=true")
	}
	if *r.steer && !(*r.steerRate > 0 && *r.steerRate <= 1e6) {
		return fmt.Errorf("--steer-rate %v: want closes per second, more than 0 and at most 1e6", *r.steerRate)
	}
	return nil
}

// steering is the connection steering of the Invoke API (nil: off, or one replica);
// closes are counted in reg.
func (r *replicaOptions) steering(reg prometheus.Registerer) *peer.Steering {
	if *r.shards == 0 || !*r.steer {
		return nil
	}
	closes := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "klambda_activator_steered_connections_total",
		Help: "Caller connections this replica answered with Connection: close after their requests were forwarded twice in a row to the same owning replica, so that the caller reconnects through the Service, possibly to the owner (--steer-connections).",
	})
	reg.MustRegister(closes)
	return peer.NewSteering(*r.steerRate, int(math.Ceil(*r.steerRate)), closes.Inc)
}

// replicaSet runs this replica's part in the shard ownership, and the peer port.
type replicaSet struct {
	peer *listener
	mgr  *ownership.Manager
	log  logr.Logger
	done chan struct{}
}

// start takes part in the ownership until ctx ends, in the background (r may be nil: one
// replica). Called once the informers have synced: a replica that owns a namespace must
// know its functions.
func (r *replicaSet) start(ctx context.Context) {
	if r == nil {
		return
	}
	go func() {
		defer close(r.done)
		if err := r.mgr.Run(ctx); err != nil {
			fatal(r.log, err, "shard ownership")
		}
	}()
}

// startReplicas sets up shard ownership when --shards is set (nil otherwise): the
// dispatcher and the scaler serve only the owned namespaces, the returned Invoker routes
// each invocation to its namespace's owner, and the peer port serves the forwarded ones.
// Ownership runs from start until its context ends; then the replica gives its shards up,
// each once the invocations it admitted have ended.
func startReplicas(ctx context.Context, r *replicaOptions, cs kubernetes.Interface, core *invoke.Core, disp *dispatch.Dispatcher,
	sc *scaler.Scaler, steer *peer.Steering, reg prometheus.Registerer, log logr.Logger) (*replicaSet, invoke.Invoker) {
	if *r.shards == 0 {
		return nil, core
	}
	log = log.WithName("ownership")
	// The Manager balances again as soon as the replicas change (one becomes ready, or
	// one leaves on SIGTERM and gives its shards up), not at its next retry period.
	var mgr atomic.Pointer[ownership.Manager]
	members, err := endpointMembers(ctx, cs, *r.leaseNamespace, *r.membersService, func() {
		if m := mgr.Load(); m != nil {
			m.Kick()
		}
	})
	if err != nil {
		fatal(log, err, "watching the activator's endpoints", "service", *r.membersService)
	}
	_, port, err := net.SplitHostPort(*r.peerListen)
	if err != nil {
		fatal(log, err, "--peer-listen-address")
	}
	wired, err := replicas.New(replicas.Config{
		Ownership: ownership.Config{
			Client: cs, Namespace: *r.leaseNamespace, Name: *r.leaseName,
			Identity: *r.podName, Address: net.JoinHostPort(*r.podIP, port), Shards: *r.shards, Members: members,
			LeaseDuration: ownership.DefaultLeaseDuration, RenewDeadline: ownership.DefaultRenewDeadline, RetryPeriod: ownership.DefaultRetryPeriod,
			Log: log,
		},
		Core: core, Dispatcher: disp,
		Client:      &peer.Client{Token: tokenFile(*r.peerTokenFile)},
		Verify:      peer.NewKubeVerifier(&auth.Kube{Client: cs, Audiences: []string{peer.Audience}}, *r.peerAccount, time.Minute),
		HandoffWait: *r.handoffWait,
		Log:         log,
	})
	if err != nil {
		fatal(log, err, "--shards")
	}
	mgr.Store(wired.Manager)
	wired.Router.Steer = steer
	forwarded := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "klambda_activator_forwarded_invocations_total",
		Help: "Synchronous invocations this replica forwarded to the replica owning their namespace, answered by it (successes and its error answers).",
	})
	reg.MustRegister(forwarded)
	wired.Router.Forwarded = forwarded.Inc
	sc.Owns = wired.Manager.OwnsNamespace
	// Plain HTTP inside the cluster (README, "Several replicas"): the lean server.
	srv := newListener(*r.peerListen, wired.Peer, nil, httpTimeouts{readHeader: 10 * time.Second, idle: 2 * time.Minute})
	go func() {
		if err := srv.serve(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fatal(log, err, "peer port")
		}
	}()
	log.Info("sharing the namespaces with the other replicas once the informers have synced", "shards", *r.shards, "peer", *r.peerListen, "members", *r.membersService)
	return &replicaSet{peer: srv, mgr: wired.Manager, log: log, done: make(chan struct{})}, wired.Router
}

// stop waits (within ctx) until the shards are given up, then closes the peer port: the
// replica's own invocations have ended, and forwarded ones were answered not-owner.
func (r *replicaSet) stop(ctx context.Context) {
	if r == nil {
		return
	}
	select {
	case <-r.done:
	case <-ctx.Done():
	}
	_ = r.peer.Shutdown(ctx)
	r.mgr.Close()
}

// endpointMembers counts the ready endpoints of service (its EndpointSlices in
// namespace): the replicas sharing the shards. A replica that is not ready (starting, or
// draining on SIGTERM) is not counted, so the others take its share. changed is called
// whenever a slice changes.
func endpointMembers(ctx context.Context, cs kubernetes.Interface, namespace, service string, changed func()) (ownership.Members, error) {
	f := informers.NewSharedInformerFactoryWithOptions(cs, 10*time.Minute, informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = discoveryv1.LabelServiceName + "=" + service }))
	inf := f.Discovery().V1().EndpointSlices()
	if _, err := inf.Informer().AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { changed() },
		UpdateFunc: func(any, any) { changed() },
		DeleteFunc: func(any) { changed() },
	}); err != nil {
		return nil, err
	}
	lister := inf.Lister()
	f.Start(ctx.Done())
	for typ, ok := range f.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return nil, fmt.Errorf("the %v informer did not sync", typ)
		}
	}
	return func() int { return readyEndpoints(lister, namespace) }, nil
}

// readyEndpoints counts the distinct ready addresses of the listed slices.
func readyEndpoints(lister discoverylisters.EndpointSliceLister, namespace string) int {
	slices, err := lister.EndpointSlices(namespace).List(labels.Everything())
	if err != nil {
		return 1
	}
	seen := map[string]bool{}
	for _, s := range slices {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready != nil && !*e.Conditions.Ready || len(e.Addresses) == 0 {
				continue
			}
			seen[e.Addresses[0]] = true
		}
	}
	return len(seen)
}

// tokenFile reads a projected token through client-go's cached file token source (read
// again every minute: the kubelet rotates it well before it expires).
func tokenFile(path string) func() (string, error) {
	ts := transport.NewCachedFileTokenSource(path)
	return func() (string, error) {
		t, err := ts.Token()
		if err != nil {
			return "", err
		}
		return t.AccessToken, nil
	}
}
