package async

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/nats-io/nats.go"
)

// NATSAuth is one identity on an external NATS: at most one of a .creds file (JWT and
// nkey seed), an nkey seed file, or a user with a password file.
type NATSAuth struct {
	CredsFile    string
	NKeySeedFile string
	User         string
	PasswordFile string
}

// IsZero reports an identity with nothing set (an anonymous connection).
func (a NATSAuth) IsZero() bool { return a == NATSAuth{} }

// NATSTLS is the TLS of an external NATS connection: a CA bundle to verify the server, a
// client certificate and key, and the name the server's certificate must carry.
type NATSTLS struct {
	CAFile, CertFile, KeyFile string
	ServerName                string
}

// ExternalNATS configures the activator's connections to an external NATS
// (activator.async.natsUrl): the queue's identity, and the separate identity NATS
// destinations without servers are published with.
type ExternalNATS struct {
	URL          string
	Auth         NATSAuth
	Destinations NATSAuth
	TLS          NATSTLS
}

// Validate checks the options without connecting: every named file exists and is
// readable, the combinations make sense. The error names the file or the flag at fault.
func (o ExternalNATS) Validate() error {
	if o.URL == "" {
		return errors.New("no NATS URL")
	}
	if err := o.Auth.validate("queue"); err != nil {
		return err
	}
	if err := o.Destinations.validate("destinations"); err != nil {
		return err
	}
	if !o.Destinations.IsZero() && o.Destinations.sameIdentity(o.Auth) {
		return errors.New("the NATS destinations identity is the queue's own: tenants' destinations must not publish as the queue (give them a user without JetStream API permissions)")
	}
	t := o.TLS
	if (t.CertFile == "") != (t.KeyFile == "") {
		return errors.New("NATS TLS: a client certificate needs its key and a key its certificate")
	}
	for _, f := range []string{t.CAFile, t.CertFile, t.KeyFile} {
		if err := readable(f); err != nil {
			return fmt.Errorf("NATS TLS: %w", err)
		}
	}
	return nil
}

func (a NATSAuth) validate(who string) error {
	n := 0
	for _, set := range []bool{a.CredsFile != "", a.NKeySeedFile != "", a.User != "" || a.PasswordFile != ""} {
		if set {
			n++
		}
	}
	if n > 1 {
		return fmt.Errorf("NATS %s identity: give one of a creds file, an nkey seed file, or a user and password", who)
	}
	if (a.User == "") != (a.PasswordFile == "") {
		return fmt.Errorf("NATS %s identity: a user needs a password file and a password file a user", who)
	}
	for _, f := range []string{a.CredsFile, a.NKeySeedFile, a.PasswordFile} {
		if err := readable(f); err != nil {
			return fmt.Errorf("NATS %s identity: %w", who, err)
		}
	}
	return nil
}

func (a NATSAuth) sameIdentity(b NATSAuth) bool {
	return (a.CredsFile != "" && a.CredsFile == b.CredsFile) || (a.NKeySeedFile != "" && a.NKeySeedFile == b.NKeySeedFile) ||
		(a.User != "" && a.User == b.User)
}

func readable(f string) error {
	if f == "" {
		return nil
	}
	b, err := os.ReadFile(f)
	if err != nil {
		return fmt.Errorf("reading %s: %w", f, err)
	}
	if len(strings.TrimSpace(string(b))) == 0 {
		return fmt.Errorf("%s is empty", f)
	}
	return nil
}

// ConnectQueue connects with the queue's identity.
func (o ExternalNATS) ConnectQueue(extra ...nats.Option) (*nats.Conn, error) {
	return o.connect(o.Auth, "klambda-activator", extra)
}

// ConnectDestinations connects with the destinations identity; nil (and no error) when
// none is configured: NATS destinations without servers are then refused at delivery.
func (o ExternalNATS) ConnectDestinations(extra ...nats.Option) (*nats.Conn, error) {
	if o.Destinations.IsZero() {
		return nil, nil
	}
	return o.connect(o.Destinations, "klambda-destinations", extra)
}

func (o ExternalNATS) connect(a NATSAuth, name string, extra []nats.Option) (*nats.Conn, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	opts := []nats.Option{nats.Name(name), nats.MaxReconnects(-1)}
	switch {
	case a.CredsFile != "":
		opts = append(opts, nats.UserCredentials(a.CredsFile))
	case a.NKeySeedFile != "":
		opt, err := nats.NkeyOptionFromSeed(a.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("NATS nkey seed %s: %w", a.NKeySeedFile, err)
		}
		opts = append(opts, opt)
	case a.User != "":
		pw, err := os.ReadFile(a.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", a.PasswordFile, err)
		}
		opts = append(opts, nats.UserInfo(a.User, strings.TrimRight(string(pw), "\r\n")))
	}
	tc, err := o.TLS.config()
	if err != nil {
		return nil, err
	}
	if tc != nil {
		opts = append(opts, nats.Secure(tc))
	}
	nc, err := nats.Connect(o.URL, append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("connecting to NATS %s as %s: %w", o.URL, name, err)
	}
	return nc, nil
}

// config is nil when no TLS option is set (a tls:// URL then uses the system's roots).
func (t NATSTLS) config() (*tls.Config, error) {
	if t == (NATSTLS{}) {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		b, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("NATS TLS: reading %s: %w", t.CAFile, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("NATS TLS: %s holds no PEM certificate", t.CAFile)
		}
		c.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("NATS TLS: client certificate %s / key %s: %w", t.CertFile, t.KeyFile, err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}
