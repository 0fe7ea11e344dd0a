package contract

import (
	"crypto/rand"
	"sync"

	"github.com/google/uuid"
)

// NewRequestID is a Lambda request id (a random UUID, version 4), as Lambda gives each
// invocation. Its randomness comes from crypto/rand in blocks of 32 ids (uuid's
// EnableRandPool, for this function only): one read instead of one per id, and no
// allocation besides the string.
func NewRequestID() string {
	var u uuid.UUID
	idRandom.Lock()
	if idRandom.next == len(idRandom.buf) {
		_, _ = rand.Read(idRandom.buf[:]) // (never fails: crypto/rand crashes the program instead)
		idRandom.next = 0
	}
	copy(u[:], idRandom.buf[idRandom.next:])
	idRandom.next += len(u)
	idRandom.Unlock()
	u[6] = u[6]&0x0f | 0x40 // version 4
	u[8] = u[8]&0x3f | 0x80 // variant RFC 4122
	return u.String()
}

var idRandom = struct {
	sync.Mutex
	buf  [32 * 16]byte
	next int
}{next: 32 * 16}
