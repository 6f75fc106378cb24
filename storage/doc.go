// Package storage groups txswitch's persistence. It holds no code itself;
// each subpackage has one job:
//
//   - pebblestore: the node's embedded journal. One Pebble database per node
//     holds raft's log storage (the method set of consensus.LogStore) and the
//     replicated state machine's key space (txswitch.Store), keyed by raft
//     group id so several raft groups per node is configuration, not a
//     rewrite.
//   - central: the central PostgreSQL database (the system of record for
//     finance and reporting), its migrations, and the exporter that feeds it
//     asynchronously from the state machine's outbox.
//
// storage/ implements the domain's boundaries (package txswitch) and raft's
// storage contract; it never imports consensus/: the LogStore contract is met
// by method set, not by import.
package storage
