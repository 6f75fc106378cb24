package scenarios

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"time"

	txswitch "github.com/txswitch/txswitch/switch"
)

// flowDef is a registered flow: a short client conversation with the API.
type flowDef struct {
	doc string
	run func(f *flowCtx)
}

var flows map[string]flowDef

func init() {
	flows = map[string]flowDef{
		"card_pay":            {doc: "order, card payment with automatic capture", run: flowCardPay},
		"card_declined":       {doc: "card payment with a decline amount (ends in 05/51): declined, order stays open", run: flowCardDeclined},
		"manual_capture":      {doc: "manual capture: authorize, capture a third, capture the rest", run: flowManualCapture},
		"partial_refund":      {doc: "pay, refund a quarter online, a quarter at the pos", run: flowPartialRefund},
		"full_refund":         {doc: "pay, refund everything", run: flowFullRefund},
		"cancel":              {doc: "authorize (manual capture), cancel", run: flowCancel},
		"pos_sale":            {doc: "pos order paid by card, refunded at the pos", run: flowPOSSale},
		"redirect_ideal":      {doc: "iDEAL (redirect): pending until the bank notifies", run: flowRedirect("ideal", "NL", "EUR")},
		"redirect_bancontact": {doc: "Bancontact (redirect, psp_c first)", run: flowRedirect("bancontact", "BE", "EUR")},
		"sepa_pay":            {doc: "SEPA direct debit (psp_b first)", run: flowSEPA},
		"multi_currency":      {doc: "card in GBP, USD or JPY (exponent 0)", run: flowMultiCurrency},
		"retry_same_key":      {doc: "the same payment request sent twice with one idempotency key", run: flowRetrySameKey},
		"key_reuse":           {doc: "one idempotency key with a different body: 422, not executed", run: flowKeyReuse},
		"bad_input":           {doc: "invalid requests: 4xx with a code, nothing changed", run: flowBadInput},
		"fraud_review":        {doc: "high-value card payment held for review, approved by an admin", run: flowFraudReview(true)},
		"fraud_reject":        {doc: "high-value card payment held for review, rejected", run: flowFraudReview(false)},
		"read_after_write":    {doc: "create an order and read it back from other nodes at once", run: flowReadAfterWrite},
		"checkout_methods":    {doc: "NL order; the checkout asks which methods to show (GET methods)", run: flowCheckoutMethods},
		"impatient_retry":     {doc: "a misbehaving client pays again with a NEW idempotency key whatever the first answer", run: flowImpatientRetry},
	}
}

// flowCtx is one running flow instance.
type flowCtx struct {
	ctx  context.Context
	c    *client
	rng  *rand.Rand
	id   int
	name string
	run  *FlowRun
	n    int
}

func (f *flowCtx) key() string {
	f.n++
	return fmt.Sprintf("k%d-%d", f.id, f.n)
}

func (f *flowCtx) send(op, method, path, target string, body any, bad bool) resp {
	key := ""
	if method != http.MethodGet {
		key = f.key()
	}
	return f.c.do(f.ctx, req{flowID: f.id, flow: f.name, op: op, method: method, path: path, key: key, target: target, body: body, bad: bad})
}

// amount draws a value in [lo, hi] that no built-in decline rule matches.
func (f *flowCtx) amount(lo, hi int64) int64 {
	v := lo + f.rng.Int64N(hi-lo+1)
	if s := v % 100; s == 5 || s == 51 {
		v++
	}
	return v
}

func (f *flowCtx) order(country, currency, channel string, value int64) (txswitch.Order, bool) {
	var o txswitch.Order
	r := f.send("create_order", http.MethodPost, "/v1/orders", "", txswitch.CreateOrderRequest{
		Reference: fmt.Sprintf("scn-%d", f.id), Amount: txswitch.Money{Value: value, Currency: currency},
		Customer: txswitch.Customer{Country: country, ID: fmt.Sprintf("cust-%d", f.id)}, Channel: channel,
	}, false)
	if r.status != http.StatusCreated || json.Unmarshal(r.body, &o) != nil || o.ID == "" {
		return o, false
	}
	f.run.OrderID = o.ID
	return o, true
}

// pay creates a payment and records the flow's outcome.
func (f *flowCtx) pay(orderID string, body txswitch.CreatePaymentRequest) (txswitch.Payment, bool) {
	f.run.Pays = true
	f.run.Outcome = "failed"
	var p txswitch.Payment
	r := f.send("create_payment", http.MethodPost, "/v1/orders/"+orderID+"/payments", orderID, body, false)
	if r.status/100 != 2 || json.Unmarshal(r.body, &p) != nil || p.ID == "" {
		return p, false
	}
	switch p.Status {
	case txswitch.PaymentDeclined:
		f.run.Outcome = "declined"
	case txswitch.PaymentAuthorized, txswitch.PaymentCaptured, txswitch.PaymentPending, txswitch.PaymentHeldForReview:
		f.run.Outcome = "succeeded"
	}
	return p, true
}

func (f *flowCtx) payCard(capture string) (txswitch.Order, txswitch.Payment, bool) {
	countries := []string{"NL", "DE", "FR", "BE", "ES"}
	o, ok := f.order(countries[f.rng.IntN(len(countries))], "EUR", txswitch.ChannelOnline, f.amount(1000, 200000))
	if !ok {
		f.run.Pays, f.run.Outcome = true, "failed"
		return o, txswitch.Payment{}, false
	}
	p, ok := f.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card", Capture: capture, PaymentData: map[string]string{"token": "tok_visa"}})
	return o, p, ok
}

func flowCardPay(f *flowCtx) { f.payCard("automatic") }

func flowCardDeclined(f *flowCtx) {
	v := f.amount(1000, 90000)
	v = v - v%100 + 5 // ends in 05: the sim's do_not_honor
	o, ok := f.order("NL", "EUR", txswitch.ChannelOnline, v)
	if !ok {
		f.run.Pays, f.run.Outcome = true, "failed"
		return
	}
	f.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card"})
}

func (f *flowCtx) capture(p txswitch.Payment, amount *txswitch.Money) (txswitch.Payment, bool) {
	var out txswitch.Payment
	r := f.send("capture", http.MethodPost, "/v1/payments/"+p.ID+"/captures", p.ID, txswitch.CaptureRequest{Amount: amount}, false)
	return out, r.status/100 == 2 && json.Unmarshal(r.body, &out) == nil
}

func (f *flowCtx) refund(p txswitch.Payment, amount *txswitch.Money, channel string) bool {
	r := f.send("refund", http.MethodPost, "/v1/payments/"+p.ID+"/refunds", p.ID, txswitch.RefundRequest{Amount: amount, Reason: "return", Channel: channel}, false)
	return r.status/100 == 2
}

// read reads a payment back (from whichever node the client picks next):
// evidence for reads_see_writes and the linearizability check.
func (f *flowCtx) read(p txswitch.Payment) {
	f.send("get_payment", http.MethodGet, "/v1/payments/"+p.ID, p.ID, nil, false)
}

func flowManualCapture(f *flowCtx) {
	_, p, ok := f.payCard("manual")
	if !ok || p.Status != txswitch.PaymentAuthorized {
		return
	}
	f.read(p)
	third := txswitch.Money{Value: p.Authorized.Value / 3, Currency: p.Authorized.Currency}
	_, ok = f.capture(p, &third)
	f.read(p)
	if !ok {
		return
	}
	f.capture(p, nil)
	f.read(p)
}

func flowPartialRefund(f *flowCtx) {
	_, p, ok := f.payCard("automatic")
	if !ok || p.Status != txswitch.PaymentCaptured {
		return
	}
	q := txswitch.Money{Value: p.Captured.Value / 4, Currency: p.Captured.Currency}
	if f.refund(p, &q, txswitch.ChannelOnline) {
		f.refund(p, &q, txswitch.ChannelPOS)
	}
}

func flowFullRefund(f *flowCtx) {
	_, p, ok := f.payCard("automatic")
	if ok && p.Status == txswitch.PaymentCaptured {
		f.refund(p, nil, "")
	}
}

func flowCancel(f *flowCtx) {
	_, p, ok := f.payCard("manual")
	if ok && p.Status == txswitch.PaymentAuthorized {
		f.send("cancel", http.MethodPost, "/v1/payments/"+p.ID+"/cancel", p.ID, nil, false)
		f.read(p)
	}
}

func flowPOSSale(f *flowCtx) {
	o, ok := f.order("DE", "EUR", txswitch.ChannelPOS, f.amount(500, 50000))
	if !ok {
		f.run.Pays, f.run.Outcome = true, "failed"
		return
	}
	p, ok := f.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card"})
	if ok && p.Status == txswitch.PaymentCaptured {
		f.refund(p, nil, txswitch.ChannelPOS)
	}
}

// flowRedirect pays with a redirect method and polls the payment until
// the simulated bank's notification lands (bounded).
func flowRedirect(method, country, currency string) func(*flowCtx) {
	return func(f *flowCtx) {
		o, ok := f.order(country, currency, txswitch.ChannelOnline, f.amount(1000, 100000))
		if !ok {
			f.run.Pays, f.run.Outcome = true, "failed"
			return
		}
		p, ok := f.pay(o.ID, txswitch.CreatePaymentRequest{Method: method})
		if !ok || p.Status != txswitch.PaymentPending {
			return
		}
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			select {
			case <-f.ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			var got txswitch.Payment
			r := f.send("get_payment", http.MethodGet, "/v1/payments/"+p.ID, p.ID, nil, false)
			if r.status == http.StatusOK && json.Unmarshal(r.body, &got) == nil && got.Status != txswitch.PaymentPending {
				return
			}
		}
	}
}

func flowSEPA(f *flowCtx) {
	o, ok := f.order("DE", "EUR", txswitch.ChannelOnline, f.amount(1000, 100000))
	if !ok {
		f.run.Pays, f.run.Outcome = true, "failed"
		return
	}
	f.pay(o.ID, txswitch.CreatePaymentRequest{Method: "sepa_debit"})
}

func flowMultiCurrency(f *flowCtx) {
	cur := []struct {
		country, currency string
		lo, hi            int64
	}{{"GB", "GBP", 500, 90000}, {"US", "USD", 500, 90000}, {"JP", "JPY", 100, 90000}}[f.rng.IntN(3)]
	o, ok := f.order(cur.country, cur.currency, txswitch.ChannelOnline, f.amount(cur.lo, cur.hi))
	if !ok {
		f.run.Pays, f.run.Outcome = true, "failed"
		return
	}
	f.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card"})
}

// flowRetrySameKey sends one payment request twice, sequentially, with
// the same key: the idempotency check compares the two answers.
func flowRetrySameKey(f *flowCtx) {
	o, ok := f.order("NL", "EUR", txswitch.ChannelOnline, f.amount(1000, 100000))
	if !ok {
		f.run.Pays, f.run.Outcome = true, "failed"
		return
	}
	f.run.Pays, f.run.Outcome = true, "failed"
	k := f.key()
	body := txswitch.CreatePaymentRequest{Method: "card"}
	path := "/v1/orders/" + o.ID + "/payments"
	for range 2 {
		r := f.c.do(f.ctx, req{flowID: f.id, flow: f.name, op: "create_payment", method: http.MethodPost, path: path, key: k, target: o.ID, body: body})
		var p txswitch.Payment
		if r.status/100 == 2 && json.Unmarshal(r.body, &p) == nil && (p.Status == txswitch.PaymentCaptured || p.Status == txswitch.PaymentAuthorized) {
			f.run.Outcome = "succeeded"
		}
	}
}

// flowKeyReuse reuses a payment's key with a different body: the switch
// must answer 422 idempotency_key_reused and create nothing.
func flowKeyReuse(f *flowCtx) {
	o, ok := f.order("NL", "EUR", txswitch.ChannelOnline, f.amount(1000, 100000))
	if !ok {
		return
	}
	k := f.key()
	path := "/v1/orders/" + o.ID + "/payments"
	r := f.c.do(f.ctx, req{flowID: f.id, flow: f.name, op: "create_payment", method: http.MethodPost, path: path, key: k, target: o.ID,
		body: txswitch.CreatePaymentRequest{Method: "card", Capture: "manual"}})
	if r.status/100 != 2 {
		return
	}
	before := f.paymentCount(o.ID)
	if before < 0 {
		return
	}
	r = f.c.do(f.ctx, req{flowID: f.id, flow: f.name, op: "create_payment", method: http.MethodPost, path: path, key: k, target: o.ID, bad: true,
		body: txswitch.CreatePaymentRequest{Method: "card", Capture: "automatic"}})
	f.c.hist.addClaim(Claim{Call: r.seq, Kind: "order_payments", ID: o.ID, Value: int64(before)})
}

func (f *flowCtx) paymentCount(orderID string) int {
	var o txswitch.Order
	r := f.send("get_order", http.MethodGet, "/v1/orders/"+orderID, orderID, nil, false)
	if r.status != http.StatusOK || json.Unmarshal(r.body, &o) != nil {
		return -1
	}
	for _, p := range o.Payments {
		if p.Status == txswitch.PaymentInDoubt || p.Status == txswitch.PaymentPending {
			return -1 // still moving: no stable "before"
		}
	}
	return len(o.Payments)
}

// badOrders are invalid order bodies (raw, so malformed JSON can be sent).
var badOrders = []string{
	`{"reference":"x","amount":{"value":-5,"currency":"EUR"},"customer":{"country":"NL"},"channel":"online"}`,
	`{"reference":"x","amount":{"value":100,"currency":"EUX"},"customer":{"country":"NL"},"channel":"online"}`,
	`{"reference":"x","amount":{"value":100,"currency":"EUR"},"customer":{"country":"NL"},"channel":"telepathy"}`,
	`{"reference":"x","amount":{"value":100,"currency":"EUR"},"customer":{"country":"NL"},"channel":"online","lines":[{"sku":"a","quantity":1,"unit_amount":99}]}`,
	`{"reference":"x","amount":{"value":100,"currency":"EUR"},"customer":{"country":"NL"},"channel":"online","surprise":1}`,
	`{"reference":"x","amount":{"value":100,`,
	`{"reference":"x","amount":{"value":100,"currency":"EUR"},"customer":{"country":"ZZ"},"channel":"online"}`,
}

func (f *flowCtx) bad(op, path, target string, raw string) resp {
	return f.c.do(f.ctx, req{flowID: f.id, flow: f.name, op: op, method: http.MethodPost, path: path, key: f.key(), target: target, raw: []byte(raw), bad: true})
}

// flowBadInput sends invalid requests; each must get a 4xx with an error
// code, and the ones aimed at existing resources are claimed to change
// nothing (checked against the final state).
func flowBadInput(f *flowCtx) {
	f.bad("create_order", "/v1/orders", "", badOrders[f.rng.IntN(len(badOrders))])
	f.c.do(f.ctx, req{flowID: f.id, flow: f.name, op: "get_order", method: http.MethodGet, path: "/v1/orders/ord_doesnotexist", bad: true})
	f.c.do(f.ctx, req{flowID: f.id, flow: f.name, op: "create_order", method: http.MethodPost, path: "/v1/orders", key: f.key(), bad: true,
		auth: "sk_wrong", raw: []byte(`{"reference":"x","amount":{"value":100,"currency":"EUR"},"customer":{"country":"NL"},"channel":"online"}`)})

	o, ok := f.order("NL", "EUR", txswitch.ChannelOnline, f.amount(1000, 100000))
	if !ok {
		return
	}
	badPays := []string{
		`{"method":"teleport"}`,
		`{"method":"card","amount":{"value":100,"currency":"USD"}}`,
		fmt.Sprintf(`{"method":"card","amount":{"value":%d,"currency":"EUR"}}`, o.Amount.Value+1),
		`{"method":"card","capture":"sometimes"}`,
		`{"method":"sepa_debit","amount":{"value":-1,"currency":"EUR"}}`,
	}
	r := f.bad("create_payment", "/v1/orders/"+o.ID+"/payments", o.ID, badPays[f.rng.IntN(len(badPays))])
	f.c.hist.addClaim(Claim{Call: r.seq, Kind: "order_payments", ID: o.ID, Value: 0})

	// A second order, so the valid payment below does not touch the
	// first order's claim.
	o2, ok := f.order("NL", "EUR", txswitch.ChannelOnline, f.amount(1000, 100000))
	if !ok {
		return
	}
	p, ok := f.pay(o2.ID, txswitch.CreatePaymentRequest{Method: "card", Capture: "manual"})
	if !ok || p.Status != txswitch.PaymentAuthorized {
		return
	}
	r = f.bad("capture", "/v1/payments/"+p.ID+"/captures", p.ID, fmt.Sprintf(`{"amount":{"value":%d,"currency":"EUR"}}`, p.Authorized.Value+1))
	f.c.hist.addClaim(Claim{Call: r.seq, Kind: "payment_captured", ID: p.ID, Value: 0})
	r = f.bad("refund", "/v1/payments/"+p.ID+"/refunds", p.ID, `{"amount":{"value":1,"currency":"EUR"}}`)
	f.c.hist.addClaim(Claim{Call: r.seq, Kind: "payment_refunded", ID: p.ID, Value: 0})
}

func flowFraudReview(approve bool) func(*flowCtx) {
	return func(f *flowCtx) {
		o, ok := f.order("DE", "EUR", txswitch.ChannelOnline, f.amount(txswitch.DefaultCardHoldAmount, 2*txswitch.DefaultCardHoldAmount))
		if !ok {
			f.run.Pays, f.run.Outcome = true, "failed"
			return
		}
		p, ok := f.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card"})
		if !ok || p.Status != txswitch.PaymentHeldForReview {
			return
		}
		decision := "reject"
		if approve {
			decision = "approve"
		}
		f.c.do(f.ctx, req{flowID: f.id, flow: f.name, op: "review", method: http.MethodPost, path: "/v1/admin/payments/" + p.ID + "/review",
			key: f.key(), target: p.ID, auth: f.c.env.c.AdminToken, body: txswitch.ReviewRequest{Decision: decision, Note: "scenario"}})
	}
}

// flowReadAfterWrite creates an order and reads it back at once from
// every node: a linearizable read never misses an acknowledged write.
func flowReadAfterWrite(f *flowCtx) {
	o, ok := f.order("NL", "EUR", txswitch.ChannelOnline, f.amount(1000, 100000))
	if !ok {
		return
	}
	for range 3 {
		f.send("get_order", http.MethodGet, "/v1/orders/"+o.ID, o.ID, nil, false)
	}
}

// flowImpatientRetry is the client that double-charges by itself: it
// sends the same payment again under a new key, whatever the first
// answer (a timeout, in doubt, even success). The switch must refuse the
// second while the first can still take money, so the ledgers never show
// two charges for the order.
func flowImpatientRetry(f *flowCtx) {
	o, ok := f.order("NL", "EUR", txswitch.ChannelOnline, f.amount(1000, 100000))
	if !ok {
		f.run.Pays, f.run.Outcome = true, "failed"
		return
	}
	f.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card"})
	outcome := f.run.Outcome
	f.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card"})
	if outcome == "succeeded" {
		f.run.Outcome = outcome
	}
}

// flowCheckoutMethods asks which methods a Dutch shopper may use: the
// evidence for method_hidden (a method without a healthy provider is not
// offered).
func flowCheckoutMethods(f *flowCtx) {
	o, ok := f.order("NL", "EUR", txswitch.ChannelOnline, f.amount(1000, 100000))
	if !ok {
		return
	}
	f.send("get_methods", http.MethodGet, "/v1/orders/"+o.ID+"/methods", o.ID, nil, false)
}
