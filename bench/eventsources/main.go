// Command eventsources benchmarks the Kafka poller: records per second from a topic to a
// trivial function behind a fake activator (the pollers' HTTP invoke client, HTTP and the Invoke API) at
// batch size 100, and the delay from produce to handler, against a plain franz-go group
// consumer reading the same kind of topic in the same run, in the same process, from the
// same in-process kfake cluster.
//
//	go run ./bench/eventsources [-records 50000] [-rate 2000] [-seconds 5] [-partitions 4]
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/klambda/klambda/eventsources/batch"
	"github.com/klambda/klambda/eventsources/invokeclient/invoketest"
	"github.com/klambda/klambda/eventsources/kafka"
	"github.com/klambda/klambda/eventsources/poller"
)

var (
	records    = flag.Int("records", 50000, "records in the backlog drained for throughput")
	rate       = flag.Int("rate", 2000, "records per second produced for the delay measurement")
	seconds    = flag.Int("seconds", 5, "how long the paced production lasts")
	partitions = flag.Int("partitions", 4, "partitions of each topic")
	size       = flag.Int("size", 256, "value size in bytes")
	cpuProfile = flag.String("cpuprofile", "", "write a CPU profile of the whole run here")
)

// sink counts records reaching a handler and their produce-to-handler delays.
type sink struct {
	mu     sync.Mutex
	n      atomic.Int64
	delays []time.Duration
}

func (s *sink) add(ts []time.Time) {
	now := time.Now()
	s.mu.Lock()
	for _, t := range ts {
		s.delays = append(s.delays, now.Sub(t))
	}
	s.mu.Unlock()
	s.n.Add(int64(len(ts)))
}

func (s *sink) reset() {
	s.mu.Lock()
	s.delays = nil
	s.mu.Unlock()
	s.n.Store(0)
}

func (s *sink) percentile(p float64) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.delays) == 0 {
		return 0
	}
	d := slices.Clone(s.delays)
	slices.Sort(d)
	return d[min(len(d)-1, int(float64(len(d))*p))]
}

// consumer is one way of reading a topic into a sink.
type consumer func(ctx context.Context, addrs []string, topic, group string, s *sink) (stop func())

func plain(ctx context.Context, addrs []string, topic, group string, s *sink) func() {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			fs.EachPartition(func(p kgo.FetchTopicPartition) {
				ts := make([]time.Time, len(p.Records))
				for i, r := range p.Records {
					ts[i] = r.Timestamp
				}
				s.add(ts)
			})
		}
	}()
	return func() { cancel(); <-done; cl.Close() }
}

func klambda(fake *invoketest.Server) consumer {
	return func(ctx context.Context, addrs []string, topic, group string, s *sink) func() {
		fake.SetHandler(func(c invoketest.Call) invoketest.Outcome {
			// A trivial function: it reads only each record's timestamp, scanning for the
			// field rather than decoding the event (the function's own cost is not the
			// poller's, and CPU per record counts everything in this process).
			s.add(timestamps(c.Payload))
			return invoketest.Outcome{}
		})
		src, err := kafka.Open(kafka.Config{BootstrapServers: addrs, Topic: topic, Group: group, FromStart: true})
		if err != nil {
			log.Fatal(err)
		}
		p := poller.New(poller.Config{Namespace: "bench", Name: "esm", Function: "fn", BatchSize: 100, Policy: batch.DefaultStreamPolicy()},
			src, fake.Invoker(), logr.Discard())
		ctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); _ = p.Run(ctx) }()
		return func() { cancel(); <-done }
	}
}

var timestampField = []byte(`"timestamp":`)

// timestamps are the records' "timestamp" fields (Unix ms) of a Kafka event, in order.
func timestamps(ev []byte) []time.Time {
	var ts []time.Time
	for {
		i := bytes.Index(ev, timestampField)
		if i < 0 {
			return ts
		}
		ev = ev[i+len(timestampField):]
		j := bytes.IndexAny(ev, ",}")
		if j < 0 {
			log.Fatalf("bad event near %q", ev)
		}
		ms, err := strconv.ParseInt(string(ev[:j]), 10, 64)
		if err != nil {
			log.Fatal(err)
		}
		ts = append(ts, time.UnixMilli(ms))
		ev = ev[j:]
	}
}

func produce(ctx context.Context, prod *kgo.Client, topic string, n int, perSecond int) {
	value := make([]byte, *size)
	for i := range value {
		value[i] = 'a' + byte(i%26)
	}
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		if perSecond > 0 {
			if d := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(perSecond))); d > 0 {
				time.Sleep(d)
			}
		}
		wg.Add(1)
		prod.Produce(ctx, &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "k%d", i), Value: value, Timestamp: time.Now()}, func(_ *kgo.Record, err error) {
			if err != nil {
				log.Fatal(err)
			}
			wg.Done()
		})
	}
	wg.Wait()
}

func waitFor(s *sink, n int, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for s.n.Load() < int64(n) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

type result struct {
	throughput float64
	p50, p99   time.Duration
	// perInvoke: mean records per invocation while draining the backlog, and while paced
	// (0 for the plain consumer).
	perInvoke, pacedPerInvoke float64
	// cpuPerRecord: this process's user+system CPU per backlog record (broker, producer,
	// consumer and, for the poller, the fake activator and function all count), which
	// depends far less on the machine's other load than the rates do.
	cpuPerRecord time.Duration
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// invocations counts the poller's invocations (the fake activator's calls).
var invocations func() int

func measure(ctx context.Context, addrs []string, prod *kgo.Client, name string, c consumer, round int) result {
	var r result
	s := &sink{}
	// Throughput: a backlog drained from a cold start (group join included).
	topic := fmt.Sprintf("%s-backlog-%d", name, round)
	produce(ctx, prod, topic, *records, 0)
	calls := invocations()
	cpu := cpuTime()
	start := time.Now()
	stop := c(ctx, addrs, topic, topic, s)
	if !waitFor(s, *records, 5*time.Minute) {
		log.Fatalf("%s: only %d of %d records arrived", name, s.n.Load(), *records)
	}
	r.throughput = float64(*records) / time.Since(start).Seconds()
	stop()
	r.cpuPerRecord = (cpuTime() - cpu) / time.Duration(*records)
	if n := invocations() - calls; n > 0 && name == "klambda" {
		r.perInvoke = float64(*records) / float64(n)
	}
	// Delay: records produced at a steady rate to a consumer already running.
	s.reset()
	topic = fmt.Sprintf("%s-paced-%d", name, round)
	produce(ctx, prod, topic, 1, 0) // create the topic's data before the group joins
	stop = c(ctx, addrs, topic, topic, s)
	if !waitFor(s, 1, time.Minute) {
		log.Fatalf("%s: consumer never started", name)
	}
	s.reset()
	n := *rate * *seconds
	calls = invocations()
	produce(ctx, prod, topic, n, *rate)
	if !waitFor(s, n, 2*time.Minute) {
		log.Fatalf("%s: only %d of %d paced records arrived", name, s.n.Load(), n)
	}
	if c := invocations() - calls; c > 0 && name == "klambda" {
		r.pacedPerInvoke = float64(n) / float64(c)
	}
	r.p50, r.p99 = s.percentile(0.50), s.percentile(0.99)
	stop()
	return r
}

func main() {
	flag.Parse()
	log.SetOutput(os.Stderr)
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	ctx := context.Background()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(*partitions), kfake.AllowAutoTopicCreation())
	if err != nil {
		log.Fatal(err)
	}
	defer cluster.Close()
	addrs := cluster.ListenAddrs()
	prod, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.AllowAutoTopicCreation(), kgo.ProducerLinger(time.Millisecond))
	if err != nil {
		log.Fatal(err)
	}
	defer prod.Close()
	fake := invoketest.New(nil)
	defer fake.Close()
	fake.Forget()
	invocations = fake.CallCount

	// Two alternating rounds so that background load hits both alike; the best round of each counts.
	var base, kl []result
	for round := range 2 {
		base = append(base, measure(ctx, addrs, prod, "plain", plain, round))
		kl = append(kl, measure(ctx, addrs, prod, "klambda", klambda(fake), round))
	}
	best := func(rs []result) result {
		b := rs[0]
		for _, r := range rs[1:] {
			if r.throughput > b.throughput {
				b.throughput = r.throughput
			}
			if r.p50 < b.p50 {
				b.p50 = r.p50
			}
			if r.p99 < b.p99 {
				b.p99 = r.p99
			}
			b.perInvoke = max(b.perInvoke, r.perInvoke)
			b.cpuPerRecord = min(b.cpuPerRecord, r.cpuPerRecord)
			b.pacedPerInvoke = max(b.pacedPerInvoke, r.pacedPerInvoke)
		}
		return b
	}
	b, k := best(base), best(kl)
	w := io.Writer(os.Stdout)
	fmt.Fprintf(w, "Kafka (kfake, %d partitions, %d-byte values) to a trivial function, batch size 100; host: %d cores\n", *partitions, *size, runtime.NumCPU())
	fmt.Fprintf(w, "throughput: %d-record backlog from a cold start; delay: %d records/s for %d s; best of 2 alternating rounds\n\n", *records, *rate, *seconds)
	fmt.Fprintf(w, "%-34s %16s %16s %10s\n", "", "franz-go consumer", "klambda poller", "ratio")
	fmt.Fprintf(w, "%-34s %14.0f/s %14.0f/s %9.2fx\n", "throughput (records)", b.throughput, k.throughput, k.throughput/b.throughput)
	fmt.Fprintf(w, "%-34s %16s %16s %9.2fx\n", "produce-to-handler delay p50", b.p50.Round(10*time.Microsecond), k.p50.Round(10*time.Microsecond), float64(k.p50)/float64(b.p50))
	fmt.Fprintf(w, "%-34s %16s %16s %9.2fx\n", "CPU per record (backlog, process)", b.cpuPerRecord.Round(10*time.Nanosecond), k.cpuPerRecord.Round(10*time.Nanosecond), float64(k.cpuPerRecord)/float64(b.cpuPerRecord))
	fmt.Fprintf(w, "%-34s %16s %16.1f\n", "records per invoke (backlog)", "", k.perInvoke)
	fmt.Fprintf(w, "%-34s %16s %16.1f\n", "records per invoke (paced)", "", k.pacedPerInvoke)
	fmt.Fprintf(w, "%-34s %16s %16s %9.2fx\n", "produce-to-handler delay p99", b.p99.Round(10*time.Microsecond), k.p99.Round(10*time.Microsecond), float64(k.p99)/float64(b.p99))
}
