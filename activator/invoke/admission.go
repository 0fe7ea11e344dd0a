package invoke

import (
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/klambda/klambda/api/contract"
)

// Admission bounds what requests may hold in the activator at once, so that no caller
// (and no namespace) can exhaust its memory: the bytes of request bodies buffered (an
// Invoke payload is read whole before it is sent to an environment, and waits with the
// request for one), the bytes one namespace may hold of them, and the requests waiting for
// an environment. A request past a bound is answered TooManyRequestsException (429) at
// once, before its body is read.
//
// A body of unknown length (chunked) reserves the largest payload (6 MB) for as long as
// it is held; one with a Content-Length reserves that.
type Admission struct {
	// mu guards the bytes held over all namespaces (of at most bytesLimit) and by each.
	mu         sync.Mutex
	bytesLimit int64
	bytesHeld  int64
	nsLimit    int64
	nsHeld     map[string]int64
	maxWaiting int64
	waiting    atomic.Int64
}

// Defaults of cmd/activator's flags.
const (
	DefaultRequestBytes             = 128 << 20
	DefaultRequestBytesPerNamespace = 64 << 20
	DefaultMaxWaiting               = 4096
)

// NewAdmission bounds the request bytes held (totalBytes over the activator,
// perNamespaceBytes by one namespace; 0 = totalBytes) and the requests waiting for an
// environment (maxWaiting; 0 = no bound). totalBytes must hold at least one largest
// payload.
func NewAdmission(totalBytes, perNamespaceBytes int64, maxWaiting int) (*Admission, error) {
	if totalBytes < contract.MaxSyncPayload {
		return nil, &configError{"the request byte budget (" + strconv.FormatInt(totalBytes, 10) + ") must hold at least one largest payload (" + strconv.Itoa(contract.MaxSyncPayload) + " bytes)"}
	}
	if perNamespaceBytes == 0 || perNamespaceBytes > totalBytes {
		perNamespaceBytes = totalBytes
	}
	if perNamespaceBytes < contract.MaxSyncPayload {
		return nil, &configError{"the per-namespace request byte budget (" + strconv.FormatInt(perNamespaceBytes, 10) + ") must hold at least one largest payload (" + strconv.Itoa(contract.MaxSyncPayload) + " bytes)"}
	}
	if maxWaiting < 0 {
		return nil, &configError{"the bound on waiting requests must not be negative"}
	}
	return &Admission{bytesLimit: totalBytes, nsLimit: perNamespaceBytes,
		nsHeld: map[string]int64{}, maxWaiting: int64(maxWaiting)}, nil
}

type configError struct{ msg string }

func (e *configError) Error() string { return e.msg }

// reserve takes n bytes for a request of namespace ns; false: over a budget.
func (a *Admission) reserve(ns string, n int64) bool {
	a.mu.Lock()
	held := a.nsHeld[ns]
	if held+n > a.nsLimit || a.bytesHeld+n > a.bytesLimit {
		a.mu.Unlock()
		return false
	}
	a.nsHeld[ns] = held + n
	a.bytesHeld += n
	a.mu.Unlock()
	return true
}

func (a *Admission) release(ns string, n int64) {
	a.mu.Lock()
	if held := a.nsHeld[ns] - n; held > 0 {
		a.nsHeld[ns] = held
	} else {
		delete(a.nsHeld, ns) // the map holds only namespaces with requests in flight
	}
	a.bytesHeld -= n
	held := a.bytesHeld
	a.mu.Unlock()
	if held < 0 {
		panic("invoke: Admission released more bytes than it held")
	}
}

// enterWait counts a request about to wait for an environment; false: too many wait.
func (a *Admission) enterWait() bool {
	if a.waiting.Add(1) > a.maxWaiting && a.maxWaiting > 0 {
		a.waiting.Add(-1)
		return false
	}
	return true
}

func (a *Admission) leaveWait() { a.waiting.Add(-1) }

// Held reports the bytes reserved now (tests, metrics).
func (a *Admission) Held() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	var n int64
	for _, v := range a.nsHeld {
		n += v
	}
	return n
}
