// Command streaming measures a streamed response's time to first byte: from the
// function's own first write to the caller's receipt of it, through runtime-shim alone,
// through the activator (InvokeWithResponseStream) in front of it, and through a
// RESPONSE_STREAM function URL on the activator, in one run. The
// function is test/compat's aws-lambda-go function returning an io.Reader (op "stream"):
// each chunk carries the wall clock of its write (Unix ns), read on the same host.
// Run from the repository root:
//
//	go run ./bench/streaming [-n 1000] [-gap 5ms]
//
// Target (issue #19): through activator + shim, at most 1 ms after the function's write
// (p50).
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/protocol/eventstream"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/klambda/klambda/activator/functionurl"
	"github.com/klambda/klambda/activator/testrig"
	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	"github.com/klambda/klambda/bench/internal/load"
)

func main() {
	n := flag.Int("n", 1000, "invocations per path")
	gap := flag.Duration("gap", 5*time.Millisecond, "time the function waits between its two chunks")
	flag.Parse()

	dir, err := os.MkdirTemp("", "klambda-bench-streaming-")
	load.Check(err)
	defer os.RemoveAll(dir)
	shimBin, fnBin := filepath.Join(dir, "runtime-shim"), filepath.Join(dir, "gofunction")
	load.Build(shimBin, "./cmd/runtime-shim")
	load.Build(fnBin, "./test/compat/gofunction", "-tags", "lambda.norpc")

	invokeAddr, apiAddr := load.FreeAddr(), load.FreeAddr()
	cmd := exec.Command(shimBin, "exec", "--listen", invokeAddr, "--runtime-api", apiAddr, "--", fnBin)
	cmd.Env = append(os.Environ(), "AWS_LAMBDA_FUNCTION_TIMEOUT=30", "KLAMBDA_INVOKE_SECRET="+testrig.Secret)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	load.Check(cmd.Start())
	defer func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); _ = cmd.Wait() }()
	load.WaitReady("http://" + invokeAddr + contract.ReadyPath)

	rig := testrig.New(testrig.Options{WaitDeadline: 10 * time.Second})
	defer rig.Close()
	rig.Function("streamer", -1, 0)
	rig.Endpoints("streamer", "$LATEST", invokeAddr)
	// The same function behind a RESPONSE_STREAM function URL on the activator's listener.
	fn := &lambdav1alpha1.Function{ObjectMeta: metav1.ObjectMeta{Namespace: testrig.Namespace, Name: "streamer", UID: "bench"}}
	fn.Spec.FunctionURLConfig = &lambdav1alpha1.FunctionURLConfig{AuthType: lambdav1alpha1.FunctionURLAuthNone, InvokeMode: lambdav1alpha1.InvokeModeResponseStream}
	urls := &functionurl.Handler{Table: functionurl.NewTable(), API: rig.Handler, Invoker: rig.Core, AccountID: rig.Core.AccountID}
	urls.Table.SetFunction(fn)
	urlSrv := testrig.NewServer(urls.Wrap(rig.Handler))
	defer urlSrv.Close()
	streamURL := urlSrv.URL + contract.FunctionURLPathPrefix + contract.FunctionURLID("bench", testrig.Namespace, "streamer", "") + "/"
	urlPayload := []byte(fmt.Sprintf(`{"op":"urlstream","n":2,"ms":%d}`, gap.Milliseconds()))

	payload := []byte(fmt.Sprintf(`{"op":"stream","n":2,"ms":%d}`, gap.Milliseconds()))
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4, DisableCompression: true}}
	shimCall := func() (first, last, total time.Duration) {
		req, _ := http.NewRequest("POST", "http://"+invokeAddr+contract.InvokePath, bytes.NewReader(payload))
		req.Header.Set(contract.HeaderInvokeSecret, testrig.Secret)
		req.Header.Set(contract.HeaderResponseStream, "1")
		start := time.Now()
		resp, err := client.Do(req)
		load.Check(err)
		defer resp.Body.Close()
		br := bufio.NewReader(resp.Body)
		var d [2]time.Duration
		for i := range d {
			line, err := br.ReadString('\n')
			load.Check(err)
			d[i] = sinceWrite(line)
		}
		_, _ = io.Copy(io.Discard, br)
		return d[0], d[1], time.Since(start)
	}
	activatorCall := func() (first, last, total time.Duration) {
		req, _ := http.NewRequest("POST", rig.URL()+"/2021-11-15/functions/streamer/response-streaming-invocations", bytes.NewReader(payload))
		start := time.Now()
		resp, err := client.Do(req)
		load.Check(err)
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			b, _ := io.ReadAll(resp.Body)
			load.Fail("activator answered %d: %s", resp.StatusCode, b)
		}
		dec := eventstream.NewDecoder()
		var d []time.Duration
		var text []byte
		for {
			msg, err := dec.Decode(resp.Body, nil)
			load.Check(err)
			if msg.Headers.Get(":event-type").String() != "PayloadChunk" {
				break // InvokeComplete
			}
			text = append(text, msg.Payload...)
			for {
				i := bytes.IndexByte(text, '\n')
				if i < 0 {
					break
				}
				d = append(d, sinceWrite(string(text[:i+1])))
				text = text[i+1:]
			}
		}
		if len(d) != 2 {
			load.Fail("got %d chunks, want 2", len(d))
		}
		return d[0], d[1], time.Since(start)
	}

	urlCall := func() (first, last, total time.Duration) {
		start := time.Now()
		resp, err := client.Post(streamURL, "application/json", bytes.NewReader(urlPayload))
		load.Check(err)
		defer resp.Body.Close()
		if resp.StatusCode != 201 {
			b, _ := io.ReadAll(resp.Body)
			load.Fail("function URL answered %d: %s", resp.StatusCode, b)
		}
		br := bufio.NewReader(resp.Body)
		var d [2]time.Duration
		for i := range d {
			line, err := br.ReadString('\n')
			load.Check(err)
			d[i] = sinceWrite(line)
		}
		_, _ = io.Copy(io.Discard, br)
		return d[0], d[1], time.Since(start)
	}

	for i := 0; i < 50; i++ { // warm up the paths
		shimCall()
		activatorCall()
		urlCall()
	}
	var shimFirst, shimLast, actFirst, actLast, actTotal, urlFirst, urlLast []time.Duration
	for i := 0; i < *n; i++ { // alternate, so that all see the same background load
		f, l, _ := shimCall()
		shimFirst, shimLast = append(shimFirst, f), append(shimLast, l)
		f, l, tot := activatorCall()
		actFirst, actLast, actTotal = append(actFirst, f), append(actLast, l), append(actTotal, tot)
		f, l, _ = urlCall()
		urlFirst, urlLast = append(urlFirst, f), append(urlLast, l)
	}
	fmt.Printf("streamed responses of the aws-lambda-go function (2 chunks, %v apart), %d per path, host: %d cores\n", *gap, *n, load.NumCPU())
	fmt.Printf("load average before/after: %s\n\n", load.LoadAvg())
	fmt.Printf("%-58s %10s %10s\n", "time from the function's write to the caller's receipt", "p50", "p99")
	row := func(name string, d []time.Duration) {
		fmt.Printf("%-58s %10s %10s\n", name, load.Ms(load.Percentile(d, .50)), load.Ms(load.Percentile(d, .99)))
	}
	row("first chunk, runtime-shim alone", shimFirst)
	row("first chunk, activator + runtime-shim", actFirst)
	row("first chunk, RESPONSE_STREAM function URL", urlFirst)
	row("last chunk, runtime-shim alone", shimLast)
	row("last chunk, activator + runtime-shim", actLast)
	row("last chunk, RESPONSE_STREAM function URL", urlLast)
	row("whole call, activator + runtime-shim", actTotal)
	early := 0
	for i := range actFirst {
		// The first chunk was received before the function wrote the second one.
		if actFirst[i] < *gap {
			early++
		}
	}
	fmt.Printf("\nfirst chunk received before the function's second write: %d of %d calls\n", early, len(actFirst))
	fmt.Printf("target: first chunk through activator + shim p50 <= 1 ms after the function's write: %v\n", load.Percentile(actFirst, .50) <= time.Millisecond)
}

// sinceWrite reads "<i> <unix ns>\n" and returns the time since that write.
func sinceWrite(line string) time.Duration {
	f := strings.Fields(line)
	if len(f) != 2 {
		load.Fail("unexpected chunk %q", line)
	}
	ns, err := strconv.ParseInt(f[1], 10, 64)
	load.Check(err)
	return time.Since(time.Unix(0, ns))
}
