//go:build e2e

package e2e

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

var coldStartRounds = flag.Int("coldstart.rounds", 5, "BenchmarkColdStart: rounds (each: one plain pod, one cold invocation)")

// BenchmarkColdStart measures, on the local cluster, the first invocation of a function
// at zero replicas through the activator (the aws-lambda-go example: scale-up, pod start,
// code load, runtime init, the invocation) against the floor of the same run: a plain pod
// of the function's runtime image (sleep, no probe) going from Create to Ready. Each round
// also cold-starts an Image function (a shell custom runtime's image in the node's
// registry, run from the image the manager derived: one container). Rounds alternate
// whether the floor goes first. Target: both cold invocations within 300 ms of the floor.
//
//	make bench-coldstart   # go test -tags e2e -run '^$' -bench ColdStart -benchtime 1x ./test/e2e/
func BenchmarkColdStart(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	if !cluster.Local {
		b.Skip("needs the local cluster")
	}
	ns := cluster.Namespace(b)
	fn := cluster.HelloGoFunction(ctx, b, ns, "cold")
	// Back to zero soon after each round (the activator's minimum is 1 s).
	fn.Annotations = map[string]string{contract.AnnotationIdleTimeout: "1s"}
	if err := cluster.Client.Create(ctx, fn); err != nil {
		b.Fatal(err)
	}
	if _, err := cluster.WaitForFunctionActive(ctx, ns, fn.Name, 3*time.Minute); err != nil {
		b.Fatal(err)
	}
	d, err := cluster.FunctionDeployment(ctx, ns, fn.Name, VersionLatest)
	if err != nil {
		b.Fatal(err)
	}
	image := ""
	for _, c := range d.Spec.Template.Spec.Containers {
		if c.Name == "function" {
			image = c.Image
		}
	}
	if image == "" {
		b.Fatalf("no function container in %s", d.Name)
	}
	activator := cluster.ActivatorURL(ctx, b, ns)
	invokeURL := activator + "/2015-03-31/functions/" + fn.Name + "/invocations"
	token := cluster.InvokerToken(ctx, b, ns)
	// A first invocation pulls nothing new later (images are local) and authorizes once.
	if _, err := coldInvoke(ctx, invokeURL, token); err != nil {
		b.Fatal(err)
	}
	// An Image function (issue 23): a shell custom runtime's image in the node's registry,
	// which the local install runs in one container (status.derivedImageUri).
	imageFn := coldImageFunction(ctx, b, ns)
	imageURL := activator + "/2015-03-31/functions/" + imageFn + "/invocations"
	if _, err := coldInvoke(ctx, imageURL, token); err != nil { // pulls the derived image once
		b.Fatal(err)
	}

	var cold, coldImage, floor []time.Duration
	b.ResetTimer()
	for round := 0; round < *coldStartRounds; round++ {
		for _, f := range []string{fn.Name, imageFn} {
			if err := waitAtZero(ctx, ns, f); err != nil {
				b.Fatal(err)
			}
		}
		measureFloor := func() {
			f, err := plainPodReady(ctx, ns, fmt.Sprintf("floor-%d", round), image)
			if err != nil {
				b.Fatal(err)
			}
			floor = append(floor, f)
		}
		if round%2 == 1 {
			measureFloor()
		}
		wctx, stopWatch := context.WithCancel(ctx)
		timeline, err := watchPodStart(wctx, ns, fn.Name, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		c, err := coldInvoke(ctx, invokeURL, token)
		stopWatch()
		if err != nil {
			b.Fatal(err)
		}
		cold = append(cold, c)
		b.Logf("round %d: cold start as a watch saw it: %s; answered %v", round, timeline, c.Round(time.Millisecond))
		wctx, stopWatch = context.WithCancel(ctx)
		imageTimeline, err := watchPodStart(wctx, ns, imageFn, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		ci, err := coldInvoke(ctx, imageURL, token)
		stopWatch()
		if err != nil {
			b.Fatal(err)
		}
		coldImage = append(coldImage, ci)
		b.Logf("round %d: Image function cold start as a watch saw it: %s; answered %v", round, imageTimeline, ci.Round(time.Millisecond))
		if round%2 == 0 {
			measureFloor()
		}
		fl := floor[len(floor)-1]
		b.Logf("round %d: cold invocation %v, Image function %v, plain pod Ready %v: added %v, Image function added %v", round, c.Round(time.Millisecond),
			ci.Round(time.Millisecond), fl.Round(time.Millisecond), (c - fl).Round(time.Millisecond), (ci - fl).Round(time.Millisecond))
	}
	b.StopTimer()
	mc, mi, mf := median(cold), median(coldImage), median(floor)
	b.Logf("median of %d rounds: cold invocation %v, plain pod Ready %v: added %v (target ≤ 300ms), ratio %.2f",
		len(cold), mc.Round(time.Millisecond), mf.Round(time.Millisecond), (mc - mf).Round(time.Millisecond), float64(mc)/float64(mf))
	b.Logf("median of %d rounds: Image function cold invocation %v, plain pod Ready %v: added %v (target ≤ 300ms), ratio %.2f",
		len(coldImage), mi.Round(time.Millisecond), mf.Round(time.Millisecond), (mi - mf).Round(time.Millisecond), float64(mi)/float64(mf))
	b.ReportMetric(float64(mc.Milliseconds()), "cold-ms")
	b.ReportMetric(float64(mf.Milliseconds()), "pod-ready-ms")
	b.ReportMetric(float64((mc - mf).Milliseconds()), "added-ms")
	b.ReportMetric(float64(mc)/float64(mf), "ratio")
	b.ReportMetric(float64(mi.Milliseconds()), "image-cold-ms")
	b.ReportMetric(float64((mi - mf).Milliseconds()), "image-added-ms")
	b.ReportMetric(float64(mi)/float64(mf), "image-ratio")
}

// coldImageFunction creates an Image function of a shell custom runtime's image pushed to
// the node's registry (pushAnswerImage), idle after 1 s, and waits until it is Active in
// the one-container shape (its image derived); it returns its name.
func coldImageFunction(ctx context.Context, b *testing.B, ns string) string {
	b.Helper()
	reg, err := cluster.Registry()
	if err != nil {
		b.Fatal(err)
	}
	tag := reg + "/e2e/" + ns + "-cold-image:v1"
	pushAnswerImage(b, tag, "cold")
	fn := &lambdav1alpha1.Function{}
	fn.Namespace, fn.Name = ns, "cold-image"
	fn.Annotations = map[string]string{contract.AnnotationIdleTimeout: "1s"}
	fn.Spec.PackageType = lambdav1alpha1.PackageTypeImage
	fn.Spec.Timeout = 5
	fn.Spec.Code.ImageURI = tag
	if err := cluster.Client.Create(ctx, fn); err != nil {
		b.Fatal(err)
	}
	active, err := cluster.WaitForFunctionActive(ctx, ns, fn.Name, 3*time.Minute)
	if err != nil {
		b.Fatal(err)
	}
	if active.Status.DerivedImageURI == "" {
		b.Fatalf("Image function %s has no derived image (the local install sets imageFunctions): it would measure the sidecar shape", fn.Name)
	}
	return fn.Name
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// coldInvoke invokes and answers how long the 200 took.
func coldInvoke(ctx context.Context, url, token string) (time.Duration, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(`{"name":"cold"}`))
	req.Header.Set("Authorization", "Bearer "+token)
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	took := time.Since(start)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Amz-Function-Error") != "" {
		return 0, fmt.Errorf("invoke: HTTP %d %s: %s", resp.StatusCode, resp.Header.Get("X-Amzn-Errortype"), body)
	}
	return took, nil
}

// waitAtZero waits until the function's $LATEST has zero replicas and no pod left.
func waitAtZero(ctx context.Context, ns, name string) error {
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		n, _ := replicas(ctx, ns, name, VersionLatest)
		pods, err := functionPods(ctx, ns, name, VersionLatest)
		return n == 0 && err == nil && len(pods) == 0, nil
	})
}

// plainPodReady creates a pod running image (sleep, no probe), answers the time from
// Create to its Ready condition (polled every 20 ms), and deletes it.
func plainPodReady(ctx context.Context, ns, name, image string) (time.Duration, error) {
	pods := cluster.Kube.CoreV1().Pods(ns)
	grace := int64(0)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PodSpec{
		TerminationGracePeriodSeconds: &grace,
		Containers: []corev1.Container{{Name: "function", Image: image, ImagePullPolicy: corev1.PullIfNotPresent,
			Command: []string{"/bin/sh", "-c", "exec sleep 3600"}}},
	}}
	start := time.Now()
	if _, err := pods.Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return 0, err
	}
	defer func() { _ = pods.Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: &grace}) }()
	var took time.Duration
	err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := pods.Get(ctx, name, metav1.GetOptions{})
		if err != nil || !podReady(p) {
			return false, nil
		}
		took = time.Since(start)
		return true, nil
	})
	return took, err
}

// podTimeline records when a watch on a function's pods first saw each step of the
// first pod's start, relative to start: where a cold start's time goes.
type podTimeline struct {
	mu    sync.Mutex
	start time.Time
	steps []string
	seen  map[string]bool
}

func (pt *podTimeline) mark(step string) {
	pt.mu.Lock()
	defer pt.mu.Unlock()
	if !pt.seen[step] {
		pt.seen[step] = true
		pt.steps = append(pt.steps, fmt.Sprintf("%s %v", step, time.Since(pt.start).Round(time.Millisecond)))
	}
}

func (pt *podTimeline) String() string {
	pt.mu.Lock()
	defer pt.mu.Unlock()
	return strings.Join(pt.steps, ", ")
}

// watchPodStart follows the pods of a function version until ctx ends.
func watchPodStart(ctx context.Context, ns, name string, start time.Time) (*podTimeline, error) {
	pt := &podTimeline{start: start, seen: map[string]bool{}}
	w, err := cluster.Kube.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{
		LabelSelector: contract.LabelFunction + "=" + name + "," + contract.LabelVersion + "=" + contract.LatestLabelValue})
	if err != nil {
		return nil, err
	}
	go func() {
		defer w.Stop()
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok || p.DeletionTimestamp != nil {
				continue
			}
			pt.mark("pod created")
			if p.Spec.NodeName != "" {
				pt.mark("scheduled")
			}
			for _, cs := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
				if cs.State.Running != nil {
					pt.mark(cs.Name + " running")
				}
				if cs.State.Terminated != nil {
					pt.mark(cs.Name + " done")
				}
				if cs.Ready {
					pt.mark(cs.Name + " ready")
				}
			}
			if podReady(p) {
				pt.mark("pod Ready")
			}
		}
	}()
	return pt, nil
}
