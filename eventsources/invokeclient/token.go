package invokeclient

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// TokenSource gives the Kubernetes token a poller presents to the activator
// (Authorization: Bearer), which checks it with a TokenReview and a SubjectAccessReview for
// verb invoke on functions. It is asked before every invocation.
type TokenSource interface {
	Token() (string, error)
}

// FileToken reads a token file, such as the projected ServiceAccount token
// /var/run/secrets/kubernetes.io/serviceaccount/token, which the kubelet rotates by
// replacing the file. The token is re-read when the file changes (its modification time or
// size, seen through the kubelet's symlinks) and at least every RereadAfter, so a rotated
// token is used from the next invocation without a read per invocation.
type FileToken struct {
	Path string
	// RereadAfter bounds how long a read token is trusted without reading the file again;
	// 0 means a minute.
	RereadAfter time.Duration

	mu      sync.Mutex
	token   string
	modTime time.Time
	size    int64
	readAt  time.Time
}

// NewFileToken reads tokens from path.
func NewFileToken(path string) *FileToken { return &FileToken{Path: path} }

// Token returns the file's token, re-reading it when the file changed.
func (f *FileToken) Token() (string, error) {
	fi, err := os.Stat(f.Path)
	if err != nil {
		return "", fmt.Errorf("reading token file: %w", err)
	}
	reread := f.RereadAfter
	if reread <= 0 {
		reread = time.Minute
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.token != "" && fi.ModTime().Equal(f.modTime) && fi.Size() == f.size && time.Since(f.readAt) < reread {
		return f.token, nil
	}
	b, err := os.ReadFile(f.Path)
	if err != nil {
		return "", fmt.Errorf("reading token file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("token file %s is empty", f.Path)
	}
	f.token, f.modTime, f.size, f.readAt = tok, fi.ModTime(), fi.Size(), time.Now()
	return tok, nil
}

// StaticToken is a fixed token (tests, or no authentication with "").
type StaticToken string

// Token returns the string.
func (s StaticToken) Token() (string, error) { return string(s), nil }
