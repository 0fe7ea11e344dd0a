package async

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// ServerOptions configure the embedded nats-server.
type ServerOptions struct {
	// StoreDir holds the JetStream file store (the chart mounts a PersistentVolumeClaim).
	StoreDir string
	// Listen, e.g. "0.0.0.0:4222", also serves NATS clients over TCP. Every client must
	// authenticate: the queue's user has a password generated at start that never leaves
	// this process, the destinations user the one given in DestinationsPassword (without
	// it, a random one: the destinations account is then reachable in process only).
	// Empty: in-process connections only.
	Listen string
	// DestinationsPassword is the password of the user DestinationsUser over Listen, for
	// subscribers of NATS destinations that name no servers.
	DestinationsPassword string
	// SyncAlways fsyncs every stored message before JetStream acknowledges it, so an
	// accepted event survives a node (kernel) crash, at a cost in throughput. Without it,
	// a stored event survives the activator being killed (it is in the kernel's page cache)
	// and is fsynced every SyncInterval (nats-server's default: 2 minutes).
	SyncAlways   bool
	SyncInterval time.Duration
	// MaxStoreBytes caps the file store (default: nats-server's, a share of the disk).
	MaxStoreBytes int64
}

// The embedded server's accounts and users. Tenants' NATS destinations never share the
// queue's account: the queue (its stream, consumer and state bucket) lives in the queue
// account, the only one with JetStream, used only by the activator's queue connection;
// destinations that name no servers are published in the destinations account, which has
// no JetStream (its JetStream API answers "not enabled") and whose user may not publish
// or subscribe to NATS's reserved subjects.
const (
	// QueueAccount is nats-server's global account: a store written before the accounts
	// existed keeps its events there (JetStream keeps each account's streams in a
	// directory named after it).
	QueueAccount        = server.DEFAULT_GLOBAL_ACCOUNT
	DestinationsAccount = "KLAMBDA_DESTINATIONS"
	QueueUser           = "klambda-queue"
	DestinationsUser    = "klambda-destinations"
)

// reservedSubjects are NATS's own subjects, denied to the destinations user (on top of
// ValidateNATSDestinationSubject at delivery and the CRD's schema).
var reservedSubjects = []string{"$JS.>", "$JSC.>", "$KV.>", "$O.>", "$SYS.>", "$NRG.>", "$MQTT.>", "$SRV.>", "$G.>", "_INBOX.>", "_R_.>"}

// Server is an embedded nats-server with JetStream.
type Server struct {
	ns                 *server.Server
	queuePass, dstPass string
}

// maxPayload is above contract.MaxAsyncPayload so that invocation records (request and response
// payloads, each up to 256 KB) fit, when they go to a Function destination.
const maxPayload = 4 << 20

// StartServer runs nats-server in this process and waits until it is ready.
func StartServer(o ServerOptions) (*Server, error) {
	// This store is written to again: it is no longer drained into an external NATS.
	if o.StoreDir != "" {
		if err := os.Remove(filepath.Join(o.StoreDir, DrainedMarker)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("embedded NATS store %s: %w", o.StoreDir, err)
		}
	}
	s := &Server{queuePass: randomPassword(), dstPass: o.DestinationsPassword}
	if s.dstPass == "" {
		s.dstPass = randomPassword()
	}
	dst := server.NewAccount(DestinationsAccount)
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
		Accounts:              []*server.Account{dst},
		Users: []*server.User{
			// No Account: nats-server puts the user in the global account.
			{Username: QueueUser, Password: s.queuePass},
			{Username: DestinationsUser, Password: s.dstPass, Account: dst, Permissions: &server.Permissions{
				Publish:   &server.SubjectPermission{Allow: []string{">"}, Deny: reservedSubjects},
				Subscribe: &server.SubjectPermission{Allow: []string{">"}, Deny: reservedSubjects},
			}},
		},
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
	// With accounts configured, nats-server enables JetStream only where it is asked to:
	// on the queue's account, not the destinations'. Enabling it recovers the account's
	// streams from the store.
	if err := ns.GlobalAccount().EnableJetStream(nil, nil); err != nil {
		ns.Shutdown()
		return nil, fmt.Errorf("enabling JetStream on the embedded NATS's queue account: %w", err)
	}
	s.ns = ns
	return s, nil
}

func randomPassword() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// Connect opens an in-process client connection to the queue's account: only the queue
// may use it.
func (s *Server) Connect(opts ...nats.Option) (*nats.Conn, error) {
	opts = append([]nats.Option{nats.InProcessServer(s.ns), nats.Name("klambda-async"), nats.MaxReconnects(-1),
		nats.UserInfo(QueueUser, s.queuePass)}, opts...)
	return nats.Connect("", opts...)
}

// ConnectDestinations opens an in-process connection to the destinations account, the
// one NATS destinations without servers are published on (Deliverer.SetLocalNATS).
func (s *Server) ConnectDestinations(opts ...nats.Option) (*nats.Conn, error) {
	opts = append([]nats.Option{nats.InProcessServer(s.ns), nats.Name("klambda-destinations"), nats.MaxReconnects(-1),
		nats.UserInfo(DestinationsUser, s.dstPass)}, opts...)
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
