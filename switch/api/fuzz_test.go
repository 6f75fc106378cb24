package api

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/valyala/fasthttp"

	txswitch "github.com/txswitch/txswitch/switch"
)

// serveDirect runs one request through the handler without a network.
func serveDirect(h fasthttp.RequestHandler, method, uri string, body []byte) *fasthttp.RequestCtx {
	var req fasthttp.Request
	req.Header.SetMethod(method)
	req.SetRequestURI(uri)
	req.Header.Set("Authorization", "Bearer key-m1")
	req.Header.SetContentType("application/json")
	req.SetBody(body)
	fc := &fasthttp.RequestCtx{}
	fc.Init(&req, nil, nil)
	h(fc)
	return fc
}

// fuzzDecode checks decodeStrict on arbitrary input: it never panics,
// errors are 400 domain errors, and whatever it accepts re-encodes to a
// document it accepts again with the same encoding. It also runs the body
// through the whole handler, which must never answer 500.
func fuzzDecode[T any](f *testing.F, uri string, seeds []string) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	n := New(Options{Service: newFakeService()})
	h := n.Handler()
	f.Fuzz(func(t *testing.T, body []byte) {
		var v T
		err := decodeStrict(body, &v)
		if err != nil {
			var e *txswitch.Error
			if !errors.As(err, &e) || e.Status != 400 || e.Code == "" {
				t.Fatalf("decode error %#v is not a 400 domain error", err)
			}
		} else {
			if !json.Valid(body) {
				t.Fatalf("accepted invalid JSON %q", body)
			}
			b, merr := json.Marshal(v)
			if merr != nil {
				t.Fatalf("re-encode: %v", merr)
			}
			var again T
			if err := decodeStrict(b, &again); err != nil {
				t.Fatalf("canonical form %s rejected: %v", b, err)
			}
			// Compare encodings: omitempty turns [] into an absent field.
			if b2, _ := json.Marshal(again); string(b) != string(b2) {
				t.Fatalf("round trip changed the value: %s → %s", b, b2)
			}
		}
		fc := serveDirect(h, "POST", uri, body)
		if st := fc.Response.StatusCode(); st >= 500 {
			t.Fatalf("status %d for %q: %s", st, body, fc.Response.Body())
		}
	})
}

func FuzzDecodeCreateOrder(f *testing.F) {
	fuzzDecode[txswitch.CreateOrderRequest](f, "/v1/orders", []string{
		orderBody, `{}`, `{"amount":{"value":-1,"currency":"EUR"}}`, `{"lines":[{"quantity":1e400}]}`,
		`{"reference":"a","reference":"b"}`, `{"customer":{"country":null}}`, `[]`, `{"lines":null}`, "{\"\xff\":1}",
	})
}

func FuzzDecodePayment(f *testing.F) {
	fuzzDecode[txswitch.CreatePaymentRequest](f, "/v1/orders/ord_1/payments", []string{
		`{"method":"card","amount":{"value":4998,"currency":"EUR"},"capture":"automatic","payment_data":{"token":"tok_1"}}`,
		`{"method":"card","amount":null}`, `{"payment_data":{"a":"b","a":"c"}}`, `{"payment_data":[]}`, `{"method":"card"} {}`,
	})
}
