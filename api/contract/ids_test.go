package contract

import (
	"testing"

	"github.com/google/uuid"
)

// Request ids are version-4 UUIDs as uuid.NewString makes them, all different (more of
// them than one block of randomness holds), and cost one allocation: the string.
func TestNewRequestID(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := NewRequestID()
		u, err := uuid.Parse(id)
		if err != nil || u.Version() != 4 || u.Variant() != uuid.RFC4122 || u.String() != id {
			t.Fatalf("%q: %v, version %d, variant %v", id, err, u.Version(), u.Variant())
		}
		if seen[id] {
			t.Fatalf("%q twice", id)
		}
		seen[id] = true
	}
	if n := testing.AllocsPerRun(100, func() { _ = NewRequestID() }); n != 1 {
		t.Fatalf("%v allocations per id, want 1", n)
	}
}
