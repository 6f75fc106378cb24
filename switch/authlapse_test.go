package txswitch_test

import (
	"strings"
	"testing"
	"time"

	txswitch "github.com/txswitch/txswitch/switch"
)

func lapseCauses(ex txswitch.Explanation) []txswitch.Cause {
	var out []txswitch.Cause
	for _, c := range ex.Causes {
		if c.Code == txswitch.CauseAuthorizationExpiring || c.Code == txswitch.CauseAuthorizationLapsed {
			out = append(out, c)
		}
	}
	return out
}

// A card authorization captured on shipment lapses at the provider after
// its method's validity. Explain warns a day before, with the uncaptured
// rest, says once it lapsed, and stops once it is all captured. The
// setting waits for cluster version 11 like every configuration field an
// older member would drop.
func TestExplainAuthorizationLapse(t *testing.T) {
	withValidity := func() txswitch.RoutingConfig {
		cfg := testConfig()
		cfg.Methods[0].AuthorizationValiditySeconds = 7 * 24 * 3600 // card
		return cfg
	}
	t.Run("below version 11", func(t *testing.T) { configWaitsForVersion(t, txswitch.VersionFollowUps, withValidity()) })

	h := newHarness(t)
	h.gate(txswitch.VersionFollowUps)
	if _, err := h.svc.PutConfig(h.ctx, withValidity()); err != nil {
		t.Fatalf("PutConfig: %v", err)
	}
	o := h.createOrder(1000)
	approved := h.clock.Now()
	p := h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card", Capture: "manual"})
	if p.Status != txswitch.PaymentAuthorized {
		t.Fatalf("payment %s", p.Status)
	}
	lapse := approved.Add(7 * 24 * time.Hour).UTC().Format(time.RFC3339)
	if got := lapseCauses(h.explanation(o.ID)); len(got) != 0 {
		t.Fatalf("fresh authorization: %+v", got)
	}
	h.clock.Advance(6*24*time.Hour - time.Minute)
	if got := lapseCauses(h.explanation(o.ID)); len(got) != 0 {
		t.Fatalf("a day and a minute before the lapse: %+v", got)
	}
	h.clock.Advance(2 * time.Hour)
	if _, err := h.svc.Capture(h.ctx, caller(""), p.ID, txswitch.CaptureRequest{Amount: eur(400)}); err != nil {
		t.Fatalf("partial capture: %v", err)
	}
	got := lapseCauses(h.explanation(o.ID))
	if len(got) != 1 || got[0].Code != txswitch.CauseAuthorizationExpiring || got[0].PaymentID != p.ID || got[0].Provider != "psp_a" {
		t.Fatalf("22 hours before the lapse: %+v", got)
	}
	for _, want := range []string{"lapses at " + lapse, "in 22 hours", "EUR 6.00 uncaptured"} {
		if !strings.Contains(got[0].Message, want) {
			t.Fatalf("%q does not say %q", got[0].Message, want)
		}
	}
	h.clock.Advance(22*time.Hour + time.Minute) // the lapse to the second
	ex := h.explanation(o.ID)
	got = lapseCauses(ex)
	if len(got) != 1 || got[0].Code != txswitch.CauseAuthorizationLapsed || !strings.Contains(got[0].Message, "lapsed at "+lapse) ||
		!strings.Contains(got[0].Message, "card authorizations last 7 days") {
		t.Fatalf("at the lapse: %+v", got)
	}
	if !strings.Contains(ex.Summary, "lapsed at "+lapse) {
		t.Fatalf("summary %q does not say the authorization lapsed", ex.Summary)
	}
	// Captured after all (the provider honoured it): nothing reserved.
	if _, err := h.svc.Capture(h.ctx, caller(""), p.ID, txswitch.CaptureRequest{}); err != nil {
		t.Fatalf("capture the rest: %v", err)
	}
	if got := lapseCauses(h.explanation(o.ID)); len(got) != 0 {
		t.Fatalf("all captured: %+v", got)
	}

	// Cancelled, or of a method without a validity: no warning.
	o2 := h.createOrder(1000)
	p2 := h.pay(o2.ID, txswitch.CreatePaymentRequest{Method: "card", Capture: "manual"})
	if _, err := h.svc.Cancel(h.ctx, caller(""), p2.ID); err != nil {
		t.Fatalf("cancel: %v", err)
	}
	o3 := h.createOrder(1000)
	if p3 := h.pay(o3.ID, txswitch.CreatePaymentRequest{Method: "klarna_paylater", Capture: "manual"}); p3.Status != txswitch.PaymentAuthorized {
		t.Fatalf("klarna payment %s", p3.Status)
	}
	h.clock.Advance(30 * 24 * time.Hour)
	for _, id := range []string{o2.ID, o3.ID} {
		if got := lapseCauses(h.explanation(id)); len(got) != 0 {
			t.Fatalf("order %s: %+v", id, got)
		}
	}
}
