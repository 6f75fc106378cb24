package consensus

import (
	"fmt"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// dedupWindow is how many recent proposal keys a node remembers to refuse a
// forwarded proposal it has already appended.
//
// Why: raft forwards a follower's proposal to the leader as a MsgProp and
// appends whatever MsgProp it receives; a network that delivers a message
// twice would make the same proposal two log entries, applied twice. Every
// node remembers the keys of the last dedupWindow entries appended to its
// log (so a new leader knows what the old one appended), and a leader drops
// a forwarded entry whose key it remembers. The guarantee is bounded: a
// duplicate delivered more than dedupWindow entries later is appended
// again. The TCP transport never sends a message twice; memnet does on
// purpose.
const dedupWindow = 1 << 16

// loadChunkBytes bounds one read of the log tail at start.
const loadChunkBytes = 8 << 20

// recentKeys is a bounded FIFO set of proposal keys.
//
// Every node records the keys it appends, but only a leader asks (has):
// the ring of keys is cheap to keep, the index over it (a map of up to
// limit keys) is not, at two random map operations per appended entry. So
// the index is built from the ring when a node first needs it and dropped
// when it stops leading (unindex); a follower only writes the ring.
type recentKeys struct {
	set   map[propKey]struct{} // nil: not indexed
	order []propKey
	head  int
	limit int
}

func newRecentKeys(limit int) *recentKeys {
	return &recentKeys{order: make([]propKey, 0, limit), limit: limit}
}

// has reports whether k is among the last limit keys added, building the
// index first if there is none (a few ms for a full ring, once per term
// this node leads).
func (r *recentKeys) has(k propKey) bool {
	if r.set == nil {
		r.index()
	}
	_, ok := r.set[k]
	return ok
}

func (r *recentKeys) add(k propKey) {
	if r.set != nil {
		if _, ok := r.set[k]; ok {
			return
		}
		r.set[k] = struct{}{}
	}
	if len(r.order) < r.limit {
		r.order = append(r.order, k)
		return
	}
	if r.set != nil {
		// The evicted key may still be in the ring under a later slot
		// (re-appended while not indexed): then it is forgotten a little
		// early, which the bounded guarantee allows.
		delete(r.set, r.order[r.head])
	}
	r.order[r.head] = k
	r.head = (r.head + 1) % r.limit
}

// index builds the set from the ring. It is sized for limit keys up
// front: it is full after limit entries and stays so while indexed.
func (r *recentKeys) index() {
	r.set = make(map[propKey]struct{}, r.limit)
	for _, k := range r.order {
		r.set[k] = struct{}{}
	}
}

// unindex drops the index (the ring stays): the node no longer leads.
func (r *recentKeys) unindex() { r.set = nil }

// dedupForwarded removes, on the leader, the entries of a forwarded
// proposal that are already in the log (or were just proposed); nil when
// nothing is left. Followers forward unchanged: the leader decides.
func (n *Node) dedupForwarded(m *raftpb.Message) *raftpb.Message {
	if n.rn.BasicStatus().RaftState != raft.StateLeader {
		return m
	}
	var keep []*raftpb.Entry
	for _, e := range m.GetEntries() {
		if e.GetType() == raftpb.EntryNormal && len(e.GetData()) > 0 {
			if k, _, err := decodeEnvelope(e.GetData()); err == nil {
				if n.recent.has(k) {
					n.droppedInbound.Add(1)
					continue
				}
				// Remember now: a duplicate may arrive before this Ready.
				n.recent.add(k)
			}
		}
		keep = append(keep, e)
	}
	if len(keep) == 0 {
		return nil
	}
	if len(keep) == len(m.GetEntries()) {
		return m
	}
	// The inbound message is ours (decoded or deep-copied by the transport).
	m.Entries = keep
	return m
}

// loadRecentKeys fills the dedup window from the stored log tail at start.
func (n *Node) loadRecentKeys() error {
	first, err := n.store.FirstIndex()
	if err != nil {
		return fmt.Errorf("first index: %w", err)
	}
	last, err := n.store.LastIndex()
	if err != nil {
		return fmt.Errorf("last index: %w", err)
	}
	if last < first {
		return nil
	}
	lo := first
	if last-first+1 > dedupWindow {
		lo = last - dedupWindow + 1
	}
	// Read in bounded chunks: only the keys are kept.
	for lo <= last {
		ents, err := n.store.Entries(lo, last+1, loadChunkBytes)
		if err != nil {
			return fmt.Errorf("load entries %d-%d: %w", lo, last, err)
		}
		if len(ents) == 0 {
			return fmt.Errorf("load entries %d-%d: none returned", lo, last)
		}
		for _, e := range ents {
			if e.GetType() == raftpb.EntryNormal && len(e.GetData()) > 0 {
				if k, _, err := decodeEnvelope(e.GetData()); err == nil {
					n.recent.add(k)
				}
			}
		}
		lo = ents[len(ents)-1].GetIndex() + 1
	}
	return nil
}
