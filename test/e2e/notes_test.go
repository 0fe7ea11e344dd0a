//go:build e2e

package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestNotesWorkAsWritten runs the commands of the installed release's NOTES.txt (helm get
// notes: every line indented by two spaces, in order, as one bash script) against the
// local cluster: a Function from a ConfigMap, a ServiceAccount allowed to invoke, its
// token, a port-forward to the activator and an invocation with the AWS CLI. The only
// change to the text: FN_NS names the test's namespace instead of default.
func TestNotesWorkAsWritten(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if !cluster.Local {
		t.Skip("needs the local cluster (its release and images)")
	}
	helm := os.Getenv("HELM")
	if helm == "" {
		t.Skip("HELM is not set (make test-e2e sets it)")
	}
	if _, err := exec.LookPath("aws"); err != nil {
		t.Skip("the AWS CLI is not installed")
	}
	kubeBin := filepath.Join(filepath.Dir(cluster.Kubeconfig), "..", "kube-v1.37.2", "bin")
	if _, err := os.Stat(filepath.Join(kubeBin, "kubectl")); err != nil {
		t.Skipf("no kubectl at %s", kubeBin)
	}
	ns := cluster.Namespace(t)

	notes, err := exec.CommandContext(ctx, helm, "get", "notes", "klambda", "-n", "klambda-system", "--kubeconfig", cluster.Kubeconfig).Output()
	if err != nil {
		t.Fatalf("helm get notes: %v", err)
	}
	script := notesCommands(string(notes))
	fnNS := regexp.MustCompile(`(?m)^FN_NS=default$`)
	if !fnNS.MatchString(script) {
		t.Fatalf("NOTES.txt sets no FN_NS=default; its commands:\n%s", script)
	}
	body := fnNS.ReplaceAllString(script, "FN_NS="+ns)
	for _, want := range []string{"kind: Function", "create token klambda-invoker --audience klambda", "aws lambda invoke", "port-forward"} {
		if !strings.Contains(body, want) {
			t.Fatalf("NOTES.txt's commands lack %q:\n%s", want, body)
		}
	}

	dir, out, err := runCommands(ctx, t, body, append(os.Environ(), "KUBECONFIG="+cluster.Kubeconfig, "PATH="+kubeBin+":"+os.Getenv("PATH")))
	t.Logf("NOTES.txt's commands:\n%s\noutput:\n%s", body, out)
	if err != nil {
		t.Fatalf("NOTES.txt's commands failed: %v", err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "out.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(got), `"message":"Hello, klambda!"`) || !strings.Contains(string(got), `"requestId":"`) {
		t.Fatalf("out.json: %s", got)
	}
}

// notesCommands are NOTES.txt's commands: every line indented by two spaces, in order, as
// one bash script that stops at the first failure.
func notesCommands(notes string) string {
	var script strings.Builder
	script.WriteString("set -euo pipefail\n")
	for _, line := range strings.Split(notes, "\n") {
		if strings.HasPrefix(line, "  ") {
			script.WriteString(strings.TrimPrefix(line, "  ") + "\n")
		}
	}
	return script.String()
}

// runCommands runs a bash script in a new directory with env, and returns that directory
// and what the script printed. A port-forward the script leaves in the background is in
// its process group and killed with it; the output goes to a file, not a pipe, which such
// a process would keep open.
func runCommands(ctx context.Context, t *testing.T, script string, env []string) (dir string, output []byte, err error) {
	t.Helper()
	dir = t.TempDir()
	cmd := exec.CommandContext(ctx, "bash", "-c", script)
	cmd.Dir = dir
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	outFile, err := os.Create(filepath.Join(t.TempDir(), "output"))
	if err != nil {
		t.Fatal(err)
	}
	defer outFile.Close()
	cmd.Stdout, cmd.Stderr = outFile, outFile
	err = cmd.Run()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	output, _ = os.ReadFile(outFile.Name())
	return dir, output, err
}
