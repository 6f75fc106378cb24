package txswitch_test

import (
	"strings"
	"testing"
	"time"

	txswitch "github.com/txswitch/txswitch/switch"
)

func (h *harness) expireOrders() int {
	h.t.Helper()
	n, err := h.svc.ExpireOrders(h.ctx)
	if err != nil {
		h.t.Fatalf("ExpireOrders: %v", err)
	}
	return n
}

// TestOrderExpiry: an order nobody paid expires at created_at + the
// merchant's setting: payments are refused from then on, the sweep marks
// it expired with a timeline event and an explain cause; paid orders and
// orders whose payment is still moving are left alone; orders created
// before the cluster ran version 2 never expire.
func TestOrderExpiry(t *testing.T) {
	day := txswitch.DefaultOrderExpiry
	for _, tc := range []struct {
		name string
		// v1 keeps the cluster at version 1.
		v1 bool
		// expirySeconds sets the merchant's order_expiry_seconds.
		expirySeconds int64
		// before runs after the order is created.
		before  func(h *harness, orderID string)
		advance time.Duration
		// wantProposed is what the sweep proposes; wantStatus the order's
		// status after it.
		wantProposed int
		wantStatus   string
	}{
		{name: "unpaid expires", advance: day, wantProposed: 1, wantStatus: txswitch.OrderExpired},
		{name: "not due yet", advance: day - time.Second, wantProposed: 0, wantStatus: txswitch.OrderCreated},
		{name: "merchant setting", expirySeconds: 600, advance: 10 * time.Minute, wantProposed: 1, wantStatus: txswitch.OrderExpired},
		{name: "paid orders stay paid", advance: 2 * day, wantProposed: 1, wantStatus: txswitch.OrderPaid,
			before: func(h *harness, id string) { h.pay(id, txswitch.CreatePaymentRequest{Method: "card"}) }},
		{name: "declined then expires", advance: day, wantProposed: 1, wantStatus: txswitch.OrderExpired,
			before: func(h *harness, id string) {
				h.a.Push(txswitch.OpAuthorize, declined("insufficient_funds"))
				h.pay(id, txswitch.CreatePaymentRequest{Method: "card"})
			}},
		{name: "a pending payment defers it", advance: day, wantProposed: 1, wantStatus: txswitch.OrderPending,
			before: func(h *harness, id string) {
				h.b.Push(txswitch.OpAuthorize, pendingStep())
				h.pay(id, txswitch.CreatePaymentRequest{Method: "ideal"})
			}},
		// Regression (VersionMoneyRules): an order whose authorization was
		// voided held no money but was never expired, and kept taking
		// payments past its expiry.
		{name: "cancelled then expires", advance: day, wantProposed: 1, wantStatus: txswitch.OrderExpired,
			before: func(h *harness, id string) {
				p := h.pay(id, txswitch.CreatePaymentRequest{Method: "card", Capture: txswitch.CaptureManual})
				if _, err := h.svc.Cancel(h.ctx, caller("void"), p.ID); err != nil {
					h.t.Fatalf("cancel: %v", err)
				}
				if st := h.order(id).Status; st != txswitch.OrderCancelled {
					h.t.Fatalf("order after the void = %s", st)
				}
			}},
		{name: "created at version 1 never expires", v1: true, advance: 2 * day, wantProposed: 0, wantStatus: txswitch.OrderCreated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			if tc.expirySeconds != 0 {
				cfg := testConfig()
				cfg.Merchants[0].OrderExpirySeconds = tc.expirySeconds
				if _, err := h.svc.PutConfig(h.ctx, cfg); err != nil {
					t.Fatal(err)
				}
			}
			if !tc.v1 {
				h.gate(txswitch.VersionOrderExpiry)
			}
			created := h.clock.Now()
			o := h.createOrder(1000)
			switch {
			case tc.v1 && o.ExpiresAt != nil:
				t.Fatalf("version 1 wrote expires_at %v", o.ExpiresAt)
			case !tc.v1:
				want := created.Add(day)
				if tc.expirySeconds != 0 {
					want = created.Add(time.Duration(tc.expirySeconds) * time.Second)
				}
				if o.ExpiresAt == nil || !o.ExpiresAt.Equal(want) {
					t.Fatalf("expires_at = %v, want %v", o.ExpiresAt, want)
				}
			}
			if tc.before != nil {
				tc.before(h, o.ID)
			}
			h.clock.Advance(tc.advance)
			if n := h.expireOrders(); n != tc.wantProposed {
				t.Fatalf("sweep proposed %d, want %d", n, tc.wantProposed)
			}
			got := h.order(o.ID)
			if got.Status != tc.wantStatus {
				t.Fatalf("status = %s, want %s", got.Status, tc.wantStatus)
			}
			if tc.wantStatus != txswitch.OrderPending {
				// The index entry was consumed: the next sweep has nothing.
				if n := h.expireOrders(); n != 0 {
					t.Fatalf("second sweep proposed %d", n)
				}
			}
			if got.Status != txswitch.OrderExpired {
				if hasEvent(h.timeline(o.ID), "order_expired") {
					t.Fatal("order_expired event on an order that did not expire")
				}
				return
			}
			if !hasEvent(h.timeline(o.ID), "order_expired") {
				t.Fatalf("no order_expired event: %v", eventTypes(h.timeline(o.ID)))
			}
			r, err := h.svc.Explain(h.ctx, caller(""), o.ID)
			if err != nil {
				t.Fatal(err)
			}
			ex := decode[txswitch.Explanation](t, r)
			if ex.Status != txswitch.OrderExpired || !strings.Contains(ex.Summary, "expired unpaid") {
				t.Fatalf("explain = %+v", ex)
			}
			found := false
			for _, c := range ex.Causes {
				found = found || c.Code == txswitch.CauseOrderExpired
			}
			if !found {
				t.Fatalf("no %s cause: %+v", txswitch.CauseOrderExpired, ex.Causes)
			}
			_, err = h.svc.CreatePayment(h.ctx, caller("late"), o.ID, txswitch.CreatePaymentRequest{Method: "card"})
			wantErr(t, err, 409, txswitch.CodeOrderExpired)
		})
	}
}

// A payment that arrives after expires_at is refused even before the sweep
// ran, and an order whose pending payment outlived its expiry is looked at
// again an hour later.
func TestOrderExpiryEdges(t *testing.T) {
	t.Run("refused before the sweep", func(t *testing.T) {
		h := newHarness(t)
		h.gate(txswitch.VersionOrderExpiry)
		o := h.createOrder(1000)
		h.clock.Advance(txswitch.DefaultOrderExpiry)
		_, err := h.svc.CreatePayment(h.ctx, caller("late"), o.ID, txswitch.CreatePaymentRequest{Method: "card"})
		wantErr(t, err, 409, txswitch.CodeOrderExpired)
		if n := len(h.a.Calls()) + len(h.b.Calls()); n != 0 {
			t.Fatalf("a provider was called %d times for an expired order", n)
		}
	})
	t.Run("pending is looked at again hourly", func(t *testing.T) {
		h := newHarness(t)
		h.gate(txswitch.VersionOrderExpiry)
		o := h.createOrder(1000)
		h.b.Push(txswitch.OpAuthorize, pendingStep())
		h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "ideal"})
		h.clock.Advance(txswitch.DefaultOrderExpiry)
		if n := h.expireOrders(); n != 1 {
			t.Fatalf("first sweep %d", n)
		}
		h.clock.Advance(59 * time.Minute)
		if n := h.expireOrders(); n != 0 {
			t.Fatalf("re-armed entry came back early: %d", n)
		}
		h.clock.Advance(time.Minute)
		if n := h.expireOrders(); n != 1 {
			t.Fatalf("re-armed entry not seen after an hour: %d", n)
		}
		if st := h.order(o.ID).Status; st != txswitch.OrderPending {
			t.Fatalf("status = %s", st)
		}
	})
}

// An order still authorized when its expiry came (money held: the sweep
// lets it be) expires when that authorization is cancelled later.
func TestOrderCancelledAfterItsExpiryExpires(t *testing.T) {
	h := newHarness(t)
	h.gate(txswitch.VersionMoneyRules)
	o := h.createOrder(1000)
	p := h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card", Capture: txswitch.CaptureManual})
	h.clock.Advance(txswitch.DefaultOrderExpiry + time.Minute)
	h.expireOrders()
	if st := h.order(o.ID).Status; st != txswitch.OrderAuthorized {
		t.Fatalf("order at its expiry with an authorization held = %s", st)
	}
	if _, err := h.svc.Cancel(h.ctx, caller("void"), p.ID); err != nil {
		t.Fatal(err)
	}
	if st := h.order(o.ID).Status; st != txswitch.OrderExpired {
		t.Fatalf("order after the void past its expiry = %s, want expired", st)
	}
	if !hasEvent(h.timeline(o.ID), "order_expired") {
		t.Fatalf("no order_expired event: %v", eventTypes(h.timeline(o.ID)))
	}
	_, err := h.svc.CreatePayment(h.ctx, caller("late"), o.ID, txswitch.CreatePaymentRequest{Method: "card"})
	wantErr(t, err, 409, txswitch.CodeOrderExpired)
}

// A payment held for review does not outlive its order: once the order
// expired, approving the hold is refused (the shopper's checkout is long
// gone) and the expiry sweep ends the hold and expires the order, which
// before waited for an admin forever, refusing every other payment.
func TestHeldPaymentEndsWithItsOrder(t *testing.T) {
	day := 24 * time.Hour
	t.Run("from the gate", func(t *testing.T) {
		h := newHarness(t)
		h.gate(txswitch.VersionProviderAmount)
		o := h.createOrder(2_000_000)
		p := h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card"})
		if p.Status != txswitch.PaymentHeldForReview {
			t.Fatalf("payment = %s", p.Status)
		}
		h.clock.Advance(day + time.Minute)
		h.unchanged(func() {
			_, err := h.svc.ReviewPayment(h.ctx, p.ID, txswitch.ReviewRequest{Decision: txswitch.ReviewApprove})
			wantErr(t, err, 409, txswitch.CodeOrderExpired)
		})
		if n := h.expireOrders(); n != 1 {
			t.Fatalf("expiries proposed = %d", n)
		}
		got := h.payment(p.ID)
		if got.Status != txswitch.PaymentCancelled || got.Failure == nil || got.Failure.Code != txswitch.CodeReviewExpired {
			t.Fatalf("held payment after the expiry: %s %+v", got.Status, got.Failure)
		}
		if st := h.order(o.ID).Status; st != txswitch.OrderExpired {
			t.Fatalf("order = %s", st)
		}
		evs := h.timeline(o.ID)
		if !hasEvent(evs, "review_expired") || !hasEvent(evs, "order_expired") {
			t.Fatalf("timeline = %v", eventTypes(evs))
		}
		if n := len(h.a.Calls()) + len(h.b.Calls()); n != 0 {
			t.Fatalf("%d provider calls", n)
		}
		// A rejection of the ended hold is refused as for any settled payment.
		_, err := h.svc.ReviewPayment(h.ctx, p.ID, txswitch.ReviewRequest{Decision: txswitch.ReviewReject})
		wantErr(t, err, 409, txswitch.CodeInvalidState)
	})
}

// An order partly paid by another payment does not expire (it holds
// money): its held part may still be approved after expires_at.
func TestHeldPartOfAPartlyPaidOrderStaysApprovable(t *testing.T) {
	h := newHarness(t)
	h.gate(txswitch.VersionProviderAmount)
	o := h.createOrder(1_200_000)
	first := h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card", Amount: &txswitch.Money{Value: 600_000, Currency: "EUR"}})
	if first.Status != txswitch.PaymentHeldForReview {
		t.Fatalf("first part = %s", first.Status)
	}
	if r, err := h.svc.ReviewPayment(h.ctx, first.ID, txswitch.ReviewRequest{Decision: txswitch.ReviewApprove}); err != nil || r.Status != 200 {
		t.Fatalf("approve the first part: %v", err)
	}
	second := h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card"})
	if second.Status != txswitch.PaymentHeldForReview {
		t.Fatalf("second part = %s", second.Status)
	}
	h.clock.Advance(25 * time.Hour)
	h.expireOrders()
	if r, err := h.svc.ReviewPayment(h.ctx, second.ID, txswitch.ReviewRequest{Decision: txswitch.ReviewApprove}); err != nil || r.Status != 200 {
		t.Fatalf("approve the second part after expires_at: %v", err)
	}
	if st := h.order(o.ID).Status; st != txswitch.OrderPaid {
		t.Fatalf("order = %s", st)
	}
}
