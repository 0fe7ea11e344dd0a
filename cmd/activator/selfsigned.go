package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	certutil "k8s.io/client-go/util/cert"
)

// renewBefore: a self-signed certificate this close to its end is replaced (certutil's
// certificates are valid one year).
const renewBefore = 30 * 24 * time.Hour

// selfSignedSecret keeps the Invoke API's self-signed certificate in a kubernetes.io/tls
// Secret (tls.crt, tls.key, ca.crt): the first activator to start creates it, the others
// and every restart reuse it, so that the pollers (and users: NOTES.txt) can trust its
// ca.crt. A certificate within renewBefore of its end, or not valid for names, is replaced.
type selfSignedSecret struct {
	client    kubernetes.Interface
	namespace string
	name      string
	names     []string // DNS names and IP addresses the certificate must be valid for
	now       func() time.Time
}

// ensure returns the Secret's certificate, creating or replacing it when needed.
func (s *selfSignedSecret) ensure(ctx context.Context) (*tls.Certificate, error) {
	secrets := s.client.CoreV1().Secrets(s.namespace)
	for attempt := 0; attempt < 5; attempt++ {
		sec, err := secrets.Get(ctx, s.name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			sec = nil
		case err != nil:
			return nil, fmt.Errorf("reading Secret %s/%s: %w", s.namespace, s.name, err)
		}
		if sec != nil {
			if c, ok := s.usable(sec); ok {
				return c, nil
			}
		}
		data, err := s.generate()
		if err != nil {
			return nil, err
		}
		if sec == nil {
			sec = &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: s.name, Namespace: s.namespace, Labels: map[string]string{
					"app.kubernetes.io/name": "klambda", "app.kubernetes.io/component": "activator",
					"app.kubernetes.io/managed-by": "klambda-activator"}},
				Type: corev1.SecretTypeTLS, Data: data,
			}
			_, err = secrets.Create(ctx, sec, metav1.CreateOptions{})
		} else {
			sec.Data = data
			_, err = secrets.Update(ctx, sec, metav1.UpdateOptions{})
		}
		if apierrors.IsAlreadyExists(err) || apierrors.IsConflict(err) {
			continue // another replica wrote it first: use theirs
		}
		if err != nil {
			return nil, fmt.Errorf("writing Secret %s/%s: %w", s.namespace, s.name, err)
		}
		c, err := tls.X509KeyPair(data[corev1.TLSCertKey], data[corev1.TLSPrivateKeyKey])
		return &c, err
	}
	return nil, fmt.Errorf("Secret %s/%s keeps changing under the activator", s.namespace, s.name)
}

// usable: the Secret holds a key pair valid for every name for more than renewBefore.
func (s *selfSignedSecret) usable(sec *corev1.Secret) (*tls.Certificate, bool) {
	c, err := tls.X509KeyPair(sec.Data[corev1.TLSCertKey], sec.Data[corev1.TLSPrivateKeyKey])
	if err != nil || len(sec.Data["ca.crt"]) == 0 {
		return nil, false
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil || s.now().Add(renewBefore).After(leaf.NotAfter) {
		return nil, false
	}
	for _, n := range s.names {
		if leaf.VerifyHostname(n) != nil {
			return nil, false
		}
	}
	return &c, true
}

// generate makes a CA and a certificate it signs for s.names (certutil: one year).
func (s *selfSignedSecret) generate() (map[string][]byte, error) {
	if len(s.names) == 0 {
		return nil, errors.New("--tls-self-signed-names is empty")
	}
	var ips []net.IP
	var dns []string
	for _, n := range s.names {
		if ip := net.ParseIP(n); ip != nil {
			ips = append(ips, ip)
		} else {
			dns = append(dns, n)
		}
	}
	host := s.names[0]
	certPEM, keyPEM, err := certutil.GenerateSelfSignedCertKey(host, ips, dns)
	if err != nil {
		return nil, fmt.Errorf("generating the self-signed certificate: %w", err)
	}
	// certutil returns the certificate followed by the CA that signed it.
	leaf, rest := pem.Decode(certPEM)
	ca, _ := pem.Decode(rest)
	if leaf == nil || ca == nil {
		return nil, errors.New("generating the self-signed certificate: no CA in certutil's output")
	}
	return map[string][]byte{
		corev1.TLSCertKey:       certPEM,
		corev1.TLSPrivateKeyKey: keyPEM,
		"ca.crt":                pem.EncodeToMemory(ca),
	}, nil
}

// selfSignedTLS serves the certificate of the Secret, checking it every hour (renewal,
// another replica's replacement).
func (s *selfSignedSecret) tlsConfig(ctx context.Context, log logr.Logger) (*tls.Config, error) {
	c, err := s.ensure(ctx)
	if err != nil {
		return nil, err
	}
	var cur atomic.Pointer[tls.Certificate]
	cur.Store(c)
	go func() {
		t := time.NewTicker(time.Hour)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if c, err := s.ensure(ctx); err != nil {
				log.Error(err, "checking the self-signed certificate")
			} else {
				cur.Store(c)
			}
		}
	}()
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		return cur.Load(), nil
	}}, nil
}

func splitNames(s string) []string {
	var out []string
	for _, n := range strings.Split(s, ",") {
		if n = strings.TrimSpace(n); n != "" {
			out = append(out, n)
		}
	}
	return out
}
