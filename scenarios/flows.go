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
		"release_rest":        {doc: "authorize (manual capture), capture a third (a partial shipment), cancel: the rest is released", run: flowReleaseRest},
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
		"fraud_withdraw":      {doc: "high-value card payment held for review, cancelled by the merchant (POST cancel), retried with its key", run: flowFraudWithdraw},
		"read_after_write":    {doc: "create an order and read it back from other nodes at once", run: flowReadAfterWrite},
		"checkout_methods":    {doc: "NL order; the checkout asks which methods to show (GET methods)", run: flowCheckoutMethods},
		"impatient_retry":     {doc: "a misbehaving client pays again with a NEW idempotency key whatever the first answer", run: flowImpatientRetry},
	}
	for name, d := range breadthFlows() {
		flows[name] = d
	}
	for _, mc := range methodCases {
		flows["methods_"+mc.name] = flowDef{doc: "checkout of a " + mc.doc + " order: GET methods", run: flowMethods(mc)}
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
	// payID is the payment the flow last created or acted on; readSince
	// says whether the flow read it back (200) after its last write.
	// readBack uses them to read every paying flow's payment once after
	// its final write: the evidence linearizable and reads_see_writes
	// judge, which flows that never read would otherwise leave empty.
	payID     string
	readSince bool
}

// do sends one request of the flow and notes what readBack needs.
func (f *flowCtx) do(r req) resp {
	out := f.c.do(f.ctx, r)
	f.track(r, out)
	return out
}

func (f *flowCtx) track(r req, out resp) {
	if r.method == http.MethodGet {
		if r.op == "get_payment" && r.target != "" && r.target == f.payID && out.status == http.StatusOK {
			f.readSince = true
		}
		return
	}
	f.readSince = false
	switch r.op {
	case "create_payment":
		var p struct {
			ID string `json:"id"`
		}
		if out.status/100 == 2 && json.Unmarshal(out.body, &p) == nil && p.ID != "" {
			f.payID = p.ID
		}
	case "capture", "refund", "cancel", "review":
		if r.target != "" {
			f.payID = r.target
		}
	}
}

// readBack reads the flow's payment once (one attempt, from whichever
// node the client picks next) unless the flow already read it after its
// last write: one GET at most per flow.
func (f *flowCtx) readBack() {
	if f.payID == "" || f.readSince || f.ctx.Err() != nil {
		return
	}
	f.do(req{flowID: f.id, flow: f.name, op: "get_payment", method: http.MethodGet, path: "/v1/payments/" + f.payID, target: f.payID, once: true})
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
	return f.do(req{flowID: f.id, flow: f.name, op: op, method: method, path: path, key: key, target: target, body: body, bad: bad})
}

// amount draws a value in [lo, hi] that no built-in decline rule matches.
func (f *flowCtx) amount(lo, hi int64) int64 { return f.amountCharged(lo, hi, 0) }

// amountCharged draws an order value in [lo, hi] such that the amount the
// PSP is asked for (the value plus the method's fixed surcharge) matches
// no built-in decline rule: iDEAL's EUR 0.29 turns ...76 into ...05.
func (f *flowCtx) amountCharged(lo, hi, surcharge int64) int64 {
	v := lo + f.rng.Int64N(hi-lo+1)
	for {
		if s := (v + surcharge) % 100; s != 5 && s != 51 {
			return v
		}
		v++
	}
}

// fixedSurcharge is the shipped configuration's fixed surcharge of a
// method (the scenarios do not change it, except config_ideal_surcharge).
func fixedSurcharge(method string) int64 {
	if method == "ideal" {
		return 29
	}
	return 0
}

func (f *flowCtx) order(country, currency, channel string, value int64) (txswitch.Order, bool) {
	return f.orderWith(country, currency, channel, "", value)
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
	o, ok := f.mustOrder("NL", "EUR", txswitch.ChannelOnline, v)
	if !ok {
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

// flowCaptureOnShipment's follow-ups come a while after the payment, as
// a capture on shipment does, so a fault or configuration change between
// them meets payments approved before it.
func flowCaptureOnShipment(f *flowCtx) {
	_, p, ok := f.payCard("manual")
	if !ok || p.Status != txswitch.PaymentAuthorized {
		return
	}
	select {
	case <-f.ctx.Done():
		return
	case <-time.After(1500 * time.Millisecond):
	}
	got, ok := f.capture(p, nil)
	f.read(p)
	if !ok || got.Captured.Value == 0 {
		return
	}
	q := txswitch.Money{Value: got.Captured.Value / 4, Currency: got.Captured.Currency}
	f.refund(got, &q, txswitch.ChannelPOS)
	f.read(p)
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

func flowReleaseRest(f *flowCtx) {
	_, p, ok := f.payCard("manual")
	if !ok || p.Status != txswitch.PaymentAuthorized {
		return
	}
	third := txswitch.Money{Value: p.Authorized.Value / 3, Currency: p.Authorized.Currency}
	got, ok := f.capture(p, &third)
	if !ok || got.Captured.Value != third.Value {
		return // a capture in doubt: a release now is refused until it settles
	}
	f.send("cancel", http.MethodPost, "/v1/payments/"+p.ID+"/cancel", p.ID, nil, false)
	f.read(p)
}

func flowPOSSale(f *flowCtx) {
	o, ok := f.mustOrder("DE", "EUR", txswitch.ChannelPOS, f.amount(500, 50000))
	if !ok {
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
		o, ok := f.mustOrder(country, currency, txswitch.ChannelOnline, f.amountCharged(1000, 100000, fixedSurcharge(method)))
		if !ok {
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
	o, ok := f.mustOrder("DE", "EUR", txswitch.ChannelOnline, f.amount(1000, 100000))
	if !ok {
		return
	}
	f.pay(o.ID, txswitch.CreatePaymentRequest{Method: "sepa_debit"})
}

func flowMultiCurrency(f *flowCtx) {
	cur := []struct {
		country, currency string
		lo, hi            int64
	}{{"GB", "GBP", 500, 90000}, {"US", "USD", 500, 90000}, {"JP", "JPY", 100, 90000}}[f.rng.IntN(3)]
	o, ok := f.mustOrder(cur.country, cur.currency, txswitch.ChannelOnline, f.amount(cur.lo, cur.hi))
	if !ok {
		return
	}
	f.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card"})
}

// flowRetrySameKey sends one payment request twice, sequentially, with
// the same key: the idempotency check compares the two answers.
func flowRetrySameKey(f *flowCtx) {
	o, ok := f.mustOrder("NL", "EUR", txswitch.ChannelOnline, f.amount(1000, 100000))
	if !ok {
		return
	}
	f.run.Pays, f.run.Outcome = true, "failed"
	k := f.key()
	body := txswitch.CreatePaymentRequest{Method: "card"}
	path := "/v1/orders/" + o.ID + "/payments"
	for range 2 {
		r := f.do(req{flowID: f.id, flow: f.name, op: "create_payment", method: http.MethodPost, path: path, key: k, target: o.ID, body: body})
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
	r := f.do(req{flowID: f.id, flow: f.name, op: "create_payment", method: http.MethodPost, path: path, key: k, target: o.ID,
		body: txswitch.CreatePaymentRequest{Method: "card", Capture: "manual"}})
	if r.status/100 != 2 {
		return
	}
	before := f.paymentCount(o.ID)
	if before < 0 {
		return
	}
	r = f.do(req{flowID: f.id, flow: f.name, op: "create_payment", method: http.MethodPost, path: path, key: k, target: o.ID, bad: true,
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
	return f.do(req{flowID: f.id, flow: f.name, op: op, method: http.MethodPost, path: path, key: f.key(), target: target, raw: []byte(raw), bad: true})
}

// flowBadInput sends invalid requests; each must get a 4xx with an error
// code, and the ones aimed at existing resources are claimed to change
// nothing (checked against the final state).
func flowBadInput(f *flowCtx) {
	f.bad("create_order", "/v1/orders", "", badOrders[f.rng.IntN(len(badOrders))])
	f.do(req{flowID: f.id, flow: f.name, op: "get_order", method: http.MethodGet, path: "/v1/orders/ord_doesnotexist", bad: true})
	f.do(req{flowID: f.id, flow: f.name, op: "create_order", method: http.MethodPost, path: "/v1/orders", key: f.key(), bad: true,
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

// review approves or rejects a held payment through the admin API.
func (f *flowCtx) review(p txswitch.Payment, approve, bad bool) resp {
	decision := "reject"
	if approve {
		decision = "approve"
	}
	return f.do(req{flowID: f.id, flow: f.name, op: "review", method: http.MethodPost, path: "/v1/admin/payments/" + p.ID + "/review",
		key: f.key(), target: p.ID, auth: f.c.env.c.AdminToken, bad: bad, body: txswitch.ReviewRequest{Decision: decision, Note: "scenario"}})
}

func flowFraudReview(approve bool) func(*flowCtx) {
	return func(f *flowCtx) {
		o, ok := f.mustOrder("DE", "EUR", txswitch.ChannelOnline, f.amount(txswitch.DefaultCardHoldAmount, 2*txswitch.DefaultCardHoldAmount))
		if !ok {
			return
		}
		p, ok := f.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card"})
		if !ok || p.Status != txswitch.PaymentHeldForReview {
			return
		}
		f.review(p, approve, false)
	}
}

// flowFraudWithdraw: the shopper calls the order off while its payment is
// held for review, and the merchant cancels the held payment (cluster
// version 13); a retry with the same key must answer the same, and no
// provider ever sees the payment (the ledger checks).
func flowFraudWithdraw(f *flowCtx) {
	o, ok := f.mustOrder("DE", "EUR", txswitch.ChannelOnline, f.amount(txswitch.DefaultCardHoldAmount, 2*txswitch.DefaultCardHoldAmount))
	if !ok {
		return
	}
	p, ok := f.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card"})
	if !ok || p.Status != txswitch.PaymentHeldForReview {
		return
	}
	key := f.key()
	for range 2 {
		f.do(req{flowID: f.id, flow: f.name, op: "cancel", method: http.MethodPost, path: "/v1/payments/" + p.ID + "/cancel", key: key, target: p.ID})
	}
	f.read(p)
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
	o, ok := f.mustOrder("NL", "EUR", txswitch.ChannelOnline, f.amount(1000, 100000))
	if !ok {
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

// breadthFlows are the flows of every remaining API path and status
// transition (the regression family): redirect methods per market,
// partial and repeated captures and refunds, refunds in other channels and
// as pay-later credit notes, declines followed by a second attempt, the
// moto and pos channels, review by e-mail rule, and idempotent retries of
// every write.
func breadthFlows() map[string]flowDef {
	return map[string]flowDef{
		"redirect_mobilepay_dk":  {doc: "MobilePay in DK/DKK (redirect, psp_a first)", run: flowRedirect("mobilepay", "DK", "DKK")},
		"redirect_mobilepay_fi":  {doc: "MobilePay in FI/EUR (redirect, psp_a first)", run: flowRedirect("mobilepay", "FI", "EUR")},
		"redirect_klarna_nl":     {doc: "Klarna pay later in NL/EUR (redirect, psp_c first)", run: flowRedirect("klarna_paylater", "NL", "EUR")},
		"redirect_klarna_se":     {doc: "Klarna pay later in SE/SEK (its own route: local currency only)", run: flowRedirect("klarna_paylater", "SE", "SEK")},
		"redirect_klarna_gb":     {doc: "Klarna pay later in GB/GBP", run: flowRedirect("klarna_paylater", "GB", "GBP")},
		"bancontact_pos":         {doc: "Bancontact at a Belgian pos terminal (redirect method on the pos channel)", run: flowRedirectChannel("bancontact", "BE", "EUR", txswitch.ChannelPOS)},
		"redirect_declined":      {doc: "iDEAL whose amount plus surcharge is a decline amount: pending, then declined by the bank's notification", run: flowRedirectDeclined("ideal", "NL", "EUR", 76)},
		"mobilepay_declined":     {doc: "MobilePay (DK/DKK) with a decline amount: pending, then declined by psp_a's notification", run: flowRedirectDeclined("mobilepay", "DK", "DKK", 5)},
		"bancontact_declined":    {doc: "Bancontact with a decline amount: pending, then declined by psp_c's notification", run: flowRedirectDeclined("bancontact", "BE", "EUR", 5)},
		"klarna_declined":        {doc: "Klarna (NL/EUR) with an insufficient-funds amount: pending, then declined by psp_c's notification", run: flowRedirectDeclined("klarna_paylater", "NL", "EUR", 51)},
		"klarna_credit_note":     {doc: "Klarna pay later completed, then a third refunded: a credit note on the shopper's invoice", run: flowKlarnaCreditNote},
		"capture_full":           {doc: "manual capture: authorize, capture everything at once", run: flowCaptureFull},
		"capture_on_shipment":    {doc: "manual capture: authorize, capture everything 1.5 s later (the goods shipped), then refund a quarter at the pos (a return)", run: flowCaptureOnShipment},
		"capture_partial_only":   {doc: "manual capture: authorize, capture half, never the rest", run: flowCapturePartialOnly},
		"capture_several":        {doc: "manual capture: three partial captures of a quarter, then the rest", run: flowCaptureSeveral},
		"refund_then_rest":       {doc: "pay, refund a third (partially_refunded), then the rest (refunded)", run: flowRefundThenRest},
		"refund_moto":            {doc: "mail/telephone order paid by card, refunded in the moto channel", run: flowRefundMOTO},
		"moto_card":              {doc: "mail/telephone order paid by card", run: flowChannelPay("DE", txswitch.ChannelMOTO, "card")},
		"moto_sepa":              {doc: "mail/telephone order paid by SEPA debit", run: flowChannelPay("DE", txswitch.ChannelMOTO, "sepa_debit")},
		"sepa_refund":            {doc: "SEPA debit, refunded in full", run: flowSEPARefund},
		"decline_then_retry":     {doc: "a decline (amount ending in 05) leaves the order open; two further attempts pay it in full", run: flowDeclineThenRetry},
		"card_insufficient":      {doc: "card payment with an amount ending in 51: declined insufficient_funds", run: flowCardInsufficient},
		"cancel_after_capture":   {doc: "cancel of a captured payment: refused with 409, nothing changes", run: flowCancelAfterCapture},
		"refund_too_much":        {doc: "a refund above the captured amount: refused, nothing refunded", run: flowRefundTooMuch},
		"review_not_held":        {doc: "an admin review of a payment that is not held: refused, nothing changes", run: flowReviewNotHeld},
		"fraud_email_approve":    {doc: "SEPA payment from a disposable mailbox held for review, approved", run: flowFraudEmail(true)},
		"fraud_email_reject":     {doc: "SEPA payment from a disposable mailbox held for review, rejected", run: flowFraudEmail(false)},
		"fraud_gbp_not_held":     {doc: "a high-value card payment in GBP: the hold rule is for EUR only, so it is captured at once", run: flowFraudGBP},
		"retry_same_key_order":   {doc: "the same order creation sent twice with one key: one order", run: flowRetryOrder},
		"retry_same_key_capture": {doc: "the same partial capture sent twice with one key: captured once", run: flowRetryCapture},
		"retry_capture_after_in_doubt": {doc: "a partial capture answered in doubt, sent again with its key once the payment shows it settled: the first answer again",
			run: flowRetryCaptureAfterInDoubt},
		"retry_same_key_refund": {doc: "the same partial refund sent twice with one key: refunded once", run: flowRetryRefund},
		"key_reuse_refund":      {doc: "a refund's key reused with another amount: 422, nothing refunded", run: flowKeyReuseRefund},
		"key_reuse_order":       {doc: "an order's key reused with another body: 422, no second order", run: flowKeyReuseOrder},
		"ideal_surcharge":       {doc: "NL checkout, then iDEAL: the method's surcharge is offered and charged", run: flowIDEALSurcharge},
		"card_fee_markets":      {doc: "a checkout, then card, in NL/EUR, SE/SEK or US/USD: the card surcharge of the order's currency is offered and charged", run: flowCardFeeMarkets},
	}
}

// orderWith creates an order with a customer e-mail (fraud rules match it).
func (f *flowCtx) orderWith(country, currency, channel, email string, value int64) (txswitch.Order, bool) {
	var o txswitch.Order
	r := f.send("create_order", http.MethodPost, "/v1/orders", "", txswitch.CreateOrderRequest{
		Reference: fmt.Sprintf("scn-%d", f.id), Amount: txswitch.Money{Value: value, Currency: currency},
		Customer: txswitch.Customer{Country: country, ID: fmt.Sprintf("cust-%d", f.id), Email: email}, Channel: channel,
	}, false)
	if r.status != http.StatusCreated || json.Unmarshal(r.body, &o) != nil || o.ID == "" {
		return o, false
	}
	f.run.OrderID = o.ID
	return o, true
}

// mustOrder creates an order for a paying flow; a failure counts as a
// failed payment attempt.
func (f *flowCtx) mustOrder(country, currency, channel string, value int64) (txswitch.Order, bool) {
	o, ok := f.order(country, currency, channel, value)
	if !ok {
		f.run.Pays, f.run.Outcome = true, "failed"
	}
	return o, ok
}

// getPayment reads a payment back.
func (f *flowCtx) getPayment(id string) (txswitch.Payment, bool) {
	var p txswitch.Payment
	r := f.send("get_payment", http.MethodGet, "/v1/payments/"+id, id, nil, false)
	return p, r.status == http.StatusOK && json.Unmarshal(r.body, &p) == nil
}

// awaitSettled polls a pending payment until the bank's notification
// lands (bounded), and returns its last state.
func (f *flowCtx) awaitSettled(p txswitch.Payment) txswitch.Payment {
	deadline := time.Now().Add(5 * time.Second)
	for p.Status == txswitch.PaymentPending && time.Now().Before(deadline) {
		select {
		case <-f.ctx.Done():
			return p
		case <-time.After(100 * time.Millisecond):
		}
		if got, ok := f.getPayment(p.ID); ok {
			p = got
		}
	}
	return p
}

func flowRedirectChannel(method, country, currency, channel string) func(*flowCtx) {
	return func(f *flowCtx) {
		o, ok := f.mustOrder(country, currency, channel, f.amountCharged(1000, 100000, fixedSurcharge(method)))
		if !ok {
			return
		}
		if p, ok := f.pay(o.ID, txswitch.CreatePaymentRequest{Method: method}); ok {
			f.awaitSettled(p)
		}
	}
}

// flowRedirectDeclined pays by a redirect method an order whose amount
// ends in suffix. iDEAL adds its EUR 0.29 surcharge, so an order ending in
// 76 asks the bank for an amount ending in 05, which its decline rule
// refuses.
func flowRedirectDeclined(method, country, currency string, suffix int64) func(*flowCtx) {
	return func(f *flowCtx) {
		v := f.amount(1000, 90000)
		v = v - v%100 + suffix
		o, ok := f.mustOrder(country, currency, txswitch.ChannelOnline, v)
		if !ok {
			return
		}
		if p, ok := f.pay(o.ID, txswitch.CreatePaymentRequest{Method: method}); ok {
			// The redirect is accepted (pending); the bank declines later.
			// The flow is declined only if the payment ends declined (and
			// money_adds_up checks that a PSP declined it): a payment that
			// failed instead counts against availability.
			switch p = f.awaitSettled(p); p.Status {
			case txswitch.PaymentDeclined:
				f.run.Outcome = "declined"
			case txswitch.PaymentFailed:
				f.run.Outcome = "failed"
			}
		}
	}
}

func flowKlarnaCreditNote(f *flowCtx) {
	o, ok := f.mustOrder("NL", "EUR", txswitch.ChannelOnline, f.amount(1000, 100000))
	if !ok {
		return
	}
	p, ok := f.pay(o.ID, txswitch.CreatePaymentRequest{Method: "klarna_paylater"})
	if !ok {
		return
	}
	if p = f.awaitSettled(p); p.Status != txswitch.PaymentCaptured {
		return
	}
	third := txswitch.Money{Value: p.Captured.Value / 3, Currency: p.Captured.Currency}
	f.refund(p, &third, txswitch.ChannelOnline)
	f.read(p)
}

func flowCaptureFull(f *flowCtx) {
	_, p, ok := f.payCard("manual")
	if ok && p.Status == txswitch.PaymentAuthorized {
		f.capture(p, nil)
		f.read(p)
	}
}

func flowCapturePartialOnly(f *flowCtx) {
	_, p, ok := f.payCard("manual")
	if ok && p.Status == txswitch.PaymentAuthorized {
		half := txswitch.Money{Value: p.Authorized.Value / 2, Currency: p.Authorized.Currency}
		f.capture(p, &half)
		f.read(p)
	}
}

func flowCaptureSeveral(f *flowCtx) {
	_, p, ok := f.payCard("manual")
	if !ok || p.Status != txswitch.PaymentAuthorized {
		return
	}
	q := txswitch.Money{Value: p.Authorized.Value / 4, Currency: p.Authorized.Currency}
	for range 3 {
		if _, ok := f.capture(p, &q); !ok {
			return
		}
	}
	f.capture(p, nil)
	f.read(p)
}

func flowRefundThenRest(f *flowCtx) {
	_, p, ok := f.payCard("automatic")
	if !ok || p.Status != txswitch.PaymentCaptured {
		return
	}
	third := txswitch.Money{Value: p.Captured.Value / 3, Currency: p.Captured.Currency}
	if f.refund(p, &third, txswitch.ChannelOnline) {
		f.read(p)
		f.refund(p, nil, txswitch.ChannelOnline)
	}
}

func flowRefundMOTO(f *flowCtx) {
	o, ok := f.mustOrder("FR", "EUR", txswitch.ChannelMOTO, f.amount(1000, 100000))
	if !ok {
		return
	}
	p, ok := f.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card"})
	if ok && p.Status == txswitch.PaymentCaptured {
		half := txswitch.Money{Value: p.Captured.Value / 2, Currency: p.Captured.Currency}
		f.refund(p, &half, txswitch.ChannelMOTO)
	}
}

func flowChannelPay(country, channel, method string) func(*flowCtx) {
	return func(f *flowCtx) {
		o, ok := f.mustOrder(country, "EUR", channel, f.amount(1000, 100000))
		if ok {
			f.pay(o.ID, txswitch.CreatePaymentRequest{Method: method})
		}
	}
}

func flowSEPARefund(f *flowCtx) {
	o, ok := f.mustOrder("DE", "EUR", txswitch.ChannelOnline, f.amount(1000, 100000))
	if !ok {
		return
	}
	p, ok := f.pay(o.ID, txswitch.CreatePaymentRequest{Method: "sepa_debit"})
	if ok && p.Status == txswitch.PaymentCaptured {
		f.refund(p, nil, "")
	}
}

// flowDeclineThenRetry: the first attempt (the whole amount, ending in
// 05) is declined; the shopper then pays the order in two parts that no
// decline rule matches, so the order ends paid.
func flowDeclineThenRetry(f *flowCtx) {
	v := f.amount(1000, 90000)
	v = v - v%100 + 5
	o, ok := f.mustOrder("NL", "EUR", txswitch.ChannelOnline, v)
	if !ok {
		return
	}
	p, ok := f.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card"})
	if !ok || p.Status != txswitch.PaymentDeclined {
		return
	}
	first := txswitch.Money{Value: v - 5, Currency: "EUR"}
	if p, ok = f.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card", Amount: &first}); !ok || p.Status != txswitch.PaymentCaptured {
		return
	}
	f.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card", Amount: &txswitch.Money{Value: 5, Currency: "EUR"}})
}

func flowCardInsufficient(f *flowCtx) {
	v := f.amount(1000, 90000)
	v = v - v%100 + 51
	o, ok := f.mustOrder("DE", "EUR", txswitch.ChannelOnline, v)
	if ok {
		f.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card"})
	}
}

func flowCancelAfterCapture(f *flowCtx) {
	_, p, ok := f.payCard("automatic")
	if !ok || p.Status != txswitch.PaymentCaptured {
		return
	}
	r := f.do(req{flowID: f.id, flow: f.name, op: "cancel", method: http.MethodPost, path: "/v1/payments/" + p.ID + "/cancel", key: f.key(), target: p.ID, bad: true})
	f.c.hist.addClaim(Claim{Call: r.seq, Kind: "payment_captured", ID: p.ID, Value: p.Captured.Value})
	f.c.hist.addClaim(Claim{Call: r.seq, Kind: "payment_refunded", ID: p.ID, Value: 0})
}

func flowRefundTooMuch(f *flowCtx) {
	_, p, ok := f.payCard("automatic")
	if !ok || p.Status != txswitch.PaymentCaptured {
		return
	}
	r := f.bad("refund", "/v1/payments/"+p.ID+"/refunds", p.ID, fmt.Sprintf(`{"amount":{"value":%d,"currency":%q}}`, p.Captured.Value+1, p.Captured.Currency))
	f.c.hist.addClaim(Claim{Call: r.seq, Kind: "payment_refunded", ID: p.ID, Value: 0})
}

func flowReviewNotHeld(f *flowCtx) {
	_, p, ok := f.payCard("automatic")
	if !ok || p.Status != txswitch.PaymentCaptured {
		return
	}
	r := f.review(p, false, true)
	f.c.hist.addClaim(Claim{Call: r.seq, Kind: "payment_captured", ID: p.ID, Value: p.Captured.Value})
}

func flowFraudEmail(approve bool) func(*flowCtx) {
	return func(f *flowCtx) {
		o, ok := f.orderWith("DE", "EUR", txswitch.ChannelOnline, fmt.Sprintf("shopper%d@mailinator.com", f.id), f.amount(1000, 100000))
		if !ok {
			f.run.Pays, f.run.Outcome = true, "failed"
			return
		}
		p, ok := f.pay(o.ID, txswitch.CreatePaymentRequest{Method: "sepa_debit"})
		if !ok || p.Status != txswitch.PaymentHeldForReview {
			return
		}
		f.review(p, approve, false)
	}
}

func flowFraudGBP(f *flowCtx) {
	o, ok := f.mustOrder("GB", "GBP", txswitch.ChannelOnline, f.amount(txswitch.DefaultCardHoldAmount, 2*txswitch.DefaultCardHoldAmount))
	if ok {
		f.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card"})
	}
}

// twice sends one write twice in a row with the same key and body: the
// idempotency check compares the answers.
func (f *flowCtx) twice(op, path, target string, body any) resp {
	k := f.key()
	var r resp
	for range 2 {
		r = f.do(req{flowID: f.id, flow: f.name, op: op, method: http.MethodPost, path: path, key: k, target: target, body: body})
	}
	return r
}

func flowRetryOrder(f *flowCtx) {
	r := f.twice("create_order", "/v1/orders", "", txswitch.CreateOrderRequest{
		Reference: fmt.Sprintf("scn-%d", f.id), Amount: txswitch.Money{Value: f.amount(1000, 100000), Currency: "EUR"},
		Customer: txswitch.Customer{Country: "NL", ID: fmt.Sprintf("cust-%d", f.id)}, Channel: txswitch.ChannelOnline,
	})
	if o, ok := orderOf(r.body); ok && r.status == http.StatusCreated {
		f.run.OrderID = o.ID
		f.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card"})
	}
}

func flowRetryCapture(f *flowCtx) {
	_, p, ok := f.payCard("manual")
	if !ok || p.Status != txswitch.PaymentAuthorized {
		return
	}
	half := txswitch.Money{Value: p.Authorized.Value / 2, Currency: p.Authorized.Currency}
	r := f.twice("capture", "/v1/payments/"+p.ID+"/captures", p.ID, txswitch.CaptureRequest{Amount: &half})
	if r.status/100 == 2 {
		f.c.hist.addClaim(Claim{Call: r.seq, Kind: "payment_captured", ID: p.ID, Value: half.Value})
	}
}

// flowRetryCaptureAfterInDoubt is a gateway that heard "in doubt" for a
// capture, learnt the outcome from the payment, and sends the capture
// again with its key anyway (a retry queue that does not look). API.md
// binds the key to its first answer: the idempotency check compares the
// two. It retries only an answer in doubt, once the payment shows the
// capture settled (within 8 s), so that a replay of the settled capture
// instead of the first answer shows.
func flowRetryCaptureAfterInDoubt(f *flowCtx) {
	_, p, ok := f.payCard("manual")
	if !ok || p.Status != txswitch.PaymentAuthorized {
		return
	}
	half := txswitch.Money{Value: p.Authorized.Value / 2, Currency: p.Authorized.Currency}
	capture := req{flowID: f.id, flow: f.name, op: "capture", method: http.MethodPost, path: "/v1/payments/" + p.ID + "/captures",
		key: f.key(), target: p.ID, body: txswitch.CaptureRequest{Amount: &half}}
	r := f.do(capture)
	var got txswitch.Payment
	if r.status != http.StatusCreated || json.Unmarshal(r.body, &got) != nil || len(got.Captures) != 1 || got.Captures[0].Status != txswitch.PaymentInDoubt {
		return
	}
	deadline := time.Now().Add(8 * time.Second)
	for {
		if time.Now().After(deadline) {
			return
		}
		select {
		case <-f.ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
		if cur, ok := f.getPayment(p.ID); ok && len(cur.Captures) == 1 && cur.Captures[0].Status != txswitch.PaymentInDoubt {
			break
		}
	}
	f.do(capture)
}

func flowRetryRefund(f *flowCtx) {
	_, p, ok := f.payCard("automatic")
	if !ok || p.Status != txswitch.PaymentCaptured {
		return
	}
	half := txswitch.Money{Value: p.Captured.Value / 2, Currency: p.Captured.Currency}
	r := f.twice("refund", "/v1/payments/"+p.ID+"/refunds", p.ID, txswitch.RefundRequest{Amount: &half, Reason: "return", Channel: txswitch.ChannelOnline})
	if r.status/100 == 2 {
		f.c.hist.addClaim(Claim{Call: r.seq, Kind: "payment_refunded", ID: p.ID, Value: half.Value})
	}
}

func flowKeyReuseRefund(f *flowCtx) {
	_, p, ok := f.payCard("automatic")
	if !ok || p.Status != txswitch.PaymentCaptured {
		return
	}
	k := f.key()
	path := "/v1/payments/" + p.ID + "/refunds"
	third := txswitch.Money{Value: p.Captured.Value / 3, Currency: p.Captured.Currency}
	r := f.do(req{flowID: f.id, flow: f.name, op: "refund", method: http.MethodPost, path: path, key: k, target: p.ID,
		body: txswitch.RefundRequest{Amount: &third}})
	if r.status/100 != 2 {
		return
	}
	r = f.do(req{flowID: f.id, flow: f.name, op: "refund", method: http.MethodPost, path: path, key: k, target: p.ID, bad: true,
		body: txswitch.RefundRequest{}})
	f.c.hist.addClaim(Claim{Call: r.seq, Kind: "payment_refunded", ID: p.ID, Value: third.Value})
}

func flowKeyReuseOrder(f *flowCtx) {
	k := f.key()
	body := txswitch.CreateOrderRequest{
		Reference: fmt.Sprintf("scn-%d", f.id), Amount: txswitch.Money{Value: f.amount(1000, 100000), Currency: "EUR"},
		Customer: txswitch.Customer{Country: "NL", ID: fmt.Sprintf("cust-%d", f.id)}, Channel: txswitch.ChannelOnline,
	}
	r := f.do(req{flowID: f.id, flow: f.name, op: "create_order", method: http.MethodPost, path: "/v1/orders", key: k, body: body})
	o, ok := orderOf(r.body)
	if r.status != http.StatusCreated || !ok {
		return
	}
	f.run.OrderID = o.ID
	body.Amount.Value++
	f.do(req{flowID: f.id, flow: f.name, op: "create_order", method: http.MethodPost, path: "/v1/orders", key: k, body: body, bad: true})
}

// flowIDEALSurcharge asks for the methods (the offer shows the surcharge)
// and pays by iDEAL (the payment carries it).
func flowIDEALSurcharge(f *flowCtx) {
	o, ok := f.mustOrder("NL", "EUR", txswitch.ChannelOnline, f.amountCharged(1000, 100000, fixedSurcharge("ideal")))
	if !ok {
		return
	}
	f.send("get_methods", http.MethodGet, "/v1/orders/"+o.ID+"/methods", o.ID, nil, false)
	if p, ok := f.pay(o.ID, txswitch.CreatePaymentRequest{Method: "ideal"}); ok {
		f.awaitSettled(p)
	}
}

// flowCardFeeMarkets pays by card in one of three currencies, so that a
// card fee given per currency is judged in each (and in one it does not
// list).
func flowCardFeeMarkets(f *flowCtx) {
	m := []struct{ country, currency string }{{"NL", "EUR"}, {"SE", "SEK"}, {"US", "USD"}}[f.rng.IntN(3)]
	o, ok := f.mustOrder(m.country, m.currency, txswitch.ChannelOnline, f.amountCharged(1000, 100000, 0))
	if !ok {
		return
	}
	f.send("get_methods", http.MethodGet, "/v1/orders/"+o.ID+"/methods", o.ID, nil, false)
	if p, ok := f.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card"}); ok {
		f.awaitSettled(p)
	}
}

// methodCase is one kind of checkout: which methods fit it is the routing
// configuration's answer to country, currency, amount and channel.
type methodCase struct {
	name, doc                  string
	country, currency, channel string
	lo, hi                     int64
}

var methodCases = []methodCase{
	{"nl_eur_online", "Dutch online EUR", "NL", "EUR", txswitch.ChannelOnline, 1000, 100000},
	{"be_eur_online", "Belgian online EUR", "BE", "EUR", txswitch.ChannelOnline, 1000, 100000},
	{"be_eur_pos", "Belgian pos EUR", "BE", "EUR", txswitch.ChannelPOS, 1000, 100000},
	{"de_eur_pos", "German pos EUR", "DE", "EUR", txswitch.ChannelPOS, 1000, 100000},
	{"nl_eur_moto", "Dutch moto EUR", "NL", "EUR", txswitch.ChannelMOTO, 1000, 100000},
	{"dk_dkk_online", "Danish online DKK", "DK", "DKK", txswitch.ChannelOnline, 1000, 100000},
	{"fi_eur_online", "Finnish online EUR", "FI", "EUR", txswitch.ChannelOnline, 1000, 100000},
	{"se_sek_online", "Swedish online SEK", "SE", "SEK", txswitch.ChannelOnline, 1000, 100000},
	{"gb_gbp_online", "British online GBP", "GB", "GBP", txswitch.ChannelOnline, 1000, 100000},
	{"us_usd_online", "US online USD", "US", "USD", txswitch.ChannelOnline, 1000, 100000},
	{"jp_jpy_online", "Japanese online JPY", "JP", "JPY", txswitch.ChannelOnline, 100, 90000},
	{"nl_eur_above_ideal_max", "Dutch online EUR 50,000.01+ (above iDEAL's and Klarna's ceilings)", "NL", "EUR", txswitch.ChannelOnline, txswitch.DefaultIDEALMaxAmount + 1, txswitch.DefaultIDEALMaxAmount + 100000},
	// The orders iDEAL's EUR 0.29 fee takes over its ceiling: the charge,
	// not the order, must fit it.
	{"nl_eur_ideal_max_with_fee", "Dutch online EUR 49,999.72 to 50,000.00 (iDEAL's 0.29 fee takes the charge over its ceiling)", "NL", "EUR", txswitch.ChannelOnline, txswitch.DefaultIDEALMaxAmount - 28, txswitch.DefaultIDEALMaxAmount},
	{"nl_eur_below_klarna_min", "Dutch online EUR below 1.00 (under Klarna's floor)", "NL", "EUR", txswitch.ChannelOnline, 1, txswitch.DefaultKlarnaMinAmount - 1},
	// Klarna's windows are per market, in the market's currency: SEK
	// 10.00 to 100,000.00, whatever the euro window's minor units say.
	{"se_sek_below_klarna_min", "Swedish online SEK 1.00 to 9.99 (under Klarna's SEK floor, over its EUR one in minor units)", "SE", "SEK", txswitch.ChannelOnline, txswitch.DefaultKlarnaMinAmount, 999},
	{"se_sek_above_eur_window", "Swedish online SEK 10,000.01 to 100,000.00 (inside Klarna's SEK window, over its EUR ceiling in minor units)", "SE", "SEK", txswitch.ChannelOnline, txswitch.DefaultKlarnaMaxAmount + 1, 10_000_000},
	{"dk_eur_online", "Danish online EUR (MobilePay pays out in DKK only there)", "DK", "EUR", txswitch.ChannelOnline, 1000, 100000},
	{"be_eur_moto", "Belgian moto EUR", "BE", "EUR", txswitch.ChannelMOTO, 1000, 100000},
	{"se_eur_online", "Swedish online EUR (Klarna pays out in SEK only there)", "SE", "EUR", txswitch.ChannelOnline, 1000, 100000},
	{"ch_chf_online", "Swiss online CHF", "CH", "CHF", txswitch.ChannelOnline, 1000, 100000},
	{"pl_pln_online", "Polish online PLN", "PL", "PLN", txswitch.ChannelOnline, 1000, 100000},
}

func flowMethods(mc methodCase) func(*flowCtx) {
	return func(f *flowCtx) {
		o, ok := f.order(mc.country, mc.currency, mc.channel, f.amount(mc.lo, mc.hi))
		if !ok {
			return
		}
		f.send("get_methods", http.MethodGet, "/v1/orders/"+o.ID+"/methods", o.ID, nil, false)
	}
}
