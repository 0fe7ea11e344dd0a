package kafka

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestFetchSizerFollowsTheCompressionRatio(t *testing.T) {
	f := newFetchSizer(1 << 20)
	if got := f.part.Load(); got != fetchPartitionFirst {
		t.Fatalf("first bound %d, want %d", got, fetchPartitionFirst)
	}
	read := func(compressed, uncompressed int) {
		f.OnFetchBatchRead(kgo.BrokerMetadata{}, "t", 0, kgo.FetchBatchMetrics{NumRecords: 10, CompressedBytes: compressed, UncompressedBytes: uncompressed})
	}
	read(fetchSizerWindow/2, fetchSizerWindow/2)
	if got := f.part.Load(); got != fetchPartitionFirst {
		t.Errorf("after half a window: bound %d, want it unchanged (%d)", got, fetchPartitionFirst)
	}
	read(fetchSizerWindow/2, fetchSizerWindow/2) // incompressible: the ceiling
	if got := f.part.Load(); got != 1<<20 {
		t.Errorf("incompressible batches: bound %d, want the ceiling %d", got, 1<<20)
	}
	read(fetchSizerWindow, 40*fetchSizerWindow) // 40x: the target over 40
	if got, want := f.part.Load(), int32(FetchPartitionTarget/40); got != want {
		t.Errorf("40x compressed batches: bound %d, want %d", got, want)
	}
	read(fetchSizerWindow, 1000*fetchSizerWindow) // never under the floor
	if got := f.part.Load(); got != fetchPartitionFloor {
		t.Errorf("1000x compressed batches: bound %d, want the floor %d", got, fetchPartitionFloor)
	}
	read(0, 100) // no sizes (an encoding error): ignored
	read(fetchSizerWindow, 0)
	if got := f.part.Load(); got != fetchPartitionFloor {
		t.Errorf("batches without sizes moved the bound to %d", got)
	}

	low := newFetchSizer(32 << 10) // a configured bound under the first one
	if got := low.part.Load(); got != 32<<10 {
		t.Errorf("ceiling 32 KiB: first bound %d, want 32 KiB", got)
	}
	low.OnFetchBatchRead(kgo.BrokerMetadata{}, "t", 0, kgo.FetchBatchMetrics{CompressedBytes: fetchSizerWindow, UncompressedBytes: fetchSizerWindow})
	if got := low.part.Load(); got != 32<<10 {
		t.Errorf("ceiling 32 KiB, incompressible: bound %d, want 32 KiB", got)
	}
}

// A backlog of well-compressed records (a value repeated) used to come in whole with the
// first fetch (1 MiB of compressed batches per partition held it all), decompressed at
// once: the pollers' container was OOMKilled by a 16-partition backlog. Now a fetch holds
// about FetchPartitionTarget bytes of records per partition, and the backlog still
// arrives whole and in order.
func TestACompressibleBacklogIsFetchedInPartsInOrder(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "t"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	prod, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchCompression(kgo.SnappyCompression()))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const perPartition = 8000
	value := bytes.Repeat([]byte("0123456789abcdef"), 64) // 1 KiB: 8 MB per partition, compressed ~18x
	for i := range 2 * perPartition {
		prod.Produce(ctx, &kgo.Record{Topic: "t", Partition: int32(i % 2), Value: value}, func(_ *kgo.Record, err error) {
			if err != nil {
				t.Errorf("producing: %v", err)
			}
		})
	}
	if err := prod.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	s, err := Open(Config{BootstrapServers: c.ListenAddrs(), Topic: "t", Group: "g", FromStart: true, MaxPollRecords: 200, BatchSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	next := map[string]int64{"t-0": 0, "t-1": 0}
	n, most := 0, 0
	for n < 2*perPartition {
		msgs, err := s.Fetch(ctx)
		if err != nil {
			t.Fatalf("after %d records: %v", n, err)
		}
		for _, m := range msgs {
			if want := next[m.Record.Partition]; m.Record.Offset != want {
				t.Fatalf("%s: offset %d after %d", m.Record.Partition, m.Record.Offset, want-1)
			}
			next[m.Record.Partition]++
		}
		n += len(msgs)
		s.mu.Lock()
		inHand := int(s.cl.BufferedFetchRecords())
		for _, p := range s.held {
			inHand += len(p.recs)
		}
		s.mu.Unlock()
		most = max(most, inHand)
	}
	// 2 MiB of 1-KiB records per partition and fetch, two partitions, one fetch held and
	// one buffered: ~8,000 records; the whole backlog is 16,000.
	if most > 2*perPartition*3/4 {
		t.Errorf("up to %d records held and buffered at once, want at most %d (the backlog is %d)", most, 2*perPartition*3/4, 2*perPartition)
	}
	if got := s.sizer.part.Load(); got >= DefaultFetchMaxPartitionBytes/4 {
		t.Errorf("partition bound %d after a well-compressed backlog, want under a quarter of %d", got, DefaultFetchMaxPartitionBytes)
	}
	t.Logf("at most %d records held and buffered; partition bound %d bytes", most, s.sizer.part.Load())

	if _, err := Open(Config{BootstrapServers: c.ListenAddrs(), Topic: "t", Group: "g2", FetchMaxPartitionBytes: -1}); err == nil {
		t.Error("FetchMaxPartitionBytes -1: no error")
	}
}
