// Command pool measures, on this machine without Kubernetes, what a pool saves a cold
// start inside the pod: a generic shim already running, specialized (code unpacked,
// runtime started) and invoked, against the one-container pod's own cold start — the
// runtime-shim exec process started with --code and invoked — in the same run, with the
// same aws-lambda-go function (test/compat/gofunction). It does not include the pod
// start a pool also saves (the cluster figure is `make bench-coldstart`, not yet wired
// for pools: docs/pools.md).
//
//	go run ./bench/pool -rounds 20
package main

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/klambda/klambda/api/contract"
	"github.com/klambda/klambda/bench/internal/load"
)

func main() {
	rounds := flag.Int("rounds", 20, "cold starts of each kind")
	shimBin := flag.String("shim", "", "a built runtime-shim (default: built from ./cmd/runtime-shim)")
	fnBin := flag.String("function", "", "a built aws-lambda-go bootstrap (default: built from ./test/compat/gofunction)")
	flag.Parse()
	if err := run(*rounds, *shimBin, *fnBin); err != nil {
		fmt.Fprintln(os.Stderr, "bench/pool:", err)
		os.Exit(1)
	}
}

func run(rounds int, shimBin, fnBin string) error {
	dir, err := os.MkdirTemp("", "bench-pool")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	shim, fn := filepath.Join(dir, "runtime-shim"), filepath.Join(dir, "bootstrap")
	if shimBin != "" {
		shim = shimBin
	} else {
		load.BuildEnv([]string{"CGO_ENABLED=0"}, shim, "./cmd/runtime-shim")
	}
	if fnBin != "" {
		fn = fnBin
	} else {
		load.BuildEnv([]string{"CGO_ENABLED=0"}, fn, "./test/compat/gofunction")
	}
	code, err := zipSource(fn, filepath.Join(dir, "code.zip"))
	if err != nil {
		return err
	}
	var plain, pooled []time.Duration
	for i := 0; i < rounds; i++ {
		d, err := plainColdStart(shim, code, filepath.Join(dir, fmt.Sprintf("p%d", i)))
		if err != nil {
			return err
		}
		plain = append(plain, d)
		d, err = pooledColdStart(shim, code, filepath.Join(dir, fmt.Sprintf("g%d", i)))
		if err != nil {
			return err
		}
		pooled = append(pooled, d)
	}
	p50, p95 := load.Percentile(plain, .50), load.Percentile(plain, .95)
	g50, g95 := load.Percentile(pooled, .50), load.Percentile(pooled, .95)
	fmt.Printf("cold start to first answer, %d rounds each (in-pod part only, no pod start)\n", rounds)
	fmt.Printf("  exec --code (today's one-container pod): p50 %7.1f ms  p95 %7.1f ms\n", ms(p50), ms(p95))
	fmt.Printf("  generic, specialized then invoked:       p50 %7.1f ms  p95 %7.1f ms\n", ms(g50), ms(g95))
	fmt.Printf("  ratio pooled/exec: p50 %.2f  p95 %.2f\n", ms(g50)/ms(p50), ms(g95)/ms(p95))
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func zipSource(bin, path string) (string, error) {
	b, err := os.ReadFile(bin)
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	h := &zip.FileHeader{Name: "bootstrap", Method: zip.Deflate}
	h.SetMode(0o755)
	w, err := zw.CreateHeader(h)
	if err != nil {
		return "", err
	}
	_, _ = w.Write(b)
	if err := zw.Close(); err != nil {
		return "", err
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		return "", err
	}
	sum := sha256.Sum256(buf.Bytes())
	return "file://" + path + "#sha256=" + hex.EncodeToString(sum[:]), nil
}

func startShim(shim string, args []string, env []string) (*exec.Cmd, string, error) {
	invoke, rapi := load.FreeAddr(), load.FreeAddr()
	cmd := exec.Command(shim, append([]string{args[0], "--listen=" + invoke, "--runtime-api=" + rapi}, args[1:]...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
	return cmd, "http://" + invoke, cmd.Start()
}

func stop(cmd *exec.Cmd) {
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
}

// invokeWhenUp retries the invoke until the shim listens and answers 200.
func invokeWhenUp(base, secret string) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		req, _ := http.NewRequest(http.MethodPost, base+contract.InvokePath, bytes.NewReader([]byte(`{"name":"bench"}`)))
		req.Header.Set(contract.HeaderInvokeSecret, secret)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer from %s: %v", base, err)
		}
		time.Sleep(time.Millisecond)
	}
}

func plainColdStart(shim, code, dir string) (time.Duration, error) {
	start := time.Now()
	cmd, base, err := startShim(shim, []string{"exec", "--code=" + code, "--task-root=" + dir + "/task", "--opt=" + dir + "/opt", "--scratch=" + os.TempDir(), "--", dir + "/task/bootstrap"},
		[]string{contract.InvokeSecretEnv + "=s"})
	if err != nil {
		return 0, err
	}
	defer stop(cmd)
	if err := invokeWhenUp(base, "s"); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

func pooledColdStart(shim, code, dir string) (time.Duration, error) {
	cmd, base, err := startShim(shim, []string{"generic", "--task-root=" + dir + "/task", "--opt=" + dir + "/opt", "--scratch=" + os.TempDir()},
		[]string{contract.PoolSecretEnv + "=pool"})
	if err != nil {
		return 0, err
	}
	defer stop(cmd)
	// The pool's part, not timed: the generic shim is up.
	for deadline := time.Now().Add(10 * time.Second); ; {
		resp, err := http.Get(base + contract.ReadyPath)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("generic shim not ready: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	spec, _ := json.Marshal(contract.Specialization{InvokeSecret: "s", Command: []string{dir + "/task/bootstrap"}, Code: code,
		Env: []contract.EnvVar{{Name: "AWS_LAMBDA_FUNCTION_NAME", Value: "bench"}, {Name: "LAMBDA_TASK_ROOT", Value: dir + "/task"}, {Name: "ROUND", Value: strconv.Itoa(0)}}})
	start := time.Now()
	req, _ := http.NewRequest(http.MethodPost, base+contract.SpecializePath, bytes.NewReader(spec))
	req.Header.Set(contract.HeaderPoolSecret, "pool")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("specialize: %s %s", resp.Status, body)
	}
	if err := invokeWhenUp(base, "s"); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}
