package txswitch_test

import (
	"strings"
	"testing"

	txswitch "github.com/txswitch/txswitch/switch"
)

// withProviderC is testConfig with a third provider, psp_c, that card
// routes to first (cardRoutes says whether card still routes there).
func withProviderC(cardRoutes bool) txswitch.RoutingConfig {
	cfg := testConfig()
	c := cfg.Providers[0]
	c.Name, c.BaseURL = "psp_c", "http://psp-c.test"
	cfg.Providers = append(cfg.Providers, c)
	if cardRoutes {
		cfg.Methods[0].Routes = []txswitch.RouteConfig{{Provider: "psp_c"}}
	}
	return cfg
}

// From cluster version 11 a provider that approved a payment stays
// configured: its captures, refunds and cancellations go to it. A
// configuration that drops it is refused (by PutConfig and by apply);
// one that only takes it out of the routes is accepted and the payment's
// capture still goes there. A provider that only declined may go, and
// so may any provider below version 11, as before.
func TestConfigKeepsAProviderThatApprovedPayments(t *testing.T) {
	h := newHarness(t)
	h.gate(txswitch.VersionFollowUps)

	// psp_a and psp_b were configured when the cluster moved to 11 and
	// may hold payments from before.
	withoutB := testConfig()
	withoutB.Providers = withoutB.Providers[:1]
	withoutB.Methods = withoutB.Methods[:1]
	withoutB.Methods[0].Routes = []txswitch.RouteConfig{{Provider: "psp_a"}}
	h.unchanged(func() {
		_, err := h.svc.PutConfig(h.ctx, withoutB)
		e := configErr(t, err, 409, txswitch.CodeProviderHasPayments, "providers")
		if !strings.Contains(e.Message, "provider psp_b was configured when the cluster moved to version 11") {
			t.Fatalf("message %q", e.Message)
		}
	})

	if _, err := h.svc.PutConfig(h.ctx, withProviderC(true)); err != nil {
		t.Fatalf("add psp_c: %v", err)
	}
	c := h.provs.Provider("psp_c")
	o := h.createOrder(1000)
	c.Push(txswitch.OpAuthorize, declined("do_not_honor"))
	if p := h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card"}); p.Status != txswitch.PaymentDeclined {
		t.Fatalf("payment %s, want declined", p.Status)
	}
	// Declines hold no money: psp_c may still go, and come back.
	if _, err := h.svc.PutConfig(h.ctx, testConfig()); err != nil {
		t.Fatalf("drop psp_c after a decline: %v", err)
	}
	if _, err := h.svc.PutConfig(h.ctx, withProviderC(true)); err != nil {
		t.Fatalf("add psp_c again: %v", err)
	}
	p := h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card", Capture: "manual"})
	if p.Status != txswitch.PaymentAuthorized || p.Provider != "psp_c" {
		t.Fatalf("payment %s at %s, want authorized at psp_c", p.Status, p.Provider)
	}

	marks, err := h.svc.ProvidersWithPayments()
	if err != nil || len(marks) != 3 || marks[0].Provider != "psp_a" || marks[0].FirstPayment != "" || marks[0].At != nil ||
		marks[2].Provider != "psp_c" || marks[2].FirstPayment != p.ID || marks[2].At == nil || !marks[2].At.Equal(h.clock.Now()) {
		t.Fatalf("providers with payments: %+v %v", marks, err)
	}
	h.unchanged(func() {
		_, err := h.svc.PutConfig(h.ctx, testConfig())
		e := configErr(t, err, 409, txswitch.CodeProviderHasPayments, "providers")
		for _, want := range []string{"provider psp_c approved payments", p.ID, "routes"} {
			if !strings.Contains(e.Message, want) {
				t.Fatalf("message %q does not say %q", e.Message, want)
			}
		}
	})
	// Apply refuses it too: an approval committed between PutConfig's
	// check and the change's apply must not be stranded.
	h.applyRefuses(testConfig(), txswitch.CodeProviderHasPayments)

	// Out of the routes, kept for the follow-ups: new card payments go
	// to psp_a, the authorized one is captured at psp_c.
	if _, err := h.svc.PutConfig(h.ctx, withProviderC(false)); err != nil {
		t.Fatalf("take psp_c out of the routes: %v", err)
	}
	if _, err := h.svc.Capture(h.ctx, caller(""), p.ID, txswitch.CaptureRequest{}); err != nil {
		t.Fatalf("capture: %v", err)
	}
	if got := h.payment(p.ID); got.Status != txswitch.PaymentCaptured || len(c.CallsFor(txswitch.OpCapture)) != 1 {
		t.Fatalf("payment %s, psp_c saw %d captures", got.Status, len(c.CallsFor(txswitch.OpCapture)))
	}
	o2 := h.createOrder(500)
	if p2 := h.pay(o2.ID, txswitch.CreatePaymentRequest{Method: "card"}); p2.Provider != "psp_a" {
		t.Fatalf("a new card payment went to %s, want psp_a", p2.Provider)
	}

	t.Run("below version 11", func(t *testing.T) {
		old := newHarnessFor(t, txswitch.VersionRange{Min: 1, Max: txswitch.VersionFollowUps - 1})
		old.gate(txswitch.VersionFollowUps - 1)
		o := old.createOrder(1000)
		if p := old.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card", Capture: "manual"}); p.Status != txswitch.PaymentAuthorized || p.Provider != "psp_a" {
			t.Fatalf("payment %s at %s", p.Status, p.Provider)
		}
		// What an older member accepts, and so must this one below 11.
		withoutA := testConfig()
		withoutA.Providers = withoutA.Providers[1:]
		withoutA.Methods = []txswitch.MethodConfig{{Name: "card", Enabled: true, Routes: []txswitch.RouteConfig{{Provider: "psp_b"}}}}
		if _, err := old.svc.PutConfig(old.ctx, withoutA); err != nil {
			t.Fatalf("below version 11: %v", err)
		}
	})
}
