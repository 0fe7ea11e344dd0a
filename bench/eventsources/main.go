// Command eventsources benchmarks the Kafka poller: records per second from a topic to a
// trivial function behind a fake activator (the pollers' HTTP invoke client, HTTP and the Invoke API) at
// batch size 100, and the delay from produce to handler, against a plain franz-go group
// consumer reading the same kind of topic in the same run, in the same process, from the
// same in-process kfake cluster.
//
//	go run ./bench/eventsources [-records 50000] [-rate 2000] [-seconds 5] [-partitions 4] [-rounds 2] [-invoker conn|http] [-filter pattern]
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
	"github.com/klambda/klambda/eventsources/filter"
	"github.com/klambda/klambda/eventsources/invokeclient"
	"github.com/klambda/klambda/eventsources/kafka"
	"github.com/klambda/klambda/eventsources/poller"
)

var (
	records       = flag.Int("records", 50000, "records in the backlog drained for throughput")
	rate          = flag.Int("rate", 2000, "records per second produced for the delay measurement")
	seconds       = flag.Int("seconds", 5, "how long the paced production lasts")
	partitions    = flag.Int("partitions", 4, "partitions of each topic")
	size          = flag.Int("size", 256, "value size in bytes")
	serveFunction = flag.Bool("serve-function", false, "internal: run the fake activator and function (a child process of the bench)")
	cpuProfile    = flag.String("cpuprofile", "", "write a CPU profile of the poller's backlog drains (only those) here, and the fake activator's and function's whole run in <file>.fn")
	filterPattern = flag.String("filter", "", "a filterCriteria pattern for the poller's mapping (e.g. '{\"partition\":[{\"numeric\":[\">=\",0]}]}', which keeps every record: the cost of viewing and matching each record)")
	rounds        = flag.Int("rounds", 2, "alternating rounds (plain, poller, HTTP floor); each round's figures go to standard error, the best of each side to the table")
	invoker       = flag.String("invoker", "conn", "the poller's and the HTTP floor's invoke client: conn (invokeclient.ConnInvoker, the pollers') or http (invokeclient.HTTPInvoker, net/http's client)")
)

// newInvoker is the invoke client -invoker names.
func newInvoker(url string) invokeclient.Invoker {
	switch *invoker {
	case "conn":
		return invokeclient.NewConnInvoker(url, invokeclient.StaticToken("bench"), nil)
	case "http":
		return invokeclient.NewHTTPInvoker(url, invokeclient.StaticToken("bench"), nil)
	}
	log.Fatalf("-invoker %q: want conn or http", *invoker)
	return nil
}

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
	s.delays = s.delays[:0] // kept: a round's delays do not grow the slice again
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

// counter is where a consumer's handler counts records and delays: a sink in this process
// (the plain consumer) or the fake activator's, in its own process (the poller).
type counter interface {
	count() int64
	reset()
	percentile(p float64) time.Duration
	// waitFor waits until n records arrived, false after limit.
	waitFor(n int, limit time.Duration) bool
}

func (s *sink) count() int64 { return s.n.Load() }

func (s *sink) waitFor(n int, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for s.n.Load() < int64(n) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

// consumer is one way of reading a topic into a counter.
type consumer func(ctx context.Context, addrs []string, topic, group string) (stop func())

func plain(s *sink) consumer {
	return func(ctx context.Context, addrs []string, topic, group string) func() {
		return plainConsumer(ctx, addrs, topic, group, s)
	}
}

func plainConsumer(ctx context.Context, addrs []string, topic, group string, s *sink) func() {
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

func klambda(fake *remote) consumer {
	return func(ctx context.Context, addrs []string, topic, group string) func() {
		src, err := kafka.Open(kafka.Config{BootstrapServers: addrs, Topic: topic, Group: group, FromStart: true, BatchSize: 100})
		if err != nil {
			log.Fatal(err)
		}
		p := poller.New(poller.Config{Namespace: "bench", Name: "esm", Function: "fn", BatchSize: 100, Policy: batch.DefaultStreamPolicy(), Filter: matcher()},
			src, newInvoker(fake.url), logr.Discard())
		ctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); _ = p.Run(ctx) }()
		return func() { cancel(); <-done }
	}
}

// timestampField starts with the comma before the key (the event's records have "offset"
// before "timestamp"): bytes.Index finds a pattern's first byte with IndexByte, and a comma is
// rare in an event (none in base64), whereas a quote opens every key and string, so many
// false starts made Index fall back to its brute-force search: a third of the fake side's
// CPU in the profile, for a trivial function.
// matcher is -filter compiled (nil without it).
func matcher() *filter.Matcher {
	if *filterPattern == "" {
		return nil
	}
	m, err := filter.CompilePatterns([]string{*filterPattern})
	if err != nil {
		log.Fatalf("-filter: %v", err)
	}
	return m
}

var timestampField = []byte(`,"timestamp":`)

// timestamps are the records' "timestamp" fields (Unix ms) of a Kafka event, in order: a
// minimal honest function, which finds every record and reads one field of it, without
// decoding the rest of the event (the plain consumer's handler reads the same field).
func timestamps(ev []byte) []time.Time {
	ts := make([]time.Time, 0, 100)
	for {
		i := bytes.Index(ev, timestampField)
		if i < 0 {
			return ts
		}
		ev = ev[i+len(timestampField):]
		ms, j := int64(0), 0
		for ; j < len(ev) && ev[j] >= '0' && ev[j] <= '9'; j++ {
			ms = ms*10 + int64(ev[j]-'0')
		}
		if j == 0 || j > 18 || j == len(ev) || (ev[j] != ',' && ev[j] != '}') {
			log.Fatalf("bad event near %q", ev[:min(len(ev), 40)])
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

type result struct {
	throughput float64
	p50, p99   time.Duration
	// perInvoke: mean records per invocation while draining the backlog, and while paced
	// (0 for the plain consumer).
	perInvoke, pacedPerInvoke float64
	// cpuPerRecord: this process's user+system CPU per backlog record (broker and consumer
	// for both; for the poller its HTTP client too), which depends far less on the machine's
	// other load than the rates do. fnCPUPerRecord: the fake activator's and function's
	// process (the poller only).
	cpuPerRecord, fnCPUPerRecord time.Duration
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// startProfile starts the CPU profile of one round's backlog drain by the poller: round 0
// in -cpuprofile, round N in -cpuprofile.N (go tool pprof merges the files it is given).
func startProfile(round int) {
	if *cpuProfile == "" {
		return
	}
	name := *cpuProfile
	if round > 0 {
		name += "." + strconv.Itoa(round)
	}
	f, err := os.Create(name)
	if err != nil {
		log.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		log.Fatal(err)
	}
}

func measure(ctx context.Context, addrs []string, prod *kgo.Client, name string, c consumer, s counter, fn *remote, round int) result {
	var r result
	s.reset()
	// Throughput: a backlog drained from a cold start (group join included).
	topic := fmt.Sprintf("%s-backlog-%d", name, round)
	produce(ctx, prod, topic, *records, 0)
	calls, fnCPU := 0, time.Duration(0)
	if fn != nil {
		calls, fnCPU = fn.calls(), fn.cpu()
		startProfile(round)
	}
	cpu := cpuTime()
	start := time.Now()
	stop := c(ctx, addrs, topic, topic)
	if !s.waitFor(*records, 5*time.Minute) {
		log.Fatalf("%s: only %d of %d records arrived", name, s.count(), *records)
	}
	r.throughput = float64(*records) / time.Since(start).Seconds()
	stop()
	pprof.StopCPUProfile()
	r.cpuPerRecord = (cpuTime() - cpu) / time.Duration(*records)
	if fn != nil {
		r.fnCPUPerRecord = (fn.cpu() - fnCPU) / time.Duration(*records)
		if n := fn.calls() - calls; n > 0 {
			r.perInvoke = float64(*records) / float64(n)
		}
	}
	// Delay: records produced at a steady rate to a consumer already running.
	s.reset()
	topic = fmt.Sprintf("%s-paced-%d", name, round)
	produce(ctx, prod, topic, 1, 0) // create the topic's data before the group joins
	stop = c(ctx, addrs, topic, topic)
	if !s.waitFor(1, time.Minute) {
		log.Fatalf("%s: consumer never started", name)
	}
	s.reset()
	n := *rate * *seconds
	if fn != nil {
		calls = fn.calls()
	}
	produce(ctx, prod, topic, n, *rate)
	if !s.waitFor(n, 2*time.Minute) {
		log.Fatalf("%s: only %d of %d paced records arrived", name, s.count(), n)
	}
	if fn != nil {
		if c := fn.calls() - calls; c > 0 {
			r.pacedPerInvoke = float64(n) / float64(c)
		}
	}
	r.p50, r.p99 = s.percentile(0.50), s.percentile(0.99)
	stop()
	return r
}

func main() {
	flag.Parse()
	log.SetOutput(os.Stderr)
	if *serveFunction {
		serveFake()
		return
	}
	newInvoker("") // -invoker is valid
	matcher()      // -filter is valid
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
	fake := startFake()
	defer fake.close()

	// Alternating rounds so that background load hits all sides alike; the best round of each counts.
	if *rounds < 1 {
		log.Fatalf("-rounds %d: want at least 1", *rounds)
	}
	us := func(d time.Duration) string { return d.Round(10 * time.Nanosecond).String() }
	var base, kl, fl, ev []result
	for round := range *rounds {
		s := &sink{}
		base = append(base, measure(ctx, addrs, prod, "plain", plain(s), s, nil, round))
		kl = append(kl, measure(ctx, addrs, prod, "klambda", klambda(fake), fake, fake, round))
		fl = append(fl, httpFloor(fake))
		ev = append(ev, eventCost())
		b, k, f := base[round], kl[round], fl[round]
		fmt.Fprintf(os.Stderr, "round %d (load %s): plain %.0f/s, poller %.0f/s (%.2fx), floor %.0f/s; CPU/record plain %s, poller %s + %s, floor %s + %s, event alone %s (ceiling %.2fx); %.1f records per invoke; p50 %s / %s\n",
			round, loadAverage(), b.throughput, k.throughput, k.throughput/b.throughput, f.throughput,
			us(b.cpuPerRecord), us(k.cpuPerRecord), us(k.fnCPUPerRecord), us(f.cpuPerRecord), us(f.fnCPUPerRecord), us(ev[round].cpuPerRecord),
			ceiling(b, ev[round], f), k.perInvoke, b.p50.Round(10*time.Microsecond), k.p50.Round(10*time.Microsecond))
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
			b.fnCPUPerRecord = min(b.fnCPUPerRecord, r.fnCPUPerRecord)
			b.pacedPerInvoke = max(b.pacedPerInvoke, r.pacedPerInvoke)
		}
		return b
	}
	b, k, f, e := best(base), best(kl), best(fl), best(ev)
	w := io.Writer(os.Stdout)
	fmt.Fprintf(w, "Kafka (kfake, %d partitions, %d-byte values) to a trivial function, batch size 100, -invoker %s; host: %d cores\n", *partitions, *size, *invoker, runtime.NumCPU())
	if *filterPattern != "" {
		fmt.Fprintf(w, "the poller's mapping filters with %s (the plain consumer and the HTTP floor do not)\n", *filterPattern)
	}
	fmt.Fprintf(w, "throughput: %d-record backlog from a cold start; delay: %d records/s for %d s; best of %d alternating rounds\n", *records, *rate, *seconds, *rounds)
	fmt.Fprintf(w, "HTTP floor: the same events (100 records) posted by %d callers, one invocation each in flight, no broker: what any poller invoking over HTTP pays\n\n", *partitions)
	fmt.Fprintf(w, "%-34s %16s %16s %10s %16s %10s\n", "", "franz-go consumer", "klambda poller", "ratio", "HTTP floor", "poller/floor")
	fmt.Fprintf(w, "%-34s %14.0f/s %14.0f/s %9.2fx %14.0f/s %9.2fx\n", "throughput (records)", b.throughput, k.throughput, k.throughput/b.throughput, f.throughput, k.throughput/f.throughput)
	fmt.Fprintf(w, "%-34s %16s %16s %9.2fx\n", "produce-to-handler delay p50", b.p50.Round(10*time.Microsecond), k.p50.Round(10*time.Microsecond), float64(k.p50)/float64(b.p50))
	fmt.Fprintf(w, "%-34s %16s %16s %9.2fx %16s %9.2fx\n", "CPU/record, consumer's process", us(b.cpuPerRecord), us(k.cpuPerRecord), float64(k.cpuPerRecord)/float64(b.cpuPerRecord), us(f.cpuPerRecord), float64(k.cpuPerRecord)/float64(f.cpuPerRecord))
	fmt.Fprintf(w, "%-34s %16s %16s %10s %16s\n", "CPU/record, activator+function", "-", us(k.fnCPUPerRecord), "", us(f.fnCPUPerRecord))
	fmt.Fprintf(w, "%-34s %16s %16s\n", "CPU/record, building the event alone", "", us(e.cpuPerRecord))
	// What the CPU per record allows when the drain is CPU-bound (both processes share the
	// machine's cores): the plain consumer's CPU over the poller's two processes', and the
	// same for a poller with nothing of its own but the event: the plain consumer's work
	// (the same fetch), building the event, and the HTTP floor's two processes (the same
	// events delivered). The rate ratio can only beat the second when the plain consumer
	// is not CPU-bound.
	fmt.Fprintf(w, "%-34s %16s %16s %9.2fx\n", "CPU-bound ratio (plain / poller)", "", "", float64(b.cpuPerRecord)/float64(k.cpuPerRecord+k.fnCPUPerRecord))
	fmt.Fprintf(w, "%-34s %16s %16s %9.2fx\n", "CPU-bound ceiling of any HTTP poller", "", "", ceiling(b, e, f))
	fmt.Fprintf(w, "%-34s %16s %16.1f\n", "records per invoke (backlog)", "", k.perInvoke)
	fmt.Fprintf(w, "%-34s %16s %16.1f\n", "records per invoke (paced)", "", k.pacedPerInvoke)
	fmt.Fprintf(w, "%-34s %16s %16s %9.2fx\n", "produce-to-handler delay p99", b.p99.Round(10*time.Microsecond), k.p99.Round(10*time.Microsecond), float64(k.p99)/float64(b.p99))
}

// eventCost is the CPU per record of building the poller's Kafka events alone, in this
// process, for as many records as the backlog, 100 per event (one partition's, as the
// drain's batches mostly are, the producer's values and keys, a new millisecond every ten
// records), in one reused buffer as the poller's: the part of the poller's cost that no
// faster plumbing removes, since Lambda's event format asks for it (JSON, base64 values).
func eventCost() result {
	src := &kafka.Source{} // AppendEvent needs no connection; the bootstrap servers are left out
	value := make([]byte, *size)
	for i := range value {
		value[i] = 'a' + byte(i%26)
	}
	recs := make([]batch.Record, 100)
	now := time.Now()
	for i := range recs {
		r := &kgo.Record{Topic: "klambda-backlog-0", Partition: 1, Offset: int64(100000 + i), Key: fmt.Appendf(nil, "k%d", 100000+i), Value: value, Timestamp: now.Add(time.Duration(i/10) * time.Millisecond)}
		recs[i] = batch.Record{Partition: "klambda-backlog-0-1", Offset: r.Offset, Size: 160 + 2*len(r.Topic) + (len(r.Key)+2)/3*4 + (len(r.Value)+2)/3*4, Ref: r}
	}
	var buf []byte
	n := max(1, *records/100)
	cpu := cpuTime()
	for range n {
		var err error
		if buf, err = src.AppendEvent(buf[:0], recs); err != nil {
			log.Fatal(err)
		}
	}
	return result{cpuPerRecord: (cpuTime() - cpu) / time.Duration(n*100)}
}

// ceiling is the best rate ratio a poller invoking over HTTP could reach in a CPU-bound
// drain: the plain consumer's CPU per record over what such a poller cannot avoid, the
// plain consumer's own work (fetching the same records), building the event (ev) and the
// HTTP floor's two processes (delivering it, the fake activator and function included).
func ceiling(plain, ev, floor result) float64 {
	return float64(plain.cpuPerRecord) / float64(plain.cpuPerRecord+ev.cpuPerRecord+floor.cpuPerRecord+floor.fnCPUPerRecord)
}

// loadAverage is the machine's 1-minute load average ("?" where /proc/loadavg is not).
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := bytes.Fields(b)
	if len(f) == 0 {
		return "?"
	}
	return string(f[0])
}
