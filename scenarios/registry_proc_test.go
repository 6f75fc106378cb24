package scenarios

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/txswitch/txswitch/chaos"
	"github.com/txswitch/txswitch/providers/sim"
	txswitch "github.com/txswitch/txswitch/switch"
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

// The provider faults limited to one operation work in the process tier:
// its simulated PSPs run in this process too, reached through the tier
// (regression: the builders read the in-process cluster, nil there, and
// the run panicked).
func TestOpFaultsInTheProcessTier(t *testing.T) {
	var kinds []string
	for _, k := range sortedKeys(faultKinds) {
		if strings.HasPrefix(k, "provider_") && strings.Contains(k, "_on_") {
			kinds = append(kinds, k)
		}
	}
	if len(kinds) < 10 {
		t.Fatalf("only %d op-limited provider faults: %v", len(kinds), kinds)
	}
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			op := txswitch.ProviderOp(kind[strings.LastIndex(kind, "_on_")+len("_on_"):])
			s := sim.New(sim.Config{Name: "psp_a"})
			defer s.Close()
			e := &env{t: procTier{p: &chaos.ProcCluster{Sims: map[string]*sim.Server{"psp_a": s}}}, baseBehaviour: baseBehaviour(Tuning{})}
			f := Fault{Kind: kind, Target: "psp_a", Rate: 0.5, Stall: Duration(time.Second), Latency: Duration(time.Second)}
			if err := faultInTier(kind, faultKinds[kind], tierProcess); err != nil {
				t.Fatalf("refused in the process tier: %v", err)
			}
			var fault chaos.Fault
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Fatalf("building %s in the process tier panicked: %v", kind, r)
					}
				}()
				var err error
				if fault, err = faultKinds[kind].build(e, f); err != nil {
					t.Fatalf("build: %v", err)
				}
			}()
			ctx := context.Background()
			if err := fault.Inject(ctx); err != nil {
				t.Fatalf("inject: %v", err)
			}
			mb, ok := s.Behaviour().Methods[sim.AnyMethod]
			if !ok || !slices.Equal(mb.Ops, []txswitch.ProviderOp{op}) {
				t.Fatalf("the PSP's behaviour after inject: %+v, want a fault on %s only", s.Behaviour(), op)
			}
			if err := fault.Undo(ctx); err != nil {
				t.Fatalf("undo: %v", err)
			}
			if _, ok := s.Behaviour().Methods[sim.AnyMethod]; ok {
				t.Fatalf("the PSP's behaviour after undo: %+v, want the base one", s.Behaviour())
			}
		})
	}
}
