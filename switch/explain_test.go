package txswitch_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	txswitch "github.com/txswitch/txswitch/switch"
	"github.com/txswitch/txswitch/switch/memory"
)

func TestExplain(t *testing.T) {
	tests := []struct {
		name       string
		setup      func(h *harness)
		method     string
		wantStatus string
		wantCauses []string
		wantInSum  []string
	}{
		{"paid", nil, "card", txswitch.OrderPaid, nil, []string{"paid", "psp_a"}},
		{"provider down, failed over", func(h *harness) {
			h.a.Push(txswitch.OpAuthorize, memoryErr(refusedErr("psp_a")))
		}, "card", txswitch.OrderPaid, []string{"provider_down"}, []string{"paid", "psp_b", "psp_a was down (connection refused)"}},
		{"breaker open", func(h *harness) {
			h.provs.SetState("psp_a", "card", txswitch.BreakerOpen)
			h.provs.SetState("psp_b", "card", txswitch.BreakerOpen)
		}, "card", txswitch.OrderFailed, []string{"provider_down", "no_method_available"}, []string{"not paid", "no provider", "breaker is open"}},
		{"provider slow", func(h *harness) {
			h.a.Push(txswitch.OpAuthorize, memoryErr(timeoutErr("psp_a")))
		}, "card", txswitch.OrderPending, []string{"provider_slow", "in_doubt"}, []string{"not paid yet", "psp_a", "will not charge again"}},
		{"declined", func(h *harness) {
			h.a.Push(txswitch.OpAuthorize, declined("insufficient_funds"))
		}, "card", txswitch.OrderFailed, []string{"declined"}, []string{"psp_a declined", "insufficient_funds", "try again"}},
		{"invalid card", func(h *harness) {
			h.a.Push(txswitch.OpAuthorize, declined("invalid_card"))
		}, "card", txswitch.OrderFailed, []string{"declined", "invalid_input"}, []string{"invalid card number", "invalid_card"}},
		{"held for review", nil, "", txswitch.OrderHeldForReview, []string{"held_for_review"}, []string{"its payment is held for manual fraud review (fraud rule \"big_ticket\") and no provider has been asked"}},
		{"awaiting shopper", func(h *harness) {
			h.b.Push(txswitch.OpAuthorize, memory.Step{Result: txswitch.ProviderResult{Outcome: txswitch.OutcomePending, RedirectURL: "https://x.test"}})
		}, "ideal", txswitch.OrderPending, []string{"awaiting_shopper"}, []string{"not completed ideal"}},
		{"no attempt", nil, "-", txswitch.OrderCreated, []string{"no_payment_attempt"}, []string{"no payment has been attempted"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			amount := int64(1000)
			if tc.method == "" {
				amount = 2_000_000 // fraud rule
				tc.method = "card"
			}
			o := h.createOrder(amount)
			if tc.setup != nil {
				tc.setup(h)
			}
			if tc.method != "-" {
				h.pay(o.ID, txswitch.CreatePaymentRequest{Method: tc.method})
			}
			r, err := h.svc.Explain(h.ctx, caller(""), o.ID)
			if err != nil {
				t.Fatal(err)
			}
			ex := decode[txswitch.Explanation](t, r)
			if ex.Status != tc.wantStatus {
				t.Fatalf("status %s, want %s", ex.Status, tc.wantStatus)
			}
			var codes []string
			for _, c := range ex.Causes {
				codes = append(codes, c.Code)
			}
			for _, w := range tc.wantCauses {
				if !strings.Contains(strings.Join(codes, ","), w) {
					t.Fatalf("causes %v lack %s", codes, w)
				}
			}
			for _, w := range tc.wantInSum {
				if !strings.Contains(ex.Summary, w) {
					t.Fatalf("summary %q lacks %q", ex.Summary, w)
				}
			}
			if !strings.HasSuffix(ex.Summary, ".") || strings.Count(ex.Summary, ". ") > 0 {
				t.Fatalf("summary is not one sentence: %q", ex.Summary)
			}
		})
	}
}

// A provider that refuses the request itself (credentials, a request it
// cannot take) is an integration problem, told apart from one that is
// down: the operator fixes the switch's side, nobody waits for the PSP.
func TestExplainTellsARefusalFromAnOutage(t *testing.T) {
	for _, tc := range []struct {
		code, want, not, inSum string
	}{
		{"http_401", txswitch.CauseProviderRefused, txswitch.CauseProviderDown, "psp_a refused the request (http 401)"},
		{"invalid_request", txswitch.CauseProviderRefused, txswitch.CauseProviderDown, "psp_a refused the request (invalid request)"},
		{"http_429", txswitch.CauseProviderDown, txswitch.CauseProviderRefused, "psp_a failed without processing the payment (http_429)"},
		{"http_503", txswitch.CauseProviderDown, txswitch.CauseProviderRefused, "psp_a was down (http 503)"},
	} {
		t.Run(tc.code, func(t *testing.T) {
			h := newHarness(t)
			o := h.createOrder(1000)
			h.a.Push(txswitch.OpAuthorize, memoryErr(&txswitch.ProviderError{Provider: "psp_a", Op: txswitch.OpAuthorize, Definitive: true, Code: tc.code, Err: errors.New("refused")}))
			h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card"}) // fails over to psp_b
			ex := decode[txswitch.Explanation](t, h.explain(o.ID))
			var codes []string
			for _, c := range ex.Causes {
				codes = append(codes, c.Code)
			}
			if !slices.Contains(codes, tc.want) || slices.Contains(codes, tc.not) {
				t.Fatalf("causes %v: want %s, not %s", codes, tc.want, tc.not)
			}
			if ex.Status != txswitch.OrderPaid || !strings.Contains(ex.Summary, tc.inSum) {
				t.Fatalf("%s: %q", ex.Status, ex.Summary)
			}
		})
	}
}

func TestMethodsRecordedOnChange(t *testing.T) {
	h := newHarness(t)
	o := h.createOrder(1000)
	get := func() txswitch.MethodsResponse {
		r, err := h.svc.Methods(h.ctx, caller(""), o.ID)
		if err != nil {
			t.Fatal(err)
		}
		return decode[txswitch.MethodsResponse](t, r)
	}
	count := func() int {
		n := 0
		for _, e := range h.timeline(o.ID) {
			if e.Type == "methods_offered" {
				n++
			}
		}
		return n
	}
	m := get()
	var names []string
	for _, x := range m.Methods {
		names = append(names, x.Method)
	}
	if strings.Join(names, ",") != "card,ideal,klarna_paylater" {
		t.Fatalf("methods = %v", names)
	}
	get()
	if n := count(); n != 1 {
		t.Fatalf("methods_offered events = %d after two identical offers", n)
	}
	// psp_b down: ideal (only psp_b) disappears, and the change is recorded.
	h.provs.SetState("psp_b", "ideal", txswitch.BreakerOpen)
	m = get()
	for _, x := range m.Methods {
		if x.Method == "ideal" {
			t.Fatal("ideal still offered")
		}
	}
	if len(m.Excluded) == 0 {
		t.Fatal("no exclusion reason")
	}
	if n := count(); n != 2 {
		t.Fatalf("methods_offered events = %d", n)
	}
	evs := h.timeline(o.ID)
	if last := evs[len(evs)-1]; !strings.Contains(last.Message, "ideal (") {
		t.Fatalf("message %q does not say why ideal is not offered", last.Message)
	}
	_, err := h.svc.Methods(h.ctx, txswitch.Caller{MerchantID: merchantB}, o.ID)
	wantErr(t, err, 404, "order_not_found")
}

func TestTimelineOrderAndSeq(t *testing.T) {
	h := newHarness(t)
	o := h.createOrder(1000)
	h.a.Push(txswitch.OpAuthorize, memoryErr(refusedErr("psp_a")))
	p := h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card", Capture: "manual"})
	if _, err := h.svc.Capture(h.ctx, caller(""), p.ID, txswitch.CaptureRequest{}); err != nil {
		t.Fatal(err)
	}
	evs := h.timeline(o.ID)
	for i, e := range evs {
		if e.Seq != uint64(i+1) || e.Message == "" || e.At.IsZero() {
			t.Fatalf("event %d = %+v", i, e)
		}
	}
	want := "order_created,routing_decision,provider_request,provider_response,failover,routing_decision,provider_request,provider_response,capture_requested,capture_succeeded"
	if got := strings.Join(eventTypes(evs), ","); got != want {
		t.Fatalf("timeline\n got %s\nwant %s", got, want)
	}
	if !strings.Contains(string(evs[1].Data), `"breaker":"closed"`) {
		t.Fatalf("routing decision lacks breaker states: %s", evs[1].Data)
	}
	if !strings.Contains(string(evs[3].Data), `"latency_ms"`) || !strings.Contains(string(evs[3].Data), `"connection_refused"`) {
		t.Fatalf("provider response data: %s", evs[3].Data)
	}
}

// With several attempts, the summary says why the LAST one failed: the
// customer may pay again after a decline, and an earlier attempt's cause
// must not be blamed for the later failure.
func TestExplainBlamesTheLastAttempt(t *testing.T) {
	for _, tc := range []struct {
		name        string
		second      func(h *harness)
		wantInSum   []string
		wantMissing string
	}{
		{"wrong security code, then every breaker open", func(h *harness) {
			h.provs.SetState("psp_a", "card", txswitch.BreakerOpen)
			h.provs.SetState("psp_b", "card", txswitch.BreakerOpen)
		}, []string{"no provider could take card"}, "security code"},
		{"wrong security code, then declined by the issuer", func(h *harness) {
			h.a.Push(txswitch.OpAuthorize, declined("insufficient_funds"))
		}, []string{"insufficient_funds", "try again"}, "security code"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			o := h.createOrder(1000)
			h.a.Push(txswitch.OpAuthorize, declined("invalid_cvc"))
			if p := h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card"}); p.Status != txswitch.PaymentDeclined {
				t.Fatalf("first attempt = %s", p.Status)
			}
			tc.second(h)
			if p := h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card"}); p.Status == txswitch.PaymentCaptured {
				t.Fatalf("second attempt = %s", p.Status)
			}
			r, err := h.svc.Explain(h.ctx, caller(""), o.ID)
			if err != nil {
				t.Fatal(err)
			}
			ex := decode[txswitch.Explanation](t, r)
			for _, w := range tc.wantInSum {
				if !strings.Contains(ex.Summary, w) {
					t.Fatalf("summary %q lacks %q", ex.Summary, w)
				}
			}
			if strings.Contains(ex.Summary, tc.wantMissing) {
				t.Fatalf("summary %q blames the first attempt", ex.Summary)
			}
		})
	}
}

// An order that takes no payment offers no method (each is excluded with
// why), and records no offer: what it offered would be refused with 409.
func TestNoMethodsForAClosedOrder(t *testing.T) {
	for _, tc := range []struct {
		name   string
		close  func(h *harness, orderID string)
		reason string
	}{
		{"paid", func(h *harness, id string) { h.pay(id, txswitch.CreatePaymentRequest{Method: "card"}) }, txswitch.ExclusionNothingToPay},
		{"expired", func(h *harness, id string) {
			h.clock.Advance(txswitch.DefaultOrderExpiry + time.Minute)
			h.expireOrders()
		}, txswitch.ExclusionOrderExpired},
		{"past its expiry, not swept yet", func(h *harness, id string) {
			h.clock.Advance(txswitch.DefaultOrderExpiry + time.Minute)
		}, txswitch.ExclusionOrderExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.gate(txswitch.VersionMoneyRules)
			o := h.createOrder(1000)
			tc.close(h, o.ID)
			before := len(h.timeline(o.ID))
			r, err := h.svc.Methods(h.ctx, caller(""), o.ID)
			if err != nil {
				t.Fatal(err)
			}
			m := decode[txswitch.MethodsResponse](t, r)
			if len(m.Methods) != 0 || len(m.Excluded) == 0 {
				t.Fatalf("methods of a closed order: %+v", m)
			}
			for _, e := range m.Excluded {
				if e.Reason != tc.reason {
					t.Fatalf("exclusion %+v, want reason %s", e, tc.reason)
				}
			}
			if after := len(h.timeline(o.ID)); after != before {
				t.Fatalf("an offer was recorded on the closed order's timeline (%d -> %d events)", before, after)
			}
		})
	}
}

// An order whose payments authorized less than it is due cannot become
// paid by a capture: explain says how much no payment covers, whether the
// authorized part is captured or not, and says nothing of it once another
// payment covers the rest.
func TestExplainAmountNotCovered(t *testing.T) {
	for _, tc := range []struct {
		name    string
		capture string
		wantSum []string
	}{
		{"captured", "automatic", []string{"partly paid", "EUR 10.00 captured", "EUR 0.05 of the EUR 10.05 due is not covered"}},
		{"authorized", "manual", []string{"authorized for EUR 10.00", "not fully captured yet", "EUR 0.05 of the EUR 10.05 due is not covered"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			o := h.createOrder(1005)
			h.a.Push(txswitch.OpAuthorize, declined("insufficient_funds"))
			h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card"})
			h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card", Amount: &txswitch.Money{Value: 1000, Currency: "EUR"}, Capture: tc.capture})
			ex := decode[txswitch.Explanation](t, h.explain(o.ID))
			if ex.Status != txswitch.OrderAuthorized || !hasCause(ex, txswitch.CauseAmountNotCovered) {
				t.Fatalf("explain = %+v", ex)
			}
			for _, w := range tc.wantSum {
				if !strings.Contains(ex.Summary, w) {
					t.Fatalf("summary %q lacks %q", ex.Summary, w)
				}
			}
			if strings.Count(ex.Summary, ". ") > 0 {
				t.Fatalf("summary is not one sentence: %q", ex.Summary)
			}
			h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card", Capture: "automatic"})
			if ex := decode[txswitch.Explanation](t, h.explain(o.ID)); hasCause(ex, txswitch.CauseAmountNotCovered) {
				t.Fatalf("after paying the rest: %+v", ex)
			}
		})
	}
}

// A capture or refund that did not go through says why in explain, as a
// payment does: the merchant that captures on shipment or refunds a
// return hears whether the provider was down, slow or declined it,
// without asking the provider. A failed capture stops mattering once a
// later capture went through; a failed refund once a later refund of the
// same amount did.
func TestExplainCaptureAndRefundTrouble(t *testing.T) {
	for _, tc := range []struct {
		name      string
		op        txswitch.ProviderOp
		step      memory.Step
		retry     bool // the same operation again, answered approved
		wantCause string
		wantSum   []string
	}{
		{"capture, provider down", txswitch.OpCapture, memoryErr(refusedErr("psp_a")), false, txswitch.CauseCaptureFailed,
			[]string{"authorized for EUR 10.00", "not fully captured yet", "capture cap_", "of EUR 5.00 failed", "psp_a was down (connection refused)", "requested again"}},
		{"capture, declined", txswitch.OpCapture, declined("auth_expired"), false, txswitch.CauseCaptureFailed,
			[]string{"not fully captured yet", "psp_a declined it (auth expired)"}},
		{"capture, provider slow", txswitch.OpCapture, memoryErr(timeoutErr("psp_a")), false, txswitch.CauseCaptureInDoubt,
			[]string{"not fully captured yet", "is in doubt", "psp_a did not answer within its timeout", "will not send the capture again"}},
		{"capture failed, then captured", txswitch.OpCapture, memoryErr(refusedErr("psp_a")), true, "", nil},
		{"refund, provider slow", txswitch.OpRefund, memoryErr(timeoutErr("psp_a")), false, txswitch.CauseRefundInDoubt,
			[]string{"The order is paid", "refund ref_", "of EUR 5.00 is in doubt", "did not answer within its timeout"}},
		{"refund, declined", txswitch.OpRefund, declined("refund_window_closed"), false, txswitch.CauseRefundFailed,
			[]string{"The order is paid", "of EUR 5.00 failed", "psp_a declined it (refund window closed)", "has not been refunded"}},
		{"refund failed, then refunded", txswitch.OpRefund, declined("refund_window_closed"), true, "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			o, p := h.authorized()
			if tc.op == txswitch.OpRefund {
				if _, err := h.svc.Capture(h.ctx, caller(""), p.ID, txswitch.CaptureRequest{}); err != nil {
					t.Fatal(err)
				}
			}
			h.a.Push(tc.op, tc.step)
			times := 1
			if tc.retry {
				times = 2
			}
			for range times {
				var err error
				if tc.op == txswitch.OpCapture {
					_, err = h.svc.Capture(h.ctx, caller(""), p.ID, txswitch.CaptureRequest{Amount: eur(500)})
				} else {
					_, err = h.svc.Refund(h.ctx, caller(""), p.ID, txswitch.RefundRequest{Amount: eur(500), Reason: "return"})
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			ex := decode[txswitch.Explanation](t, h.explain(o.ID))
			for _, code := range []string{txswitch.CauseCaptureFailed, txswitch.CauseCaptureInDoubt, txswitch.CauseRefundFailed, txswitch.CauseRefundInDoubt} {
				if hasCause(ex, code) != (code == tc.wantCause) {
					t.Fatalf("cause %s present = %v, want %v: %+v", code, hasCause(ex, code), code == tc.wantCause, ex)
				}
			}
			for _, w := range tc.wantSum {
				if !strings.Contains(ex.Summary, w) {
					t.Fatalf("summary %q lacks %q", ex.Summary, w)
				}
			}
			if strings.Contains(ex.Summary, ". ") {
				t.Fatalf("summary is not one sentence: %q", ex.Summary)
			}
		})
	}
}

// A return refunded from the first shipment, while the second shipment's
// part of the authorization is still to be captured, makes the order
// partially_refunded; explain must not call it paid, and says what is
// still authorized. Once the rest is captured it is paid and refunded in
// part.
func TestExplainRefundBeforeTheLastShipment(t *testing.T) {
	h := newHarness(t)
	h.gate(txswitch.VersionMoneyRules)
	o, p := h.authorized()
	if _, err := h.svc.Capture(h.ctx, caller(""), p.ID, txswitch.CaptureRequest{Amount: eur(600)}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.svc.Refund(h.ctx, caller(""), p.ID, txswitch.RefundRequest{Amount: eur(600), Reason: "return", Channel: "pos"}); err != nil {
		t.Fatal(err)
	}
	ex := decode[txswitch.Explanation](t, h.explain(o.ID))
	if ex.Status != txswitch.OrderPartiallyRefunded {
		t.Fatalf("explain = %+v", ex)
	}
	for _, w := range []string{"partly captured", "EUR 6.00 captured", "EUR 6.00 has been refunded", "EUR 4.00 is still authorized and not captured yet"} {
		if !strings.Contains(ex.Summary, w) {
			t.Fatalf("summary %q lacks %q", ex.Summary, w)
		}
	}
	if strings.Contains(ex.Summary, "was paid") || strings.Contains(ex.Summary, ". ") {
		t.Fatalf("summary %q", ex.Summary)
	}
	if _, err := h.svc.Capture(h.ctx, caller(""), p.ID, txswitch.CaptureRequest{}); err != nil {
		t.Fatal(err)
	}
	ex = decode[txswitch.Explanation](t, h.explain(o.ID))
	if want := "The order was paid; EUR 6.00 of EUR 10.00 has been refunded."; ex.Summary != want {
		t.Fatalf("summary %q, want %q", ex.Summary, want)
	}
}

// Captures on shipment that add up to the order's amount leave the
// shopper's card surcharge authorized and uncaptured: the order stays
// authorized, and explain says that the rest is the surcharge (and how to
// settle it) instead of only "not fully captured yet". Captures short of
// the amount say how much is still to capture.
func TestExplainSurchargeLeftUncaptured(t *testing.T) {
	h := newHarness(t)
	h.gate(txswitch.VersionMoneyRules)
	cfg := testConfig()
	cfg.Methods[0].Surcharge = txswitch.SurchargeConfig{FixedByCurrency: map[string]int64{"EUR": 25}, BasisPoints: 150} // card
	if _, err := h.svc.PutConfig(h.ctx, cfg); err != nil {
		t.Fatalf("PutConfig: %v", err)
	}
	o := h.createOrder(6000)
	p := h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card", Capture: "manual"})
	if p.Status != txswitch.PaymentAuthorized || p.Authorized.Value != 6115 {
		t.Fatalf("payment %s authorized %d, want 6115 (EUR 60.00 + 0.25 + 1.5 %%)", p.Status, p.Authorized.Value)
	}
	summary := func() string {
		t.Helper()
		ex := decode[txswitch.Explanation](t, h.explain(o.ID))
		if ex.Status != txswitch.OrderAuthorized || strings.Contains(ex.Summary, ". ") {
			t.Fatalf("explain = %+v", ex)
		}
		return ex.Summary
	}
	for _, ship := range []struct {
		amount int64
		want   []string
	}{
		{4000, []string{"not fully captured yet: EUR 40.00 captured, EUR 21.15 still to capture."}},
		{2000, []string{"the order's EUR 60.00 is captured", "the EUR 1.15 still to capture is the surcharge the shopper pays for card", "cancel the payment to release it"}},
	} {
		if _, err := h.svc.Capture(h.ctx, caller(""), p.ID, txswitch.CaptureRequest{Amount: eur(ship.amount)}); err != nil {
			t.Fatal(err)
		}
		got := summary()
		for _, w := range ship.want {
			if !strings.Contains(got, w) {
				t.Fatalf("after capturing %d: summary %q lacks %q", ship.amount, got, w)
			}
		}
	}
}

// A return on a pay-later method is a credit note on the shopper's
// invoice, not money back: explain says so, as the timeline does.
func TestExplainPayLaterRefundIsACreditNote(t *testing.T) {
	h := newHarness(t)
	o := h.createOrder(1000)
	p := h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "klarna_paylater"})
	if p.Status != txswitch.PaymentCaptured {
		t.Fatalf("payment %s", p.Status)
	}
	for i, want := range []string{
		"The order was paid; EUR 3.00 of EUR 10.00 has been refunded, as credit notes on the shopper's klarna_paylater invoice.",
		"The order was paid and then fully refunded (EUR 10.00, as credit notes on the shopper's klarna_paylater invoice).",
	} {
		req := txswitch.RefundRequest{Amount: eur(300), Reason: "return", Channel: "pos"}
		if i == 1 {
			req.Amount = nil // the rest
		}
		if _, err := h.svc.Refund(h.ctx, caller(""), p.ID, req); err != nil {
			t.Fatal(err)
		}
		if ex := decode[txswitch.Explanation](t, h.explain(o.ID)); ex.Summary != want {
			t.Fatalf("summary %q, want %q", ex.Summary, want)
		}
	}
	if n := strings.Count(strings.Join(eventTypes(h.timeline(o.ID)), ","), "credit_note"); n != 2 {
		t.Fatalf("%d credit_note events, want 2", n)
	}
}

// A shopper who left a redirect payment unfinished blocks the order until
// the payment expires: explain, the methods and the refused payment say
// until when, so the merchant knows when the order takes another payment.
func TestPendingPaymentSaysWhenItExpires(t *testing.T) {
	h := newHarness(t)
	o := h.createOrder(1000)
	h.b.Push(txswitch.OpAuthorize, memory.Step{Result: txswitch.ProviderResult{Outcome: txswitch.OutcomePending, RedirectURL: "https://bank.test/x"}})
	if p := h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "ideal"}); p.Status != txswitch.PaymentPending {
		t.Fatalf("payment %s", p.Status)
	}
	const want = "unless the shopper completes it, the switch cancels it from 2026-11-23T09:30:00Z (ideal's pending expiry of 30m0s) and the order takes another payment"
	if ex := decode[txswitch.Explanation](t, h.explain(o.ID)); !strings.Contains(ex.Summary, want) {
		t.Fatalf("summary %q lacks %q", ex.Summary, want)
	}
	r, err := h.svc.Methods(h.ctx, caller(""), o.ID)
	if err != nil {
		t.Fatal(err)
	}
	if m := decode[txswitch.MethodsResponse](t, r); len(m.Excluded) == 0 || !strings.Contains(m.Excluded[0].Detail, want) {
		t.Fatalf("methods %+v lack %q", m, want)
	}
	_, err = h.svc.CreatePayment(h.ctx, caller(""), o.ID, txswitch.CreatePaymentRequest{Method: "card"})
	wantErr(t, err, 409, txswitch.CodePaymentInProgress)
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("refusal %q lacks %q", err, want)
	}
}
