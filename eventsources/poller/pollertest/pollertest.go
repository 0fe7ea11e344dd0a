// Package pollertest runs pollers in the source packages' tests.
package pollertest

import (
	"context"
	"sync"
	"testing"

	"github.com/go-logr/logr/testr"

	"github.com/klambda/klambda/eventsources/invokeclient"
	"github.com/klambda/klambda/eventsources/poller"
)

// Run runs a poller over src in the background, as mapping ns/esm of function fn with
// batchSize when cfg gives none, and returns the function that stops it and waits for it
// to end (also called when the test ends; calling it again does nothing).
func Run(t *testing.T, cfg poller.Config, batchSize int, src poller.Source, inv invokeclient.Invoker) (stop func()) {
	t.Helper()
	cfg.Namespace, cfg.Name, cfg.Function = "ns", "esm", "fn"
	if cfg.BatchSize == 0 {
		cfg.BatchSize = batchSize
	}
	p := poller.New(cfg, src, inv, testr.New(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}
