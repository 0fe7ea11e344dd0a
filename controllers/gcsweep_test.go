package controllers

import (
	"slices"
	"testing"
	"time"
)

func TestSweepUnreferencedWaitsForGraceBoundsDeletesAndRetriesFailures(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)
	const grace = time.Hour
	unref := map[string]time.Time{}
	gone := map[string]bool{}
	failing := map[string]bool{"c": true}
	del := func(k string) bool {
		if failing[k] {
			return false
		}
		gone[k] = true
		return true
	}
	sweep := func(now time.Time, stored []string, refs map[string]bool, maxDeletes int) []string {
		d := sweepUnreferenced(unref, stored, refs, now, grace, maxDeletes, del)
		slices.Sort(d)
		return d
	}

	// First seen unnamed: nothing goes, whatever the clock says next.
	if d := sweep(t0, []string{"a", "b", "c", "d"}, map[string]bool{"d": true}, 10); len(d) != 0 {
		t.Fatalf("first sweep deleted %v", d)
	}
	// Inside the grace: nothing goes. "b" is named again meanwhile: forgotten.
	if d := sweep(t0.Add(grace-time.Second), []string{"a", "b", "c", "d"}, map[string]bool{"b": true, "d": true}, 10); len(d) != 0 {
		t.Fatalf("sweep inside the grace deleted %v", d)
	}
	if _, ok := unref["b"]; ok {
		t.Fatal("a key named again is still counted as unreferenced")
	}
	// After the grace: "a" goes; "c" fails to delete and stays for the next sweep; "b" (unnamed
	// again only now) starts its grace.
	if d := sweep(t0.Add(grace), []string{"a", "b", "c", "d"}, map[string]bool{"d": true}, 10); !slices.Equal(d, []string{"a"}) {
		t.Fatalf("sweep after the grace deleted %v, want [a]", d)
	}
	if _, ok := unref["c"]; !ok {
		t.Fatal("a key whose delete failed is no longer tracked")
	}
	if got := unref["b"]; !got.Equal(t0.Add(grace)) {
		t.Fatalf("b unreferenced since %v, want %v", got, t0.Add(grace))
	}
	// At most maxDeletes per sweep.
	failing = map[string]bool{}
	stored := []string{"b", "c", "e", "f"}
	sweep(t0.Add(2*grace), stored, nil, 10) // e, f first seen; b, c due
	unref["e"], unref["f"] = t0, t0
	if d := sweep(t0.Add(3*grace), stored, nil, 2); len(d) != 2 {
		t.Fatalf("sweep with maxDeletes 2 deleted %v", d)
	}
	if len(unref) != 2 {
		t.Fatalf("after a bounded sweep %d keys are tracked, want the 2 left: %v", len(unref), unref)
	}
	// A key gone from the store is forgotten.
	sweep(t0.Add(3*grace), nil, nil, 10)
	if len(unref) != 0 {
		t.Fatalf("keys no longer stored are still tracked: %v", unref)
	}
}
