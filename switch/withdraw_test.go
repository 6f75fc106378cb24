package txswitch_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	txswitch "github.com/txswitch/txswitch/switch"
)

// TestCancelAHeldPayment: from VersionWithdrawHeld the merchant cancels a
// payment held for review (a shopper who called off the order) with the
// cancel endpoint: no provider is asked, the answer is bound to its key,
// the order takes another payment, and the timeline and explain say who
// cancelled it. Before that version the cancel is refused as it was, and
// only the operator's review ends the hold.
func TestCancelAHeldPayment(t *testing.T) {
	held := func(h *harness) (txswitch.Order, txswitch.Payment) {
		t.Helper()
		o := h.createOrder(2_000_000) // the big_ticket fraud rule
		p := h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card", Capture: "manual"})
		if p.Status != txswitch.PaymentHeldForReview {
			t.Fatalf("payment = %s, want held", p.Status)
		}
		return o, p
	}

	t.Run("before the version", func(t *testing.T) {
		h := newHarnessFor(t, txswitch.VersionRange{Min: 1, Max: txswitch.VersionOperationReplay})
		h.gate(txswitch.VersionOperationReplay)
		_, p := held(h)
		h.unchanged(func() {
			_, err := h.svc.Cancel(h.ctx, caller("c1"), p.ID)
			wantErr(t, err, 409, "invalid_state")
		})
	})

	h := newHarness(t)
	h.gate(txswitch.VersionWithdrawHeld)
	o, p := held(h)
	r, err := h.svc.Cancel(h.ctx, caller("c1"), p.ID)
	if err != nil {
		t.Fatalf("cancel of a held payment: %v", err)
	}
	var got txswitch.Payment
	if err := json.Unmarshal(r.Body, &got); err != nil {
		t.Fatal(err)
	}
	if r.Status != 200 || got.Status != txswitch.PaymentCancelled || got.Failure == nil || got.Failure.Code != txswitch.CodeCancelledByMerchant {
		t.Fatalf("cancel answered %d %s", r.Status, r.Body)
	}
	if n := len(h.a.Calls()) + len(h.b.Calls()); n != 0 {
		t.Fatalf("%d provider calls for a payment no provider had seen", n)
	}
	if st := h.payment(p.ID); st.Status != txswitch.PaymentCancelled {
		t.Fatalf("payment is %s after the cancel", st.Status)
	}
	// The same key answers the same; a new one is refused (nothing held).
	again, err := h.svc.Cancel(h.ctx, caller("c1"), p.ID)
	if err != nil || again.Status != r.Status || !bytes.Equal(again.Body, r.Body) {
		t.Fatalf("retry with the key: %d %s, %v; first %d %s", again.Status, again.Body, err, r.Status, r.Body)
	}
	h.unchanged(func() {
		_, err := h.svc.Cancel(h.ctx, caller("c2"), p.ID)
		wantErr(t, err, 409, "invalid_state")
		_, err = h.svc.ReviewPayment(h.ctx, p.ID, txswitch.ReviewRequest{Decision: txswitch.ReviewApprove})
		wantErr(t, err, 409, "invalid_state")
	})
	var withdrawn bool
	for _, ev := range h.timeline(o.ID) {
		withdrawn = withdrawn || ev.Type == "review_withdrawn" && ev.PaymentID == p.ID
	}
	if !withdrawn {
		t.Fatal("no review_withdrawn event in the timeline")
	}
	var ex txswitch.Explanation
	if err := json.Unmarshal(h.explain(o.ID).Body, &ex); err != nil {
		t.Fatal(err)
	}
	if !hasCause(ex, txswitch.CauseCancelledByMerchant) {
		t.Fatalf("explain: %+v", ex)
	}
	// The order is not blocked by the hold any more: the shopper may pay
	// again (held again here: the order is as big as before).
	if p2 := h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card"}); p2.Status != txswitch.PaymentHeldForReview || p2.ID == p.ID {
		t.Fatalf("second payment %s is %s", p2.ID, p2.Status)
	}

	// Another merchant's key does not reach it.
	_, p3 := held(h)
	h.unchanged(func() {
		_, err := h.svc.Cancel(h.ctx, txswitch.Caller{MerchantID: "other", IdempotencyKey: "c3"}, p3.ID)
		if err == nil || !strings.Contains(err.Error(), "not found") {
			t.Fatalf("another merchant's cancel: %v", err)
		}
	})
	// Reviewed first: approved, the payment went to a provider and the
	// cancel voids it as any authorization.
	if _, err := h.svc.ReviewPayment(h.ctx, p3.ID, txswitch.ReviewRequest{Decision: txswitch.ReviewApprove}); err != nil {
		t.Fatal(err)
	}
	r, err = h.svc.Cancel(h.ctx, caller("c4"), p3.ID)
	if err != nil || h.payment(p3.ID).Status != txswitch.PaymentCancelled || h.payment(p3.ID).Cancellation == nil {
		t.Fatalf("cancel after approval: %d %s, %v", r.Status, r.Body, err)
	}
}
