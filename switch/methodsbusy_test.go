package txswitch_test

import (
	"testing"
	"time"

	txswitch "github.com/txswitch/txswitch/switch"
	"github.com/txswitch/txswitch/switch/memory"
)

// While another payment of the order is unsettled (pending, in doubt,
// held for review), a new payment is refused with 409 payment_in_progress,
// so no method is offered: each is excluded with that reason (also when the
// unsettled payment covers the whole amount: it may still fail), and no
// offer is recorded on the timeline. Once the payment fails, the methods
// are offered again and that offer is recorded.
func TestNoMethodsWhileAPaymentIsInProgress(t *testing.T) {
	for _, tc := range []struct {
		name   string
		amount int64
		start  func(h *harness, orderID string) txswitch.Payment
		status string
		fail   func(h *harness, p txswitch.Payment)
	}{
		{"in doubt, part of the amount", 1000, func(h *harness, id string) txswitch.Payment {
			h.a.Push(txswitch.OpAuthorize, memoryErr(timeoutErr("psp_a")))
			return h.pay(id, txswitch.CreatePaymentRequest{Method: "card", Amount: &txswitch.Money{Value: 400, Currency: "EUR"}})
		}, txswitch.PaymentInDoubt, func(h *harness, _ txswitch.Payment) {
			h.a.Push(txswitch.OpStatus, declined("insufficient_funds"))
			h.clock.Advance(time.Minute)
			if _, err := h.svc.ResolveInDoubt(h.ctx); err != nil {
				h.t.Fatal(err)
			}
		}},
		{"pending at the bank, the whole amount", 1000, func(h *harness, id string) txswitch.Payment {
			h.b.Push(txswitch.OpAuthorize, memory.Step{Result: txswitch.ProviderResult{Outcome: txswitch.OutcomePending, RedirectURL: "https://bank.test/r/1"}})
			return h.pay(id, txswitch.CreatePaymentRequest{Method: "ideal"})
		}, txswitch.PaymentPending, nil},
		{"held for review", 2_000_000, func(h *harness, id string) txswitch.Payment {
			return h.pay(id, txswitch.CreatePaymentRequest{Method: "card"})
		}, txswitch.PaymentHeldForReview, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			o := h.createOrder(tc.amount)
			p := tc.start(h, o.ID)
			if p.Status != tc.status {
				t.Fatalf("payment %s, want %s", p.Status, tc.status)
			}
			_, err := h.svc.CreatePayment(h.ctx, caller("second"), o.ID, txswitch.CreatePaymentRequest{Method: "card", Amount: &txswitch.Money{Value: 100, Currency: "EUR"}})
			wantErr(t, err, 409, txswitch.CodePaymentInProgress)

			before := len(h.timeline(o.ID))
			r, err := h.svc.Methods(h.ctx, caller(""), o.ID)
			if err != nil {
				t.Fatal(err)
			}
			m := decode[txswitch.MethodsResponse](t, r)
			if len(m.Methods) != 0 || len(m.Excluded) != 3 {
				t.Fatalf("methods while %s: %+v", p.Status, m)
			}
			for _, e := range m.Excluded {
				if e.Reason != txswitch.ExclusionPaymentInProgress || e.Detail == "" {
					t.Fatalf("exclusion %+v, want reason %s", e, txswitch.ExclusionPaymentInProgress)
				}
			}
			if after := len(h.timeline(o.ID)); after != before {
				t.Fatalf("an offer was recorded while a payment was in progress (%d -> %d events)", before, after)
			}
			if tc.fail == nil {
				return
			}
			tc.fail(h, p)
			r, err = h.svc.Methods(h.ctx, caller(""), o.ID)
			if err != nil {
				t.Fatal(err)
			}
			if m := decode[txswitch.MethodsResponse](t, r); len(m.Methods) == 0 {
				t.Fatalf("no methods once the payment failed: %+v", m)
			}
			if !hasEvent(h.timeline(o.ID), "methods_offered") {
				t.Fatal("the offer after the failed payment was not recorded")
			}
		})
	}
}
