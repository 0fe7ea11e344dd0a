//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// arm64Node is the node hack/cluster/arm64-node.sh adds.
const arm64Node = "klambda-dev-arm64"

// machineBootstrap answers each event with the machine it runs on, as its processes see it
// (uname -m: qemu-user reports aarch64, the x86_64 kernel x86_64), and the ELF machine of the
// program running it, /bin/sh's busybox, and of the shim (e_machine: 183 aarch64, 62 x86-64),
// found at init. The loop forks only wget: each process start costs ~0.15 s of CPU under
// qemu-user.
const machineBootstrap = `#!/bin/sh
api="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation"
elf() { od -An -t u2 -j 18 -N 2 "$1" | tr -d ' '; }
answer="{\"machine\":\"$(uname -m)\",\"program\":$(elf /bin/busybox),\"shim\":$(elf /klambda/runtime-shim)}"
cr=$(printf '\r')
while true; do
	wget -q -S -O /tmp/event "$api/next" 2>/tmp/headers || { sleep 0.2; continue; }
	id=
	while IFS= read -r line; do
		case $line in *[Ll]ambda-[Rr]untime-[Aa]ws-[Rr]equest-[Ii]d:*) id=${line#*: }; id=${id%"$cr"} ;; esac
	done </tmp/headers
	wget -q -O /dev/null --post-data "$answer" "$api/$id/response"
done
`

// machineHandler is machineBootstrap's answer from Python: platform.machine() (os.uname) and
// the ELF machine of the interpreter and of the shim.
const machineHandler = `import os, platform, sys

def elf(path):
    with open(path, "rb") as f:
        return int.from_bytes(f.read(20)[18:20], "little")

def handler(event, context):
    return {"machine": platform.machine(), "program": elf(os.path.realpath(sys.executable)), "shim": elf("/klambda/runtime-shim")}
`

// machineNode is machineBootstrap's answer from Node.js: os.machine() (uname) and the ELF
// machine of the node binary and of the shim.
const machineNode = `const fs = require("fs"), os = require("os");
function elf(path) {
  const b = Buffer.alloc(20), fd = fs.openSync(path, "r");
  fs.readSync(fd, b, 0, 20, 0);
  fs.closeSync(fd);
  return b.readUInt16LE(18);
}
exports.handler = async () => ({machine: os.machine(), program: elf(fs.realpathSync(process.execPath)), shim: elf("/klambda/runtime-shim")});
`

// binfmtArm64 says why arm64 programs cannot run here ("" when they can): qemu-aarch64
// must be registered in binfmt_misc, enabled, with the F flag (containers have no qemu).
func binfmtArm64() string {
	b, err := os.ReadFile("/proc/sys/fs/binfmt_misc/qemu-aarch64")
	if err != nil {
		return "qemu-aarch64 is not registered in binfmt_misc (apt-get install qemu-user-static binfmt-support; update-binfmts --enable qemu-aarch64): " + err.Error()
	}
	s := string(b)
	if !strings.HasPrefix(s, "enabled") {
		return "qemu-aarch64 is registered in binfmt_misc but disabled (update-binfmts --enable qemu-aarch64)"
	}
	for _, line := range strings.Split(s, "\n") {
		if flags, ok := strings.CutPrefix(line, "flags: "); ok && strings.Contains(flags, "F") {
			return ""
		}
	}
	return "qemu-aarch64's binfmt_misc entry lacks the F flag: containers without qemu inside cannot run arm64 programs"
}

// TestArm64FunctionOnEmulatedNode: arm64 Functions run end to end on an arm64 node. The
// test adds one (hack/cluster/arm64-node.sh up: a second kubelet and containerd whose arm64
// images run under qemu-user), creates Functions with architectures [arm64] from ConfigMaps
// (provided.al2023 with a shell bootstrap; python3.12 and nodejs22.x when the node has their
// images), invokes them through the activator, and checks each answer came from an aarch64
// process of an arm64 program in a pod on that node; an x86_64 twin answers x86_64 from the first node.
// The node is removed at the end (arm64-node.sh down), so no other test sees it.
func TestArm64FunctionOnEmulatedNode(t *testing.T) {
	if !cluster.Local {
		t.Skip("needs the local cluster (hack/cluster/arm64-node.sh adds a node to it)")
	}
	if why := binfmtArm64(); why != "" {
		t.Skip(why)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	script := filepath.Join(cluster.RepoRoot, "hack", "cluster", "arm64-node.sh")
	nodeScript := func(ctx context.Context, arg string) error {
		cmd := exec.CommandContext(ctx, script, arg)
		cmd.Dir = cluster.RepoRoot
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		cmd.Env = append(os.Environ(), "KUBECONFIG="+cluster.Kubeconfig)
		return cmd.Run()
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if err := nodeScript(ctx, "down"); err != nil {
			t.Errorf("arm64-node.sh down: %v", err)
		}
	})
	if err := nodeScript(ctx, "up"); err != nil {
		t.Fatalf("arm64-node.sh up: %v", err)
	}
	node, err := cluster.Kube.CoreV1().Nodes().Get(ctx, arm64Node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if a := node.Labels[corev1.LabelArchStable]; a != "arm64" {
		t.Fatalf("node %s is labelled %s=%q", arm64Node, corev1.LabelArchStable, a)
	}

	ns := cluster.Namespace(t)
	// Before the node goes: the function's pods leave it while it still runs.
	t.Cleanup(func() { deleteFunctionsAndWait(t, ns) })
	for name, data := range map[string]map[string]string{"sh-code": {"bootstrap": machineBootstrap}, "py-code": {"machine.py": machineHandler}, "js-code": {"index.js": machineNode}} {
		if err := cluster.Client.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: data}); err != nil {
			t.Fatal(err)
		}
	}
	// hasImage: the node reports image (its status lists images once the kubelet has
	// looked, within a minute of its start).
	hasImage := func(image string) bool {
		err := wait.PollUntilContextTimeout(ctx, time.Second, time.Minute, true, func(ctx context.Context) (bool, error) {
			node, err := cluster.Kube.CoreV1().Nodes().Get(ctx, arm64Node, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			for _, img := range node.Status.Images {
				if slices.Contains(img.Names, image) {
					return true, nil
				}
			}
			return false, nil
		})
		return err == nil
	}
	sdk := cluster.LambdaClient(ctx, t, ns, cluster.InvokerToken(ctx, t, ns))
	type machine struct {
		Machine string `json:"machine"`
		Program int    `json:"program"`
		Shim    int    `json:"shim"`
	}
	for _, tc := range []struct {
		fn                            string
		runtime, handler, code, image string
		arch                          lambdav1alpha1.Architecture
		node, uname                   string
		elf                           int
	}{
		{"sh-arm64", "provided.al2023", "bootstrap", "sh-code", "", lambdav1alpha1.ArchitectureArm64, arm64Node, "aarch64", 183},
		{"sh-x86", "provided.al2023", "bootstrap", "sh-code", "", lambdav1alpha1.ArchitectureX8664, "klambda-dev", "x86_64", 62},
		{"py-arm64", "python3.12", "machine.handler", "py-code", "klambda.local/python:3.12", lambdav1alpha1.ArchitectureArm64, arm64Node, "aarch64", 183},
		{"js-arm64", "nodejs22.x", "index.handler", "js-code", "klambda.local/nodejs:22", lambdav1alpha1.ArchitectureArm64, arm64Node, "aarch64", 183},
	} {
		t.Run(tc.fn, func(t *testing.T) {
			if tc.image != "" && !hasImage(tc.image) {
				// arm64-node.sh builds its python and nodejs images only when their inputs are there.
				t.Skipf("node %s has no image %s (arm64-node.sh up said why)", arm64Node, tc.image)
			}
			fn := &lambdav1alpha1.Function{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: tc.fn},
				Spec: lambdav1alpha1.FunctionSpec{FunctionConfiguration: lambdav1alpha1.FunctionConfiguration{
					Runtime: lambdav1alpha1.Runtime(tc.runtime), Handler: tc.handler, Timeout: 30, MemorySize: 1024,
					Architectures: []lambdav1alpha1.Architecture{tc.arch},
					Code:          lambdav1alpha1.FunctionCode{CodeSource: lambdav1alpha1.CodeSource{ConfigMapRef: &lambdav1alpha1.ConfigMapCodeSource{Name: tc.code}}},
				}},
			}
			if err := cluster.Client.Create(ctx, fn); err != nil {
				t.Fatal(err)
			}
			if _, err := cluster.WaitForFunctionActive(ctx, ns, tc.fn, 3*time.Minute); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			out, err := sdk.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(tc.fn), Payload: []byte(`{}`)})
			if err != nil {
				t.Fatalf("invoke: %v", err)
			}
			if out.FunctionError != nil {
				t.Fatalf("function error %s: %s", *out.FunctionError, out.Payload)
			}
			var m machine
			if err := json.Unmarshal(out.Payload, &m); err != nil {
				t.Fatalf("answer %s: %v", out.Payload, err)
			}
			if m.Machine != tc.uname || m.Program != tc.elf || m.Shim != tc.elf {
				t.Fatalf("%s (%s): the function reports machine %q, ELF machine %d of its program, %d of the shim; want %q, %d, %d",
					tc.runtime, tc.arch, m.Machine, m.Program, m.Shim, tc.uname, tc.elf, tc.elf)
			}
			pods, err := functionPods(ctx, ns, tc.fn, VersionLatest)
			if err != nil {
				t.Fatal(err)
			}
			if len(pods) != 1 || pods[0].Spec.NodeName != tc.node {
				var where []string
				for _, p := range pods {
					where = append(where, p.Name+"@"+p.Spec.NodeName)
				}
				t.Fatalf("pods %v, want one on %s", where, tc.node)
			}
			// The pod tolerates the arm64 node's taint through the manager's
			// config.tolerations (values-local.yaml), and only an arm64 function's does.
			tolerated := slices.ContainsFunc(pods[0].Spec.Tolerations, func(tl corev1.Toleration) bool {
				return tl.Key == corev1.LabelArchStable && tl.Value == "arm64" && tl.Effect == corev1.TaintEffectNoSchedule
			})
			if tolerated != (tc.arch == lambdav1alpha1.ArchitectureArm64) {
				t.Fatalf("%s pod tolerations %+v", tc.arch, pods[0].Spec.Tolerations)
			}
			t.Logf("answered %s from pod %s on node %s (cold start and invoke: %v)", out.Payload, pods[0].Name, tc.node, time.Since(start).Round(time.Millisecond))
		})
	}
}

// deleteFunctionsAndWait deletes the namespace's Functions and waits (up to 2 min) until
// their pods are gone.
func deleteFunctionsAndWait(t *testing.T, ns string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := cluster.Client.DeleteAllOf(ctx, &lambdav1alpha1.Function{}, client.InNamespace(ns)); err != nil {
		t.Errorf("deleting the functions of %s: %v", ns, err)
		return
	}
	err := wait.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
		pods, err := cluster.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		return err == nil && len(pods.Items) == 0, nil
	})
	if err != nil {
		t.Errorf("the pods of %s did not go within 2 min: %v", ns, err)
	}
}
