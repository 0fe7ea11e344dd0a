//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// TestHelloGoInvoked is the cheap end-to-end check CI runs: the cluster is up, klambda is
// installed, and the aws-lambda-go example answers an invocation inside a pod run by the
// kubelet.
func TestHelloGoInvoked(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if !cluster.Local {
		t.Skip("needs the local cluster (the package is served from its node)")
	}
	ns := cluster.Namespace(t)

	fn := cluster.HelloGoFunction(ctx, t, ns, "hello-go")
	if err := cluster.Client.Create(ctx, fn); err != nil {
		t.Fatalf("creating the function: %v", err)
	}
	start := time.Now()
	if _, err := cluster.WaitForFunctionActive(ctx, ns, fn.Name, 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	t.Logf("function Active after %v", time.Since(start).Round(time.Millisecond))

	// Until the activator owns replicas, the test scales $LATEST to one environment.
	if err := cluster.ScaleFunction(ctx, ns, fn.Name, VersionLatest, 1); err != nil {
		t.Fatal(err)
	}
	pod, err := cluster.WaitForReadyPod(ctx, ns, fn.Name, VersionLatest, 3*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pod %s Ready after %v", pod.Name, time.Since(start).Round(time.Millisecond))

	res, err := cluster.InvokePod(ctx, pod, []byte(`{"name":"e2e"}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != 200 {
		t.Fatalf("invoke: HTTP %d %s: %s", res.Status, res.Header.Get("X-Amzn-Errortype"), res.Body)
	}
	var got struct {
		Message   string `json:"message"`
		RequestID string `json:"requestId"`
		Function  string `json:"function"`
	}
	if err := json.Unmarshal(res.Body, &got); err != nil {
		t.Fatalf("invoke answered %q: %v", res.Body, err)
	}
	if got.Message != "Hello, e2e!" || got.RequestID == "" || got.Function != fn.Name {
		t.Errorf("invoke answered %s; want message \"Hello, e2e!\", a request id and function %q", res.Body, fn.Name)
	}
	if fe := res.Header.Get("X-Amz-Function-Error"); fe != "" {
		t.Errorf("X-Amz-Function-Error = %q", fe)
	}
	// The cluster behaves like one: the function's log is read as kubectl logs reads it
	// (the API server streams it from the kubelet), with the line the function wrote and
	// the invocation's REPORT.
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		rc, err := cluster.Kube.CoreV1().Pods(ns).GetLogs(pod.Name, &corev1.PodLogOptions{}).Stream(ctx)
		if err != nil {
			t.Logf("logs of %s: %v", pod.Name, err)
			return false, nil
		}
		defer rc.Close()
		b, _ := io.ReadAll(io.LimitReader(rc, 1<<20))
		return strings.Contains(string(b), "greeting e2e") && strings.Contains(string(b), "REPORT RequestId: "+got.RequestID), nil
	})
	if err != nil {
		t.Errorf("the function pod's log (pods/log, as kubectl logs) never showed its greeting and REPORT: %v", err)
	}
}

// TestDevPrintsCommandsThatWorkAsPrinted runs what `make dev` prints at its end (example.sh's
// "kubectl:", "token:" and "invoke again:" commands) as a user would: in that order, in a new
// shell whose PATH has no kubectl and no other AWS CLI, from an empty folder.
func TestDevPrintsCommandsThatWorkAsPrinted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if !cluster.Local {
		t.Skip("needs the local cluster (make dev's own example)")
	}
	if _, err := os.Stat("/usr/bin/aws"); err != nil {
		t.Skip("the printed commands use /usr/bin/aws, which make dev installs (apt-get install awscli): not installed here")
	}
	cmd := exec.CommandContext(ctx, filepath.Join(cluster.RepoRoot, "hack", "cluster", "example.sh"))
	cmd.Dir = cluster.RepoRoot
	cmd.Env = append(os.Environ(), "KUBECONFIG="+cluster.Kubeconfig)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("hack/cluster/example.sh: %v\n%s\n%s", err, out, stderr.String())
	}
	script, err := printedCommands(string(out), "kubectl", "token", "invoke again")
	if err != nil {
		t.Fatalf("%v in what example.sh printed:\n%s", err, out)
	}
	t.Logf("the printed commands:\n%s", script)

	dir := t.TempDir()
	sh := exec.CommandContext(ctx, "/bin/bash", "-euo", "pipefail", "-c", script)
	sh.Dir = dir
	sh.Env = []string{"HOME=" + dir, "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"}
	res, err := sh.CombinedOutput()
	if err != nil {
		t.Fatalf("the printed commands failed: %v\n%s", err, res)
	}
	if !strings.Contains(string(res), `"message":"Hello, klambda!"`) {
		t.Errorf("the printed invocation did not print hello-go's answer:\n%s", res)
	}
}

// printedCommands is the shell script the given labels' lines of example.sh's summary make:
// a labelled line ("token:          CMD") and its continuation lines (16 spaces, then more of
// the command) carry the command from column 16 on. It fails when a label is missing.
func printedCommands(summary string, labels ...string) (string, error) {
	const col = 16
	want := map[string]bool{}
	for _, l := range labels {
		want[l] = true
	}
	var b strings.Builder
	found := map[string]bool{}
	in := false
	for _, line := range strings.Split(summary, "\n") {
		if len(line) <= col {
			in = false
			continue
		}
		head, rest := line[:col], line[col:]
		if strings.TrimSpace(head) == "" {
			if in {
				b.WriteString(rest + "\n")
			}
			continue
		}
		label, ok := strings.CutSuffix(strings.TrimSpace(head), ":")
		in = ok && want[label]
		if in {
			found[label] = true
			b.WriteString(rest + "\n")
		}
	}
	for _, l := range labels {
		if !found[l] {
			return "", fmt.Errorf("no %q line", l+":")
		}
	}
	return b.String(), nil
}
