package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/klambda/klambda/internal/codestore/registrytest"
	"github.com/klambda/klambda/test/binfmt"
)

// build compiles a Go program for linux/GOARCH.
func build(t *testing.T, dir, goarch, src string) string {
	t.Helper()
	main := filepath.Join(dir, "src", "main.go")
	if err := os.MkdirAll(filepath.Dir(main), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(main, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "hello-"+goarch)
	cmd := exec.Command("go", "build", "-o", out, main)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build GOARCH=%s: %v\n%s", goarch, err, b)
	}
	return out
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// imagebuild runs this command (built once) with args.
func imagebuild(t *testing.T, args ...string) (string, error) {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "imagebuild-test")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "imagebuild")
		if b, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build imagebuild: %v\n%s", err, b)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	out, err := exec.Command(binPath, args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// fileOf reads one file of an image's flattened filesystem.
func fileOf(t *testing.T, img v1.Image, name string) []byte {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			t.Fatalf("no %s in the image", name)
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == name {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
}

// TestMultiPlatformIndex builds an OCI image index for linux/amd64 and linux/arm64 from
// per-architecture binaries ({arch} in -add) and reads it back with go-containerregistry:
// two manifests with their platforms, each config saying its architecture, each image
// holding the binary of its architecture (ELF machine), OCI media types, the tag as the
// layout's ref.name, the -annotation on the index, the same digest when built twice. The
// arm64 entrypoint then runs under qemu-user where binfmt has it (shared/notes/arm64.md).
func TestMultiPlatformIndex(t *testing.T) {
	dir := t.TempDir()
	src := "package main\n\nimport (\n\t\"fmt\"\n\t\"runtime\"\n)\n\nfunc main() { fmt.Println(\"hello from\", runtime.GOARCH) }\n"
	build(t, dir, "amd64", src)
	build(t, dir, "arm64", src)
	oci := filepath.Join(dir, "oci")
	args := []string{"-tag", "example.local/hello:1.0.0", "-platform", "linux/amd64", "-platform", "linux/arm64",
		"-base-files", "-layer", "-add", filepath.Join(dir, "hello-{arch}") + "=/hello", "-user", "65532:65532", "-entrypoint", "/hello",
		"-annotation", "org.opencontainers.image.version=1.0.0"}
	dig, err := imagebuild(t, append(args, "-oci", oci)...)
	if err != nil {
		t.Fatalf("imagebuild: %v: %s", err, dig)
	}
	again, err := imagebuild(t, append(args, "-oci", oci, "-digest")...)
	if err != nil || again != dig {
		t.Errorf("built twice: %q then %q (%v): not reproducible", dig, again, err)
	}

	p, err := layout.FromPath(oci)
	if err != nil {
		t.Fatal(err)
	}
	top, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	tm, err := top.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(tm.Manifests) != 1 || tm.Manifests[0].Digest.String() != dig || tm.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "1.0.0" {
		t.Fatalf("layout index.json %+v, want one index %s named 1.0.0", tm.Manifests, dig)
	}
	idx, err := top.ImageIndex(tm.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if im.MediaType != types.OCIImageIndex || len(im.Manifests) != 2 {
		t.Fatalf("index %s with %d manifests, want an OCI index of 2", im.MediaType, len(im.Manifests))
	}
	if v := im.Annotations["org.opencontainers.image.version"]; v != "1.0.0" {
		t.Errorf("index annotation org.opencontainers.image.version %q, want 1.0.0 (-annotation)", v)
	}
	machine := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
	for i, want := range []string{"amd64", "arm64"} {
		d := im.Manifests[i]
		if d.Platform == nil || d.Platform.OS != "linux" || d.Platform.Architecture != want {
			t.Errorf("manifest %d platform %+v, want linux/%s", i, d.Platform, want)
			continue
		}
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.Architecture != want || cf.OS != "linux" || cf.Config.Entrypoint[0] != "/hello" {
			t.Errorf("linux/%s config: %s/%s entrypoint %v", want, cf.OS, cf.Architecture, cf.Config.Entrypoint)
		}
		if mt, _ := img.MediaType(); mt != types.OCIManifestSchema1 {
			t.Errorf("linux/%s manifest media type %s", want, mt)
		}
		bin := fileOf(t, img, "hello")
		f, err := elf.NewFile(bytes.NewReader(bin))
		if err != nil {
			t.Fatalf("linux/%s /hello: %v", want, err)
		}
		if f.Machine != machine[want] {
			t.Errorf("linux/%s image holds a %s binary", want, f.Machine)
		}
		// Run each image's entrypoint: natively, or through binfmt for arm64.
		if err := binfmt.ARM64(); want == "arm64" && err != nil {
			t.Logf("linux/arm64 entrypoint not run: %v", err)
			continue
		}
		exe := filepath.Join(dir, "extracted-"+want)
		if err := os.WriteFile(exe, bin, 0o755); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(exe).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "hello from "+want {
			t.Errorf("linux/%s entrypoint: %q, %v", want, out, err)
		}
	}
}

// Bad platform flags are refused with a message naming them.
func TestPlatformRefusals(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-platform", "linux/s390x", "-o", "x.tar"}, "klambda builds linux/amd64 and linux/arm64"},
		{[]string{"-platform", "windows/amd64", "-o", "x.tar"}, "want linux/ARCH"},
		{[]string{"-platform", "linux/amd64", "-platform", "linux/arm64", "-o", "x.tar"}, "need -oci"},
		{[]string{"-o", "x.tar", "-oci", "d"}, "give one"},
		{[]string{"-o", "x.tar", "-annotation", "a=b"}, "-annotation needs -oci"},
		{[]string{"-oci", "d", "-annotation", "novalue"}, "-annotation wants K=V"},
	} {
		out, err := imagebuild(t, append([]string{"-tag", "example.local/x:1", "-mkdir", "/x"}, tc.args...)...)
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("%v: %v %q, want an error saying %q", tc.args, err, out, tc.want)
		}
	}
}

// TestPushToAPlainHTTPRegistry: -push sends the image to the registry -tag names and prints
// the digest it has there; a registry without TLS needs -plain-http (the registry listens
// on 127.0.0.2, which go-containerregistry does not take for a local one); -push with -o,
// or -plain-http without -push, is refused.
func TestPushToAPlainHTTPRegistry(t *testing.T) {
	reg := registrytest.StartOn(t, "127.0.0.2:0", nil)
	dir := t.TempDir()
	file := filepath.Join(dir, "hello.txt")
	if err := os.WriteFile(file, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	tag := reg + "/klambda/hello:dev"
	args := []string{"-tag", tag, "-add", file + "=/hello.txt", "-entrypoint", "/hello"}
	if out, err := imagebuild(t, append(args, "-push")...); err == nil {
		t.Fatalf("a push over TLS to a plain-HTTP registry succeeded: %s", out)
	}
	out, err := imagebuild(t, append(args, "-push", "-plain-http")...)
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	ref, err := name.ParseReference(tag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(ref)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := img.Digest(); d.String() != out {
		t.Fatalf("printed %s, the registry has %s", out, d)
	}
	if got := string(fileOf(t, img, "hello.txt")); got != "hello" {
		t.Fatalf("hello.txt: %q", got)
	}
	for _, bad := range [][]string{append(args, "-push", "-o", filepath.Join(dir, "x.tar")), append(args, "-plain-http", "-o", filepath.Join(dir, "x.tar"))} {
		if out, err := imagebuild(t, bad...); err == nil {
			t.Fatalf("%v accepted: %s", bad, out)
		}
	}
}

// -add SRC=/DST where SRC is a symlink to a directory adds the directory's tree (the release
// links each architecture's cached tree as NAME-{arch}); symlinks inside stay symlinks.
func TestAddFollowsATopLevelDirectorySymlink(t *testing.T) {
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	if err := os.MkdirAll(filepath.Join(tree, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, "bin", "python3.12"), []byte("interpreter"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("python3.12", filepath.Join(tree, "bin", "python3")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(tree, filepath.Join(dir, "link-amd64")); err != nil {
		t.Fatal(err)
	}
	oci := filepath.Join(dir, "oci")
	if out, err := imagebuild(t, "-tag", "example.local/tree:1", "-oci", oci, "-add", filepath.Join(dir, "link-{arch}")+"=/var/lang"); err != nil {
		t.Fatalf("imagebuild: %v: %s", err, out)
	}
	p, err := layout.FromPath(oci)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	inner, err := idx.ImageIndex(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	iim, err := inner.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	img, err := inner.Image(iim.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	if b := fileOf(t, img, "var/lang/bin/python3.12"); string(b) != "interpreter" {
		t.Fatalf("var/lang/bin/python3.12 = %q", b)
	}
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("no symlink var/lang/bin/python3 -> python3.12: %v", err)
		}
		if h.Name == "var/lang/bin/python3" {
			if h.Typeflag != tar.TypeSymlink || h.Linkname != "python3.12" {
				t.Fatalf("var/lang/bin/python3: type %c -> %q", h.Typeflag, h.Linkname)
			}
			return
		}
	}
}
