// Package access resolves a mapping's sourceAccessConfigurations — Secrets in place of
// Lambda's Secrets Manager ARNs — into credentials and TLS settings the source clients use.
package access

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// UserPassword is a username and password (BASIC_AUTH, SASL/SCRAM).
type UserPassword struct {
	Username, Password string
}

// Access is everything sourceAccessConfigurations can carry.
type Access struct {
	BasicAuth *UserPassword // Kafka SASL/PLAIN, RabbitMQ, NATS
	SCRAM256  *UserPassword // Kafka
	SCRAM512  *UserPassword // Kafka
	// ClientCert and ClientKey (PEM) authenticate with mutual TLS.
	ClientCert, ClientKey []byte
	// RootCA (PEM) verifies the broker.
	RootCA []byte
	// VirtualHost of RabbitMQ.
	VirtualHost string
}

// WantsTLS reports whether any TLS material was given.
func (a Access) WantsTLS() bool { return len(a.RootCA) > 0 || len(a.ClientCert) > 0 }

// TLSConfig builds the client TLS configuration, or nil when no TLS material was given.
func (a Access) TLSConfig() (*tls.Config, error) {
	if !a.WantsTLS() {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if len(a.RootCA) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(a.RootCA) {
			return nil, errors.New("SERVER_ROOT_CA_CERTIFICATE: ca.crt holds no PEM certificate")
		}
		cfg.RootCAs = pool
	}
	if len(a.ClientCert) > 0 {
		cert, err := tls.X509KeyPair(a.ClientCert, a.ClientKey)
		if err != nil {
			return nil, fmt.Errorf("CLIENT_CERTIFICATE_TLS_AUTH: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// SecretMissingError is a Secret (or key) that isn't there: Lambda's ESM_CONFIG_NOT_VALID.
type SecretMissingError struct{ Err error }

func (e *SecretMissingError) Error() string { return e.Err.Error() }
func (e *SecretMissingError) Unwrap() error { return e.Err }

// Resolve reads the Secrets of configs from namespace ns.
func Resolve(ctx context.Context, c client.Reader, ns string, configs []lambdav1alpha1.SourceAccessConfiguration) (Access, error) {
	var a Access
	for _, sc := range configs {
		if sc.Type == lambdav1alpha1.SourceAccessVirtualHost {
			a.VirtualHost = sc.URI
			continue
		}
		if sc.SecretRef == nil {
			return a, &SecretMissingError{fmt.Errorf("%s: secretRef is required", sc.Type)}
		}
		var s corev1.Secret
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: sc.SecretRef.Name}, &s); err != nil {
			return a, &SecretMissingError{fmt.Errorf("%s: reading Secret %s: %w", sc.Type, sc.SecretRef.Name, err)}
		}
		need := func(keys ...string) error {
			for _, k := range keys {
				if _, ok := s.Data[k]; !ok {
					return &SecretMissingError{fmt.Errorf("%s: Secret %s has no key %q", sc.Type, sc.SecretRef.Name, k)}
				}
			}
			return nil
		}
		up := func() (*UserPassword, error) {
			if err := need("username", "password"); err != nil {
				return nil, err
			}
			return &UserPassword{Username: string(s.Data["username"]), Password: string(s.Data["password"])}, nil
		}
		var err error
		switch sc.Type {
		case lambdav1alpha1.SourceAccessBasicAuth:
			a.BasicAuth, err = up()
		case lambdav1alpha1.SourceAccessSASLSCRAM256Auth:
			a.SCRAM256, err = up()
		case lambdav1alpha1.SourceAccessSASLSCRAM512Auth:
			a.SCRAM512, err = up()
		case lambdav1alpha1.SourceAccessClientCertificateTLSAuth:
			if err = need("tls.crt", "tls.key"); err == nil {
				a.ClientCert, a.ClientKey = s.Data["tls.crt"], s.Data["tls.key"]
			}
		case lambdav1alpha1.SourceAccessServerRootCACertificate:
			if err = need("ca.crt"); err == nil {
				a.RootCA = s.Data["ca.crt"]
			}
		}
		if err != nil {
			return a, err
		}
	}
	return a, nil
}

// AWSCredentials reads an SQS credentials Secret (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
// optional AWS_SESSION_TOKEN); a nil ref gives empty credentials (anonymous endpoints).
func AWSCredentials(ctx context.Context, c client.Reader, ns string, ref *lambdav1alpha1.SecretReference) (id, secret, token string, err error) {
	if ref == nil {
		return "", "", "", nil
	}
	var s corev1.Secret
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: ref.Name}, &s); err != nil {
		return "", "", "", &SecretMissingError{fmt.Errorf("reading Secret %s: %w", ref.Name, err)}
	}
	return string(s.Data["AWS_ACCESS_KEY_ID"]), string(s.Data["AWS_SECRET_ACCESS_KEY"]), string(s.Data["AWS_SESSION_TOKEN"]), nil
}
