// Command pythondist unpacks one platform's CPython from the Go module
// github.com/kluctl/go-embed-python, which carries python-build-standalone's distributions
// (interpreter, shared library, standard library) for linux/amd64 and linux/arm64. The Go
// module proxy serves it where python.org and PyPI are out of reach; the local and release
// Python images (hack/cluster/images.sh, hack/release-images.sh) are built from what this
// writes.
//
//	pythondist -from MODDIR/python/internal/data/linux-amd64 -to DIR
//
// The module stores a tree as files.json (name, mode, symlink target, whether the file is
// gzip-compressed as NAME.gz) next to the files; this recreates the tree in DIR (which must
// not exist yet), refusing names and symlinks that would leave it.
package main

import (
	"compress/gzip"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
)

// entry is one line of go-embed-python's files.json (embed_util.fileListEntry).
type entry struct {
	Name       string      `json:"name"`
	Mode       fs.FileMode `json:"perm"`
	Symlink    string      `json:"symlink,omitempty"`
	Compressed bool        `json:"compressed,omitempty"`
}

func main() {
	from := flag.String("from", "", "a go-embed-python platform directory (holds files.json)")
	to := flag.String("to", "", "directory to create with the distribution")
	flag.Parse()
	if *from == "" || *to == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: pythondist -from DIR -to DIR")
		os.Exit(2)
	}
	if err := unpack(*from, *to); err != nil {
		fmt.Fprintln(os.Stderr, "pythondist:", err)
		os.Exit(1)
	}
}

func unpack(from, to string) error {
	b, err := os.ReadFile(filepath.Join(from, "files.json"))
	if err != nil {
		return err
	}
	var list struct {
		Files []entry `json:"files"`
	}
	if err := json.Unmarshal(b, &list); err != nil {
		return fmt.Errorf("%s/files.json: %w", from, err)
	}
	if len(list.Files) == 0 {
		return fmt.Errorf("%s/files.json lists no files", from)
	}
	if _, err := os.Lstat(to); err == nil {
		return fmt.Errorf("%s exists already", to)
	}
	if err := os.MkdirAll(to, 0o755); err != nil {
		return err
	}
	for _, e := range list.Files {
		if !filepath.IsLocal(e.Name) {
			return fmt.Errorf("files.json: %q is not a path inside the tree", e.Name)
		}
		dst := filepath.Join(to, e.Name)
		switch {
		case e.Symlink != "":
			if path.IsAbs(e.Symlink) || !filepath.IsLocal(path.Join(path.Dir(e.Name), e.Symlink)) {
				return fmt.Errorf("files.json: symlink %s -> %s points outside the tree", e.Name, e.Symlink)
			}
			err = os.Symlink(e.Symlink, dst)
		case e.Mode.IsDir():
			err = os.MkdirAll(dst, e.Mode.Perm()|0o700)
		case e.Mode.IsRegular():
			err = copyFile(filepath.Join(from, e.Name), dst, e.Compressed, e.Mode.Perm())
		default:
			err = fmt.Errorf("files.json: %s has mode %v, neither file, directory nor symlink", e.Name, e.Mode)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func copyFile(src, dst string, compressed bool, perm fs.FileMode) error {
	if compressed {
		src += ".gz"
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	var r io.Reader = in
	if compressed {
		gz, err := gzip.NewReader(in)
		if err != nil {
			return fmt.Errorf("%s: %w", src, err)
		}
		defer func() { _ = gz.Close() }() // a reader: nothing to flush
		r = gz
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, r); err != nil {
		out.Close()
		return fmt.Errorf("%s: %w", src, err)
	}
	return errors.Join(out.Close(), os.Chmod(dst, perm))
}
