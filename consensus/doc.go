// Package consensus replicates txswitch's command log with Raft
// (go.etcd.io/raft/v3, RawNode).
//
// A Node implements txswitch.Log. One goroutine owns the RawNode and runs the
// single Ready loop that owns every I/O of the group, in this order:
//
//	propose (queued proposals) → persist (one LogStore.Save) → send
//	→ apply (StateMachine.Apply per contiguous run) → notify waiters → Advance
//
// Nothing is acknowledged before it is durable: votes and append
// acknowledgements leave only after the Ready's HardState, entries and
// snapshot are saved, and a proposer hears back only after its entry is
// committed and applied locally. A storage or apply error stops the node.
// Three overlaps keep the loop short without weakening that (each argued
// where it is done, in node.go): a leader sends its appends and heartbeats
// before its own Save (Raft thesis §10.2.1); committed entries that earlier
// Saves made durable are applied while the Save runs; and snapshots never
// copy the state on the loop: a node's own snapshot is a metadata record
// written after the state machine synced (off the loop), and a state image
// is built, off the loop, only when a follower needs one (snapshot.go). Raft's reads of the recent log
// tail are served from memory (cachedLogStore).
//
// The node also owns membership (ConfChangeV2 with member addresses carried
// in the change's context and persisted through LogStore.SaveMembership and
// inside snapshots), snapshots and log compaction, and linearizable reads
// (ReadBarrier, raft ReadIndex).
//
// The group id is in every transport message so several groups per process
// (multi-raft) is configuration, not a rewrite. Transports live in
// consensus/transport/tcp (production) and consensus/memnet (deterministic
// in-memory network for tests).
package consensus
