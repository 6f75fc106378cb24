package txswitch_test

import (
	"encoding/json"
	"testing"
	"time"

	txswitch "github.com/txswitch/txswitch/switch"
)

// TestListReviews: the review queue lists the payments a fraud rule held,
// the soonest to expire first, with what a reviewer needs (customer, rule,
// deadline), and drops them once reviewed.
func TestListReviews(t *testing.T) {
	h := newHarness(t)
	h.gate(txswitch.VersionProviderAmount)
	held := func() txswitch.Payment {
		t.Helper()
		p := h.pay(h.createOrder(1_000_000).ID, txswitch.CreatePaymentRequest{Method: "card"})
		if p.Status != txswitch.PaymentHeldForReview {
			t.Fatalf("a big order's payment is %s, want held", p.Status)
		}
		h.clock.Advance(time.Minute)
		return p
	}
	first, second := held(), held()
	if p := h.pay(h.createOrder(1000).ID, txswitch.CreatePaymentRequest{Method: "card"}); p.Status != txswitch.PaymentCaptured {
		t.Fatalf("a small payment is %s", p.Status)
	}
	approved, rejected := held(), held()
	for p, d := range map[string]string{approved.ID: txswitch.ReviewApprove, rejected.ID: txswitch.ReviewReject} {
		if _, err := h.svc.ReviewPayment(h.ctx, p, txswitch.ReviewRequest{Decision: d, Note: "checked"}); err != nil {
			t.Fatal(err)
		}
	}

	list := func(after string, limit int) txswitch.ReviewsResponse {
		t.Helper()
		r, err := h.svc.ListReviews(h.ctx, after, limit)
		if err != nil {
			t.Fatal(err)
		}
		var page txswitch.ReviewsResponse
		if err := json.Unmarshal(r.Body, &page); err != nil {
			t.Fatalf("%s: %v", r.Body, err)
		}
		return page
	}
	all := list("", 0)
	if len(all.Payments) != 2 || all.Next != "" {
		t.Fatalf("queue %+v, want the two unreviewed holds", all)
	}
	for i, want := range []txswitch.Payment{first, second} {
		got := all.Payments[i]
		o := h.order(want.OrderID)
		if got.PaymentID != want.ID || got.OrderID != want.OrderID || got.Rule != "big_ticket" || got.Method != "card" ||
			got.Amount != want.Amount || got.Customer.Country != "NL" || got.Channel != "online" ||
			!got.HeldAt.Equal(want.CreatedAt) || o.ExpiresAt == nil || !got.OrderExpiresAt.Equal(*o.ExpiresAt) {
			t.Errorf("entry %d: %+v, want payment %s of order %s (expires %v) held by big_ticket", i, got, want.ID, want.OrderID, o.ExpiresAt)
		}
	}
	one := list("", 1)
	if len(one.Payments) != 1 || one.Payments[0].PaymentID != first.ID || one.Next == "" {
		t.Fatalf("first page of one: %+v", one)
	}
	rest := list(one.Next, 1)
	if len(rest.Payments) != 1 || rest.Payments[0].PaymentID != second.ID {
		t.Fatalf("second page: %+v", rest)
	}
	if last := list(rest.Next, 1); rest.Next != "" && len(last.Payments) != 0 {
		t.Fatalf("past the end: %+v", last)
	}
	for _, bad := range []struct {
		after string
		limit int
	}{{"", -1}, {"", txswitch.MaxReviewsPage + 1}, {"no-slash", 0}} {
		_, err := h.svc.ListReviews(h.ctx, bad.after, bad.limit)
		wantErr(t, err, 400, txswitch.CodeInvalidQuery)
	}
}
