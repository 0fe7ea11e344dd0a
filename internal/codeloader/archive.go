package codeloader

import (
	"archive/zip"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"time"
)

// MaxUnpackedSize is Lambda's limit on unzipped code: the code and its layers together
// (262144000 bytes, CodeSizeUnzipped of GetAccountSettings).
const MaxUnpackedSize = 250 << 20

// MaxEntries bounds the files, folders and symlinks of the code and its layers together.
// Lambda documents no file count, but every entry costs a node an inode and at least a
// block of the pod's emptyDir; 50,000 is well above the largest node_modules-heavy
// packages that fit in 250 MB.
const MaxEntries = 50000

// MaxSymlinkHops bounds the symlinks followed to resolve one (Linux's limit is 40).
const MaxSymlinkHops = 40

// Budget is what the archives still to be unpacked into one environment may add: bytes
// unpacked and entries. Load spends one Budget over the code and all layers.
type Budget struct {
	Bytes   int64
	Entries int
}

// FullBudget is the budget of one environment: Lambda's 250 MB, MaxEntries.
func FullBudget() *Budget { return &Budget{Bytes: MaxUnpackedSize, Entries: MaxEntries} }

// ArchiveInfo describes a checked archive.
type ArchiveInfo struct {
	Entries      int
	UnpackedSize int64
}

// entry is a checked zip entry: its cleaned path and, for a symlink, its target.
type entry struct {
	f      *zip.File
	name   string
	target string
}

// Check opens the archive at zipPath and checks that every entry stays inside root (the
// folder it will be unpacked into, e.g. /var/task): no absolute names, no "..", no symlink
// pointing out of root (also through other symlinks of the archive), no more than
// MaxUnpackedSize bytes unpacked and MaxEntries entries. It reads symlink targets but no
// file contents.
func Check(zipPath, root string) (ArchiveInfo, error) {
	r, err := zip.OpenReader(zipPath)
	if err != nil {
		return ArchiveInfo{}, fmt.Errorf("not a valid .zip archive: %w", err)
	}
	defer r.Close()
	_, info, err := checkEntries(&r.Reader, root, FullBudget())
	return info, err
}

// CheckBytes is Check for an archive in memory.
func CheckBytes(data []byte, root string) (ArchiveInfo, error) {
	r, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return ArchiveInfo{}, fmt.Errorf("not a valid .zip archive: %w", err)
	}
	_, info, err := checkEntries(r, root, FullBudget())
	return info, err
}

// checkEntries checks every entry of r against root and the budget b (not spent).
func checkEntries(r *zip.Reader, root string, b *Budget) ([]entry, ArchiveInfo, error) {
	var (
		out  []entry
		info ArchiveInfo
	)
	if len(r.File) > b.Entries {
		return nil, info, fmt.Errorf("the archive has %d files, folders and symlinks; the code and its layers may have %d in all (%d left)", len(r.File), MaxEntries, b.Entries)
	}
	links := map[string]string{} // the archive's symlinks, by cleaned name (the last entry wins)
	for _, f := range r.File {
		name, err := entryPath(f.Name)
		if err != nil {
			return nil, info, err
		}
		e := entry{f: f, name: name}
		if f.Mode()&fs.ModeSymlink != 0 {
			target, err := readSmall(f, 4096)
			if err != nil {
				return nil, info, fmt.Errorf("reading the symlink %q: %w", f.Name, err)
			}
			if err := symlinkInside(name, target, root); err != nil {
				return nil, info, err
			}
			e.target = target
			links[name] = target
		} else if !f.Mode().IsDir() && !f.Mode().IsRegular() {
			return nil, info, fmt.Errorf("%w: entry %q is neither a file, a folder nor a symlink", ErrUnsafeArchive, f.Name)
		} else {
			delete(links, name)
		}
		info.UnpackedSize += int64(f.UncompressedSize64)
		if info.UnpackedSize > b.Bytes || f.UncompressedSize64 > MaxUnpackedSize {
			return nil, info, tooManyBytes(b)
		}
		info.Entries++
		if name != "." {
			out = append(out, e)
		}
	}
	// Each symlink, resolved through the others as the kernel will: a chain may leave root
	// although every link alone stays inside.
	readlink := func(rel string) (string, bool, error) {
		t, ok := links[rel]
		return t, ok, nil
	}
	for _, e := range out {
		if e.target != "" {
			if err := resolveInside(root, e.name, readlink); err != nil {
				return nil, info, err
			}
		}
	}
	return out, info, nil
}

// cutRoot cuts root's components off the absolute path p, without cleaning what follows
// (a ".." there may follow a symlink).
func cutRoot(p, root string) (string, bool) {
	if root == "" {
		return "", false
	}
	parts := func(s string) []string {
		var out []string
		for _, c := range strings.Split(s, "/") {
			if c != "" && c != "." {
				out = append(out, c)
			}
		}
		return out
	}
	rp, pp := parts(path.Clean(root)), parts(p)
	if len(pp) < len(rp) {
		return "", false
	}
	for i, c := range rp {
		if pp[i] != c {
			return "", false
		}
	}
	return strings.Join(pp[len(rp):], "/"), true
}

func tooManyBytes(b *Budget) error {
	return fmt.Errorf("the archive unpacks to more than the %d bytes left of the %d bytes the code and its layers may unpack to", b.Bytes, MaxUnpackedSize)
}

// resolveInside resolves the symlink at name (relative to root) the way the kernel will,
// following every symlink readlink knows on the way (readlink takes a path relative to
// root, without symlinks in its folders), and fails with ErrUnsafeArchive when a step
// leaves root or the chain is longer than MaxSymlinkHops.
func resolveInside(root, name string, readlink func(rel string) (string, bool, error)) error {
	hops := 0
	var walk func(stack []string, p string) ([]string, error)
	walk = func(stack []string, p string) ([]string, error) {
		if path.IsAbs(p) {
			// Root's own components, literally (no "..", no symlink), then the rest inside.
			rel, ok := cutRoot(p, root)
			if !ok {
				return nil, fmt.Errorf("%w: symlink %q leads to %q, outside %s", ErrUnsafeArchive, name, p, root)
			}
			stack, p = nil, rel
		}
		for _, c := range strings.Split(p, "/") {
			switch c {
			case "", ".":
				continue
			case "..":
				if len(stack) == 0 {
					return nil, fmt.Errorf("%w: symlink %q leads out of %s (through %q)", ErrUnsafeArchive, name, root, p)
				}
				stack = stack[:len(stack)-1]
				continue
			}
			cur := append(stack[:len(stack):len(stack)], c)
			target, isLink, err := readlink(strings.Join(cur, "/"))
			if err != nil {
				return nil, err
			}
			if !isLink {
				stack = cur
				continue
			}
			if hops++; hops > MaxSymlinkHops {
				return nil, fmt.Errorf("%w: symlink %q: more than %d symlinks to follow (a loop?)", ErrUnsafeArchive, name, MaxSymlinkHops)
			}
			if stack, err = walk(stack, target); err != nil {
				return nil, err
			}
		}
		return stack, nil
	}
	_, err := walk(nil, name)
	return err
}

// entryPath cleans an entry name and refuses one that escapes its folder (zip-slip).
func entryPath(name string) (string, error) {
	if strings.ContainsRune(name, 0) {
		return "", fmt.Errorf("%w: entry %q has a NUL byte in its name", ErrUnsafeArchive, name)
	}
	n := strings.ReplaceAll(name, `\`, "/")
	if path.IsAbs(n) || (len(n) > 1 && n[1] == ':') {
		return "", fmt.Errorf("%w: entry %q has an absolute path", ErrUnsafeArchive, name)
	}
	c := path.Clean(n)
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("%w: entry %q escapes its folder", ErrUnsafeArchive, name)
	}
	return c, nil
}

// symlinkInside refuses a symlink (at name, relative to root) whose target leaves root.
func symlinkInside(name, target, root string) error {
	if target == "" {
		return fmt.Errorf("%w: symlink %q has an empty target", ErrUnsafeArchive, name)
	}
	var resolved string
	if path.IsAbs(target) {
		rel := strings.TrimPrefix(path.Clean(target), path.Clean(root))
		if root == "" || rel == path.Clean(target) || (rel != "" && !strings.HasPrefix(rel, "/")) {
			return fmt.Errorf("%w: symlink %q points to %q, outside %s", ErrUnsafeArchive, name, target, root)
		}
		return nil
	}
	resolved = path.Join(path.Dir(name), target)
	if resolved == ".." || strings.HasPrefix(resolved, "../") {
		return fmt.Errorf("%w: symlink %q points to %q, outside %s", ErrUnsafeArchive, name, target, root)
	}
	return nil
}

func readSmall(f *zip.File, max int64) (string, error) {
	rc, err := f.Open()
	if err != nil {
		return "", err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, max+1))
	if err != nil {
		return "", err
	}
	if int64(len(b)) > max {
		return "", errors.New("target too long")
	}
	return string(b), nil
}

// Extract unpacks the archive at zipPath into dest, which is root as the function sees it
// (dest and root differ only in tests), within a full budget (FullBudget).
func Extract(zipPath, dest, root string) (ArchiveInfo, error) {
	return ExtractWithin(zipPath, dest, root, FullBudget())
}

// ExtractWithin unpacks the archive at zipPath into dest, which is root as the function
// sees it (dest and root differ only in tests), and spends what it unpacks from b: an
// archive over what is left of b is refused before anything is written. Existing files are
// replaced, so that unpacking layers one after the other into the same folder lets the
// last one win. Every write goes through an os.Root, which refuses to follow a symlink out
// of dest even if Check missed one; afterwards every symlink in dest (earlier layers'
// included) is resolved again on disk, so that a chain through a link another archive left
// is refused too.
func ExtractWithin(zipPath, dest, root string, b *Budget) (ArchiveInfo, error) {
	r, err := zip.OpenReader(zipPath)
	if err != nil {
		return ArchiveInfo{}, fmt.Errorf("not a valid .zip archive: %w", err)
	}
	defer r.Close()
	entries, info, err := checkEntries(&r.Reader, root, b)
	if err != nil {
		return info, err
	}
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return info, err
	}
	dr, err := os.OpenRoot(dest)
	if err != nil {
		return info, err
	}
	defer dr.Close()
	var written int64
	for _, e := range entries {
		if err := extractEntry(dr, e, &written, b.Bytes); err != nil {
			return info, fmt.Errorf("unpacking %q into %s: %w", e.f.Name, root, err)
		}
	}
	b.Bytes -= written
	b.Entries -= info.Entries
	if err := checkLinksOnDisk(dr, root); err != nil {
		return info, err
	}
	return info, nil
}

// checkLinksOnDisk resolves every symlink under dr as the kernel will.
func checkLinksOnDisk(dr *os.Root, root string) error {
	readlink := func(rel string) (string, bool, error) {
		fi, err := dr.Lstat(rel)
		if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			return "", false, nil // missing (a dangling link) or not a link
		}
		t, err := dr.Readlink(rel)
		return t, err == nil, err
	}
	return fs.WalkDir(dr.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return resolveInside(root, p, readlink)
		}
		return nil
	})
}

func extractEntry(dr *os.Root, e entry, written *int64, limit int64) error {
	if dir := path.Dir(e.name); dir != "." {
		if err := dr.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	mode := e.f.Mode()
	if mode.IsDir() {
		if fi, err := dr.Lstat(e.name); err == nil && !fi.IsDir() {
			if err := dr.Remove(e.name); err != nil {
				return err
			}
		}
		return dr.MkdirAll(e.name, 0o755)
	}
	// A later layer replaces a file or symlink of an earlier one (never writes through it).
	if fi, err := dr.Lstat(e.name); err == nil {
		if fi.IsDir() {
			if err := dr.RemoveAll(e.name); err != nil {
				return err
			}
		} else if err := dr.Remove(e.name); err != nil {
			return err
		}
	}
	if e.target != "" {
		return dr.Symlink(e.target, e.name)
	}
	rc, err := e.f.Open()
	if err != nil {
		return err
	}
	defer rc.Close()
	perm := mode.Perm()&0o755 | 0o644
	out, err := dr.OpenFile(e.name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	// The sizes in the archive's directory may lie: the bytes written are counted.
	n, err := io.Copy(out, io.LimitReader(rc, limit-*written+1))
	*written += n
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil && *written > limit {
		err = fmt.Errorf("the archive unpacks to more than the %d bytes left of the %d bytes the code and its layers may unpack to", limit, MaxUnpackedSize)
	}
	if err == nil {
		err = dr.Chmod(e.name, perm) // umask-free
	}
	return err
}

// ZipFiles builds a deterministic .zip archive (sorted names, fixed times) of flat files,
// each executable (a ConfigMap can't carry modes, and `bootstrap` must run).
func ZipFiles(files map[string][]byte) ([]byte, error) {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, n := range names {
		if _, err := entryPath(n); err != nil || strings.Contains(n, "/") {
			return nil, fmt.Errorf("%w: file name %q", ErrUnsafeArchive, n)
		}
		h := &zip.FileHeader{Name: n, Method: zip.Deflate, Modified: time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)}
		h.SetMode(0o755)
		w, err := zw.CreateHeader(h)
		if err != nil {
			return nil, err
		}
		if _, err := w.Write(files[n]); err != nil {
			return nil, err
		}
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// diskBlock is what an entry may take on disk beyond its bytes: a folder's block, or the
// rest of a file's last block.
const diskBlock = 4096

// UnpackedDiskBound is the most the code and its layers take on a node's disk once
// unpacked within a FullBudget: the bytes, plus a block per entry. Function pods size the
// emptyDirs they are unpacked into with it (the kubelet evicts a pod that writes more).
func UnpackedDiskBound() int64 { return MaxUnpackedSize + MaxEntries*diskBlock }
