// Command activatorscale measures the activator with many functions at zero replicas,
// against a real kube-apiserver and etcd (test/apiserver: envtest with klambda's CRDs;
// no kubelet, so no pods — nothing runs, everything is at zero):
//
//   - RSS of the activator process (cmd/activator, built and run as a subprocess) idle
//     with no functions (the baseline, same run), after 1,000 functions with two versions,
//     an alias and three Deployments each were added while it ran, and in a second
//     activator started afterwards (initial list instead of watch events);
//
//   - the time from an Alias change (the PATCH answered by the API server) to the
//     activator routing by it (a DryRun answering the new X-Amz-Executed-Version),
//     against the baseline of an informer on Aliases in this process seeing the same
//     change: the floor for anything fed by informers.
//
//     KUBEBUILDER_ASSETS=$(hack/envtest-assets.sh) go run ./bench/activatorscale [-functions 1000] [-changes 50]
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	"github.com/klambda/klambda/test/apiserver"
)

const ns = "scale"

func main() {
	functions := flag.Int("functions", 1000, "Functions to create (each: $LATEST and versions 1 and 2, alias live, three Deployments at zero).")
	changes := flag.Int("changes", 50, "Alias changes to time.")
	workers := flag.Int("workers", 8, "Concurrent creates.")
	flag.Parse()
	ctrllog.SetLogger(logr.Discard()) // envtest's own chatter
	if err := run(*functions, *changes, *workers); err != nil {
		fmt.Fprintln(os.Stderr, "activatorscale:", err)
		os.Exit(1)
	}
}

func run(functions, changes, workers int) (err error) {
	ctx := context.Background()
	tmp, err := os.MkdirTemp("", "activatorscale")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w (activator logs kept in %s)", err, tmp)
			return
		}
		_ = os.RemoveAll(tmp)
	}()
	bin := filepath.Join(tmp, "activator")
	build := exec.Command("go", "build", "-o", bin, "./cmd/activator")
	build.Dir = apiserver.RepoRoot()
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("building cmd/activator: %w", err)
	}
	srv, err := apiserver.Start()
	if err != nil {
		return err
	}
	defer func() { _ = srv.Stop() }()
	kubeconfig := filepath.Join(tmp, "kubeconfig")
	if err := writeKubeconfig(srv.Config, kubeconfig); err != nil {
		return err
	}
	c := srv.Client
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		return err
	}

	first, err := startActivator(ctx, bin, kubeconfig, filepath.Join(tmp, "first.log"))
	if err != nil {
		return err
	}
	defer first.stop()
	time.Sleep(2 * time.Second) // settle after sync
	rssEmpty := first.rss()

	start := time.Now()
	if err := populate(ctx, c, functions, workers); err != nil {
		return err
	}
	fmt.Printf("created %d functions (+%d versions, %d aliases, %d Deployments) in %v\n", functions, 2*functions, functions, 3*functions,
		time.Since(start).Round(time.Millisecond))
	// The first activator has every alias once the last one routes.
	last := fmt.Sprintf("fn-%04d", functions-1)
	if err := waitRoute(ctx, first.url, last+":live", "1", 2*time.Minute); err != nil {
		return fmt.Errorf("first activator: %w", err)
	}
	time.Sleep(2 * time.Second)
	rssWatched := first.rss()

	second, err := startActivator(ctx, bin, kubeconfig, filepath.Join(tmp, "second.log"))
	if err != nil {
		return err
	}
	defer second.stop()
	if err := waitRoute(ctx, second.url, last+":live", "1", 2*time.Minute); err != nil {
		return fmt.Errorf("second activator: %w", err)
	}
	time.Sleep(2 * time.Second)
	rssListed := second.rss()
	second.stop()

	// Alias changes: the informer baseline and the activator, timed from the same PATCH.
	seen, err := watchAliases(ctx, srv.Config, c.Scheme())
	if err != nil {
		return err
	}
	var watchLat, routeLat []time.Duration
	for i := 0; i < changes; i++ {
		name := fmt.Sprintf("fn-%04d", (i*7919)%functions)
		to := "2"
		if i%2 == 1 {
			to = "1"
		}
		// Each function's alias flips 1 → 2 the first time it is chosen.
		var a lambdav1alpha1.Alias
		if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name + "-live"}, &a); err != nil {
			return err
		}
		if a.Spec.FunctionVersion == to {
			if to == "2" {
				to = "1"
			} else {
				to = "2"
			}
		}
		drainSeen(seen)
		patch := []byte(`{"spec":{"functionVersion":"` + to + `"}}`)
		t0 := time.Now()
		if err := c.Patch(ctx, &a, client.RawPatch(types.MergePatchType, patch)); err != nil {
			return err
		}
		var wg sync.WaitGroup
		var wl time.Duration
		wg.Add(1)
		go func() {
			defer wg.Done()
			wl = waitSeen(seen, a.Name, to, t0, 30*time.Second)
		}()
		rl, err := timeRoute(ctx, first.url, name+":live", to, t0, 30*time.Second)
		wg.Wait()
		if err != nil {
			return err
		}
		watchLat, routeLat = append(watchLat, wl), append(routeLat, rl)
	}

	mb := func(kb int) string { return fmt.Sprintf("%.1f MB", float64(kb)/1024) }
	fmt.Printf("\nactivator with %d functions at zero replicas (%d Versions, %d Aliases, %d Deployments), real kube-apiserver %s\n\n",
		functions, 2*functions, functions, 3*functions, srv.Version)
	fmt.Printf("%-52s %12s %8s\n", "", "value", "ratio")
	fmt.Printf("%-52s %12s %8s\n", "RSS, no functions (baseline)", mb(rssEmpty), "1.00x")
	fmt.Printf("%-52s %12s %7.2fx\n", "RSS, functions added while running (watch)", mb(rssWatched), float64(rssWatched)/float64(rssEmpty))
	fmt.Printf("%-52s %12s %7.2fx\n", "RSS, activator started with them (list)", mb(rssListed), float64(rssListed)/float64(rssEmpty))
	fmt.Printf("%-52s %12.1f KB\n", "RSS per function (watch - baseline)", float64(rssWatched-rssEmpty)/float64(functions))
	fmt.Println()
	fmt.Printf("alias change → routing, %d changes (from the PATCH's answer)\n", changes)
	fmt.Printf("%-52s %12s %12s %12s\n", "", "p50", "p99", "max")
	pw, pr := pcts(watchLat), pcts(routeLat)
	fmt.Printf("%-52s %12v %12v %12v\n", "an informer sees the change (baseline)", pw[0], pw[1], pw[2])
	fmt.Printf("%-52s %12v %12v %12v\n", "activator routes by it (DryRun)", pr[0], pr[1], pr[2])
	fmt.Printf("%-52s %12v %12v %12v\n", "added", pr[0]-pw[0], pr[1]-pw[1], pr[2]-pw[2])
	return nil
}

func pcts(d []time.Duration) [3]time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	at := func(p float64) time.Duration { return s[int(p*float64(len(s)-1))].Round(10 * time.Microsecond) }
	return [3]time.Duration{at(0.5), at(0.99), s[len(s)-1].Round(10 * time.Microsecond)}
}

type aliasSeen struct{ name, version string }

// watchAliases runs an informer on Aliases in this process (what any informer-fed router
// can do at best) and reports every alias's version as it changes.
func watchAliases(ctx context.Context, cfg *rest.Config, scheme *runtime.Scheme) (<-chan aliasSeen, error) {
	ca, err := cache.New(cfg, cache.Options{Scheme: scheme})
	if err != nil {
		return nil, err
	}
	inf, err := ca.GetInformer(ctx, &lambdav1alpha1.Alias{})
	if err != nil {
		return nil, err
	}
	ch := make(chan aliasSeen, 1024)
	_, err = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{UpdateFunc: func(_, o any) {
		if a, ok := o.(*lambdav1alpha1.Alias); ok {
			ch <- aliasSeen{a.Name, a.Spec.FunctionVersion}
		}
	}})
	if err != nil {
		return nil, err
	}
	go func() { _ = ca.Start(ctx) }()
	if !ca.WaitForCacheSync(ctx) {
		return nil, fmt.Errorf("alias informer did not sync")
	}
	return ch, nil
}

func drainSeen(ch <-chan aliasSeen) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

func waitSeen(ch <-chan aliasSeen, name, version string, t0 time.Time, timeout time.Duration) time.Duration {
	deadline := time.After(timeout)
	for {
		select {
		case s := <-ch:
			if s.name == name && s.version == version {
				return time.Since(t0)
			}
		case <-deadline:
			return -1
		}
	}
}

// populate creates the functions, versions, aliases and Deployments, with the statuses
// the controllers would have written (there are none here).
func populate(ctx context.Context, c client.Client, functions, workers int) error {
	jobs := make(chan int)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				if err := createFunction(ctx, c, fmt.Sprintf("fn-%04d", i)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	var err error
loop:
	for i := 0; i < functions; i++ {
		select {
		case jobs <- i:
		case err = <-errs:
			break loop
		}
	}
	close(jobs)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errs:
		default:
		}
	}
	return err
}

func createFunction(ctx context.Context, c client.Client, name string) error {
	fn := &lambdav1alpha1.Function{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: lambdav1alpha1.FunctionSpec{FunctionConfiguration: lambdav1alpha1.FunctionConfiguration{
			Runtime: "provided.al2023", Handler: "bootstrap", Timeout: 10,
			Code: lambdav1alpha1.FunctionCode{CodeSource: lambdav1alpha1.CodeSource{URL: "http://example.invalid/" + name + ".zip",
				SHA256: strings.Repeat("ab", 32)}},
		}},
	}
	if err := c.Create(ctx, fn); err != nil {
		return fmt.Errorf("creating function %s: %w", name, err)
	}
	fn.Status.State = lambdav1alpha1.StateActive
	fn.Status.ObservedGeneration = fn.Generation
	if err := c.Status().Update(ctx, fn); err != nil {
		return fmt.Errorf("function %s status: %w", name, err)
	}
	for _, n := range []string{"1", "2"} {
		v := &lambdav1alpha1.Version{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-" + n},
			Spec: lambdav1alpha1.VersionSpec{FunctionName: name}}
		if err := c.Create(ctx, v); err != nil {
			return fmt.Errorf("creating version %s: %w", v.Name, err)
		}
		v.Status.Version, v.Status.State = n, lambdav1alpha1.StateActive
		if err := c.Status().Update(ctx, v); err != nil {
			return fmt.Errorf("version %s status: %w", v.Name, err)
		}
	}
	a := &lambdav1alpha1.Alias{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-live"},
		Spec: lambdav1alpha1.AliasSpec{FunctionName: name, Name: "live", FunctionVersion: "1"}}
	if err := c.Create(ctx, a); err != nil {
		return fmt.Errorf("creating alias %s: %w", a.Name, err)
	}
	for _, v := range []string{"latest", "1", "2"} {
		lbl := map[string]string{"lambda.klambda.dev/function": name, "lambda.klambda.dev/version": v}
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-" + v, Labels: lbl},
			Spec: appsv1.DeploymentSpec{Replicas: new(int32), Selector: &metav1.LabelSelector{MatchLabels: lbl},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: lbl},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "function", Image: "klambda.local/provided:al2023"}}}}}}
		if err := c.Create(ctx, d); err != nil {
			return fmt.Errorf("creating Deployment %s: %w", d.Name, err)
		}
	}
	return nil
}

type activator struct {
	cmd  *exec.Cmd
	url  string
	once sync.Once
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startActivator runs cmd/activator (auth and async off, no metrics server) against the
// API server and waits until its informers have synced.
func startActivator(ctx context.Context, bin, kubeconfig, logFile string) (*activator, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "--kubeconfig", kubeconfig, "--listen-address", "127.0.0.1:"+strconv.Itoa(port),
		"--metrics-address", "", "--auth=false", "--async=false", "--default-namespace", ns)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	a := &activator{cmd: cmd, url: "http://127.0.0.1:" + strconv.Itoa(port)}
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		resp, err := http.Get(a.url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return a, nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	a.stop()
	return nil, fmt.Errorf("the activator was not ready within 2 minutes (log: %s)", logFile)
}

func (a *activator) stop() {
	a.once.Do(func() {
		_ = a.cmd.Process.Kill()
		_ = a.cmd.Wait()
	})
}

// rss is the process's resident set in KB (VmRSS).
func (a *activator) rss() int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", a.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			if len(f) >= 2 {
				kb, _ := strconv.Atoi(f[1])
				return kb
			}
		}
	}
	return 0
}

var hc = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}, Timeout: 5 * time.Second}

// executedVersion asks for a DryRun of name:qualifier and answers X-Amz-Executed-Version.
func executedVersion(ctx context.Context, base, target string) (string, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/2015-03-31/functions/"+target+"/invocations", nil)
	req.Header.Set(contract.HeaderInvocationType, contract.InvocationDryRun)
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return "", fmt.Errorf("DryRun %s: HTTP %d %s", target, resp.StatusCode, resp.Header.Get(contract.HeaderErrorType))
	}
	return resp.Header.Get(contract.HeaderExecutedVersion), nil
}

func waitRoute(ctx context.Context, base, target, version string, timeout time.Duration) error {
	_, err := timeRoute(ctx, base, target, version, time.Now(), timeout)
	return err
}

// timeRoute polls (back to back) until target routes to version; answers the time since t0.
func timeRoute(ctx context.Context, base, target, version string, t0 time.Time, timeout time.Duration) (time.Duration, error) {
	var last string
	var lastErr error
	for time.Since(t0) < timeout {
		v, err := executedVersion(ctx, base, target)
		if err == nil && v == version {
			return time.Since(t0), nil
		}
		last, lastErr = v, err
	}
	return 0, fmt.Errorf("%s still routes to %q (%v) after %v; want %s", target, last, lastErr, timeout, version)
}

func writeKubeconfig(cfg *rest.Config, path string) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["envtest"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["envtest"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	kc.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "envtest"}
	kc.CurrentContext = "envtest"
	return clientcmd.WriteToFile(*kc, path)
}
