// Package consensus replicates txswitch's command log with Raft
// (go.etcd.io/raft/v3, RawNode).
//
// A Node implements txswitch.Log. One goroutine owns the RawNode and runs the
// Ready loop; the RawNode runs with AsyncStorageWrites, and one append
// goroutine persists the log (append.go):
//
//	loop:   propose (queued proposals) → Ready → hand the append to the
//	        append goroutine → send what raft allows now → apply committed
//	        and locally durable entries → notify waiters → acknowledge
//	append: merge queued appends → ONE LogStore.Save (synced) → deliver
//	        the responses raft attached (acks, votes, own acknowledgement)
//
// Nothing is acknowledged before it is durable: votes and append
// acknowledgements leave only after the HardState, entries and snapshot
// they depend on are saved, this node counts toward a quorum only once its
// own append is durable, and a proposer hears back only after its entry is
// committed and applied locally. A storage or apply error stops the node.
// The loop does not wait for the appends' syncs: a leader keeps
// replicating and applying while its own append syncs (its MsgApps may
// leave first, Raft thesis §10.2.1), appends queued meanwhile share the
// next sync, and snapshots never copy the state on the loop: a node's own
// snapshot is a metadata record written after the state machine synced
// (off the loop), and a state image is built, off the loop, only when a
// follower needs one (snapshot.go). Two rare writes do sync on the loop:
// the snapshot record with its log compaction (once per SnapshotEvery
// entries; it queues behind an append's sync in flight, up to tens of ms
// under load) and a membership change (SaveMembership). Raft's reads of the recent log tail are served from memory
// (cachedLogStore).
//
// A state image a follower needs goes inside the MsgSnap, or, from cluster
// version 4 (Config.StreamImages) with a state machine that can stream
// (ImageStreamer), as a stream next to it: pinned on the leader, staged by
// the follower's log store, restored in bounded batches, so the size of
// the state machine is bounded by neither memory nor the transport's
// frame (images.go). A leader keeps its log for a member that is behind,
// up to LagRetain entries, so that a restarted node catches up from the
// log and needs no image at all.
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
