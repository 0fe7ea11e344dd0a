package invoke_test

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/klambda/klambda/activator/testrig"
	"github.com/klambda/klambda/api/contract"
)

// BenchmarkInvokeAPI is one warm invocation after another through the Invoke API as
// bench/activator runs it (the lean server, authorization off, metrics on, the
// keep-alive shim client), with a client and an environment that allocate nothing and
// do next to nothing (raw sockets, a fixed answer): its allocations per operation are
// the activator's own, and its CPU per operation (cpu-ns/op: the process's, not the wall
// time of ns/op) the activator's plus the little the two ends do.
//
//	go test -run '^$' -bench InvokeAPI -benchmem ./activator/invoke/
func BenchmarkInvokeAPI(b *testing.B) {
	rig := testrig.New(testrig.Options{})
	defer rig.Close()
	rig.Function("echo", -1, 0)
	shim := startRawShim(b)
	defer shim.Close()
	rig.Endpoints("echo", contract.Latest, shim.Addr().String())

	payload := `{"key1":"value1","key2":"value2","key3":"value3"}`
	req := []byte("POST /2015-03-31/functions/echo/invocations HTTP/1.1\r\nHost: " + rig.Server.Addr +
		"\r\nUser-Agent: Go-http-client/1.1\r\nContent-Length: " + strconv.Itoa(len(payload)) +
		"\r\nContent-Type: application/json\r\nAccept-Encoding: gzip\r\n\r\n" + payload)
	nc, err := net.Dial("tcp", rig.Server.Addr)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	br := bufio.NewReaderSize(nc, 4<<10)
	roundTrip := func() {
		if _, err := nc.Write(req); err != nil {
			b.Fatal(err)
		}
		if err := readAnswer(br, len(payload)); err != nil {
			b.Fatal(err)
		}
	}
	for range 100 { // connections made, pools and series warm
		roundTrip()
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu := processCPU()
	for range b.N {
		roundTrip()
	}
	b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
}

// processCPU is the process's user and system time so far, in nanoseconds: what a
// sequential benchmark spends, without the time it waits (ns/op counts both).
func processCPU() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// readAnswer reads one answer (200, Content-Length) with a body of n bytes.
func readAnswer(br *bufio.Reader, n int) error {
	status, err := br.ReadSlice('\n')
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(status, []byte("HTTP/1.1 200 ")) {
		return &textproto.Error{Code: 0, Msg: "answer: " + string(status)}
	}
	length := -1
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 {
			break
		}
		if v, ok := bytes.CutPrefix(line, []byte("Content-Length: ")); ok {
			length, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
		}
	}
	if length != n {
		return &textproto.Error{Code: 0, Msg: "answer of " + strconv.Itoa(length) + " bytes"}
	}
	_, err = br.Discard(length)
	return err
}

// startRawShim serves the shim's invoke contract as simply as can be: every request (one
// at a time per connection) is answered 200 with its own body and the shim's headers.
func startRawShim(b *testing.B) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go serveRaw(nc)
		}
	}()
	return ln
}

func serveRaw(nc net.Conn) {
	defer nc.Close()
	br := bufio.NewReaderSize(nc, 8<<10)
	answer := make([]byte, 0, 1024)
	body := make([]byte, 0, 1024)
	for {
		length := 0
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				return
			}
			if len(line) <= 2 {
				break
			}
			if len(line) > 16 && strings.EqualFold(string(line[:15]), "Content-Length:") {
				length, _ = strconv.Atoi(string(bytes.TrimSpace(line[15:])))
			}
		}
		body = body[:length]
		if _, err := io.ReadFull(br, body); err != nil {
			return
		}
		answer = append(answer[:0], "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"+
			contract.HeaderExecutedVersion+": $LATEST\r\n"+contract.HeaderDuration+": 0.02\r\nContent-Length: "...)
		answer = strconv.AppendInt(answer, int64(length), 10)
		answer = append(answer, "\r\n\r\n"...)
		answer = append(answer, body...)
		if _, err := nc.Write(answer); err != nil {
			return
		}
	}
}
