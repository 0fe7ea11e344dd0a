package shim

import (
	"bytes"
	"os"
	"strconv"

	"github.com/klambda/klambda/internal/transport"
)

// peakRSSKB reads VmHWM (peak resident set size, kB) from /proc/<pid>/status.
func peakRSSKB(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	return parseVmHWM(b)
}

// statusReader re-reads one process's /proc/<pid>/status through a descriptor kept open:
// one pread per invocation instead of open, read and close.
type statusReader struct {
	f   *os.File
	buf [4096]byte
}

func openStatus(pid int) *statusReader {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return nil
	}
	return &statusReader{f: f}
}

func (r *statusReader) peakKB() int64 {
	// One pread: the whole file fits the buffer (os.File.ReadAt would read again for EOF).
	var n int
	rc, err := r.f.SyscallConn()
	if err != nil {
		return 0
	}
	_ = rc.Control(func(fd uintptr) { n = transport.RawPread(fd, r.buf[:]) })
	return parseVmHWM(r.buf[:n])
}

func (r *statusReader) close() { r.f.Close() }

func parseVmHWM(b []byte) int64 {
	i := bytes.Index(b, []byte("VmHWM:"))
	if i < 0 {
		return 0
	}
	b = b[i+len("VmHWM:"):]
	if j := bytes.IndexByte(b, '\n'); j >= 0 {
		b = b[:j]
	}
	b = bytes.TrimSpace(bytes.TrimSuffix(bytes.TrimSpace(b), []byte("kB")))
	n, _ := strconv.ParseInt(string(b), 10, 64)
	return n
}
