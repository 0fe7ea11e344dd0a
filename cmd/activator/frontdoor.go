package main

// The activator's front door (issue 15: findings 6, 8 and 13): the Invoke API server's
// timeouts and TLS, what a request may hold, how callers' tokens are reviewed, and the
// metrics endpoint behind authentication and authorization. Kept apart from main.go's
// other flags.

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/time/rate"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	certutil "k8s.io/client-go/util/cert"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"

	"github.com/klambda/klambda/activator/auth"
	"github.com/klambda/klambda/activator/invoke"
	"github.com/klambda/klambda/internal/persource"
)

// A scraper asks every few seconds; more is a flood (each unknown token is a TokenReview).
const (
	metricsRequestsPerSecond = 2
	metricsRequestBurst      = 10
)

type frontDoor struct {
	tlsCert, tlsKey                             string
	selfSignedSecret, selfSignedNames           string
	plainHTTP                                   bool
	readHeaderTimeout, readTimeout, idleTimeout time.Duration
	requestBytes, requestBytesPerNamespace      int64
	maxWaiting                                  int
	audiences                                   string
	reviewRate                                  float64
	reviewBurst                                 int
	metricsAuth                                 bool
	shutdownDelay, shutdownTimeout              time.Duration
}

func bindFrontDoorFlags(fs *flag.FlagSet) *frontDoor {
	f := &frontDoor{}
	fs.StringVar(&f.tlsCert, "tls-cert-file", "", "Serve the Invoke API over TLS with this certificate (PEM; reloaded when the file changes). Callers' tokens travel in every request: without TLS, --plain-http must be given.")
	fs.StringVar(&f.tlsKey, "tls-key-file", "", "Private key of --tls-cert-file.")
	fs.StringVar(&f.selfSignedSecret, "tls-self-signed-secret", "", "Serve the Invoke API over TLS with a self-signed certificate kept in this kubernetes.io/tls Secret of $POD_NAMESPACE (tls.crt, tls.key, ca.crt): created when missing, replaced 30 days before it ends or when not valid for --tls-self-signed-names; clients trust its ca.crt. Instead of --tls-cert-file.")
	fs.StringVar(&f.selfSignedNames, "tls-self-signed-names", "", "Comma-separated DNS names and IP addresses of --tls-self-signed-secret's certificate (the activator Service's names).")
	fs.BoolVar(&f.plainHTTP, "plain-http", false, "Serve the Invoke API over plain HTTP although authorization is on (callers' tokens then cross the network in clear). Needed, explicitly, when no --tls-cert-file is given.")
	fs.DurationVar(&f.readHeaderTimeout, "http-read-header-timeout", 10*time.Second, "How long a client may take to send a request's headers.")
	fs.DurationVar(&f.readTimeout, "http-read-timeout", time.Minute, "How long a client may take to send a whole request, body included (a 6 MB payload). It does not bound the response: a synchronous invocation may run its function's whole timeout (up to 15 minutes).")
	fs.DurationVar(&f.idleTimeout, "http-idle-timeout", 2*time.Minute, "How long an idle keep-alive connection is kept.")
	fs.Int64Var(&f.requestBytes, "request-bytes", invoke.DefaultRequestBytes, "Request body bytes the activator holds at once over all requests (a body of unknown length counts 6 MB); past it requests are answered TooManyRequestsException (429) without their body being read.")
	fs.Int64Var(&f.requestBytesPerNamespace, "request-bytes-per-namespace", invoke.DefaultRequestBytesPerNamespace, "Request body bytes one namespace's requests may hold at once (0: --request-bytes).")
	fs.IntVar(&f.maxWaiting, "max-waiting-requests", invoke.DefaultMaxWaiting, "Requests that may wait for an execution environment at once over all functions; past it: TooManyRequestsException. 0: no bound.")
	fs.StringVar(&f.audiences, "token-audiences", auth.DefaultAudience, "Comma-separated audiences a caller's token must carry one of (kubectl create token --audience klambda; a projected ServiceAccount token with that audience). Tokens for the API server are refused.")
	fs.Float64Var(&f.reviewRate, "auth-review-rate", auth.DefaultReviewRate, "TokenReviews and SubjectAccessReviews (decision cache misses) one client IP may cause per second; past it and --auth-review-burst: TooManyRequestsException (CallerRateLimitExceeded). 0: no limit.")
	fs.IntVar(&f.reviewBurst, "auth-review-burst", auth.DefaultReviewBurst, "Burst of --auth-review-rate.")
	fs.BoolVar(&f.metricsAuth, "metrics-auth", true, "Serve the metrics endpoint over HTTPS to callers whose token the API server accepts and who may get the non-resource URL /metrics (TokenReview, SubjectAccessReview), as controller-runtime's secure metrics; false: plain HTTP to anyone.")
	fs.DurationVar(&f.shutdownDelay, "shutdown-delay", 5*time.Second, "On SIGTERM, how long the activator goes on accepting requests (answering Connection: close) after its readiness turned false, while the Service's endpoints and kube-proxy stop sending here.")
	fs.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 15*time.Minute+15*time.Second, "On SIGTERM, after --shutdown-delay, how long the activator waits for invocations in flight (up to the longest function timeout) before it exits; keep --shutdown-delay + --shutdown-timeout below the pod's terminationGracePeriodSeconds.")
	return f
}

// checker builds the callers' authorization from the flags.
func (f *frontDoor) checker(cs kubernetes.Interface) (*auth.Checker, error) {
	var auds []string
	for _, a := range strings.Split(f.audiences, ",") {
		if a = strings.TrimSpace(a); a != "" {
			auds = append(auds, a)
		}
	}
	if len(auds) == 0 {
		return nil, errors.New("--token-audiences is empty: callers' tokens must be made for the activator (e.g. klambda)")
	}
	if f.reviewRate < 0 || f.reviewBurst < 1 {
		return nil, errors.New("--auth-review-rate must be >= 0 and --auth-review-burst >= 1")
	}
	k := &auth.Kube{Client: cs, Audiences: auds}
	c := auth.NewChecker(k, k)
	c.ReviewRate, c.ReviewBurst = rate.Limit(f.reviewRate), f.reviewBurst
	return c, nil
}

func (f *frontDoor) admission() (*invoke.Admission, error) {
	return invoke.NewAdmission(f.requestBytes, f.requestBytesPerNamespace, f.maxWaiting)
}

// invokeServer is the Invoke API's listener, over TLS when tc is set. The read timeout
// bounds reading a request (headers and body); there is no write timeout, since a
// synchronous invocation answers when its function ends (up to 15 minutes). Both servers
// stop the read deadline once the body is read, so a long invocation is not cut by it.
func (f *frontDoor) invokeServer(addr string, h http.Handler, tc *tls.Config) *listener {
	return newListener(addr, h, tc, httpTimeouts{readHeader: f.readHeaderTimeout, read: f.readTimeout, idle: f.idleTimeout})
}

// tlsConfig loads --tls-cert-file and watches it for changes (cert-manager renewals); nil
// when plain HTTP was chosen. authOn: tokens travel, so plain HTTP must be explicit.
func (f *frontDoor) tlsConfig(ctx context.Context, authOn bool, cs kubernetes.Interface, namespace string, log logr.Logger) (*tls.Config, error) {
	if (f.tlsCert == "") != (f.tlsKey == "") {
		return nil, errors.New("--tls-cert-file and --tls-key-file go together")
	}
	if (f.selfSignedSecret == "") != (f.selfSignedNames == "") {
		return nil, errors.New("--tls-self-signed-secret and --tls-self-signed-names go together")
	}
	if f.selfSignedSecret != "" {
		if f.tlsCert != "" || f.plainHTTP {
			return nil, errors.New("--tls-self-signed-secret contradicts --tls-cert-file and --plain-http")
		}
		if namespace == "" {
			return nil, errors.New("--tls-self-signed-secret needs $POD_NAMESPACE (the Secret's namespace)")
		}
		s := &selfSignedSecret{client: cs, namespace: namespace, name: f.selfSignedSecret, names: splitNames(f.selfSignedNames), now: time.Now}
		return s.tlsConfig(ctx, log)
	}
	if f.tlsCert == "" {
		if authOn && !f.plainHTTP {
			return nil, errors.New("callers' tokens would cross the network in clear: give --tls-cert-file and --tls-key-file (or --tls-self-signed-secret), or --plain-http to accept that")
		}
		return nil, nil
	}
	if f.plainHTTP {
		return nil, errors.New("--plain-http and --tls-cert-file contradict each other")
	}
	w, err := certwatcher.New(f.tlsCert, f.tlsKey)
	if err != nil {
		return nil, fmt.Errorf("loading the TLS certificate: %w", err)
	}
	go func() {
		if err := w.Start(ctx); err != nil {
			log.Error(err, "watching the TLS certificate stopped")
		}
	}()
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: w.GetCertificate}, nil
}

// serve serves srv (the metrics endpoint) on its address, over TLS when tc is set.
func serve(srv *http.Server, tc *tls.Config) error {
	ln, err := net.Listen("tcp", srv.Addr)
	if err != nil {
		return err
	}
	return serveOn(ln, srv, tc)
}

func serveOn(ln net.Listener, srv *http.Server, tc *tls.Config) error {
	if tc != nil {
		srv.TLSConfig = tc
		return srv.ServeTLS(ln, "", "")
	}
	return srv.Serve(ln)
}

// metricsServer serves reg's metrics. With --metrics-auth: over HTTPS (the Invoke API's
// certificate, else a self-signed one, as controller-runtime's secure metrics), to
// callers allowed get on the non-resource URL /metrics.
func (f *frontDoor) metricsServer(addr string, reg *prometheus.Registry, cfg *rest.Config, invokeTLS *tls.Config, log logr.Logger) (*http.Server, *tls.Config, error) {
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	srv := &http.Server{Addr: addr, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
	if !f.metricsAuth {
		srv.Handler = h
		return srv, nil, nil
	}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, nil, err
	}
	filter, err := filters.WithAuthenticationAndAuthorization(cfg, hc)
	if err != nil {
		return nil, nil, err
	}
	if h, err = filter(log, h); err != nil {
		return nil, nil, err
	}
	// Every request with an unknown token costs a TokenReview: bound them per client.
	srv.Handler = persource.Limit(metricsRequestsPerSecond, metricsRequestBurst, h)
	tc := invokeTLS
	if tc == nil {
		tc, err = selfSigned()
		if err != nil {
			return nil, nil, err
		}
	}
	return srv, tc, nil
}

func selfSigned() (*tls.Config, error) {
	certPEM, keyPEM, err := certutil.GenerateSelfSignedCertKey("klambda-activator-metrics", nil, nil)
	if err != nil {
		return nil, err
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{c}}, nil
}
