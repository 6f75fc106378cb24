package txswitch_test

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	txswitch "github.com/txswitch/txswitch/switch"
	"github.com/txswitch/txswitch/switch/memory"
)

func TestConcurrentDuplicateWhileCallInFlight(t *testing.T) {
	h := newHarness(t)
	o := h.createOrder(1000)
	release := make(chan struct{})
	h.a.Push(txswitch.OpAuthorize, memory.Step{Result: txswitch.ProviderResult{Outcome: txswitch.OutcomeApproved, ProviderRef: "r"}, Block: release})
	type answer struct {
		r   txswitch.Reply
		err error
	}
	first := make(chan answer, 1)
	go func() {
		r, err := h.svc.CreatePayment(h.ctx, caller("dup"), o.ID, txswitch.CreatePaymentRequest{Method: "card"})
		first <- answer{r, err}
	}()
	for len(h.a.CallsFor(txswitch.OpAuthorize)) == 0 {
		runtime.Gosched() // wait until the call is at the provider
	}
	_, err := h.svc.CreatePayment(h.ctx, caller("dup"), o.ID, txswitch.CreatePaymentRequest{Method: "card"})
	wantErr(t, err, 409, "idempotency_request_in_progress")
	_, err = h.svc.CreatePayment(h.ctx, caller(""), o.ID, txswitch.CreatePaymentRequest{Method: "card"})
	wantErr(t, err, 409, "payment_in_progress")
	// The resolver leaves a call in flight on this node alone, however old.
	h.clock.Advance(time.Hour)
	if n, err := h.svc.ResolveInDoubt(h.ctx); err != nil || n != 0 || len(h.a.CallsFor(txswitch.OpStatus)) != 0 {
		t.Fatalf("resolver raced the call: %d %v", n, err)
	}
	close(release)
	a := <-first
	if a.err != nil || decode[txswitch.Payment](t, a.r).Status != txswitch.PaymentCaptured {
		t.Fatalf("first = %v %s", a.err, a.r.Body)
	}
	if n := len(h.a.CallsFor(txswitch.OpAuthorize)); n != 1 {
		t.Fatalf("authorize calls = %d", n)
	}
}

func TestApplyRejectsSecondOpenPayment(t *testing.T) {
	h := newHarness(t)
	o := h.createOrder(1000)
	intent := func(id string) string {
		return fmt.Sprintf(`{"v":1,"type":"payment_intent","merchant_id":%q,"order_id":%q,"payment_id":%q,"method":"card","amount":{"value":500,"currency":"EUR"},"surcharge":{"value":0,"currency":"EUR"},"capture":"automatic","provider":"psp_a"}`, merchantA, o.ID, id)
	}
	if err := h.raw(intent("pay_x1")); err != nil {
		t.Fatal(err)
	}
	h.unchanged(func() { wantErr(t, h.raw(intent("pay_x2")), 409, "payment_in_progress") })
	h.unchanged(func() { wantErr(t, h.raw(intent("pay_x1")), 409, "invalid_command") })
}

func TestConcurrentOrders(t *testing.T) {
	h := newHarness(t)
	const n = 20
	type answer struct {
		key  string
		body string
		err  error
	}
	answers := make(chan answer, n)
	for i := range n {
		go func() {
			key := fmt.Sprintf("k%d", i%5)
			r, err := h.svc.CreateOrder(h.ctx, caller(key), orderReq(100))
			answers <- answer{key, string(r.Body), err}
		}()
	}
	// Same key and body from racing clients: every client gets the same
	// order, and exactly one order per key exists.
	byKey := map[string]string{}
	for range n {
		a := <-answers
		if a.err != nil {
			t.Fatal(a.err)
		}
		if prev, ok := byKey[a.key]; ok && prev != a.body {
			t.Fatalf("key %s answered differently:\n%s\n%s", a.key, prev, a.body)
		}
		byKey[a.key] = a.body
	}
	evs, err := h.svc.ReadOutbox(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	orders := 0
	for _, e := range evs {
		if e.Kind == "timeline" && strings.Contains(string(e.Resource), `"order_created"`) {
			orders++
		}
	}
	if orders != 5 {
		t.Fatalf("orders created = %d, want 5", orders)
	}
}
