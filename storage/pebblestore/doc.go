// Package pebblestore is the node's embedded journal: ONE Pebble (v2)
// database per node holding both raft's log storage (LogStore, the method set
// of consensus.LogStore) and the replicated state machine's key space
// (StateStore, txswitch.Store), plus the node's identity (NodeID).
//
// Every per-group key carries the raft group id (see keys.go), so running
// several raft groups on one node (multi-raft) is configuration, not a
// rewrite: DB.LogStore(g) and DB.StateStore(g) for each group.
//
// # Durability and ordering contracts
//
//   - One WAL. All groups and both stores share pebble's single WAL, and a
//     WAL sync makes every earlier record durable. So a synced LogStore.Save
//     also makes every state machine batch committed before it durable, and
//     StateStore commits never fsync on their own (Batch.Commit is NoSync).
//   - LogStore.Save writes HardState, entries (truncating a conflicting
//     suffix) and snapshot in ONE batch, pebble.Sync when asked: raft
//     messages that depend on it may be sent once Save returns.
//   - StateStore batch Commit writes the state and the applied index in the
//     same batch: after any crash they agree, even if the last unsynced
//     commits vanished (consensus re-applies from the log past AppliedIndex).
//   - StateStore.SyncState (and SnapshotState, which also returns an image)
//     syncs before returning the applied index, so the state at that index is
//     durable before consensus records the raft snapshot there
//     (CreateSnapshot, synced; consensus stores only metadata and membership
//     in its own snapshots) and compacts the log behind it (Compact refuses
//     to pass the last snapshot).
//   - Snapshot restore is two writes, in this order: LogStore.Save with the
//     snapshot (log side), then StateStore.RestoreState (synced). A crash in
//     between leaves AppliedIndex behind the log's snapshot index; consensus
//     must then restore the state from LogStore.Snapshot().Data at startup.
//
// # Disk faults
//
// A failed WAL write, fsync or creation never reaches pebble, which cannot
// survive one outside the commit waiting for it (see walGuard): the guard
// under pebble fences the DB at the failing call and drops every later WAL
// write, so the disk keeps the WAL as a crash at the failure would. Every
// commit that returns after that reports ErrFailed (wrapping the disk's
// error), and every later read and write fails, since what pebble would
// return may not be durable. A failed Save or Commit must stop the node —
// never acknowledge what is not durable; the restart recovers from what is
// on disk. A fatal error in pebble's background work (flush, compaction,
// MANIFEST) panics the process.
// Options.FS lets tests and chaos inject faults (pebble's vfs/errorfs).
//
// # Bounds
//
// A state image is a single value built in memory, and a raft snapshot
// received from a leader (which carries one) is written in one batch:
// Options.MaxImageBytes (default 256 MiB) bounds them, and so bounds one
// group's state machine size. Snapshots a node records itself carry no image. A state batch is bounded
// by Options.MaxBatchBytes (default 64 MiB).
package pebblestore
