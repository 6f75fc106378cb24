package consensus

import (
	"sync"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// logCacheBytes bounds the entries cachedLogStore keeps in memory (their
// encoded size); past it the oldest are dropped and read from the store.
const logCacheBytes = 8 << 20

// cachedLogStore serves raft's reads of the recent log tail (Entries, Term)
// from the entries it was given to Save, instead of reading and decoding
// them back from the store. Raft reads most entries back at least once (it
// drops entries from its unstable log once their append is acknowledged,
// and fetches them from Storage to hand them out as committed entries, and
// to send them to a follower that is behind), and Term is asked on every
// commit check. Save runs on the append goroutine while the loop reads: the
// cache has its own mutex and changes only after the wrapped call returned.
//
// The cache holds a contiguous run of entries that is always equal to the
// store's entries at the same indexes:
//   - it changes only after the wrapped call succeeded, mirroring what the
//     store did: Save appends (replacing a conflicting suffix, as the store
//     does), a Save with a snapshot empties it, Compact drops what it
//     discarded, and anything below the store's FirstIndex is dropped;
//   - a read is served only when the cache holds the whole range, so the
//     store's own errors (ErrCompacted, ErrUnavailable) still come from
//     the store.
type cachedLogStore struct {
	LogStore

	mu    sync.Mutex
	ents  []*raftpb.Entry // ents[i].Index == ents[0].Index + i
	sizes []uint64        // proto.Size of ents[i] (what raft's limitSize counts)
	bytes uint64
	limit uint64
}

var _ LogStore = (*cachedLogStore)(nil)

func newCachedLogStore(s LogStore, limit uint64) *cachedLogStore {
	return &cachedLogStore{LogStore: s, limit: limit}
}

// Save implements LogStore.
func (c *cachedLogStore) Save(hs *raftpb.HardState, ents []*raftpb.Entry, snap *raftpb.Snapshot, sync bool) error {
	if err := c.LogStore.Save(hs, ents, snap, sync); err != nil {
		return err
	}
	if raft.IsEmptySnap(snap) && len(ents) == 0 {
		return nil
	}
	first, err := c.LogStore.FirstIndex()
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.resetLocked()
		return nil // the cache is only an optimisation: read from the store
	}
	if !raft.IsEmptySnap(snap) {
		c.resetLocked()
	}
	if len(ents) > 0 {
		c.appendLocked(ents)
	}
	c.dropBelowLocked(first)
	return nil
}

// Compact implements LogStore.
func (c *cachedLogStore) Compact(index uint64) error {
	err := c.LogStore.Compact(index)
	// Also on error: dropping more than the store did only costs reads.
	c.mu.Lock()
	c.dropBelowLocked(index + 1)
	c.mu.Unlock()
	return err
}

// Entries implements raft.Storage.
func (c *cachedLogStore) Entries(lo, hi, maxSize uint64) ([]*raftpb.Entry, error) {
	c.mu.Lock()
	if len(c.ents) > 0 && lo < hi {
		first := c.ents[0].GetIndex()
		if lo >= first && hi <= first+uint64(len(c.ents)) {
			i, j := lo-first, hi-first
			size := c.sizes[i]
			end := i + 1
			for ; end < j; end++ {
				size += c.sizes[end]
				if size > maxSize {
					break
				}
			}
			// A copy: raft may append to what it gets.
			out := append([]*raftpb.Entry(nil), c.ents[i:end]...)
			c.mu.Unlock()
			return out, nil
		}
	}
	c.mu.Unlock()
	return c.LogStore.Entries(lo, hi, maxSize)
}

// Term implements raft.Storage.
func (c *cachedLogStore) Term(i uint64) (uint64, error) {
	c.mu.Lock()
	if len(c.ents) > 0 {
		first := c.ents[0].GetIndex()
		if i >= first && i < first+uint64(len(c.ents)) {
			t := c.ents[i-first].GetTerm()
			c.mu.Unlock()
			return t, nil
		}
	}
	c.mu.Unlock()
	return c.LogStore.Term(i)
}

func (c *cachedLogStore) resetLocked() {
	clear(c.ents)
	c.ents, c.sizes, c.bytes = c.ents[:0], c.sizes[:0], 0
}

// appendLocked mirrors the store's append: ents replace every cached entry
// at or after ents[0].Index; a gap after the cached run restarts the cache.
func (c *cachedLogStore) appendLocked(ents []*raftpb.Entry) {
	start := ents[0].GetIndex()
	if len(c.ents) > 0 {
		first := c.ents[0].GetIndex()
		switch last := first + uint64(len(c.ents)) - 1; {
		case start <= first:
			c.resetLocked()
		case start <= last:
			k := start - first
			for _, s := range c.sizes[k:] {
				c.bytes -= s
			}
			clear(c.ents[k:])
			c.ents, c.sizes = c.ents[:k], c.sizes[:k]
		case start > last+1:
			c.resetLocked()
		}
	}
	for _, e := range ents {
		s := uint64(proto.Size(e))
		c.ents = append(c.ents, e)
		c.sizes = append(c.sizes, s)
		c.bytes += s
	}
	// Bound memory: drop the oldest (they are read from the store), down
	// to 3/4 of the limit so the arrays are not shifted on every Save.
	if c.bytes > c.limit {
		drop := 0
		for c.bytes > c.limit/4*3 && drop < len(c.ents) {
			c.bytes -= c.sizes[drop]
			drop++
		}
		c.dropFrontLocked(drop)
	}
}

// dropBelowLocked drops the cached entries with an index below first.
func (c *cachedLogStore) dropBelowLocked(first uint64) {
	if len(c.ents) == 0 || c.ents[0].GetIndex() >= first {
		return
	}
	n := min(first-c.ents[0].GetIndex(), uint64(len(c.ents)))
	for _, s := range c.sizes[:n] {
		c.bytes -= s
	}
	c.dropFrontLocked(int(n))
}

// dropFrontLocked removes the first n entries (their bytes already
// subtracted), moving the rest to the front so the arrays do not grow.
func (c *cachedLogStore) dropFrontLocked(n int) {
	if n == 0 {
		return
	}
	k := copy(c.ents, c.ents[n:])
	clear(c.ents[k:])
	c.ents = c.ents[:k]
	c.sizes = c.sizes[:copy(c.sizes, c.sizes[n:])]
}
