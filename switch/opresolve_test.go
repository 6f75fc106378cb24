package txswitch_test

import (
	"strings"
	"testing"
	"time"

	txswitch "github.com/txswitch/txswitch/switch"
	"github.com/txswitch/txswitch/switch/memory"
)

// A capture, refund or cancellation whose provider approved another
// amount than asked stays in doubt for good (the provider's answer for
// its key does not change). An operator who reconciled it settles it:
// failed frees what it reserved and lets it be asked again, approved
// books the amount asked; the note lands on the timeline. The
// operation's own idempotency key answers what it answered first (in
// doubt), as any operation answered in doubt (TestOperationReplay).
func TestResolveOperationByHand(t *testing.T) {
	type stuck struct {
		h       *harness
		o       txswitch.Order
		p       txswitch.Payment
		op      string // ResolveRequest.Operation
		idemKey string // of the request that started the operation
		first   txswitch.Reply
	}
	// mismatched leaves one operation of op's kind in doubt: its provider
	// approves another amount than asked.
	mismatched := func(op string) func(t *testing.T) stuck {
		return func(t *testing.T) stuck {
			h := newHarness(t)
			h.gate(txswitch.VersionOperationResolve)
			o, p := h.authorized()
			var err error
			var first txswitch.Reply
			switch op {
			case txswitch.PrefixCapture:
				h.a.Push(txswitch.OpCapture, approvedFor("c-1", txswitch.Money{Value: 300, Currency: "EUR"}))
				first, err = h.svc.Capture(h.ctx, caller("op-key"), p.ID, txswitch.CaptureRequest{Amount: eur(400)})
			case txswitch.PrefixRefund:
				h.a.Push(txswitch.OpCapture, approvedFor("c-1", txswitch.Money{Value: 1000, Currency: "EUR"}))
				if _, err = h.svc.Capture(h.ctx, caller(""), p.ID, txswitch.CaptureRequest{}); err == nil {
					h.a.Push(txswitch.OpRefund, approvedFor("r-1", txswitch.Money{Value: 250, Currency: "EUR"}))
					first, err = h.svc.Refund(h.ctx, caller("op-key"), p.ID, txswitch.RefundRequest{Amount: eur(300), Reason: "return"})
				}
			default:
				h.a.Push(txswitch.OpCancel, approvedFor("x-1", txswitch.Money{Value: 900, Currency: "EUR"}))
				first, err = h.svc.Cancel(h.ctx, caller("op-key"), p.ID)
			}
			if err != nil {
				t.Fatalf("%s: %v", op, err)
			}
			got := h.payment(p.ID)
			s := stuck{h: h, o: o, p: got, op: txswitch.OperationCancellation, idemKey: "op-key", first: first}
			status := ""
			switch {
			case op == txswitch.PrefixCapture && len(got.Captures) == 1:
				s.op, status = got.Captures[0].ID, got.Captures[0].Status
			case op == txswitch.PrefixRefund && len(got.Refunds) == 1:
				s.op, status = got.Refunds[0].ID, got.Refunds[0].Status
			case op == "" && got.Cancellation != nil:
				status = got.Cancellation.Status
			}
			if status != txswitch.PaymentInDoubt {
				t.Fatalf("%s not in doubt: %+v", op, got)
			}
			return s
		}
	}
	mismatchedCapture, mismatchedRefund, mismatchedCancel := mismatched(txswitch.PrefixCapture), mismatched(txswitch.PrefixRefund), mismatched("")
	for _, tc := range []struct {
		name    string
		setup   func(t *testing.T) stuck
		outcome string
		check   func(t *testing.T, s stuck, got txswitch.Payment)
	}{
		{"capture approved", mismatchedCapture, txswitch.ResolveApproved, func(t *testing.T, s stuck, got txswitch.Payment) {
			if got.Captured.Value != 400 || got.Captures[0].Status != "succeeded" || got.Status != txswitch.PaymentCaptured {
				t.Fatalf("payment = %s captured %d, captures %+v", got.Status, got.Captured.Value, got.Captures)
			}
		}},
		{"capture failed", mismatchedCapture, txswitch.ResolveFailed, func(t *testing.T, s stuck, got txswitch.Payment) {
			if got.Captured.Value != 0 || got.Captures[0].Status != "failed" || got.Status != txswitch.PaymentAuthorized {
				t.Fatalf("payment = %s captured %d, captures %+v", got.Status, got.Captured.Value, got.Captures)
			}
			// Nothing reserved any more: the whole authorization captures.
			s.h.a.Push(txswitch.OpCapture, approvedFor("c-2", txswitch.Money{Value: 1000, Currency: "EUR"}))
			if r, err := s.h.svc.Capture(s.h.ctx, caller(""), s.p.ID, txswitch.CaptureRequest{Amount: eur(1000)}); err != nil || r.Status != 201 {
				t.Fatalf("capture after the resolution: %v %d %s", err, r.Status, r.Body)
			}
		}},
		{"refund approved", mismatchedRefund, txswitch.ResolveApproved, func(t *testing.T, s stuck, got txswitch.Payment) {
			if got.Refunded.Value != 300 || got.Refunds[0].Status != "succeeded" || got.Status != txswitch.PaymentPartiallyRefunded {
				t.Fatalf("payment = %s refunded %d, refunds %+v", got.Status, got.Refunded.Value, got.Refunds)
			}
		}},
		{"refund failed", mismatchedRefund, txswitch.ResolveFailed, func(t *testing.T, s stuck, got txswitch.Payment) {
			if got.Refunded.Value != 0 || got.Refunds[0].Status != "failed" || got.Refunds[0].Failure == nil ||
				got.Refunds[0].Failure.Code != txswitch.CodeResolvedManually || got.Status != txswitch.PaymentCaptured {
				t.Fatalf("payment = %s refunded %d, refunds %+v", got.Status, got.Refunded.Value, got.Refunds)
			}
			s.h.a.Push(txswitch.OpRefund, approvedFor("r-2", txswitch.Money{Value: 1000, Currency: "EUR"}))
			if _, err := s.h.svc.Refund(s.h.ctx, caller(""), s.p.ID, txswitch.RefundRequest{Amount: eur(1000)}); err != nil {
				t.Fatalf("full refund after the resolution: %v", err)
			}
			if got := s.h.payment(s.p.ID); got.Refunded.Value != 1000 {
				t.Fatalf("refunded %d", got.Refunded.Value)
			}
		}},
		{"cancellation approved", mismatchedCancel, txswitch.ResolveApproved, func(t *testing.T, s stuck, got txswitch.Payment) {
			if got.Status != txswitch.PaymentCancelled || got.Cancellation.Status != "succeeded" || got.Authorized.Value != 0 {
				t.Fatalf("payment = %s authorized %d, cancellation %+v", got.Status, got.Authorized.Value, got.Cancellation)
			}
		}},
		{"cancellation failed", mismatchedCancel, txswitch.ResolveFailed, func(t *testing.T, s stuck, got txswitch.Payment) {
			if got.Status != txswitch.PaymentAuthorized || got.Cancellation.Status != "failed" || got.Cancellation.Failure == nil ||
				got.Cancellation.Failure.Code != txswitch.CodeResolvedManually {
				t.Fatalf("payment = %s, cancellation %+v", got.Status, got.Cancellation)
			}
			// A cancellation may be asked again, under a new key.
			s.h.a.Push(txswitch.OpCancel, memory.Step{Result: txswitch.ProviderResult{Outcome: txswitch.OutcomeApproved, ProviderRef: "x-2"}})
			if _, err := s.h.svc.Cancel(s.h.ctx, caller(""), s.p.ID); err != nil {
				t.Fatalf("cancel again: %v", err)
			}
			if got := s.h.payment(s.p.ID); got.Status != txswitch.PaymentCancelled || got.Cancellation.Attempt != 2 {
				t.Fatalf("after the second cancellation: %s %+v", got.Status, got.Cancellation)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.setup(t)
			h := s.h
			if ex := decode[txswitch.Explanation](t, h.explain(s.o.ID)); !hasCause(ex, txswitch.CauseAmountMismatch) {
				t.Fatalf("explain before: %+v", ex)
			}
			r, err := h.svc.ResolvePayment(h.ctx, s.p.ID, txswitch.ResolveRequest{Outcome: tc.outcome, Note: "checked with psp_a, ticket 7", Operation: s.op})
			if err != nil || r.Status != 200 {
				t.Fatalf("resolve: %v %d %s", err, r.Status, r.Body)
			}
			if answered := decode[txswitch.Payment](t, r); answered.ID != s.p.ID || answered.Status != h.payment(s.p.ID).Status {
				t.Fatalf("answered %s %s, stored %s", answered.ID, answered.Status, h.payment(s.p.ID).Status)
			}
			evs := h.timeline(s.o.ID)
			last := evs[len(evs)-1]
			if last.Type != "resolved_manually" || !strings.Contains(last.Message, "ticket 7") {
				t.Fatalf("last event %s %q; timeline %v", last.Type, last.Message, eventTypes(evs))
			}
			if ex := decode[txswitch.Explanation](t, h.explain(s.o.ID)); hasCause(ex, txswitch.CauseAmountMismatch) {
				t.Fatalf("explain still reports the settled mismatch: %+v", ex)
			}
			// Nothing left in doubt: the resolver asks nobody.
			h.clock.Advance(time.Hour)
			asked := len(h.a.CallsFor(txswitch.OpStatus))
			if _, err := h.svc.ResolveInDoubt(h.ctx); err != nil || len(h.a.CallsFor(txswitch.OpStatus)) != asked {
				t.Fatalf("still asked about: %d inquiries, %v", len(h.a.CallsFor(txswitch.OpStatus))-asked, err)
			}
			// The client that retries its request hears what it heard the
			// first time (in doubt); the payment tells the outcome.
			var retried txswitch.Reply
			switch {
			case strings.HasPrefix(s.op, txswitch.PrefixCapture):
				retried, err = h.svc.Capture(h.ctx, caller(s.idemKey), s.p.ID, txswitch.CaptureRequest{Amount: eur(400)})
			case strings.HasPrefix(s.op, txswitch.PrefixRefund):
				retried, err = h.svc.Refund(h.ctx, caller(s.idemKey), s.p.ID, txswitch.RefundRequest{Amount: eur(300), Reason: "return"})
			default:
				retried, err = h.svc.Cancel(h.ctx, caller(s.idemKey), s.p.ID)
			}
			if err != nil || retried.Status != s.first.Status || string(retried.Body) != string(s.first.Body) {
				t.Fatalf("retry of the %s request: %v %d %s, want the first answer %d %s", s.op, err, retried.Status, retried.Body, s.first.Status, s.first.Body)
			}
			tc.check(t, s, h.payment(s.p.ID))
		})
	}
}

// What cannot be settled by hand is refused, changing nothing: an
// operation still waiting for its provider's answer (the resolver's), one
// that is not in doubt, an id the payment does not have, a malformed
// operation, and any operation below cluster version 9.
func TestResolveOperationByHandRefused(t *testing.T) {
	h := newHarness(t)
	h.gate(txswitch.VersionOperationResolve)
	_, p := h.authorized()
	h.a.Push(txswitch.OpCapture, memoryErr(timeoutErr("psp_a")))
	if _, err := h.svc.Capture(h.ctx, caller(""), p.ID, txswitch.CaptureRequest{Amount: eur(400)}); err != nil {
		t.Fatalf("capture: %v", err)
	}
	waiting := h.payment(p.ID).Captures[0]
	if waiting.Status != txswitch.PaymentInDoubt {
		t.Fatalf("capture = %+v", waiting)
	}
	h.a.Push(txswitch.OpCapture, approvedFor("c-2", txswitch.Money{Value: 100, Currency: "EUR"}))
	if _, err := h.svc.Capture(h.ctx, caller(""), p.ID, txswitch.CaptureRequest{Amount: eur(100)}); err != nil {
		t.Fatalf("capture: %v", err)
	}
	done := h.payment(p.ID).Captures[1]
	for _, c := range []struct {
		name, op     string
		status       int
		code         string
		outcome      string
		withoutNotes bool
	}{
		{"waiting for its provider", waiting.ID, 409, txswitch.CodeInvalidState, txswitch.ResolveFailed, false},
		{"not in doubt", done.ID, 409, txswitch.CodeInvalidState, txswitch.ResolveFailed, false},
		{"no such capture", "cap_nope", 404, txswitch.CodeOperationNotFound, txswitch.ResolveFailed, false},
		{"no such refund", "ref_nope", 404, txswitch.CodeOperationNotFound, txswitch.ResolveFailed, false},
		{"no cancellation", txswitch.OperationCancellation, 409, txswitch.CodeInvalidState, txswitch.ResolveFailed, false},
		{"not an operation", "pay_1", 400, "invalid_operation", txswitch.ResolveFailed, false},
		{"too long", "cap_" + strings.Repeat("x", 200), 400, "invalid_operation", txswitch.ResolveFailed, false},
		{"no note", waiting.ID, 400, "invalid_note", txswitch.ResolveFailed, true},
		{"unknown outcome", waiting.ID, 400, "invalid_outcome", "maybe", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			note := "x"
			if c.withoutNotes {
				note = ""
			}
			h.unchanged(func() {
				_, err := h.svc.ResolvePayment(h.ctx, p.ID, txswitch.ResolveRequest{Outcome: c.outcome, Note: note, Operation: c.op})
				wantErr(t, err, c.status, c.code)
			})
		})
	}
	t.Run("below version 9", func(t *testing.T) {
		old := newHarnessFor(t, txswitch.VersionRange{Min: 1, Max: txswitch.VersionOperationResolve - 1})
		old.gate(txswitch.VersionOperationResolve - 1)
		_, p := old.authorized()
		old.a.Push(txswitch.OpCapture, approvedFor("c-1", txswitch.Money{Value: 300, Currency: "EUR"}))
		if _, err := old.svc.Capture(old.ctx, caller(""), p.ID, txswitch.CaptureRequest{Amount: eur(400)}); err != nil {
			t.Fatalf("capture: %v", err)
		}
		capture := old.payment(p.ID).Captures[0]
		old.unchanged(func() {
			_, err := old.svc.ResolvePayment(old.ctx, p.ID, txswitch.ResolveRequest{Outcome: txswitch.ResolveFailed, Note: "x", Operation: capture.ID})
			wantErr(t, err, 409, txswitch.CodeVersionNotSupported)
		})
	})
}
