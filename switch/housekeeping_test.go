package txswitch_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	txswitch "github.com/txswitch/txswitch/switch"
	"github.com/txswitch/txswitch/switch/memory"
)

// hang is a status answer that never comes: the call blocks until its
// context ends (and then fails in doubt, as a real call past its deadline).
func hang() memory.Step { return memory.Step{Block: make(chan struct{})} }

// inDoubtAt leaves a card payment in doubt at prov (psp_a first in the
// card routes; psp_b when psp_a refuses the connection) and returns it.
func (h *harness) inDoubtAt(prov string) txswitch.Payment {
	h.t.Helper()
	o := h.createOrder(1000)
	if prov == "psp_b" {
		h.a.Push(txswitch.OpAuthorize, memoryErr(refusedErr("psp_a")))
		h.b.Push(txswitch.OpAuthorize, memoryErr(timeoutErr("psp_b")))
	} else {
		h.a.Push(txswitch.OpAuthorize, memoryErr(timeoutErr("psp_a")))
	}
	p := h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card"})
	if p.Status != txswitch.PaymentInDoubt || p.Provider != prov {
		h.t.Fatalf("payment = %s at %s, want in doubt at %s", p.Status, p.Provider, prov)
	}
	return p
}

func (h *harness) service(cfg txswitch.ServiceConfig) *txswitch.Svc {
	cfg.Log, cfg.Store, cfg.Machine, cfg.Providers, cfg.Clock, cfg.IDs = h.log, h.store, h.m, h.provs, h.clock, &txswitch.SequentialIDs{}
	return txswitch.NewService(cfg)
}

func (h *harness) storeHas(prefix string) bool {
	return bytes.Contains(h.store.Dump(), []byte("\n\""+prefix))
}

func waitUntil(t *testing.T, within time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not happen within %s", what, within)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A resolver pass stuck on a provider that never answers its status
// inquiries held up Run's only loop, so order expiry, idempotency expiry
// and notification marker expiry waited for every inquiry's timeout in
// turn. They now run on their own cadence while the resolver is stuck.
func TestExpiryRunsWhileResolverIsStuck(t *testing.T) {
	h := newHarness(t)
	h.gate(txswitch.VersionProviderAmount)
	for range 3 {
		h.inDoubtAt("psp_a")
	}
	for range 50 {
		h.a.Push(txswitch.OpStatus, hang())
	}
	unpaid := h.createOrder(500)
	if _, err := h.svc.CreateOrder(h.ctx, caller("idem-1"), orderReq(700)); err != nil {
		t.Fatal(err)
	}
	h.notify("psp_a", "n-1", "unknown", txswitch.OutcomeDeclined, "")
	h.clock.Advance(25 * time.Hour) // everything is due: the order, the records, the inquiries
	if !h.storeHas("i/") || !h.storeHas("n/") {
		t.Fatal("no idempotency record or notification marker to expire")
	}

	svc := h.service(txswitch.ServiceConfig{ResolveEvery: 20 * time.Millisecond, HousekeepEvery: 20 * time.Millisecond,
		ResolvePassTimeout: time.Minute})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { svc.Run(ctx); close(done) }()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after its context ended")
		}
	}()
	waitUntil(t, 5*time.Second, "a status inquiry", func() bool { return len(h.a.CallsFor(txswitch.OpStatus)) > 0 })
	// Each inquiry blocks for psp_a's 2 s timeout: three of them in a row
	// held everything for 6 s.
	waitUntil(t, 1500*time.Millisecond, "order expiry", func() bool { return h.order(unpaid.ID).Status == txswitch.OrderExpired })
	waitUntil(t, 1500*time.Millisecond, "idempotency expiry", func() bool { return !h.storeHas("i/") })
	waitUntil(t, 1500*time.Millisecond, "notification marker expiry", func() bool { return !h.storeHas("n/") })
}

// A pass ends at its deadline however many inquiries hang, and the
// intents it did not reach are asked in a later pass.
func TestResolvePassDeadline(t *testing.T) {
	h := newHarness(t)
	var ps []txswitch.Payment
	for range 3 {
		ps = append(ps, h.inDoubtAt("psp_a"))
	}
	h.a.Push(txswitch.OpStatus, hang(), hang(), hang())
	h.clock.Advance(time.Minute)
	// One inquiry at a time: the first holds its slot past the deadline,
	// so any other would start after it.
	svc := h.service(txswitch.ServiceConfig{ResolvePassTimeout: 300 * time.Millisecond, ResolvePerProvider: 1})
	start := time.Now()
	if n, err := svc.ResolveInDoubt(h.ctx); err != nil || n != 0 {
		t.Fatalf("pass = %d %v", n, err)
	}
	if took := time.Since(start); took > 1500*time.Millisecond {
		t.Fatalf("a pass with a 300ms deadline took %s (each hanging inquiry waits psp_a's 2 s timeout)", took)
	}
	if n := len(h.a.CallsFor(txswitch.OpStatus)); n != 1 {
		t.Fatalf("status inquiries = %d, want 1 (no inquiry starts past the deadline)", n)
	}
	// Later passes reach the others (psp_a answers not_found once its
	// script is used up).
	for range 10 {
		h.clock.Advance(2 * time.Minute)
		if _, err := svc.ResolveInDoubt(h.ctx); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range ps {
		if got := h.payment(p.ID); got.Status != txswitch.PaymentFailed {
			t.Fatalf("payment %s = %s after later passes", p.ID, got.Status)
		}
	}
}

// A pass stops as soon as this node loses the lead, abandoning the
// inquiry under way and starting no other.
func TestResolvePassStopsOnLeadershipLoss(t *testing.T) {
	h := newHarness(t)
	for range 3 {
		h.inDoubtAt("psp_a")
	}
	h.a.Push(txswitch.OpStatus, hang(), hang(), hang())
	h.clock.Advance(time.Minute)
	svc := h.service(txswitch.ServiceConfig{ResolvePassTimeout: time.Minute, ResolvePerProvider: 1})
	go func() {
		for len(h.a.CallsFor(txswitch.OpStatus)) == 0 {
			time.Sleep(5 * time.Millisecond)
		}
		h.log.SetLeadership(txswitch.Leadership{IsLeader: false, LeaderID: 2, Term: 2})
	}()
	start := time.Now()
	if _, err := svc.ResolveInDoubt(h.ctx); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 1500*time.Millisecond {
		t.Fatalf("the pass went on for %s after the lead was lost", took)
	}
	if n := len(h.a.CallsFor(txswitch.OpStatus)); n != 1 {
		t.Fatalf("status inquiries = %d, want 1", n)
	}
}

// A provider that hangs delays only its own intents: another provider's
// are settled in the same pass meanwhile.
func TestResolveProvidersIndependent(t *testing.T) {
	h := newHarness(t)
	stuck := h.inDoubtAt("psp_a") // first in key order
	other := h.inDoubtAt("psp_b")
	h.a.Push(txswitch.OpStatus, hang())
	h.b.Push(txswitch.OpStatus, approved("b-1"))
	h.clock.Advance(time.Minute)
	svc := h.service(txswitch.ServiceConfig{ResolvePassTimeout: time.Minute})
	ctx, cancel := context.WithCancel(h.ctx)
	passDone := make(chan struct{})
	go func() {
		defer close(passDone)
		if _, err := svc.ResolveInDoubt(ctx); err != nil {
			t.Error(err)
		}
	}()
	defer func() { cancel(); <-passDone }()
	waitUntil(t, 1500*time.Millisecond, "psp_b's intent settled", func() bool { return h.payment(other.ID).Status == txswitch.PaymentCaptured })
	if got := h.payment(stuck.ID); got.Status != txswitch.PaymentInDoubt {
		t.Fatalf("stuck payment = %s", got.Status)
	}
}
