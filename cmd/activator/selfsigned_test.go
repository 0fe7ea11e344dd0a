package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// The first call creates the Secret; a second (a restart, another replica) reuses it; a
// client trusting only its ca.crt reaches a server using it by each name.
func TestSelfSignedSecretCreatedReusedTrusted(t *testing.T) {
	ctx := context.Background()
	cs := fake.NewClientset()
	s := &selfSignedSecret{client: cs, namespace: "ks", name: "act-tls",
		names: []string{"klambda-activator.ks.svc", "localhost", "127.0.0.1"}, now: time.Now}
	c1, err := s.ensure(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sec, err := cs.CoreV1().Secrets("ks").Get(ctx, "act-tls", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sec.Type != corev1.SecretTypeTLS || len(sec.Data["ca.crt"]) == 0 {
		t.Fatalf("secret type %q, ca.crt %d bytes", sec.Type, len(sec.Data["ca.crt"]))
	}
	c2, err := s.ensure(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if string(c1.Certificate[0]) != string(c2.Certificate[0]) {
		t.Fatal("second ensure replaced a valid certificate")
	}

	tc, err := s.tlsConfig(ctx, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }))
	srv.TLS = tc
	srv.StartTLS()
	defer srv.Close()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(sec.Data["ca.crt"]) {
		t.Fatal("ca.crt is not PEM")
	}
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	for _, name := range []string{"localhost", "klambda-activator.ks.svc"} {
		cl := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: name}}}
		resp, err := cl.Get("https://127.0.0.1:" + port)
		if err != nil {
			t.Fatalf("as %s: %v", name, err)
		}
		_ = resp.Body.Close()
	}
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "other.example"}}}
	if _, err := cl.Get("https://127.0.0.1:" + port); err == nil {
		t.Fatal("a name outside the certificate was accepted")
	}
}

// A certificate within 30 days of its end, or missing a name, is replaced.
func TestSelfSignedSecretReplaced(t *testing.T) {
	ctx := context.Background()
	cs := fake.NewClientset()
	s := &selfSignedSecret{client: cs, namespace: "ks", name: "t", names: []string{"a.ks.svc"}, now: time.Now}
	c1, err := s.ensure(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s.now = func() time.Time { return time.Now().Add(340 * 24 * time.Hour) }
	c2, err := s.ensure(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if string(c1.Certificate[0]) == string(c2.Certificate[0]) {
		t.Fatal("a certificate 25 days from its end was kept")
	}
	s.now = time.Now
	s.names = []string{"a.ks.svc", "b.ks.svc"}
	c3, err := s.ensure(ctx)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(c3.Certificate[0])
	if leaf.VerifyHostname("b.ks.svc") != nil {
		t.Fatal("the certificate was not replaced for a new name")
	}
}

// Contradicting TLS flags are refused.
func TestSelfSignedFlags(t *testing.T) {
	for _, fd := range []frontDoor{
		{selfSignedSecret: "x"},
		{selfSignedSecret: "x", selfSignedNames: "a", plainHTTP: true},
		{selfSignedSecret: "x", selfSignedNames: "a", tlsCert: "c", tlsKey: "k"},
	} {
		if _, err := fd.tlsConfig(context.Background(), true, fake.NewClientset(), "ns", logr.Discard()); err == nil {
			t.Errorf("%+v: want an error", fd)
		}
	}
	fd := frontDoor{selfSignedSecret: "x", selfSignedNames: "a"}
	if _, err := fd.tlsConfig(context.Background(), true, fake.NewClientset(), "", logr.Discard()); err == nil {
		t.Error("no namespace: want an error")
	}
}
