package consensus

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// TestCachedLogStoreMatchesStore drives a cachedLogStore and a plain
// MemLogStore through the same random appends (with conflicting suffixes),
// compactions and snapshots, and checks after every step that every
// Entries and Term answer is the same.
func TestCachedLogStoreMatchesStore(t *testing.T) {
	for _, tc := range []struct {
		name  string
		seed  uint64
		limit uint64
	}{
		{"tiny cache evicts", 1, 300},
		{"small cache", 2, 2000},
		{"large cache", 3, 1 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(tc.seed, tc.seed))
			plain := NewMemLogStore()
			cached := newCachedLogStore(NewMemLogStore(), tc.limit)
			term := uint64(1)
			snapIdx := uint64(0)
			served := 0
			for step := range 400 {
				first, _ := plain.FirstIndex()
				last, _ := plain.LastIndex()
				var desc string
				switch op := rng.IntN(10); {
				case op < 7: // append, maybe replacing a suffix
					start := last + 1
					if rng.IntN(3) == 0 && last >= first {
						start = first + rng.Uint64N(last-first+2)
					}
					if rng.IntN(4) == 0 {
						term++
					}
					n := 1 + rng.IntN(8)
					ents := make([]*raftpb.Entry, n)
					for i := range ents {
						ents[i] = &raftpb.Entry{Index: proto.Uint64(start + uint64(i)), Term: proto.Uint64(term),
							Type: raftpb.EntryNormal.Enum(), Data: fmt.Appendf(nil, "s%d-%d", step, i)}
					}
					desc = fmt.Sprintf("append %d entries at %d", n, start)
					mustBoth(t, desc, plain.Save(nil, ents, nil, true), cached.Save(nil, ents, nil, true))
				case op < 9 && last > first: // compact
					c := first + rng.Uint64N(last-first)
					desc = fmt.Sprintf("compact %d", c)
					mustBoth(t, desc, plain.Compact(c), cached.Compact(c))
				default: // install a snapshot past the current one
					snapIdx = max(snapIdx, last) + 1 + rng.Uint64N(3)
					term++
					snap := snapshotFor(snapIdx, term, []uint64{1}, nil)
					desc = fmt.Sprintf("snapshot %d", snapIdx)
					mustBoth(t, desc, plain.Save(nil, nil, snap, true), cached.Save(nil, nil, snap, true))
				}
				served += compareStores(t, desc, plain, cached, rng)
			}
			if served == 0 {
				t.Fatal("no read was served from the cache")
			}
		})
	}
}

func mustBoth(t *testing.T, desc string, a, b error) {
	t.Helper()
	if (a == nil) != (b == nil) || (a != nil && !errors.Is(b, errors.Unwrap(a)) && a.Error() != b.Error()) {
		t.Fatalf("%s: store says %v, cached store says %v", desc, a, b)
	}
}

// compareStores checks every Entries range and Term; it returns how many
// of the reads the cache answered itself.
func compareStores(t *testing.T, desc string, plain *MemLogStore, cached *cachedLogStore, rng *rand.Rand) int {
	t.Helper()
	first, _ := plain.FirstIndex()
	last, _ := plain.LastIndex()
	cf, _ := cached.FirstIndex()
	cl, _ := cached.LastIndex()
	if cf != first || cl != last {
		t.Fatalf("%s: bounds [%d, %d] vs cached [%d, %d]", desc, first, last, cf, cl)
	}
	served := 0
	for i := first - min(first, 2); i <= last; i++ {
		a, errA := plain.Term(i)
		b, errB := cached.Term(i)
		if a != b || !errors.Is(errB, errA) {
			t.Fatalf("%s: Term(%d) = %d, %v; cached %d, %v", desc, i, a, errA, b, errB)
		}
	}
	for lo := first - min(first, 1); lo <= last; lo++ {
		for hi := lo; hi <= last+1; hi++ {
			maxSize := uint64(rng.IntN(60))
			if rng.IntN(2) == 0 {
				maxSize = 1 << 30
			}
			a, errA := plain.Entries(lo, hi, maxSize)
			b, errB := cached.Entries(lo, hi, maxSize)
			if !errors.Is(errB, errA) || len(a) != len(b) {
				t.Fatalf("%s: Entries(%d, %d, %d) = %d entries, %v; cached %d, %v", desc, lo, hi, maxSize, len(a), errA, len(b), errB)
			}
			for k := range a {
				if !proto.Equal(a[k], b[k]) {
					t.Fatalf("%s: Entries(%d, %d): entry %d = %v, cached %v", desc, lo, hi, k, a[k], b[k])
				}
			}
			cached.mu.Lock()
			if len(cached.ents) > 0 && lo < hi && lo >= cached.ents[0].GetIndex() {
				served++
			}
			cached.mu.Unlock()
		}
	}
	return served
}
