package txswitch_test

import (
	"fmt"
	"testing"
	"time"

	txswitch "github.com/txswitch/txswitch/switch"
)

// A capture, refund or cancellation its provider does not answer in time
// is answered "in doubt". From cluster version 12 a retry with the same
// key hears exactly that again, before and after the status inquiry
// settles it (API.md: the same status and body as the first time); the
// payment tells the outcome. Below 12 the record stayed in progress: a
// retry got 409 idempotency_request_in_progress, and after the
// resolution an answer other than the first.
func TestOperationReplay(t *testing.T) {
	ops := []struct {
		name string
		op   txswitch.ProviderOp
		do   func(h *harness, p txswitch.Payment) (txswitch.Reply, error)
		// settled reports whether the payment shows the operation settled
		// as succeeded.
		settled func(p txswitch.Payment) bool
	}{
		{"capture", txswitch.OpCapture,
			func(h *harness, p txswitch.Payment) (txswitch.Reply, error) {
				return h.svc.Capture(h.ctx, caller("op-1"), p.ID, txswitch.CaptureRequest{Amount: eur(400)})
			},
			func(p txswitch.Payment) bool { return p.Captured.Value == 400 && p.Captures[0].Status == "succeeded" }},
		{"refund", txswitch.OpRefund,
			func(h *harness, p txswitch.Payment) (txswitch.Reply, error) {
				return h.svc.Refund(h.ctx, caller("op-1"), p.ID, txswitch.RefundRequest{Amount: eur(300), Reason: "return"})
			},
			func(p txswitch.Payment) bool { return p.Refunded.Value == 300 && p.Refunds[0].Status == "succeeded" }},
		{"cancel", txswitch.OpCancel,
			func(h *harness, p txswitch.Payment) (txswitch.Reply, error) {
				return h.svc.Cancel(h.ctx, caller("op-1"), p.ID)
			},
			func(p txswitch.Payment) bool { return p.Status == txswitch.PaymentCancelled }},
	}
	for _, tc := range ops {
		for _, v := range []int{txswitch.VersionOperationReplay - 1, txswitch.VersionOperationReplay} {
			t.Run(fmt.Sprintf("%s/version %d", tc.name, v), func(t *testing.T) {
				h := newHarnessFor(t, txswitch.VersionRange{Min: 1, Max: v})
				h.gate(v)
				_, p := h.authorized()
				if tc.op == txswitch.OpRefund {
					h.a.Push(txswitch.OpCapture, approved("c-1"))
					if _, err := h.svc.Capture(h.ctx, caller(""), p.ID, txswitch.CaptureRequest{}); err != nil {
						t.Fatalf("capture: %v", err)
					}
				}
				h.a.Push(tc.op, memoryErr(timeoutErr("psp_a")))
				first, err := tc.do(h, p)
				if err != nil || first.Status/100 != 2 {
					t.Fatalf("first %s: %v %d %s", tc.name, err, first.Status, first.Body)
				}
				same := func(when string) {
					t.Helper()
					r, err := tc.do(h, p)
					if err != nil || r.Status != first.Status || string(r.Body) != string(first.Body) {
						t.Fatalf("replay %s = %v %d %s, want the first answer %d %s", when, err, r.Status, r.Body, first.Status, first.Body)
					}
				}
				if v >= txswitch.VersionOperationReplay {
					h.unchanged(func() { same("in doubt") })
				} else {
					_, err := tc.do(h, p)
					wantErr(t, err, 409, "idempotency_request_in_progress")
				}
				h.clock.Advance(time.Minute)
				h.a.Push(txswitch.OpStatus, approved("s-1"))
				if n, err := h.svc.ResolveInDoubt(h.ctx); err != nil || n != 1 {
					t.Fatalf("resolve = %d %v", n, err)
				}
				if got := h.payment(p.ID); !tc.settled(got) {
					t.Fatalf("payment after the inquiry: %+v", got)
				}
				if v >= txswitch.VersionOperationReplay {
					same("after the inquiry")
				} else if r, err := tc.do(h, p); err != nil || string(r.Body) == string(first.Body) {
					t.Fatalf("below %d the replay answered the settled operation; got %v %d %s", txswitch.VersionOperationReplay, err, r.Status, r.Body)
				}
				if n := len(h.a.CallsFor(tc.op)); n != 1 {
					t.Fatalf("%d %s calls, want 1", n, tc.name)
				}
			})
		}
	}
}
