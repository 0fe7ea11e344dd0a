// Command imagebuild builds an OCI image from files on this machine, without Docker or a
// registry, and writes it as a docker-archive tarball that `ctr images import` reads, or,
// for several platforms, as an OCI image index in an OCI image layout directory.
//
// The local cluster (hack/cluster) uses it for klambda's own images and for the local
// stand-ins of the Lambda base images; `make release` for the multi-arch images. Output is
// reproducible: every file is owned by root with a fixed mtime, so unchanged inputs give
// the same image digest, and callers can skip an import when the digest is already in
// containerd.
//
//	imagebuild -tag klambda.local/manager:dev -o manager.tar \
//	    -base-files -add bin/manager=/manager -user 65532:65532 -entrypoint /manager
//	imagebuild -tag 10.0.0.5:5000/klambda/manager:dev -push -plain-http \
//	    -base-files -add bin/manager=/manager -user 65532:65532 -entrypoint /manager
//	imagebuild -tag ghcr.io/klambda/manager:1.2.3 -oci out/manager \
//	    -platform linux/amd64 -platform linux/arm64 \
//	    -base-files -add 'bin/manager-{arch}=/manager' -user 65532:65532 -entrypoint /manager
//
// Filesystem flags are applied in order; -layer starts a new layer. In an -add source,
// {arch} is the platform's architecture (amd64, arm64): each platform's image gets its
// own files. -o writes one platform's image (a single manifest, which containerd's CRI
// runs whatever the node's platform); -oci writes an index of all the -platform images,
// with the -annotation K=V pairs on the index (org.opencontainers.image.version, ...).
// -push sends one platform's image to the registry -tag names instead (credentials of
// ~/.docker/config.json; -plain-http for a registry without TLS), for a cluster that pulls
// from a registry (make dev CLUSTER=existing REGISTRY=...). Each prints the image's digest.
package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// epoch is the mtime of every file in every layer, for reproducible digests.
var epoch = time.Unix(0, 0).UTC()

// entry is one thing to put into a layer, in the order the flags gave it.
type entry struct {
	kind   string // "add", "mkdir", "symlink", "layer", "basefiles"
	src    string
	dst    string
	mode   fs.FileMode
	target string
}

type listFlag struct {
	kind    string
	entries *[]entry
}

func (l listFlag) String() string { return "" }

func (l listFlag) Set(v string) error {
	e := entry{kind: l.kind}
	switch l.kind {
	case "add": // SRC=DST
		src, dst, ok := strings.Cut(v, "=")
		if !ok || !strings.HasPrefix(dst, "/") {
			return fmt.Errorf("-add wants SRC=/DST, got %q", v)
		}
		e.src, e.dst = src, dst
	case "mkdir": // /DIR[:MODE]
		dir, mode, _ := strings.Cut(v, ":")
		e.dst, e.mode = dir, 0o755
		if mode != "" {
			m, err := strconv.ParseUint(mode, 8, 32)
			if err != nil {
				return fmt.Errorf("-mkdir %q: mode: %w", v, err)
			}
			e.mode = fs.FileMode(m)
		}
	case "symlink": // /LINK=TARGET
		link, target, ok := strings.Cut(v, "=")
		if !ok {
			return fmt.Errorf("-symlink wants /LINK=TARGET, got %q", v)
		}
		e.dst, e.target = link, target
	}
	*l.entries = append(*l.entries, e)
	return nil
}

type boolEntry struct {
	kind    string
	entries *[]entry
}

func (b boolEntry) String() string   { return "" }
func (b boolEntry) IsBoolFlag() bool { return true }
func (b boolEntry) Set(string) error {
	*b.entries = append(*b.entries, entry{kind: b.kind})
	return nil
}

// countTrue counts the true values.
func countTrue(bs ...bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

type stringsFlag []string

func (s *stringsFlag) String() string     { return strings.Join(*s, ",") }
func (s *stringsFlag) Set(v string) error { *s = append(*s, v); return nil }

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "imagebuild:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		entries    []entry
		env, cmd   stringsFlag
		entrypoint stringsFlag
		platforms  stringsFlag
		annots     stringsFlag
		tag        = flag.String("tag", "", "image reference to tag the image with (required)")
		out        = flag.String("o", "", "docker-archive tarball to write (one platform)")
		ociDir     = flag.String("oci", "", "OCI image layout directory to write: an index of every -platform image")
		user       = flag.String("user", "", "user[:group] the image runs as")
		workdir    = flag.String("workdir", "", "working directory")
		digestOnly = flag.Bool("digest", false, "print the digest of the image (with -oci: of the index) and write nothing")
		push       = flag.Bool("push", false, "push the image (one platform) to the registry -tag names, instead of writing it")
		plainHTTP  = flag.Bool("plain-http", false, "with -push: the registry speaks plain HTTP (no TLS)")
	)
	flag.Var(listFlag{"add", &entries}, "add", "SRC=/DST: copy a file or a directory tree into the image ({arch} in SRC: the platform's architecture)")
	flag.Var(listFlag{"mkdir", &entries}, "mkdir", "/DIR[:MODE]: create a directory (octal mode, default 755)")
	flag.Var(listFlag{"symlink", &entries}, "symlink", "/LINK=TARGET: create a symbolic link")
	flag.Var(boolEntry{"layer", &entries}, "layer", "start a new layer")
	flag.Var(boolEntry{"basefiles", &entries}, "base-files", "add /etc/passwd, /etc/group (root, nobody, nonroot 65532), CA certificates and /tmp")
	flag.Var(&env, "env", "K=V environment variable (repeatable)")
	flag.Var(&entrypoint, "entrypoint", "entrypoint argument (repeatable, in order)")
	flag.Var(&cmd, "cmd", "cmd argument (repeatable, in order)")
	flag.Var(&annots, "annotation", "K=V annotation of the -oci index, e.g. org.opencontainers.image.version=1.2.3 (repeatable)")
	flag.Var(&platforms, "platform", "os/arch[/variant] to build for (repeatable; default linux/amd64): linux/amd64, linux/arm64")
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	if *tag == "" || (*out == "" && *ociDir == "" && !*digestOnly && !*push) {
		flag.Usage()
		return errors.New("-tag and -o, -oci or -push are required")
	}
	if given := countTrue(*out != "", *ociDir != "", *push); given > 1 {
		return errors.New("-o, -oci and -push: give one")
	}
	if *plainHTTP && !*push {
		return errors.New("-plain-http is for -push")
	}
	var refOpts []name.Option
	if *plainHTTP {
		refOpts = append(refOpts, name.Insecure)
	}
	ref, err := name.NewTag(*tag, refOpts...)
	if err != nil {
		return fmt.Errorf("parsing -tag: %w", err)
	}
	if len(platforms) == 0 {
		platforms = stringsFlag{"linux/amd64"}
	}
	if len(platforms) > 1 && *ociDir == "" {
		return errors.New("several -platform images need -oci (a docker archive, or -push, holds one image)")
	}
	if len(annots) > 0 && *ociDir == "" {
		return errors.New("-annotation needs -oci (it annotates the image index; a docker archive has none)")
	}
	annotations := map[string]string{}
	for _, a := range annots {
		k, v, ok := strings.Cut(a, "=")
		if !ok || k == "" {
			return fmt.Errorf("-annotation wants K=V, got %q", a)
		}
		annotations[k] = v
	}
	cfg := imageConfig{env: env, entrypoint: entrypoint, cmd: cmd, user: *user, workdir: *workdir, oci: *ociDir != ""}
	var imgs []v1.Image
	var plats []v1.Platform
	for _, p := range platforms {
		plat, err := parsePlatform(p)
		if err != nil {
			return err
		}
		img, err := buildImage(entries, plat, cfg)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		imgs, plats = append(imgs, img), append(plats, plat)
	}

	if *ociDir == "" {
		dig, err := imgs[0].Digest()
		if err != nil {
			return err
		}
		if *digestOnly {
			fmt.Println(dig)
			return nil
		}
		if *push {
			if err := remote.Write(ref, imgs[0], remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
				return fmt.Errorf("pushing %s: %w", ref, err)
			}
			fmt.Println(dig)
			return nil
		}
		if err := tarball.WriteToFile(*out, ref, imgs[0]); err != nil {
			return fmt.Errorf("writing %s: %w", *out, err)
		}
		fmt.Println(dig)
		return nil
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for i, img := range imgs {
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &plats[i]}})
	}
	if len(annotations) > 0 {
		idx = mutate.Annotations(idx, annotations).(v1.ImageIndex)
	}
	dig, err := idx.Digest()
	if err != nil {
		return err
	}
	if *digestOnly {
		fmt.Println(dig)
		return nil
	}
	if err := os.RemoveAll(*ociDir); err != nil {
		return err
	}
	p, err := layout.Write(*ociDir, empty.Index)
	if err != nil {
		return fmt.Errorf("writing %s: %w", *ociDir, err)
	}
	// The ref.name annotation is the tag (OCI image layout), as `skopeo copy oci:DIR:TAG` and
	// `crane push DIR REF` expect.
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": ref.TagStr(),
		"io.containerd.image.name":          ref.Name(),
	})); err != nil {
		return fmt.Errorf("writing %s: %w", *ociDir, err)
	}
	fmt.Println(dig)
	return nil
}

type imageConfig struct {
	env, entrypoint, cmd []string
	user, workdir        string
	oci                  bool // OCI media types (in an index) rather than Docker's
}

func parsePlatform(s string) (v1.Platform, error) {
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] != "linux" {
		return v1.Platform{}, fmt.Errorf("-platform %q: want linux/ARCH[/VARIANT]", s)
	}
	p := v1.Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	switch p.Architecture {
	case "amd64", "arm64":
	default:
		return v1.Platform{}, fmt.Errorf("-platform %q: klambda builds linux/amd64 and linux/arm64", s)
	}
	return p, nil
}

// buildImage makes one platform's image: {arch} in -add sources is its architecture.
func buildImage(entries []entry, plat v1.Platform, c imageConfig) (v1.Image, error) {
	var layers []v1.Layer
	for _, group := range splitLayers(entries) {
		group = append([]entry(nil), group...)
		for i := range group {
			group[i].src = strings.ReplaceAll(group[i].src, "{arch}", plat.Architecture)
		}
		data, err := layerTar(group)
		if err != nil {
			return nil, err
		}
		opts := []tarball.LayerOption{}
		if c.oci {
			opts = append(opts, tarball.WithMediaType(types.OCILayer))
		}
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(data)), nil
		}, opts...)
		if err != nil {
			return nil, fmt.Errorf("making layer: %w", err)
		}
		layers = append(layers, l)
	}

	img := mutate.MediaType(empty.Image, types.DockerManifestSchema2)
	if c.oci {
		img = mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	}
	img, err := mutate.AppendLayers(img, layers...)
	if err != nil {
		return nil, fmt.Errorf("appending layers: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS, cf.Variant, cf.Created = plat.Architecture, plat.OS, plat.Variant, v1.Time{Time: epoch}
	cf.Config.Env = append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, c.env...)
	cf.Config.Entrypoint, cf.Config.Cmd = c.entrypoint, c.cmd
	cf.Config.User, cf.Config.WorkingDir = c.user, c.workdir
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("setting config: %w", err)
	}
	return img, nil
}

func splitLayers(entries []entry) [][]entry {
	var groups [][]entry
	var cur []entry
	for _, e := range entries {
		if e.kind == "layer" {
			if len(cur) > 0 {
				groups = append(groups, cur)
			}
			cur = nil
			continue
		}
		cur = append(cur, e)
	}
	if len(cur) > 0 {
		groups = append(groups, cur)
	}
	return groups
}

// layerWriter writes a layer tar, creating parent directories once each.
type layerWriter struct {
	tw   *tar.Writer
	dirs map[string]bool
}

func layerTar(entries []entry) ([]byte, error) {
	var buf bytes.Buffer
	w := &layerWriter{tw: tar.NewWriter(&buf), dirs: map[string]bool{"/": true}}
	for _, e := range entries {
		var err error
		switch e.kind {
		case "add":
			err = w.add(e.src, e.dst)
		case "mkdir":
			err = w.dir(e.dst, e.mode)
		case "symlink":
			err = w.symlink(e.dst, e.target)
		case "basefiles":
			err = w.baseFiles()
		}
		if err != nil {
			return nil, err
		}
	}
	if err := w.tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func (w *layerWriter) parents(p string) error {
	d := path.Dir(p)
	if w.dirs[d] {
		return nil
	}
	return w.dir(d, 0o755)
}

func (w *layerWriter) dir(p string, mode fs.FileMode) error {
	p = path.Clean(p)
	if w.dirs[p] {
		return nil
	}
	if err := w.parents(p); err != nil {
		return err
	}
	w.dirs[p] = true
	tarMode := int64(mode.Perm())
	if mode&fs.ModeSticky != 0 {
		tarMode |= 0o1000 // c_ISVTX
	}
	return w.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(p, "/") + "/",
		Mode: tarMode, ModTime: epoch, Format: tar.FormatPAX})
}

func (w *layerWriter) symlink(link, target string) error {
	if err := w.parents(link); err != nil {
		return err
	}
	return w.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: strings.TrimPrefix(path.Clean(link), "/"),
		Linkname: target, Mode: 0o777, ModTime: epoch, Format: tar.FormatPAX})
}

func (w *layerWriter) file(dst string, mode fs.FileMode, data []byte) error {
	if err := w.parents(dst); err != nil {
		return err
	}
	if err := w.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(path.Clean(dst), "/"),
		Size: int64(len(data)), Mode: int64(mode.Perm()), ModTime: epoch, Format: tar.FormatPAX}); err != nil {
		return err
	}
	_, err := w.tw.Write(data)
	return err
}

// add copies a file, or a directory tree in lexical order, following the top-level
// symlink but keeping symlinks inside a tree as symlinks.
func (w *layerWriter) add(src, dst string) error {
	st, err := os.Stat(src)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		data, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		return w.file(dst, st.Mode(), data)
	}
	// WalkDir does not descend into a root that is a symlink: walk what it points to.
	if src, err = filepath.EvalSymlinks(src); err != nil {
		return err
	}
	var paths []string
	err = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		paths = append(paths, p)
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(paths)
	for _, p := range paths {
		rel, _ := filepath.Rel(src, p)
		target := path.Join(dst, filepath.ToSlash(rel))
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		switch {
		case info.IsDir():
			err = w.dir(target, info.Mode()|0o755)
		case info.Mode()&fs.ModeSymlink != 0:
			var link string
			if link, err = os.Readlink(p); err == nil {
				err = w.symlink(target, link)
			}
		case info.Mode().IsRegular():
			var data []byte
			if data, err = os.ReadFile(p); err == nil {
				err = w.file(target, info.Mode()|0o444, data)
			}
		}
		if err != nil {
			return fmt.Errorf("adding %s: %w", p, err)
		}
	}
	return nil
}

// baseFiles is what distroless/static gives a static binary: users, groups, CA
// certificates and a world-writable /tmp.
func (w *layerWriter) baseFiles() error {
	passwd := "root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" +
		"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\nsbx_user1051:x:993:990::/home/sbx_user1051:/sbin/nologin\n"
	group := "root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n"
	if err := w.file("/etc/passwd", 0o644, []byte(passwd)); err != nil {
		return err
	}
	if err := w.file("/etc/group", 0o644, []byte(group)); err != nil {
		return err
	}
	if certs, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt"); err == nil {
		if err := w.file("/etc/ssl/certs/ca-certificates.crt", 0o644, certs); err != nil {
			return err
		}
	}
	if err := w.dir("/tmp", fs.ModeSticky|0o777); err != nil {
		return err
	}
	return w.dir("/home/nonroot", 0o755)
}
