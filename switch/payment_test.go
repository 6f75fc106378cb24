package txswitch_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	txswitch "github.com/txswitch/txswitch/switch"
	"github.com/txswitch/txswitch/switch/memory"
)

func TestPaymentFlow(t *testing.T) {
	tests := []struct {
		name        string
		req         txswitch.CreatePaymentRequest
		amount      int64
		setup       func(h *harness)
		wantStatus  string
		wantOrder   string
		wantProv    string
		wantFailure string
		wantCallsA  int
		wantCallsB  int
		wantEvents  []string
	}{
		{name: "approved automatic capture", req: txswitch.CreatePaymentRequest{Method: "card"},
			wantStatus: txswitch.PaymentCaptured, wantOrder: txswitch.OrderPaid, wantProv: "psp_a", wantCallsA: 1,
			wantEvents: []string{"order_created", "routing_decision", "provider_request", "provider_response"}},
		{name: "approved manual capture", req: txswitch.CreatePaymentRequest{Method: "card", Capture: "manual"},
			wantStatus: txswitch.PaymentAuthorized, wantOrder: txswitch.OrderAuthorized, wantProv: "psp_a", wantCallsA: 1},
		{name: "declined invalid card", req: txswitch.CreatePaymentRequest{Method: "card"},
			setup:      func(h *harness) { h.a.Push(txswitch.OpAuthorize, declined("invalid_card")) },
			wantStatus: txswitch.PaymentDeclined, wantOrder: txswitch.OrderFailed, wantProv: "psp_a", wantFailure: "invalid_card", wantCallsA: 1},
		{name: "definitive failure fails over", req: txswitch.CreatePaymentRequest{Method: "card"},
			setup:      func(h *harness) { h.a.Push(txswitch.OpAuthorize, memoryErr(refusedErr("psp_a"))) },
			wantStatus: txswitch.PaymentCaptured, wantOrder: txswitch.OrderPaid, wantProv: "psp_b", wantCallsA: 1, wantCallsB: 1,
			wantEvents: []string{"order_created", "routing_decision", "provider_request", "provider_response", "failover", "routing_decision", "provider_request", "provider_response"}},
		{name: "all providers fail definitively", req: txswitch.CreatePaymentRequest{Method: "card"},
			setup: func(h *harness) {
				h.a.Push(txswitch.OpAuthorize, memoryErr(refusedErr("psp_a")))
				h.b.Push(txswitch.OpAuthorize, memoryErr(refusedErr("psp_b")))
			},
			wantStatus: txswitch.PaymentFailed, wantOrder: txswitch.OrderFailed, wantProv: "psp_b", wantFailure: "no_provider_available", wantCallsA: 1, wantCallsB: 1},
		{name: "timeout is in doubt, no failover", req: txswitch.CreatePaymentRequest{Method: "card"},
			setup:      func(h *harness) { h.a.Push(txswitch.OpAuthorize, memoryErr(timeoutErr("psp_a"))) },
			wantStatus: txswitch.PaymentInDoubt, wantOrder: txswitch.OrderPending, wantProv: "psp_a", wantCallsA: 1,
			wantEvents: []string{"order_created", "routing_decision", "provider_request", "provider_response", "in_doubt"}},
		{name: "breaker open skips provider", req: txswitch.CreatePaymentRequest{Method: "card"},
			setup:      func(h *harness) { h.provs.SetState("psp_a", "card", txswitch.BreakerOpen) },
			wantStatus: txswitch.PaymentCaptured, wantOrder: txswitch.OrderPaid, wantProv: "psp_b", wantCallsB: 1},
		{name: "all breakers open", req: txswitch.CreatePaymentRequest{Method: "card"},
			setup: func(h *harness) {
				h.provs.SetState("psp_a", "card", txswitch.BreakerOpen)
				h.provs.SetState("psp_b", "card", txswitch.BreakerOpen)
			},
			wantStatus: txswitch.PaymentFailed, wantOrder: txswitch.OrderFailed, wantFailure: "no_provider_available",
			wantEvents: []string{"order_created", "routing_decision", "payment_failed"}},
		{name: "redirect method pending", req: txswitch.CreatePaymentRequest{Method: "ideal"},
			setup: func(h *harness) {
				h.b.Push(txswitch.OpAuthorize, memory.Step{Result: txswitch.ProviderResult{Outcome: txswitch.OutcomePending, RedirectURL: "https://bank.test/r/1"}})
			},
			wantStatus: txswitch.PaymentPending, wantOrder: txswitch.OrderPending, wantProv: "psp_b", wantCallsB: 1},
		{name: "held for review", req: txswitch.CreatePaymentRequest{Method: "card"}, amount: 2_000_000,
			wantStatus: txswitch.PaymentHeldForReview, wantOrder: txswitch.OrderHeldForReview,
			wantEvents: []string{"order_created", "held_for_review"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			amount := tc.amount
			if amount == 0 {
				amount = 4998
			}
			o := h.createOrder(amount)
			if tc.setup != nil {
				tc.setup(h)
			}
			r, err := h.svc.CreatePayment(h.ctx, caller(""), o.ID, tc.req)
			if err != nil {
				t.Fatalf("CreatePayment: %v", err)
			}
			if r.Status != 201 {
				t.Fatalf("status code %d", r.Status)
			}
			p := decode[txswitch.Payment](t, r)
			if p.Status != tc.wantStatus || p.Provider != tc.wantProv {
				t.Fatalf("payment %s at %q, want %s at %q (%+v)", p.Status, p.Provider, tc.wantStatus, tc.wantProv, p.Failure)
			}
			if tc.wantFailure != "" && (p.Failure == nil || p.Failure.Code != tc.wantFailure) {
				t.Fatalf("failure = %+v, want %s", p.Failure, tc.wantFailure)
			}
			if got := h.order(o.ID); got.Status != tc.wantOrder || len(got.Payments) != 1 {
				t.Fatalf("order %s with %d payments, want %s", got.Status, len(got.Payments), tc.wantOrder)
			}
			if a, b := len(h.a.CallsFor(txswitch.OpAuthorize)), len(h.b.CallsFor(txswitch.OpAuthorize)); a != tc.wantCallsA || b != tc.wantCallsB {
				t.Fatalf("authorize calls a=%d b=%d, want %d %d", a, b, tc.wantCallsA, tc.wantCallsB)
			}
			if tc.wantEvents != nil {
				if got := eventTypes(h.timeline(o.ID)); !slices.Equal(got, tc.wantEvents) {
					t.Fatalf("timeline %v, want %v", got, tc.wantEvents)
				}
			}
			// Every authorize uses key <payment>/<attempt>, attempts counting up.
			calls := append(h.a.CallsFor(txswitch.OpAuthorize), h.b.CallsFor(txswitch.OpAuthorize)...)
			for _, c := range calls {
				if !strings.HasPrefix(c.IdempotencyKey, p.ID+"/") || c.Amount != (txswitch.Money{Value: amount, Currency: "EUR"}) && tc.req.Method == "card" {
					t.Fatalf("call %+v", c)
				}
			}
		})
	}
}

func TestAuthorizeRequestContents(t *testing.T) {
	h := newHarness(t)
	o := h.createOrder(1000)
	p := h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "ideal", PaymentData: map[string]string{"issuer": "INGBNL2A"}})
	calls := h.b.CallsFor(txswitch.OpAuthorize)
	if len(calls) != 1 {
		t.Fatalf("calls = %d", len(calls))
	}
	c := calls[0]
	want := txswitch.ProviderRequest{IdempotencyKey: p.ID + "/1", Op: txswitch.OpAuthorize, PaymentID: p.ID, OrderID: o.ID, MerchantID: merchantA,
		Method: "ideal", Amount: txswitch.Money{Value: 1029, Currency: "EUR"}, Country: "NL", Capture: true,
		PaymentData: map[string]string{"issuer": "INGBNL2A"}, NotifyURL: "http://switch.test/v1/notify/psp_b"}
	gj, _ := json.Marshal(c)
	wj, _ := json.Marshal(want)
	if string(gj) != string(wj) {
		t.Fatalf("request\n got %s\nwant %s", gj, wj)
	}
	if p.Surcharge == nil || p.Surcharge.Value != 29 || p.Authorized.Value != 1029 || p.Captured.Value != 1029 {
		t.Fatalf("surcharge/amounts: %+v", p)
	}
}

func TestDeclineLeavesOrderOpen(t *testing.T) {
	h := newHarness(t)
	o := h.createOrder(1000)
	h.a.Push(txswitch.OpAuthorize, declined("insufficient_funds"))
	if p := h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card"}); p.Status != txswitch.PaymentDeclined {
		t.Fatalf("first = %s", p.Status)
	}
	if p := h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card"}); p.Status != txswitch.PaymentCaptured {
		t.Fatalf("second = %s", p.Status)
	}
	got := h.order(o.ID)
	if got.Status != txswitch.OrderPaid || got.Captured.Value != 1000 || len(got.Payments) != 2 {
		t.Fatalf("order = %s captured %d payments %d", got.Status, got.Captured.Value, len(got.Payments))
	}
	// A paid order takes no more payments.
	h.unchanged(func() {
		_, err := h.svc.CreatePayment(h.ctx, caller(""), o.ID, txswitch.CreatePaymentRequest{Method: "card"})
		wantErr(t, err, 409, "order_fully_paid")
	})
}

func TestPaymentValidation(t *testing.T) {
	tests := []struct {
		name   string
		order  string // "" = the created order
		c      txswitch.Caller
		req    txswitch.CreatePaymentRequest
		status int
		code   string
	}{
		{"unknown order", "ord_nope", caller(""), txswitch.CreatePaymentRequest{Method: "card"}, 404, "order_not_found"},
		{"other merchant", "", txswitch.Caller{MerchantID: merchantB}, txswitch.CreatePaymentRequest{Method: "card"}, 404, "order_not_found"},
		{"no method", "", caller(""), txswitch.CreatePaymentRequest{}, 400, "invalid_method"},
		{"bad capture", "", caller(""), txswitch.CreatePaymentRequest{Method: "card", Capture: "later"}, 400, "invalid_capture"},
		{"over order amount", "", caller(""), txswitch.CreatePaymentRequest{Method: "card", Amount: &txswitch.Money{Value: 1001, Currency: "EUR"}}, 422, "amount_exceeds_open_amount"},
		{"wrong currency", "", caller(""), txswitch.CreatePaymentRequest{Method: "card", Amount: &txswitch.Money{Value: 100, Currency: "USD"}}, 422, "currency_mismatch"},
		{"unknown method", "", caller(""), txswitch.CreatePaymentRequest{Method: "cheque"}, 422, "method_not_available"},
		{"negative amount", "", caller(""), txswitch.CreatePaymentRequest{Method: "card", Amount: &txswitch.Money{Value: -5, Currency: "EUR"}}, 400, "invalid_amount"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			o := h.createOrder(1000)
			id := tc.order
			if id == "" {
				id = o.ID
			}
			h.unchanged(func() {
				_, err := h.svc.CreatePayment(h.ctx, tc.c, id, tc.req)
				wantErr(t, err, tc.status, tc.code)
			})
			if n := len(h.a.Calls()) + len(h.b.Calls()); n != 0 {
				t.Fatalf("provider calls = %d", n)
			}
		})
	}
}

func TestPartialPaymentsUpToOrderAmount(t *testing.T) {
	h := newHarness(t)
	o := h.createOrder(1000)
	p1 := h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card", Capture: "manual", Amount: &txswitch.Money{Value: 600, Currency: "EUR"}})
	if p1.Status != txswitch.PaymentAuthorized {
		t.Fatalf("p1 = %s", p1.Status)
	}
	h.unchanged(func() {
		_, err := h.svc.CreatePayment(h.ctx, caller(""), o.ID, txswitch.CreatePaymentRequest{Method: "card", Amount: &txswitch.Money{Value: 401, Currency: "EUR"}})
		wantErr(t, err, 422, "amount_exceeds_open_amount")
	})
	// Default amount = the open amount.
	p2 := h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card"})
	if p2.Amount.Value != 400 {
		t.Fatalf("default amount = %d", p2.Amount.Value)
	}
}

func TestResolver(t *testing.T) {
	tests := []struct {
		name        string
		status      memory.Step
		wantStatus  string
		wantOrder   string
		wantFailure string
		settled     int
	}{
		{"approved", approved("ref-9"), txswitch.PaymentCaptured, txswitch.OrderPaid, "", 1},
		{"declined", declined("do_not_honor"), txswitch.PaymentDeclined, txswitch.OrderFailed, "do_not_honor", 1},
		{"never received", memory.Step{Result: txswitch.ProviderResult{Outcome: txswitch.OutcomeNotFound}}, txswitch.PaymentFailed, txswitch.OrderFailed, "provider_never_received", 1},
		// The provider holds it pending: recorded as such (its pending
		// expiry then runs), not settled.
		{"still pending", memory.Step{Result: txswitch.ProviderResult{Outcome: txswitch.OutcomePending}}, txswitch.PaymentPending, txswitch.OrderPending, "", 0},
		{"inquiry fails", memoryErr(refusedErr("psp_a")), txswitch.PaymentInDoubt, txswitch.OrderPending, "", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			o := h.createOrder(1000)
			h.a.Push(txswitch.OpAuthorize, memoryErr(timeoutErr("psp_a")))
			p := h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card"})
			if p.Status != txswitch.PaymentInDoubt {
				t.Fatalf("status = %s", p.Status)
			}
			// Too early: a call might still be in flight somewhere.
			h.clock.Advance(time.Second)
			if n, err := h.svc.ResolveInDoubt(h.ctx); err != nil || n != 0 || len(h.a.CallsFor(txswitch.OpStatus)) != 0 {
				t.Fatalf("early pass: %d, %v, %d inquiries", n, err, len(h.a.CallsFor(txswitch.OpStatus)))
			}
			h.clock.Advance(5 * time.Second)
			h.a.Push(txswitch.OpStatus, tc.status)
			n, err := h.svc.ResolveInDoubt(h.ctx)
			if err != nil || n != tc.settled {
				t.Fatalf("ResolveInDoubt = %d, %v; want %d", n, err, tc.settled)
			}
			got := h.payment(p.ID)
			if got.Status != tc.wantStatus {
				t.Fatalf("payment %s, want %s", got.Status, tc.wantStatus)
			}
			if tc.wantFailure != "" && (got.Failure == nil || got.Failure.Code != tc.wantFailure) {
				t.Fatalf("failure = %+v", got.Failure)
			}
			if os := h.order(o.ID).Status; os != tc.wantOrder {
				t.Fatalf("order %s, want %s", os, tc.wantOrder)
			}
			inq := h.a.CallsFor(txswitch.OpStatus)
			if len(inq) != 1 || inq[0].IdempotencyKey != p.ID+"/1" {
				t.Fatalf("inquiries = %+v", inq)
			}
			// Never charge again, anywhere.
			if a, b := len(h.a.CallsFor(txswitch.OpAuthorize)), len(h.b.CallsFor(txswitch.OpAuthorize)); a != 1 || b != 0 {
				t.Fatalf("authorize calls a=%d b=%d", a, b)
			}
			// A retry right away is held back by the backoff.
			if tc.settled == 0 {
				if _, err := h.svc.ResolveInDoubt(h.ctx); err != nil || len(h.a.CallsFor(txswitch.OpStatus)) != 1 {
					t.Fatalf("backoff ignored: %d inquiries", len(h.a.CallsFor(txswitch.OpStatus)))
				}
			}
			if tc.wantFailure == "provider_never_received" {
				// The order is open again.
				if p2 := h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card"}); p2.Status != txswitch.PaymentCaptured {
					t.Fatalf("retry payment = %s", p2.Status)
				}
			}
		})
	}
}

// A leader removed from the cluster while a payment's provider call is out
// cannot record its result (ErrRemoved): the call was made, so the
// payment is in doubt (outcome_unknown: retry under the same key), not
// refused as removed_from_cluster, which would let the client pay again
// under a new key. The same node refuses a read at once.
func TestRemovedNodeMidPaymentIsInDoubt(t *testing.T) {
	h := newHarness(t)
	o := h.createOrder(1000)
	h.log.Fail(func(d []byte) bool { return strings.Contains(string(d), `"type":"payment_result"`) }, txswitch.ErrRemoved, false)
	_, err := h.svc.CreatePayment(h.ctx, caller("k"), o.ID, txswitch.CreatePaymentRequest{Method: "card"})
	wantErr(t, err, 503, "outcome_unknown")
	if n := len(h.a.CallsFor(txswitch.OpAuthorize)); n != 1 {
		t.Fatalf("authorize calls = %d, want 1", n)
	}
	_, err = h.svc.CreatePayment(h.ctx, caller("k"), o.ID, txswitch.CreatePaymentRequest{Method: "card"})
	wantErr(t, err, 409, "idempotency_request_in_progress")
	h.log.FailBarrier(txswitch.ErrRemoved)
	_, err = h.svc.GetOrder(h.ctx, caller(""), o.ID)
	wantErr(t, err, 503, txswitch.CodeRemovedFromCluster)
}

func TestResolverAfterLeaderChange(t *testing.T) {
	h := newHarness(t)
	o := h.createOrder(1000)
	// The leader crashed after the intent: the result never got proposed.
	h.log.Fail(func(d []byte) bool { return strings.Contains(string(d), `"type":"payment_result"`) }, txswitch.ErrStopped, false)
	_, err := h.svc.CreatePayment(h.ctx, caller("k"), o.ID, txswitch.CreatePaymentRequest{Method: "card"})
	// The provider was called: only a retry under the same key is safe.
	wantErr(t, err, 503, "outcome_unknown")
	// A follower does nothing.
	h.log.SetLeadership(txswitch.Leadership{IsLeader: false, LeaderID: 2, Term: 2})
	h.clock.Advance(time.Minute)
	if n, _ := h.svc.ResolveInDoubt(h.ctx); n != 0 || len(h.a.CallsFor(txswitch.OpStatus)) != 0 {
		t.Fatal("follower resolved")
	}
	// This node becomes leader of term 3 and resolves at once.
	h.log.SetLeadership(txswitch.Leadership{IsLeader: true, LeaderID: 1, Term: 3})
	h.a.Push(txswitch.OpStatus, approved("ref-1"))
	if n, err := h.svc.ResolveInDoubt(h.ctx); err != nil || n != 1 {
		t.Fatalf("resolve = %d, %v", n, err)
	}
	if st := h.order(o.ID).Status; st != txswitch.OrderPaid {
		t.Fatalf("order = %s", st)
	}
	if n := len(h.a.CallsFor(txswitch.OpAuthorize)); n != 1 {
		t.Fatalf("authorize calls = %d", n)
	}
	evs := h.timeline(o.ID)
	if !hasEvent(evs, "resolved") {
		t.Fatalf("no resolved event: %v", eventTypes(evs))
	}
	// The client's retry with the same key learns the outcome.
	r, err := h.svc.CreatePayment(h.ctx, caller("k"), o.ID, txswitch.CreatePaymentRequest{Method: "card"})
	if err != nil || decode[txswitch.Payment](t, r).Status != txswitch.PaymentCaptured {
		t.Fatalf("retry = %v %s", err, r.Body)
	}
}

func TestLateResultIgnored(t *testing.T) {
	h := newHarness(t)
	o := h.createOrder(1000)
	h.a.Push(txswitch.OpAuthorize, memoryErr(timeoutErr("psp_a")))
	p := h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card"})
	h.clock.Advance(time.Minute)
	h.a.Push(txswitch.OpStatus, declined("do_not_honor"))
	if n, err := h.svc.ResolveInDoubt(h.ctx); err != nil || n != 1 {
		t.Fatalf("resolve: %d %v", n, err)
	}
	before := h.payment(p.ID)
	// The old leader's result arrives after the resolution.
	late := `{"v":1,"type":"payment_result","at":"2026-11-23T09:05:00Z","payment_id":"` + p.ID + `","attempt":1,"source":"call","outcome":"approved","result":{"outcome":"approved","provider_ref":"x"}}`
	v, err := h.log.Propose(context.Background(), []byte(late))
	if err != nil {
		t.Fatal(err)
	}
	res := v.(*txswitch.ApplyResult)
	if !res.Late || res.Err != nil {
		t.Fatalf("result = %+v", res)
	}
	// The late caller hears what a retry with its key would: 201 and the
	// payment as the resolver settled it.
	if got := decode[txswitch.Payment](t, res.Reply); res.Reply.Status != 201 || got.ID != p.ID || got.Status != txswitch.PaymentDeclined {
		t.Fatalf("late reply = %d %s", res.Reply.Status, res.Reply.Body)
	}
	after := h.payment(p.ID)
	bj, _ := json.Marshal(before)
	aj, _ := json.Marshal(after)
	if string(bj) != string(aj) {
		t.Fatalf("late result changed the payment:\n%s\n%s", bj, aj)
	}
	if evs := h.timeline(o.ID); evs[len(evs)-1].Type != "late_result_ignored" {
		t.Fatalf("last event = %s", evs[len(evs)-1].Type)
	}
}

func TestOutcomeUnknownThenRetry(t *testing.T) {
	h := newHarness(t)
	o := h.createOrder(1000)
	// The result commits but the proposer times out waiting.
	h.log.Fail(func(d []byte) bool { return strings.Contains(string(d), `"type":"payment_result"`) }, txswitch.ErrTimeout, true)
	_, err := h.svc.CreatePayment(h.ctx, caller("k"), o.ID, txswitch.CreatePaymentRequest{Method: "card"})
	wantErr(t, err, 503, "outcome_unknown")
	r, err := h.svc.CreatePayment(h.ctx, caller("k"), o.ID, txswitch.CreatePaymentRequest{Method: "card"})
	if err != nil || decode[txswitch.Payment](t, r).Status != txswitch.PaymentCaptured {
		t.Fatalf("retry = %v, %s", err, r.Body)
	}
	if n := len(h.a.CallsFor(txswitch.OpAuthorize)); n != 1 {
		t.Fatalf("authorize calls = %d", n)
	}
}

func TestNotLeaderAndLogErrors(t *testing.T) {
	tests := []struct {
		err  error
		code string
	}{
		{txswitch.ErrNoLeader, "no_leader"},
		{txswitch.ErrDropped, "no_leader"},
		{txswitch.ErrTimeout, "outcome_unknown"},
		{txswitch.ErrQueueFull, "overloaded"},
		// A stopping node may have appended the write.
		{txswitch.ErrStopped, "outcome_unknown"},
		// A removed node proposes nothing: it refuses.
		{txswitch.ErrRemoved, "removed_from_cluster"},
	}
	for _, tc := range tests {
		t.Run(tc.code+"/"+tc.err.Error(), func(t *testing.T) {
			h := newHarness(t)
			h.log.Fail(nil, tc.err, false)
			_, err := h.svc.CreateOrder(h.ctx, caller(""), orderReq(100))
			wantErr(t, err, 503, tc.code)
		})
	}
	h := newHarness(t)
	h.log.SetLeadership(txswitch.Leadership{IsLeader: false, LeaderID: 2, Term: 1})
	_, err := h.svc.CreateOrder(h.ctx, caller(""), orderReq(100))
	wantErr(t, err, 503, "not_leader")
}

func TestReview(t *testing.T) {
	for _, tc := range []struct {
		decision   string
		wantStatus string
		wantOrder  string
		wantCalls  int
	}{
		{"approve", txswitch.PaymentCaptured, txswitch.OrderPaid, 1},
		{"reject", txswitch.PaymentCancelled, txswitch.OrderCancelled, 0},
	} {
		t.Run(tc.decision, func(t *testing.T) {
			h := newHarness(t)
			o := h.createOrder(2_000_000)
			p := h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card"})
			if p.Status != txswitch.PaymentHeldForReview || len(h.a.Calls()) != 0 {
				t.Fatalf("held = %s, calls %d", p.Status, len(h.a.Calls()))
			}
			r, err := h.svc.ReviewPayment(h.ctx, p.ID, txswitch.ReviewRequest{Decision: tc.decision, Note: "checked"})
			if err != nil {
				t.Fatal(err)
			}
			if got := decode[txswitch.Payment](t, r); got.Status != tc.wantStatus {
				t.Fatalf("payment = %s", got.Status)
			}
			if st := h.order(o.ID).Status; st != tc.wantOrder {
				t.Fatalf("order = %s", st)
			}
			if n := len(h.a.CallsFor(txswitch.OpAuthorize)); n != tc.wantCalls {
				t.Fatalf("calls = %d", n)
			}
			// A second decision is refused.
			_, err = h.svc.ReviewPayment(h.ctx, p.ID, txswitch.ReviewRequest{Decision: tc.decision})
			wantErr(t, err, 409, "invalid_state")
		})
	}
}

func TestNotifications(t *testing.T) {
	h := newHarness(t)
	o := h.createOrder(1000)
	h.b.Push(txswitch.OpAuthorize, memory.Step{Result: txswitch.ProviderResult{Outcome: txswitch.OutcomePending, RedirectURL: "https://bank.test/r"}})
	p := h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "ideal"})
	if p.Status != txswitch.PaymentPending || p.RedirectURL != "https://bank.test/r" {
		t.Fatalf("payment = %+v", p)
	}
	n := txswitch.ProviderNotification{NotificationID: "n1", IdempotencyKey: p.ID + "/1", Result: txswitch.ProviderResult{Outcome: txswitch.OutcomeApproved, ProviderRef: "b-1"}}
	// Another provider cannot complete it.
	r, err := h.svc.Notify(h.ctx, "psp_a", n)
	if err != nil || string(r.Body) != `{"status":"ignored"}` {
		t.Fatalf("wrong provider: %v %s", err, r.Body)
	}
	if h.payment(p.ID).Status != txswitch.PaymentPending {
		t.Fatal("wrong provider changed the payment")
	}
	r, err = h.svc.Notify(h.ctx, "psp_b", n)
	if err != nil || string(r.Body) != `{"status":"accepted"}` {
		t.Fatalf("notify: %v %s", err, r.Body)
	}
	if got := h.payment(p.ID); got.Status != txswitch.PaymentCaptured || got.ProviderRef != "b-1" {
		t.Fatalf("after notify: %+v", got)
	}
	h.unchanged(func() {
		r, err = h.svc.Notify(h.ctx, "psp_b", n)
		if err != nil || string(r.Body) != `{"status":"duplicate"}` {
			t.Fatalf("duplicate: %v %s", err, r.Body)
		}
	})
	if st := h.order(o.ID).Status; st != txswitch.OrderPaid {
		t.Fatalf("order = %s", st)
	}
	if !hasEvent(h.timeline(o.ID), "notification") {
		t.Fatal("no notification event")
	}
	_, err = h.svc.Notify(h.ctx, "psp_b", txswitch.ProviderNotification{})
	wantErr(t, err, 400, "invalid_notification")
}

func TestPaymentsPerOrderBounded(t *testing.T) {
	h := newHarness(t)
	o := h.createOrder(1000)
	for range txswitch.MaxPaymentsPerOrder {
		h.a.Push(txswitch.OpAuthorize, declined("do_not_honor"))
		if p := h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card"}); p.Status != txswitch.PaymentDeclined {
			t.Fatalf("payment = %s", p.Status)
		}
	}
	h.unchanged(func() {
		_, err := h.svc.CreatePayment(h.ctx, caller(""), o.ID, txswitch.CreatePaymentRequest{Method: "card"})
		wantErr(t, err, 409, "too_many_payments")
	})
}

// A payment's surcharge is the price of its method, not part of the goods:
// a partial payment with a surcharge leaves the rest of the order open
// (regression: iDEAL 9.80 + 0.29 on an order of 10.00 made it paid with
// 0.20 open, and the rest was then taken on a paid order). Below cluster
// version VersionMoneyRules the old rule holds, so that members on both
// binaries agree at every log index.
func TestSurchargeDoesNotPayTheGoods(t *testing.T) {
	for _, tc := range []struct {
		name      string
		gate      bool
		afterPart string
	}{
		{"at VersionMoneyRules", true, txswitch.OrderAuthorized},
		{"below it: the old rule", false, txswitch.OrderPaid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			if tc.gate {
				h.gate(txswitch.VersionMoneyRules)
			}
			o := h.createOrder(1000)
			p := h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "ideal", Amount: &txswitch.Money{Value: 980, Currency: "EUR"}})
			if p.Status != txswitch.PaymentCaptured || p.Captured.Value != 1009 {
				t.Fatalf("ideal payment = %s captured %v", p.Status, p.Captured)
			}
			if got := h.order(o.ID); got.Status != tc.afterPart {
				t.Fatalf("order after 9.80 + 0.29 of 10.00 = %s, want %s", got.Status, tc.afterPart)
			}
			if !tc.gate {
				return
			}
			card := h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card"})
			if card.Status != txswitch.PaymentCaptured || card.Captured.Value != 20 {
				t.Fatalf("the rest by card = %s captured %v, want 20", card.Status, card.Captured)
			}
			if got := h.order(o.ID); got.Status != txswitch.OrderPaid || got.Captured.Value != 1029 {
				t.Fatalf("order = %s captured %v, want paid 1029", got.Status, got.Captured)
			}
		})
	}
}

// A payment is the amount plus its method's surcharge at the provider: an
// order at the largest amount paid by a method with a surcharge asked the
// provider for more than any amount may be (the order audit authorized
// 1,015,000,000,000,024). It is refused, and nothing is recorded.
func TestAmountPlusSurchargeStaysInRange(t *testing.T) {
	h := newHarness(t)
	o := h.createOrder(txswitch.MaxMoneyValue)
	h.unchanged(func() {
		_, err := h.svc.CreatePayment(h.ctx, caller("p-max"), o.ID, txswitch.CreatePaymentRequest{Method: "ideal"})
		wantErr(t, err, 422, "amount_too_large")
	})
	// The same order paid by a method without a surcharge goes on.
	if p := h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card"}); p.Amount.Value != txswitch.MaxMoneyValue {
		t.Fatalf("card payment of the largest amount: %+v", p)
	}
}
