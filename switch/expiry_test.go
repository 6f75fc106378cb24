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
