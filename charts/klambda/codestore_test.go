package klambda_test

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
)

// TestChartCodeStore: codeStore values become the manager's codeStore configuration (which
// the manager accepts), and credentialsSecret is mounted where credentialsDir points;
// without a repository there is no store and no mount; inconsistent values are refused.
func TestChartCodeStore(t *testing.T) {
	objs, errOut := render(t, "codeStore.repository=registry.example.com:5000/klambda/code", "codeStore.readRepository=registry-ro.example.com:5001/klambda/code",
		"codeStore.plainHTTP=true", "codeStore.credentialsSecret=store-writer", "codeStore.gcGrace=2h")
	if errOut != "" {
		t.Fatal(errOut)
	}
	cs := managerConfig(t, objs).CodeStore
	if cs.Repository != "registry.example.com:5000/klambda/code" || cs.ReadRepository != "registry-ro.example.com:5001/klambda/code" || !cs.PlainHTTP ||
		cs.CredentialsDir != "/etc/klambda/code-store" || cs.GCGrace.Duration != 2*time.Hour || cs.GCInterval.Duration != 10*time.Minute {
		t.Fatalf("manager codeStore = %+v", cs)
	}
	dep := decode[appsv1.Deployment](t, objs, "Deployment/klambda-manager")
	mounted := false
	for _, m := range dep.Spec.Template.Spec.Containers[0].VolumeMounts {
		if m.MountPath == cs.CredentialsDir {
			for _, v := range dep.Spec.Template.Spec.Volumes {
				if v.Name == m.Name && v.Secret != nil && v.Secret.SecretName == "store-writer" {
					mounted = true
				}
			}
		}
	}
	if !mounted {
		t.Errorf("Secret store-writer is not mounted at %s", cs.CredentialsDir)
	}

	objs, errOut = render(t)
	if errOut != "" {
		t.Fatal(errOut)
	}
	if cs := managerConfig(t, objs).CodeStore; cs.Repository != "" {
		t.Errorf("by default the manager has a code store: %+v", cs)
	}
	for set, want := range map[string]string{
		"codeStore.credentialsSecret=x":         "set codeStore.repository",
		"config.codeStore.repository=r.io/code": "use codeStore",
		"codeStore.gcMaxDeletes=0":              "gcMaxDeletes",
	} {
		if _, errOut := render(t, set); !strings.Contains(errOut, want) {
			t.Errorf("--set %s: helm said %q, want an error naming %s", set, errOut, want)
		}
	}
}

// TestChartCodeLocationKey: with the control-plane API and a code store, the activator
// takes the key of its code links from Secret <release>-activator-code-location (created
// by the first activator when missing), and a Role lets it get that Secret and create
// Secrets, nothing more; without a code store neither flag nor Role.
func TestChartCodeLocationKey(t *testing.T) {
	set := []string{"activator.controlAPI.enabled=true", "codeStore.repository=registry.example.com:5000/klambda/code"}
	if args := activatorArgs(t, set...); !slices.Contains(args, "--code-location-key-secret=klambda-activator-code-location") {
		t.Fatalf("activator args %v", args)
	}
	objs, errOut := render(t, append([]string{"activator.enabled=true", "activator.tls.secretName=activator-tls"}, set...)...)
	if errOut != "" {
		t.Fatal(errOut)
	}
	role := decode[rbacv1.Role](t, objs, "Role/klambda-activator-code-location")
	want := []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{"klambda-activator-code-location"}, Verbs: []string{"get"}},
		{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"create"}},
	}
	if !reflect.DeepEqual(role.Rules, want) || role.Namespace != releaseNS {
		t.Fatalf("Role rules %+v in %s", role.Rules, role.Namespace)
	}
	rb := decode[rbacv1.RoleBinding](t, objs, "RoleBinding/klambda-activator-code-location")
	if rb.RoleRef.Name != role.Name || len(rb.Subjects) != 1 || rb.Subjects[0].Name != "klambda-activator" || rb.Subjects[0].Namespace != releaseNS {
		t.Fatalf("RoleBinding %+v", rb)
	}
	if args := activatorArgs(t, "activator.controlAPI.enabled=true"); slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--code-location-key-secret") }) {
		t.Fatalf("without a code store: %v", args)
	}
	objs, _ = render(t, "activator.enabled=true", "activator.tls.secretName=activator-tls", "activator.controlAPI.enabled=true")
	if _, ok := objs["Role/klambda-activator-code-location"]; ok {
		t.Fatal("the code-location Role without a code store")
	}
}
