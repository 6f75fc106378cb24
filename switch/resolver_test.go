package txswitch_test

import (
	"context"
	"strings"
	"testing"
	"time"

	txswitch "github.com/txswitch/txswitch/switch"
	"github.com/txswitch/txswitch/switch/memory"
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

// A proposer that stalls between committing an intent and calling the
// provider (a GC pause, a frozen VM) must not send once the provider
// timeout has passed since the intent: by then another leader may have
// settled it as never received. The call is not made, the payment is in
// doubt, and the resolver settles it by status inquiry.
func TestStalledProposerDoesNotSendAfterTheDeadline(t *testing.T) {
	for _, tc := range []struct {
		name  string
		stall time.Duration
		sent  bool
	}{
		{"within the timeout", 1500 * time.Millisecond, true},
		{"past the timeout", 2500 * time.Millisecond, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t) // provider timeouts are 2 s
			o := h.createOrder(1000)
			h.log.AfterCommit(func(d []byte) {
				if strings.Contains(string(d), `"type":"payment_intent"`) || strings.Contains(string(d), `"type":"op_intent"`) {
					h.clock.Advance(tc.stall)
				}
			})
			r, err := h.svc.CreatePayment(h.ctx, caller("k"), o.ID, txswitch.CreatePaymentRequest{Method: "card", Capture: txswitch.CaptureManual})
			if err != nil {
				t.Fatal(err)
			}
			p := decode[txswitch.Payment](t, r)
			if got := len(h.a.CallsFor(txswitch.OpAuthorize)) == 1; got != tc.sent {
				t.Fatalf("authorize sent = %v, want %v (payment %s)", got, tc.sent, p.Status)
			}
			if !tc.sent {
				if p.Status != txswitch.PaymentInDoubt {
					t.Fatalf("payment = %s, want in_doubt", p.Status)
				}
				h.clock.Advance(time.Minute)
				if _, err := h.svc.ResolveInDoubt(h.ctx); err != nil {
					t.Fatal(err)
				}
				if p := h.payment(p.ID); p.Status != txswitch.PaymentFailed || p.Failure.Code != "provider_never_received" {
					t.Fatalf("resolved payment = %s %+v", p.Status, p.Failure)
				}
				return
			}
			if p.Status != txswitch.PaymentAuthorized {
				t.Fatalf("payment = %s", p.Status)
			}
			// The same guard holds for captures: a capture intent stalled
			// past the timeout is not sent, and the resolver settles it.
			h.log.AfterCommit(func(d []byte) {
				if strings.Contains(string(d), `"type":"op_intent"`) {
					h.clock.Advance(2500 * time.Millisecond)
				}
			})
			if _, err = h.svc.Capture(h.ctx, caller("c"), p.ID, txswitch.CaptureRequest{}); err != nil {
				t.Fatal(err)
			}
			if n := len(h.a.CallsFor(txswitch.OpCapture)); n != 0 {
				t.Fatalf("capture calls = %d after a stall past the timeout", n)
			}
			h.log.AfterCommit(nil)
			h.clock.Advance(time.Minute)
			if _, err := h.svc.ResolveInDoubt(h.ctx); err != nil {
				t.Fatal(err)
			}
			if got := h.payment(p.ID); got.Status != txswitch.PaymentAuthorized || got.Captured.Value != 0 {
				t.Fatalf("after the unsent capture was resolved: %s captured %v", got.Status, got.Captured)
			}
			if n := len(h.a.CallsFor(txswitch.OpCapture)); n != 0 {
				t.Fatalf("the resolver sent the capture (%d calls)", n)
			}
		})
	}
}

// A provider with calls still in doubt cannot be dropped from the
// configuration: only its status inquiry can settle them. Once they are
// settled it can.
func TestConfigKeepsAProviderWithOpenCalls(t *testing.T) {
	h := newHarness(t)
	o := h.createOrder(1000)
	h.a.Push(txswitch.OpAuthorize, memoryErr(timeoutErr("psp_a")))
	p := h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card"})
	if p.Status != txswitch.PaymentInDoubt {
		t.Fatalf("payment %s, want in doubt", p.Status)
	}
	withoutA := testConfig()
	withoutA.Providers = withoutA.Providers[1:]
	withoutA.Methods = []txswitch.MethodConfig{{Name: "card", Enabled: true, Routes: []txswitch.RouteConfig{{Provider: "psp_b"}}}}
	h.unchanged(func() {
		_, err := h.svc.PutConfig(h.ctx, withoutA)
		wantErr(t, err, 409, txswitch.CodeProviderHasOpenCalls)
	})
	h.clock.Advance(time.Minute)
	h.a.Push(txswitch.OpStatus, approved("r"))
	if n, err := h.svc.ResolveInDoubt(h.ctx); err != nil || n != 1 {
		t.Fatalf("resolve = %d %v", n, err)
	}
	if r, err := h.svc.PutConfig(h.ctx, withoutA); err != nil || r.Status != 200 {
		t.Fatalf("config without psp_a once its call settled: %v", err)
	}
}

// A pass asks one provider about several intents at once, but no more than
// DefaultResolvePerProvider: a burst of payments in doubt after a
// provider's timeouts is cleared several times faster than one inquiry
// at a time, without flooding the provider.
func TestResolverAsksAProviderAFewAtATime(t *testing.T) {
	h := newHarness(t)
	const n = 3*txswitch.DefaultResolvePerProvider + 1
	for range n {
		h.inDoubtAt("psp_a") // its authorization timed out
	}
	release := make(chan struct{})
	for range n {
		h.a.Push(txswitch.OpStatus, memory.Step{Result: txswitch.ProviderResult{Outcome: txswitch.OutcomeNotFound}, Block: release})
	}
	h.clock.Advance(time.Minute)
	type passResult struct {
		n   int
		err error
	}
	done := make(chan passResult, 1)
	go func() {
		n, err := h.svc.ResolveInDoubt(h.ctx)
		done <- passResult{n, err}
	}()
	asked := func() int { return len(h.a.CallsFor(txswitch.OpStatus)) }
	deadline := time.Now().Add(5 * time.Second)
	for asked() < txswitch.DefaultResolvePerProvider && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	// Every slot is taken and each call is held: no further inquiry may
	// start, however long we wait.
	time.Sleep(100 * time.Millisecond)
	if got := asked(); got != txswitch.DefaultResolvePerProvider {
		close(release)
		t.Fatalf("%d status inquiries out at once, want %d", got, txswitch.DefaultResolvePerProvider)
	}
	close(release)
	select {
	case r := <-done:
		if r.err != nil || r.n != n {
			t.Fatalf("pass settled %d (%v), want %d", r.n, r.err, n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the pass did not end")
	}
	if got := asked(); got != n {
		t.Fatalf("%d status inquiries, want one per intent (%d)", got, n)
	}
	if left, err := txswitch.ListInDoubt(h.store, 0); err != nil || len(left) != 0 {
		t.Fatalf("still in doubt: %d %v", len(left), err)
	}
}
