package compat

import (
	"archive/zip"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeZip writes a .zip of name → (mode, content) and returns its file source for
// load-code (file://…#sha256=…).
func writeZip(t *testing.T, path string, files map[string]struct {
	mode os.FileMode
	data []byte
}) string {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	zw := zip.NewWriter(f)
	for name, c := range files {
		h := &zip.FileHeader{Name: name, Method: zip.Deflate}
		h.SetMode(c.mode)
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(c.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return "file://" + path + "#sha256=" + hex.EncodeToString(sum[:])
}

// The pod's one-container shape: runtime-shim exec unpacks the function's package and a
// layer itself, then starts the aws-lambda-go bootstrap from the unpacked code, which
// reads the layer's file from /opt's stand-in.
func TestExecLoadsCodeAndLayers(t *testing.T) {
	dir := t.TempDir()
	bin, err := os.ReadFile(goFuncBin)
	if err != nil {
		t.Fatal(err)
	}
	type file = struct {
		mode os.FileMode
		data []byte
	}
	code := writeZip(t, filepath.Join(dir, "code.zip"), map[string]file{"bootstrap": {0o755, bin}})
	layer := writeZip(t, filepath.Join(dir, "layer.zip"), map[string]file{"etc/greeting.txt": {0o644, []byte("from the layer")}})
	task, opt, scratch := filepath.Join(dir, "task"), filepath.Join(dir, "opt"), filepath.Join(dir, "scratch")
	for _, d := range []string{task, opt, scratch} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	flags := []string{"--code=" + code, "--layer=" + layer, "--task-root=" + task, "--opt=" + opt, "--scratch=" + scratch}
	p := startPeerWith(t, peerShim, flags, "5", nil, task, filepath.Join(task, "bootstrap"))

	r := p.invokeJSON(t, `{"op":"log"}`)
	expect(t, "status", r.status, 200)
	expect(t, "body", string(r.body), `"logged"`)
	p.waitLog(t, "load-code: layer 1: unpacked 1 entries")
	if b, err := os.ReadFile(filepath.Join(opt, "etc", "greeting.txt")); err != nil || string(b) != "from the layer" {
		t.Fatalf("layer file: %q, %v", b, err)
	}
	// The download waited in scratch and is gone.
	if left, _ := os.ReadDir(scratch); len(left) != 0 {
		t.Fatalf("scratch keeps %d files", len(left))
	}
	// The code stays for the next generation: a crash resets the environment, and the
	// runtime starts again from the same unpacked bootstrap.
	r = p.invokeJSON(t, `{"op":"exit"}`)
	expect(t, "crash type", decode(t, r.body)["errorType"], "Runtime.ExitError")
	expect(t, "after reset", string(p.invokeJSON(t, `"again"`).body), `"again"`)
}

// A package whose digest is not the pinned one is never started: the shim exits non-zero
// naming the mismatch, before it listens.
func TestExecRefusesCodeWithAnotherDigest(t *testing.T) {
	dir := t.TempDir()
	code := writeZip(t, filepath.Join(dir, "code.zip"), map[string]struct {
		mode os.FileMode
		data []byte
	}{"bootstrap": {0o755, []byte("#!/bin/sh\nexit 0\n")}})
	bad := code[:strings.Index(code, "#sha256=")] + "#sha256=" + strings.Repeat("0", 64)
	cmd := exec.Command(shimBin, "exec", "--listen", freePort(t), "--runtime-api", freePort(t), "--code="+bad,
		"--task-root="+dir, "--scratch="+dir, "--", filepath.Join(dir, "bootstrap"))
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatalf("the shim exited 0: %s", out)
		}
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("the shim did not exit: %s", out)
	}
	if !strings.Contains(out.String(), "loading the code") || !strings.Contains(out.String(), "SHA-256 is") {
		t.Fatalf("message: %s", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "bootstrap")); err == nil {
		t.Fatal("the package was unpacked")
	}
}
