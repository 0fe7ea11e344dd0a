package main

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/klambda/klambda/test/apiserver"
)

// Issue 15, finding 13: the activator's metrics were served to anyone. With --metrics-auth
// (the default) they are served over HTTPS to callers the API server authenticates and
// allows get on the non-resource URL /metrics, as controller-runtime's secure metrics.
func TestMetricsNeedAuthorizedToken(t *testing.T) {
	srv, err := apiserver.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = srv.Stop() }()
	cs := kubernetes.NewForConfigOrDie(srv.Config)
	ctx := context.Background()
	for _, sa := range []string{"scraper", "stranger"} {
		if _, err := cs.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cs.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "metrics-reader"},
		Rules: []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "scraper"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "metrics-reader"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "scraper", Namespace: "default"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	token := func(sa string) string {
		tr, err := cs.CoreV1().ServiceAccounts("default").CreateToken(ctx, sa, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tr.Status.Token
	}

	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "klambda_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Inc()

	get := func(fd *frontDoor, bearer string) (int, string) {
		t.Helper()
		ms, tc, err := fd.metricsServer("", reg, srv.Config, nil, logr.Discard())
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() { _ = serveOn(ln, ms, tc) }()
		defer func() { _ = ms.Close() }()
		scheme := "http"
		if tc != nil {
			scheme = "https"
		}
		req, _ := http.NewRequest("GET", scheme+"://"+ln.Addr().String()+"/metrics", nil)
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		hc := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	fd := testFrontDoor()
	if code, body := get(fd, ""); code != http.StatusUnauthorized || strings.Contains(body, "klambda_test_total") {
		t.Fatalf("no token: %d %.200s", code, body)
	}
	if code, body := get(fd, token("stranger")); code != http.StatusForbidden || strings.Contains(body, "klambda_test_total") {
		t.Fatalf("a token not allowed get /metrics: %d %.200s", code, body)
	}
	if code, body := get(fd, token("scraper")); code != http.StatusOK || !strings.Contains(body, "klambda_test_total 1") {
		t.Fatalf("a token allowed get /metrics: %d %.200s", code, body)
	}
	fd.metricsAuth = false
	if code, body := get(fd, ""); code != http.StatusOK || !strings.Contains(body, "klambda_test_total 1") {
		t.Fatalf("--metrics-auth=false: %d %.200s", code, body)
	}
}
