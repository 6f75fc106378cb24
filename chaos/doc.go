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
// Tier: in-process only. A "crash" here is cmd/cluster's StopNode (the
// API drains for at most 5 s, then raft and Pebble close); kill -9,
// SIGSTOP and toxiproxy belong to the real-process tier, which is not
// built yet. Central-database (PostgreSQL) faults plug in as another Fault
// implementation once storage/central exists; nothing here fakes them.
package chaos
