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
	var script strings.Builder
	script.WriteString("set -euo pipefail\n")
	for _, line := range strings.Split(string(notes), "\n") {
		if strings.HasPrefix(line, "  ") {
			script.WriteString(strings.TrimPrefix(line, "  ") + "\n")
		}
	}
	fnNS := regexp.MustCompile(`(?m)^FN_NS=default$`)
	if !fnNS.MatchString(script.String()) {
		t.Fatalf("NOTES.txt sets no FN_NS=default; its commands:\n%s", script.String())
	}
	body := fnNS.ReplaceAllString(script.String(), "FN_NS="+ns)
	for _, want := range []string{"kind: Function", "create token klambda-invoker --audience klambda", "aws lambda invoke", "port-forward"} {
		if !strings.Contains(body, want) {
			t.Fatalf("NOTES.txt's commands lack %q:\n%s", want, body)
		}
	}

	dir := t.TempDir()
	cmd := exec.CommandContext(ctx, "bash", "-c", body)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "KUBECONFIG="+cluster.Kubeconfig, "PATH="+kubeBin+":"+os.Getenv("PATH"))
	// The port-forward the notes start in the background is in this process group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// A file, not a pipe: the port-forward left in the background keeps its output open.
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
	out, _ := os.ReadFile(outFile.Name())
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
