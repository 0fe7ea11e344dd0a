package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/klambda/klambda/internal/codeloader"
	"github.com/klambda/klambda/internal/codestore"
	"github.com/klambda/klambda/internal/netguard"
	"github.com/klambda/klambda/test/ziptest"
)

// The registry logs every 404 of a client's existence checks at error level.
func TestMain(m *testing.M) {
	logrus.SetOutput(io.Discard)
	os.Exit(m.Run())
}

// start runs the code store on loopback ports over a temporary root until the test ends,
// and returns its read-write and read-only host:ports.
func start(t *testing.T, root string) (rw, ro string) {
	t.Helper()
	t.Setenv("OTEL_TRACES_EXPORTER", "none")
	o, err := parseFlags(flag.NewFlagSet("t", flag.ContinueOnError), []string{"-root", root, "-listen", "127.0.0.1:0", "-read-listen", "127.0.0.1:0", "-log-level", "error"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	addrs := make(chan [2]net.Addr, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, o, func(a, b net.Addr) { addrs <- [2]net.Addr{a, b} }) }()
	var a [2]net.Addr
	select {
	case a = <-addrs:
	case err := <-done:
		t.Fatalf("code-store did not start: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("code-store ended with %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("code-store did not stop within 30 s of its context ending")
		}
	})
	return a[0].String(), a[1].String()
}

func store(t *testing.T, hostport string) *codestore.OCI {
	t.Helper()
	s, err := codestore.NewOCI(codestore.OCIOptions{Repository: hostport + "/klambda/code", PlainHTTP: true, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The manager pushes on the read-write port; a function pod's load-code reads the same
// archive on the read-only port; the read-only port refuses pushes and deletes; a delete on
// the read-write port is seen on the read-only one.
func TestReadWriteAndReadOnlyPortsShareOneStore(t *testing.T) {
	rw, ro := start(t, t.TempDir())
	ctx := context.Background()
	zip := ziptest.Bootstrap(t, "echo hello")
	hex, _ := ziptest.Digest(zip)
	file := filepath.Join(t.TempDir(), "code.zip")
	if err := os.WriteFile(file, zip, 0o600); err != nil {
		t.Fatal(err)
	}

	if _, err := store(t, ro).Put(ctx, file, hex); err == nil {
		t.Fatal("a push on the read-only port succeeded")
	}
	if _, err := store(t, rw).Stat(ctx, hex); err == nil {
		t.Fatal("the refused push stored something")
	}
	if _, err := store(t, rw).Put(ctx, file, hex); err != nil {
		t.Fatalf("push on the read-write port: %v", err)
	}

	// As a function pod loads it: load-code's oci source on the read-only port.
	host, port, _ := net.SplitHostPort(ro)
	src, err := codeloader.ParseSource("oci://" + net.JoinHostPort(host, port) + "/klambda/code?plainHTTP=true#sha256=" + hex)
	if err != nil {
		t.Fatal(err)
	}
	got, d, err := codeloader.FetchLimited(ctx, src, nil, t.TempDir(), codeloader.Limits{Policy: &netguard.Policy{AllowLoopback: true}})
	if err != nil {
		t.Fatalf("load-code from the read-only port: %v", err)
	}
	if d.Hex != hex {
		t.Fatalf("load-code read digest %s, want %s", d.Hex, hex)
	}
	if b, _ := os.ReadFile(got); string(b) != string(zip) {
		t.Fatal("load-code read other bytes than were pushed")
	}

	if err := store(t, ro).Delete(ctx, hex); err == nil {
		t.Fatal("a delete on the read-only port succeeded")
	}
	if _, err := store(t, ro).Stat(ctx, hex); err != nil {
		t.Fatalf("after the refused delete the archive is gone: %v", err)
	}
	if err := store(t, rw).Delete(ctx, hex); err != nil {
		t.Fatalf("delete on the read-write port: %v", err)
	}
	rc, err := store(t, ro).Get(ctx, hex)
	if err == nil {
		rc.Close()
		t.Fatal("the read-only port still serves a deleted archive")
	}
}

// What a registry client sees of the refusal: distribution's read-only answer, 405.
func TestReadOnlyPortAnswersPushWithUnsupported(t *testing.T) {
	_, ro := start(t, t.TempDir())
	resp, err := http.Post("http://"+ro+"/v2/klambda/code/blobs/uploads/", "application/octet-stream", strings.NewReader(""))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("push on the read-only port: %d %s, want 405", resp.StatusCode, body)
	}
	for _, port := range []string{ro} {
		resp, err := http.Get("http://" + port + "/v2/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /v2/ (the probes' path): %d", resp.StatusCode)
		}
	}
}

// The content is on disk under --root: a new process over the same root serves it.
func TestContentSurvivesARestart(t *testing.T) {
	root := t.TempDir()
	zip := ziptest.Bootstrap(t, "echo again")
	hex, _ := ziptest.Digest(zip)
	file := filepath.Join(t.TempDir(), "code.zip")
	if err := os.WriteFile(file, zip, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Run("first", func(t *testing.T) {
		rw, _ := start(t, root)
		if _, err := store(t, rw).Put(context.Background(), file, hex); err != nil {
			t.Fatal(err)
		}
	})
	_, ro := start(t, root)
	if _, err := store(t, ro).Stat(context.Background(), hex); err != nil {
		t.Fatalf("after a restart: %v", err)
	}
}

func TestFlagsRefused(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-root", "relative"}, "--root must be an absolute directory"},
		{[]string{"-listen", ":5000", "-read-listen", ":5000"}, "must differ"},
		{[]string{"-upload-purge-age", "1m"}, "at least 1h"},
		{[]string{"-log-level", "panic"}, "--log-level must be"},
		{[]string{"-shutdown-grace", "-1s"}, "must not be negative"},
		{[]string{"extra"}, "unexpected arguments"},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		_, err := parseFlags(fs, c.args)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
	}
	if _, err := parseFlags(flag.NewFlagSet("t", flag.ContinueOnError), nil); err != nil {
		t.Errorf("the defaults are refused: %v", err)
	}
}

// Each handler's configuration names its own address (the read-only one --read-listen),
// and the servers listen where their configuration says.
func TestEachHandlerIsConfiguredForItsPort(t *testing.T) {
	o, err := parseFlags(flag.NewFlagSet("t", flag.ContinueOnError), []string{"-root", t.TempDir(), "-listen", "127.0.0.1:6000", "-read-listen", "127.0.0.1:6001"})
	if err != nil {
		t.Fatal(err)
	}
	for _, readOnly := range []bool{false, true} {
		cfg, err := config(o, readOnly)
		if err != nil {
			t.Fatal(err)
		}
		if want := map[bool]string{false: o.listen, true: o.readListen}[readOnly]; cfg.HTTP.Addr != want {
			t.Errorf("read-only %v: http.addr %q, want %s", readOnly, cfg.HTTP.Addr, want)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rw, ro, err := servers(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if rw.Addr != o.listen || ro.Addr != o.readListen {
		t.Errorf("servers listen on %s and %s; want %s and %s", rw.Addr, ro.Addr, o.listen, o.readListen)
	}
}

// A port already taken fails the start with the flag's name, and frees the other port.
func TestListenFailureNamesTheFlag(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	o := &options{root: t.TempDir(), listen: "127.0.0.1:0", readListen: l.Addr().String(), logLevel: "error", uploadPurgeAge: 24 * time.Hour}
	err = run(context.Background(), o, nil)
	if err == nil || !strings.Contains(err.Error(), "--read-listen") || errors.Is(err, context.Canceled) {
		t.Fatalf("run on a taken port: %v", err)
	}
}
