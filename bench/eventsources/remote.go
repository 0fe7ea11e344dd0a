package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klambda/klambda/eventsources/events"
	"github.com/klambda/klambda/eventsources/invokeclient"
	"github.com/klambda/klambda/eventsources/invokeclient/invoketest"
)

// The fake activator and the function run in a child process (this binary with
// -serve-function), so that the bench's own CPU is the consumer side's alone (broker, Kafka
// client, poller, HTTP client) and the activator's and function's CPU is measured apart. The
// child's sink is read through a small control API on another port.

// serveFake is the child: it prints "<invoke URL> <control URL>" and serves until its
// standard input closes (the parent ended).
func serveFake() {
	if *cpuProfile != "" {
		// The child's whole run (the poller's rounds and the HTTP floor's).
		f, err := os.Create(*cpuProfile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	s := &sink{}
	fake := invoketest.New(func(c invoketest.Call) invoketest.Outcome {
		// A trivial function: it reads only each record's timestamp, scanning for the field
		// rather than decoding the event (and keeps neither the event nor its buffer).
		s.add(timestamps(c.Payload))
		return invoketest.Outcome{}
	})
	fake.ReusePayloads()
	mux := http.NewServeMux()
	mux.HandleFunc("/count", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, s.count()) })
	mux.HandleFunc("/calls", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, fake.CallCount()) })
	mux.HandleFunc("/cpu", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, int64(cpuTime())) })
	mux.HandleFunc("/reset", func(_ http.ResponseWriter, _ *http.Request) { s.reset() })
	mux.HandleFunc("/percentile", func(w http.ResponseWriter, r *http.Request) {
		p, _ := strconv.ParseFloat(r.URL.Query().Get("p"), 64)
		fmt.Fprint(w, int64(s.percentile(p)))
	})
	mux.HandleFunc("/wait", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		fmt.Fprint(w, s.waitFor(n, time.Duration(ms)*time.Millisecond))
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go func() { _ = http.Serve(ln, mux) }()
	fmt.Printf("%s http://%s\n", fake.URL, ln.Addr())
	_, _ = io.Copy(io.Discard, os.Stdin)
}

// remote is the parent's handle on the child: a counter, plus its CPU and call count.
type remote struct {
	url, ctl string
	cmd      *exec.Cmd
	stdin    io.Closer
	client   http.Client
}

func startFake() *remote {
	args := []string{"-serve-function"}
	if *cpuProfile != "" {
		args = append(args, "-cpuprofile", *cpuProfile+".fn")
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		log.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		log.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		log.Fatalf("fake activator: %v", err)
	}
	f := strings.Fields(line)
	if len(f) != 2 {
		log.Fatalf("fake activator said %q", line)
	}
	return &remote{url: f[0], ctl: f[1], cmd: cmd, stdin: in}
}

func (r *remote) close() {
	_ = r.stdin.Close()
	_ = r.cmd.Wait()
}

func (r *remote) get(path string) string {
	res, err := r.client.Get(r.ctl + path)
	if err != nil {
		log.Fatalf("fake activator: %v", err)
	}
	defer func() { _ = res.Body.Close() }()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		log.Fatalf("fake activator: %v", err)
	}
	return string(b)
}

func (r *remote) int(path string) int64 {
	n, err := strconv.ParseInt(r.get(path), 10, 64)
	if err != nil {
		log.Fatalf("fake activator: %s: %v", path, err)
	}
	return n
}

func (r *remote) count() int64       { return r.int("/count") }
func (r *remote) calls() int         { return int(r.int("/calls")) }
func (r *remote) cpu() time.Duration { return time.Duration(r.int("/cpu")) }
func (r *remote) reset()             { r.get("/reset") }
func (r *remote) percentile(p float64) time.Duration {
	return time.Duration(r.int("/percentile?p=" + strconv.FormatFloat(p, 'f', -1, 64)))
}
func (r *remote) waitFor(n int, limit time.Duration) bool {
	return r.get(fmt.Sprintf("/wait?n=%d&ms=%d", n, limit.Milliseconds())) == "true"
}

// httpFloor posts ready-made events of 100 records, as the poller's, through the same
// invoke client to the same fake activator from one caller per partition, each with one
// invocation in flight (the poller's concurrency on this topic), until *records records
// went: no broker, no batching, no bookkeeping. Its rate and CPU are what delivering the
// records over HTTP costs by itself, the ceiling of any poller that invokes over HTTP.
func httpFloor(fn *remote) result {
	ev := events.NewSelfManagedKafkaEvent([]string{"127.0.0.1:9092"})
	value := make([]byte, *size)
	for i := range value {
		value[i] = 'a' + byte(i%26)
	}
	now := time.Now().UnixMilli()
	for i := range 100 {
		ev.Add(events.KafkaRecord{Topic: "floor", Partition: int32(i % *partitions), Offset: int64(i), Timestamp: now,
			TimestampType: events.KafkaCreateTime, Key: fmt.Appendf(nil, "k%d", i), Value: value, Headers: events.KafkaHeaders{}})
	}
	payload, err := json.Marshal(ev)
	if err != nil {
		log.Fatal(err)
	}
	inv := newInvoker(fn.url)
	fn.reset()
	calls, fnCPU, cpu := fn.calls(), fn.cpu(), cpuTime()
	start := time.Now()
	var left atomic.Int64
	left.Store(int64(*records / 100))
	var wg sync.WaitGroup
	for range *partitions {
		wg.Go(func() {
			for left.Add(-1) >= 0 {
				if _, err := inv.Invoke(context.Background(), invokeclient.Request{Namespace: "bench", FunctionName: "fn", Payload: payload}); err != nil {
					log.Fatal(err)
				}
			}
		})
	}
	wg.Wait()
	n := (*records / 100) * 100
	r := result{throughput: float64(n) / time.Since(start).Seconds(), cpuPerRecord: (cpuTime() - cpu) / time.Duration(n)}
	r.fnCPUPerRecord = (fn.cpu() - fnCPU) / time.Duration(n)
	r.perInvoke = float64(n) / float64(fn.calls()-calls)
	return r
}
