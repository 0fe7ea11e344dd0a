package main

import (
	"flag"
	"os"
	"strings"
	"testing"
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
