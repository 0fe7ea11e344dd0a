package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/sirupsen/logrus"

	"github.com/klambda/klambda/internal/codestore/registrytest"
	"github.com/klambda/klambda/test/binfmt"
)

var machine = map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}

// uname is what `uname -m` says on each platform (qemu-user reports the emulated one).
var uname = map[string]string{"amd64": "x86_64", "arm64": "aarch64"}

// TestReleaseImages runs the image step of `make release` (hack/release-images.sh) on a tiny
// input: a small Go program for each architecture stands for the runtime-shim, and the
// runtime-shim and provided.al2023 stand-in images, and the python and nodejs stand-ins whose
// inputs are cached here (releaseRuntimes), are built and pushed (PUSH=1) to a real
// registry (internal/codestore/registrytest). A runtime image must run a handler through its
// bootstrap and runtime interface client (startRuntime). Each layout must hold one OCI index named by
// its tag, with the digest images.txt lists, the release's annotations and a linux/amd64 and
// a linux/arm64 image whose every ELF file is of its architecture; the registry must serve
// the same index under the reference; each platform's entrypoint must start, arm64 under
// qemu-user where binfmt has it (skipped with a message otherwise).
func TestReleaseImages(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two images for two platforms")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	src := filepath.Join(dir, "src", "main.go")
	if err := os.MkdirAll(filepath.Dir(src), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(src, []byte("package main\n\nimport (\n\t\"fmt\"\n\t\"runtime\"\n)\n\nfunc main() { fmt.Println(\"shim on\", runtime.GOARCH) }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for arch := range machine {
		cmd := exec.Command("go", "build", "-o", filepath.Join(bin, "runtime-shim-linux-"+arch), src)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build GOARCH=%s: %v\n%s", arch, err, out)
		}
		// The manager's image: its binary (the same program stands in) and both
		// architectures' shims for imageFunctions.shims.
		if err := copyFile(filepath.Join(bin, "runtime-shim-linux-"+arch), filepath.Join(bin, "manager-linux-"+arch)); err != nil {
			t.Fatal(err)
		}
	}

	images := "manager runtime-shim runtime-provided"
	var runtimes []releaseRuntime
	if _, err := exec.LookPath("apt-get"); err != nil {
		images = "manager runtime-shim"
		t.Logf("no apt-get: the provided.al2023 stand-in (Debian's busybox-static) and the runtime images are not built or checked")
	} else {
		runtimes = releaseRuntimes(t)
		for _, rt := range runtimes {
			images += " " + rt.name
		}
	}
	host := registrytest.Start(t)
	// The registry logs every 404 at error level, and a push starts by asking for what it
	// lacks; a failed push fails the script, with its own message.
	logrus.SetLevel(logrus.FatalLevel)
	repo := host + "/klambda"
	out := filepath.Join(dir, "out")
	cmd := exec.Command("../release-images.sh")
	cmd.Env = append(os.Environ(), "VERSION=0.0.0-test", "OUT="+out, "BIN="+bin, "IMAGE_REPO="+repo,
		"IMAGES="+images, "PUSH=1", "COMMIT=0123abc")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("release-images.sh: %v\n%s", err, b)
	}

	listed, err := os.ReadFile(filepath.Join(out, "images.txt"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(listed)), "\n")
	type wantImage struct {
		layout, ref, entrypoint string
		runtime                 *releaseRuntime
	}
	want := []wantImage{
		{"manager", repo + "/manager:0.0.0-test", "/manager", nil},
		{"runtime-shim", repo + "/runtime-shim:0.0.0-test", "/runtime-shim", nil},
		{"runtime-provided-al2023", repo + "/runtime-provided:al2023-0.0.0-test", "/lambda-entrypoint.sh", nil},
	}[:min(3, len(strings.Fields(images)))]
	for i := range runtimes {
		want = append(want, wantImage{runtimes[i].name, repo + "/" + runtimes[i].ref + "-0.0.0-test", "/lambda-entrypoint.sh", &runtimes[i]})
	}
	if len(lines) != len(want) {
		t.Fatalf("images.txt:\n%s\nwant %d images", listed, len(want))
	}
	for i, w := range want {
		ref, digest, _ := strings.Cut(lines[i], " ")
		if ref != w.ref {
			t.Errorf("images.txt line %d names %s, want %s", i+1, ref, w.ref)
			continue
		}
		t.Run(w.layout, func(t *testing.T) {
			idx := checkLayout(t, filepath.Join(out, "images", w.layout), w.ref, digest)
			checkPushed(t, w.ref, digest)
			for _, d := range idxManifests(t, idx) {
				arch := d.Platform.Architecture
				img, err := idx.Image(d.Digest)
				if err != nil {
					t.Fatal(err)
				}
				root := checkImage(t, img, arch, w.entrypoint)
				if w.layout == "manager" {
					// The paths the chart's imageFunctions.shims example names.
					for shimArch, goArch := range map[string]string{"x86_64": "amd64", "arm64": "arm64"} {
						want, err := os.ReadFile(filepath.Join(bin, "runtime-shim-linux-"+goArch))
						if err != nil {
							t.Fatal(err)
						}
						got, err := os.ReadFile(filepath.Join(root, "klambda", "shims", shimArch, "runtime-shim"))
						if err != nil || !bytes.Equal(got, want) {
							t.Errorf("linux/%s manager image: /klambda/shims/%s/runtime-shim is not the %s shim (%v)", arch, shimArch, goArch, err)
						}
					}
				}
				if err := binfmt.ARM64(); arch == "arm64" && err != nil {
					t.Logf("linux/arm64 entrypoint not started: %v", err)
					continue
				}
				if w.runtime != nil {
					startRuntime(t, img, root, arch, *w.runtime)
					continue
				}
				startEntrypoint(t, root, arch, w.entrypoint)
			}
		})
	}
}

// checkLayout reads one layout: one OCI index named by the reference's tag and full name,
// of the listed digest, annotated for the release, with linux/amd64 and linux/arm64.
func checkLayout(t *testing.T, dir, ref, digest string) v1.ImageIndex {
	t.Helper()
	p, err := layout.FromPath(dir)
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
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	if len(tm.Manifests) != 1 || tm.Manifests[0].Digest.String() != digest ||
		tm.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != tag.TagStr() ||
		tm.Manifests[0].Annotations[nameAnnotation] != ref {
		t.Fatalf("layout %s index.json %+v, want one index %s named %s", dir, tm.Manifests, digest, ref)
	}
	idx, err := top.ImageIndex(tm.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if im.MediaType != types.OCIImageIndex {
		t.Errorf("%s is a %s, want an OCI image index", ref, im.MediaType)
	}
	for k, v := range map[string]string{"org.opencontainers.image.version": "0.0.0-test", "org.opencontainers.image.revision": "0123abc"} {
		if im.Annotations[k] != v {
			t.Errorf("%s annotation %s = %q, want %q", ref, k, im.Annotations[k], v)
		}
	}
	return idx
}

// idxManifests returns the index's manifests, which must be linux/amd64 then linux/arm64.
func idxManifests(t *testing.T, idx v1.ImageIndex) []v1.Descriptor {
	t.Helper()
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range im.Manifests {
		if d.Platform == nil {
			t.Fatalf("manifest %s has no platform", d.Digest)
		}
		got = append(got, d.Platform.OS+"/"+d.Platform.Architecture)
	}
	if strings.Join(got, ",") != "linux/amd64,linux/arm64" {
		t.Fatalf("platforms %v, want linux/amd64 and linux/arm64", got)
	}
	return im.Manifests
}

// checkPushed asks the registry for the reference: it must be the listed index.
func checkPushed(t *testing.T, ref, digest string) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(r)
	if err != nil {
		t.Fatalf("registry: %s: %v", ref, err)
	}
	if desc.Digest.String() != digest || !desc.MediaType.IsIndex() {
		t.Errorf("registry serves %s as %s %s, want the index %s", ref, desc.MediaType, desc.Digest, digest)
	}
	arm, err := remote.Image(r, remote.WithPlatform(v1.Platform{OS: "linux", Architecture: "arm64"}))
	if err != nil {
		t.Fatalf("registry: %s for linux/arm64: %v", ref, err)
	}
	if cf, err := arm.ConfigFile(); err != nil || cf.Architecture != "arm64" {
		t.Errorf("registry: %s for linux/arm64 resolves to %+v (%v)", ref, cf, err)
	}
}

// checkImage unpacks one platform's image into a folder: its config must say the platform
// and the entrypoint, and every ELF file must be built for the platform's machine (but the
// manager's /klambda/shims/<arch>/, one per architecture).
func checkImage(t *testing.T, img v1.Image, arch, entrypoint string) string {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != arch || len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != entrypoint {
		t.Errorf("linux/%s config: %s/%s entrypoint %v, want %s", arch, cf.OS, cf.Architecture, cf.Config.Entrypoint, entrypoint)
	}
	root := t.TempDir()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	elves := 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(root, filepath.FromSlash(h.Name))
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(p, 0o755)
		case tar.TypeSymlink:
			err = os.Symlink(h.Linkname, p)
		case tar.TypeReg:
			var b []byte
			if b, err = io.ReadAll(tr); err == nil {
				err = os.WriteFile(p, b, os.FileMode(h.Mode).Perm())
			}
			if f, ferr := elf.NewFile(bytes.NewReader(b)); ferr == nil {
				elves++
				// The manager carries every architecture's shim for the Image functions it
				// derives (imageFunctions.shims); the test checks them by content.
				if f.Machine != machine[arch] && !strings.HasPrefix(h.Name, "klambda/shims/") {
					t.Errorf("linux/%s image: /%s is a %s binary", arch, h.Name, f.Machine)
				}
			}
		}
		if err != nil {
			t.Fatalf("unpacking %s: %v", h.Name, err)
		}
	}
	if elves == 0 {
		t.Errorf("linux/%s image holds no ELF file", arch)
	}
	return root
}

// startEntrypoint runs the image's entrypoint: the shim's directly; the provided image's
// (a busybox sh script that runs the function's bootstrap) chrooted in the unpacked image,
// with a bootstrap that reports the machine it runs on, and the shim it carries.
func startEntrypoint(t *testing.T, root, arch, entrypoint string) {
	t.Helper()
	if entrypoint == "/runtime-shim" || entrypoint == "/manager" { // the same stand-in program
		if out, err := exec.Command(filepath.Join(root, entrypoint)).CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "shim on "+arch {
			t.Errorf("linux/%s %s: %q, %v", arch, entrypoint, out, err)
		}
		return
	}
	if os.Geteuid() != 0 {
		t.Logf("linux/%s %s not started: chroot needs root", arch, entrypoint)
		return
	}
	bootstrap := "#!/bin/sh\necho \"bootstrap $_HANDLER $LAMBDA_TASK_ROOT $(uname -m)\"\n"
	if err := os.WriteFile(filepath.Join(root, "var/task/bootstrap"), []byte(bootstrap), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("chroot", root, entrypoint, "fn.handler").CombinedOutput()
	if want := "bootstrap fn.handler /var/task " + uname[arch]; err != nil || strings.TrimSpace(string(out)) != want {
		t.Errorf("linux/%s %s: %q, %v; want %q", arch, entrypoint, out, err, want)
	}
	out, err = exec.Command("chroot", root, "/klambda/runtime-shim").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "shim on "+arch {
		t.Errorf("linux/%s /klambda/runtime-shim: %q, %v", arch, out, err)
	}
}

// A layout imagepush cannot push is refused with a message saying why.
func TestPushRefusals(t *testing.T) {
	dir := t.TempDir()
	unnamed := filepath.Join(dir, "unnamed")
	p, err := layout.Write(unnamed, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := random.Index(64, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendIndex(idx); err != nil {
		t.Fatal(err)
	}
	single := filepath.Join(dir, "single")
	p, err = layout.Write(single, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	img, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{nameAnnotation: "127.0.0.1:1/x:1"})); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "usage"},
		{[]string{filepath.Join(dir, "missing")}, "not an OCI image layout"},
		{[]string{unnamed}, "no " + nameAnnotation + " annotation"},
		{[]string{single}, "not an image index"},
	} {
		if err := run(tc.args); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("imagepush %v: %v, want an error saying %q", tc.args, err, tc.want)
		}
	}
}

// copyFile copies src to dst, executable.
func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o755)
}
