package async

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// ServerOptions configure the embedded nats-server.
type ServerOptions struct {
	// StoreDir holds the JetStream file store (the chart mounts a PersistentVolumeClaim).
	StoreDir string
	// Listen, e.g. "0.0.0.0:4222", also serves NATS clients over TCP (other activator
	// replicas, NATS destinations without servers). Empty: in-process connections only.
	Listen string
	// SyncAlways fsyncs every stored message before JetStream acknowledges it, so an
	// accepted event survives a node (kernel) crash, at a cost in throughput. Without it,
	// a stored event survives the activator being killed (it is in the kernel's page cache)
	// and is fsynced every SyncInterval (nats-server's default: 2 minutes).
	SyncAlways   bool
	SyncInterval time.Duration
	// MaxStoreBytes caps the file store (default: nats-server's, a share of the disk).
	MaxStoreBytes int64
}

// Server is an embedded nats-server with JetStream.
type Server struct {
	ns *server.Server
}

// maxPayload is above PayloadLimit so that invocation records (request and response
// payloads, each up to 256 KB) fit, when they go to a Function destination.
const maxPayload = 4 << 20

// StartServer runs nats-server in this process and waits until it is ready.
func StartServer(o ServerOptions) (*Server, error) {
	opts := &server.Options{
		ServerName:            "klambda-activator",
		JetStream:             true,
		StoreDir:              o.StoreDir,
		SyncAlways:            o.SyncAlways,
		SyncInterval:          o.SyncInterval,
		JetStreamMaxStore:     o.MaxStoreBytes,
		MaxPayload:            maxPayload,
		NoSigs:                true,
		NoLog:                 true,
		DontListen:            o.Listen == "",
		Host:                  "127.0.0.1",
		Port:                  -1,
		DisableShortFirstPing: true,
	}
	if o.Listen != "" {
		host, port, err := splitHostPort(o.Listen)
		if err != nil {
			return nil, err
		}
		opts.Host, opts.Port = host, port
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("configuring embedded NATS: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded NATS not ready after 30s (store %s)", o.StoreDir)
	}
	return &Server{ns: ns}, nil
}

// Connect opens an in-process client connection.
func (s *Server) Connect(opts ...nats.Option) (*nats.Conn, error) {
	opts = append([]nats.Option{nats.InProcessServer(s.ns), nats.Name("klambda-async"), nats.MaxReconnects(-1)}, opts...)
	return nats.Connect("", opts...)
}

// ClientURL is the TCP URL of the server when it listens.
func (s *Server) ClientURL() string { return s.ns.ClientURL() }

// Shutdown stops the server; stored events stay in StoreDir.
func (s *Server) Shutdown() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}

func splitHostPort(hp string) (string, int, error) {
	host, p, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, fmt.Errorf("embedded NATS listen address %q: %w", hp, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, fmt.Errorf("embedded NATS listen address %q: bad port", hp)
	}
	return host, port, nil
}
