package txswitch_test

import (
	"strings"
	"testing"
	"time"

	txswitch "github.com/txswitch/txswitch/switch"
)

// partlyCaptured is an authorization of 1000 of which 400 were captured
// (a partial shipment), at the newest cluster version (gate) or the first.
func (h *harness) partlyCaptured(gate bool) (txswitch.Order, txswitch.Payment) {
	h.t.Helper()
	if gate {
		h.gate(txswitch.VersionRelease)
	}
	o, p := h.authorized()
	if r, err := h.svc.Capture(h.ctx, caller(""), p.ID, txswitch.CaptureRequest{Amount: eur(400)}); err != nil || r.Status != 201 {
		h.t.Fatalf("capture: %v %d %s", err, r.Status, r.Body)
	}
	return o, h.payment(p.ID)
}

// The rest of the items will never ship: a cancel of the partly captured
// payment releases the 600 left of its authorization at the provider (one
// cancel call for exactly that rest), the payment keeps its capture, its
// authorization shrinks to it, and the order is paid for what shipped.
func TestReleaseAfterPartialCapture(t *testing.T) {
	h := newHarness(t)
	o, p := h.partlyCaptured(true)
	r, err := h.svc.Cancel(h.ctx, caller("release-1"), p.ID)
	if err != nil || r.Status != 200 {
		t.Fatalf("cancel: %v %d %s", err, r.Status, r.Body)
	}
	got := decode[txswitch.Payment](t, r)
	c := cancellationOf(t, got, "succeeded")
	if got.Status != txswitch.PaymentCaptured || got.Authorized.Value != 400 || got.Captured.Value != 400 ||
		got.Released == nil || got.Released.Value != 600 || c.Amount == nil || c.Amount.Value != 600 {
		t.Fatalf("released payment = %s", r.Body)
	}
	if again := h.payment(p.ID); again.Released == nil || again.Released.Value != 600 || again.Authorized.Value != 400 {
		t.Fatalf("payment read back: %+v", again)
	}
	calls := h.a.CallsFor(txswitch.OpCancel)
	if len(calls) != 1 || calls[0].Amount.Value != 600 || calls[0].Amount.Currency != "EUR" || calls[0].ProviderRef != p.ProviderRef || calls[0].IdempotencyKey != p.ID+"/cancel/1" {
		t.Fatalf("cancel calls = %+v", calls)
	}
	ord := h.order(o.ID)
	if ord.Status != txswitch.OrderPaid || ord.Authorized.Value != 400 || ord.Captured.Value != 400 {
		t.Fatalf("order = %s authorized %d captured %d", ord.Status, ord.Authorized.Value, ord.Captured.Value)
	}
	tl := h.timeline(o.ID)
	var saw int
	for _, e := range tl {
		if (e.Type == "cancel_requested" || e.Type == "cancel_succeeded") && strings.Contains(e.Message, "Release of the uncaptured EUR 6.00") {
			saw++
		}
	}
	if saw != 2 {
		t.Fatalf("timeline does not tell the release: %v", eventTypes(tl))
	}
	if ex := decode[txswitch.Explanation](t, h.explain(o.ID)); !strings.Contains(ex.Summary, "EUR 6.00 of the authorization was released") {
		t.Fatalf("explain = %q", ex.Summary)
	}

	// Nothing is left to capture or release; refunds work on the capture.
	_, err = h.svc.Capture(h.ctx, caller(""), p.ID, txswitch.CaptureRequest{Amount: eur(1)})
	wantErr(t, err, 409, txswitch.CodeInvalidState)
	_, err = h.svc.Cancel(h.ctx, caller(""), p.ID)
	wantErr(t, err, 409, txswitch.CodeInvalidState)
	if r, err := h.svc.Refund(h.ctx, caller(""), p.ID, txswitch.RefundRequest{}); err != nil || r.Status != 201 {
		t.Fatalf("refund: %v %d %s", err, r.Status, r.Body)
	}
	if got, ord := h.payment(p.ID), h.order(o.ID); got.Status != txswitch.PaymentRefunded || ord.Status != txswitch.OrderRefunded || got.Refunded.Value != 400 {
		t.Fatalf("after the refund: payment %s refunded %d, order %s", got.Status, got.Refunded.Value, ord.Status)
	}
	if n := len(h.a.CallsFor(txswitch.OpCancel)); n != 1 {
		t.Fatalf("%d cancel calls, want 1", n)
	}
}

// Cancels a release must refuse, each changing nothing: below the version
// gate (an older member refuses it: every member must agree), with a
// capture in doubt (its amount may or may not be captured), and once all
// of the authorization is captured.
func TestReleaseRefused(t *testing.T) {
	tests := []struct {
		name  string
		gate  bool
		setup func(h *harness, p txswitch.Payment)
		msg   string
	}{
		{"below the gate", false, func(*harness, txswitch.Payment) {}, "only an uncaptured authorization"},
		{"capture in doubt", true, func(h *harness, p txswitch.Payment) {
			h.a.Push(txswitch.OpCapture, memoryErr(timeoutErr("psp_a")))
			if r, err := h.svc.Capture(h.ctx, caller(""), p.ID, txswitch.CaptureRequest{Amount: eur(100)}); err != nil || r.Status != 201 {
				t.Fatalf("capture: %v %d %s", err, r.Status, r.Body)
			}
		}, "capture under way"},
		{"captured in full", true, func(h *harness, p txswitch.Payment) {
			if r, err := h.svc.Capture(h.ctx, caller(""), p.ID, txswitch.CaptureRequest{}); err != nil || r.Status != 201 {
				t.Fatalf("capture: %v %d %s", err, r.Status, r.Body)
			}
		}, "captured in full"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			_, p := h.partlyCaptured(tc.gate)
			tc.setup(h, p)
			h.unchanged(func() {
				_, err := h.svc.Cancel(h.ctx, caller("release-1"), p.ID)
				wantErr(t, err, 409, txswitch.CodeInvalidState)
				if !strings.Contains(err.Error(), tc.msg) {
					t.Fatalf("error %q does not say %q", err, tc.msg)
				}
			})
			if n := len(h.a.CallsFor(txswitch.OpCancel)); n != 0 {
				t.Fatalf("%d cancel calls sent", n)
			}
		})
	}
}

// A release the provider declines changes no money (the authorization is
// still 1000, the order still authorized); a retry is attempt 2 under a
// new key. One that times out is in doubt and settled by inquiry under the
// same key.
func TestReleaseDeclinedOrInDoubt(t *testing.T) {
	t.Run("declined, then retried", func(t *testing.T) {
		h := newHarness(t)
		o, p := h.partlyCaptured(true)
		h.a.Push(txswitch.OpCancel, declined("try_later"))
		if r, err := h.svc.Cancel(h.ctx, caller(""), p.ID); err != nil || r.Status != 422 || !strings.Contains(string(r.Body), txswitch.CodeCancelFailed) {
			t.Fatalf("declined release: %v %d %s", err, r.Status, r.Body)
		}
		got := h.payment(p.ID)
		if cancellationOf(t, got, "failed"); got.Authorized.Value != 1000 || got.Released != nil || got.Status != txswitch.PaymentCaptured {
			t.Fatalf("after a declined release: %+v", got)
		}
		if ord := h.order(o.ID); ord.Status != txswitch.OrderAuthorized {
			t.Fatalf("order = %s", ord.Status)
		}
		if r, err := h.svc.Cancel(h.ctx, caller(""), p.ID); err != nil || r.Status != 200 {
			t.Fatalf("retry: %v %d %s", err, r.Status, r.Body)
		}
		calls := h.a.CallsFor(txswitch.OpCancel)
		if len(calls) != 2 || calls[1].IdempotencyKey != p.ID+"/cancel/2" || calls[1].Amount.Value != 600 {
			t.Fatalf("cancel calls = %+v", calls)
		}
		if ord := h.order(o.ID); ord.Status != txswitch.OrderPaid {
			t.Fatalf("order after the retry = %s", ord.Status)
		}
	})
	t.Run("in doubt, resolved", func(t *testing.T) {
		h := newHarness(t)
		o, p := h.partlyCaptured(true)
		h.a.Push(txswitch.OpCancel, memoryErr(timeoutErr("psp_a")))
		if r, err := h.svc.Cancel(h.ctx, caller(""), p.ID); err != nil || r.Status != 200 {
			t.Fatalf("cancel: %v %d %s", err, r.Status, r.Body)
		}
		cancellationOf(t, h.payment(p.ID), txswitch.PaymentInDoubt)
		if ex := decode[txswitch.Explanation](t, h.explain(o.ID)); !hasCause(ex, txswitch.CauseCancelInDoubt) || !strings.Contains(ex.Summary, "release of the uncaptured EUR 6.00") {
			t.Fatalf("explain = %+v", ex)
		}
		h.clock.Advance(time.Minute)
		h.a.Push(txswitch.OpStatus, approved("v"))
		if n, err := h.svc.ResolveInDoubt(h.ctx); err != nil || n != 1 {
			t.Fatalf("resolve = %d %v", n, err)
		}
		got := h.payment(p.ID)
		if cancellationOf(t, got, "succeeded"); got.Released == nil || got.Released.Value != 600 || got.Authorized.Value != 400 {
			t.Fatalf("resolved: %+v", got)
		}
		if ord := h.order(o.ID); ord.Status != txswitch.OrderPaid {
			t.Fatalf("order = %s", ord.Status)
		}
		if n := len(h.a.CallsFor(txswitch.OpCancel)); n != 1 {
			t.Fatalf("%d cancel calls, want 1 (an inquiry settles it, not a second cancel)", n)
		}
	})
}
