package main

import (
	"context"
	"encoding/pem"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klambda/klambda/api/contract"
	"github.com/klambda/klambda/eventsources/invokeclient"
)

// Issue 15, finding 8: the pollers reach an activator that serves TLS, trusting the CA
// given by --activator-ca-file, and present the projected token (audience klambda) from
// --token-file, re-read when the kubelet rotates it.
func TestPollersInvokeOverTLSWithProjectedToken(t *testing.T) {
	var gotAuth []string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth = append(gotAuth, r.Header.Get("Authorization"))
		if !strings.HasSuffix(r.URL.Path, "/functions/f/invocations") {
			http.NotFound(w, r)
			return
		}
		w.Header().Set(contract.HeaderExecutedVersion, contract.Latest)
		_, _ = w.Write([]byte(`"ok"`))
	}))
	defer srv.Close()
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	tokenPath := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenPath, []byte("projected-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tc, err := activatorTLSConfig(ca, "example.com") // httptest's certificate names example.com
	if err != nil {
		t.Fatal(err)
	}
	tokens := invokeclient.NewFileToken(tokenPath)
	inv := invokeclient.NewConnInvoker(srv.URL, tokens, tc) // the invoker main builds
	ctx := context.Background()
	resp, err := inv.Invoke(ctx, invokeclient.Request{Namespace: "team-a", FunctionName: "f", Payload: []byte(`{}`)})
	if err != nil || string(resp.Payload) != `"ok"` {
		t.Fatalf("invoke over TLS: %+v %v", resp, err)
	}
	// Rotation: the kubelet replaces the file.
	if err := os.WriteFile(tokenPath+".new", []byte("projected-2-longer\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tokenPath+".new", tokenPath); err != nil {
		t.Fatal(err)
	}
	if _, err := inv.Invoke(ctx, invokeclient.Request{Namespace: "team-a", FunctionName: "f", Payload: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	if len(gotAuth) != 2 || gotAuth[0] != "Bearer projected-1" || gotAuth[1] != "Bearer projected-2-longer" {
		t.Fatalf("Authorization sent: %q", gotAuth)
	}

	// Without the CA the activator's certificate is not trusted.
	plain := &invokeclient.LambdaInvoker{ActivatorURL: srv.URL, Tokens: tokens}
	if _, err := plain.Invoke(ctx, invokeclient.Request{Namespace: "team-a", FunctionName: "f", Payload: []byte(`{}`)}); err == nil {
		t.Fatal("an untrusted certificate was accepted")
	}
	if _, err := activatorTLSConfig(tokenPath, ""); err == nil {
		t.Fatal("a CA file without a certificate was accepted")
	}
	if DefaultTokenFile == "/var/run/secrets/kubernetes.io/serviceaccount/token" {
		t.Fatal("the default token is the pod's API token")
	}
}

// --sqs-max-concurrency reaches the options, defaults to 100 and is refused outside
// scalingConfig.maximumConcurrency's range, 2-1000.
func TestSQSMaxConcurrencyFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want int
		err  string
	}{
		{nil, 100, ""},
		{[]string{"--sqs-max-concurrency=1000"}, 1000, ""},
		{[]string{"--sqs-max-concurrency=2"}, 2, ""},
		{[]string{"--sqs-max-concurrency=1"}, 0, "--sqs-max-concurrency=1: must be between 2 and 1000"},
		{[]string{"--sqs-max-concurrency=1001"}, 0, "--sqs-max-concurrency=1001: must be between 2 and 1000"},
		{[]string{"--sqs-max-concurrency=many"}, 0, "invalid value"},
	} {
		fs := flag.NewFlagSet("eventsources", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		o, err := parseFlags(fs, tc.args)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%v: error %v, want %q", tc.args, err, tc.err)
			}
			continue
		}
		if err != nil || o.sqsMaxConcurrency != tc.want {
			t.Errorf("%v: %+v, %v; want sqsMaxConcurrency %d", tc.args, o, err, tc.want)
		}
	}
}
