package scenarios

import (
	"strings"
	"testing"
)

// TestTierFaults: each tier accepts exactly the faults it can inject.
func TestTierFaults(t *testing.T) {
	doc := func(tier, fault string) string {
		return "name: x\ntags: [chaos]\ntopology: {nodes: 3" + tier + "}\n" +
			"traffic: {rate: 5, duration: 2s, mix: {card_pay: 1}}\n" +
			"faults: [" + fault + "]\nexpect: [{min_acked: {min: 1}}]\n"
	}
	const proc = ", tier: process"
	cases := []struct {
		name, doc, want string // want "" accepts
	}{
		{"kill -9 in the process tier", doc(proc, "{kind: proc_kill9, target: leader, at: 1s}"), ""},
		{"latency needs its parameter", doc(proc, "{kind: net_latency, target: n2, at: 1s}"), "is required"},
		{"bandwidth with its parameter", doc(proc, "{kind: net_bandwidth, target: follower, at: 1s, bandwidth: 16}"), ""},
		{"bandwidth only where it applies", doc(proc, "{kind: net_cut, target: leader, at: 1s, bandwidth: 16}"), "does not apply"},
		{"provider faults in both tiers", doc(proc, "{kind: provider_unavailable, target: psp_a, at: 1s}"), ""},
		{"rolling restart takes no target", doc(proc, "{kind: proc_rolling_restart, target: leader, at: 1s}"), "takes no target"},
		{"process fault in process memory", doc("", "{kind: proc_sigstop, target: leader, at: 1s}"), "needs node processes"},
		{"network fault in process memory", doc(", tier: in_process", "{kind: net_cut, target: leader, at: 1s}"), "needs node processes"},
		{"in-process stop on processes", doc(proc, "{kind: node_stop, target: leader, at: 1s}"), "acts on in-process nodes"},
		{"transport partition on processes", doc(proc, "{kind: partition, target: leader, at: 1s}"), "acts on in-process nodes"},
		{"in-process mutant on processes", doc(proc, "{kind: mutant_wipe_all, at: 1s}"), "acts on in-process nodes"},
		{"unknown tier", doc(", tier: cloud", "{kind: provider_refuse, target: psp_a, at: 1s}"), "topology.tier"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte(tc.doc))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}
