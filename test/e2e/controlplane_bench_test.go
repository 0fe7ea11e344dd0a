//go:build e2e

package e2e

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	"github.com/klambda/klambda/test/ziptest"
)

var (
	controlPlaneRounds = flag.Int("controlplane.rounds", 5, "BenchmarkControlPlane: rounds (each: one create and one update by each path)")
	controlPlaneZipMB  = flag.Int("controlplane.zipmb", 3, "BenchmarkControlPlane: size of each .zip in MB (incompressible)")
)

// paddedZip is a provided.al2023 package answering {"code":code}, padded with mb MB of
// random bytes stored uncompressed, so that every round moves a new archive of that size.
func paddedZip(b testing.TB, code string, mb int) []byte {
	b.Helper()
	pad := make([]byte, mb<<20)
	_, _ = rand.Read(pad)
	return ziptest.Files(b, ziptest.File{Name: "bootstrap", Body: []byte(answerBootstrap(code)), Mode: 0o755},
		ziptest.File{Name: "padding.bin", Body: pad, Store: true})
}

// BenchmarkControlPlane: issue 20's figure. On the local cluster (the chart's bundled code
// store), the time from a deploy tool's request to the function being realized — Active,
// this generation observed, LastUpdateStatus Successful, as the SDK waiters
// FunctionActiveV2 / FunctionUpdatedV2 see it — for CreateFunction and UpdateFunctionCode
// with a ZipFile (aws-sdk-go-v2 against the activator's control-plane API: the upload goes
// through the activator into the store), against the same change applied with kubectl
// apply (a Function whose code.url is the same archive on the node's code server, already
// uploaded there: the manager downloads it and copies it into the store). Both are watched
// the same way (the Function's status, polled every 20 ms). Rounds alternate which path
// goes first. Target: ≤ 1.2× kubectl apply.
//
//	make bench-controlplane   # go test -tags e2e -run '^$' -bench ControlPlane -benchtime 1x ./test/e2e/
func BenchmarkControlPlane(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	if !cluster.Local {
		b.Skip("needs the local cluster (the node's code server)")
	}
	ns := cluster.Namespace(b)
	lc := cluster.LambdaClient(ctx, b, ns, deployerToken(ctx, b, ns))
	mb := *controlPlaneZipMB

	realized := func(name string) error {
		return wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
			var f lambdav1alpha1.Function
			if err := cluster.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &f); err != nil {
				return false, nil
			}
			if f.Status.State == lambdav1alpha1.StateFailed || f.Status.LastUpdateStatus == lambdav1alpha1.LastUpdateFailed {
				return false, fmt.Errorf("function %s failed: %s %s", name, f.Status.StateReasonCode, f.Status.StateReason)
			}
			return f.Status.ObservedGeneration == f.Generation && f.Status.State == lambdav1alpha1.StateActive &&
				(f.Status.LastUpdateStatus == "" || f.Status.LastUpdateStatus == lambdav1alpha1.LastUpdateSuccessful), nil
		})
	}
	apply := func(name, url, sha string) error {
		manifest := fmt.Sprintf(`apiVersion: lambda.klambda.dev/v1alpha1
kind: Function
metadata: {name: %s, namespace: %s}
spec:
  runtime: provided.al2023
  handler: x
  timeout: 5
  code: {url: %q, sha256: %q}
`, name, ns, url, sha)
		cmd := exec.CommandContext(ctx, kubectlPath(), "--kubeconfig", cluster.Kubeconfig, "apply", "-f", "-")
		cmd.Stdin = strings.NewReader(manifest)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("kubectl apply: %v: %s", err, out)
		}
		return nil
	}

	var apiCreate, apiUpdate, kubeCreate, kubeUpdate []time.Duration
	for r := 0; r < *controlPlaneRounds; r++ {
		apiName, kubeName := fmt.Sprintf("api-%d", r), fmt.Sprintf("kubectl-%d", r)
		zips := map[string][]byte{}
		for _, k := range []string{"api-1", "api-2", "kube-1", "kube-2"} {
			zips[k] = paddedZip(b, fmt.Sprintf("%s-%d", k, r), mb)
		}
		// The kubectl path's archives are on the code server before its clock starts, as a
		// GitOps repository's artifacts are published before the sync.
		urls := map[string][2]string{}
		for _, k := range []string{"kube-1", "kube-2"} {
			url, sha, err := cluster.ServeCode(fmt.Sprintf("%s-%s-%d.zip", ns, k, r), zips[k])
			if err != nil {
				b.Fatal(err)
			}
			urls[k] = [2]string{url, sha}
		}
		viaAPI := func() {
			start := time.Now()
			if _, err := lc.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String(apiName),
				Runtime: types.RuntimeProvidedal2023, Handler: aws.String("x"), Timeout: aws.Int32(5),
				Role: aws.String("arn:aws:iam::000000000000:role/deployer"), Code: &types.FunctionCode{ZipFile: zips["api-1"]}}); err != nil {
				b.Fatalf("CreateFunction: %v", err)
			}
			if err := realized(apiName); err != nil {
				b.Fatal(err)
			}
			apiCreate = append(apiCreate, time.Since(start))
			start = time.Now()
			if _, err := lc.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{FunctionName: aws.String(apiName), ZipFile: zips["api-2"]}); err != nil {
				b.Fatalf("UpdateFunctionCode: %v", err)
			}
			if err := realized(apiName); err != nil {
				b.Fatal(err)
			}
			apiUpdate = append(apiUpdate, time.Since(start))
		}
		viaKubectl := func() {
			start := time.Now()
			if err := apply(kubeName, urls["kube-1"][0], urls["kube-1"][1]); err != nil {
				b.Fatal(err)
			}
			if err := realized(kubeName); err != nil {
				b.Fatal(err)
			}
			kubeCreate = append(kubeCreate, time.Since(start))
			start = time.Now()
			if err := apply(kubeName, urls["kube-2"][0], urls["kube-2"][1]); err != nil {
				b.Fatal(err)
			}
			if err := realized(kubeName); err != nil {
				b.Fatal(err)
			}
			kubeUpdate = append(kubeUpdate, time.Since(start))
		}
		if r%2 == 0 {
			viaAPI()
			viaKubectl()
		} else {
			viaKubectl()
			viaAPI()
		}
		for _, n := range []string{apiName, kubeName} {
			f := &lambdav1alpha1.Function{}
			f.Namespace, f.Name = ns, n
			_ = cluster.Client.Delete(ctx, f)
		}
	}
	p50 := func(d []time.Duration) time.Duration {
		s := append([]time.Duration(nil), d...)
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		return s[len(s)/2]
	}
	round := func(d []time.Duration) string {
		var parts []string
		for _, x := range d {
			parts = append(parts, x.Round(time.Millisecond).String())
		}
		return strings.Join(parts, " ")
	}
	b.Logf("%d rounds, %d MB zips (incompressible)", *controlPlaneRounds, mb)
	b.Logf("create → Active:       API %s (p50 %v)   kubectl apply %s (p50 %v)   ratio %.2f× (target ≤ 1.2×)",
		round(apiCreate), p50(apiCreate).Round(time.Millisecond), round(kubeCreate), p50(kubeCreate).Round(time.Millisecond),
		float64(p50(apiCreate))/float64(p50(kubeCreate)))
	b.Logf("update → Successful:   API %s (p50 %v)   kubectl apply %s (p50 %v)   ratio %.2f× (target ≤ 1.2×)",
		round(apiUpdate), p50(apiUpdate).Round(time.Millisecond), round(kubeUpdate), p50(kubeUpdate).Round(time.Millisecond),
		float64(p50(apiUpdate))/float64(p50(kubeUpdate)))
}
