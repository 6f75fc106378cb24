package txswitch_test

import (
	"bytes"
	"testing"

	txswitch "github.com/txswitch/txswitch/switch"
)

func TestCreateAndGetOrder(t *testing.T) {
	h := newHarness(t)
	o := h.createOrder(4998)
	if o.Status != txswitch.OrderCreated || o.ID == "" || o.Amount.Value != 4998 || o.MerchantID != merchantA {
		t.Fatalf("created order = %+v", o)
	}
	got := h.order(o.ID)
	if got.ID != o.ID || got.Status != txswitch.OrderCreated || len(got.Payments) != 0 {
		t.Fatalf("GetOrder = %+v", got)
	}
	// Another merchant never sees it.
	_, err := h.svc.GetOrder(h.ctx, txswitch.Caller{MerchantID: merchantB}, o.ID)
	wantErr(t, err, 404, "order_not_found")
	if evs := h.timeline(o.ID); len(evs) != 1 || evs[0].Type != "order_created" || evs[0].Seq != 1 {
		t.Fatalf("timeline = %+v", evs)
	}
}

func TestCreateOrderValidation(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*txswitch.CreateOrderRequest)
		code   string
		field  string
	}{
		{"zero amount", func(r *txswitch.CreateOrderRequest) { r.Amount.Value = 0 }, "invalid_amount", "amount.value"},
		{"bad currency", func(r *txswitch.CreateOrderRequest) { r.Amount.Currency = "eur" }, "invalid_currency", "amount.currency"},
		{"no amount", func(r *txswitch.CreateOrderRequest) { r.Amount = txswitch.Money{} }, "invalid_amount", "amount"},
		{"bad country", func(r *txswitch.CreateOrderRequest) { r.Customer.Country = "XX" }, "invalid_country", "customer.country"},
		{"bad channel", func(r *txswitch.CreateOrderRequest) { r.Channel = "fax" }, "invalid_channel", "channel"},
		{"lines mismatch", func(r *txswitch.CreateOrderRequest) {
			r.Lines = []txswitch.OrderLine{{SKU: "a", Quantity: 2, UnitAmount: 100}}
		}, "lines_mismatch", "lines"},
		{"line without sku", func(r *txswitch.CreateOrderRequest) {
			r.Lines = []txswitch.OrderLine{{Quantity: 1, UnitAmount: 4998}}
		}, "invalid_line", "lines[0].sku"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			req := orderReq(4998)
			tc.mutate(&req)
			h.unchanged(func() {
				_, err := h.svc.CreateOrder(h.ctx, caller("k1"), req)
				wantErr(t, err, 400, tc.code)
				if e := err.(*txswitch.Error); e.Field != tc.field {
					t.Fatalf("field = %q, want %q", e.Field, tc.field)
				}
			})
		})
	}
}

func TestCreateOrderWithLines(t *testing.T) {
	h := newHarness(t)
	req := orderReq(4998)
	req.Lines = []txswitch.OrderLine{{SKU: "SKU-1", Quantity: 2, UnitAmount: 2499, Category: "books"}}
	r, err := h.svc.CreateOrder(h.ctx, caller(""), req)
	if err != nil || r.Status != 201 {
		t.Fatalf("CreateOrder = %v, %v", r.Status, err)
	}
	if o := decode[txswitch.Order](t, r); len(o.Lines) != 1 || o.Lines[0].SKU != "SKU-1" {
		t.Fatalf("lines = %+v", o.Lines)
	}
}

func TestIdempotencyCreateOrder(t *testing.T) {
	h := newHarness(t)
	r1, err := h.svc.CreateOrder(h.ctx, caller("key-1"), orderReq(1000))
	if err != nil {
		t.Fatal(err)
	}
	h.unchanged(func() {
		r2, err := h.svc.CreateOrder(h.ctx, caller("key-1"), orderReq(1000))
		if err != nil {
			t.Fatal(err)
		}
		if r1.Status != r2.Status || !bytes.Equal(r1.Body, r2.Body) {
			t.Fatalf("replay differs:\n%s\n%s", r1.Body, r2.Body)
		}
	})
	h.unchanged(func() {
		_, err := h.svc.CreateOrder(h.ctx, caller("key-1"), orderReq(2000))
		wantErr(t, err, 422, "idempotency_key_reused")
	})
	// The same key of another merchant is another record.
	r3, err := h.svc.CreateOrder(h.ctx, txswitch.Caller{MerchantID: merchantB, IdempotencyKey: "key-1"}, orderReq(1000))
	if err != nil || bytes.Equal(r3.Body, r1.Body) {
		t.Fatalf("other merchant's key: %v, same body %v", err, bytes.Equal(r3.Body, r1.Body))
	}
	_, err = h.svc.CreateOrder(h.ctx, caller("bad\x01key"), orderReq(1000))
	wantErr(t, err, 400, "invalid_idempotency_key")
}

func TestIdempotencyReplaysInDoubtAnswer(t *testing.T) {
	h := newHarness(t)
	o := h.createOrder(1000)
	// The provider times out: the client is answered 201 "in_doubt", and
	// API.md binds every retry with the same key to that first answer,
	// even after the resolver has settled the payment.
	h.a.Push(txswitch.OpAuthorize, memoryErr(timeoutErr("psp_a")))
	req := txswitch.CreatePaymentRequest{Method: "card"}
	r, err := h.svc.CreatePayment(h.ctx, caller("pay-1"), o.ID, req)
	if err != nil {
		t.Fatal(err)
	}
	p := decode[txswitch.Payment](t, r)
	if p.Status != txswitch.PaymentInDoubt {
		t.Fatalf("status = %s", p.Status)
	}
	h.unchanged(func() {
		again, err := h.svc.CreatePayment(h.ctx, caller("pay-1"), o.ID, req)
		if err != nil || again.Status != r.Status || !bytes.Equal(again.Body, r.Body) {
			t.Fatalf("replay while in doubt: %v, %d %s", err, again.Status, again.Body)
		}
	})
	h.unchanged(func() {
		_, err = h.svc.CreatePayment(h.ctx, caller("pay-1"), o.ID, txswitch.CreatePaymentRequest{Method: "ideal"})
		wantErr(t, err, 422, "idempotency_key_reused")
	})
	// Resolve: the provider did process it.
	h.a.Push(txswitch.OpStatus, approved("ref-late"))
	h.clock.Advance(10 * 1e9)
	if n, err := h.svc.ResolveInDoubt(h.ctx); err != nil || n != 1 {
		t.Fatalf("ResolveInDoubt = %d, %v", n, err)
	}
	r2, err := h.svc.CreatePayment(h.ctx, caller("pay-1"), o.ID, req)
	if err != nil || !bytes.Equal(r2.Body, r.Body) {
		t.Fatalf("replay after resolution: %v, %s", err, r2.Body)
	}
	g, err := h.svc.GetPayment(h.ctx, caller(""), p.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got := decode[txswitch.Payment](t, g); got.Status != txswitch.PaymentCaptured || got.ProviderRef != "ref-late" {
		t.Fatalf("after resolution: %+v", got)
	}
	if n := len(h.a.CallsFor(txswitch.OpAuthorize)); n != 1 {
		t.Fatalf("authorize calls = %d, want 1", n)
	}
}
