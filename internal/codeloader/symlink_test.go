package codeloader

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// TestCheckRefusesChainedSymlinksOut: a symlink whose target is inside the root on paper
// (lexically) but goes out through another symlink of the archive is refused, by Check and
// by Extract (issue #15, finding 13).
func TestCheckRefusesChainedSymlinksOut(t *testing.T) {
	link := fs.ModeSymlink | 0o777
	cases := map[string][]zentry{
		// here -> . (the root), out -> here/.. (lexically ".", really the root's parent)
		"through a link to the root": {{name: "here", body: ".", mode: link}, {name: "out", body: "here/..", mode: link}},
		// a/b -> .. (a's parent: the root), c -> a/b/../etc
		"through a nested link": {{name: "a/b", body: "..", mode: link}, {name: "c", body: "a/b/../etc", mode: link}},
		// a chain of three, the last step out
		"a chain": {{name: "l1", body: "l2", mode: link}, {name: "l2", body: "d/l3", mode: link}, {name: "d/l3", body: "..", mode: link}, {name: "x", body: "l1/../etc", mode: link}},
		// absolute target through a link
		"absolute through a link": {{name: "r", body: "/var/task", mode: link}, {name: "x", body: "/var/task/r/../passwd", mode: link}},
		// a loop is refused too (it can't be resolved)
		"a loop": {{name: "a", body: "b", mode: link}, {name: "b", body: "a", mode: link}},
	}
	for name, entries := range cases {
		t.Run(name, func(t *testing.T) {
			p := writeZip(t, entries...)
			if _, err := Check(p, "/var/task"); !errors.Is(err, ErrUnsafeArchive) {
				t.Fatalf("Check = %v, want ErrUnsafeArchive", err)
			}
			dest := t.TempDir()
			if _, err := Extract(p, dest, "/var/task"); !errors.Is(err, ErrUnsafeArchive) {
				t.Fatalf("Extract = %v, want ErrUnsafeArchive", err)
			}
		})
	}
}

// TestLayersCannotChainSymlinksOut: a later layer's symlink that goes out of /opt through a
// link an earlier layer left there is refused when it is unpacked.
func TestLayersCannotChainSymlinksOut(t *testing.T) {
	link := fs.ModeSymlink | 0o777
	l1 := writeZip(t, zentry{name: "here", body: ".", mode: link})
	l2 := writeZip(t, zentry{name: "out", body: "here/../etc", mode: link})
	if _, err := Check(l2, "/opt"); err != nil {
		t.Fatalf("the second layer alone is safe: %v", err)
	}
	dest := t.TempDir()
	if _, err := Extract(l1, dest, "/opt"); err != nil {
		t.Fatal(err)
	}
	if _, err := Extract(l2, dest, "/opt"); !errors.Is(err, ErrUnsafeArchive) {
		t.Fatalf("Extract of the second layer = %v, want ErrUnsafeArchive", err)
	}
}

// TestCheckKeepsSafeChains: chains that stay inside are fine.
func TestCheckKeepsSafeChains(t *testing.T) {
	link := fs.ModeSymlink | 0o777
	p := writeZip(t,
		zentry{name: "lib/libx.so.1.2", body: "elf"},
		zentry{name: "lib/libx.so.1", body: "libx.so.1.2", mode: link},
		zentry{name: "lib/libx.so", body: "libx.so.1", mode: link},
		zentry{name: "cur", body: "lib", mode: link},
		zentry{name: "a/up", body: "../cur/libx.so", mode: link},
		zentry{name: "abs", body: "/var/task/cur/../lib/libx.so", mode: link},
	)
	if _, err := Check(p, "/var/task"); err != nil {
		t.Fatal(err)
	}
	dest := t.TempDir()
	if _, err := Extract(p, dest, "/var/task"); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dest, "a/up")); err != nil || string(b) != "elf" {
		t.Fatalf("a/up: %q %v", b, err)
	}
}
