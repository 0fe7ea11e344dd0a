// Package ziptest builds the small .zip packages integration tests deploy, and their
// digests in both of klambda's spellings.
package ziptest

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"os"
	"testing"
)

// File is one entry of a package Files builds.
type File struct {
	Name string
	Body []byte
	// Mode is the entry's permission bits (0: 0644).
	Mode os.FileMode
	// Store keeps the entry uncompressed (Deflate otherwise).
	Store bool
}

// Files is a .zip holding files, in their order.
func Files(t testing.TB, files ...File) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range files {
		h := &zip.FileHeader{Name: f.Name, Method: zip.Deflate}
		if f.Store {
			h.Method = zip.Store
		}
		mode := f.Mode
		if mode == 0 {
			mode = 0o644
		}
		h.SetMode(mode)
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatalf("zipping %s: %v", f.Name, err)
		}
		if _, err := w.Write(f.Body); err != nil {
			t.Fatalf("zipping %s: %v", f.Name, err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatalf("zipping: %v", err)
	}
	return buf.Bytes()
}

// Bootstrap is a .zip holding one executable file, bootstrap, whose content is body.
func Bootstrap(t testing.TB, body string) []byte {
	t.Helper()
	return Files(t, File{Name: "bootstrap", Body: []byte(body), Mode: 0o755})
}

// Digest is b's SHA-256 in hex (spec.code.sha256, the code store's blob digest) and in
// base64 (Lambda's CodeSha256).
func Digest(b []byte) (hexDigest, b64 string) {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:]), base64.StdEncoding.EncodeToString(s[:])
}
