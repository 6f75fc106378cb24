package scenarios

import (
	"fmt"

	"github.com/txswitch/txswitch/chaos"
)

// The process tier's fault kinds: signals to real node processes and
// toxiproxy toxics on the raft links between them. They exist only in the
// process tier; the in-process tier's node and partition faults only in
// that one; provider faults (on the simulated PSPs, which both tiers run
// in this process) in both.
var processFaults = map[string]faultDef{
	"proc_kill9": {doc: "PROCESS: kill -9 a node; restarted on its data dir after for", target: targetNode,
		build: func(e *env, f Fault) (chaos.Fault, error) { return chaos.ProcKill9(e.p, f.Target), nil }},
	"proc_sigterm": {doc: "PROCESS: SIGTERM a node (graceful stop); restarted after for", target: targetNode,
		build: func(e *env, f Fault) (chaos.Fault, error) { return chaos.ProcTerm(e.p, f.Target), nil }},
	"proc_sigstop": {doc: "PROCESS: SIGSTOP a node; SIGCONT after for", target: targetNode,
		build: func(e *env, f Fault) (chaos.Fault, error) { return chaos.ProcPause(e.p, f.Target), nil }},
	"proc_wipe_rejoin": {doc: "PROCESS: kill -9 a node, wipe its dir, remove its member id; after for a fresh node joins as a new member", target: targetNode,
		build: func(e *env, f Fault) (chaos.Fault, error) { return chaos.ProcWipe(e.p, f.Target), nil }},
	"proc_rolling_restart": {doc: "PROCESS: SIGTERM and restart every node in turn, followers first, each caught up before the next", target: targetNone,
		build: func(e *env, f Fault) (chaos.Fault, error) { return chaos.NewRollingRestart(e.p), nil }},
	"net_cut": {doc: "PROCESS: toxiproxy drops every raft message to and from a node (full partition of it)", target: targetNode,
		build: func(e *env, f Fault) (chaos.Fault, error) { return chaos.NetCut(e.p, f.Target), nil }},
	"net_one_way": {doc: "PROCESS: toxiproxy drops the raft messages a node sends; it still receives", target: targetNode,
		build: func(e *env, f Fault) (chaos.Fault, error) { return chaos.NetOneWay(e.p, f.Target), nil }},
	"net_inbound_cut": {doc: "PROCESS: toxiproxy drops the raft messages a node receives; it still sends", target: targetNode,
		build: func(e *env, f Fault) (chaos.Fault, error) { return chaos.NetInbound(e.p, f.Target), nil }},
	"net_reset": {doc: "PROCESS: toxiproxy resets every raft connection to and from a node as data flows", target: targetNode,
		build: func(e *env, f Fault) (chaos.Fault, error) { return chaos.NetReset(e.p, f.Target), nil }},
	"net_latency": {doc: "PROCESS: toxiproxy delays every raft message to and from a node by latency", target: targetNode, params: []string{"latency"},
		build: func(e *env, f Fault) (chaos.Fault, error) { return chaos.NetLatency(e.p, f.Target, f.Latency.D()), nil }},
	"net_bandwidth": {doc: "PROCESS: toxiproxy limits every raft link to and from a node to bandwidth KB/s", target: targetNode, params: []string{"bandwidth"},
		build: func(e *env, f Fault) (chaos.Fault, error) { return chaos.NetBandwidth(e.p, f.Target, f.Bandwidth), nil }},
}

func init() {
	for k, def := range processFaults {
		if _, dup := faultKinds[k]; dup {
			panic("fault kind " + k + " registered twice")
		}
		faultKinds[k] = def
	}
}

// validateTier checks the topology's tier.
func (t *Topology) validateTier() error {
	switch t.Tier {
	case tierProcess:
		return nil
	case "", tierInProcess:
		return nil
	}
	return fmt.Errorf("topology.tier %q: want %s or %s", t.Tier, tierInProcess, tierProcess)
}

// faultInTier rejects a fault kind the scenario's tier cannot inject.
func faultInTier(kind string, def faultDef, tier string) error {
	_, proc := processFaults[kind]
	switch {
	case def.target == targetProvider:
		return nil
	case tier == tierProcess && !proc:
		return fmt.Errorf("%s acts on in-process nodes; the process tier injects %v and the provider faults", kind, sortedKeys(processFaults))
	case tier != tierProcess && proc:
		return fmt.Errorf("%s needs node processes (topology: {tier: process})", kind)
	}
	return nil
}
