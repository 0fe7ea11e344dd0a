package codeloader

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klambda/klambda/internal/codestore"
	"github.com/klambda/klambda/internal/codestore/registrytest"
)

// TestLoadFromCodeStore: load-code unpacks code that the manager put into the code store (a
// real distribution registry), by the oci source the pod gets, and refuses a source whose
// pinned digest the store does not hold (the check stays).
func TestLoadFromCodeStore(t *testing.T) {
	ctx := context.Background()
	host := registrytest.Start(t)
	store, err := codestore.NewOCI(codestore.OCIOptions{Repository: host + "/klambda/code", PlainHTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	zipPath := writeZip(t, zentry{name: "bootstrap", body: "#!/bin/sh\necho from-the-store\n", mode: 0o755})
	d, err := DigestOfFile(zipPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Put(ctx, zipPath, d.Hex); err != nil {
		t.Fatal(err)
	}
	loc := store.Location()
	src := Source{Scheme: "oci", Registry: loc.Registry, Repository: loc.Repository, PlainHTTP: loc.PlainHTTP, SHA256: d.Hex}
	parsed, err := ParseSource(src.String())
	if err != nil || parsed != src {
		t.Fatalf("ParseSource(%q) = %+v, %v; want %+v", src.String(), parsed, err, src)
	}
	task := t.TempDir()
	var log strings.Builder
	if err := run(ctx, []string{"--task-root=" + task, "--opt=" + t.TempDir(), "--scratch=" + t.TempDir(), "--allow-loopback", "--code=" + src.String()}, &log); err != nil {
		t.Fatalf("load-code: %v\n%s", err, log.String())
	}
	b, err := os.ReadFile(filepath.Join(task, "bootstrap"))
	if err != nil || !strings.Contains(string(b), "from-the-store") {
		t.Fatalf("bootstrap = %q, %v", b, err)
	}

	// A digest the store does not hold: the download fails, nothing is unpacked.
	missing := src
	missing.SHA256 = strings.Repeat("ab", 32)
	task2 := t.TempDir()
	if err := run(ctx, []string{"--task-root=" + task2, "--allow-loopback", "--scratch=" + t.TempDir(), "--code=" + missing.String()}, io.Discard); err == nil {
		t.Fatal("load-code of a digest the store does not hold succeeded")
	}
	if entries, _ := os.ReadDir(task2); len(entries) != 0 {
		t.Fatalf("something was unpacked: %v", entries)
	}
	// An oci source must pin its digest.
	unpinned := src
	unpinned.SHA256 = ""
	if err := run(ctx, []string{"--task-root=" + t.TempDir(), "--allow-loopback", "--allow-unpinned", "--code=" + unpinned.String()}, io.Discard); err == nil {
		t.Fatal("an unpinned oci source was loaded")
	}
}
