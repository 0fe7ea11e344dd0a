// Package ziptest builds the small .zip packages integration tests deploy, and their
// digests in both of klambda's spellings.
package ziptest

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"testing"
)

// Bootstrap is a .zip holding one executable file, bootstrap, whose content is body.
func Bootstrap(t testing.TB, body string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	h := &zip.FileHeader{Name: "bootstrap", Method: zip.Deflate}
	h.SetMode(0o755)
	w, err := zw.CreateHeader(h)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte(body)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Digest is b's SHA-256 in hex (spec.code.sha256, the code store's blob digest) and in
// base64 (Lambda's CodeSha256).
func Digest(b []byte) (hexDigest, b64 string) {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:]), base64.StdEncoding.EncodeToString(s[:])
}
