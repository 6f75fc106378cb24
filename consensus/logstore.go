package consensus

import (
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// LogStore is raft's durable storage for one raft group. storage/ implements
// it on Pebble (without importing this package: the method set is the
// contract); memLogStore here implements it in memory for tests.
//
// Ordering contract the node relies on:
//   - Save persists the HardState, the entries (first truncating any
//     conflicting suffix at or after ents[0].Index) and the snapshot in ONE
//     atomic write, synced when sync is true, before returning. Raft messages
//     that depend on them are sent only after Save returns.
//   - Concurrency: Save is called from the node's append goroutine while
//     the Ready loop reads (raft.Storage) and makes the other writes
//     (CreateSnapshot, Compact, SaveMembership). Writes must exclude each
//     other; a read during a Save must see the log as it was before or
//     after it, never a mix, at least for the indexes below the Save's
//     first entry (raft reads nothing else from storage meanwhile). A Save
//     should not block reads for its whole sync.
//   - CreateSnapshot records a snapshot at index, synced; the caller has
//     already made the state machine durable up to index. The data consensus
//     passes is small (membership only, no state image: see snapshot.go).
//   - Compact discards entries up to and including index; the caller only
//     compacts behind a durable snapshot.
type LogStore interface {
	raft.Storage
	Save(hs *raftpb.HardState, ents []*raftpb.Entry, snap *raftpb.Snapshot, sync bool) error
	CreateSnapshot(index uint64, cs *raftpb.ConfState, data []byte) (*raftpb.Snapshot, error)
	Compact(index uint64) error
	// SaveMembership durably records the ConfState in force after the conf
	// change at index, with consensus' own encoding of the members' addresses
	// (meta), so a restart with Config.Applied past that entry still knows
	// the membership. InitialState returns the newest of this ConfState and
	// the snapshot's.
	SaveMembership(index uint64, cs *raftpb.ConfState, meta []byte) error
	// Membership returns what SaveMembership last stored (index 0 if never).
	Membership() (index uint64, cs *raftpb.ConfState, meta []byte, err error)
}
