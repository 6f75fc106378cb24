package cluster

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/txswitch/txswitch/providers/sim"
	txswitch "github.com/txswitch/txswitch/switch"
)

// TestE2EFlows walks every merchant endpoint and payment status transition
// over HTTP, through a follower (which forwards writes), and checks each
// money movement against the PSP ledgers.
func TestE2EFlows(t *testing.T) {
	l := startE2E(t)
	addr := e2eFollowerAddr(t, l)

	t.Run("methods by country", func(t *testing.T) {
		nl := e2eCreateOrder(t, l, addr, e2eOrderReq(4998, "EUR", "NL"))
		got := e2eMethodNames(e2eMethodsOf(t, l, addr, nl.ID))
		for _, m := range []string{"card", "ideal", "klarna_paylater", "sepa_debit"} {
			if !e2eHas(got, m) {
				t.Errorf("NL order: %s missing from %v", m, got)
			}
		}
		for _, m := range []string{"bancontact", "mobilepay"} {
			if e2eHas(got, m) {
				t.Errorf("NL order: %s offered: %v", m, got)
			}
		}
		be := e2eCreateOrder(t, l, addr, e2eOrderReq(4998, "EUR", "BE"))
		got = e2eMethodNames(e2eMethodsOf(t, l, addr, be.ID))
		if !e2eHas(got, "bancontact") || e2eHas(got, "ideal") {
			t.Errorf("BE order methods: %v", got)
		}
		// Asked through a follower: the offer is still recorded.
		if !e2eHas(e2eEventTypes(e2eTimelineOf(t, l, addr, nl.ID)), "methods_offered") {
			t.Errorf("methods offer not on the timeline")
		}
	})

	t.Run("card automatic then partial refunds", func(t *testing.T) {
		o := e2eCreateOrder(t, l, addr, e2eOrderReq(4998, "EUR", "NL"))
		r, p := e2ePay(t, l, addr, o.ID, txswitch.CreatePaymentRequest{Method: "card", PaymentData: map[string]string{"token": "tok_visa"}})
		if r.Status != 201 || p.Status != txswitch.PaymentCaptured || !strings.HasPrefix(p.ID, "pay_") || p.Captured.Value != 4998 {
			t.Fatalf("pay: %d %s", r.Status, r.Body)
		}
		if p.Provider != "psp_a" {
			t.Errorf("card routed to %s, want psp_a first", p.Provider)
		}
		if tot := l.Sims["psp_a"].Totals(p.ID); tot.Charges != 1 || tot.Captured != 4998 {
			t.Fatalf("psp_a ledger: %+v", tot)
		}
		if got := e2eGetOrder(t, l, addr, o.ID); got.Status != txswitch.OrderPaid || got.Captured.Value != 4998 || len(got.Payments) != 1 {
			t.Fatalf("order after pay: %+v", got)
		}

		rr := e2eDo(t, l, addr, "POST", "/v1/payments/"+p.ID+"/refunds", e2eNewKey("ref"), txswitch.RefundRequest{Amount: e2eEur(1000), Reason: "return", Channel: "pos"})
		var ref txswitch.Refund
		if rr.Status != 201 {
			t.Fatalf("refund: %d %s", rr.Status, rr.Body)
		}
		rr.decode(t, &ref)
		if !strings.HasPrefix(ref.ID, "ref_") || ref.Channel != "pos" || ref.Amount.Value != 1000 {
			t.Fatalf("refund answer: %s", rr.Body)
		}
		if got := e2eGetPayment(t, l, addr, p.ID); got.Status != txswitch.PaymentPartiallyRefunded || got.Refunded.Value != 1000 {
			t.Fatalf("payment after partial refund: %+v", got)
		}
		if got := e2eGetOrder(t, l, addr, o.ID); got.Status != txswitch.OrderPartiallyRefunded || got.Refunded.Value != 1000 {
			t.Fatalf("order after partial refund: %+v", got)
		}
		// The rest: no amount means everything captured and not refunded.
		rr = e2eDo(t, l, addr, "POST", "/v1/payments/"+p.ID+"/refunds", e2eNewKey("ref"), txswitch.RefundRequest{Reason: "return", Channel: "pos"})
		if rr.Status != 201 {
			t.Fatalf("refund rest: %d %s", rr.Status, rr.Body)
		}
		if got := e2eGetPayment(t, l, addr, p.ID); got.Status != txswitch.PaymentRefunded || got.Refunded.Value != 4998 {
			t.Fatalf("payment after full refund: %+v", got)
		}
		if got := e2eGetOrder(t, l, addr, o.ID); got.Status != txswitch.OrderRefunded || got.Refunded.Value != 4998 {
			t.Fatalf("order after full refund: %+v", got)
		}
		if tot := l.Sims["psp_a"].Totals(p.ID); tot.Charges != 1 || tot.Refunded != 4998 {
			t.Fatalf("psp_a ledger after refunds: %+v", tot)
		}
		types := e2eEventTypes(e2eTimelineOf(t, l, addr, o.ID))
		for _, want := range []string{"order_created", "routing_decision", "provider_response", "refund_succeeded"} {
			if !e2eHas(types, want) {
				t.Errorf("timeline lacks %s: %v", want, types)
			}
		}
	})

	t.Run("manual capture in two parts", func(t *testing.T) {
		o := e2eCreateOrder(t, l, addr, e2eOrderReq(3000, "EUR", "DE"))
		r, p := e2ePay(t, l, addr, o.ID, txswitch.CreatePaymentRequest{Method: "card", Capture: "manual"})
		if r.Status != 201 || p.Status != txswitch.PaymentAuthorized || p.Authorized.Value != 3000 || p.Captured.Value != 0 {
			t.Fatalf("authorize: %d %s", r.Status, r.Body)
		}
		if got := e2eGetOrder(t, l, addr, o.ID); got.Status != txswitch.OrderAuthorized {
			t.Fatalf("order after authorization: %s", got.Status)
		}
		if tot := l.Sims[p.Provider].Totals(p.ID); tot.Charges != 1 || tot.Authorized != 3000 || tot.Captured != 0 {
			t.Fatalf("ledger after authorization: %+v", tot)
		}
		cr := e2eDo(t, l, addr, "POST", "/v1/payments/"+p.ID+"/captures", e2eNewKey("cap"), txswitch.CaptureRequest{Amount: e2eEur(1200)})
		if cr.Status != 201 {
			t.Fatalf("partial capture: %d %s", cr.Status, cr.Body)
		}
		if got := e2eGetPayment(t, l, addr, p.ID); got.Captured.Value != 1200 || got.Authorized.Value != 3000 {
			t.Fatalf("payment after partial capture: %+v", got)
		}
		cr = e2eDo(t, l, addr, "POST", "/v1/payments/"+p.ID+"/captures", e2eNewKey("cap"), nil)
		if cr.Status != 201 {
			t.Fatalf("capture rest: %d %s", cr.Status, cr.Body)
		}
		got := e2eGetPayment(t, l, addr, p.ID)
		if got.Status != txswitch.PaymentCaptured || got.Captured.Value != 3000 || len(got.Captures) != 2 {
			t.Fatalf("payment after capturing the rest: %+v", got)
		}
		if o := e2eGetOrder(t, l, addr, o.ID); o.Status != txswitch.OrderPaid || o.Captured.Value != 3000 {
			t.Fatalf("order after capture: %+v", o)
		}
		if tot := l.Sims[p.Provider].Totals(p.ID); tot.Charges != 1 || tot.Captured != 3000 {
			t.Fatalf("ledger after captures: %+v", tot)
		}
		if !e2eHas(e2eEventTypes(e2eTimelineOf(t, l, addr, o.ID)), "capture_succeeded") {
			t.Errorf("timeline lacks capture_succeeded")
		}
	})

	t.Run("void an authorization", func(t *testing.T) {
		o := e2eCreateOrder(t, l, addr, e2eOrderReq(2500, "EUR", "FR"))
		r, p := e2ePay(t, l, addr, o.ID, txswitch.CreatePaymentRequest{Method: "card", Capture: "manual"})
		if r.Status != 201 || p.Status != txswitch.PaymentAuthorized {
			t.Fatalf("authorize: %d %s", r.Status, r.Body)
		}
		cr := e2eDo(t, l, addr, "POST", "/v1/payments/"+p.ID+"/cancel", e2eNewKey("cxl"), nil)
		if cr.Status != 200 {
			t.Fatalf("cancel: %d %s", cr.Status, cr.Body)
		}
		if got := e2eGetPayment(t, l, addr, p.ID); got.Status != txswitch.PaymentCancelled {
			t.Fatalf("payment after cancel: %+v", got)
		}
		if got := e2eGetOrder(t, l, addr, o.ID); got.Authorized.Value != 0 || got.Captured.Value != 0 {
			t.Fatalf("order after cancel still holds money: %+v", got)
		}
		if tot := l.Sims[p.Provider].Totals(p.ID); tot.Authorized != 0 || tot.Captured != 0 {
			t.Fatalf("ledger after cancel: %+v", tot)
		}
	})

	// A partial shipment whose other items will never ship: the rest of
	// the authorization is released at the PSP (its own ledger says so),
	// and the order is paid for what shipped.
	t.Run("release the rest after a partial capture", func(t *testing.T) {
		e2eWaitVersion(t, l, txswitch.VersionRelease)
		o := e2eCreateOrder(t, l, addr, e2eOrderReq(5000, "EUR", "DE"))
		r, p := e2ePay(t, l, addr, o.ID, txswitch.CreatePaymentRequest{Method: "card", Capture: "manual"})
		if r.Status != 201 || p.Status != txswitch.PaymentAuthorized {
			t.Fatalf("authorize: %d %s", r.Status, r.Body)
		}
		if cr := e2eDo(t, l, addr, "POST", "/v1/payments/"+p.ID+"/captures", e2eNewKey("cap"), txswitch.CaptureRequest{Amount: e2eEur(1800)}); cr.Status != 201 {
			t.Fatalf("capture: %d %s", cr.Status, cr.Body)
		}
		cr := e2eDo(t, l, addr, "POST", "/v1/payments/"+p.ID+"/cancel", e2eNewKey("rel"), nil)
		if cr.Status != 200 {
			t.Fatalf("release: %d %s", cr.Status, cr.Body)
		}
		got := e2eGetPayment(t, l, addr, p.ID)
		if got.Status != txswitch.PaymentCaptured || got.Authorized.Value != 1800 || got.Released == nil || got.Released.Value != 3200 {
			t.Fatalf("payment after the release: %+v", got)
		}
		if ord := e2eGetOrder(t, l, addr, o.ID); ord.Status != txswitch.OrderPaid || ord.Authorized.Value != 1800 || ord.Captured.Value != 1800 {
			t.Fatalf("order after the release: %s authorized %d captured %d", ord.Status, ord.Authorized.Value, ord.Captured.Value)
		}
		if tot := l.Sims[p.Provider].Totals(p.ID); tot.Charges != 1 || tot.Authorized != 1800 || tot.Captured != 1800 || tot.Released != 3200 {
			t.Fatalf("PSP ledger after the release: %+v", tot)
		}
		if more := e2eDo(t, l, addr, "POST", "/v1/payments/"+p.ID+"/captures", e2eNewKey("cap"), txswitch.CaptureRequest{Amount: e2eEur(1)}); more.Status != 409 || !strings.Contains(string(more.Body), `"invalid_state"`) {
			t.Fatalf("capture after the release: %d %s", more.Status, more.Body)
		}
	})

	t.Run("decline leaves the order open", func(t *testing.T) {
		o := e2eCreateOrder(t, l, addr, e2eOrderReq(2410, "EUR", "NL"))
		r, p := e2ePay(t, l, addr, o.ID, txswitch.CreatePaymentRequest{Method: "card", Amount: e2eEur(1205)})
		if r.Status != 201 || p.Status != txswitch.PaymentDeclined || p.Failure == nil || p.Failure.Code != "do_not_honor" {
			t.Fatalf("declined payment: %d %s", r.Status, r.Body)
		}
		if e2eCharges(l, p.ID) != 0 {
			t.Fatalf("a declined payment was charged")
		}
		// Declines are not failed over: psp_b never saw it.
		if n := len(l.Sims["psp_b"].LedgerFor(p.ID)); n != 0 {
			t.Fatalf("decline was failed over to psp_b (%d entries)", n)
		}
		got := e2eGetOrder(t, l, addr, o.ID)
		// The order's status then says the last attempt failed ("failed");
		// what matters is that it is still payable, checked below.
		if got.Status == txswitch.OrderPaid || got.Captured.Value != 0 || got.Authorized.Value != 0 {
			t.Fatalf("order after decline: %+v", got)
		}
		ex := e2eExplainOf(t, l, addr, o.ID)
		t.Logf("explain of a decline: %q", ex.Summary)
		if !e2eHasCause(ex, "declined") || !strings.Contains(strings.ToLower(ex.Summary), "declin") {
			t.Errorf("explain of a declined order: %+v", ex)
		}
		r2, p2 := e2ePay(t, l, addr, o.ID, txswitch.CreatePaymentRequest{Method: "card"})
		if r2.Status != 201 || p2.Status != txswitch.PaymentCaptured || p2.Amount.Value != 2410 {
			t.Fatalf("second attempt: %d %s", r2.Status, r2.Body)
		}
		if got := e2eGetOrder(t, l, addr, o.ID); got.Status != txswitch.OrderPaid || len(got.Payments) != 2 {
			t.Fatalf("order after second attempt: %+v", got)
		}
	})

	t.Run("ideal redirect with duplicated notifications", func(t *testing.T) {
		if err := l.Sims["psp_b"].SetBehaviour(sim.Behaviour{Methods: map[string]sim.MethodBehaviour{
			"ideal": {Async: &sim.Async{CompleteAfterMillis: 500, Duplicates: 3}},
		}}); err != nil {
			t.Fatal(err)
		}
		defer l.Sims["psp_b"].ResetBehaviour()
		o := e2eCreateOrder(t, l, addr, e2eOrderReq(4998, "EUR", "NL"))
		r, p := e2ePay(t, l, addr, o.ID, txswitch.CreatePaymentRequest{Method: "ideal"})
		if r.Status/100 != 2 || p.Status != txswitch.PaymentPending || p.RedirectURL == "" || p.Provider != "psp_b" {
			t.Fatalf("ideal: %d %s", r.Status, r.Body)
		}
		if p.Surcharge == nil || p.Surcharge.Value != 29 {
			t.Errorf("ideal surcharge: %+v", p.Surcharge)
		}
		got := e2eWaitPayment(t, l, p.ID, "captured", func(p txswitch.Payment) bool { return p.Status == txswitch.PaymentCaptured })
		if got.Captured.Value == 0 {
			t.Fatalf("captured payment without captured amount: %+v", got)
		}
		// Let every duplicate arrive, then check the effect happened once.
		waitFor(t, 10*time.Second, "the duplicate notifications", func() bool {
			return l.Sims["psp_b"].Stats().NotificationsSent >= 4
		})
		if tot := l.Sims["psp_b"].Totals(p.ID); tot.Charges != 1 || tot.Captured != got.Captured.Value {
			t.Fatalf("psp_b ledger %+v vs payment %+v", tot, got)
		}
		for _, n := range l.Nodes() {
			if o := e2eGetOrder(t, l, n.APIAddr(), o.ID); o.Status != txswitch.OrderPaid || o.Captured != got.Captured {
				t.Fatalf("node %d: order %+v", n.ID(), o)
			}
		}
		notes := 0
		for _, typ := range e2eEventTypes(e2eTimelineOf(t, l, addr, o.ID)) {
			if typ == "notification" {
				notes++
			}
		}
		if notes != 1 {
			t.Errorf("%d notification events for one completion delivered 4 times", notes)
		}
		if p := e2eGetPayment(t, l, addr, p.ID); p.Captured != got.Captured || p.Status != txswitch.PaymentCaptured {
			t.Fatalf("payment changed after duplicates: %+v", p)
		}
	})

	t.Run("abandoned ideal redirect expires, then card pays the order", func(t *testing.T) {
		// The simulated bank would complete only after ten minutes: the
		// shopper has walked away.
		if err := l.Sims["psp_b"].SetBehaviour(sim.Behaviour{Methods: map[string]sim.MethodBehaviour{
			"ideal": {Async: &sim.Async{CompleteAfterMillis: 600_000}},
		}}); err != nil {
			t.Fatal(err)
		}
		defer l.Sims["psp_b"].ResetBehaviour()
		orig := e2eRoutingConfig(t, l)
		c := e2eRoutingConfig(t, l)
		for i := range c.Methods {
			if c.Methods[i].Name == "ideal" {
				c.Methods[i].PendingExpirySeconds = 1
			}
		}
		e2ePutConfig(t, l, c)
		defer func() { orig.Version = 0; e2ePutConfig(t, l, orig) }()
		o := e2eCreateOrder(t, l, addr, e2eOrderReq(3000, "EUR", "NL"))
		r, p := e2ePay(t, l, addr, o.ID, txswitch.CreatePaymentRequest{Method: "ideal"})
		if r.Status/100 != 2 || p.Status != txswitch.PaymentPending {
			t.Fatalf("ideal: %d %s", r.Status, r.Body)
		}
		// One unsettled payment at a time: the card must wait.
		if r, _ := e2ePay(t, l, addr, o.ID, txswitch.CreatePaymentRequest{Method: "card"}); r.Status/100 == 2 {
			t.Fatalf("a second payment was accepted while ideal was pending: %d %s", r.Status, r.Body)
		}
		got := e2eWaitPayment(t, l, p.ID, "expired", func(p txswitch.Payment) bool { return p.Status == txswitch.PaymentFailed })
		if got.Failure == nil || got.Failure.Code != txswitch.CodeExpired {
			t.Fatalf("expired payment: %+v", got)
		}
		// The PSP's own ledger: cancelled before completion, no charge.
		if tot := l.Sims["psp_b"].Totals(p.ID); tot.Charges != 0 || tot.Captured != 0 {
			t.Fatalf("psp_b totals for the expired payment: %+v", tot)
		}
		entries := l.Sims["psp_b"].LedgerFor(p.ID)
		if len(entries) != 2 || entries[0].Code != sim.DeclineCancelledPending || entries[1].Op != txswitch.OpCancel {
			t.Fatalf("psp_b ledger: %+v", entries)
		}
		if !e2eHas(e2eEventTypes(e2eTimelineOf(t, l, addr, o.ID)), "payment_expired") {
			t.Error("timeline has no payment_expired event")
		}
		if ex := e2eExplainOf(t, l, addr, o.ID); !e2eHasCause(ex, "payment_expired") {
			t.Errorf("explain of an expired payment: %+v", ex)
		}
		r2, p2 := e2ePay(t, l, addr, o.ID, txswitch.CreatePaymentRequest{Method: "card"})
		if r2.Status != 201 || p2.Status != txswitch.PaymentCaptured {
			t.Fatalf("card after expiry: %d %s", r2.Status, r2.Body)
		}
		if got := e2eGetOrder(t, l, addr, o.ID); got.Status != txswitch.OrderPaid {
			t.Fatalf("order after card: %s", got.Status)
		}
	})

	t.Run("fraud hold approved", func(t *testing.T) {
		o := e2eCreateOrder(t, l, addr, e2eOrderReq(txswitch.DefaultCardHoldAmount, "EUR", "NL"))
		r, p := e2ePay(t, l, addr, o.ID, txswitch.CreatePaymentRequest{Method: "card"})
		if r.Status/100 != 2 || p.Status != txswitch.PaymentHeldForReview {
			t.Fatalf("high-value card: %d %s", r.Status, r.Body)
		}
		if n := len(l.Sims["psp_a"].LedgerFor(p.ID)) + len(l.Sims["psp_b"].LedgerFor(p.ID)); n != 0 {
			t.Fatalf("a held payment reached a PSP (%d entries)", n)
		}
		if got := e2eGetOrder(t, l, addr, o.ID); got.Status != txswitch.OrderHeldForReview {
			t.Fatalf("order of a held payment: %s", got.Status)
		}
		if ex := e2eExplainOf(t, l, addr, o.ID); !e2eHasCause(ex, "held_for_review") {
			t.Errorf("explain of a held order: %+v", ex)
		}
		inQueue := func() bool {
			var q txswitch.ReviewsResponse
			if r := e2eAdmin(t, l, addr, "GET", "/v1/admin/reviews", nil); r.Status != 200 {
				t.Fatalf("review queue: %d %s", r.Status, r.Body)
			} else {
				r.decode(t, &q)
			}
			for _, h := range q.Payments {
				if h.PaymentID == p.ID {
					return h.OrderID == o.ID && h.Rule != "" && !h.OrderExpiresAt.IsZero()
				}
			}
			return false
		}
		if !inQueue() {
			t.Fatalf("the held payment %s is not in the review queue", p.ID)
		}
		rv := e2eAdmin(t, l, addr, "POST", "/v1/admin/payments/"+p.ID+"/review", txswitch.ReviewRequest{Decision: "approve", Note: "called the shopper"})
		if rv.Status != 200 {
			t.Fatalf("approve: %d %s", rv.Status, rv.Body)
		}
		got := e2eGetPayment(t, l, addr, p.ID)
		if got.Status != txswitch.PaymentCaptured || got.Captured.Value != txswitch.DefaultCardHoldAmount {
			t.Fatalf("approved payment: %+v", got)
		}
		if inQueue() {
			t.Errorf("the approved payment %s is still in the review queue", p.ID)
		}
		if e2eCharges(l, p.ID) != 1 {
			t.Fatalf("approved payment charged %d times", e2eCharges(l, p.ID))
		}
		types := e2eEventTypes(e2eTimelineOf(t, l, addr, o.ID))
		if !e2eHas(types, "held_for_review") || !e2eHas(types, "review_approved") {
			t.Errorf("timeline of a reviewed order: %v", types)
		}
	})

	t.Run("fraud hold rejected", func(t *testing.T) {
		o := e2eCreateOrder(t, l, addr, e2eOrderReq(txswitch.DefaultCardHoldAmount+100, "EUR", "NL"))
		r, p := e2ePay(t, l, addr, o.ID, txswitch.CreatePaymentRequest{Method: "card"})
		if r.Status/100 != 2 || p.Status != txswitch.PaymentHeldForReview {
			t.Fatalf("high-value card: %d %s", r.Status, r.Body)
		}
		rv := e2eAdmin(t, l, addr, "POST", "/v1/admin/payments/"+p.ID+"/review", txswitch.ReviewRequest{Decision: "reject"})
		if rv.Status/100 != 2 {
			t.Fatalf("reject: %d %s", rv.Status, rv.Body)
		}
		got := e2eGetPayment(t, l, addr, p.ID)
		if got.Status != txswitch.PaymentFailed && got.Status != txswitch.PaymentCancelled {
			t.Fatalf("rejected payment: %+v", got)
		}
		if n := len(l.Sims["psp_a"].LedgerFor(p.ID)) + len(l.Sims["psp_b"].LedgerFor(p.ID)); n != 0 {
			t.Fatalf("a rejected payment reached a PSP (%d entries)", n)
		}
		if ex := e2eExplainOf(t, l, addr, o.ID); !e2eHasCause(ex, "review_rejected") {
			t.Errorf("explain of a rejected order: %+v", ex)
		}
		// A second review of a settled payment is refused and changes nothing.
		rv = e2eAdmin(t, l, addr, "POST", "/v1/admin/payments/"+p.ID+"/review", txswitch.ReviewRequest{Decision: "approve"})
		if rv.Status != 409 {
			t.Errorf("second review: %d %s", rv.Status, rv.Body)
		}
		if e2eCharges(l, p.ID) != 0 {
			t.Fatalf("a rejected payment was charged")
		}
	})

	t.Run("a provider that approved payments stays configured", func(t *testing.T) {
		waitFor(t, 10*time.Second, "every node at cluster version 11", func() bool {
			for _, n := range l.Nodes() {
				if n.machine.ClusterVersion() < txswitch.VersionFollowUps {
					return false
				}
			}
			return true
		})
		o := e2eCreateOrder(t, l, addr, e2eOrderReq(2500, "EUR", "NL"))
		r, p := e2ePay(t, l, addr, o.ID, txswitch.CreatePaymentRequest{Method: "card", Capture: "manual", PaymentData: map[string]string{"token": "tok_visa"}})
		if r.Status != 201 || p.Status != txswitch.PaymentAuthorized || p.Provider != "psp_a" {
			t.Fatalf("pay: %d %s", r.Status, r.Body)
		}
		before := e2eRoutingConfig(t, l)
		// psp_a out of every route (a method left without one disabled).
		unrouted := e2eRoutingConfig(t, l)
		for i := range unrouted.Methods {
			mc := &unrouted.Methods[i]
			mc.Routes = slices.DeleteFunc(mc.Routes, func(rc txswitch.RouteConfig) bool { return rc.Provider == "psp_a" })
			if len(mc.Routes) == 0 {
				mc.Enabled = false
			}
		}
		dropped := unrouted
		dropped.Providers = slices.DeleteFunc(slices.Clone(unrouted.Providers), func(pc txswitch.ProviderConfig) bool { return pc.Name == "psp_a" })
		rr := e2eAdmin(t, l, addr, "PUT", "/v1/admin/config", dropped)
		if rr.Status != 409 || !strings.Contains(string(rr.Body), txswitch.CodeProviderHasPayments) {
			t.Fatalf("PUT without psp_a: %d %s", rr.Status, rr.Body)
		}
		if got := e2eRoutingConfig(t, l); got.Version != before.Version {
			t.Fatalf("the refused configuration moved the version from %d to %d", before.Version, got.Version)
		}
		if st := e2eAdminStatus(t, l, addr); !slices.ContainsFunc(st.ProvidersWithPayments, func(p txswitch.ProviderPayments) bool { return p.Provider == "psp_a" }) {
			t.Fatalf("status lists %+v as providers with payments, without psp_a", st.ProvidersWithPayments)
		}
		e2ePutConfig(t, l, unrouted)
		// Captured at psp_a, which no route names any more.
		cr := e2eDo(t, l, addr, "POST", "/v1/payments/"+p.ID+"/captures", e2eNewKey("cap"), txswitch.CaptureRequest{})
		if cr.Status != 201 {
			t.Fatalf("capture at the unrouted psp_a: %d %s", cr.Status, cr.Body)
		}
		if tot := l.Sims["psp_a"].Totals(p.ID); tot.Captured != 2500 {
			t.Fatalf("psp_a ledger after the capture: %+v", tot)
		}
		o2 := e2eCreateOrder(t, l, addr, e2eOrderReq(2500, "EUR", "NL"))
		if r, p2 := e2ePay(t, l, addr, o2.ID, txswitch.CreatePaymentRequest{Method: "card", PaymentData: map[string]string{"token": "tok_visa"}}); r.Status != 201 || p2.Provider == "psp_a" {
			t.Fatalf("a new card payment: %d at %s, want another provider than psp_a", r.Status, p2.Provider)
		}
		before.Version = 0
		e2ePutConfig(t, l, before)
	})

	t.Run("health endpoints", func(t *testing.T) {
		for _, n := range l.Nodes() {
			for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
				r, err := e2eSend(n.APIAddr(), e2eRawReq{Method: "GET", Path: path})
				if err != nil || r.Status != 200 {
					t.Errorf("node %d %s: %v %d", n.ID(), path, err, r.Status)
				}
			}
		}
	})
}

func e2eHasCause(e txswitch.Explanation, code string) bool {
	for _, c := range e.Causes {
		if c.Code == code {
			return true
		}
	}
	return false
}
