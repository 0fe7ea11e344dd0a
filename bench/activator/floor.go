package main

import (
	"bufio"
	"bytes"
	"io"
	"net"
)

// The -floor relay: the least a hop in front of the environments can do, written the plain
// Go way (net.Conn, bufio, a goroutine per caller connection, one connection to its
// environment each): it copies a request (head and Content-Length body) to the environment
// and the answer back, with no parse beyond the framing, no routing, no limits, next
// to no allocation. What the activator adds over it is its own work; what the floor
// adds over the direct calls is the hop's (system calls, loopback TCP, wake-ups).

// startFloor serves one relay per environment address; it answers their base URLs.
func startFloor(envs []string) (urls []string, stop func()) {
	var lns []net.Listener
	for _, env := range envs {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			panic(err)
		}
		lns = append(lns, ln)
		urls = append(urls, "http://"+ln.Addr().String())
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go relay(c, env)
			}
		}()
	}
	return urls, func() {
		for _, ln := range lns {
			ln.Close()
		}
	}
}

// relay copies requests from c to a connection of its own to env, and answers back,
// one at a time, until either side closes.
func relay(c net.Conn, env string) {
	defer c.Close()
	up, err := net.Dial("tcp", env)
	if err != nil {
		return
	}
	defer up.Close()
	cr, ur := bufio.NewReaderSize(c, 64<<10), bufio.NewReaderSize(up, 64<<10)
	for {
		if copyMessage(up, cr) != nil || copyMessage(c, ur) != nil {
			return
		}
	}
}

// copyMessage copies one HTTP/1.1 message (head, then Content-Length bytes of body) from
// r to w, in one write when it is all buffered.
func copyMessage(w io.Writer, r *bufio.Reader) error {
	if _, err := r.Peek(1); err != nil {
		return err
	}
	for {
		buf, _ := r.Peek(r.Buffered())
		if end := bytes.Index(buf, []byte("\r\n\r\n")); end >= 0 {
			n := end + 4 + contentLength(buf[:end])
			for r.Buffered() < n && r.Buffered() < r.Size() {
				if _, err := r.Peek(r.Buffered() + 1); err != nil {
					return err
				}
			}
			k := min(n, r.Buffered())
			buf, _ = r.Peek(k)
			if _, err := w.Write(buf); err != nil {
				return err
			}
			_, _ = r.Discard(k)
			_, err := io.CopyN(w, r, int64(n-k))
			return err
		}
		if r.Buffered() == r.Size() {
			return io.ErrShortBuffer
		}
		if _, err := r.Peek(r.Buffered() + 1); err != nil {
			return err
		}
	}
}

// contentLength is the head's Content-Length (0 when it has none).
func contentLength(head []byte) int {
	for len(head) > 0 {
		line := head
		if i := bytes.Index(head, []byte("\r\n")); i >= 0 {
			line, head = head[:i], head[i+2:]
		} else {
			head = nil
		}
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok || !bytes.EqualFold(bytes.TrimSpace(k), []byte("Content-Length")) {
			continue
		}
		n := 0
		for _, c := range bytes.TrimSpace(v) {
			if c < '0' || c > '9' {
				return 0
			}
			n = n*10 + int(c-'0')
		}
		return n
	}
	return 0
}
