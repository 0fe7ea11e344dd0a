//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"
)

// cluster is shared by every test of the suite.
var cluster *Cluster

func TestMain(m *testing.M) {
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Minute)
	c, err := Start(ctx)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: starting the cluster:", err)
		os.Exit(1)
	}
	cluster = c
	os.Exit(m.Run())
}
