package consensus

import "testing"

// TestRecentKeysWindow drives the dedup window through indexed and
// unindexed phases: whatever the phase, has answers for exactly the last
// limit distinct keys added.
func TestRecentKeysWindow(t *testing.T) {
	key := func(i int) propKey { return propKey{node: 1, incarnation: 7, seq: uint64(i)} }
	type step struct {
		add       []int // keys added, in order
		unindex   bool  // drop the index before adding
		has, lost []int // keys expected in and out of the window after
	}
	cases := []struct {
		name  string
		limit int
		steps []step
	}{
		{"follower then leader: index built from the ring", 3, []step{
			{add: []int{1, 2, 3, 4}, has: []int{2, 3, 4}, lost: []int{1, 5}},
		}},
		{"leader keeps evicting in order", 3, []step{
			{add: []int{1, 2}, has: []int{1, 2}, lost: []int{3}},
			{add: []int{3, 4, 5}, has: []int{3, 4, 5}, lost: []int{1, 2}},
		}},
		{"steps down, appends as follower, leads again", 4, []step{
			{add: []int{1, 2, 3}, has: []int{1, 2, 3}},
			{unindex: true, add: []int{4, 5, 6}, has: []int{3, 4, 5, 6}, lost: []int{1, 2}},
			{add: []int{7}, has: []int{4, 5, 6, 7}, lost: []int{3}},
		}},
		{"a key added twice while indexed takes one slot", 3, []step{
			{add: []int{1, 2}, has: []int{1, 2}},
			{add: []int{2, 3}, has: []int{1, 2, 3}, lost: []int{4}},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRecentKeys(tc.limit)
			for i, st := range tc.steps {
				if st.unindex {
					r.unindex()
				}
				for _, k := range st.add {
					r.add(key(k))
				}
				for _, k := range st.has {
					if !r.has(key(k)) {
						t.Errorf("step %d: key %d forgotten", i, k)
					}
				}
				for _, k := range st.lost {
					if r.has(key(k)) {
						t.Errorf("step %d: key %d still remembered", i, k)
					}
				}
			}
		})
	}
}

// TestRecentKeysFollowerKeepsNoIndex: appending as a follower only writes
// the ring; the index exists only once a leader asks.
func TestRecentKeysFollowerKeepsNoIndex(t *testing.T) {
	r := newRecentKeys(8)
	for i := range 20 {
		r.add(propKey{node: 2, incarnation: 3, seq: uint64(i)})
	}
	if r.set != nil {
		t.Fatal("index built without a lookup")
	}
	if !r.has(propKey{node: 2, incarnation: 3, seq: 19}) || r.has(propKey{node: 2, incarnation: 3, seq: 11}) {
		t.Fatal("window wrong after building the index from the ring")
	}
	if len(r.set) != 8 {
		t.Fatalf("index holds %d keys, want 8", len(r.set))
	}
}
