package txswitch_test

import (
	"context"
	"strings"
	"testing"
	"time"

	txswitch "github.com/txswitch/txswitch/switch"
)

// An intent whose proposal timed out may still commit; the proposer must
// then not call the provider, and the resolver finds it never received.
func TestIntentOutcomeUnknownNeverCalls(t *testing.T) {
	h := newHarness(t)
	o := h.createOrder(1000)
	h.log.Fail(func(d []byte) bool { return strings.Contains(string(d), `"type":"payment_intent"`) }, txswitch.ErrTimeout, true)
	_, err := h.svc.CreatePayment(h.ctx, caller("k"), o.ID, txswitch.CreatePaymentRequest{Method: "card"})
	wantErr(t, err, 503, "outcome_unknown")
	if n := len(h.a.Calls()) + len(h.b.Calls()); n != 0 {
		t.Fatalf("provider called %d times after an unknown intent outcome", n)
	}
	_, err = h.svc.CreatePayment(h.ctx, caller("k"), o.ID, txswitch.CreatePaymentRequest{Method: "card"})
	wantErr(t, err, 409, "idempotency_request_in_progress")
	h.clock.Advance(time.Minute)
	if n, err := h.svc.ResolveInDoubt(h.ctx); err != nil || n != 1 {
		t.Fatalf("resolve = %d %v", n, err)
	}
	r, err := h.svc.CreatePayment(h.ctx, caller("k"), o.ID, txswitch.CreatePaymentRequest{Method: "card"})
	if err != nil {
		t.Fatal(err)
	}
	if p := decode[txswitch.Payment](t, r); p.Status != txswitch.PaymentFailed || p.Failure.Code != "provider_never_received" {
		t.Fatalf("payment = %s %+v", p.Status, p.Failure)
	}
	if n := len(h.a.CallsFor(txswitch.OpAuthorize)); n != 0 {
		t.Fatalf("authorize calls = %d", n)
	}
}

// Run resolves in-doubt intents on its own once this node leads.
func TestRunResolvesOnLeadership(t *testing.T) {
	h := newHarness(t)
	h.log.SetLeadership(txswitch.Leadership{IsLeader: true, LeaderID: 1, Term: 1})
	svc := txswitch.NewService(txswitch.ServiceConfig{Log: h.log, Store: h.store, Machine: h.m, Providers: h.provs, Clock: h.clock,
		IDs: txswitch.RandomIDs{}, ResolveEvery: time.Hour, HousekeepEvery: time.Hour})
	o := h.createOrder(1000)
	h.a.Push(txswitch.OpAuthorize, memoryErr(timeoutErr("psp_a")))
	p := h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card"})
	h.clock.Advance(time.Minute)
	h.a.Push(txswitch.OpStatus, approved("r"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { svc.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	// With an hour-long period, only the leadership watch can resolve it.
	deadline := time.Now().Add(30 * time.Second)
	for h.payment(p.ID).Status != txswitch.PaymentCaptured {
		if time.Now().After(deadline) {
			t.Fatal("Run never resolved the in-doubt payment")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
