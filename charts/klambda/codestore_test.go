package klambda_test

import (
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
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
