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

// MaxUnpackedSize is Lambda's limit on unzipped code (and on each layer here).
const MaxUnpackedSize = 250 << 20

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
// pointing out of root, and no more than MaxUnpackedSize bytes unpacked. It reads symlink
// targets but no file contents.
func Check(zipPath, root string) (ArchiveInfo, error) {
	r, err := zip.OpenReader(zipPath)
	if err != nil {
		return ArchiveInfo{}, fmt.Errorf("not a valid .zip archive: %w", err)
	}
	defer r.Close()
	_, info, err := checkEntries(&r.Reader, root)
	return info, err
}

// CheckBytes is Check for an archive in memory.
func CheckBytes(data []byte, root string) (ArchiveInfo, error) {
	r, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return ArchiveInfo{}, fmt.Errorf("not a valid .zip archive: %w", err)
	}
	_, info, err := checkEntries(r, root)
	return info, err
}

func checkEntries(r *zip.Reader, root string) ([]entry, ArchiveInfo, error) {
	var (
		out  []entry
		info ArchiveInfo
	)
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
		} else if !f.Mode().IsDir() && !f.Mode().IsRegular() {
			return nil, info, fmt.Errorf("%w: entry %q is neither a file, a folder nor a symlink", ErrUnsafeArchive, f.Name)
		}
		info.UnpackedSize += int64(f.UncompressedSize64)
		if info.UnpackedSize > MaxUnpackedSize || f.UncompressedSize64 > MaxUnpackedSize {
			return nil, info, fmt.Errorf("the archive unpacks to more than %d bytes", MaxUnpackedSize)
		}
		info.Entries++
		if name != "." {
			out = append(out, e)
		}
	}
	return out, info, nil
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
// (dest and root differ only in tests). Existing files are replaced, so that unpacking
// layers one after the other into the same folder lets the last one win. Every write goes
// through an os.Root, which refuses to follow a symlink out of dest even if Check missed one.
func Extract(zipPath, dest, root string) (ArchiveInfo, error) {
	r, err := zip.OpenReader(zipPath)
	if err != nil {
		return ArchiveInfo{}, fmt.Errorf("not a valid .zip archive: %w", err)
	}
	defer r.Close()
	entries, info, err := checkEntries(&r.Reader, root)
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
		if err := extractEntry(dr, e, &written); err != nil {
			return info, fmt.Errorf("unpacking %q into %s: %w", e.f.Name, root, err)
		}
	}
	return info, nil
}

func extractEntry(dr *os.Root, e entry, written *int64) error {
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
	n, err := io.Copy(out, io.LimitReader(rc, MaxUnpackedSize-*written+1))
	*written += n
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil && *written > MaxUnpackedSize {
		err = fmt.Errorf("the archive unpacks to more than %d bytes", MaxUnpackedSize)
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
