package cluster

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/txswitch/txswitch/providers/sim"
	txswitch "github.com/txswitch/txswitch/switch"
)

// TestE2EBadInput sends a table of bad requests to the real cluster (via a
// follower and the leader in turn) and checks each gets the right 4xx and
// error code and changes nothing: the affected orders read the same byte
// for byte, the PSP ledgers are identical, and the leader's outbox (every
// committed business change emits an event there) did not grow.
func TestE2EBadInput(t *testing.T) {
	l := startE2E(t)
	leader := e2eAnyAddr(t, l, true)

	// A second merchant, to prove merchants cannot see each other.
	otherKey := "sk_other_" + e2eNewKey("k")
	cfg := e2eRoutingConfig(t, l)
	cfg.Merchants = append(cfg.Merchants, txswitch.MerchantConfig{ID: "mer_other", Name: "Other Shop",
		APIKeyHashes: []string{txswitch.HashAPIKey(otherKey)}})
	e2ePutConfig(t, l, cfg)

	// Fixtures: a paid order, an order with an uncaptured authorization, an
	// open order and another merchant's paid order.
	paid := e2eCreateOrder(t, l, leader, e2eOrderReq(4998, "EUR", "NL"))
	r, pCaptured := e2ePay(t, l, leader, paid.ID, txswitch.CreatePaymentRequest{Method: "card"})
	if r.Status != 201 || pCaptured.Status != txswitch.PaymentCaptured {
		t.Fatalf("fixture payment: %d %s", r.Status, r.Body)
	}
	authOrder := e2eCreateOrder(t, l, leader, e2eOrderReq(3000, "EUR", "NL"))
	r, pAuth := e2ePay(t, l, leader, authOrder.ID, txswitch.CreatePaymentRequest{Method: "card", Capture: "manual"})
	if r.Status != 201 || pAuth.Status != txswitch.PaymentAuthorized {
		t.Fatalf("fixture authorization: %d %s", r.Status, r.Body)
	}
	partOrder := e2eCreateOrder(t, l, leader, e2eOrderReq(3000, "EUR", "BE"))
	r, pPartial := e2ePay(t, l, leader, partOrder.ID, txswitch.CreatePaymentRequest{Method: "card", Capture: "manual"})
	if r.Status != 201 {
		t.Fatalf("fixture authorization: %d %s", r.Status, r.Body)
	}
	if r = e2eDo(t, l, leader, "POST", "/v1/payments/"+pPartial.ID+"/captures", e2eNewKey("cap"), txswitch.CaptureRequest{Amount: e2eEur(1000)}); r.Status != 201 {
		t.Fatalf("fixture partial capture: %d %s", r.Status, r.Body)
	}
	open := e2eCreateOrder(t, l, leader, e2eOrderReq(2000, "EUR", "NL"))
	or := e2eRawReq{Method: "POST", Path: "/v1/orders", Headers: e2eMerchantHeaders(otherKey, e2eNewKey("o")),
		Body: e2eMustJSON(t, e2eOrderReq(1500, "EUR", "DE"))}
	ores, err := e2eSend(leader, or)
	if err != nil || ores.Status != 201 {
		t.Fatalf("other merchant's order: %v %d %s", err, ores.Status, ores.Body)
	}
	var otherOrder txswitch.Order
	ores.decode(t, &otherOrder)
	ores, err = e2eSend(leader, e2eRawReq{Method: "POST", Path: "/v1/orders/" + otherOrder.ID + "/payments",
		Headers: e2eMerchantHeaders(otherKey, e2eNewKey("p")), Body: []byte(`{"method":"card"}`)})
	if err != nil || ores.Status != 201 {
		t.Fatalf("other merchant's payment: %v %d %s", err, ores.Status, ores.Body)
	}
	var otherPay txswitch.Payment
	ores.decode(t, &otherPay)

	valid := string(e2eMustJSON(t, e2eOrderReq(1000, "EUR", "NL")))
	mh := func(extra ...string) [][2]string {
		h := e2eMerchantHeaders(l.APIKey, e2eNewKey("bad"))
		for i := 0; i+1 < len(extra); i += 2 {
			h = append(h, [2]string{extra[i], extra[i+1]})
		}
		return h
	}
	noKey := func(ct string) [][2]string {
		h := [][2]string{{"Authorization", "Bearer " + l.APIKey}}
		if ct != "" {
			h = append(h, [2]string{"Content-Type", ct})
		}
		return h
	}
	withKey := func(key string) [][2]string {
		return [][2]string{{"Authorization", "Bearer " + l.APIKey}, {"Content-Type", "application/json"}, {"Idempotency-Key", key}}
	}
	order := func(body string) e2eRawReq { return e2eRawReq{"POST", "/v1/orders", mh(), []byte(body)} }
	payOn := func(id, body string) e2eRawReq {
		return e2eRawReq{"POST", "/v1/orders/" + id + "/payments", mh(), []byte(body)}
	}
	op := func(payID, what, body string) e2eRawReq {
		return e2eRawReq{"POST", "/v1/payments/" + payID + "/" + what, mh(), []byte(body)}
	}
	get := func(path string) e2eRawReq { return e2eRawReq{"GET", path, mh(), nil} }
	withAmount := func(v int64, cur string) string {
		return fmt.Sprintf(`{"reference":"r","amount":{"value":%d,"currency":%q},"customer":{"country":"NL"},"channel":"online"}`, v, cur)
	}
	lines := func(amount int64, cur, ls string) string {
		return fmt.Sprintf(`{"reference":"r","amount":{"value":%d,"currency":%q},"customer":{"country":"NL"},"lines":[%s]}`, amount, cur, ls)
	}

	// A notification claiming the fixture authorization was approved.
	forged := fmt.Sprintf(`{"notification_id":"n-forged","idempotency_key":%q,"result":{"outcome":"approved"}}`, pAuth.ID)
	rawNotify := func(provider, body, sig string) e2eRawReq {
		h := [][2]string{{"Content-Type", "application/json"}}
		if sig != "" {
			h = append(h, [2]string{"X-Provider-Signature", sig})
		}
		return e2eRawReq{"POST", "/v1/notifications/" + provider, h, []byte(body)}
	}

	tests := []struct {
		name   string
		req    e2eRawReq
		status int
		code   string
	}{
		// Syntax and shape of the JSON.
		{"truncated json", order(`{"reference":`), 400, "invalid_json"},
		{"not json", order(`reference=shop`), 400, "invalid_json"},
		{"array body", order(`[` + valid + `]`), 400, "invalid_json"},
		{"two objects", order(valid + valid), 400, "invalid_json"},
		{"empty body", order(``), 400, "missing_body"},
		{"unknown field", order(`{"reference":"r","discount":5}`), 400, "unknown_field"},
		{"unknown nested field", order(`{"amount":{"value":1,"currency":"EUR","fx":1.1}}`), 400, "unknown_field"},
		{"duplicate field", order(`{"reference":"a","reference":"b"}`), 400, "duplicate_field"},
		{"string amount", order(`{"amount":{"value":"1000","currency":"EUR"}}`), 400, "invalid_field"},
		{"fractional amount", order(`{"amount":{"value":10.5,"currency":"EUR"}}`), 400, "invalid_field"},
		{"int64 overflow amount", order(`{"amount":{"value":9223372036854775808,"currency":"EUR"}}`), 400, "invalid_field"},
		// Money and order rules.
		{"negative amount", order(withAmount(-100, "EUR")), 400, "invalid_amount"},
		{"zero amount", order(withAmount(0, "EUR")), 400, "invalid_amount"},
		{"amount above the maximum", order(withAmount(9223372036854775807, "EUR")), 400, "amount_too_large"},
		{"unknown currency", order(withAmount(1000, "XYZ")), 400, "invalid_currency"},
		{"lower-case currency", order(withAmount(1000, "eur")), 400, "invalid_currency"},
		{"missing currency", order(`{"reference":"r","amount":{"value":1000},"customer":{"country":"NL"}}`), 400, "invalid_currency"},
		{"lines do not add up", order(lines(1000, "EUR", `{"sku":"a","quantity":3,"unit_amount":300}`)), 400, "lines_mismatch"},
		{"JPY lines do not add up", order(lines(1000, "JPY", `{"sku":"a","quantity":1,"unit_amount":10}`)), 400, "lines_mismatch"},
		{"line without sku", order(lines(1000, "EUR", `{"quantity":1,"unit_amount":1000}`)), 400, "invalid_line"},
		{"line with zero quantity", order(lines(1000, "EUR", `{"sku":"a","quantity":0,"unit_amount":1000}`)), 400, "invalid_line"},
		{"line with negative price", order(lines(1000, "EUR", `{"sku":"a","quantity":1,"unit_amount":-1000}`)), 400, "invalid_line"},
		{"unknown country", order(`{"reference":"r","amount":{"value":1000,"currency":"EUR"},"customer":{"country":"XX"}}`), 400, "invalid_country"},
		{"missing country", order(`{"reference":"r","amount":{"value":1000,"currency":"EUR"},"customer":{}}`), 400, "invalid_country"},
		{"unknown channel", order(`{"reference":"r","amount":{"value":1000,"currency":"EUR"},"customer":{"country":"NL"},"channel":"phone"}`), 400, "invalid_channel"},
		{"overlong reference", order(`{"reference":"` + strings.Repeat("r", 300) + `","amount":{"value":1000,"currency":"EUR"},"customer":{"country":"NL"}}`), 400, "invalid_reference"},
		// Transport-level rules.
		{"oversized body", order(`{"reference":"` + strings.Repeat("a", 70<<10) + `"}`), 413, "body_too_large"},
		{"text/plain", e2eRawReq{"POST", "/v1/orders", noKey("text/plain"), []byte(valid)}, 415, "unsupported_media_type"},
		{"no content type", e2eRawReq{"POST", "/v1/orders", noKey(""), []byte(valid)}, 415, "unsupported_media_type"},
		{"wrong api key", e2eRawReq{"POST", "/v1/orders", [][2]string{{"Authorization", "Bearer sk_wrong"}, {"Content-Type", "application/json"}}, []byte(valid)}, 401, "unauthorized"},
		{"no api key", e2eRawReq{"GET", "/v1/orders/" + paid.ID, nil, nil}, 401, "unauthorized"},
		{"admin token as api key", e2eRawReq{"GET", "/v1/orders/" + paid.ID, [][2]string{{"Authorization", "Bearer " + l.AdminToken}}, nil}, 401, "unauthorized"},
		{"api key as admin token", e2eRawReq{"POST", "/v1/admin/payments/" + pAuth.ID + "/review", e2eMerchantHeaders(l.APIKey, ""), []byte(`{"decision":"approve"}`)}, 401, "unauthorized"},
		{"256-char idempotency key", e2eRawReq{"POST", "/v1/orders", withKey(strings.Repeat("k", 256)), []byte(valid)}, 400, "invalid_idempotency_key"},
		{"non-ascii idempotency key", e2eRawReq{"POST", "/v1/orders", withKey("clé-1"), []byte(valid)}, 400, "invalid_idempotency_key"},
		{"empty idempotency key", e2eRawReq{"POST", "/v1/orders", withKey(""), []byte(valid)}, 400, "invalid_idempotency_key"},
		{"wrong http method", e2eRawReq{"DELETE", "/v1/orders/" + paid.ID, mh(), nil}, 405, "method_not_allowed"},
		// Unknown and foreign resources.
		{"unknown order", get("/v1/orders/ord_doesnotexist"), 404, "order_not_found"},
		{"pay an unknown order", payOn("ord_doesnotexist", `{"method":"card"}`), 404, "order_not_found"},
		{"unknown payment", get("/v1/payments/pay_doesnotexist"), 404, "payment_not_found"},
		{"capture an unknown payment", op("pay_doesnotexist", "captures", `{}`), 404, "payment_not_found"},
		{"another merchant's order", get("/v1/orders/" + otherOrder.ID), 404, "order_not_found"},
		{"another merchant's timeline", get("/v1/orders/" + otherOrder.ID + "/timeline"), 404, "order_not_found"},
		{"pay another merchant's order", payOn(otherOrder.ID, `{"method":"card"}`), 404, "order_not_found"},
		{"another merchant's payment", get("/v1/payments/" + otherPay.ID), 404, "payment_not_found"},
		{"refund another merchant's payment", op(otherPay.ID, "refunds", `{}`), 404, "payment_not_found"},
		// Payment rules.
		{"method not available in NL", payOn(open.ID, `{"method":"bancontact"}`), 422, "method_not_available"},
		{"unknown method", payOn(open.ID, `{"method":"bitcoin"}`), 422, "method_not_available"},
		{"missing method", payOn(open.ID, `{"capture":"manual"}`), 400, "invalid_method"},
		{"unknown capture mode", payOn(open.ID, `{"method":"card","capture":"later"}`), 400, "invalid_capture"},
		{"payment above the open amount", payOn(open.ID, `{"method":"card","amount":{"value":2001,"currency":"EUR"}}`), 422, "amount_exceeds_open_amount"},
		{"payment in another currency", payOn(open.ID, `{"method":"card","amount":{"value":100,"currency":"USD"}}`), 422, "currency_mismatch"},
		{"negative payment", payOn(open.ID, `{"method":"card","amount":{"value":-1,"currency":"EUR"}}`), 400, "invalid_amount"},
		{"numeric payment data", payOn(open.ID, `{"method":"card","payment_data":{"token":5}}`), 400, "invalid_field"},
		{"pay a paid order", payOn(paid.ID, `{"method":"card"}`), 409, "order_fully_paid"},
		// Captures, refunds and cancels.
		{"capture above authorized", op(pAuth.ID, "captures", `{"amount":{"value":3001,"currency":"EUR"}}`), 422, "amount_exceeds_authorized"},
		{"capture in another currency", op(pAuth.ID, "captures", `{"amount":{"value":100,"currency":"USD"}}`), 422, "currency_mismatch"},
		{"capture zero", op(pAuth.ID, "captures", `{"amount":{"value":0,"currency":"EUR"}}`), 400, "invalid_amount"},
		{"capture a captured payment", op(pCaptured.ID, "captures", `{}`), 409, "invalid_state"},
		{"refund above captured", op(pCaptured.ID, "refunds", `{"amount":{"value":4999,"currency":"EUR"}}`), 422, "amount_exceeds_captured"},
		{"refund an uncaptured payment", op(pAuth.ID, "refunds", `{"amount":{"value":100,"currency":"EUR"}}`), 409, "invalid_state"},
		{"refund with an unknown channel", op(pCaptured.ID, "refunds", `{"channel":"fax"}`), 400, "invalid_channel"},
		{"refund with unknown field", op(pCaptured.ID, "refunds", `{"bank":"x"}`), 400, "unknown_field"},
		{"cancel a captured payment", op(pCaptured.ID, "cancel", ``), 409, "invalid_state"},
		{"capture above the uncaptured rest", op(pPartial.ID, "captures", `{"amount":{"value":2001,"currency":"EUR"}}`), 422, "amount_exceeds_authorized"},
		{"refund above the partial capture", op(pPartial.ID, "refunds", `{"amount":{"value":1001,"currency":"EUR"}}`), 422, "amount_exceeds_captured"},
		// (A cancel of pPartial would release the rest of its
		// authorization: not a mistake since cluster version 6.)
		{"refund in another currency", op(pPartial.ID, "refunds", `{"amount":{"value":100,"currency":"GBP"}}`), 422, "currency_mismatch"},
		{"cancel with a body", op(pAuth.ID, "cancel", `{"reason":"x"}`), 400, "unknown_field"},
		{"review an unheld payment", e2eRawReq{"POST", "/v1/admin/payments/" + pAuth.ID + "/review",
			[][2]string{{"Authorization", "Bearer " + l.AdminToken}, {"Content-Type", "application/json"}}, []byte(`{"decision":"approve"}`)}, 409, "invalid_state"},
		// Forged provider notifications.
		{"unsigned notification", rawNotify("psp_a", forged, ""), 401, "unauthorized"},
		{"notification signed with another secret", rawNotify("psp_a", forged, e2eHMACHex("not-the-secret", forged)), 401, "unauthorized"},
		{"notification for an unknown provider", rawNotify("psp_zz", forged, e2eHMACHex("x", forged)), 401, "unauthorized"},
		{"review with a bad decision", e2eRawReq{"POST", "/v1/admin/payments/" + pAuth.ID + "/review",
			[][2]string{{"Authorization", "Bearer " + l.AdminToken}, {"Content-Type", "application/json"}}, []byte(`{"decision":"maybe"}`)}, 400, "invalid_decision"},
	}
	if len(tests) < 40 {
		t.Fatalf("only %d cases", len(tests))
	}

	// snapshot is everything a bad request must not change.
	type snapshot struct {
		bodies  map[string][]byte
		ledgers map[string][]sim.LedgerEntry
		backlog uint64
	}
	take := func() snapshot {
		s := snapshot{bodies: map[string][]byte{}, ledgers: e2eLedgers(l)}
		for _, id := range []string{paid.ID, authOrder.ID, partOrder.ID, open.ID} {
			for _, path := range []string{"/v1/orders/" + id, "/v1/orders/" + id + "/timeline"} {
				s.bodies[path] = e2eDo(t, l, leader, "GET", path, "", nil).Body
			}
		}
		og, err := e2eSend(leader, e2eRawReq{Method: "GET", Path: "/v1/orders/" + otherOrder.ID, Headers: e2eMerchantHeaders(otherKey, "")})
		if err != nil || og.Status != 200 {
			t.Fatalf("other merchant's order: %v %d", err, og.Status)
		}
		s.bodies["other"] = og.Body
		s.backlog = e2eAdminStatus(t, l, leader).Outbox.Backlog
		return s
	}
	// The outbox check is only evidence if committed changes show there.
	base := take().backlog
	e2eCreateOrder(t, l, leader, e2eOrderReq(1234, "EUR", "NL"))
	if take().backlog <= base {
		t.Fatal("creating an order did not grow the outbox: the no-change check would be vacuous")
	}
	follower := e2eFollowerAddr(t, l)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := leader
			if i%2 == 1 {
				addr = follower // followers forward writes: same answers
			}
			before := take()
			got, err := e2eSend(addr, tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if got.Status != tt.status || got.errCode() != tt.code {
				t.Errorf("got %d %s, want %d %s", got.Status, got.Body, tt.status, tt.code)
			}
			var e e2eAPIError
			if err := e2eJsonUnmarshalStrict(got.Body, &e); err != nil || e.Error.Message == "" {
				t.Errorf("error body without a message: %s", got.Body)
			}
			after := take()
			for k, v := range before.bodies {
				if !bytes.Equal(v, after.bodies[k]) {
					t.Errorf("%s changed:\n%s\n%s", k, v, after.bodies[k])
				}
			}
			if !e2eSameLedgers(before.ledgers, after.ledgers) {
				t.Errorf("a PSP ledger changed")
			}
			if before.backlog != after.backlog {
				t.Errorf("outbox grew from %d to %d: something was committed", before.backlog, after.backlog)
			}
		})
	}
}

func e2eHMACHex(secret, body string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(body))
	return hex.EncodeToString(m.Sum(nil))
}
