package transport

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// rawPair returns a rawConn accepted from a loopback listener and the client end.
func rawPair(t *testing.T) (*rawConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c, err := Listener{ln}.Accept()
	if err != nil {
		t.Fatal(err)
	}
	rc, ok := c.(*rawConn)
	if !ok {
		t.Fatalf("accepted %T, want *rawConn", c)
	}
	t.Cleanup(func() { rc.Close(); client.Close() })
	return rc, client
}

func TestRawConnLargeWriteToASlowReader(t *testing.T) {
	rc, client := rawPair(t)
	// Larger than any socket buffer: the write hits EAGAIN and must wait for the poller.
	want := bytes.Repeat([]byte("0123456789abcdef"), 6<<20/16)
	errCh := make(chan error, 1)
	go func() {
		n, err := rc.Write(want)
		if err == nil && n != len(want) {
			err = io.ErrShortWrite
		}
		errCh <- err
	}()
	time.Sleep(50 * time.Millisecond) // let the writer fill the buffers first
	_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(io.LimitReader(client, int64(len(want))))
	if werr := <-errCh; werr != nil {
		t.Fatalf("write: %v", werr)
	}
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes, not what was written", len(got))
	}
}

func TestRawConnReadDeadlineAndEOF(t *testing.T) {
	rc, client := rawPair(t)
	buf := make([]byte, 16)
	// net/http aborts its background read with a deadline in the past and expects a
	// timeout net.Error back.
	_ = rc.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err := rc.Read(buf)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: %v, want a timeout", err)
	}
	_ = rc.SetReadDeadline(time.Time{})
	if _, err := client.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	n, err := rc.Read(buf)
	if err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
	client.Close()
	if _, err := rc.Read(buf); err != io.EOF {
		t.Fatalf("read after the peer closed: %v, want io.EOF", err)
	}
	if n, err := rc.Read(nil); n != 0 || err != nil {
		t.Fatalf("empty read: %d, %v", n, err)
	}
}

func TestRawConnErrorsAfterClose(t *testing.T) {
	rc, _ := rawPair(t)
	rc.Close()
	if _, err := rc.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read on a closed conn: %v", err)
	}
	if _, err := rc.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write on a closed conn: %v", err)
	}
}

func TestRawConnWriteToAResetPeer(t *testing.T) {
	rc, client := rawPair(t)
	// RST instead of FIN: the writer must see an error, not hang or report success forever.
	_ = client.(*net.TCPConn).SetLinger(0)
	client.Close()
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		_, err = rc.Write(make([]byte, 64<<10))
		time.Sleep(time.Millisecond)
	}
	if err == nil {
		t.Fatal("writes to a reset peer kept succeeding")
	}
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "write" {
		t.Fatalf("write error %v (%T), want a *net.OpError", err, err)
	}
}

func TestNowaitWriterFillsAPipeAndFallsBack(t *testing.T) {
	// A blocking pipe, as the shim's stdout is (os.Pipe's would be non-blocking).
	var fds [2]int
	if err := syscall.Pipe(fds[:]); err != nil {
		t.Fatal(err)
	}
	r, w := os.NewFile(uintptr(fds[0]), "r"), os.NewFile(uintptr(fds[1]), "w")
	defer r.Close()
	nw := NewNowaitWriter(w)
	if _, ok := nw.(*nowaitWriter); !ok {
		t.Fatalf("NewNowaitWriter(*os.File) = %T", nw)
	}
	// Four times a pipe's default capacity: the RWF_NOWAIT write stops short (EAGAIN) and
	// the rest must go through the blocking write, in order.
	want := make([]byte, 256<<10)
	for i := range want {
		want[i] = byte(i % 251)
	}
	got := make(chan []byte, 1)
	go func() {
		time.Sleep(50 * time.Millisecond) // let the pipe fill up first
		b, _ := io.ReadAll(r)
		got <- b
	}()
	n, err := nw.Write(want)
	if err != nil || n != len(want) {
		t.Fatalf("wrote %d, %v", n, err)
	}
	if _, err := nw.Write([]byte("tail\n")); err != nil {
		t.Fatal(err)
	}
	w.Close()
	b := <-got
	if !bytes.Equal(b, append(want, "tail\n"...)) {
		t.Fatalf("read %d bytes, not what was written", len(b))
	}
}

func TestNowaitWriterOnFilesAndOtherWriters(t *testing.T) {
	f, err := os.Create(t.TempDir() + "/log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	nw := NewNowaitWriter(f)
	for _, line := range []string{"START\n", "END\n", "REPORT\n"} {
		if _, err := nw.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := os.ReadFile(f.Name())
	if string(b) != "START\nEND\nREPORT\n" {
		t.Fatalf("file holds %q", b)
	}
	var buf bytes.Buffer
	if NewNowaitWriter(&buf) != io.Writer(&buf) {
		t.Fatal("a writer that is not a file must be used as it is")
	}
}

// A write and a read allocate nothing (their callbacks are made once per connection).
func TestRawConnReadAndWriteDoNotAllocate(t *testing.T) {
	rc, client := rawPair(t)
	go func() { _, _ = io.Copy(client, client) }() // echoes
	p := []byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	buf := make([]byte, 2*len(p))
	if n := testing.AllocsPerRun(200, func() {
		if _, err := rc.Write(p); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(rc, buf[:len(p)]); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("%.1f allocations per write and read, want 0", n)
	}
}
