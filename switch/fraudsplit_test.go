package txswitch_test

import (
	"testing"

	txswitch "github.com/txswitch/txswitch/switch"
)

// An order over a fraud rule's threshold, paid in parts each under it, is
// held all the same: the rule judges the order, not the payment.
func TestSplitPaymentsAreHeldLikeTheOrder(t *testing.T) {
	h := newHarness(t)
	o := h.createOrder(1_200_000) // the harness's big_ticket rule holds >= 1,000,000
	p := h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card", Amount: &txswitch.Money{Value: 600_000, Currency: "EUR"}})
	if p.Status != txswitch.PaymentHeldForReview {
		t.Fatalf("first half of the order = %s, want held", p.Status)
	}
	if n := len(h.a.Calls()) + len(h.b.Calls()); n != 0 {
		t.Fatalf("%d provider calls for a held payment", n)
	}
	// A small order paid in parts is not held.
	small := h.createOrder(1000)
	if q := h.pay(small.ID, txswitch.CreatePaymentRequest{Method: "card", Amount: &txswitch.Money{Value: 500, Currency: "EUR"}}); q.Status != txswitch.PaymentCaptured {
		t.Fatalf("part of a small order = %s", q.Status)
	}
}
