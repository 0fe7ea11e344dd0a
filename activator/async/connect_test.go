package async

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// testPKI writes a CA, a server certificate for "nats.test" (and 127.0.0.1) and a client
// certificate, each PEM, to dir.
func testPKI(t *testing.T, dir string) (caFile, serverCert, serverKey, clientCert, clientKey string) {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	writeKey := func(name string, k *ecdsa.PrivateKey) string {
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return write(name, "EC PRIVATE KEY", der)
	}
	caKey := newKey()
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	leaf := func(serial int64, name string, usage x509.ExtKeyUsage) ([]byte, *ecdsa.PrivateKey) {
		k := newKey()
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			KeyUsage: x509.KeyUsageDigitalSignature, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, k
	}
	sDER, sKey := leaf(2, "nats.test", x509.ExtKeyUsageServerAuth)
	cDER, cKey := leaf(3, "klambda-activator", x509.ExtKeyUsageClientAuth)
	return write("ca.crt", "CERTIFICATE", caDER), write("server.crt", "CERTIFICATE", sDER), writeKey("server.key", sKey),
		write("client.crt", "CERTIFICATE", cDER), writeKey("client.key", cKey)
}

// An external NATS that wants TLS with client certificates and a user and password: the
// activator connects with the flags' files, and not without them.
func TestExternalNATSWithTLSAndCredentials(t *testing.T) {
	dir := t.TempDir()
	caFile, sCert, sKey, cCert, cKey := testPKI(t, dir)
	pool := x509.NewCertPool()
	caPEM, _ := os.ReadFile(caFile)
	pool.AppendCertsFromPEM(caPEM)
	pair, err := tls.LoadX509KeyPair(sCert, sKey)
	if err != nil {
		t.Fatal(err)
	}
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		TLS: true, TLSVerify: true, TLSTimeout: 5,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12},
		Users:     []*server.User{{Username: "klambda-activator", Password: "s3cret-activator"}, {Username: "tenants", Password: "s3cret-tenants"}}})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	t.Cleanup(ns.Shutdown)
	pw := filepath.Join(dir, "password")
	_ = os.WriteFile(pw, []byte("s3cret-activator\n"), 0o600)
	dpw := filepath.Join(dir, "dst-password")
	_ = os.WriteFile(dpw, []byte("s3cret-tenants"), 0o600)
	url := "tls://127.0.0.1:" + strings.Split(ns.ClientURL(), ":")[2]
	good := ExternalNATS{URL: url, Auth: NATSAuth{User: "klambda-activator", PasswordFile: pw},
		Destinations: NATSAuth{User: "tenants", PasswordFile: dpw},
		TLS:          NATSTLS{CAFile: caFile, CertFile: cCert, KeyFile: cKey, ServerName: "nats.test"}}
	nc, err := good.ConnectQueue(nats.MaxReconnects(0))
	if err != nil {
		t.Fatalf("connecting with the right files: %v", err)
	}
	nc.Close()
	dnc, err := good.ConnectDestinations(nats.MaxReconnects(0))
	if err != nil || dnc == nil {
		t.Fatalf("destinations identity: %v", err)
	}
	dnc.Close()

	for name, change := range map[string]func(*ExternalNATS){
		"no TLS options":    func(o *ExternalNATS) { o.TLS = NATSTLS{} },
		"no client cert":    func(o *ExternalNATS) { o.TLS.CertFile, o.TLS.KeyFile = "", "" },
		"wrong server name": func(o *ExternalNATS) { o.TLS.ServerName = "other.test" },
		"no credentials":    func(o *ExternalNATS) { o.Auth = NATSAuth{} },
		"wrong password":    func(o *ExternalNATS) { o.Auth.PasswordFile = dpw },
		"plain nats:// URL": func(o *ExternalNATS) { o.TLS = NATSTLS{}; o.URL = "nats://" + strings.TrimPrefix(url, "tls://") },
		"CA is not the one": func(o *ExternalNATS) { o.TLS.CAFile = cCert },
	} {
		o := good
		change(&o)
		if nc, err := o.ConnectQueue(nats.MaxReconnects(0), nats.Timeout(2*time.Second)); err == nil {
			nc.Close()
			t.Errorf("%s: connected", name)
		}
	}
}

// Every named file must exist and hold something; the error names it. Combinations that
// make no sense are refused.
func TestExternalNATSValidate(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "present")
	_ = os.WriteFile(f, []byte("x"), 0o600)
	empty := filepath.Join(dir, "empty")
	_ = os.WriteFile(empty, nil, 0o600)
	missing := filepath.Join(dir, "missing.creds")
	for _, c := range []struct {
		name string
		o    ExternalNATS
		want string
	}{
		{"missing creds", ExternalNATS{URL: "nats://x", Auth: NATSAuth{CredsFile: missing}}, missing},
		{"empty nkey seed", ExternalNATS{URL: "nats://x", Auth: NATSAuth{NKeySeedFile: empty}}, empty},
		{"missing password", ExternalNATS{URL: "nats://x", Auth: NATSAuth{User: "u", PasswordFile: missing}}, missing},
		{"user without password", ExternalNATS{URL: "nats://x", Auth: NATSAuth{User: "u"}}, "password file"},
		{"creds and user", ExternalNATS{URL: "nats://x", Auth: NATSAuth{CredsFile: f, User: "u", PasswordFile: f}}, "one of"},
		{"missing CA", ExternalNATS{URL: "nats://x", TLS: NATSTLS{CAFile: missing}}, missing},
		{"cert without key", ExternalNATS{URL: "nats://x", TLS: NATSTLS{CertFile: f}}, "needs its key"},
		{"missing destinations creds", ExternalNATS{URL: "nats://x", Destinations: NATSAuth{CredsFile: missing}}, missing},
		{"destinations as the queue", ExternalNATS{URL: "nats://x", Auth: NATSAuth{User: "u", PasswordFile: f},
			Destinations: NATSAuth{User: "u", PasswordFile: f}}, "the queue's own"},
		{"no URL", ExternalNATS{}, "no NATS URL"},
	} {
		err := c.o.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error naming %q", c.name, err, c.want)
		}
	}
	if err := (ExternalNATS{URL: "nats://x", Auth: NATSAuth{CredsFile: f}, TLS: NATSTLS{CAFile: f}}).Validate(); err != nil {
		t.Errorf("valid options: %v", err)
	}
}
