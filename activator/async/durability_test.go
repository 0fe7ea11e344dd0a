package async

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
)

const durabilityEvents = 2000

// TestNothingLostAcrossRestart closes the embedded server and the workers mid-run and opens
// them again on the same store: every accepted event runs at least once.
func TestNothingLostAcrossRestart(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	calls := 0
	inv := newInvoker(func(r InvokeRequest, _ int) InvokeResult {
		time.Sleep(10 * time.Millisecond)
		mu.Lock()
		seen[r.RequestID]++
		calls++
		mu.Unlock()
		return InvokeResult{StatusCode: 200, ExecutedVersion: "$LATEST"}
	})
	cf := configs(map[string]Config{"f": cfg(2, time.Hour)})
	dir := t.TempDir()
	e := startEnv(t, dir, inv, cf)

	accepted := make(chan string, durabilityEvents)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < durabilityEvents; i += 8 {
				id, err := e.q.Enqueue(context.Background(), Event{Namespace: "default", Function: "f", Payload: []byte(strconv.Itoa(i))})
				if err != nil {
					t.Error(err)
					return
				}
				accepted <- id
			}
		}()
	}
	wg.Wait()
	close(accepted)

	processed := func() int { mu.Lock(); defer mu.Unlock(); return len(seen) }
	for processed() < durabilityEvents/4 {
		time.Sleep(time.Millisecond)
	}
	e.stop()
	t.Logf("restarted after %d of %d events", processed(), durabilityEvents)
	e = startEnv(t, dir, inv, cf)
	waitPending(t, e.q, 0)

	missing := 0
	for id := range accepted {
		mu.Lock()
		if seen[id] == 0 {
			missing++
		}
		mu.Unlock()
	}
	if missing > 0 {
		t.Fatalf("%d accepted events never ran", missing)
	}
	t.Logf("%d events, %d invocations, %d duplicates", durabilityEvents, calls, calls-len(seen))
}

// TestNothingLostAfterSIGKILL runs the queue and workers in a child process and kills it
// with SIGKILL twice: once while it is still accepting events, once while it works them
// off. A third child finishes. Every event the child acknowledged as accepted runs.
func TestNothingLostAfterSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns child processes")
	}
	dir := t.TempDir()
	acceptedLog, processedLog := filepath.Join(dir, "accepted.log"), filepath.Join(dir, "processed.log")
	child := func(enqueue bool) *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^TestAsyncHelperProcess$")
		cmd.Env = append(os.Environ(), "KLAMBDA_ASYNC_HELPER_DIR="+dir, "KLAMBDA_ASYNC_HELPER_ENQUEUE="+strconv.FormatBool(enqueue))
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	kill := func(cmd *exec.Cmd) {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
	}
	waitFor := func(what string, cond func() bool) {
		deadline := time.Now().Add(60 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	c1 := child(true)
	waitFor("800 accepted", func() bool { return len(readIDs(acceptedLog)) >= 800 })
	kill(c1)
	t.Logf("SIGKILL 1: %d accepted, %d processed", len(readIDs(acceptedLog)), len(readIDs(processedLog)))

	// The second child accepts the rest (re-sending the same request ids, which JetStream
	// deduplicates) and is killed while working them off.
	c2 := child(true)
	waitFor("all accepted and 1200 processed", func() bool {
		return len(readIDs(acceptedLog)) >= durabilityEvents && len(readIDs(processedLog)) >= 1200
	})
	kill(c2)
	t.Logf("SIGKILL 2: %d accepted, %d processed", len(readIDs(acceptedLog)), len(readIDs(processedLog)))

	c3 := child(false)
	defer kill(c3)
	accepted := readIDs(acceptedLog)
	waitFor("every accepted event processed", func() bool {
		p := readIDs(processedLog)
		for id := range accepted {
			if p[id] == 0 {
				return false
			}
		}
		return true
	})
	p := readIDs(processedLog)
	total := 0
	for _, n := range p {
		total += n
	}
	t.Logf("%d accepted events, all processed; %d invocations, %d duplicates", len(accepted), total, total-len(p))
}

// TestAsyncHelperProcess is the child of TestNothingLostAfterSIGKILL.
func TestAsyncHelperProcess(t *testing.T) {
	dir := os.Getenv("KLAMBDA_ASYNC_HELPER_DIR")
	if dir == "" {
		t.Skip("helper process")
	}
	appendLine := func(path string) func(string) {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			panic(err)
		}
		return func(s string) { _, _ = f.Write([]byte(s + "\n")) } // one write(2) each: atomic
	}
	accepted, processed := appendLine(filepath.Join(dir, "accepted.log")), appendLine(filepath.Join(dir, "processed.log"))

	srv, err := StartServer(ServerOptions{StoreDir: filepath.Join(dir, "store")})
	if err != nil {
		panic(err)
	}
	nc, err := srv.Connect()
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	q, err := NewQueue(ctx, nc, QueueOptions{})
	if err != nil {
		panic(err)
	}
	inv := newInvoker(func(r InvokeRequest, _ int) InvokeResult {
		time.Sleep(20 * time.Millisecond)
		processed(r.RequestID)
		return InvokeResult{StatusCode: 200, ExecutedVersion: "$LATEST"}
	})
	w := NewWorkers(q, inv, configs(map[string]Config{"f": cfg(2, time.Hour)}), NewDeliverer(q, nil, testDestinations),
		WorkerOptions{Concurrency: 16, AckWait: 2 * time.Second, Retry: fastRetry(), Log: logr.Discard()})
	go func() { _ = w.Run(ctx) }()
	if os.Getenv("KLAMBDA_ASYNC_HELPER_ENQUEUE") == "true" {
		var wg sync.WaitGroup
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := g; i < durabilityEvents; i += 4 {
					id, err := q.Enqueue(ctx, Event{RequestID: fmt.Sprintf("evt-%04d", i), Namespace: "default", Function: "f", Payload: []byte(strconv.Itoa(i))})
					if err != nil {
						panic(err)
					}
					accepted(id)
				}
			}()
		}
		wg.Wait()
	}
	select {} // until killed
}

// readIDs counts the lines of a log of request ids.
func readIDs(path string) map[string]int {
	m := map[string]int{}
	f, err := os.Open(path)
	if err != nil {
		return m
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if l := s.Text(); len(l) == len("evt-0000") || len(l) == 36 {
			m[l]++
		}
	}
	return m
}
