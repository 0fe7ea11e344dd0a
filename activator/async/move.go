package async

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/go-logr/logr"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Moving an embedded queue into an external NATS (README, "Switching from the embedded
// queue"): an install that ran the embedded queue and now points at a NATS cluster must
// not abandon the events the embedded store still holds. The activator starts the
// embedded server over the old store (in process, not listening), publishes each event
// into the external stream, waits for JetStream's ack, and only then acks it in the old
// store (a work queue: the ack deletes it). Once the old stream is empty the directory is
// marked drained, and later starts leave it alone.

// DrainedMarker is the file MoveEmbeddedStore writes in a store directory whose events
// are all in the external stream. StartServer removes it: a store written to again is no
// longer drained.
const DrainedMarker = "klambda-drained-into-nats"

// moveConsumer is the durable consumer the move reads the old stream with.
const moveConsumer = "klambda-async-move"

// EmbeddedStorePending reports whether dir holds an embedded JetStream store that has
// not been drained (it may hold events).
func EmbeddedStorePending(dir string) (bool, error) {
	if _, err := os.Stat(filepath.Join(dir, DrainedMarker)); err == nil {
		return false, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return false, err
	}
	_, err := os.Stat(filepath.Join(dir, "jetstream"))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// MoveEmbeddedStore moves every event the embedded queue's store in dir holds into to
// (an open queue on an external NATS), with its attempts so far, then marks dir drained.
// It returns the number of events moved. An event the external queue refuses for a
// quota or a full stream stays in the old store and is tried again every second until
// ctx ends; nothing is deleted from the old store before the external stream has it.
// Delivery is at least once: an activator killed between a publish and the local ack
// publishes that event again at its next start, which JetStream drops as a duplicate
// within the stream's 2-minute window (exactly once), and stores again after it.
func MoveEmbeddedStore(ctx context.Context, dir string, to *Queue, log logr.Logger) (int, error) {
	pending, err := EmbeddedStorePending(dir)
	if err != nil || !pending {
		return 0, err
	}
	srv, err := StartServer(ServerOptions{StoreDir: dir})
	if err != nil {
		return 0, fmt.Errorf("starting the embedded NATS over %s to move its events: %w", dir, err)
	}
	defer srv.Shutdown()
	nc, err := srv.Connect()
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, err
	}
	moved := 0
	stream, err := js.Stream(ctx, to.opts.Stream)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
	case err != nil:
		return 0, fmt.Errorf("opening stream %s in %s: %w", to.opts.Stream, dir, err)
	default:
		if moved, err = moveStream(ctx, js, stream, to, log); err != nil {
			return moved, err
		}
	}
	note := fmt.Sprintf("%s: %d asynchronous events moved into the external NATS; this store holds none.\n", time.Now().UTC().Format(time.RFC3339), moved)
	if err := os.WriteFile(filepath.Join(dir, DrainedMarker), []byte(note), 0o600); err != nil {
		return moved, fmt.Errorf("marking %s drained: %w", dir, err)
	}
	return moved, nil
}

func moveStream(ctx context.Context, js jetstream.JetStream, stream jetstream.Stream, to *Queue, log logr.Logger) (int, error) {
	// The embedded workers' consumers hold their delivery state (retries waiting out a
	// delay): remove them, so that one consumer sees every event still stored.
	names := stream.ConsumerNames(ctx)
	for name := range names.Name() {
		if name == moveConsumer {
			continue
		}
		if err := stream.DeleteConsumer(ctx, name); err != nil {
			return 0, fmt.Errorf("removing consumer %s of the old stream: %w", name, err)
		}
	}
	if err := names.Err(); err != nil {
		return 0, fmt.Errorf("listing the old stream's consumers: %w", err)
	}
	state, err := js.KeyValue(ctx, to.opts.StateBucket)
	if err != nil {
		state = nil // no bucket: no event was ever retried there
	}
	cons, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable: moveConsumer, AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Minute,
		DeliverPolicy: jetstream.DeliverAllPolicy, MaxAckPending: 1024,
	})
	if err != nil {
		return 0, fmt.Errorf("reading the old stream: %w", err)
	}
	moved := 0
	for {
		info, err := stream.Info(ctx)
		if err != nil {
			return moved, err
		}
		if info.State.Msgs == 0 {
			return moved, nil
		}
		// What is there now; none (still pending from a start that died mid-move, until
		// AckWait): look again shortly.
		batch, err := cons.FetchNoWait(64)
		if err != nil {
			return moved, err
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			ok, err := moveOne(ctx, msg, state, to, log)
			if err != nil {
				return moved, err
			}
			if ok {
				moved++
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return moved, err
		}
		if got == 0 {
			select {
			case <-time.After(100 * time.Millisecond):
			case <-ctx.Done():
				return moved, ctx.Err()
			}
		}
	}
}

// moveOne publishes one stored event into to, then deletes it from the old store. A
// message that is not an event (a worker would refuse it) is dropped, logged.
func moveOne(ctx context.Context, msg jetstream.Msg, state jetstream.KeyValue, to *Queue, log logr.Logger) (bool, error) {
	ev, err := eventFromMsg(to.opts.SubjectPrefix, msg.Subject(), msg.Headers(), msg.Data())
	if err != nil {
		log.Error(err, "Dropping a message of the embedded queue that is not an event")
		return false, msg.Term()
	}
	var attempts jetstream.KeyValueEntry
	if state != nil {
		if attempts, err = state.Get(ctx, ev.RequestID); err != nil {
			attempts = nil // never retried
		}
	}
	if attempts != nil {
		if _, err := to.state.Put(ctx, ev.RequestID, attempts.Value()); err != nil {
			return false, fmt.Errorf("copying the attempts of event %s: %w", ev.RequestID, err)
		}
	}
	for {
		_, err = to.store(ctx, ev, true)
		var full *QueueFullError
		if !errors.As(err, &full) {
			break
		}
		log.Info("The external queue refuses an event of the embedded store for now; trying again in 1s", "requestId", ev.RequestID, "reason", full.Reason)
		_ = msg.InProgress() // keeps it ours in the old store meanwhile
		select {
		case <-time.After(time.Second):
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
	if err != nil {
		return false, fmt.Errorf("moving event %s: %w", ev.RequestID, err)
	}
	if err := msg.DoubleAck(ctx); err != nil {
		return false, fmt.Errorf("deleting moved event %s from the old store: %w", ev.RequestID, err)
	}
	if attempts != nil {
		_ = state.Purge(ctx, ev.RequestID)
	}
	return true, nil
}
