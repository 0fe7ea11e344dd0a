package shim

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klambda/klambda/api/contract"
	"github.com/klambda/klambda/internal/codeloader"
)

// The test binary is also the runtime of these tests: with GENERIC_TEST_RUNTIME set it
// serves invocations by answering what the function can see (its variables, its task
// root's files, /tmp's stand-in), so that a test can tell whose environment it is in.
func TestMain(m *testing.M) {
	if os.Getenv("GENERIC_TEST_RUNTIME") == "1" {
		testRuntime()
		return
	}
	os.Exit(m.Run())
}

func testRuntime() {
	api := "http://" + os.Getenv("AWS_LAMBDA_RUNTIME_API") + "/2018-06-01/runtime/invocation/"
	for {
		resp, err := http.Get(api + "next")
		if err != nil {
			os.Exit(2)
		}
		event, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		id := resp.Header.Get("Lambda-Runtime-Aws-Request-Id")
		env := map[string]string{}
		for _, kv := range os.Environ() {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
		var files []string
		entries, _ := os.ReadDir(os.Getenv("LAMBDA_TASK_ROOT"))
		for _, e := range entries {
			b, _ := os.ReadFile(filepath.Join(os.Getenv("LAMBDA_TASK_ROOT"), e.Name()))
			files = append(files, e.Name()+"="+string(b))
		}
		out, _ := json.Marshal(map[string]any{"event": json.RawMessage(event), "env": env, "files": files})
		r, err := http.Post(api+id+"/response", "application/json", bytes.NewReader(out))
		if err != nil {
			os.Exit(3)
		}
		r.Body.Close()
	}
}

type file struct {
	name, data string
}

// writeZip writes a .zip and returns its load-code source (file://…#sha256=…).
func writeZip(t *testing.T, path string, files ...file) string {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range files {
		w, err := zw.Create(f.name)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.WriteString(w, f.data)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(buf.Bytes())
	return "file://" + path + "#sha256=" + hex.EncodeToString(sum[:])
}

// syncBuffer is the shim's log.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type genericRig struct {
	g      *Generic
	base   string
	task   string
	log    *syncBuffer
	secret string
}

func startGeneric(t *testing.T) *genericRig {
	t.Helper()
	dir := t.TempDir()
	r := &genericRig{task: filepath.Join(dir, "task"), log: &syncBuffer{}, secret: "pool-secret-1"}
	g, err := NewGeneric(GenericOptions{
		Listen: "127.0.0.1:0", RuntimeAPI: "127.0.0.1:0", PoolSecret: r.secret,
		Load:    loadOptions(r.task, filepath.Join(dir, "opt"), filepath.Join(dir, "scratch")),
		BaseEnv: []string{"PATH=" + os.Getenv("PATH"), "GENERIC_TEST_RUNTIME=1", "FROM_IMAGE=yes"},
		Stdout:  r.log,
	})
	if err != nil {
		t.Fatal(err)
	}
	g.Start()
	t.Cleanup(g.Close)
	r.g, r.base = g, "http://"+g.InvokeAddr()
	return r
}

func (r *genericRig) do(t *testing.T, method, path string, hdr map[string]string, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, r.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func (r *genericRig) specialize(t *testing.T, spec contract.Specialization) (*http.Response, string) {
	t.Helper()
	b, _ := json.Marshal(spec)
	return r.do(t, http.MethodPost, contract.SpecializePath, map[string]string{contract.HeaderPoolSecret: r.secret}, string(b))
}

const invokePath = "/2015-03-31/functions/function/invocations"

type seen struct {
	Event map[string]any
	Env   map[string]string
	Files []string
}

func (r *genericRig) invoke(t *testing.T, secret, event string) (*http.Response, seen) {
	t.Helper()
	resp, body := r.do(t, http.MethodPost, invokePath, map[string]string{contract.HeaderInvokeSecret: secret}, event)
	var s seen
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal([]byte(body), &s); err != nil {
			t.Fatalf("answer %q: %v", body, err)
		}
	}
	return resp, s
}

func testSpec(t *testing.T, code, name, value string) contract.Specialization {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return contract.Specialization{
		Env: []contract.EnvVar{
			{Name: "AWS_LAMBDA_FUNCTION_NAME", Value: name},
			{Name: "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", Value: "256"},
			{Name: "AWS_LAMBDA_FUNCTION_TIMEOUT", Value: "5"},
			{Name: "AWS_LAMBDA_INITIALIZATION_TYPE", Value: "on-demand"},
			{Name: "SECRET_VALUE", Value: value},
			{Name: "FROM_IMAGE", Value: "overridden"},
		},
		InvokeSecret: "fn-secret-" + name,
		Command:      []string{exe},
		Code:         code,
	}
}

// A generic environment waits without a function; specialized once (pool secret checked,
// code unpacked, the function's variables set), it serves that function exactly as a
// one-container pod does, with Lambda's cold-start reporting, and never takes another.
func TestGenericSpecializeServesTheFunction(t *testing.T) {
	r := startGeneric(t)
	if resp, body := r.do(t, http.MethodGet, contract.ReadyPath, nil, ""); resp.StatusCode != 200 || body != "generic\n" {
		t.Fatalf("readyz before: %d %q", resp.StatusCode, body)
	}
	if resp, _ := r.do(t, http.MethodPost, invokePath, nil, "{}"); resp.StatusCode != http.StatusBadGateway || resp.Header.Get(contract.HeaderErrorType) != "ResourceNotReadyException" {
		t.Fatalf("invoke before specialization: %d %s", resp.StatusCode, resp.Header.Get(contract.HeaderErrorType))
	}
	code := writeZip(t, filepath.Join(t.TempDir(), "a.zip"), file{"owner.txt", "function-a"})
	spec := testSpec(t, code, "fn-a", "s3cr3t-a")
	spec.Env = append(spec.Env, contract.EnvVar{Name: "LAMBDA_TASK_ROOT", Value: r.task})
	b, _ := json.Marshal(spec)
	if resp, _ := r.do(t, http.MethodPost, contract.SpecializePath, map[string]string{contract.HeaderPoolSecret: "wrong"}, string(b)); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong pool secret: %d", resp.StatusCode)
	}
	if resp, body := r.specialize(t, spec); resp.StatusCode != 200 {
		t.Fatalf("specialize: %d %s", resp.StatusCode, body)
	}
	if resp, _ := r.invoke(t, r.secret, "{}"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the pool's secret still invokes: %d", resp.StatusCode)
	}
	resp, s := r.invoke(t, spec.InvokeSecret, `{"n":1}`)
	if resp.StatusCode != 200 {
		t.Fatalf("invoke: %d", resp.StatusCode)
	}
	if resp.Header.Get(contract.HeaderInitDuration) == "" {
		t.Fatal("the first invocation of a specialized environment has no Init Duration")
	}
	if s.Event["n"] != float64(1) {
		t.Fatalf("event %v", s.Event)
	}
	for k, want := range map[string]string{
		"SECRET_VALUE": "s3cr3t-a", "AWS_LAMBDA_FUNCTION_NAME": "fn-a", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
		"AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand", "FROM_IMAGE": "overridden",
	} {
		if s.Env[k] != want {
			t.Errorf("runtime's %s = %q, want %q", k, s.Env[k], want)
		}
	}
	for _, k := range []string{contract.PoolSecretEnv, contract.InvokeSecretEnv} {
		if _, ok := s.Env[k]; ok {
			t.Errorf("the runtime sees %s", k)
		}
	}
	if fmt.Sprint(s.Files) != "[owner.txt=function-a]" {
		t.Fatalf("task root %v", s.Files)
	}
	resp, _ = r.invoke(t, spec.InvokeSecret, `{"n":2}`)
	if resp.StatusCode != 200 || resp.Header.Get(contract.HeaderInitDuration) != "" {
		t.Fatalf("warm invoke: %d, init duration %q", resp.StatusCode, resp.Header.Get(contract.HeaderInitDuration))
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(r.log.String(), "\tMemory Size: 256 MB\t") || !strings.Contains(r.log.String(), "Init Duration: ") {
		if time.Now().After(deadline) {
			t.Fatalf("no REPORT with Memory Size 256 MB and Init Duration in the log:\n%s", r.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := strings.Count(r.log.String(), "Init Duration: "); n != 1 {
		t.Fatalf("%d REPORT lines with Init Duration, want 1:\n%s", n, r.log.String())
	}
	// Never another function's.
	other := testSpec(t, writeZip(t, filepath.Join(t.TempDir(), "b.zip"), file{"owner.txt", "function-b"}), "fn-b", "s3cr3t-b")
	if resp, _ := r.specialize(t, other); resp.StatusCode != http.StatusConflict {
		t.Fatalf("second specialization: %d", resp.StatusCode)
	}
	if resp, _ := r.invoke(t, other.InvokeSecret, "{}"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the other function's secret invokes: %d", resp.StatusCode)
	}
	if resp, body := r.do(t, http.MethodGet, contract.ReadyPath, nil, ""); resp.StatusCode != 200 || body != "ready\n" {
		t.Fatalf("readyz after: %d %q", resp.StatusCode, body)
	}
}

// A specialization that cannot be read leaves the environment generic (nothing was
// loaded); one whose code fails to load leaves it unusable for anyone.
func TestGenericFailedSpecializations(t *testing.T) {
	r := startGeneric(t)
	for _, body := range []string{`{`, `{"command":[]}`, `{"command":["x"]}`, `{"command":["x"],"invokeSecret":"s","env":[{"name":"A=B","value":""}]}`, `{"command":["x"],"invokeSecret":"s","extra":1}`, strings.Repeat(" ", contract.MaxSpecializationBytes+1)} {
		resp, _ := r.do(t, http.MethodPost, contract.SpecializePath, map[string]string{contract.HeaderPoolSecret: r.secret}, body)
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("specialization %.40q: %d, want 400", body, resp.StatusCode)
		}
	}
	if resp, _ := r.do(t, http.MethodGet, contract.ReadyPath, nil, ""); resp.StatusCode != 200 {
		t.Fatalf("not generic after refused specializations: %d", resp.StatusCode)
	}
	code := writeZip(t, filepath.Join(t.TempDir(), "a.zip"), file{"owner.txt", "function-a"})
	bad := testSpec(t, code[:strings.Index(code, "#sha256=")]+"#sha256="+strings.Repeat("0", 64), "fn-a", "x")
	if resp, body := r.specialize(t, bad); resp.StatusCode != http.StatusInternalServerError || !strings.Contains(body, "loading the code") {
		t.Fatalf("digest mismatch: %d %s", resp.StatusCode, body)
	}
	if resp, _ := r.do(t, http.MethodGet, contract.ReadyPath, nil, ""); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("readyz after a failed load: %d", resp.StatusCode)
	}
	if resp, _ := r.specialize(t, testSpec(t, code, "fn-b", "y")); resp.StatusCode != http.StatusConflict {
		t.Fatalf("a failed environment was specialized again: %d", resp.StatusCode)
	}
}

// A container restarted after its specialization keeps its emptyDirs: it must not come
// back as a generic environment holding a function's files.
func TestGenericRefusesAUsedTaskRoot(t *testing.T) {
	dir := t.TempDir()
	task := filepath.Join(dir, "task")
	if err := os.MkdirAll(task, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(task, "bootstrap"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := NewGeneric(GenericOptions{Listen: "127.0.0.1:0", RuntimeAPI: "127.0.0.1:0", PoolSecret: "s", Load: loadOptions(task, filepath.Join(dir, "opt"), dir)})
	if err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("err = %v", err)
	}
	if _, err := NewGeneric(GenericOptions{Listen: "127.0.0.1:0", RuntimeAPI: "127.0.0.1:0", Load: loadOptions(filepath.Join(dir, "t2"), filepath.Join(dir, "o2"), dir)}); err == nil {
		t.Fatal("a generic environment without a pool secret started")
	}
}

func TestMergeEnv(t *testing.T) {
	got := mergeEnv([]string{"A=1", "B=2"}, []contract.EnvVar{{Name: "B", Value: "x=y"}, {Name: "C", Value: ""}, {Name: "A", Value: "3"}})
	if fmt.Sprint(got) != "[A=3 B=x=y C=]" {
		t.Fatal(got)
	}
}

func loadOptions(task, opt, scratch string) codeloader.Options {
	_ = os.MkdirAll(scratch, 0o755)
	return codeloader.Options{TaskRoot: task, Opt: opt, Scratch: scratch}
}
