package txswitch_test

import (
	"strings"
	"testing"
	"time"

	txswitch "github.com/txswitch/txswitch/switch"
	"github.com/txswitch/txswitch/switch/memory"
)

// approvedFor is an approval reporting that the provider processed m.
func approvedFor(ref string, m txswitch.Money) memory.Step {
	return memory.Step{Result: txswitch.ProviderResult{Outcome: txswitch.OutcomeApproved, ProviderRef: ref, Amount: &m}}
}

func countEvents(evs []txswitch.TimelineEvent, typ string) int {
	n := 0
	for _, e := range evs {
		if e.Type == typ {
			n++
		}
	}
	return n
}

// An approval of another amount than asked (a partial approval, another
// currency, a provider bug) is not booked: the payment stays in doubt with
// one amount_mismatch event and an explain cause, the resolver's repeated
// answers add nothing, and an answer with the right amount settles it.
// Below VersionProviderAmount the old rule holds (the amount asked for is
// booked), so that every member applies the same.
func TestProviderAmountMismatch(t *testing.T) {
	for _, tc := range []struct {
		name     string
		gate     bool
		reported txswitch.Money
		booked   bool
	}{
		{"less than asked", true, txswitch.Money{Value: 900, Currency: "EUR"}, false},
		{"another currency", true, txswitch.Money{Value: 1000, Currency: "USD"}, false},
		{"the amount asked", true, txswitch.Money{Value: 1000, Currency: "EUR"}, true},
		{"below the gate", false, txswitch.Money{Value: 900, Currency: "EUR"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			if tc.gate {
				h.gate(txswitch.VersionProviderAmount)
			}
			o := h.createOrder(1000)
			h.a.Push(txswitch.OpAuthorize, approvedFor("a-1", tc.reported))
			p := h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card"})
			if tc.booked {
				if p.Status != txswitch.PaymentCaptured || p.Captured.Value != 1000 {
					t.Fatalf("payment = %s captured %d", p.Status, p.Captured.Value)
				}
				return
			}
			if p.Status != txswitch.PaymentInDoubt || p.Authorized.Value != 0 || p.Captured.Value != 0 {
				t.Fatalf("payment = %s authorized %d captured %d, want in doubt with nothing booked", p.Status, p.Authorized.Value, p.Captured.Value)
			}
			if n := countEvents(h.timeline(o.ID), "amount_mismatch"); n != 1 {
				t.Fatalf("%d amount_mismatch events", n)
			}
			ex := decode[txswitch.Explanation](t, h.explain(o.ID))
			if !hasCause(ex, txswitch.CauseAmountMismatch) || !strings.Contains(ex.Summary, "not the EUR 10.00 asked for") {
				t.Fatalf("explain = %+v", ex)
			}
			// The resolver asks on and hears the same: nothing new.
			h.clock.Advance(time.Minute)
			h.a.Push(txswitch.OpStatus, approvedFor("a-1", tc.reported))
			before := len(h.timeline(o.ID))
			if n, err := h.svc.ResolveInDoubt(h.ctx); err != nil || n != 0 {
				t.Fatalf("resolve = %d %v; an answer that settles nothing is not settled", n, err)
			}
			if after := len(h.timeline(o.ID)); after != before || h.payment(p.ID).Status != txswitch.PaymentInDoubt {
				t.Fatalf("the same answer again: %d new events, payment %s", after-before, h.payment(p.ID).Status)
			}
			// ... and it is asked about again only after a backoff, not
			// at every pass.
			asked := len(h.a.CallsFor(txswitch.OpStatus))
			h.clock.Advance(500 * time.Millisecond)
			if _, err := h.svc.ResolveInDoubt(h.ctx); err != nil || len(h.a.CallsFor(txswitch.OpStatus)) != asked {
				t.Fatalf("asked again at once: %d inquiries, %v", len(h.a.CallsFor(txswitch.OpStatus))-asked, err)
			}
			// Reconciled at the provider: the right amount settles it.
			h.clock.Advance(time.Hour)
			h.a.Push(txswitch.OpStatus, approvedFor("a-1", txswitch.Money{Value: 1000, Currency: "EUR"}))
			if _, err := h.svc.ResolveInDoubt(h.ctx); err != nil {
				t.Fatal(err)
			}
			if got := h.payment(p.ID); got.Status != txswitch.PaymentCaptured || got.Captured.Value != 1000 || h.order(o.ID).Status != txswitch.OrderPaid {
				t.Fatalf("after reconciliation: payment %s captured %d, order %s", got.Status, got.Captured.Value, h.order(o.ID).Status)
			}
			if n := len(h.a.CallsFor(txswitch.OpAuthorize)); n != 1 {
				t.Fatalf("authorize calls = %d", n)
			}
		})
	}
}

// The same for a capture: a provider that captured another amount than
// asked leaves the capture in doubt, recorded once.
func TestCaptureAmountMismatch(t *testing.T) {
	h := newHarness(t)
	h.gate(txswitch.VersionProviderAmount)
	o, p := h.authorized()
	h.a.Push(txswitch.OpCapture, approvedFor("c-1", txswitch.Money{Value: 300, Currency: "EUR"}))
	r, err := h.svc.Capture(h.ctx, caller(""), p.ID, txswitch.CaptureRequest{Amount: eur(400)})
	if err != nil || r.Status != 201 {
		t.Fatalf("capture: %v %d %s", err, r.Status, r.Body)
	}
	got := h.payment(p.ID)
	if got.Captured.Value != 0 || len(got.Captures) != 1 || got.Captures[0].Status != txswitch.PaymentInDoubt {
		t.Fatalf("payment after a mismatched capture: captured %d, captures %+v", got.Captured.Value, got.Captures)
	}
	h.clock.Advance(time.Minute)
	h.a.Push(txswitch.OpStatus, approvedFor("c-1", txswitch.Money{Value: 300, Currency: "EUR"}))
	if _, err := h.svc.ResolveInDoubt(h.ctx); err != nil {
		t.Fatal(err)
	}
	if n := countEvents(h.timeline(o.ID), "amount_mismatch"); n != 1 {
		t.Fatalf("%d amount_mismatch events", n)
	}
	if got := h.payment(p.ID); got.Captured.Value != 0 || got.Captures[0].Status != txswitch.PaymentInDoubt {
		t.Fatalf("after the same answer again: captured %d, %+v", got.Captured.Value, got.Captures)
	}
}

// An attempt the resolver cannot settle (the provider approved another
// amount) is settled by an operator who reconciled it with the provider:
// failed reopens the order, approved books the amount asked; both land on
// the timeline with the operator's note. A payment not in doubt, a
// missing note, or a cluster below version 7 is refused, changing nothing.
func TestResolvePaymentByHand(t *testing.T) {
	mismatched := func(t *testing.T, gate bool) (*harness, txswitch.Order, txswitch.Payment) {
		h := newHarness(t)
		if gate {
			h.gate(txswitch.VersionProviderAmount)
		}
		o := h.createOrder(1000)
		if gate {
			h.a.Push(txswitch.OpAuthorize, approvedFor("a-1", txswitch.Money{Value: 900, Currency: "EUR"}))
		} else {
			h.a.Push(txswitch.OpAuthorize, memoryErr(timeoutErr("psp_a"))) // (no amount check below version 7)
		}
		p := h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card"})
		if p.Status != txswitch.PaymentInDoubt {
			t.Fatalf("payment = %s", p.Status)
		}
		return h, o, p
	}
	t.Run("failed", func(t *testing.T) {
		h, o, p := mismatched(t, true)
		r, err := h.svc.ResolvePayment(h.ctx, p.ID, txswitch.ResolveRequest{Outcome: txswitch.ResolveFailed, Note: "voided the 9.00 authorization at psp_a, ticket 42"})
		if err != nil || r.Status != 200 {
			t.Fatalf("resolve: %v %d %s", err, r.Status, r.Body)
		}
		got := h.payment(p.ID)
		if got.Status != txswitch.PaymentFailed || got.Failure == nil || got.Failure.Code != txswitch.CodeResolvedManually || !strings.Contains(got.Failure.Message, "ticket 42") {
			t.Fatalf("payment = %s %+v", got.Status, got.Failure)
		}
		if !hasEvent(h.timeline(o.ID), "resolved_manually") {
			t.Fatalf("timeline = %v", eventTypes(h.timeline(o.ID)))
		}
		if ex := decode[txswitch.Explanation](t, h.explain(o.ID)); hasCause(ex, txswitch.CauseAmountMismatch) {
			t.Fatalf("explain still reports the settled mismatch: %+v", ex)
		}
		if card := h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card"}); card.Status != txswitch.PaymentCaptured {
			t.Fatalf("the order takes no other payment: %s", card.Status)
		}
		// Nothing left in doubt: the resolver asks nobody.
		h.clock.Advance(time.Hour)
		asked := len(h.a.CallsFor(txswitch.OpStatus))
		if _, err := h.svc.ResolveInDoubt(h.ctx); err != nil || len(h.a.CallsFor(txswitch.OpStatus)) != asked {
			t.Fatalf("still asked about: %v", err)
		}
	})
	t.Run("approved", func(t *testing.T) {
		h, o, p := mismatched(t, true)
		r, err := h.svc.ResolvePayment(h.ctx, p.ID, txswitch.ResolveRequest{Outcome: txswitch.ResolveApproved, Note: "psp_a corrected the authorization to 10.00"})
		if err != nil || r.Status != 200 {
			t.Fatalf("resolve: %v %d %s", err, r.Status, r.Body)
		}
		if got := h.payment(p.ID); got.Status != txswitch.PaymentCaptured || got.Captured.Value != 1000 || h.order(o.ID).Status != txswitch.OrderPaid || got.ProviderRef != "a-1" {
			t.Fatalf("payment = %s captured %d ref %q, order %s", got.Status, got.Captured.Value, got.ProviderRef, h.order(o.ID).Status)
		}
		evs := h.timeline(o.ID)
		if !hasEvent(evs, "resolved_manually") || evs[len(evs)-1].Type != "resolved_manually" {
			t.Fatalf("timeline = %v", eventTypes(evs))
		}
	})
	t.Run("refused", func(t *testing.T) {
		h, _, p := mismatched(t, true)
		h.unchanged(func() {
			_, err := h.svc.ResolvePayment(h.ctx, p.ID, txswitch.ResolveRequest{Outcome: txswitch.ResolveFailed})
			wantErr(t, err, 400, "invalid_note")
			_, err = h.svc.ResolvePayment(h.ctx, p.ID, txswitch.ResolveRequest{Outcome: "maybe", Note: "x"})
			wantErr(t, err, 400, "invalid_outcome")
		})
		o2 := h.createOrder(500)
		settled := h.pay(o2.ID, txswitch.CreatePaymentRequest{Method: "card"})
		h.unchanged(func() {
			_, err := h.svc.ResolvePayment(h.ctx, settled.ID, txswitch.ResolveRequest{Outcome: txswitch.ResolveFailed, Note: "x"})
			wantErr(t, err, 409, txswitch.CodeInvalidState)
		})
		// In doubt because psp_a has not answered yet: the resolver's to
		// settle (a manual "failed" would leave the key unfenced).
		o3 := h.createOrder(700)
		h.a.Push(txswitch.OpAuthorize, memoryErr(timeoutErr("psp_a")))
		waiting := h.pay(o3.ID, txswitch.CreatePaymentRequest{Method: "card"})
		h.unchanged(func() {
			_, err := h.svc.ResolvePayment(h.ctx, waiting.ID, txswitch.ResolveRequest{Outcome: txswitch.ResolveFailed, Note: "x"})
			wantErr(t, err, 409, txswitch.CodeInvalidState)
		})
		old, _, inDoubt := mismatched(t, false)
		old.unchanged(func() {
			_, err := old.svc.ResolvePayment(old.ctx, inDoubt.ID, txswitch.ResolveRequest{Outcome: txswitch.ResolveFailed, Note: "x"})
			wantErr(t, err, 409, txswitch.CodeVersionNotSupported)
		})
	})
}
