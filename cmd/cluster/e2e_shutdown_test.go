package cluster

import (
	"testing"

	"github.com/txswitch/txswitch/providers/sim"
	txswitch "github.com/txswitch/txswitch/switch"
)

// TestShutdownHandsLeadershipOff stops the leader the way a release does
// while a payment's provider call is in flight on it: leadership moves to
// a follower before the node stops (the cluster always has a leader), and
// the in-flight payment is answered with its real outcome, recorded
// through the successor, charged once.
func TestShutdownHandsLeadershipOff(t *testing.T) {
	l := startE2E(t)
	li := e2eLeaderIndex(t, l)
	leader := l.Node(li).APIAddr()
	oldID := l.Node(li).ID()
	o := e2eCreateOrder(t, l, leader, e2eOrderReq(4321, "EUR", "NL"))

	// Every PSP answers authorizations after 800 ms: the call is out when
	// the stop begins.
	slow := sim.Behaviour{Methods: map[string]sim.MethodBehaviour{"*": {
		Ops: []txswitch.ProviderOp{txswitch.OpAuthorize}, Latency: sim.Latency{FixedMillis: 800}}}}
	for _, s := range l.Sims {
		if err := s.SetBehaviour(slow); err != nil {
			t.Fatal(err)
		}
	}
	done, paymentID := e2ePayInBackground(t, l, leader, leader, o.ID)

	to, err := l.ShutdownNode(li)
	if err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if to == 0 || to == oldID {
		t.Fatalf("shutdown of leader %d handed off to %d", oldID, to)
	}
	// The successor leads as soon as Shutdown returns: no election gap.
	if n := l.Leader(); n == nil || n.ID() != to {
		t.Fatalf("after the hand-off to %d the leader is %v", to, n)
	}

	a := <-done
	if a.err != nil || a.r.Status != 201 {
		t.Fatalf("in-flight payment answered %v %d %s; want 201 recorded through the successor", a.err, a.r.Status, a.r.Body)
	}
	var p txswitch.Payment
	a.r.decode(t, &p)
	if p.ID != paymentID || p.Status != txswitch.PaymentCaptured {
		t.Fatalf("payment %s %s, want %s captured", p.ID, p.Status, paymentID)
	}
	for _, s := range l.Sims {
		s.ResetBehaviour()
	}
	if n := e2eCharges(l, paymentID); n != 1 {
		t.Fatalf("charges at the PSPs = %d, want 1", n)
	}
	// And the rest of the cluster serves it.
	if got := e2eGetPayment(t, l, e2eAnyAddr(t, l, true), paymentID); got.Status != txswitch.PaymentCaptured {
		t.Fatalf("the successor serves %s", got.Status)
	}
}
