package klambda_test

import (
	"slices"
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/yaml"

	"github.com/klambda/klambda/api/contract"
)

// functionUrls: the domain reaches the activator (--function-url-domain) and the manager
// (status.functionUrl spelled host-based, https with a certificate); without it the
// manager spells path-based URLs at the activator Service; the Ingress and the HTTPRoutes
// route *.lambda-url.<domain> and /lambda-url/ to the activator.
func TestChartFunctionURLs(t *testing.T) {
	objs, errOut := render(t, "activator.enabled=true", "activator.tls.secretName=activator-tls",
		"functionUrls.domain=fn.example.com", "functionUrls.ingress.enabled=true", "functionUrls.ingress.className=nginx",
		"functionUrls.httpRoute.enabled=true", "functionUrls.httpRoute.parentRefs[0].name=gw")
	if errOut != "" {
		t.Fatal(errOut)
	}
	if args := activatorArgs(t, "functionUrls.domain=fn.example.com"); !slices.Contains(args, "--function-url-domain=fn.example.com") {
		t.Errorf("activator args: %v", args)
	}
	if got := managerConfig(t, objs).FunctionURLs.FunctionURL("abc"); got != "https://abc.lambda-url.fn.example.com/" {
		t.Errorf("manager's URL %q", got)
	}
	ing := decode[networkingv1.Ingress](t, objs, "Ingress/klambda-function-urls")
	if *ing.Spec.IngressClassName != "nginx" || len(ing.Spec.Rules) != 2 || ing.Spec.Rules[0].Host != "*.lambda-url.fn.example.com" ||
		ing.Spec.Rules[1].HTTP.Paths[0].Path != contract.FunctionURLPathPrefix ||
		ing.Spec.Rules[0].HTTP.Paths[0].Backend.Service.Name != "klambda-activator" {
		t.Errorf("ingress: %+v", ing.Spec)
	}
	for kind, want := range map[string]string{"hosts": `hostnames: ["*.lambda-url.fn.example.com"]`, "paths": "value: /lambda-url/"} {
		doc, ok := objs["HTTPRoute/klambda-function-urls-"+kind]
		if !ok {
			t.Fatalf("HTTPRoute %s not rendered", kind)
		}
		var rt map[string]any
		if err := yaml.Unmarshal(doc, &rt); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(doc), want) || !strings.Contains(string(doc), "name: klambda-activator, port: 8080") || !strings.Contains(string(doc), "- name: gw") {
			t.Errorf("HTTPRoute %s:\n%s", kind, doc)
		}
	}

	// No domain: path-based at the Service, plain HTTP; no ingress or route unless asked.
	objs, errOut = render(t, "activator.enabled=true", "activator.tls.plainHTTP=true")
	if errOut != "" {
		t.Fatal(errOut)
	}
	if got := managerConfig(t, objs).FunctionURLs.FunctionURL("abc"); got != "http://klambda-activator."+releaseNS+".svc:8080/lambda-url/abc/" {
		t.Errorf("manager's path-based URL %q", got)
	}
	for k := range objs {
		if strings.HasPrefix(k, "Ingress/") || strings.HasPrefix(k, "HTTPRoute/") {
			t.Errorf("%s rendered without being asked for", k)
		}
	}
	if args := activatorArgs(t); slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--function-url-domain") }) {
		t.Errorf("--function-url-domain without a domain: %v", args)
	}
}

func TestChartRefusesFunctionURLMisconfiguration(t *testing.T) {
	for _, tc := range []struct {
		set  []string
		want string
	}{
		{[]string{"activator.enabled=true", "activator.tls.plainHTTP=true", "functionUrls.httpRoute.enabled=true"}, "functionUrls.httpRoute.parentRefs"},
		{[]string{"activator.enabled=false", "eventsources.enabled=false", "functionUrls.ingress.enabled=true"}, "activator.enabled=true"},
		{[]string{"functionUrls.domain=Not_A_Domain"}, "/functionUrls/domain"},
		{[]string{"functionUrls.pathBaseUrl=ftp://x"}, "/functionUrls/pathBaseUrl"},
		{[]string{"functionUrls.ingres.enabled=true"}, "additional properties 'ingres' not allowed"},
		{[]string{"config.functionUrls.domain=x"}, "use functionUrls.domain"},
	} {
		if _, errOut := render(t, tc.set...); !strings.Contains(errOut, tc.want) {
			t.Errorf("--set %v: helm said %q, want %q", tc.set, errOut, tc.want)
		}
	}
}
