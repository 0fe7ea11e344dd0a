// Package fauxqs runs fauxqs, a real SQS-compatible server (npm; the AWS JSON 1.0 protocol of
// aws-sdk-go-v2's SQS client), for tests, through test/brokers/fauxqs.sh.
package fauxqs

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// script is test/brokers/fauxqs.sh.
func script() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "fauxqs.sh")
}

// Installed reports whether `test/brokers/fauxqs.sh install` has run (in $KLAMBDA_CACHE).
func Installed() bool {
	cache := os.Getenv("KLAMBDA_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "klambda")
	}
	_, err := os.Stat(filepath.Join(cache, "fauxqs", "node_modules", "fauxqs", "dist", "cli.js"))
	return err == nil
}

// Start starts a private fauxqs on a free port, its files in base (a folder of the caller's:
// tests of several packages run their own servers at once), and returns its endpoint
// (http://127.0.0.1:PORT) and the function that stops it.
func Start(base string) (endpoint string, stop func(), err error) {
	env := append(os.Environ(), "KLAMBDA_FAUXQS_BASE="+base)
	start := exec.Command("bash", script(), "start")
	start.Env = env
	start.Stderr = os.Stderr
	out, err := start.Output()
	if err != nil {
		return "", nil, fmt.Errorf("starting fauxqs with %s: %w", script(), err)
	}
	return strings.TrimSpace(string(out)), func() {
		s := exec.Command("bash", script(), "stop")
		s.Env = env
		_ = s.Run()
	}, nil
}
