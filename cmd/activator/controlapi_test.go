package main

import (
	"context"
	"flag"
	"net/http"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"

	"github.com/klambda/klambda/activator/auth"
	"github.com/klambda/klambda/activator/controlapi"
)

// --control-api puts the control-plane API in front of the Invoke API, with the Invoke
// API's token review and review budget; without it the code store flags are refused, not
// ignored.
func TestControlAPIFlags(t *testing.T) {
	parse := func(args ...string) *controlAPIOptions {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		o := bindControlAPIFlags(fs)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		return o
	}
	ns, region, account, limit := "default", "us-east-1", "000000000000", 1000
	opts := &options{defaultNS: &ns, region: &region, accountID: &account, namespaceLimit: &limit}
	next := http.NotFoundHandler()
	cfg := &rest.Config{Host: "https://127.0.0.1:1"}
	cs := fake.NewClientset()
	checker := auth.NewChecker(&auth.Kube{Client: cs}, &auth.Kube{Client: cs})
	checker.ReviewRate, checker.ReviewBurst = 3, 7

	h, err := parse().wrap(next, runtime.NewScheme(), cfg, cs, checker, true, opts, logr.Discard())
	if err != nil || h == nil {
		t.Fatalf("off: %v", err)
	}
	if _, ok := h.(*controlapi.Handler); ok {
		t.Fatal("the control-plane API is served without --control-api")
	}
	if _, err := parse("--code-store-repository=reg:5000/code").wrap(next, runtime.NewScheme(), cfg, cs, checker, true, opts, logr.Discard()); err == nil ||
		!strings.Contains(err.Error(), "--control-api") {
		t.Fatalf("--code-store-repository without --control-api: %v", err)
	}
	h, err = parse("--control-api", "--code-store-repository=reg:5000/code", "--code-store-plain-http").wrap(next, runtime.NewScheme(), cfg, cs, checker, true, opts, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	api, ok := h.(*controlapi.Handler)
	if !ok || api.Next == nil || api.Store == nil || api.Store.Location().Registry != "reg:5000" || !api.Store.Location().PlainHTTP ||
		api.NamespaceConcurrency != 1000 {
		t.Fatalf("--control-api built %+v", h)
	}
	c, ok := api.Auth.(*auth.Checker)
	if !ok || c.ReviewRate != 3 || c.ReviewBurst != 7 || c.Authn != checker.Authn {
		t.Fatalf("the control-plane API's authorization: %+v", api.Auth)
	}
	if api.CodeKey != nil {
		t.Fatal("a code link key without --code-location-key-secret")
	}

	// The code link key: from (or into) the Secret of $POD_NAMESPACE, the same for each
	// replica; refused without --control-api, the code store or $POD_NAMESPACE.
	if _, err := parse("--code-location-key-secret=links").wrap(next, runtime.NewScheme(), cfg, cs, checker, true, opts, logr.Discard()); err == nil {
		t.Fatal("--code-location-key-secret without --control-api accepted")
	}
	if _, err := parse("--control-api", "--code-location-key-secret=links").wrap(next, runtime.NewScheme(), cfg, cs, checker, true, opts, logr.Discard()); err == nil ||
		!strings.Contains(err.Error(), "--code-store-repository") {
		t.Fatalf("--code-location-key-secret without a code store: %v", err)
	}
	withKey := func() (*controlapi.Handler, error) {
		h, err := parse("--control-api", "--code-store-repository=reg:5000/code", "--code-location-key-secret=links").wrap(next, runtime.NewScheme(), cfg, cs, checker, true, opts, logr.Discard())
		if err != nil {
			return nil, err
		}
		return h.(*controlapi.Handler), nil
	}
	t.Setenv("POD_NAMESPACE", "")
	if _, err := withKey(); err == nil || !strings.Contains(err.Error(), "POD_NAMESPACE") {
		t.Fatalf("--code-location-key-secret without $POD_NAMESPACE: %v", err)
	}
	t.Setenv("POD_NAMESPACE", "klambda-system")
	one, err := withKey()
	if err != nil {
		t.Fatal(err)
	}
	two, err := withKey()
	if err != nil {
		t.Fatal(err)
	}
	sec, err := cs.CoreV1().Secrets("klambda-system").Get(context.Background(), "links", metav1.GetOptions{})
	if err != nil || len(one.CodeKey) != controlapi.CodeLocationKeyBytes || string(one.CodeKey) != string(two.CodeKey) || string(sec.Data["key"]) != string(one.CodeKey) {
		t.Fatalf("the code link key: %x and %x, Secret %v (%v)", one.CodeKey, two.CodeKey, sec, err)
	}

	if _, err := parse("--control-api", "--control-api-max-uploads=0").wrap(next, runtime.NewScheme(), cfg, cs, checker, true, opts, logr.Discard()); err == nil {
		t.Fatal("--control-api-max-uploads=0 accepted")
	}
	if _, err := parse("--control-api", "--code-store-repository=reg:5000/code", "--code-store-credentials-dir=/nonexistent").wrap(next, runtime.NewScheme(), cfg, cs, checker, true, opts, logr.Discard()); err == nil {
		t.Fatal("a missing credentials directory accepted")
	}
}
