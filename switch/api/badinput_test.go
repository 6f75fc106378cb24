package api

import (
	"strings"
	"testing"
)

// TestBadInputs sends malformed requests and checks the exact status, code
// and field, and that no business method of the Service was called.
func TestBadInputs(t *testing.T) {
	pay := "/v1/orders/ord_1/payments"
	big := `{"reference":"` + strings.Repeat("a", 70<<10) + `"}`
	notif := `{"notification_id":"n1","idempotency_key":"k","result":{"outcome":"approved"}}`
	noCT := [][2]string{{"Authorization", "Bearer key-m1"}}
	tests := []struct {
		name       string
		req        request
		wantStatus int
		wantCode   string
		wantField  string
	}{
		// JSON syntax and shape.
		{"malformed json", request{"POST", "/v1/orders", mh(), `{"reference":`}, 400, "invalid_json", ""},
		{"not json", request{"POST", "/v1/orders", mh(), `reference=shop`}, 400, "invalid_json", ""},
		{"trailing garbage", request{"POST", "/v1/orders", mh(), orderBody + `x`}, 400, "invalid_json", ""},
		{"two objects", request{"POST", "/v1/orders", mh(), orderBody + orderBody}, 400, "invalid_json", ""},
		{"trailing brace", request{"POST", "/v1/orders", mh(), orderBody + `}`}, 400, "invalid_json", ""},
		{"array body", request{"POST", "/v1/orders", mh(), `[` + orderBody + `]`}, 400, "invalid_json", ""},
		{"null body", request{"POST", "/v1/orders", mh(), `null`}, 400, "invalid_json", ""},
		{"string body", request{"POST", "/v1/orders", mh(), `"order"`}, 400, "invalid_json", ""},
		{"missing body", request{"POST", "/v1/orders", mh(), ``}, 400, "missing_body", ""},
		{"whitespace body", request{"POST", "/v1/orders", mh(), " \n\t "}, 400, "missing_body", ""},
		{"missing payment body", request{"POST", pay, noCT, ``}, 400, "missing_body", ""},
		{"unknown top-level field", request{"POST", "/v1/orders", mh(), `{"reference":"r","evil":1}`}, 400, "unknown_field", "evil"},
		{"unknown nested field", request{"POST", "/v1/orders", mh(), `{"amount":{"value":1,"currency":"EUR","fx":2}}`}, 400, "unknown_field", "amount.fx"},
		{"unknown field in array", request{"POST", "/v1/orders", mh(), `{"lines":[{"sku":"a"},{"sku":"b","price":3}]}`}, 400, "unknown_field", "lines[1].price"},
		{"field with wrong case", request{"POST", "/v1/orders", mh(), `{"Reference":"r"}`}, 400, "unknown_field", "Reference"},
		{"duplicate field", request{"POST", "/v1/orders", mh(), `{"reference":"a","reference":"b"}`}, 400, "duplicate_field", "reference"},
		{"string amount", request{"POST", "/v1/orders", mh(), `{"amount":{"value":"4998","currency":"EUR"}}`}, 400, "invalid_field", "amount.value"},
		{"fractional amount", request{"POST", "/v1/orders", mh(), `{"amount":{"value":49.98,"currency":"EUR"}}`}, 400, "invalid_field", "amount.value"},
		{"exponent amount", request{"POST", "/v1/orders", mh(), `{"amount":{"value":1e3,"currency":"EUR"}}`}, 400, "invalid_field", "amount.value"},
		{"overflowing amount", request{"POST", "/v1/orders", mh(), `{"amount":{"value":99999999999999999999,"currency":"EUR"}}`}, 400, "invalid_field", "amount.value"},
		{"amount is a number", request{"POST", "/v1/orders", mh(), `{"amount":4998}`}, 400, "invalid_field", "amount"},
		{"null amount object", request{"POST", "/v1/orders", mh(), `{"amount":null}`}, 400, "invalid_field", "amount"},
		{"numeric currency", request{"POST", "/v1/orders", mh(), `{"amount":{"value":1,"currency":978}}`}, 400, "invalid_field", "amount.currency"},
		{"lines not array", request{"POST", "/v1/orders", mh(), `{"lines":{"sku":"a"}}`}, 400, "invalid_field", "lines"},
		{"quantity string", request{"POST", "/v1/orders", mh(), `{"lines":[{"quantity":"2"}]}`}, 400, "invalid_field", "lines[0].quantity"},
		{"bool reference", request{"POST", "/v1/orders", mh(), `{"reference":true}`}, 400, "invalid_field", "reference"},
		{"payment_data number", request{"POST", pay, mh(), `{"method":"card","payment_data":{"token":5}}`}, 400, "invalid_field", "payment_data.token"},
		{"payment unknown field", request{"POST", pay, mh(), `{"method":"card","cvv":"123"}`}, 400, "unknown_field", "cvv"},
		{"capture string amount", request{"POST", "/v1/payments/pay_1/captures", mh(), `{"amount":{"value":"1","currency":"EUR"}}`}, 400, "invalid_field", "amount.value"},
		{"refund unknown field", request{"POST", "/v1/payments/pay_1/refunds", mh(), `{"reason":"x","bank":"y"}`}, 400, "unknown_field", "bank"},
		{"cancel with fields", request{"POST", "/v1/payments/pay_1/cancel", mh(), `{"reason":"x"}`}, 400, "unknown_field", "reason"},
		{"negative leader id", request{"POST", "/v1/admin/leader", adminHeaders(), `{"to":-1}`}, 400, "invalid_field", "to"},
		{"overflowing leader id", request{"POST", "/v1/admin/leader", adminHeaders(), `{"to":18446744073709551616}`}, 400, "invalid_field", "to"},
		{"zero leader id", request{"POST", "/v1/admin/leader", adminHeaders(), `{"to":0}`}, 400, "invalid_field", "to"},
		{"negative breaker setting", request{"PUT", "/v1/admin/config", adminHeaders(), `{"providers":[{"breaker":{"half_open_max":-1}}]}`}, 400, "invalid_field", "providers[0].breaker.half_open_max"},
		{"bad member address", request{"POST", "/v1/admin/members", adminHeaders(), `{"raft_addr":"nohost","api_addr":"h:1"}`}, 400, "invalid_field", "raft_addr"},
		{"bad member id", request{"DELETE", "/v1/admin/members/abc", adminHeaders(), ``}, 400, "invalid_field", "id"},
		{"NUL in a string", request{"POST", "/v1/orders", mh(), `{"reference":"shop\u00001"}`}, 400, "invalid_json", ""},
		{"NUL in a refund reason", request{"POST", "/v1/payments/pay_1/refunds", mh(), `{"reason":"\u0000"}`}, 400, "invalid_json", ""},
		{"invalid utf-8 key", request{"POST", "/v1/orders", mh(), "{\"\xff\":1}"}, 400, "invalid_json", ""},
		{"invalid utf-8 value", request{"POST", "/v1/orders", mh(), "{\"reference\":\"a\xc3\"}"}, 400, "invalid_json", ""},
		// Sizes and media types.
		{"oversized body", request{"POST", "/v1/orders", mh(), big}, 413, "body_too_large", ""},
		{"text/plain body", request{"POST", "/v1/orders", [][2]string{{"Authorization", "Bearer key-m1"}, {"Content-Type", "text/plain"}}, orderBody}, 415, "unsupported_media_type", ""},
		{"form body", request{"POST", "/v1/orders", [][2]string{{"Authorization", "Bearer key-m1"}, {"Content-Type", "application/x-www-form-urlencoded"}}, orderBody}, 415, "unsupported_media_type", ""},
		{"no content type", request{"POST", "/v1/orders", noCT, orderBody}, 415, "unsupported_media_type", ""},
		{"latin1 charset", request{"POST", "/v1/orders", [][2]string{{"Authorization", "Bearer key-m1"}, {"Content-Type", "application/json; charset=latin1"}}, orderBody}, 415, "unsupported_media_type", ""},
		{"capture body without content type", request{"POST", "/v1/payments/pay_1/captures", noCT, `{}`}, 415, "unsupported_media_type", ""},
		// Idempotency keys.
		{"empty idempotency key", request{"POST", "/v1/orders", mh("Idempotency-Key", ""), orderBody}, 400, "invalid_idempotency_key", "Idempotency-Key"},
		{"256-char idempotency key", request{"POST", "/v1/orders", mh("Idempotency-Key", strings.Repeat("k", 256)), orderBody}, 400, "invalid_idempotency_key", "Idempotency-Key"},
		// RFC 9110 forbids control characters in header values; fasthttp's
		// parser refuses the request before routing, and the protocol error
		// handler answers in the API's error format.
		{"control char in key", request{"POST", "/v1/orders", mh("Idempotency-Key", "a\x01b"), orderBody}, 400, "bad_request", ""},
		{"tab in key", request{"POST", "/v1/orders", mh("Idempotency-Key", "a\tb"), orderBody}, 400, "invalid_idempotency_key", "Idempotency-Key"},
		{"non-ascii key", request{"POST", "/v1/orders", mh("Idempotency-Key", "clé-1"), orderBody}, 400, "invalid_idempotency_key", "Idempotency-Key"},
		{"two idempotency keys", request{"POST", "/v1/orders", mh("Idempotency-Key", "a", "Idempotency-Key", "b"), orderBody}, 400, "invalid_idempotency_key", "Idempotency-Key"},
		// Authentication.
		{"missing authorization", request{"POST", "/v1/orders", [][2]string{{"Content-Type", "application/json"}}, orderBody}, 401, "unauthorized", ""},
		{"wrong api key", request{"GET", "/v1/orders/ord_1", [][2]string{{"Authorization", "Bearer nope"}}, ""}, 401, "unauthorized", ""},
		{"basic auth", request{"GET", "/v1/orders/ord_1", [][2]string{{"Authorization", "Basic a2V5LW0xOg=="}}, ""}, 401, "unauthorized", ""},
		{"bearer without key", request{"GET", "/v1/orders/ord_1", [][2]string{{"Authorization", "Bearer"}}, ""}, 401, "unauthorized", ""},
		{"key with space", request{"GET", "/v1/orders/ord_1", [][2]string{{"Authorization", "Bearer key m1"}}, ""}, 401, "unauthorized", ""},
		{"admin token as api key", request{"GET", "/v1/orders/ord_1", [][2]string{{"Authorization", "Bearer " + testAdminToken}}, ""}, 401, "unauthorized", ""},
		{"api key as admin token", request{"GET", "/v1/admin/config", [][2]string{{"Authorization", "Bearer key-m1"}}, ""}, 401, "unauthorized", ""},
		{"wrong admin token", request{"PUT", "/v1/admin/config", [][2]string{{"Authorization", "Bearer admin-secreT"}, {"Content-Type", "application/json"}}, `{}`}, 401, "unauthorized", ""},
		{"unauthenticated bad body", request{"POST", "/v1/orders", [][2]string{{"Content-Type", "text/plain"}}, `garbage`}, 401, "unauthorized", ""},
		{"unauthenticated oversized body", request{"POST", "/v1/orders", [][2]string{{"Content-Type", "application/json"}}, big}, 401, "unauthorized", ""},
		{"wrong key, overlong id", request{"GET", "/v1/payments/" + strings.Repeat("p", 200), [][2]string{{"Authorization", "Bearer nope"}}, ""}, 401, "unauthorized", ""},
		{"wrong admin token, bad member id", request{"DELETE", "/v1/admin/members/abc", [][2]string{{"Authorization", "Bearer nope"}}, ""}, 401, "unauthorized", ""},
		{"unsigned oversized notification", request{"POST", "/v1/notifications/simpsp", [][2]string{{"Content-Type", "application/json"}}, big}, 413, "body_too_large", ""},
		{"notification without signature", request{"POST", "/v1/notifications/simpsp", [][2]string{{"Content-Type", "application/json"}}, notif}, 401, "unauthorized", ""},
		{"notification wrong signature", request{"POST", "/v1/notifications/simpsp", [][2]string{{"Content-Type", "application/json"}, {"X-Provider-Signature", sign("other", notif)}}, notif}, 401, "unauthorized", ""},
		{"notification signature not hex", request{"POST", "/v1/notifications/simpsp", [][2]string{{"Content-Type", "application/json"}, {"X-Provider-Signature", strings.Repeat("z", 64)}}, notif}, 401, "unauthorized", ""},
		{"notification unconfigured provider", request{"POST", "/v1/notifications/other", [][2]string{{"Content-Type", "application/json"}, {"X-Provider-Signature", sign("psp-secret", notif)}}, notif}, 401, "unauthorized", ""},
		{"notification signed unknown field", request{"POST", "/v1/notifications/simpsp", [][2]string{{"Content-Type", "application/json"}, {"X-Provider-Signature", sign("psp-secret", `{"x":1}`)}}, `{"x":1}`}, 400, "unknown_field", "x"},
		// Routing.
		{"wrong method", request{"DELETE", "/v1/orders", mh(), ""}, 405, "method_not_allowed", ""},
		{"get on write route", request{"GET", "/v1/payments/pay_1/cancel", mh(), ""}, 405, "method_not_allowed", ""},
		{"unknown path", request{"GET", "/v1/customers", mh(), ""}, 404, "not_found", ""},
		{"trailing slash", request{"GET", "/v1/orders/ord_1/", mh(), ""}, 404, "not_found", ""},
		{"id with slash", request{"GET", "/v1/orders/ord_1/x/methods", mh(), ""}, 404, "not_found", ""},
		{"id with encoded slash", request{"GET", "/v1/payments/pay%2F1", mh(), ""}, 404, "not_found", ""},
		{"id with space", request{"GET", "/v1/payments/pay%201", mh(), ""}, 404, "not_found", ""},
		{"overlong id", request{"GET", "/v1/payments/" + strings.Repeat("p", 200), mh(), ""}, 404, "not_found", ""},
		{"bad provider name", request{"POST", "/v1/notifications/a.b", [][2]string{{"Content-Type", "application/json"}}, notif}, 404, "not_found", ""},
		{"too many segments", request{"GET", "/v1/a/b/c/d/e/f/g/h/i", mh(), ""}, 404, "not_found", ""},
	}
	if len(tests) < 40 {
		t.Fatalf("only %d cases", len(tests))
	}
	n := newTestNode(t, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(n.svc.businessCalls())
			resp := n.do(t, tt.req)
			code, field := resp.errCode()
			if resp.status != tt.wantStatus || code != tt.wantCode || field != tt.wantField {
				t.Fatalf("got %d %q field %q (%s), want %d %q field %q", resp.status, code, field, resp.body,
					tt.wantStatus, tt.wantCode, tt.wantField)
			}
			if after := n.svc.businessCalls(); len(after) != before {
				t.Fatalf("the service was called: %+v", after[before:])
			}
			if tt.wantStatus == 405 && resp.headers["Allow"] == "" {
				t.Error("405 without Allow")
			}
			if tt.wantStatus == 401 && resp.headers["Www-Authenticate"] == "" && resp.headers["WWW-Authenticate"] == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
	// Malformed authorization never reaches Authenticate.
	before := len(n.svc.Calls())
	n.do(t, request{"GET", "/v1/orders/ord_1", [][2]string{{"Authorization", "Token x"}}, ""})
	if after := n.svc.Calls(); len(after) != before {
		t.Fatalf("a malformed Authorization header reached the service: %+v", after[before:])
	}
}
