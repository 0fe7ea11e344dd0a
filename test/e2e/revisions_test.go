//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// answerBootstrap is a custom runtime that answers every event with {"code":"<code>"}.
func answerBootstrap(code string) string {
	return replyBootstrap(`'{"code":"` + code + `"}'`)
}

// replyBootstrap is a custom runtime that answers every event with body, a shell word
// (quoted as the shell should read it; it may expand, e.g. "$(cat /opt/file)").
func replyBootstrap(body string) string {
	return `#!/bin/sh
set -u
api="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation"
while true; do
	headers=$(mktemp)
	wget -q -S -O /dev/null "$api/next" 2>"$headers" || { rm -f "$headers"; sleep 0.2; continue; }
	id=$(grep -i 'Lambda-Runtime-Aws-Request-Id:' "$headers" | sed 's/.*: *//' | tr -d '\r ')
	wget -q -O /dev/null --post-data ` + body + ` "$api/$id/response"
	rm -f "$headers"
done
`
}

// answered is one invocation as a caller saw it.
type answered struct {
	start, end time.Time
	code       string
	err        string
}

// TestUpdateSwitchesWithoutMixedCode: a Function whose new code answers differently is
// invoked continuously through the activator while it is updated. No invocation that starts
// after another has seen the new code sees the old code (no mixing), every invocation
// succeeds, the old revision is removed afterwards, and a failed update (the new package
// does not match its sha256) keeps the new code serving with Ready=False/Stalled.
func TestUpdateSwitchesWithoutMixedCode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	ns := cluster.Namespace(t)
	urlA, shaA, err := cluster.ServeCode(ns+"-mix-a.zip", BootstrapZip(t, []byte(answerBootstrap("A"))))
	if err != nil {
		t.Fatal(err)
	}
	urlB, shaB, err := cluster.ServeCode(ns+"-mix-b.zip", BootstrapZip(t, []byte(answerBootstrap("B"))))
	if err != nil {
		t.Fatal(err)
	}
	fn := &lambdav1alpha1.Function{}
	fn.Namespace, fn.Name = ns, "mix"
	fn.Spec.Runtime, fn.Spec.Handler, fn.Spec.Timeout = "provided.al2023", "x", 5
	fn.Spec.Code.URL, fn.Spec.Code.SHA256 = urlA, shaA
	if err := cluster.Client.Create(ctx, fn); err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.WaitForFunctionActive(ctx, ns, "mix", 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	lc := cluster.LambdaClient(ctx, t, ns, cluster.InvokerToken(ctx, t, ns))

	// Callers invoke without pause until stopped.
	var mu sync.Mutex
	var got []answered
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				a := answered{start: time.Now()}
				out, err := lc.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("mix"), Payload: []byte(`{}`)})
				a.end = time.Now()
				switch {
				case err != nil:
					a.err = err.Error()
				case out.FunctionError != nil:
					a.err = *out.FunctionError + ": " + string(out.Payload)
				default:
					var r struct{ Code string }
					if err := json.Unmarshal(out.Payload, &r); err != nil {
						a.err = "bad payload " + string(out.Payload)
					}
					a.code = r.Code
				}
				mu.Lock()
				got = append(got, a)
				mu.Unlock()
			}
		}()
	}
	count := func(code string) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, a := range got {
			if a.code == code {
				n++
			}
		}
		return n
	}
	waitFor := func(what string, timeout time.Duration, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(timeout)
		for !cond() {
			if time.Now().After(deadline) {
				close(stop)
				wg.Wait()
				t.Fatalf("%s: not within %s", what, timeout)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	waitFor("answers from the first code", 2*time.Minute, func() bool { return count("A") >= 20 })

	// The update, while the callers go on.
	patchFunction(ctx, t, ns, "mix", func(f *lambdav1alpha1.Function) { f.Spec.Code.URL, f.Spec.Code.SHA256 = urlB, shaB })
	waitFor("answers from the new code", 3*time.Minute, func() bool { return count("B") >= 20 })
	cur := getE2EFunction(ctx, t, ns, "mix")
	if cur.Status.LastUpdateStatus != lambdav1alpha1.LastUpdateSuccessful || !meta.IsStatusConditionTrue(cur.Status.Conditions, contract.ConditionReady) {
		t.Errorf("after the switch: lastUpdateStatus %s, conditions %+v", cur.Status.LastUpdateStatus, cur.Status.Conditions)
	}
	servingAfterUpdate := cur.Status.ServingDeployment

	// A failed update: the package does not match its sha256. The new code keeps serving.
	// The pinned digest is one no code ever had: with the code store, a digest the store
	// already holds (shaA) is taken from the store without downloading the URL at all.
	urlBad, _, err := cluster.ServeCode(ns+"-mix-bad.zip", BootstrapZip(t, []byte(answerBootstrap("BAD"))))
	if err != nil {
		t.Fatal(err)
	}
	_, shaNever, err := cluster.ServeCode(ns+"-mix-never.zip", BootstrapZip(t, []byte(answerBootstrap("NEVER"))))
	if err != nil {
		t.Fatal(err)
	}
	patchFunction(ctx, t, ns, "mix", func(f *lambdav1alpha1.Function) { f.Spec.Code.URL, f.Spec.Code.SHA256 = urlBad, shaNever })
	waitFor("the failed update reported", 2*time.Minute, func() bool {
		f := getE2EFunction(ctx, t, ns, "mix")
		return f.Status.ObservedGeneration == f.Generation && f.Status.LastUpdateStatus == lambdav1alpha1.LastUpdateFailed
	})
	cur = getE2EFunction(ctx, t, ns, "mix")
	if cur.Status.State != lambdav1alpha1.StateActive || meta.IsStatusConditionTrue(cur.Status.Conditions, contract.ConditionReady) ||
		!meta.IsStatusConditionTrue(cur.Status.Conditions, contract.ConditionStalled) || cur.Status.ServingDeployment != servingAfterUpdate {
		t.Errorf("after a failed update: state %s, serving %s (was %s), conditions %+v", cur.Status.State, cur.Status.ServingDeployment, servingAfterUpdate, cur.Status.Conditions)
	}
	failedAt := time.Now()
	bBefore := count("B")
	waitFor("answers after the failed update", time.Minute, func() bool { return count("B") >= bBefore+20 })
	close(stop)
	wg.Wait()

	// The verdict over every invocation.
	sort.Slice(got, func(i, j int) bool { return got[i].start.Before(got[j].start) })
	var firstNewEnd time.Time
	for _, a := range got {
		if a.code == "B" && (firstNewEnd.IsZero() || a.end.Before(firstNewEnd)) {
			firstNewEnd = a.end
		}
	}
	var errs, mixed, bad []string
	n := map[string]int{}
	for _, a := range got {
		n[a.code]++
		switch {
		case a.err != "":
			errs = append(errs, fmt.Sprintf("%s: %s", a.start.Format("15:04:05.000"), a.err))
		case a.code == "A" && a.start.After(firstNewEnd):
			mixed = append(mixed, fmt.Sprintf("old code started %s after the new code had answered", a.start.Sub(firstNewEnd)))
		case a.code != "A" && a.code != "B":
			bad = append(bad, a.code)
		case a.code != "B" && a.start.After(failedAt):
			bad = append(bad, "after the failed update: "+a.code)
		}
	}
	t.Logf("%d invocations: %v; %d errors", len(got), n, len(errs))
	if len(mixed) > 0 {
		t.Errorf("%d invocations saw the old code after the new code had answered, e.g. %s", len(mixed), mixed[0])
	}
	if len(bad) > 0 {
		t.Errorf("unexpected answers: %v", bad)
	}
	if len(errs) > 0 {
		t.Errorf("%d invocations failed, e.g. %v", len(errs), errs[:min(len(errs), 5)])
	}

	// The old revision is removed once drained (timeout 5 s + 5 s); the serving one stays.
	deadline := time.Now().Add(time.Minute)
	for {
		var list appsv1.DeploymentList
		if err := cluster.Client.List(ctx, &list, client.InNamespace(ns), versionSelector("mix", contract.LatestLabelValue)); err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, d := range list.Items {
			names = append(names, d.Name)
		}
		if len(names) == 1 && names[0] == servingAfterUpdate {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("$LATEST Deployments %s, want only the serving %s", strings.Join(names, ","), servingAfterUpdate)
		}
		time.Sleep(time.Second)
	}
}

func getE2EFunction(ctx context.Context, t *testing.T, ns, name string) *lambdav1alpha1.Function {
	t.Helper()
	var f lambdav1alpha1.Function
	if err := cluster.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &f); err != nil {
		t.Fatal(err)
	}
	return &f
}

// patchFunction changes a Function's spec, retrying on conflicts.
func patchFunction(ctx context.Context, t *testing.T, ns, name string, mutate func(*lambdav1alpha1.Function)) {
	t.Helper()
	for i := 0; i < 10; i++ {
		f := getE2EFunction(ctx, t, ns, name)
		mutate(f)
		if err := cluster.Client.Update(ctx, f); err == nil {
			return
		}
	}
	t.Fatalf("updating Function %s/%s: too many conflicts", ns, name)
}
