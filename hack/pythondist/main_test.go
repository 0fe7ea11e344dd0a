package main

import (
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeTree(t *testing.T, filesJSON string) string {
	t.Helper()
	from := t.TempDir()
	if err := os.MkdirAll(filepath.Join(from, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(from, "bin", "python3.12.gz"))
	if err != nil {
		t.Fatal(err)
	}
	gz := gzip.NewWriter(f)
	_, _ = gz.Write([]byte("\x7fELF interpreter"))
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.WriteFile(filepath.Join(from, "bin", "idle3.12"), []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(from, "files.json"), []byte(filesJSON), 0o644); err != nil {
		t.Fatal(err)
	}
	return from
}

// The tree comes back as files.json describes it: gunzipped files with their modes,
// directories and relative symlinks.
func TestUnpack(t *testing.T) {
	from := writeTree(t, `{"files":[
		{"name":"bin","perm":2147484141},
		{"name":"bin/idle3.12","perm":509},
		{"name":"bin/python3","perm":134217728,"symlink":"python3.12"},
		{"name":"bin/python3.12","perm":493,"compressed":true},
		{"name":"lib","perm":2147484141}]}`)
	to := filepath.Join(t.TempDir(), "py")
	if err := unpack(from, to); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(to, "bin", "python3"))
	if err != nil || string(b) != "\x7fELF interpreter" {
		t.Fatalf("bin/python3 -> python3.12 reads %q, %v", b, err)
	}
	for name, mode := range map[string]os.FileMode{"bin/python3.12": 0o755, "bin/idle3.12": 0o775} {
		if st, err := os.Stat(filepath.Join(to, name)); err != nil || st.Mode().Perm() != mode {
			t.Fatalf("%s: %v %v, want mode %v", name, st.Mode(), err, mode)
		}
	}
	if st, err := os.Stat(filepath.Join(to, "lib")); err != nil || !st.IsDir() {
		t.Fatalf("lib: %v", err)
	}
	if err := unpack(from, to); err == nil || !strings.Contains(err.Error(), "exists already") {
		t.Fatalf("unpacking onto an existing tree: %v", err)
	}
}

// Names and symlinks that would leave the tree, and empty lists, are refused.
func TestUnpackRefuses(t *testing.T) {
	for list, want := range map[string]string{
		`{"files":[{"name":"../evil","perm":420}]}`:                                  `"../evil" is not a path inside the tree`,
		`{"files":[{"name":"bin/x","perm":134217728,"symlink":"../../etc/passwd"}]}`: "points outside the tree",
		`{"files":[{"name":"bin/x","perm":134217728,"symlink":"/etc/passwd"}]}`:      "points outside the tree",
		`{"files":[]}`: "lists no files",
		`{"files":[{"name":"bin/missing","perm":420}]}`: "no such file",
	} {
		err := unpack(writeTree(t, list), filepath.Join(t.TempDir(), "py"))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", list, err, want)
		}
	}
}
