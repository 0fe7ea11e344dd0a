// Package chart tests what charts/klambda renders (helm template): the activator's TLS,
// token audience and request bounds, the pollers' projected token, metrics authorization.
// `make chart-check` runs it with HELM set; without a helm binary it is skipped.
package chart

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"
)

func helmBin(t *testing.T) string {
	t.Helper()
	if h := os.Getenv("HELM"); h != "" {
		return h
	}
	home, _ := os.UserHomeDir()
	if h := filepath.Join(home, ".cache/klambda/bin/helm-v3.22.0"); fileExists(h) {
		return h
	}
	if h, err := exec.LookPath("helm"); err == nil {
		return h
	}
	t.Skip("no helm binary (set HELM, or `make chart-check`)")
	return ""
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func chartDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "charts", "klambda")
}

// render runs helm template with the --set values; err holds helm's message.
func render(t *testing.T, sets ...string) (string, error) {
	t.Helper()
	args := []string{"template", "klambda", chartDir(), "--kube-version", "1.37.2", "--namespace", "klambda-system",
		"--set", "activator.enabled=true", "--set", "eventsources.enabled=true", "--set", "metrics.serviceMonitor.enabled=true"}
	for _, s := range sets {
		args = append(args, "--set", s)
	}
	out, err := exec.Command(helmBin(t), args...).CombinedOutput()
	if err != nil {
		return "", &helmError{string(out)}
	}
	return string(out), nil
}

type helmError struct{ out string }

func (e *helmError) Error() string { return e.out }

func mustRender(t *testing.T, sets ...string) string {
	t.Helper()
	out, err := render(t, sets...)
	if err != nil {
		t.Fatalf("helm template %v: %v", sets, err)
	}
	return out
}

// deployment finds the Deployment named name in a rendering.
func deployment(t *testing.T, out, name string) *appsv1.Deployment {
	t.Helper()
	for _, doc := range strings.Split(out, "\n---") {
		if !strings.Contains(doc, "kind: Deployment") {
			continue
		}
		var d appsv1.Deployment
		if err := yaml.Unmarshal([]byte(doc), &d); err != nil {
			t.Fatal(err)
		}
		if d.Name == name {
			return &d
		}
	}
	t.Fatalf("no Deployment %s", name)
	return nil
}

func hasArg(d *appsv1.Deployment, arg string) bool {
	for _, a := range d.Spec.Template.Spec.Containers[0].Args {
		if a == arg {
			return true
		}
	}
	return false
}

// Without a certificate or plainHTTP the activator makes a self-signed one in a Secret it
// alone may change, and the pollers trust that Secret's ca.crt.
func TestChartActivatorTLSSelfSignedByDefault(t *testing.T) {
	out := mustRender(t)
	a := deployment(t, out, "klambda-activator")
	if !hasArg(a, "--tls-self-signed-secret=klambda-activator-tls") || hasArg(a, "--plain-http") || hasArg(a, "--tls-cert-file=/etc/klambda/tls/tls.crt") ||
		!hasArg(a, "--tls-self-signed-names=klambda-activator.klambda-system.svc,klambda-activator,klambda-activator.klambda-system,klambda-activator.klambda-system.svc.cluster.local,localhost,127.0.0.1") {
		t.Fatalf("self-signed: args %v", a.Spec.Template.Spec.Containers[0].Args)
	}
	if !strings.Contains(out, "name: klambda-activator-tls\n  namespace: klambda-system") || !strings.Contains(out, "resourceNames: [klambda-activator-tls]") {
		t.Fatal("no Role letting the activator write its certificate's Secret")
	}
	e := deployment(t, out, "klambda-eventsources")
	if !hasArg(e, "--activator-url=https://klambda-activator.klambda-system.svc:8080") || !hasArg(e, "--activator-ca-file=/etc/klambda/activator-ca/ca.crt") {
		t.Fatalf("pollers with the self-signed certificate: %v", e.Spec.Template.Spec.Containers[0].Args)
	}
	if !strings.Contains(out, "secretName: klambda-activator-tls") {
		t.Fatal("the pollers do not mount the self-signed certificate's Secret")
	}
	if out := mustRender(t, "activator.tls.plainHTTP=true"); strings.Contains(out, "tls-self-signed") || strings.Contains(out, "klambda-activator-tls") {
		t.Fatal("plainHTTP still renders the self-signed certificate")
	}
	if _, err := render(t, "activator.tls.secretName=x", "activator.tls.plainHTTP=true"); err == nil {
		t.Fatal("secretName and plainHTTP together: want a refusal")
	}
	if _, err := render(t, "activator.tls.plainHTTP=true", "activator.auth.audiences=null"); err == nil {
		t.Fatal("no audience: want a refusal")
	}
	out = mustRender(t, "activator.tls.plainHTTP=true")
	a = deployment(t, out, "klambda-activator")
	if !hasArg(a, "--plain-http") || hasArg(a, "--tls-cert-file=/etc/klambda/tls/tls.crt") || strings.Contains(out, "kind: Certificate") {
		t.Fatalf("plainHTTP: args %v", a.Spec.Template.Spec.Containers[0].Args)
	}
	if e := deployment(t, out, "klambda-eventsources"); !hasArg(e, "--activator-url=http://klambda-activator.klambda-system.svc:8080") {
		t.Fatalf("pollers' URL with plain HTTP: %v", e.Spec.Template.Spec.Containers[0].Args)
	}
}

func TestChartCertManagerCertificate(t *testing.T) {
	out := mustRender(t, "activator.tls.certManager.issuer=klambda-ca", "activator.tls.certManager.issuerKind=ClusterIssuer",
		"activator.tls.certManager.dnsNames={lambda.example.com}")
	for _, want := range []string{
		"kind: Certificate", "secretName: klambda-activator-tls", "name: klambda-ca", "kind: ClusterIssuer",
		"- klambda-activator.klambda-system.svc\n", "- lambda.example.com",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the Certificate lacks %q", want)
		}
	}
	a := deployment(t, out, "klambda-activator")
	c := a.Spec.Template.Spec.Containers[0]
	if !hasArg(a, "--tls-cert-file=/etc/klambda/tls/tls.crt") || !hasArg(a, "--tls-key-file=/etc/klambda/tls/tls.key") || hasArg(a, "--plain-http") {
		t.Fatalf("activator args: %v", c.Args)
	}
	if !hasArg(a, "--token-audiences=klambda") || !hasArg(a, "--request-bytes=134217728") || !hasArg(a, "--http-read-timeout=60s") || !hasArg(a, "--metrics-auth=true") {
		t.Fatalf("activator args: %v", c.Args)
	}
	if c.ReadinessProbe.HTTPGet.Scheme != "HTTPS" {
		t.Fatalf("readiness probe scheme %q with TLS", c.ReadinessProbe.HTTPGet.Scheme)
	}
	found := false
	for _, v := range a.Spec.Template.Spec.Volumes {
		if v.Secret != nil && v.Secret.SecretName == "klambda-activator-tls" {
			found = true
		}
	}
	if !found {
		t.Fatal("the activator does not mount the certificate's Secret")
	}

	e := deployment(t, out, "klambda-eventsources")
	if !hasArg(e, "--activator-url=https://klambda-activator.klambda-system.svc:8080") || !hasArg(e, "--activator-ca-file=/etc/klambda/activator-ca/ca.crt") ||
		!hasArg(e, "--token-file=/var/run/secrets/klambda/token") || !hasArg(e, "--metrics-secure=true") {
		t.Fatalf("pollers' args: %v", e.Spec.Template.Spec.Containers[0].Args)
	}
	var aud string
	for _, v := range e.Spec.Template.Spec.Volumes {
		if v.Projected != nil {
			for _, s := range v.Projected.Sources {
				if s.ServiceAccountToken != nil {
					aud = s.ServiceAccountToken.Audience
				}
			}
		}
	}
	if aud != "klambda" {
		t.Fatalf("the pollers' projected token audience is %q, want klambda", aud)
	}
}

func TestChartSecureMetrics(t *testing.T) {
	out := mustRender(t, "activator.tls.plainHTTP=true")
	for _, want := range []string{"scheme: https", "bearerTokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token",
		"insecureSkipVerify: true", "name: klambda-metrics-reader", "nonResourceURLs: [/metrics]"} {
		if !strings.Contains(out, want) {
			t.Errorf("secure metrics: the rendering lacks %q", want)
		}
	}
	if m := deployment(t, out, "klambda-manager"); !hasArg(m, "--metrics-secure=true") {
		t.Errorf("manager args %v", m.Spec.Template.Spec.Containers[0].Args)
	}
	out = mustRender(t, "activator.tls.plainHTTP=true", "metrics.secure=false")
	if strings.Contains(out, "scheme: https") || strings.Contains(out, "metrics-reader") {
		t.Error("metrics.secure=false still renders HTTPS scraping or the reader role")
	}
	if a := deployment(t, out, "klambda-activator"); !hasArg(a, "--metrics-auth=false") {
		t.Errorf("activator args %v", a.Spec.Template.Spec.Containers[0].Args)
	}
	if e := deployment(t, out, "klambda-eventsources"); !hasArg(e, "--metrics-secure=false") {
		t.Errorf("pollers' args %v", e.Spec.Template.Spec.Containers[0].Args)
	}
}
