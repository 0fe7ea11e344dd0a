// Package replicas wires shard ownership into an activator replica (activator/README.md,
// "Several replicas"): the namespaces hash into shards, each held by one replica with a
// coordination Lease (activator/ownership); the dispatcher and the scaler of a replica
// serve only the namespaces it owns; every invocation that reaches a replica goes to its
// namespace's owner (activator/peer's Router), and the peer port runs the forwarded ones.
//
// As a shard changes hands, the giving replica refuses the shard's waiting requests (their
// callers go to the next owner) and gives the Lease up only once its own invocations of
// the shard have ended (dispatch.Give); the taking replica asks the shard's idle
// environments whether they are busy before trusting them (dispatch.Take), for the case
// where the previous owner died with invocations running.
package replicas

import (
	"context"
	"net/http"
	"time"

	"github.com/go-logr/logr"

	"github.com/klambda/klambda/activator/dispatch"
	"github.com/klambda/klambda/activator/invoke"
	"github.com/klambda/klambda/activator/ownership"
	"github.com/klambda/klambda/activator/peer"
)

// Config is one replica's part in the ownership.
type Config struct {
	// Ownership configures the Manager; its Hooks are set here.
	Ownership ownership.Config
	// Core runs the invocations of the namespaces this replica owns.
	Core invoke.Invoker
	// Dispatcher is limited to the owned namespaces (the scaler too: its Owns is
	// Replica.Manager.OwnsNamespace).
	Dispatcher *dispatch.Dispatcher
	// Client forwards invocations to their owners; Verify checks the peers that forward
	// invocations here.
	Client *peer.Client
	Verify peer.Verifier
	// HandoffWait bounds how long an invocation waits for its shard to find an owner (a
	// dead replica's Leases expire first).
	HandoffWait time.Duration
	Log         logr.Logger
}

// handoffRetry is how often an invocation waiting for its shard's owner looks again.
const handoffRetry = 100 * time.Millisecond

// Replica is the wired ownership of one replica.
type Replica struct {
	Manager *ownership.Manager
	// Router is the Invoker of the Invoke API and the async workers.
	Router *peer.Router
	// Peer is the peer port's handler.
	Peer http.Handler
}

// New wires cfg; run the Manager (Replica.Manager.Run) once the replica knows its
// functions (informers synced).
func New(cfg Config) (*Replica, error) {
	shards := cfg.Ownership.Shards
	inShard := func(s int) func(string) bool {
		return func(ns string) bool { return ownership.ShardOf(ns, shards) == s }
	}
	log := cfg.Log
	if log.GetSink() == nil {
		log = logr.Discard()
	}
	oc := cfg.Ownership
	oc.Hooks = ownership.Hooks{
		Acquired: func(s int) { cfg.Dispatcher.Take(inShard(s)) },
		Releasing: func(s int) {
			// An invocation admitted here ends within MaxInvocation.
			ctx, cancel := context.WithTimeout(context.Background(), dispatch.MaxInvocation)
			defer cancel()
			if err := cfg.Dispatcher.Give(ctx, inShard(s)); err != nil {
				log.Error(err, "gave up a shard with invocations still running", "shard", s)
			}
		},
	}
	m, err := ownership.New(oc)
	if err != nil {
		return nil, err
	}
	cfg.Dispatcher.SetOwnership(m.OwnsNamespace)
	return &Replica{
		Manager: m,
		Router:  &peer.Router{Local: cfg.Core, Ownership: m, Client: cfg.Client, Wait: cfg.HandoffWait, Retry: handoffRetry},
		Peer:    &peer.Handler{Core: cfg.Core, Owns: m.OwnsNamespace, Verify: cfg.Verify},
	}, nil
}
