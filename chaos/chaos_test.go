package chaos

import (
	"context"
	"testing"
	"time"

	"github.com/txswitch/txswitch/cmd/cluster"
	"github.com/txswitch/txswitch/providers/sim"
	txswitch "github.com/txswitch/txswitch/switch"
)

func startSim(t *testing.T) *sim.Server {
	t.Helper()
	s := sim.New(sim.Config{Name: "psp_t", Seed: 1})
	if _, err := s.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func authorize(t *testing.T, s *sim.Server, key string) (txswitch.ProviderResult, error) {
	t.Helper()
	return postSim(context.Background(), s, txswitch.ProviderRequest{IdempotencyKey: key, Op: txswitch.OpAuthorize, PaymentID: "pay_" + key,
		OrderID: "ord_1", MerchantID: "mer_1", Method: "card", Amount: txswitch.Money{Value: 1000, Currency: "EUR"}, Capture: true})
}

func TestProviderFaultKeepsBaseAndRecordsItsEffect(t *testing.T) {
	s := startSim(t)
	base := sim.Behaviour{Methods: map[string]sim.MethodBehaviour{"ideal": {Async: &sim.Async{CompleteAfterMillis: 100}}}}
	if err := s.SetBehaviour(base); err != nil {
		t.Fatal(err)
	}
	f := Unavailable("psp_t", s, base)
	if err := f.Inject(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := s.Behaviour()
	if !got.Methods["*"].Unavailable || !got.Methods["ideal"].Unavailable || got.Methods["ideal"].Async == nil {
		t.Fatalf("injected behaviour %+v: want every method unavailable, ideal still async", got)
	}
	if _, err := authorize(t, s, "k1"); err == nil {
		t.Fatal("an unavailable PSP answered a charge")
	}
	if err := f.Undo(context.Background()); err != nil {
		t.Fatal(err)
	}
	if b := s.Behaviour(); b.Methods["*"].Unavailable || b.Methods["ideal"].Async == nil {
		t.Fatalf("undo left %+v, want the base behaviour", b)
	}
	if base.Methods["*"].Unavailable {
		t.Fatal("the fault mutated the base it restores")
	}
	injected, hit, why := Summary(f.Fired())
	if !injected || !hit {
		t.Fatalf("fired: injected=%v hit=%v (%s), want both", injected, hit, why)
	}
	if res, err := authorize(t, s, "k2"); err != nil || res.Outcome != txswitch.OutcomeApproved {
		t.Fatalf("after undo: %v %v", res, err)
	}
}

func TestProviderFaultThatTouchedNothingIsNotAHit(t *testing.T) {
	s := startSim(t)
	f := Unavailable("psp_t", s, sim.Behaviour{})
	_ = f.Inject(context.Background())
	_ = f.Undo(context.Background())
	if injected, hit, _ := Summary(f.Fired()); !injected || hit {
		t.Fatalf("injected=%v hit=%v: a fault no request reached must not count as fired", injected, hit)
	}
}

func TestSummary(t *testing.T) {
	cases := []struct {
		events        []Event
		injected, hit bool
	}{
		{nil, false, false},
		{[]Event{{Action: "inject", Err: "boom"}}, false, false},
		{[]Event{{Action: "inject"}}, true, true}, // no effect probe: injected is all we know
		{[]Event{{Action: "inject"}, {Action: "effect", Hit: false}}, true, false},
		{[]Event{{Action: "inject"}, {Action: "effect", Hit: true}}, true, true},
	}
	for i, tc := range cases {
		inj, hit, _ := Summary(tc.events)
		if inj != tc.injected || hit != tc.hit {
			t.Errorf("case %d: injected=%v hit=%v, want %v %v", i, inj, hit, tc.injected, tc.hit)
		}
	}
}

func TestDoubleBookMutantChargesTwice(t *testing.T) {
	s := startSim(t)
	if _, err := authorize(t, s, "k1"); err != nil {
		t.Fatal(err)
	}
	m := NewDoubleBook("psp_t", s)
	if err := m.Inject(context.Background()); err != nil {
		t.Fatal(err)
	}
	if tot := s.Totals("pay_k1"); tot.Charges != 2 {
		t.Fatalf("after the mutant the ledger has %d charges for pay_k1, want 2", tot.Charges)
	}
	if _, hit, _ := Summary(m.Fired()); !hit {
		t.Fatal("mutant not recorded as fired")
	}
}

// TestNodeAndPartitionFaults drives the node and partition injectors
// against a real 3-node cluster in this process.
func TestNodeAndPartitionFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	l, err := cluster.StartLocal(cluster.LocalConfig{Dir: t.TempDir(), TickInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	c := NewCluster(l, ClusterOptions{TickInterval: 20 * time.Millisecond})
	defer c.Close()
	ctx := context.Background()
	waitLeader := func(not uint64) uint64 {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) {
			if n := c.LeaderNode(); n != nil && n.ID() != not {
				return n.ID()
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("no leader other than %d", not)
		return 0
	}

	first := waitLeader(0)
	p := NewPartition(c, "leader", false)
	if err := p.Inject(ctx); err != nil {
		t.Fatal(err)
	}
	second := waitLeader(first)
	if err := p.Undo(ctx); err != nil {
		t.Fatal(err)
	}
	if _, hit, why := Summary(p.Fired()); !hit {
		t.Fatalf("partition not recorded as fired: %s", why)
	}

	stop := StopNode(c, "leader")
	if err := stop.Inject(ctx); err != nil {
		t.Fatal(err)
	}
	third := waitLeader(second)
	if len(c.Running()) != 2 {
		t.Fatalf("%d nodes running after a stop, want 2", len(c.Running()))
	}
	if err := stop.Undo(ctx); err != nil {
		t.Fatal(err)
	}
	if len(c.Running()) != 3 {
		t.Fatalf("%d nodes running after the restart, want 3", len(c.Running()))
	}

	w := WipeAndRejoin(c, "follower")
	if err := w.Inject(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.Undo(ctx); err != nil {
		t.Fatal(err)
	}
	if w.Joined() == nil || w.Joined().ID() == w.OldID() {
		t.Fatalf("rejoined as %v, old id %d: want a new member id", w.Joined(), w.OldID())
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		lead := c.LeaderNode()
		if lead != nil && len(lead.Raft().Status().Members) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("membership did not settle at 3 members (leader %v)", lead)
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = third
}
