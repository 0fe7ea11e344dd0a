//go:build e2e

package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/internal/sdkbody"
)

// The activator authorizes every invocation (the chart's default, kept on the local
// cluster): the caller's Kubernetes token must be allowed verb invoke on
// functions.lambda.klambda.dev in the function's namespace. Tests that invoke through the
// activator get such a token from InvokerToken and a client from LambdaClient.

// Invoker is the ServiceAccount InvokerToken makes in a test's namespace.
const Invoker = "e2e-invoker"

// InvokerToken makes (once per namespace) ServiceAccount Invoker with a Role that may
// invoke the namespace's functions, and returns a fresh token of it (TokenRequest, one hour).
func (c *Cluster) InvokerToken(ctx context.Context, t testing.TB, ns string) string {
	t.Helper()
	return c.ServiceAccountToken(ctx, t, ns, Invoker, true)
}

// TokenAudience is the audience the activator wants in callers' tokens (the chart's
// activator.auth.audiences): kubectl create token --audience klambda.
const TokenAudience = "klambda"

// ServiceAccountToken returns a token of ServiceAccount ns/name for the activator
// (audience TokenAudience), creating the ServiceAccount when missing;
// with mayInvoke it is also bound to a Role allowing verb invoke on functions. A token
// without that binding authenticates but is not allowed (AccessDeniedException).
func (c *Cluster) ServiceAccountToken(ctx context.Context, t testing.TB, ns, name string, mayInvoke bool) string {
	t.Helper()
	create := func(obj client.Object) {
		if err := c.Client.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("creating %T %s/%s: %v", obj, ns, obj.GetName(), err)
		}
	}
	create(&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}})
	if mayInvoke {
		create(&rbacv1.Role{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "klambda-invoke"},
			Rules:      []rbacv1.PolicyRule{{APIGroups: []string{"lambda.klambda.dev"}, Resources: []string{"functions"}, Verbs: []string{"invoke"}}},
		})
		create(&rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-invoke"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "klambda-invoke"},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: ns}},
		})
	}
	secs := int64(3600)
	tr, err := c.Kube.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &secs, Audiences: []string{TokenAudience}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("requesting a token of %s/%s: %v", ns, name, err)
	}
	return tr.Status.Token
}

// APIToken is a token of ServiceAccount ns/name made for the API server (no audience
// klambda), which the activator must refuse; the ServiceAccount must exist.
func (c *Cluster) APIToken(ctx context.Context, t testing.TB, ns, name string) string {
	t.Helper()
	secs := int64(600)
	tr, err := c.Kube.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &secs}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("requesting an API token of %s/%s: %v", ns, name, err)
	}
	return tr.Status.Token
}

// ActivatorPod is the Ready pod of the activator the chart installed; the test is skipped
// when there is none. Its pod IP routes from the local node.
func (c *Cluster) ActivatorPod(ctx context.Context, t testing.TB) *corev1.Pod {
	t.Helper()
	var pods corev1.PodList
	if err := c.Client.List(ctx, &pods, client.MatchingLabels{"app.kubernetes.io/component": "activator"}); err != nil {
		t.Fatal(err)
	}
	for i := range pods.Items {
		if p := &pods.Items[i]; p.DeletionTimestamp == nil && podReady(p) && p.Status.PodIP != "" {
			return p
		}
	}
	t.Skip("no Ready activator pod in the cluster (charts: activator.enabled)")
	return nil
}

// ActivatorURL is the Invoke API's base URL for namespace ns, through the activator's
// Service: http://<ClusterIP>:<port>/namespaces/<ns>. The test is skipped when no activator
// pod is Ready.
func (c *Cluster) ActivatorURL(ctx context.Context, t testing.TB, ns string) string {
	t.Helper()
	c.ActivatorPod(ctx, t)
	base, err := c.ActivatorServiceURL(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return base + "/namespaces/" + ns
}

// ActivatorServiceURL is the base URL of the activator's Service, http://<ClusterIP>:<port
// http>, which reaches whichever replica is Ready, as callers on any cluster do (on the local
// cluster kube-proxy routes ClusterIPs from the node). Found once through the API, then
// cached: a Service keeps its ClusterIP for life, and reinstall forgets it (a test that
// removes klambda and installs it again makes a new Service).
func (c *Cluster) ActivatorServiceURL(ctx context.Context) (string, error) {
	c.activatorMu.Lock()
	defer c.activatorMu.Unlock()
	if c.activatorURL != "" {
		return c.activatorURL, nil
	}
	var svcs corev1.ServiceList
	if err := c.Client.List(ctx, &svcs, client.MatchingLabels{"app.kubernetes.io/component": "activator"}); err != nil {
		return "", fmt.Errorf("listing the activator's Services: %w", err)
	}
	for _, s := range svcs.Items {
		if s.Spec.ClusterIP == "" || s.Spec.ClusterIP == corev1.ClusterIPNone {
			continue // a headless Service routes to no replica of its own
		}
		for _, p := range s.Spec.Ports {
			if p.Name == "http" {
				c.activatorURL = fmt.Sprintf("http://%s:%d", s.Spec.ClusterIP, p.Port)
				return c.activatorURL, nil
			}
		}
	}
	return "", fmt.Errorf("no activator Service (label app.kubernetes.io/component=activator) with a ClusterIP and a port named http among %d", len(svcs.Items))
}

// forgetActivatorURL drops ActivatorServiceURL's cached answer.
func (c *Cluster) forgetActivatorURL() {
	c.activatorMu.Lock()
	c.activatorURL = ""
	c.activatorMu.Unlock()
}

// LambdaClient is an aws-sdk-go-v2 Lambda client for the activator's namespace ns whose
// requests carry token as the AWS session token (X-Amz-Security-Token), as a caller
// outside Kubernetes would send it. It never retries, so a throttle or error is seen as is.
func (c *Cluster) LambdaClient(ctx context.Context, t testing.TB, ns, token string) *lambda.Client {
	t.Helper()
	return lambda.New(lambda.Options{
		BaseEndpoint:     aws.String(c.ActivatorURL(ctx, t, ns)),
		Region:           "us-east-1",
		Credentials:      credentials.NewStaticCredentialsProvider("klambda", "unused", token),
		RetryMaxAttempts: 1,
		HTTPClient:       sdkbody.Client(2 * time.Minute), // aws-sdk-go-v2 may close the body under net/http (internal/sdkbody)
	})
}

// ActivatorMetrics fetches the activator's /metrics: served over HTTPS (a self-signed
// certificate) to a token allowed get on /metrics (the chart's metrics.secure), here the
// test's own kubeconfig credentials.
func (c *Cluster) ActivatorMetrics(ctx context.Context, podIP string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+podIP+":9090/metrics", nil)
	if err != nil {
		return nil, err
	}
	tok := c.REST.BearerToken
	if tok == "" && c.REST.BearerTokenFile != "" {
		b, err := os.ReadFile(c.REST.BearerTokenFile)
		if err != nil {
			return nil, err
		}
		tok = strings.TrimSpace(string(b))
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // the activator's metrics certificate is self-signed
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: HTTP %d", req.URL, resp.StatusCode)
	}
	return resp, nil
}
