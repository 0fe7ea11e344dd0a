package binfmt

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// An entry counts only when it exists and says enabled; otherwise the error says how to
// enable it.
func TestEnabled(t *testing.T) {
	dir := t.TempDir()
	for body, want := range map[string]bool{
		"enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: PF\n": true,
		"disabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\n":           false,
	} {
		entry := filepath.Join(dir, "qemu-aarch64")
		if err := os.WriteFile(entry, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := enabled(entry); (err == nil) != want {
			t.Errorf("entry %q: %v, want enabled %v", body, err, want)
		}
	}
	if err := enabled(filepath.Join(dir, "none")); err == nil || !strings.Contains(err.Error(), "update-binfmts --enable qemu-aarch64") {
		t.Errorf("no entry: %v, want how to enable it", err)
	}
}
