// Package chaos injects faults into a txswitch cluster running in this
// process (cmd/cluster.Local): provider faults through the simulated PSPs'
// Go API, node faults (stop, restart, wipe and rejoin as a new member),
// network partitions through the raft transport's filter hook, and
// "mutants" that break the evidence on purpose so the scenario checkers
// can be shown to fail.
//
// Every fault has Inject and Undo and keeps a record of when it took
// effect (Fired). A fault that was injected but observably touched
// nothing (a provider outage no request reached, a partition that dropped
// no message) records Hit=false, so a scenario can fail as vacuous
// instead of passing without testing anything.
//
// Two tiers. In process (Cluster): a "crash" is cmd/cluster's CrashNode:
// raft and the transport stop at once, so the others stop hearing from
// the node (a leader stops leading), then the API drains for at most 5 s
// and Pebble closes. (A drain first, as Stop does, kept a crashed leader
// leading through its drain: up to 5 s with no writes anywhere.) Real
// processes (ProcCluster, process.go): `txswitch node` processes on
// loopback get kill -9, SIGTERM, SIGSTOP, a wiped dir and a rejoin, and
// toxiproxy toxics on the raft links between them (netproxy.go), so what
// only a real process shows — fsync before the ack, a frozen leader, a
// real TCP reset — is tested too.
//
// The central database (db.go): a real PostgreSQL behind an in-process
// toxiproxy proxy per cluster, killed, stopped, made unreachable, slow,
// reset or flapping. Disks (disk.go): each in-process node's Pebble on a
// crashable filesystem under errorfs, with write errors, sync errors, a
// full disk or slow syncs switched on and off at run time; the undo
// restarts the node on only what its disk had synced. Nothing here fakes
// a fault: each checks its own effect.
package chaos
