package invokeclient_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/klambda/klambda/eventsources/invokeclient"
	"github.com/klambda/klambda/eventsources/invokeclient/invoketest"
)

// The kubelet rotates a projected token by pointing a symlink at a new file; each
// invocation after that must carry the new token as Authorization: Bearer.
func TestRotatedTokenFileIsSentAsBearer(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(dir, "token")
	write := func(name, tok string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(dir, "token.tmp")
		if err := os.Symlink(name, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, link); err != nil {
			t.Fatal(err)
		}
	}
	write("a", "first-token")

	fake := invoketest.New(nil)
	defer fake.Close()
	inv := &invokeclient.LambdaInvoker{ActivatorURL: fake.URL, Tokens: invokeclient.NewFileToken(link)}
	call := func() {
		t.Helper()
		if _, err := inv.Invoke(context.Background(), invokeclient.Request{Namespace: "ns", FunctionName: "fn", Payload: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	call()
	call()
	// A later modification time than the first file's, as a real rotation has.
	time.Sleep(20 * time.Millisecond)
	write("b", "second-token-longer")
	call()

	calls := fake.Calls()
	got := []string{}
	for _, c := range calls {
		got = append(got, c.Authorization)
	}
	want := []string{"Bearer first-token", "Bearer first-token", "Bearer second-token-longer"}
	if len(got) != len(want) {
		t.Fatalf("Authorization headers %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("Authorization headers %q, want %q", got, want)
		}
	}
}

func TestNoTokenSendsNoAuthorization(t *testing.T) {
	fake := invoketest.New(nil)
	defer fake.Close()
	inv := &invokeclient.LambdaInvoker{ActivatorURL: fake.URL}
	if _, err := inv.Invoke(context.Background(), invokeclient.Request{FunctionName: "fn", Payload: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	if a := fake.Calls()[0].Authorization; a != "" {
		t.Fatalf("Authorization %q without a token source", a)
	}
}

func TestEmptyTokenFileFailsTheInvocation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := invokeclient.NewFileToken(path).Token(); err == nil {
		t.Fatal("an empty token file gave a token")
	}
}
