package consensus

import (
	"errors"
	"fmt"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// The append goroutine (appendLoop) persists what raft hands to its
// LocalAppendThread, in order, while the Ready loop goes on stepping
// messages, proposing, sending and applying. That is what keeps a disk sync
// off the loop: the leader keeps replicating and committing while its own
// append syncs, and appends queued meanwhile share the next sync.
//
// Ordering contract:
//   - appends are persisted in the order raft emitted them; the ones queued
//     together are merged into ONE LogStore.Save (HardState, entries with
//     any conflicting suffix replaced, snapshot), atomic and synced when any
//     of them changes term, vote, entries or snapshot (mergeAppends);
//   - only after that Save returned are their responses delivered: to
//     peers through the Transport (MsgAppResp, votes), to this node through
//     localc, in order;
//   - a failed Save, or a failpoint crash, delivers nothing and stops the
//     node (the loop takes the error from localc).
const (
	// appendQueue bounds appends waiting for the append goroutine; the
	// loop blocks (still taking completions, see toAppender) when full.
	appendQueue = 256
	// maxMergedAppends bounds the appends merged into one Save.
	maxMergedAppends = 256
)

// appendDone is what the append goroutine reports for the appends of one
// Save: how many, the responses addressed to this node, or why it stopped.
type appendDone struct {
	count int
	local []*raftpb.Message
	err   error
}

// toAppender hands m to the append goroutine. While the queue is full it
// keeps taking the goroutine's completions, so neither waits on the other.
func (n *Node) toAppender(m *raftpb.Message) error {
	for {
		select {
		case n.appendc <- m:
			n.appendsInFlight++
			return nil
		case d := <-n.localc:
			if err := n.appendCompleted(d); err != nil {
				return err
			}
		}
	}
}

// appendCompleted runs on the loop with a Save's outcome: it steps the
// local responses (restoring a received snapshot into the state machine
// before raft hears it is durable), or returns the error that stops the node.
func (n *Node) appendCompleted(d appendDone) error {
	n.appendsInFlight -= d.count
	if d.err != nil {
		return d.err
	}
	for _, m := range d.local {
		if m.GetType() == raftpb.MsgStorageAppendResp && !raft.IsEmptySnap(m.GetSnapshot()) {
			if err := n.restoreSnapshot(m.GetSnapshot()); err != nil {
				return err
			}
			n.snapPending = false
		}
		n.stepLocalMsg(m)
	}
	return nil
}

// stepLocalMsg steps a message raft addressed to this node itself.
func (n *Node) stepLocalMsg(m *raftpb.Message) {
	if err := n.rn.Step(m); err != nil {
		n.droppedInbound.Add(1)
	}
}

// appendLoop is the append goroutine (see the top of this file).
func (n *Node) appendLoop(hs *raftpb.HardState) {
	last := &raftpb.HardState{Term: new(hs.GetTerm()), Vote: new(hs.GetVote()), Commit: new(hs.GetCommit())}
	var batch []*raftpb.Message
	var held *raftpb.Message // taken from the queue but saved on its own
	for {
		batch = batch[:0]
		if held != nil {
			batch, held = append(batch, held), nil
		} else {
			select {
			case m := <-n.appendc:
				batch = append(batch, m)
			case <-n.appendStop:
				return
			}
		}
		// A snapshot replaces the whole log: it is saved alone.
	merge:
		for raft.IsEmptySnap(batch[0].GetSnapshot()) && len(batch) < maxMergedAppends {
			select {
			case m := <-n.appendc:
				if !raft.IsEmptySnap(m.GetSnapshot()) {
					held = m
					break merge
				}
				batch = append(batch, m)
			default:
				break merge
			}
		}
		var d appendDone
		d, last = n.persist(batch, last)
		select {
		case n.localc <- d:
		case <-n.appendStop:
			return
		}
		if d.err != nil {
			return
		}
	}
}

// persist saves batch in one Save and sends its remote responses; last is
// the HardState saved before, and it returns the one saved after. A
// failpoint crash (a panic with ErrFailpointCrash) is reported as the error.
func (n *Node) persist(batch []*raftpb.Message, last *raftpb.HardState) (d appendDone, saved *raftpb.HardState) {
	d.count = len(batch)
	saved = last
	defer func() {
		if r := recover(); r != nil {
			err, ok := r.(error)
			if !ok || !errors.Is(err, ErrFailpointCrash) {
				panic(r)
			}
			d.local, d.err = nil, err
		}
	}()
	hs, ents, snap, sync, err := mergeAppends(batch, last)
	if err != nil {
		d.err = err
		return d, saved
	}
	if err := n.store.Save(hs, ents, snap, sync); err != nil {
		d.err = fmt.Errorf("persist (entries %d, snapshot %d): %w", len(ents), snap.GetMetadata().GetIndex(), err)
		return d, saved
	}
	if hs != nil {
		saved = hs
	}
	n.failpoint(FailpointAfterPersist)
	var remote []*raftpb.Message
	for _, m := range batch {
		for _, r := range m.GetResponses() {
			if r.GetTo() == n.cfg.ID {
				d.local = append(d.local, r)
			} else {
				remote = append(remote, r)
			}
		}
	}
	if remote = coalesceAcks(remote); len(remote) > 0 {
		n.tr.Send(remote)
	}
	n.failpoint(FailpointAfterSend)
	return d, saved
}

// mergeAppends turns consecutive MsgStorageAppend messages into the
// arguments of one Save with the same effect as saving them one by one:
// the last HardState, the entries with each later run replacing what it
// overlaps (as the store's append does), the snapshot of a batch of one.
// It syncs when anything but the commit index changes (etcd's MustSync):
// a lost commit index is re-learnt from the leader, the rest is promised
// to others. last is the HardState saved before the batch.
func mergeAppends(batch []*raftpb.Message, last *raftpb.HardState) (hs *raftpb.HardState, ents []*raftpb.Entry, snap *raftpb.Snapshot, sync bool, err error) {
	for i, m := range batch {
		if m.Term != nil {
			hs = &raftpb.HardState{Term: new(m.GetTerm()), Vote: new(m.GetVote()), Commit: new(m.GetCommit())}
		}
		if !raft.IsEmptySnap(m.GetSnapshot()) {
			if i > 0 {
				return nil, nil, nil, false, errors.New("merge appends: snapshot after other appends")
			}
			snap = m.GetSnapshot()
		}
		next := m.GetEntries()
		if len(next) == 0 {
			continue
		}
		if len(ents) == 0 {
			ents = next
			continue
		}
		first, lastIdx := next[0].GetIndex(), ents[len(ents)-1].GetIndex()
		switch {
		case first > lastIdx+1:
			return nil, nil, nil, false, fmt.Errorf("merge appends: gap between %d and %d", lastIdx, first)
		case first <= ents[0].GetIndex():
			ents = next // replaces everything merged so far
		default:
			// Keep what precedes next; never write into raft's slices.
			k := int(first - ents[0].GetIndex())
			ents = append(ents[:k:k], next...)
		}
	}
	sync = len(ents) > 0 || snap != nil ||
		(hs != nil && (hs.GetTerm() != last.GetTerm() || hs.GetVote() != last.GetVote()))
	return hs, ents, snap, sync, nil
}

// coalesceAcks drops each append acknowledgement that a later one in msgs
// supersedes: same peer, same term, an index at least as high, neither a
// rejection. A follower that stepped many MsgApps since its last Save
// would otherwise answer each; the leader learns the same from the last
// one (an ack for index i acknowledges everything up to i), and a dropped
// ack is only a lost message, which raft tolerates. Rejections, which
// carry hints, and every other message are kept, in order.
func coalesceAcks(msgs []*raftpb.Message) []*raftpb.Message {
	type peerTerm struct{ to, term uint64 }
	last := map[peerTerm]int{} // position of the last plain ack per peer and term
	isAck := func(m *raftpb.Message) bool {
		return m.GetType() == raftpb.MsgAppResp && !m.GetReject()
	}
	for i, m := range msgs {
		if isAck(m) {
			last[peerTerm{m.GetTo(), m.GetTerm()}] = i
		}
	}
	if len(last) == 0 {
		return msgs
	}
	out := msgs[:0:0]
	for i, m := range msgs {
		if isAck(m) {
			j := last[peerTerm{m.GetTo(), m.GetTerm()}]
			if j != i && msgs[j].GetIndex() >= m.GetIndex() {
				continue
			}
		}
		out = append(out, m)
	}
	return out
}
