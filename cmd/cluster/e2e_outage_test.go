package cluster

import (
	"strings"
	"testing"
	"time"

	"github.com/txswitch/txswitch/providers/sim"
	txswitch "github.com/txswitch/txswitch/switch"
)

// e2eBreakerState is the leader's breaker for provider and method, as the
// admin status page shows it ("" when the breaker was never used).
func e2eBreakerState(t *testing.T, l *Local, provider, method string) txswitch.BreakerState {
	t.Helper()
	return e2eAdminStatus(t, l, e2eAnyAddr(t, l, true)).Breakers[provider][method]
}

func e2eExcludedReason(m txswitch.MethodsResponse, method string) string {
	for _, e := range m.Excluded {
		if e.Method == method {
			return e.Reason
		}
	}
	return ""
}

// TestE2EProviderOutage: a PSP that refuses before processing is a
// definitive failure, so card payments fail over to the next provider;
// the breaker opens; a method whose every provider is down disappears from
// checkout and comes back once they recover.
func TestE2EProviderOutage(t *testing.T) {
	l := startE2E(t)
	// The breakers must stay open through the checks that follow their
	// opening however slow the machine, so open_ms is long; it cannot be
	// shortened before the recovery below, since changing a provider's
	// breaker settings resets its breakers to closed (Registry.Configure),
	// which would skip the half-open probe the recovery checks. No PSP
	// here stalls, so the provider timeout only has to be one a loaded
	// machine meets: healthy calls must be answered, not in doubt.
	const openMs = 30_000
	e2eTuneProviders(t, l, 10_000, openMs)
	leader := e2eAnyAddr(t, l, true)
	psA, psB, psC := l.Sims["psp_a"], l.Sims["psp_b"], l.Sims["psp_c"]

	t.Run("card fails over to psp_b and psp_a's breaker opens", func(t *testing.T) {
		if err := psA.SetBehaviour(sim.Behaviour{Outage: &sim.Outage{Mode: sim.OutageUnavailable}}); err != nil {
			t.Fatal(err)
		}
		defer psA.ResetBehaviour()
		var firstOrder string
		for i := 0; i < 6; i++ {
			o := e2eCreateOrder(t, l, leader, e2eOrderReq(int64(2000+i*100), "EUR", "NL"))
			if i == 0 {
				firstOrder = o.ID
			}
			r, p := e2ePay(t, l, leader, o.ID, txswitch.CreatePaymentRequest{Method: "card"})
			if r.Status != 201 || p.Status != txswitch.PaymentCaptured || p.Provider != "psp_b" {
				t.Fatalf("payment %d during psp_a's outage: %d %s", i, r.Status, r.Body)
			}
			if n := len(psA.LedgerFor(p.ID)); n != 0 {
				t.Fatalf("psp_a booked %d entries while down", n)
			}
			if tot := psB.Totals(p.ID); tot.Charges != 1 || tot.Captured != p.Amount.Value {
				t.Fatalf("psp_b ledger for %s: %+v", p.ID, tot)
			}
		}
		if n := psA.Stats().RefusedUnavailable; n < 5 {
			t.Fatalf("psp_a refused only %d calls: the outage did not fire", n)
		}
		if st := e2eBreakerState(t, l, "psp_a", "card"); st != txswitch.BreakerOpen {
			t.Fatalf("psp_a card breaker after 6 refused calls: %q", st)
		}
		types := e2eEventTypes(e2eTimelineOf(t, l, leader, firstOrder))
		if !e2eHas(types, "failover") {
			t.Errorf("timeline of a failed-over payment lacks failover: %v", types)
		}
		// While open, routing skips psp_a without calling it.
		refused := psA.Stats().RefusedUnavailable
		o := e2eCreateOrder(t, l, leader, e2eOrderReq(2500, "EUR", "NL"))
		if r, p := e2ePay(t, l, leader, o.ID, txswitch.CreatePaymentRequest{Method: "card"}); r.Status != 201 || p.Provider != "psp_b" {
			t.Fatalf("payment with psp_a's breaker open: %d %s", r.Status, r.Body)
		}
		if got := psA.Stats().RefusedUnavailable; got != refused {
			t.Errorf("psp_a was called with its breaker open (%d -> %d refusals)", refused, got)
		}
		// Card stays offered: psp_b is healthy.
		if m := e2eMethodsOf(t, l, leader, e2eCreateOrder(t, l, leader, e2eOrderReq(1000, "EUR", "NL")).ID); !e2eHas(e2eMethodNames(m), "card") {
			t.Errorf("card hidden while psp_b is up: %+v", m)
		}
	})

	t.Run("ideal hidden while both its providers are down", func(t *testing.T) {
		if err := psB.SetBehaviour(sim.Behaviour{Outage: &sim.Outage{Mode: sim.OutageUnavailable}}); err != nil {
			t.Fatal(err)
		}
		if err := psC.SetBehaviour(sim.Behaviour{Outage: &sim.Outage{Mode: sim.OutageRefuse, ForMillis: 60_000}}); err != nil {
			t.Fatal(err)
		}
		defer psB.ResetBehaviour()
		defer psC.ResetBehaviour()
		var failedOrder string
		for i := 0; i < 8 && !(e2eBreakerState(t, l, "psp_b", "ideal") == txswitch.BreakerOpen && e2eBreakerState(t, l, "psp_c", "ideal") == txswitch.BreakerOpen); i++ {
			o := e2eCreateOrder(t, l, leader, e2eOrderReq(1500, "EUR", "NL"))
			r, p := e2ePay(t, l, leader, o.ID, txswitch.CreatePaymentRequest{Method: "ideal"})
			if r.Status/100 == 2 {
				if p.Status != txswitch.PaymentFailed {
					t.Fatalf("ideal with both providers down: %s", r.Body)
				}
				failedOrder = o.ID
			} else if r.Status != 422 && r.Status != 503 {
				t.Fatalf("ideal with both providers down: %d %s", r.Status, r.Body)
			}
		}
		for _, p := range []string{"psp_b", "psp_c"} {
			if st := e2eBreakerState(t, l, p, "ideal"); st != txswitch.BreakerOpen {
				t.Fatalf("%s ideal breaker: %q", p, st)
			}
		}
		if failedOrder == "" {
			t.Fatal("no ideal payment was attempted")
		}
		ex := e2eExplainOf(t, l, leader, failedOrder)
		t.Logf("explain with ideal's providers down: %q", ex.Summary)
		if !e2eHasCause(ex, "provider_down") || !strings.Contains(ex.Summary, "psp_b") && !strings.Contains(ex.Summary, "psp_c") {
			t.Errorf("explain with providers down: %+v", ex)
		}
		for _, c := range ex.Causes {
			if c.Code == "provider_down" && c.Provider != "psp_b" && c.Provider != "psp_c" {
				t.Errorf("provider_down names %q", c.Provider)
			}
		}
		o := e2eCreateOrder(t, l, leader, e2eOrderReq(1500, "EUR", "NL"))
		m := e2eMethodsOf(t, l, leader, o.ID)
		if e2eHas(e2eMethodNames(m), "ideal") || e2eExcludedReason(m, "ideal") != "all_providers_down" {
			t.Fatalf("ideal with both providers' breakers open: %+v", m)
		}
		if !e2eHas(e2eMethodNames(m), "card") {
			t.Errorf("card hidden: %v", e2eMethodNames(m))
		}
		// Paying with it anyway is refused without calling anyone.
		r, p := e2ePay(t, l, leader, o.ID, txswitch.CreatePaymentRequest{Method: "ideal"})
		if r.Status/100 == 2 && p.Status != txswitch.PaymentFailed {
			t.Fatalf("ideal payment with every breaker open: %d %s", r.Status, r.Body)
		}

		// Recovery: the breakers go half-open after open_ms and close on
		// successful probes; ideal is offered again.
		psB.ResetBehaviour()
		psC.ResetBehaviour()
		waitFor(t, openMs*time.Millisecond+30*time.Second, "ideal to be offered again", func() bool {
			return e2eHas(e2eMethodNames(e2eMethodsOf(t, l, leader, o.ID)), "ideal")
		})
		r, p = e2ePay(t, l, leader, o.ID, txswitch.CreatePaymentRequest{Method: "ideal"})
		if r.Status/100 != 2 || (p.Status != txswitch.PaymentCaptured && p.Status != txswitch.PaymentPending) {
			t.Fatalf("ideal after recovery: %d %s", r.Status, r.Body)
		}
		if e2eCharges(l, p.ID) != 1 && p.Status == txswitch.PaymentCaptured {
			t.Fatalf("recovered ideal payment charged %d times", e2eCharges(l, p.ID))
		}
		if st := e2eBreakerState(t, l, p.Provider, "ideal"); st == txswitch.BreakerOpen {
			t.Errorf("%s ideal breaker after a successful probe: %q", p.Provider, st)
		}
	})
}

// TestE2EMethodsAgreeAcrossNodes: /methods must hide a method with no
// healthy provider whichever node answers. Only the leader calls providers,
// so only its breakers see an outage; a follower answering from its own
// (never used) breakers would offer a method that cannot be paid.
func TestE2EMethodsAgreeAcrossNodes(t *testing.T) {
	l := startE2E(t)
	e2eTuneProviders(t, l, 1000, 30_000)
	leader := e2eAnyAddr(t, l, true)
	for _, p := range []string{"psp_b", "psp_c"} {
		if err := l.Sims[p].SetBehaviour(sim.Behaviour{Outage: &sim.Outage{Mode: sim.OutageUnavailable}}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 20*time.Second, "both ideal breakers to open", func() bool {
		o := e2eCreateOrder(t, l, leader, e2eOrderReq(1500, "EUR", "NL"))
		e2ePay(t, l, leader, o.ID, txswitch.CreatePaymentRequest{Method: "ideal"})
		return e2eBreakerState(t, l, "psp_b", "ideal") == txswitch.BreakerOpen && e2eBreakerState(t, l, "psp_c", "ideal") == txswitch.BreakerOpen
	})
	o := e2eCreateOrder(t, l, leader, e2eOrderReq(1500, "EUR", "NL"))
	for _, n := range l.Nodes() {
		if m := e2eMethodsOf(t, l, n.APIAddr(), o.ID); e2eHas(e2eMethodNames(m), "ideal") {
			t.Errorf("node %d (leader %v) offers ideal with both its providers down: %v", n.ID(), n.APIAddr() == leader, e2eMethodNames(m))
		}
	}
}

// TestE2EInDoubt: a charge whose answer never comes is in doubt, never
// failed over, and is resolved by status inquiry to what the PSP did.
func TestE2EInDoubt(t *testing.T) {
	l := startE2E(t)
	e2eTuneProviders(t, l, 500, 5000)
	leader := e2eAnyAddr(t, l, true)
	psA, psB := l.Sims["psp_a"], l.Sims["psp_b"]
	if err := psA.SetBehaviour(sim.Behaviour{Methods: map[string]sim.MethodBehaviour{
		"*": {Ops: []txswitch.ProviderOp{txswitch.OpAuthorize}, ChargeThenTimeoutRate: 1, StallMillis: 3000},
	}}); err != nil {
		t.Fatal(err)
	}
	o := e2eCreateOrder(t, l, leader, e2eOrderReq(4321, "EUR", "NL"))
	r, p := e2ePay(t, l, leader, o.ID, txswitch.CreatePaymentRequest{Method: "card"})
	if r.Status/100 != 2 || p.Status != txswitch.PaymentInDoubt || p.Provider != "psp_a" {
		t.Fatalf("payment whose answer never came: %d %s", r.Status, r.Body)
	}
	if n := len(psB.LedgerFor(p.ID)); n != 0 {
		t.Fatalf("an in-doubt payment was failed over: psp_b has %d entries", n)
	}
	if tot := psA.Totals(p.ID); tot.Charges != 1 {
		t.Fatalf("psp_a ledger: %+v", tot)
	}
	// While in doubt, the order takes no other payment.
	if r2, _ := e2ePay(t, l, leader, o.ID, txswitch.CreatePaymentRequest{Method: "card"}); r2.Status != 409 || r2.errCode() != "payment_in_progress" {
		t.Errorf("second payment while in doubt: %d %s", r2.Status, r2.Body)
	}
	if ex := e2eExplainOf(t, l, leader, o.ID); !e2eHasCause(ex, "in_doubt") {
		t.Errorf("explain while in doubt: %+v", ex)
	}
	got := e2eWaitPayment(t, l, p.ID, "resolved", func(p txswitch.Payment) bool { return p.Status != txswitch.PaymentInDoubt })
	if got.Status != txswitch.PaymentCaptured || got.Captured.Value != 4321 {
		t.Fatalf("resolved payment: %+v", got)
	}
	if tot := psA.Totals(p.ID); tot.Charges != 1 || tot.Captured != 4321 {
		t.Fatalf("psp_a ledger after resolution: %+v", tot)
	}
	if n := len(psB.LedgerFor(p.ID)); n != 0 {
		t.Fatalf("psp_b has %d entries after resolution", n)
	}
	for _, n := range l.Nodes() {
		waitFor(t, 10*time.Second, "every node to see the order paid", func() bool {
			return e2eGetOrder(t, l, n.APIAddr(), o.ID).Status == txswitch.OrderPaid
		})
	}
	if !e2eHas(e2eEventTypes(e2eTimelineOf(t, l, leader, o.ID)), "resolved") {
		t.Errorf("timeline lacks the resolution: %v", e2eEventTypes(e2eTimelineOf(t, l, leader, o.ID)))
	}
}
