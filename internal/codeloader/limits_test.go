package codeloader

import (
	"archive/zip"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// manyEntries is a .zip of n empty files.
func manyEntries(t *testing.T, n int) string {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for i := 0; i < n; i++ {
		if _, err := zw.CreateHeader(&zip.FileHeader{Name: fmt.Sprintf("f%d", i), Method: zip.Store}); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "many.zip")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestUnpackBoundsEntries: an archive with more entries than MaxEntries is refused before
// anything is written.
func TestUnpackBoundsEntries(t *testing.T) {
	p := manyEntries(t, MaxEntries+1)
	if _, err := Check(p, "/var/task"); err == nil || !strings.Contains(err.Error(), "files") {
		t.Fatalf("Check = %v, want too many files", err)
	}
	dest := t.TempDir()
	if _, err := Extract(p, dest, "/var/task"); err == nil || !strings.Contains(err.Error(), "files") {
		t.Fatalf("Extract = %v, want too many files", err)
	}
	if left, _ := os.ReadDir(dest); len(left) != 0 {
		t.Fatalf("%d entries written", len(left))
	}
}

// TestLoadBoundsCodeAndLayersTogether: Lambda's 250 MB unzipped limit is for the code and
// its layers together, and so is the file count: each archive alone fits, together they
// are refused.
func TestLoadBoundsCodeAndLayersTogether(t *testing.T) {
	sha := func(p string) string { b, _ := os.ReadFile(p); return DigestOf(b).Hex }
	src := func(p string) string { return Source{Scheme: "file", Path: p, SHA256: sha(p)}.String() }
	three := writeZip(t, zentry{name: "a", body: "aaaa"}, zentry{name: "b", body: "bbbb"}, zentry{name: "c", body: "cccc"})
	load := func(b *Budget) error {
		root := t.TempDir()
		return Load(t.Context(), Options{TaskRoot: filepath.Join(root, "task"), Opt: filepath.Join(root, "opt"),
			Code: src(three), Layers: []string{src(three)}, Budget: b}, io.Discard)
	}
	if err := load(&Budget{Bytes: 24, Entries: 6}); err != nil {
		t.Fatalf("within the budget: %v", err)
	}
	if err := load(&Budget{Bytes: 1000, Entries: 5}); err == nil || !strings.Contains(err.Error(), "layer 1") || !strings.Contains(err.Error(), "files") {
		t.Fatalf("code + layer of 3 entries each, 5 allowed: %v, want the layer refused for its files", err)
	}
	if err := load(&Budget{Bytes: 23, Entries: 100}); err == nil || !strings.Contains(err.Error(), "layer 1") || !strings.Contains(err.Error(), "bytes") {
		t.Fatalf("code + layer of 12 bytes each, 23 allowed: %v, want the layer refused for its bytes", err)
	}
}
