// Command streaming measures a streamed response's time to first byte: from the
// function's own first write to the caller's receipt of it, through runtime-shim alone
// and through the activator (InvokeWithResponseStream) in front of it, in one run. The
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
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/protocol/eventstream"

	"github.com/klambda/klambda/activator/testrig"
	"github.com/klambda/klambda/api/contract"
)

func main() {
	n := flag.Int("n", 1000, "invocations per path")
	gap := flag.Duration("gap", 5*time.Millisecond, "time the function waits between its two chunks")
	flag.Parse()

	dir, err := os.MkdirTemp("", "klambda-bench-streaming-")
	check(err)
	defer os.RemoveAll(dir)
	shimBin, fnBin := filepath.Join(dir, "runtime-shim"), filepath.Join(dir, "gofunction")
	build(shimBin, "./cmd/runtime-shim")
	build(fnBin, "./test/compat/gofunction", "-tags", "lambda.norpc")

	invokeAddr, apiAddr := freeAddr(), freeAddr()
	cmd := exec.Command(shimBin, "exec", "--listen", invokeAddr, "--runtime-api", apiAddr, "--", fnBin)
	cmd.Env = append(os.Environ(), "AWS_LAMBDA_FUNCTION_TIMEOUT=30", "KLAMBDA_INVOKE_SECRET="+testrig.Secret)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	check(cmd.Start())
	defer func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); _ = cmd.Wait() }()
	waitReady("http://" + invokeAddr + contract.ReadyPath)

	rig := testrig.New(testrig.Options{WaitDeadline: 10 * time.Second})
	defer rig.Close()
	rig.Function("streamer", -1, 0)
	rig.Endpoints("streamer", "$LATEST", invokeAddr)

	payload := []byte(fmt.Sprintf(`{"op":"stream","n":2,"ms":%d}`, gap.Milliseconds()))
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4, DisableCompression: true}}
	shimCall := func() (first, last, total time.Duration) {
		req, _ := http.NewRequest("POST", "http://"+invokeAddr+contract.InvokePath, bytes.NewReader(payload))
		req.Header.Set(contract.HeaderInvokeSecret, testrig.Secret)
		req.Header.Set(contract.HeaderResponseStream, "1")
		start := time.Now()
		resp, err := client.Do(req)
		check(err)
		defer resp.Body.Close()
		br := bufio.NewReader(resp.Body)
		var d [2]time.Duration
		for i := range d {
			line, err := br.ReadString('\n')
			check(err)
			d[i] = sinceWrite(line)
		}
		_, _ = io.Copy(io.Discard, br)
		return d[0], d[1], time.Since(start)
	}
	activatorCall := func() (first, last, total time.Duration) {
		req, _ := http.NewRequest("POST", rig.URL()+"/2021-11-15/functions/streamer/response-streaming-invocations", bytes.NewReader(payload))
		start := time.Now()
		resp, err := client.Do(req)
		check(err)
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			b, _ := io.ReadAll(resp.Body)
			fail("activator answered %d: %s", resp.StatusCode, b)
		}
		dec := eventstream.NewDecoder()
		var d []time.Duration
		var text []byte
		for {
			msg, err := dec.Decode(resp.Body, nil)
			check(err)
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
			fail("got %d chunks, want 2", len(d))
		}
		return d[0], d[1], time.Since(start)
	}

	for i := 0; i < 50; i++ { // warm up both paths
		shimCall()
		activatorCall()
	}
	var shimFirst, shimLast, actFirst, actLast, actTotal []time.Duration
	for i := 0; i < *n; i++ { // alternate, so that both see the same background load
		f, l, _ := shimCall()
		shimFirst, shimLast = append(shimFirst, f), append(shimLast, l)
		f, l, tot := activatorCall()
		actFirst, actLast, actTotal = append(actFirst, f), append(actLast, l), append(actTotal, tot)
	}
	fmt.Printf("streamed responses of the aws-lambda-go function (2 chunks, %v apart), %d per path, host: %d cores\n", *gap, *n, numCPU())
	fmt.Printf("load average before/after: %s\n\n", loadavg())
	fmt.Printf("%-58s %10s %10s\n", "time from the function's write to the caller's receipt", "p50", "p99")
	row := func(name string, d []time.Duration) {
		fmt.Printf("%-58s %10s %10s\n", name, ms(pct(d, 50)), ms(pct(d, 99)))
	}
	row("first chunk, runtime-shim alone", shimFirst)
	row("first chunk, activator + runtime-shim", actFirst)
	row("last chunk, runtime-shim alone", shimLast)
	row("last chunk, activator + runtime-shim", actLast)
	row("whole call, activator + runtime-shim", actTotal)
	early := 0
	for i := range actFirst {
		// The first chunk was received before the function wrote the second one.
		if actFirst[i] < *gap {
			early++
		}
	}
	fmt.Printf("\nfirst chunk received before the function's second write: %d of %d calls\n", early, len(actFirst))
	fmt.Printf("target: first chunk through activator + shim p50 <= 1 ms after the function's write: %v\n", pct(actFirst, 50) <= time.Millisecond)
}

// sinceWrite reads "<i> <unix ns>\n" and returns the time since that write.
func sinceWrite(line string) time.Duration {
	f := strings.Fields(line)
	if len(f) != 2 {
		fail("unexpected chunk %q", line)
	}
	ns, err := strconv.ParseInt(f[1], 10, 64)
	check(err)
	return time.Since(time.Unix(0, ns))
}

func pct(d []time.Duration, p int) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[(len(s)-1)*p/100]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond)) }

func numCPU() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return strings.Count(string(b), "processor\t:")
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func waitReady(url string) {
	for i := 0; i < 600; i++ {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	fail("%s never answered 200", url)
}

func build(out, pkg string, args ...string) {
	c := exec.Command("go", append(append([]string{"build", "-o", out}, args...), pkg)...)
	c.Stdout, c.Stderr = os.Stderr, os.Stderr
	check(c.Run())
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	defer l.Close()
	return l.Addr().String()
}

func check(err error) {
	if err != nil {
		fail("%v", err)
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench/streaming: "+format+"\n", args...)
	os.Exit(1)
}
