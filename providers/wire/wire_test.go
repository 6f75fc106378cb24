package wire

import (
	"strings"
	"testing"

	txswitch "github.com/txswitch/txswitch/switch"
)

func TestValidKey(t *testing.T) {
	for _, tc := range []struct {
		key  string
		want bool
	}{
		{"pay_1-1", true},
		{"a/b?c", true},
		{"", false},
		{"has space", false},
		{"tab\t", false},
		{"é", false},
		{strings.Repeat("k", MaxKeyLen), true},
		{strings.Repeat("k", MaxKeyLen+1), false},
	} {
		if got := ValidKey(tc.key); got != tc.want {
			t.Errorf("ValidKey(%q) = %v, want %v", tc.key, got, tc.want)
		}
	}
}

func TestDecodeRequest(t *testing.T) {
	tests := []struct {
		name, body, key string
		op              txswitch.ProviderOp
		wantErr         string
	}{
		{"fills key and op", `{"payment_id":"p","amount":{"value":5,"currency":"EUR"}}`, "k", txswitch.OpAuthorize, ""},
		{"cancel needs no amount", `{"payment_id":"p"}`, "k", txswitch.OpCancel, ""},
		{"capture needs an amount", `{"payment_id":"p"}`, "k", txswitch.OpCapture, "positive"},
		{"bad currency", `{"payment_id":"p","amount":{"value":5,"currency":"eur"}}`, "k", txswitch.OpAuthorize, "currency"},
		{"negative", `{"payment_id":"p","amount":{"value":-5,"currency":"EUR"}}`, "k", txswitch.OpRefund, "negative"},
		{"trailing data", `{"payment_id":"p","amount":{"value":5,"currency":"EUR"}} {}`, "k", txswitch.OpAuthorize, "trailing"},
		{"key mismatch", `{"idempotency_key":"x","payment_id":"p","amount":{"value":5,"currency":"EUR"}}`, "k", txswitch.OpAuthorize, "differs"},
		{"status is not posted", `{"payment_id":"p"}`, "k", txswitch.OpStatus, "unknown op"},
		{"bad notify url", `{"payment_id":"p","amount":{"value":5,"currency":"EUR"},"notify_url":"file:///etc"}`, "k", txswitch.OpAuthorize, "notify_url"},
		{"unknown fields allowed", `{"payment_id":"p","amount":{"value":5,"currency":"EUR"},"future":1}`, "k", txswitch.OpAuthorize, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := DecodeRequest(strings.NewReader(tc.body), tc.op, tc.key)
			if tc.wantErr == "" {
				if err != nil || req.IdempotencyKey != tc.key || req.Op != tc.op {
					t.Fatalf("got %+v %v", req, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.wantErr)
			}
		})
	}
}
