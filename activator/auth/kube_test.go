package auth

import (
	"context"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/klambda/klambda/test/apiserver"
)

// Issue 15, finding 8, against a real kube-apiserver: a ServiceAccount token made for the
// API server (kubectl create token without --audience, the pod's own token) is refused;
// one made for audience klambda is accepted.
func TestKubeAudienceAgainstAPIServer(t *testing.T) {
	srv, err := apiserver.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = srv.Stop() }()
	cs := kubernetes.NewForConfigOrDie(srv.Config)
	ctx := context.Background()
	if _, err := cs.CoreV1().ServiceAccounts("default").Create(ctx,
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "caller"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	token := func(audiences ...string) string {
		tr, err := cs.CoreV1().ServiceAccounts("default").CreateToken(ctx, "caller",
			&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{Audiences: audiences}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tr.Status.Token
	}
	k := &Kube{Client: cs}
	id, ok, err := k.Authenticate(ctx, token("klambda"))
	if err != nil || !ok || id.User != "system:serviceaccount:default:caller" {
		t.Fatalf("a token for audience klambda: %+v %v %v", id, ok, err)
	}
	if _, ok, err := k.Authenticate(ctx, token()); err != nil || ok {
		t.Fatalf("a token for the API server was accepted (ok=%v, err=%v)", ok, err)
	}
	if _, ok, err := k.Authenticate(ctx, token("someone-else")); err != nil || ok {
		t.Fatalf("a token for another audience was accepted (ok=%v, err=%v)", ok, err)
	}
	other := &Kube{Client: cs, Audiences: []string{"someone-else"}}
	if _, ok, _ := other.Authenticate(ctx, token("someone-else")); !ok {
		t.Fatal("--token-audiences someone-else refused a token for someone-else")
	}
}
