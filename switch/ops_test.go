package txswitch_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	txswitch "github.com/txswitch/txswitch/switch"
	"github.com/txswitch/txswitch/switch/memory"
)

func eur(v int64) *txswitch.Money { return &txswitch.Money{Value: v, Currency: "EUR"} }

// authorized makes an order of 1000 with a manual-capture card payment.
func (h *harness) authorized() (txswitch.Order, txswitch.Payment) {
	h.t.Helper()
	o := h.createOrder(1000)
	p := h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card", Capture: "manual"})
	if p.Status != txswitch.PaymentAuthorized {
		h.t.Fatalf("payment = %s", p.Status)
	}
	return o, p
}

func TestCaptureRefundLifecycle(t *testing.T) {
	h := newHarness(t)
	o, p := h.authorized()
	steps := []struct {
		name       string
		do         func() (txswitch.Reply, error)
		wantPay    string
		wantOrder  string
		captured   int64
		refunded   int64
		wantStatus int
	}{
		{"partial capture", func() (txswitch.Reply, error) {
			return h.svc.Capture(h.ctx, caller(""), p.ID, txswitch.CaptureRequest{Amount: eur(400)})
		}, txswitch.PaymentCaptured, txswitch.OrderAuthorized, 400, 0, 201},
		{"capture the rest by default", func() (txswitch.Reply, error) {
			return h.svc.Capture(h.ctx, caller(""), p.ID, txswitch.CaptureRequest{})
		}, txswitch.PaymentCaptured, txswitch.OrderPaid, 1000, 0, 201},
		{"partial refund at the pos", func() (txswitch.Reply, error) {
			return h.svc.Refund(h.ctx, caller(""), p.ID, txswitch.RefundRequest{Amount: eur(300), Reason: "return", Channel: "pos"})
		}, txswitch.PaymentPartiallyRefunded, txswitch.OrderPartiallyRefunded, 1000, 300, 201},
		{"refund the rest", func() (txswitch.Reply, error) {
			return h.svc.Refund(h.ctx, caller(""), p.ID, txswitch.RefundRequest{})
		}, txswitch.PaymentRefunded, txswitch.OrderRefunded, 1000, 1000, 201},
	}
	for _, st := range steps {
		r, err := st.do()
		if err != nil || r.Status != st.wantStatus {
			t.Fatalf("%s: %v status %d %s", st.name, err, r.Status, r.Body)
		}
		got := h.payment(p.ID)
		ord := h.order(o.ID)
		if got.Status != st.wantPay || ord.Status != st.wantOrder || got.Captured.Value != st.captured || got.Refunded.Value != st.refunded ||
			ord.Captured.Value != st.captured || ord.Refunded.Value != st.refunded {
			t.Fatalf("%s: payment %s (c %d r %d), order %s (c %d r %d)", st.name, got.Status, got.Captured.Value, got.Refunded.Value,
				ord.Status, ord.Captured.Value, ord.Refunded.Value)
		}
	}
	got := h.payment(p.ID)
	if len(got.Captures) != 2 || len(got.Refunds) != 2 || got.Refunds[0].Channel != "pos" || got.Refunds[1].Channel != "online" || got.Refunds[0].Reason != "return" {
		t.Fatalf("captures/refunds = %+v / %+v", got.Captures, got.Refunds)
	}
	caps := h.a.CallsFor(txswitch.OpCapture)
	if len(caps) != 2 || caps[0].IdempotencyKey != got.Captures[0].ID || caps[0].ProviderRef != got.ProviderRef || caps[0].Amount.Value != 400 {
		t.Fatalf("capture calls = %+v", caps)
	}
	if refs := h.a.CallsFor(txswitch.OpRefund); len(refs) != 2 || refs[1].IdempotencyKey != got.Refunds[1].ID || refs[1].Amount.Value != 700 {
		t.Fatalf("refund calls = %+v", refs)
	}
}

func TestMoneyInvariantsRejected(t *testing.T) {
	tests := []struct {
		name   string
		do     func(h *harness, p txswitch.Payment) error
		status int
		code   string
	}{
		{"capture above authorized", func(h *harness, p txswitch.Payment) error {
			_, err := h.svc.Capture(h.ctx, caller(""), p.ID, txswitch.CaptureRequest{Amount: eur(1001)})
			return err
		}, 422, "amount_exceeds_authorized"},
		{"refund before capture", func(h *harness, p txswitch.Payment) error {
			_, err := h.svc.Refund(h.ctx, caller(""), p.ID, txswitch.RefundRequest{Amount: eur(1)})
			return err
		}, 409, "invalid_state"},
		{"capture in other currency", func(h *harness, p txswitch.Payment) error {
			_, err := h.svc.Capture(h.ctx, caller(""), p.ID, txswitch.CaptureRequest{Amount: &txswitch.Money{Value: 5, Currency: "USD"}})
			return err
		}, 422, "currency_mismatch"},
		{"capture zero", func(h *harness, p txswitch.Payment) error {
			_, err := h.svc.Capture(h.ctx, caller(""), p.ID, txswitch.CaptureRequest{Amount: eur(0)})
			return err
		}, 400, "invalid_amount"},
		{"other merchant", func(h *harness, p txswitch.Payment) error {
			_, err := h.svc.Capture(h.ctx, txswitch.Caller{MerchantID: merchantB}, p.ID, txswitch.CaptureRequest{})
			return err
		}, 404, "payment_not_found"},
		{"bad refund channel", func(h *harness, p txswitch.Payment) error {
			_, err := h.svc.Refund(h.ctx, caller(""), p.ID, txswitch.RefundRequest{Channel: "mail"})
			return err
		}, 400, "invalid_channel"},
		// Straight into the log, bypassing the service's checks: apply
		// enforces the invariants itself.
		{"apply: capture above authorized", func(h *harness, p txswitch.Payment) error {
			return h.raw(fmt.Sprintf(`{"v":1,"type":"op_intent","kind":"capture","merchant_id":%q,"payment_id":%q,"op_id":"cap_x","amount":{"value":1001,"currency":"EUR"}}`, merchantA, p.ID))
		}, 422, "amount_exceeds_authorized"},
		{"apply: refund above captured", func(h *harness, p txswitch.Payment) error {
			return h.raw(fmt.Sprintf(`{"v":1,"type":"op_intent","kind":"refund","merchant_id":%q,"payment_id":%q,"op_id":"ref_x","amount":{"value":1,"currency":"EUR"}}`, merchantA, p.ID))
		}, 409, "invalid_state"},
		{"apply: payment over order amount", func(h *harness, p txswitch.Payment) error {
			return h.raw(fmt.Sprintf(`{"v":1,"type":"payment_intent","merchant_id":%q,"order_id":%q,"payment_id":"pay_x","method":"card","amount":{"value":1,"currency":"EUR"},"surcharge":{"value":0,"currency":"EUR"},"capture":"automatic","provider":"psp_a"}`, merchantA, p.OrderID))
		}, 422, "amount_exceeds_open_amount"},
		{"apply: negative capture", func(h *harness, p txswitch.Payment) error {
			return h.raw(fmt.Sprintf(`{"v":1,"type":"op_intent","kind":"capture","merchant_id":%q,"payment_id":%q,"op_id":"cap_y","amount":{"value":-5,"currency":"EUR"}}`, merchantA, p.ID))
		}, 400, "invalid_amount"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			_, p := h.authorized()
			calls := len(h.a.Calls())
			h.unchanged(func() { wantErr(t, tc.do(h, p), tc.status, tc.code) })
			if len(h.a.Calls()) != calls {
				t.Fatal("a provider was called")
			}
		})
	}
}

// raw proposes a hand-made command and returns its rejection, if any.
func (h *harness) raw(cmd string) error {
	v, err := h.log.Propose(context.Background(), []byte(cmd))
	if err != nil {
		return err
	}
	if res := v.(*txswitch.ApplyResult); res.Err != nil {
		return res.Err
	}
	return nil
}

func TestRefundAboveCapturedAfterPartialCapture(t *testing.T) {
	h := newHarness(t)
	_, p := h.authorized()
	if _, err := h.svc.Capture(h.ctx, caller(""), p.ID, txswitch.CaptureRequest{Amount: eur(400)}); err != nil {
		t.Fatal(err)
	}
	h.unchanged(func() {
		_, err := h.svc.Refund(h.ctx, caller(""), p.ID, txswitch.RefundRequest{Amount: eur(401)})
		wantErr(t, err, 422, "amount_exceeds_captured")
	})
}

func TestCancel(t *testing.T) {
	h := newHarness(t)
	h.gate(txswitch.BinaryMaxVersion)
	o, p := h.authorized()
	r, err := h.svc.Cancel(h.ctx, caller(""), p.ID)
	if err != nil || r.Status != 200 {
		t.Fatalf("cancel: %v %d", err, r.Status)
	}
	got := h.payment(p.ID)
	if got.Status != txswitch.PaymentCancelled || got.Authorized.Value != 0 {
		t.Fatalf("payment = %s authorized %d", got.Status, got.Authorized.Value)
	}
	if st := h.order(o.ID).Status; st != txswitch.OrderCancelled {
		t.Fatalf("order = %s", st)
	}
	if c := h.a.CallsFor(txswitch.OpCancel); len(c) != 1 || c[0].IdempotencyKey != p.ID+"/cancel/1" {
		t.Fatalf("cancel calls = %+v", c)
	}
	h.unchanged(func() {
		_, err := h.svc.Cancel(h.ctx, caller(""), p.ID)
		wantErr(t, err, 409, "invalid_state")
	})
	// The cancelled amount is open again, which explain tells: cancelled
	// is not final.
	if ex := decode[txswitch.Explanation](t, h.explain(o.ID)); ex.Status != txswitch.OrderCancelled ||
		!strings.Contains(ex.Summary, "another payment can still pay it until it expires at 2026-11-2") {
		t.Fatalf("explain = %+v", ex)
	}
	if p2 := h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card"}); p2.Amount.Value != 1000 || p2.Status != txswitch.PaymentCaptured {
		t.Fatalf("new payment = %+v", p2)
	}
}

func TestCancelCapturedRefused(t *testing.T) {
	h := newHarness(t)
	o := h.createOrder(1000)
	p := h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card"})
	h.unchanged(func() {
		_, err := h.svc.Cancel(h.ctx, caller(""), p.ID)
		wantErr(t, err, 409, "invalid_state")
	})
}

func TestOperationOutcomes(t *testing.T) {
	tests := []struct {
		name       string
		op         txswitch.ProviderOp
		step       memory.Step
		wantErr    string
		wantStatus string // capture/refund record status
	}{
		{"capture declined", txswitch.OpCapture, declined("auth_expired"), "capture_failed", "failed"},
		{"capture definitive error", txswitch.OpCapture, memoryErr(refusedErr("psp_a")), "capture_failed", "failed"},
		{"capture timeout", txswitch.OpCapture, memoryErr(timeoutErr("psp_a")), "", "in_doubt"},
		{"refund declined", txswitch.OpRefund, declined("refund_window_closed"), "", "failed"},
		{"refund timeout", txswitch.OpRefund, memoryErr(timeoutErr("psp_a")), "", "in_doubt"},
		{"cancel declined", txswitch.OpCancel, declined("already_captured"), "cancel_failed", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			_, p := h.authorized()
			if tc.op == txswitch.OpRefund {
				if _, err := h.svc.Capture(h.ctx, caller(""), p.ID, txswitch.CaptureRequest{}); err != nil {
					t.Fatal(err)
				}
			}
			h.a.Push(tc.op, tc.step)
			var r txswitch.Reply
			var err error
			switch tc.op {
			case txswitch.OpCapture:
				r, err = h.svc.Capture(h.ctx, caller(""), p.ID, txswitch.CaptureRequest{Amount: eur(500)})
			case txswitch.OpRefund:
				r, err = h.svc.Refund(h.ctx, caller(""), p.ID, txswitch.RefundRequest{Amount: eur(500)})
			case txswitch.OpCancel:
				r, err = h.svc.Cancel(h.ctx, caller(""), p.ID)
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantErr != "" {
				if r.Status != 422 || decode[struct{ Error txswitch.Error }](t, r).Error.Code != tc.wantErr {
					t.Fatalf("reply %d %s", r.Status, r.Body)
				}
			}
			got := h.payment(p.ID)
			switch tc.op {
			case txswitch.OpCapture:
				if c := got.Captures[len(got.Captures)-1]; c.Status != tc.wantStatus || got.Captured.Value != 0 {
					t.Fatalf("capture %s, captured %d", c.Status, got.Captured.Value)
				}
			case txswitch.OpRefund:
				if rf := got.Refunds[0]; rf.Status != tc.wantStatus || got.Refunded.Value != 0 {
					t.Fatalf("refund %s, refunded %d", rf.Status, got.Refunded.Value)
				}
			case txswitch.OpCancel:
				if got.Status != txswitch.PaymentAuthorized {
					t.Fatalf("payment %s", got.Status)
				}
			}
		})
	}
}

func TestCaptureInDoubtResolved(t *testing.T) {
	for _, tc := range []struct {
		name     string
		status   memory.Step
		captured int64
		capState string
	}{
		{"approved", approved("c"), 500, "succeeded"},
		{"never received", memory.Step{Result: txswitch.ProviderResult{Outcome: txswitch.OutcomeNotFound}}, 0, "failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			_, p := h.authorized()
			h.a.Push(txswitch.OpCapture, memoryErr(timeoutErr("psp_a")))
			if _, err := h.svc.Capture(h.ctx, caller("cap-1"), p.ID, txswitch.CaptureRequest{Amount: eur(500)}); err != nil {
				t.Fatal(err)
			}
			// While the capture is in doubt its amount stays reserved.
			_, err := h.svc.Capture(h.ctx, caller(""), p.ID, txswitch.CaptureRequest{Amount: eur(501)})
			wantErr(t, err, 422, "amount_exceeds_authorized")
			_, err = h.svc.Capture(h.ctx, caller("cap-1"), p.ID, txswitch.CaptureRequest{Amount: eur(500)})
			wantErr(t, err, 409, "idempotency_request_in_progress")
			h.clock.Advance(time.Minute)
			h.a.Push(txswitch.OpStatus, tc.status)
			if n, err := h.svc.ResolveInDoubt(h.ctx); err != nil || n != 1 {
				t.Fatalf("resolve %d %v", n, err)
			}
			got := h.payment(p.ID)
			if got.Captured.Value != tc.captured || got.Captures[0].Status != tc.capState {
				t.Fatalf("captured %d, capture %s", got.Captured.Value, got.Captures[0].Status)
			}
			if n := len(h.a.CallsFor(txswitch.OpCapture)); n != 1 {
				t.Fatalf("capture calls %d", n)
			}
		})
	}
}

func TestPayLaterRefundIsCreditNote(t *testing.T) {
	h := newHarness(t)
	o := h.createOrder(1000)
	p := h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "klarna_paylater"})
	r, err := h.svc.Refund(h.ctx, caller(""), p.ID, txswitch.RefundRequest{Amount: eur(250), Reason: "damaged", Channel: "moto"})
	if err != nil || r.Status != 201 {
		t.Fatalf("refund: %v %d", err, r.Status)
	}
	rf := decode[txswitch.Refund](t, r)
	if rf.Status != "succeeded" || rf.Amount.Value != 250 || rf.Channel != "moto" || rf.OrderID != o.ID {
		t.Fatalf("refund = %+v", rf)
	}
	if !hasEvent(h.timeline(o.ID), "credit_note") {
		t.Fatal("no credit note")
	}
}

func TestCancelRetryUsesNewKey(t *testing.T) {
	h := newHarness(t)
	_, p := h.authorized()
	h.a.Push(txswitch.OpCancel, declined("try_later"))
	r, err := h.svc.Cancel(h.ctx, caller(""), p.ID)
	if err != nil || r.Status != 422 {
		t.Fatalf("first cancel: %v %d", err, r.Status)
	}
	if r, err = h.svc.Cancel(h.ctx, caller(""), p.ID); err != nil || r.Status != 200 {
		t.Fatalf("second cancel: %v %d %s", err, r.Status, r.Body)
	}
	c := h.a.CallsFor(txswitch.OpCancel)
	if len(c) != 2 || c[0].IdempotencyKey != p.ID+"/cancel/1" || c[1].IdempotencyKey != p.ID+"/cancel/2" {
		t.Fatalf("cancel calls = %+v", c)
	}
}

// TestLateOperationResultAnswersTheOperation: a leader change while a
// refund, capture or cancel call is out lets the next leader's resolver
// settle the operation first; the caller's own result then arrives late
// and changes nothing. Its caller must still be answered with the
// operation, in the shape the API promises (a refund for a refund), as
// the resolver settled it: not with the bare payment.
func TestLateOperationResultAnswersTheOperation(t *testing.T) {
	for _, tc := range []struct {
		name, kind string
		op         txswitch.ProviderOp
		status     memory.Step // the resolver's inquiry; zero: no resolution before the late result
		run        func(h *harness, p txswitch.Payment) (txswitch.Reply, error)
		check      func(t *testing.T, r txswitch.ApplyResult)
	}{
		{"refund settled by the resolver", "refund", txswitch.OpRefund, approved("r"),
			func(h *harness, p txswitch.Payment) (txswitch.Reply, error) {
				return h.svc.Refund(h.ctx, caller(""), p.ID, txswitch.RefundRequest{Amount: eur(300)})
			},
			func(t *testing.T, r txswitch.ApplyResult) {
				ref := decode[txswitch.Refund](t, r.Reply)
				if r.Reply.Status != 201 || ref.Status != "succeeded" || ref.Amount.Value != 300 || ref.PaymentID == "" {
					t.Fatalf("reply %d %s, want 201 and the succeeded refund", r.Reply.Status, r.Reply.Body)
				}
			}},
		{"capture settled by the resolver", "capture", txswitch.OpCapture, approved("c"),
			func(h *harness, p txswitch.Payment) (txswitch.Reply, error) {
				return h.svc.Capture(h.ctx, caller(""), p.ID, txswitch.CaptureRequest{Amount: eur(400)})
			},
			func(t *testing.T, r txswitch.ApplyResult) {
				got := decode[txswitch.Payment](t, r.Reply)
				if r.Reply.Status != 201 || got.Captured.Value != 400 {
					t.Fatalf("reply %d %s, want 201 and the payment with 400 captured", r.Reply.Status, r.Reply.Body)
				}
			}},
		{"refund still in doubt: a second in-doubt result", "refund", txswitch.OpRefund, memory.Step{},
			func(h *harness, p txswitch.Payment) (txswitch.Reply, error) {
				return h.svc.Refund(h.ctx, caller(""), p.ID, txswitch.RefundRequest{Amount: eur(300)})
			},
			func(t *testing.T, r txswitch.ApplyResult) {
				ref := decode[txswitch.Refund](t, r.Reply)
				if r.Reply.Status != 201 || ref.Status != "in_doubt" || ref.Amount.Value != 300 {
					t.Fatalf("reply %d %s, want 201 and the refund in doubt", r.Reply.Status, r.Reply.Body)
				}
			}},
		{"capture the resolver found never received", "capture", txswitch.OpCapture, memory.Step{Result: txswitch.ProviderResult{Outcome: txswitch.OutcomeNotFound}},
			func(h *harness, p txswitch.Payment) (txswitch.Reply, error) {
				return h.svc.Capture(h.ctx, caller(""), p.ID, txswitch.CaptureRequest{Amount: eur(400)})
			},
			func(t *testing.T, r txswitch.ApplyResult) {
				if r.Reply.Status != 422 || !strings.Contains(string(r.Reply.Body), "capture_failed") {
					t.Fatalf("reply %d %s, want 422 capture_failed", r.Reply.Status, r.Reply.Body)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			_, p := h.authorized()
			if tc.kind == "refund" {
				if _, err := h.svc.Capture(h.ctx, caller(""), p.ID, txswitch.CaptureRequest{}); err != nil {
					t.Fatal(err)
				}
			}
			h.a.Push(tc.op, memoryErr(timeoutErr("psp_a")))
			if _, err := tc.run(h, p); err != nil {
				t.Fatal(err)
			}
			opID := ""
			got := h.payment(p.ID)
			switch tc.kind {
			case "refund":
				opID = got.Refunds[0].ID
			case "capture":
				opID = got.Captures[0].ID
			}
			resolved := tc.status != (memory.Step{})
			if resolved {
				h.clock.Advance(time.Minute)
				h.a.Push(txswitch.OpStatus, tc.status)
				if n, err := h.svc.ResolveInDoubt(h.ctx); err != nil || n != 1 {
					t.Fatalf("resolve %d %v", n, err)
				}
			}
			late := fmt.Sprintf(`{"v":1,"type":"op_result","at":"2026-11-23T09:05:00Z","kind":%q,"payment_id":%q,"op_id":%q,"source":"call","outcome":"in_doubt","err_code":"timeout","latency_ms":5000}`,
				tc.kind, p.ID, opID)
			v, err := h.log.Propose(context.Background(), []byte(late))
			if err != nil {
				t.Fatal(err)
			}
			res := v.(*txswitch.ApplyResult)
			if res.Late != resolved || res.Err != nil {
				t.Fatalf("result = %+v, want late=%v", res, resolved)
			}
			tc.check(t, *res)
		})
	}
}

// A partial shipment captured, returned and refunded before the rest
// shipped: the rest of the authorization stays capturable (regression,
// VersionMoneyRules: the payment became refunded and the next capture was
// refused, the 600 held for ever). Below that version the old rule holds,
// so that members on both binaries agree at every log index.
func TestRefundedCaptureKeepsTheRestCapturable(t *testing.T) {
	for _, tc := range []struct {
		name        string
		gate        bool
		afterRefund string // payment status
		orderAfter  string
	}{
		{"at VersionMoneyRules", true, txswitch.PaymentPartiallyRefunded, txswitch.OrderPartiallyRefunded},
		{"below it: the old rule", false, txswitch.PaymentRefunded, txswitch.OrderRefunded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			if tc.gate {
				h.gate(txswitch.VersionMoneyRules)
			}
			o := h.createOrder(1000)
			p := h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card", Capture: txswitch.CaptureManual})
			if _, err := h.svc.Capture(h.ctx, caller("ship-1"), p.ID, txswitch.CaptureRequest{Amount: eur(400)}); err != nil {
				t.Fatal(err)
			}
			if _, err := h.svc.Refund(h.ctx, caller("return-1"), p.ID, txswitch.RefundRequest{Amount: eur(400), Reason: "return"}); err != nil {
				t.Fatal(err)
			}
			if got := h.payment(p.ID).Status; got != tc.afterRefund {
				t.Fatalf("payment after refunding the capture = %s, want %s", got, tc.afterRefund)
			}
			if got := h.order(o.ID).Status; got != tc.orderAfter {
				t.Fatalf("order after refunding the capture = %s, want %s", got, tc.orderAfter)
			}
			_, err := h.svc.Capture(h.ctx, caller("ship-2"), p.ID, txswitch.CaptureRequest{Amount: eur(600)})
			if !tc.gate {
				wantErr(t, err, 409, txswitch.CodeInvalidState)
				return
			}
			if err != nil {
				t.Fatalf("capture of the rest: %v", err)
			}
			got := h.payment(p.ID)
			if got.Status != txswitch.PaymentPartiallyRefunded || got.Captured.Value != 1000 || got.Refunded.Value != 400 {
				t.Fatalf("payment = %s captured %v refunded %v", got.Status, got.Captured, got.Refunded)
			}
			if ord := h.order(o.ID); ord.Status != txswitch.OrderPartiallyRefunded || ord.Captured.Value != 1000 {
				t.Fatalf("order = %s captured %v", ord.Status, ord.Captured)
			}
		})
	}
}

// A copy of a capture without an amount, sent while the first is out at
// the provider, is answered as a duplicate (409 in progress), not refused
// because the first already reserved what was left to capture.
func TestConcurrentCopyOfAFullCapture(t *testing.T) {
	h := newHarness(t)
	h.gate(txswitch.VersionMoneyRules)
	o := h.createOrder(1000)
	p := h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card", Capture: txswitch.CaptureManual})
	gate := make(chan struct{})
	h.a.Push(txswitch.OpCapture, memory.Step{Result: txswitch.ProviderResult{Outcome: txswitch.OutcomeApproved, ProviderRef: "c-1"}, Block: gate})
	first := make(chan error, 1)
	go func() {
		_, err := h.svc.Capture(h.ctx, caller("ship"), p.ID, txswitch.CaptureRequest{})
		first <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for len(h.a.CallsFor(txswitch.OpCapture)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the first capture never reached the provider")
		}
		time.Sleep(time.Millisecond)
	}
	_, err := h.svc.Capture(h.ctx, caller("ship"), p.ID, txswitch.CaptureRequest{})
	wantErr(t, err, 409, "idempotency_request_in_progress")
	close(gate)
	if err := <-first; err != nil {
		t.Fatalf("first capture: %v", err)
	}
	r, err := h.svc.Capture(h.ctx, caller("ship"), p.ID, txswitch.CaptureRequest{})
	if err != nil || r.Status != 201 {
		t.Fatalf("copy after the first finished: %d %v, want its stored 201", r.Status, err)
	}
}

// A payment with nothing left to capture or refund answers 409
// invalid_state whether or not the request names an amount: the state is
// the problem, not the amount.
func TestNothingLeftIsAConflict(t *testing.T) {
	h := newHarness(t)
	_, p := h.authorized()
	h.a.Push(txswitch.OpCapture, approved("c-1"))
	if _, err := h.svc.Capture(h.ctx, caller(""), p.ID, txswitch.CaptureRequest{}); err != nil {
		t.Fatal(err)
	}
	h.a.Push(txswitch.OpRefund, approved("r-1"))
	if _, err := h.svc.Refund(h.ctx, caller(""), p.ID, txswitch.RefundRequest{}); err != nil {
		t.Fatal(err)
	}
	h.unchanged(func() {
		for _, amount := range []*txswitch.Money{nil, eur(100)} {
			_, err := h.svc.Capture(h.ctx, caller(""), p.ID, txswitch.CaptureRequest{Amount: amount})
			wantErr(t, err, 409, "invalid_state")
			_, err = h.svc.Refund(h.ctx, caller(""), p.ID, txswitch.RefundRequest{Amount: amount})
			wantErr(t, err, 409, "invalid_state")
		}
	})
}

// A capture or refund of a payment held for fraud review (or otherwise not
// authorized) is refused with its status, not with "nothing left to
// capture", which reads as if it had been captured already; nothing is
// recorded.
func TestOperationOnAHeldPaymentSaysItIsHeld(t *testing.T) {
	h := newHarness(t)
	o := h.createOrder(2_000_000) // the big_ticket fraud rule
	p := h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card", Capture: "manual"})
	if p.Status != txswitch.PaymentHeldForReview {
		t.Fatalf("payment = %s", p.Status)
	}
	h.unchanged(func() {
		for _, amount := range []*txswitch.Money{nil, eur(100)} {
			_, err := h.svc.Capture(h.ctx, caller(""), p.ID, txswitch.CaptureRequest{Amount: amount})
			wantErr(t, err, 409, "invalid_state")
			if !strings.Contains(err.Error(), "is held_for_review; only an authorized payment can be captured") {
				t.Fatalf("capture of a held payment: %v", err)
			}
			_, err = h.svc.Refund(h.ctx, caller(""), p.ID, txswitch.RefundRequest{Amount: amount})
			wantErr(t, err, 409, "invalid_state")
			if !strings.Contains(err.Error(), "is held_for_review; only a captured payment can be refunded") {
				t.Fatalf("refund of a held payment: %v", err)
			}
		}
	})
	// An authorized payment not captured yet: refunding it says so.
	_, ap := h.authorized()
	_, err := h.svc.Refund(h.ctx, caller(""), ap.ID, txswitch.RefundRequest{})
	wantErr(t, err, 409, "invalid_state")
	if !strings.Contains(err.Error(), "is authorized; only a captured payment can be refunded") {
		t.Fatalf("refund of an uncaptured payment: %v", err)
	}
}

// Two captures (or refunds) whose service checks both passed race in
// apply: the one applied second finds nothing left and is answered as the
// service would have answered it, 409 invalid_state, not 422 "exceeds the
// EUR 0.00 still authorized" (the audit's parallel captures got that),
// from cluster version 13,
// which blames the amount when no amount would have been right.
func TestRacingOperationFindsNothingLeft(t *testing.T) {
	h := newHarness(t)
	h.gate(txswitch.VersionWithdrawHeld) // below it, the 422 (golden_test.go replays it)
	_, p := h.authorized()
	h.a.Push(txswitch.OpCapture, approved("c-1"))
	if _, err := h.svc.Capture(h.ctx, caller(""), p.ID, txswitch.CaptureRequest{}); err != nil {
		t.Fatal(err)
	}
	propose := func(kind string) *txswitch.Error {
		t.Helper()
		var res any
		var err error
		h.unchanged(func() {
			res, err = h.log.Propose(h.ctx, txswitch.OpIntentCommand(kind, merchantA, p.ID, kind+"_raced", *eur(100), h.clock.Now()))
		})
		if err != nil {
			t.Fatal(err)
		}
		ar, ok := res.(*txswitch.ApplyResult)
		if !ok || ar.Err == nil {
			t.Fatalf("%s with nothing left applied: %+v", kind, res)
		}
		return ar.Err
	}
	if e := propose("capture"); e.Status != 409 || e.Code != "invalid_state" || !strings.Contains(e.Message, "nothing left to capture") {
		t.Fatalf("raced capture: %d %s %s", e.Status, e.Code, e.Message)
	}
	// A refund of everything captured, still at the provider, and one
	// raced past the service's check.
	full := h.payment(p.ID).Captured
	if res, err := h.log.Propose(h.ctx, txswitch.OpIntentCommand("refund", merchantA, p.ID, "refund_first", full, h.clock.Now())); err != nil || res.(*txswitch.ApplyResult).Err != nil {
		t.Fatalf("first refund: %+v %v", res, err)
	}
	if e := propose("refund"); e.Status != 409 || e.Code != "invalid_state" || !strings.Contains(e.Message, "nothing left to refund") {
		t.Fatalf("raced refund: %d %s %s", e.Status, e.Code, e.Message)
	}
}
