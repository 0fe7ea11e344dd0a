package codeloader

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type zentry struct {
	name, body string
	mode       fs.FileMode
}

func writeZip(t *testing.T, entries ...zentry) string {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		h := &zip.FileHeader{Name: e.name, Method: zip.Deflate}
		if e.mode == 0 {
			e.mode = 0o644
		}
		h.SetMode(e.mode)
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(e.body))
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "a.zip")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheckRefusesUnsafeEntries(t *testing.T) {
	cases := map[string][]zentry{
		"zip-slip":                {{name: "../../etc/passwd", body: "x"}},
		"nested zip-slip":         {{name: "a/../../x", body: "x"}},
		"absolute":                {{name: "/etc/passwd", body: "x"}},
		"symlink out":             {{name: "lib", body: "../../etc", mode: fs.ModeSymlink | 0o777}},
		"absolute symlink":        {{name: "passwd", body: "/etc/passwd", mode: fs.ModeSymlink | 0o777}},
		"deep symlink out":        {{name: "a/b/c", body: "../../../x", mode: fs.ModeSymlink | 0o777}},
		"symlink to sibling root": {{name: "x", body: "/var/taskforce/x", mode: fs.ModeSymlink | 0o777}},
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

func TestExtractKeepsSafeSymlinksAndModes(t *testing.T) {
	p := writeZip(t,
		zentry{name: "bootstrap", body: "#!/bin/sh\n", mode: 0o755},
		zentry{name: "lib/libx.so.1", body: "elf"},
		zentry{name: "lib/libx.so", body: "libx.so.1", mode: fs.ModeSymlink | 0o777},
		zentry{name: "abs", body: "/var/task/lib/libx.so.1", mode: fs.ModeSymlink | 0o777},
	)
	dest := t.TempDir()
	info, err := Extract(p, dest, "/var/task")
	if err != nil {
		t.Fatal(err)
	}
	if info.Entries != 4 {
		t.Fatalf("entries = %d", info.Entries)
	}
	fi, err := os.Stat(filepath.Join(dest, "bootstrap"))
	if err != nil || fi.Mode().Perm()&0o111 == 0 {
		t.Fatalf("bootstrap not executable: %v %v", fi, err)
	}
	if b, err := os.ReadFile(filepath.Join(dest, "lib/libx.so")); err != nil || string(b) != "elf" {
		t.Fatalf("symlink: %q %v", b, err)
	}
}

func TestLayersInOrderLastWins(t *testing.T) {
	l1 := writeZip(t, zentry{name: "bin/tool", body: "one"}, zentry{name: "only1", body: "1"}, zentry{name: "lnk", body: "only1", mode: fs.ModeSymlink | 0o777})
	l2 := writeZip(t, zentry{name: "bin/tool", body: "two"}, zentry{name: "only2", body: "2"}, zentry{name: "lnk", body: "replaced"})
	code := writeZip(t, zentry{name: "index.js", body: "code"})
	root := t.TempDir()
	task, opt := filepath.Join(root, "task"), filepath.Join(root, "opt")
	sha := func(p string) string { b, _ := os.ReadFile(p); return DigestOf(b).Hex }
	src := func(p string) string { return Source{Scheme: "file", Path: p, SHA256: sha(p)}.String() }
	var log bytes.Buffer
	err := run(context.Background(), []string{"--task-root=" + task, "--opt=" + opt, "--code=" + src(code), "--layer=" + src(l1), "--layer=" + src(l2)}, &log)
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	for f, want := range map[string]string{"task/index.js": "code", "opt/bin/tool": "two", "opt/only1": "1", "opt/only2": "2", "opt/lnk": "replaced"} {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil || string(b) != want {
			t.Errorf("%s = %q (%v), want %q", f, b, err, want)
		}
	}
	if fi, _ := os.Lstat(filepath.Join(opt, "lnk")); fi.Mode()&fs.ModeSymlink != 0 {
		t.Errorf("opt/lnk is still a symlink")
	}
}

func TestMainRefusesDigestMismatchAndUnpinned(t *testing.T) {
	code := writeZip(t, zentry{name: "index.js", body: "code"})
	bad := Source{Scheme: "file", Path: code, SHA256: strings.Repeat("0", 64)}.String()
	var log bytes.Buffer
	err := run(context.Background(), []string{"--task-root=" + t.TempDir(), "--code=" + bad}, &log)
	var dm *DigestMismatchError
	if !errors.As(err, &dm) {
		t.Fatalf("err = %v, want DigestMismatchError", err)
	}
	err = run(context.Background(), []string{"--task-root=" + t.TempDir(), "--code=file://" + code}, &log)
	if err == nil || !strings.Contains(err.Error(), "does not pin") {
		t.Fatalf("unpinned: %v", err)
	}
}

func TestFetchHTTPVerifiesDigest(t *testing.T) {
	body := []byte("PK-not-really")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) }))
	defer srv.Close()
	d := DigestOf(body)
	src, err := ParseSource(srv.URL + "/x.zip?token=secret#sha256=" + d.Hex)
	if err != nil {
		t.Fatal(err)
	}
	p, got, err := FetchLimited(context.Background(), src, nil, t.TempDir(), loopbackOK)
	if err != nil || got != d {
		t.Fatalf("Fetch = %v %v", got, err)
	}
	os.Remove(p)
	src.SHA256 = strings.Repeat("a", 64)
	_, _, err = FetchLimited(context.Background(), src, nil, t.TempDir(), loopbackOK)
	if err == nil || strings.Contains(err.Error(), "secret") {
		t.Fatalf("mismatch error %v (must exist and not leak the query)", err)
	}
}

func TestSourceRoundTrip(t *testing.T) {
	for _, s := range []string{
		"file:///klambda/sources/code/code.zip#sha256=ab",
		"https://example.com/a.zip?x=1#sha256=ab",
		"s3://bucket/dir/key.zip?credentials=KLAMBDA_CODE&endpoint=http%3A%2F%2Fminio%3A9000&region=eu-west-1&versionId=v1#sha256=ab",
	} {
		src, err := ParseSource(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := src.String(); got != s {
			t.Errorf("round trip %q -> %q", s, got)
		}
	}
}

func TestZipFilesIsDeterministic(t *testing.T) {
	files := map[string][]byte{"bootstrap": []byte("#!/bin/sh"), "a.txt": []byte("a")}
	a, err := ZipFiles(files)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := ZipFiles(files)
	if !bytes.Equal(a, b) {
		t.Fatal("ZipFiles is not deterministic")
	}
	if _, err := ZipFiles(map[string][]byte{"../x": nil}); err == nil {
		t.Fatal("ZipFiles accepted ../x")
	}
}

// An S3-compatible endpoint (path-style, as MinIO): signed with the credentials from the
// environment prefix the source names.
func TestFetchS3CompatibleWithCredentialsFromEnv(t *testing.T) {
	body := []byte("zip-bytes")
	var auth string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/code-bucket/fns/a.zip" || r.URL.Query().Get("versionId") != "v7" {
			http.Error(w, "no such key "+r.URL.String(), http.StatusNotFound)
			return
		}
		auth = r.Header.Get("Authorization")
		w.Write(body)
	}))
	defer srv.Close()
	t.Setenv("KLAMBDA_CODE_AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
	t.Setenv("KLAMBDA_CODE_AWS_SECRET_ACCESS_KEY", "secret")
	src := Source{Scheme: "s3", Bucket: "code-bucket", Key: "fns/a.zip", Endpoint: srv.URL, ObjectVersion: "v7", CredentialsEnv: "KLAMBDA_CODE", SHA256: DigestOf(body).Hex}
	parsed, err := ParseSource(src.String())
	if err != nil {
		t.Fatal(err)
	}
	p, d, err := FetchLimited(context.Background(), parsed, nil, t.TempDir(), loopbackOK)
	data, _ := os.ReadFile(p)
	if err != nil || string(data) != string(body) || d.Size != int64(len(body)) {
		t.Fatalf("FetchLimited = %q %v %v", data, d, err)
	}
	if !strings.Contains(auth, "AKIDEXAMPLE") {
		t.Errorf("request not signed with the credentials: %q", auth)
	}
	t.Setenv("KLAMBDA_CODE_AWS_ACCESS_KEY_ID", "")
	var fe *FetchError
	if _, _, err := FetchLimited(context.Background(), parsed, nil, t.TempDir(), loopbackOK); !errors.As(err, &fe) || !strings.Contains(fe.Detail(), "KLAMBDA_CODE_AWS_ACCESS_KEY_ID") {
		t.Errorf("missing credentials: %v", err)
	}
}
