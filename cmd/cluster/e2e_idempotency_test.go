package cluster

import (
	"bytes"
	"sync"
	"testing"
	"time"

	"github.com/txswitch/txswitch/providers/sim"
	txswitch "github.com/txswitch/txswitch/switch"
)

// TestE2EIdempotency checks API.md's Idempotency-Key contract over HTTP,
// through the leader and followers alike.
func TestE2EIdempotency(t *testing.T) {
	l := startE2E(t)
	leader, follower := e2eAnyAddr(t, l, true), e2eFollowerAddr(t, l)

	t.Run("replay gives identical bytes", func(t *testing.T) {
		key := e2eNewKey("order")
		body := e2eOrderReq(1999, "EUR", "NL")
		first := e2eDo(t, l, follower, "POST", "/v1/orders", key, body)
		if first.Status != 201 {
			t.Fatalf("create: %d %s", first.Status, first.Body)
		}
		for _, addr := range []string{leader, follower} {
			again := e2eDo(t, l, addr, "POST", "/v1/orders", key, body)
			if again.Status != first.Status || !bytes.Equal(again.Body, first.Body) {
				t.Fatalf("replay via %s: %d %s, first %d %s", addr, again.Status, again.Body, first.Status, first.Body)
			}
		}
		var o txswitch.Order
		first.decode(t, &o)

		pkey := e2eNewKey("pay")
		preq := txswitch.CreatePaymentRequest{Method: "card"}
		p1 := e2eDo(t, l, leader, "POST", "/v1/orders/"+o.ID+"/payments", pkey, preq)
		p2 := e2eDo(t, l, follower, "POST", "/v1/orders/"+o.ID+"/payments", pkey, preq)
		if p1.Status != 201 || p2.Status != p1.Status || !bytes.Equal(p1.Body, p2.Body) {
			t.Fatalf("payment replay: %d %s vs %d %s", p1.Status, p1.Body, p2.Status, p2.Body)
		}
		var p txswitch.Payment
		p1.decode(t, &p)
		if e2eCharges(l, p.ID) != 1 {
			t.Fatalf("charges after a replay: %d", e2eCharges(l, p.ID))
		}
		// A replayed error is replayed too: paying the paid order again.
		ekey := e2eNewKey("pay-err")
		e1 := e2eDo(t, l, leader, "POST", "/v1/orders/"+o.ID+"/payments", ekey, preq)
		e2 := e2eDo(t, l, follower, "POST", "/v1/orders/"+o.ID+"/payments", ekey, preq)
		if e1.Status != 409 || e2.Status != e1.Status {
			t.Fatalf("paying a paid order: %d %s then %d %s", e1.Status, e1.Body, e2.Status, e2.Body)
		}

		// Same key, another body.
		other := body
		other.Amount.Value++
		r := e2eDo(t, l, follower, "POST", "/v1/orders", key, other)
		if r.Status != 422 || r.errCode() != "idempotency_key_reused" {
			t.Fatalf("reused key with another body: %d %s", r.Status, r.Body)
		}
		r = e2eDo(t, l, leader, "POST", "/v1/orders/"+o.ID+"/payments", pkey, txswitch.CreatePaymentRequest{Method: "card", Capture: "manual"})
		if r.Status != 422 || r.errCode() != "idempotency_key_reused" {
			t.Fatalf("reused payment key with another body: %d %s", r.Status, r.Body)
		}
		if e2eCharges(l, p.ID) != 1 || len(e2eGetOrder(t, l, leader, o.ID).Payments) != 1 {
			t.Fatalf("a rejected reuse changed something")
		}
	})

	t.Run("captures and refunds replay without moving money twice", func(t *testing.T) {
		o := e2eCreateOrder(t, l, leader, e2eOrderReq(5000, "EUR", "DE"))
		r, p := e2ePay(t, l, leader, o.ID, txswitch.CreatePaymentRequest{Method: "card", Capture: "manual"})
		if r.Status != 201 || p.Status != txswitch.PaymentAuthorized {
			t.Fatalf("authorize: %d %s", r.Status, r.Body)
		}
		steps := []struct {
			path string
			body any
		}{
			{"/v1/payments/" + p.ID + "/captures", txswitch.CaptureRequest{Amount: e2eEur(2000)}},
			{"/v1/payments/" + p.ID + "/refunds", txswitch.RefundRequest{Amount: e2eEur(700), Channel: "online"}},
		}
		for _, st := range steps {
			key := e2eNewKey("op")
			first := e2eDo(t, l, follower, "POST", st.path, key, st.body)
			if first.Status != 201 {
				t.Fatalf("%s: %d %s", st.path, first.Status, first.Body)
			}
			for _, addr := range []string{leader, follower} {
				again := e2eDo(t, l, addr, "POST", st.path, key, st.body)
				if again.Status != first.Status || !bytes.Equal(again.Body, first.Body) {
					t.Fatalf("%s replay: %d %s, first %s", st.path, again.Status, again.Body, first.Body)
				}
			}
			if r := e2eDo(t, l, leader, "POST", st.path, key, `{}`); r.Status != 422 || r.errCode() != "idempotency_key_reused" {
				t.Fatalf("%s with the key of another body: %d %s", st.path, r.Status, r.Body)
			}
		}
		tot := l.Sims[p.Provider].Totals(p.ID)
		got := e2eGetPayment(t, l, leader, p.ID)
		if tot.Captured != 2000 || tot.Refunded != 700 || got.Captured.Value != 2000 || got.Refunded.Value != 700 || len(got.Captures) != 1 || len(got.Refunds) != 1 {
			t.Fatalf("after replays: PSP %+v, switch %+v", tot, got)
		}
	})

	t.Run("concurrent duplicates charge once", func(t *testing.T) {
		// Slow the PSP so that the duplicates arrive while the first is
		// in flight.
		if err := l.Sims["psp_a"].SetBehaviour(sim.Behaviour{Methods: map[string]sim.MethodBehaviour{
			"*": {Latency: sim.Latency{FixedMillis: 300}},
		}}); err != nil {
			t.Fatal(err)
		}
		defer l.Sims["psp_a"].ResetBehaviour()
		o := e2eCreateOrder(t, l, leader, e2eOrderReq(7777, "EUR", "DE"))
		key := e2eNewKey("dup")
		body := e2eMustJSON(t, txswitch.CreatePaymentRequest{Method: "card", PaymentData: map[string]string{"token": "tok_1"}})
		addrs := l.APIAddrs()
		const n = 20
		answers := make([]e2eResp, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				<-start
				answers[i], errs[i] = e2eSend(addrs[i%len(addrs)], e2eRawReq{Method: "POST", Path: "/v1/orders/" + o.ID + "/payments",
					Headers: e2eMerchantHeaders(l.APIKey, key), Body: body})
			}(i)
		}
		close(start)
		wg.Wait()
		var ok []e2eResp
		inProgress := 0
		for i, a := range answers {
			switch {
			case errs[i] != nil:
				t.Fatalf("request %d: %v", i, errs[i])
			case a.Status/100 == 2:
				ok = append(ok, a)
			case a.Status == 409 && a.errCode() == "idempotency_request_in_progress":
				inProgress++
			default:
				t.Fatalf("request %d: unexpected %d %s", i, a.Status, a.Body)
			}
		}
		if len(ok) == 0 {
			// Every one of them overlapped the first: retry to get the result.
			waitFor(t, 20*time.Second, "the first request's result", func() bool {
				a, err := e2eSend(leader, e2eRawReq{Method: "POST", Path: "/v1/orders/" + o.ID + "/payments", Headers: e2eMerchantHeaders(l.APIKey, key), Body: body})
				if err == nil && a.Status/100 == 2 {
					ok = append(ok, a)
					return true
				}
				return false
			})
		}
		for _, a := range ok[1:] {
			if a.Status != ok[0].Status || !bytes.Equal(a.Body, ok[0].Body) {
				t.Fatalf("duplicates answered differently:\n%d %s\n%d %s", ok[0].Status, ok[0].Body, a.Status, a.Body)
			}
		}
		// Once settled, a late duplicate gets the same bytes as well.
		late, err := e2eSend(follower, e2eRawReq{Method: "POST", Path: "/v1/orders/" + o.ID + "/payments", Headers: e2eMerchantHeaders(l.APIKey, key), Body: body})
		if err != nil || late.Status != ok[0].Status || !bytes.Equal(late.Body, ok[0].Body) {
			t.Fatalf("late duplicate: %v %d %s", err, late.Status, late.Body)
		}
		var p txswitch.Payment
		ok[0].decode(t, &p)
		t.Logf("%d answers 2xx, %d in progress", len(ok), inProgress)
		if p.Status != txswitch.PaymentCaptured {
			t.Fatalf("payment: %s", ok[0].Body)
		}
		got := e2eGetOrder(t, l, leader, o.ID)
		if len(got.Payments) != 1 || got.Captured.Value != 7777 {
			t.Fatalf("order after %d duplicates: %d payments, captured %d", n, len(got.Payments), got.Captured.Value)
		}
		if c := e2eCharges(l, p.ID); c != 1 {
			t.Fatalf("%d charges for one payment", c)
		}
		// Across every payment id, the PSPs saw one authorization for
		// this order.
		auths := 0
		for _, s := range l.Sims {
			for _, e := range s.Ledger() {
				if e.Op == txswitch.OpAuthorize && e.Amount.Value == 7777 {
					auths++
				}
			}
		}
		if auths != 1 {
			t.Fatalf("%d authorizations of 77.77 at the PSPs", auths)
		}
	})
}
