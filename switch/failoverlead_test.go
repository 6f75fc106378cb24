package txswitch_test

import (
	"strings"
	"testing"
	"time"

	txswitch "github.com/txswitch/txswitch/switch"
)

// The leader's first provider refuses (a definitive failure) and, in the
// moment its result commits with the failover to the next provider,
// leadership moves. The failover's intent is committed: the node that made
// the first call makes the second (nobody else would: the next leader's
// resolver only asks, hears not_found and fails the payment though a
// healthy provider was there), and the client gets the payment's outcome,
// not a "retry" for a request that did execute. One charge in all.
func TestFailoverSurvivesALeaderChange(t *testing.T) {
	h := newHarness(t)
	o := h.createOrder(1000)
	h.a.Push(txswitch.OpAuthorize, memoryErr(refusedErr("psp_a")))
	h.log.AfterCommit(func(data []byte) {
		if strings.Contains(string(data), `"type":"payment_result"`) && strings.Contains(string(data), `"next"`) {
			h.log.SetLeadership(txswitch.Leadership{IsLeader: false, LeaderID: 2, Term: 2})
		}
	})
	r, err := h.svc.CreatePayment(h.ctx, caller("k"), o.ID, txswitch.CreatePaymentRequest{Method: "card"})
	if err != nil || r.Status != 201 {
		t.Fatalf("payment: %v %d %s", err, r.Status, r.Body)
	}
	if h.log.Leadership().IsLeader {
		t.Fatal("the test did not move leadership")
	}
	p := decode[txswitch.Payment](t, r)
	if p.Status != txswitch.PaymentCaptured || p.Provider != "psp_b" {
		t.Fatalf("payment = %s at %s, want captured at psp_b", p.Status, p.Provider)
	}
	if a, b := len(h.a.CallsFor(txswitch.OpAuthorize)), len(h.b.CallsFor(txswitch.OpAuthorize)); a != 1 || b != 1 {
		t.Fatalf("authorize calls a=%d b=%d", a, b)
	}
}

// The result that opens a failover is proposed again while raft drops it
// (a leader transfer in progress) for longer than the provider timeout:
// the failover attempt's time is the time its result finally committed,
// so its call is still sent, not refused as past its deadline (which left
// it to the resolver's not_found and failed the payment).
func TestFailoverAfterARetriedResultIsSent(t *testing.T) {
	h := newHarness(t)
	o := h.createOrder(1000)
	h.a.Push(txswitch.OpAuthorize, memoryErr(refusedErr("psp_a")))
	h.log.Fail(func(d []byte) bool {
		if !strings.Contains(string(d), `"type":"payment_result"`) {
			return false
		}
		h.clock.Advance(time.Minute) // the transfer takes longer than the provider timeout
		return true
	}, txswitch.ErrDropped, false)
	r, err := h.svc.CreatePayment(h.ctx, caller("k"), o.ID, txswitch.CreatePaymentRequest{Method: "card"})
	if err != nil || r.Status != 201 {
		t.Fatalf("payment: %v %d %s", err, r.Status, r.Body)
	}
	if p := decode[txswitch.Payment](t, r); p.Status != txswitch.PaymentCaptured || p.Provider != "psp_b" {
		t.Fatalf("payment = %s at %s, want captured at psp_b", p.Status, p.Provider)
	}
}
