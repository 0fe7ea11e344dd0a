package shim

import (
	"bytes"
	"os"
	"strconv"
)

// peakRSSKB reads VmHWM (peak resident set size, kB) from /proc/<pid>/status.
func peakRSSKB(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
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
