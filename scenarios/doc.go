// Package scenarios holds txswitch's scenario suite and the runner that
// executes it: YAML files in defs/ name traffic shapes, flows, faults and
// checks from closed registries in Go; the runner starts a cluster per
// scenario in the scenario's tier — in this process (cmd/cluster.StartLocal)
// or, with topology tier: process, as real `txswitch node` processes with
// toxiproxy links between them (chaos.ProcCluster) — drives open-loop traffic,
// applies the timed fault schedule (package chaos), then judges the run
// on evidence independent of the switch — the client's record of every
// response, the simulated PSPs' ledgers, and the state read back over
// HTTP from every node.
//
// The safety invariants of DESIGN.md are checked in every scenario; each
// fault adds expectations tied to it, and a fault that never fired fails
// the scenario as vacuous. Each scenario's seed is hash(run seed, name),
// so adding a scenario changes no other's seed, and a failure prints the
// one command that reruns it.
package scenarios
