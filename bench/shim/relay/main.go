// Command relay is the benchmark's floor: the least a server can do to relay warm Lambda
// invocations over HTTP/1.1 keep-alive, written the plain Go way (net.Conn, bufio, one
// goroutine per connection, GOMAXPROCS=1). It answers POST …/invocations from a caller,
// GET …/next and POST …/{id}/response from the runtime, and nothing else: no validation, no
// errors, no timeouts, no logs, no state machine. It is not a product; bench/shim measures
// it beside runtime-shim to show how much of an invocation is the server's own work.
//
//	relay [-epoll] INVOKE_ADDR RUNTIME_API_ADDR -- CMD [ARGS...]
//
// With -epoll it runs the same protocol on its own epoll loop (epoll.go).
package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync/atomic"
)

type invocation struct {
	event  []byte
	result chan []byte
}

var (
	events  = make(chan *invocation, 1)
	current atomic.Pointer[invocation]
	seq     atomic.Int64
)

var errBadRequest = errors.New("bad request")

// readRequest reads one request and returns its path and body (Content-Length or chunked).
func readRequest(br *bufio.Reader) (path string, body []byte, err error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return "", nil, err
	}
	f := bytes.Fields(line)
	if len(f) < 3 {
		return "", nil, errBadRequest
	}
	path = string(f[1])
	length, chunked := 0, false
	for {
		h, err := br.ReadSlice('\n')
		if err != nil {
			return "", nil, err
		}
		if len(h) <= 2 {
			break
		}
		name, value, _ := bytes.Cut(h, []byte(":"))
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			length, _ = strconv.Atoi(string(value))
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = true
		}
	}
	if !chunked {
		body = make([]byte, length)
		_, err = io.ReadFull(br, body)
		return path, body, err
	}
	for {
		sizeLine, err := br.ReadSlice('\n')
		if err != nil {
			return "", nil, err
		}
		size, err := strconv.ParseInt(string(bytes.TrimSpace(sizeLine)), 16, 64)
		if err != nil {
			return "", nil, errBadRequest
		}
		if size == 0 {
			for { // trailers, then the empty line
				t, err := br.ReadSlice('\n')
				if err != nil {
					return "", nil, err
				}
				if len(t) <= 2 {
					return path, body, nil
				}
			}
		}
		chunk := make([]byte, size+2)
		if _, err := io.ReadFull(br, chunk); err != nil {
			return "", nil, err
		}
		body = append(body, chunk[:size]...)
	}
}

// appendAnswer appends an HTTP/1.1 answer with a JSON body to b.
func appendAnswer(b []byte, status, headers string, body []byte) []byte {
	b = append(b, "HTTP/1.1 "+status+"\r\nContent-Type: application/json\r\n"+headers+"Content-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n\r\n"...)
	return append(b, body...)
}

func answer(c net.Conn, status, headers string, body []byte) error {
	_, err := c.Write(appendAnswer(make([]byte, 0, 256+len(body)), status, headers, body))
	return err
}

func serveCaller(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		_, event, err := readRequest(br)
		if err != nil {
			return
		}
		inv := &invocation{event: event, result: make(chan []byte, 1)}
		events <- inv
		if answer(c, "200 OK", "", <-inv.result) != nil {
			return
		}
	}
}

const nextHeaders = "Lambda-Runtime-Deadline-Ms: 99999999999999\r\n" +
	"Lambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:000000000000:function:relay\r\n"

func serveRuntime(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		path, body, err := readRequest(br)
		if err != nil {
			return
		}
		if bytes.HasSuffix([]byte(path), []byte("/next")) {
			inv := <-events
			current.Store(inv)
			id := "Lambda-Runtime-Aws-Request-Id: relay-" + strconv.FormatInt(seq.Add(1), 10) + "\r\n"
			err = answer(c, "200 OK", id+nextHeaders, inv.event)
		} else {
			current.Load().result <- body
			runtime.Gosched() // the caller's answer first, as the shim does
			err = answer(c, "202 Accepted", "", []byte(`{"status":"OK"}`))
		}
		if err != nil {
			return
		}
	}
}

func serve(addr string, handle func(net.Conn)) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go handle(c)
		}
	}()
	return nil
}

func main() {
	args := os.Args[1:]
	epoll := len(args) > 0 && args[0] == "-epoll"
	if epoll {
		args = args[1:]
	}
	if len(args) < 4 || args[2] != "--" {
		fmt.Fprintln(os.Stderr, "usage: relay [-epoll] INVOKE_ADDR RUNTIME_API_ADDR -- CMD [ARGS...]")
		os.Exit(2)
	}
	runtime.GOMAXPROCS(1)
	cmd := exec.Command(args[3], args[4:]...)
	cmd.Env = append(os.Environ(), "AWS_LAMBDA_RUNTIME_API="+args[1])
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if epoll {
		err := runEpoll(args[0], args[1], cmd.Start)
		fmt.Fprintln(os.Stderr, "relay:", err)
		os.Exit(1)
	}
	for _, s := range []struct {
		addr   string
		handle func(net.Conn)
	}{{args[0], serveCaller}, {args[1], serveRuntime}} {
		if err := serve(s.addr, s.handle); err != nil {
			fmt.Fprintln(os.Stderr, "relay:", err)
			os.Exit(1)
		}
	}
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "relay: runtime:", err)
		os.Exit(1)
	}
}
