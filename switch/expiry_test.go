package txswitch_test

import (
	"strings"
	"testing"
	"time"

	txswitch "github.com/txswitch/txswitch/switch"
	"github.com/txswitch/txswitch/switch/memory"
)

func pendingStep() memory.Step {
	return memory.Step{Result: txswitch.ProviderResult{Outcome: txswitch.OutcomePending, ProviderRef: "b-1", RedirectURL: "https://bank.test/r"}}
}

// A redirect payment the shopper abandons must not block the order
// forever: past its method's expiry the resolver asks the provider, cancels
// the attempt there, and only then fails the payment, so the order can be
// paid another way. Whatever the provider says first wins.
func TestPendingExpiry(t *testing.T) {
	past := txswitch.DefaultPendingExpiry + time.Minute
	for _, tc := range []struct {
		name string
		// script for psp_b after the pending authorization
		status, cancel []memory.Step
		passes         int
		wantStatus     string
		wantCode       string
		wantCancels    int
		wantOrder      string
	}{
		{name: "abandoned: cancelled at the provider, order open again",
			status: []memory.Step{pendingStep()}, cancel: []memory.Step{approved("b-c1")}, passes: 1,
			wantStatus: txswitch.PaymentFailed, wantCode: txswitch.CodeExpired, wantCancels: 1, wantOrder: txswitch.OrderFailed},
		{name: "shopper completed meanwhile: the real outcome wins, nothing cancelled",
			status: []memory.Step{approved("b-1")}, passes: 1,
			wantStatus: txswitch.PaymentCaptured, wantOrder: txswitch.OrderPaid},
		{name: "shopper declined at the bank meanwhile",
			status: []memory.Step{declined("insufficient_funds")}, passes: 1,
			wantStatus: txswitch.PaymentDeclined, wantCode: "insufficient_funds", wantOrder: txswitch.OrderFailed},
		{name: "provider refuses the cancellation (completed at that moment): read the outcome next pass",
			status: []memory.Step{pendingStep(), approved("b-1")}, cancel: []memory.Step{declined("already_captured")}, passes: 2,
			wantStatus: txswitch.PaymentCaptured, wantCancels: 1, wantOrder: txswitch.OrderPaid},
		{name: "cancellation call fails: retried under the same key",
			status: []memory.Step{pendingStep(), pendingStep()}, cancel: []memory.Step{memoryErr(refusedErr("psp_b")), approved("b-c1")}, passes: 2,
			wantStatus: txswitch.PaymentFailed, wantCode: txswitch.CodeExpired, wantCancels: 2, wantOrder: txswitch.OrderFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			o := h.createOrder(1000)
			h.b.Push(txswitch.OpAuthorize, pendingStep())
			p := h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "ideal"})
			if p.Status != txswitch.PaymentPending {
				t.Fatalf("payment = %s", p.Status)
			}
			// Before the expiry a pending payment is only asked about.
			h.b.Push(txswitch.OpStatus, pendingStep())
			h.clock.Advance(time.Minute)
			if _, err := h.svc.ResolveInDoubt(h.ctx); err != nil {
				t.Fatal(err)
			}
			if n := len(h.b.CallsFor(txswitch.OpCancel)); n != 0 || h.payment(p.ID).Status != txswitch.PaymentPending {
				t.Fatalf("before expiry: %d cancels, payment %s", n, h.payment(p.ID).Status)
			}
			h.b.Push(txswitch.OpStatus, tc.status...)
			h.b.Push(txswitch.OpCancel, tc.cancel...)
			h.clock.Advance(past)
			for range tc.passes {
				if _, err := h.svc.ResolveInDoubt(h.ctx); err != nil {
					t.Fatal(err)
				}
				h.clock.Advance(2 * time.Minute) // past any backoff
			}
			got := h.payment(p.ID)
			code := ""
			if got.Failure != nil {
				code = got.Failure.Code
			}
			if got.Status != tc.wantStatus || code != tc.wantCode {
				t.Fatalf("payment = %s %q, want %s %q", got.Status, code, tc.wantStatus, tc.wantCode)
			}
			cancels := h.b.CallsFor(txswitch.OpCancel)
			if len(cancels) != tc.wantCancels {
				t.Fatalf("cancel calls = %d, want %d", len(cancels), tc.wantCancels)
			}
			for _, c := range cancels {
				if c.IdempotencyKey != p.ID+"/1:expire" || c.ProviderRef != "b-1" || !c.PendingOnly {
					t.Fatalf("cancel request = key %q ref %q pending only %v, want the pending attempt alone cancelled", c.IdempotencyKey, c.ProviderRef, c.PendingOnly)
				}
			}
			if n := len(h.b.CallsFor(txswitch.OpAuthorize)); n != 1 {
				t.Fatalf("authorize calls = %d: expiry must never charge again", n)
			}
			if st := h.order(o.ID).Status; st != tc.wantOrder {
				t.Fatalf("order = %s, want %s", st, tc.wantOrder)
			}
			if tc.wantCode != txswitch.CodeExpired {
				return
			}
			evs := h.timeline(o.ID)
			if !hasEvent(evs, "payment_expired") {
				t.Fatalf("timeline has no payment_expired: %v", eventTypes(evs))
			}
			ex, err := h.svc.Explain(h.ctx, caller(""), o.ID)
			if err != nil {
				t.Fatal(err)
			}
			e := decode[txswitch.Explanation](t, ex)
			if !strings.Contains(e.Summary, "did not complete ideal") {
				t.Fatalf("explain summary = %q", e.Summary)
			}
			// The order is open: another method pays it.
			card := h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card"})
			if card.Status != txswitch.PaymentCaptured || h.order(o.ID).Status != txswitch.OrderPaid {
				t.Fatalf("second payment = %s, order %s", card.Status, h.order(o.ID).Status)
			}
			// A late notification for the cancelled attempt is ignored.
			r, err := h.svc.Notify(h.ctx, "psp_b", txswitch.ProviderNotification{NotificationID: "late", IdempotencyKey: p.ID + "/1",
				Result: txswitch.ProviderResult{Outcome: txswitch.OutcomeApproved, ProviderRef: "b-1"}})
			if err != nil || string(r.Body) != `{"status":"ignored"}` {
				t.Fatalf("late notification: %v %s", err, r.Body)
			}
			if got := h.payment(p.ID); got.Status != txswitch.PaymentFailed || h.order(o.ID).Captured.Value != 1000 {
				t.Fatalf("after a late notification: payment %s, order captured %v", got.Status, h.order(o.ID).Captured)
			}
		})
	}
}

func TestPendingExpiryConfig(t *testing.T) {
	def := func() txswitch.RoutingConfig {
		return txswitch.DefaultConfig([]txswitch.MerchantConfig{{ID: "demo", Name: "Demo", APIKeyHashes: []string{txswitch.HashAPIKey("k")}}},
			map[string]string{"psp_a": "http://a.test", "psp_b": "http://b.test", "psp_c": "http://c.test"})
	}
	cfg := def()
	if e := cfg.Validate(); e != nil {
		t.Fatalf("default config: %+v", e)
	}
	for i := range cfg.Methods {
		if cfg.Methods[i].Redirect && cfg.Methods[i].PendingExpirySeconds == 0 {
			t.Errorf("default redirect method %s has no pending expiry", cfg.Methods[i].Name)
		}
	}
	for _, v := range []int64{-1, txswitch.MaxPendingExpirySeconds + 1} {
		bad := def()
		bad.Methods[0].PendingExpirySeconds = v
		if e := bad.Validate(); e == nil || e.Field != "methods[0].pending_expiry_seconds" {
			t.Errorf("pending_expiry_seconds %d: %v", v, e)
		}
	}
}

// A redirect the provider holds pending, but whose pending answer the
// switch never recorded, still expires: the call timed out (the payment
// went in doubt), or the leader died before the answer committed (the
// client's request stayed in progress). The status inquiry's "pending" is
// recorded (the payment shows pending with its redirect, a retry of the
// request gets that answer), and past the method's expiry the attempt is
// cancelled at the provider and the order is open again. Before, neither
// ever happened: the order could take no other payment.
func TestUnrecordedPendingExpires(t *testing.T) {
	for _, tc := range []struct {
		name  string
		start func(h *harness, orderID string) string // returns the payment id
	}{
		{"call timed out", func(h *harness, orderID string) string {
			h.b.Push(txswitch.OpAuthorize, memoryErr(timeoutErr("psp_b")))
			p := h.pay(orderID, txswitch.CreatePaymentRequest{Method: "ideal"})
			if p.Status != txswitch.PaymentInDoubt {
				h.t.Fatalf("payment = %s", p.Status)
			}
			return p.ID
		}},
		{"leader died before the answer committed", func(h *harness, orderID string) string {
			h.b.Push(txswitch.OpAuthorize, pendingStep())
			h.log.Fail(func(d []byte) bool { return strings.Contains(string(d), `"type":"payment_result"`) }, txswitch.ErrStopped, false)
			_, err := h.svc.CreatePayment(h.ctx, caller("k"), orderID, txswitch.CreatePaymentRequest{Method: "ideal"})
			wantErr(h.t, err, 503, "outcome_unknown")
			_, err = h.svc.CreatePayment(h.ctx, caller("k"), orderID, txswitch.CreatePaymentRequest{Method: "ideal"})
			wantErr(h.t, err, 409, "idempotency_request_in_progress")
			return h.order(orderID).Payments[0].ID
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			o := h.createOrder(1000)
			id := tc.start(h, o.ID)
			h.clock.Advance(time.Minute)
			h.b.Push(txswitch.OpStatus, pendingStep())
			if _, err := h.svc.ResolveInDoubt(h.ctx); err != nil {
				t.Fatal(err)
			}
			if got := h.payment(id); got.Status != txswitch.PaymentPending || got.RedirectURL == "" {
				t.Fatalf("after the inquiry: %s redirect %q", got.Status, got.RedirectURL)
			}
			if r, err := h.svc.CreatePayment(h.ctx, caller("k"), o.ID, txswitch.CreatePaymentRequest{Method: "ideal"}); tc.name != "call timed out" &&
				(err != nil || decode[txswitch.Payment](t, r).Status != txswitch.PaymentPending) {
				t.Fatalf("retry of the request: %v %s", err, r.Body)
			}
			// Another pass before the expiry records nothing new.
			h.clock.Advance(2 * time.Minute)
			h.b.Push(txswitch.OpStatus, pendingStep())
			before := len(h.timeline(o.ID))
			if _, err := h.svc.ResolveInDoubt(h.ctx); err != nil {
				t.Fatal(err)
			}
			if after := len(h.timeline(o.ID)); after != before {
				t.Fatalf("a second pending answer added %d timeline events", after-before)
			}
			h.clock.Advance(txswitch.DefaultPendingExpiry)
			h.b.Push(txswitch.OpStatus, pendingStep())
			h.b.Push(txswitch.OpCancel, approved("b-c1"))
			if _, err := h.svc.ResolveInDoubt(h.ctx); err != nil {
				t.Fatal(err)
			}
			got := h.payment(id)
			if got.Status != txswitch.PaymentFailed || got.Failure == nil || got.Failure.Code != txswitch.CodeExpired {
				t.Fatalf("after the expiry: %s %+v", got.Status, got.Failure)
			}
			if cancels := h.b.CallsFor(txswitch.OpCancel); len(cancels) != 1 || !cancels[0].PendingOnly {
				t.Fatalf("cancel calls = %+v", cancels)
			}
			if n := len(h.b.CallsFor(txswitch.OpAuthorize)); n != 1 {
				t.Fatalf("authorize calls = %d", n)
			}
			if card := h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card"}); card.Status != txswitch.PaymentCaptured {
				t.Fatalf("the order takes no other payment: %s", card.Status)
			}
		})
	}
}
