package async

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// natsProcesses is n nats-servers clustered, each in a child process (this test binary,
// -test.run=^TestNATSNodeProcess$), so that one can be killed with SIGKILL: no lame duck,
// no raft step-down, its connections cut by the kernel.
type natsProcesses struct {
	mu      sync.Mutex
	clients map[string]string // server name → client URL
	cmds    map[string]*exec.Cmd
}

func startNATSProcesses(t *testing.T, n int) *natsProcesses {
	t.Helper()
	ports := freePorts(t, 2*n)
	routes := make([]string, n)
	for i := range n {
		routes[i] = fmt.Sprintf("nats://127.0.0.1:%d", ports[n+i])
	}
	c := &natsProcesses{clients: map[string]string{}, cmds: map[string]*exec.Cmd{}}
	for i := range n {
		node := natsNode{Name: fmt.Sprintf("nats-%d", i), ClientPort: ports[i], ClusterPort: ports[n+i],
			Routes: strings.Join(routes, ","), StoreDir: t.TempDir()}
		spec, _ := json.Marshal(node)
		cmd := exec.Command(os.Args[0], "-test.run=^TestNATSNodeProcess$")
		cmd.Env = append(os.Environ(), "KLAMBDA_NATS_NODE="+string(spec))
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		c.cmds[node.Name], c.clients[node.Name] = cmd, fmt.Sprintf("nats://127.0.0.1:%d", node.ClientPort)
	}
	c.waitFormed(t)
	return c
}

// waitFormed waits until every server listens and the cluster can place an R3 stream.
func (c *natsProcesses) waitFormed(t *testing.T) {
	t.Helper()
	waitUntil(t, "the NATS servers listening", func() bool {
		for _, u := range c.clients {
			conn, err := net.Dial("tcp", strings.TrimPrefix(u, "nats://"))
			if err != nil {
				return false
			}
			_ = conn.Close()
		}
		return true
	})
	nc, err := nats.Connect(c.urls())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	waitUntil(t, "the NATS cluster placing an R3 stream", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "FORMED", Subjects: []string{"formed"},
			Storage: jetstream.MemoryStorage, Replicas: 3})
		return err == nil && js.DeleteStream(ctx, "FORMED") == nil
	})
}

func (c *natsProcesses) urls() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var u []string
	for _, url := range c.clients {
		u = append(u, url)
	}
	return strings.Join(u, ",")
}

// kill sends SIGKILL to the named server's process.
func (c *natsProcesses) kill(name string) bool {
	c.mu.Lock()
	cmd, ok := c.cmds[name]
	delete(c.clients, name)
	c.mu.Unlock()
	if !ok {
		return false
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	return true
}

// TestNATSNodeProcess is one server of startNATSProcesses.
func TestNATSNodeProcess(t *testing.T) {
	spec := os.Getenv("KLAMBDA_NATS_NODE")
	if spec == "" {
		t.Skip("helper process")
	}
	var node natsNode
	if err := json.Unmarshal([]byte(spec), &node); err != nil {
		panic(err)
	}
	s, err := server.NewServer(clusterNode(node))
	if err != nil {
		panic(err)
	}
	s.Start()
	// Until killed, or until the test that started it is gone (a timeout, a crash).
	for parent := os.Getppid(); os.Getppid() == parent; {
		time.Sleep(time.Second)
	}
	os.Exit(1)
}
