package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/klambda/klambda/bench/internal/load"
)

// payloadBench is `-payload-mb N`: the shim's CPU per MB moved in each direction against
// a plain io.Copy over loopback measured in the same run.
//
//   - request: an invoke of N MB that the function answers in a few bytes (the shim reads
//     the invoke and writes the event to /next);
//   - response: a small invoke that the function answers with N MB (the shim reads
//     /response, chunked as aws-lambda-go posts it, and writes the answer).
//
// The shim's CPU is its threads' run time (/proc/<pid>/task/*/schedstat, nanoseconds),
// without its runtime's (another process); the CPU of as many tiny invocations is
// subtracted, so what is left is the payload's. The baseline is one goroutine, on a
// thread of its own, io.Copy-ing as many megabytes from one loopback connection to another
// (a read and a write per byte, as the shim does per direction; Go splices it).
func payloadBench(shimBin, fnBin string, mb, n, rounds int) {
	invoke, api := load.FreeAddr(), load.FreeAddr()
	cmd := exec.Command(shimBin, "exec", "--listen", invoke, "--runtime-api", api, "--", fnBin)
	cmd.Env = append(os.Environ(), "AWS_LAMBDA_FUNCTION_TIMEOUT=30", "LOG_LEVEL=error")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	load.Check(cmd.Start())
	defer func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); _ = cmd.Wait() }()
	load.WaitListen(invoke)
	url := "http://" + invoke + "/2015-03-31/functions/function/invocations"

	size := mb << 20
	pad := `{"op":"sleep","ms":0,"pad":"`
	request := append(append([]byte(pad), bytes.Repeat([]byte{'x'}, size-len(pad)-2)...), '"', '}')
	response := fmt.Appendf(nil, `{"op":"big","n":%d}`, size-2)
	tiny := []byte(`{"op":"sleep","ms":0}`)
	call := func(event []byte, wantLen int) {
		resp, err := client.Post(url, "application/json", bytes.NewReader(event))
		if err != nil {
			load.Fail("invoke: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || (wantLen > 0 && len(b) != wantLen) {
			load.Fail("invoke: status %d, %d bytes: %.200s", resp.StatusCode, len(b), b)
		}
	}
	pid := cmd.Process.Pid
	measure := func(event []byte, wantLen int) time.Duration {
		before := threadsCPU(pid)
		for i := 0; i < n; i++ {
			call(event, wantLen)
		}
		return threadsCPU(pid) - before
	}
	for i := 0; i < 20; i++ { // warm: buffers, connections, the runtime's heap
		call(request, 0)
		call(response, size)
	}
	var base, req, resp, tinyCPU time.Duration
	for r := 0; r < rounds; r++ {
		base += copyCPU(size * n)
		req += measure(request, 0)
		resp += measure(response, size)
		tinyCPU += measure(tiny, 0)
	}
	total := float64(mb * n * rounds)
	perMB := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) / total }
	b, rq, rs := perMB(base), perMB(req-tinyCPU), perMB(resp-tinyCPU)
	fmt.Printf("payloads of %d MB through runtime-shim (exec mode, aws-lambda-go function), %d invocations per direction in %d rounds, host: %d cores\n", mb, n*rounds, rounds, load.NumCPU())
	fmt.Printf("load average (1, 5, 15 min): %s\n\n", load.LoadAvg())
	fmt.Printf("%-52s %10s %10s\n", "CPU per MB moved", "ms/MB", "ratio")
	fmt.Printf("%-52s %10.3f %10s\n", "io.Copy between two loopback connections (baseline)", b, "1.00x")
	fmt.Printf("%-52s %10.3f %9.2fx\n", "shim, request (invoke in, /next out)", rq, rq/b)
	fmt.Printf("%-52s %10.3f %9.2fx\n", "shim, response (/response in, answer out)", rs, rs/b)
	fmt.Printf("%-52s %10.3f\n", "shim, a tiny invocation (subtracted above), ms each", float64(tinyCPU)/float64(time.Millisecond)/float64(n*rounds))
	fmt.Printf("\ntarget <= 2 ms/MB each direction: request %v, response %v\n", rq <= 2, rs <= 2)
}

// threadsCPU is the run time of every thread of process pid.
func threadsCPU(pid int) time.Duration {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	ents, err := os.ReadDir(dir)
	if err != nil {
		load.Fail("%v", err)
	}
	var sum int64
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), "schedstat"))
		if err != nil {
			continue // the thread exited
		}
		v, _ := strconv.ParseInt(strings.Fields(string(b))[0], 10, 64)
		sum += v
	}
	return time.Duration(sum)
}

// copyCPU is the CPU time of one goroutine, alone on its thread, io.Copy-ing n bytes
// from one loopback connection to another (a sender and a reader on other goroutines).
func copyCPU(n int) time.Duration {
	pair := func() (net.Conn, net.Conn) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		load.Check(err)
		defer ln.Close()
		a, err := net.Dial("tcp", ln.Addr().String())
		load.Check(err)
		b, err := ln.Accept()
		load.Check(err)
		return a, b
	}
	inA, inB := pair()   // sender -> relay
	outA, outB := pair() // relay -> reader
	defer func() { inA.Close(); inB.Close(); outA.Close(); outB.Close() }()
	go func() {
		chunk := make([]byte, 1<<20)
		for left := n; left > 0; left -= len(chunk) {
			_, _ = inA.Write(chunk[:min(len(chunk), left)])
		}
		inA.Close()
	}()
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, outB)
		close(done)
	}()
	took := make(chan time.Duration)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		before := threadCPU()
		_, _ = io.Copy(outA, inB)
		took <- threadCPU() - before
		outA.Close()
	}()
	d := <-took
	<-done
	return d
}

// threadCPU is the calling thread's user and system time.
func threadCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
