package main

import (
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// The ownership flags work together: --shards needs every one it uses, and none of them
// is accepted without --shards (it would be ignored).
func TestReplicaFlagsRefuseWhatWouldBeIgnored(t *testing.T) {
	for _, c := range []struct {
		args []string
		env  map[string]string
		want string // "" : accepted
	}{
		{args: nil},
		{args: []string{"--peer-listen-address=:9000"}, want: "--peer-listen-address applies only with --shards"},
		{args: []string{"--members-service=a"}, want: "--members-service applies only with --shards"},
		{args: []string{"--shards=300"}, want: "want 0 (one replica) or 1 to 256"},
		{args: []string{"--shards=8"}, want: "--shards needs"},
		{args: []string{"--shards=8", "--members-service=a", "--peer-service-account=system:serviceaccount:k:a", "--peer-token-file=/t"},
			env: map[string]string{"POD_NAMESPACE": "k", "POD_NAME": "p", "POD_IP": "10.0.0.1"}},
		{args: []string{"--shards=8", "--members-service=a", "--peer-service-account=s", "--peer-token-file=/t", "--shard-handoff-wait=0s"},
			env: map[string]string{"POD_NAMESPACE": "k", "POD_NAME": "p", "POD_IP": "10.0.0.1"}, want: "--shard-handoff-wait must be positive"},
		{args: []string{"--steer-connections=false"}, want: "--steer-connections applies only with --shards"},
		{args: []string{"--steer-rate=5"}, want: "--steer-rate applies only with --shards"},
		{args: append(fullShards(), "--steer-connections=false"), env: podEnv},
		{args: append(fullShards(), "--steer-connections=false", "--steer-rate=5"), env: podEnv, want: "--steer-rate applies only with --steer-connections=true"},
		{args: append(fullShards(), "--steer-rate=0"), env: podEnv, want: "--steer-rate 0: want closes per second"},
		{args: append(fullShards(), "--steer-rate=-2"), env: podEnv, want: "--steer-rate -2: want"},
		{args: append(fullShards(), "--steer-rate=NaN"), env: podEnv, want: "--steer-rate NaN: want"},
		{args: append(fullShards(), "--steer-rate=2.5"), env: podEnv},
	} {
		for k, v := range c.env {
			t.Setenv(k, v)
		}
		fs := flag.NewFlagSet("activator", flag.ContinueOnError)
		r := bindReplicaFlags(fs)
		if err := fs.Parse(c.args); err != nil {
			t.Fatal(err)
		}
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		err := r.check(set)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%v: %v", c.args, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%v: %v, want an error containing %q", c.args, err, c.want)
		}
		for k := range c.env {
			t.Setenv(k, "")
		}
	}
}

var podEnv = map[string]string{"POD_NAMESPACE": "k", "POD_NAME": "p", "POD_IP": "10.0.0.1"}

func fullShards() []string {
	return []string{"--shards=8", "--members-service=a", "--peer-service-account=system:serviceaccount:k:a", "--peer-token-file=/t"}
}

// Connection steering is on by default with --shards, at --steer-rate closes a second
// (as many at once), counted in the registry; off without --shards or when turned off.
func TestSteeringFollowsItsFlags(t *testing.T) {
	for _, c := range []struct {
		args  []string
		on    bool
		rate  float64
		burst int
	}{
		{args: nil},
		{args: fullShards(), on: true, rate: 10, burst: 10},
		{args: append(fullShards(), "--steer-rate=2.5"), on: true, rate: 2.5, burst: 3},
		{args: append(fullShards(), "--steer-connections=false")},
	} {
		fs := flag.NewFlagSet("activator", flag.ContinueOnError)
		r := bindReplicaFlags(fs)
		if err := fs.Parse(c.args); err != nil {
			t.Fatal(err)
		}
		reg := prometheus.NewRegistry()
		s := r.steering(reg)
		if (s != nil) != c.on {
			t.Fatalf("%v: steering %v, want %v", c.args, s != nil, c.on)
		}
		if s == nil {
			continue
		}
		if rate, burst := s.Limit(); rate != c.rate || burst != c.burst {
			t.Errorf("%v: %v closes a second, %d at once; want %v, %d", c.args, rate, burst, c.rate, c.burst)
		}
		if n, err := testutil.GatherAndCount(reg, "klambda_activator_steered_connections_total"); err != nil || n != 1 {
			t.Errorf("%v: the closes' metric: %d, %v", c.args, n, err)
		}
	}
}

// The peer token is read from the projected file (trimmed), and a missing or empty file
// is an error, not an empty credential.
func TestPeerTokenFile(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/token"
	if err := os.WriteFile(path, []byte("peer-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if tok, err := tokenFile(path)(); err != nil || tok != "peer-token" {
		t.Errorf("token %q, %v; want peer-token", tok, err)
	}
	if _, err := tokenFile(dir + "/missing")(); err == nil {
		t.Error("a missing token file gave no error")
	}
	empty := dir + "/empty"
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if tok, err := tokenFile(empty)(); err == nil {
		t.Errorf("an empty token file gave %q and no error", tok)
	}
}
