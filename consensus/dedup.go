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
type recentKeys struct {
	set   map[propKey]struct{}
	order []propKey
	head  int
	limit int
}

// newRecentKeys sizes the set for limit keys up front: it is full after
// limit entries and stays so, and growing it on the way costs rehashes on
// the Ready loop (a few MB per node, held for the node's lifetime anyway).
func newRecentKeys(limit int) *recentKeys {
	return &recentKeys{set: make(map[propKey]struct{}, limit), order: make([]propKey, 0, limit), limit: limit}
}

func (r *recentKeys) has(k propKey) bool {
	_, ok := r.set[k]
	return ok
}

func (r *recentKeys) add(k propKey) {
	if _, ok := r.set[k]; ok {
		return
	}
	r.set[k] = struct{}{}
	if len(r.order) < r.limit {
		r.order = append(r.order, k)
		return
	}
	delete(r.set, r.order[r.head])
	r.order[r.head] = k
	r.head = (r.head + 1) % r.limit
}

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
