package sim

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/txswitch/txswitch/providers/wire"
	txswitch "github.com/txswitch/txswitch/switch"
)

// FuzzDecodeRequest throws arbitrary bodies, keys and ops at the PSP's
// request handling. It must never panic, answer only the documented
// statuses, book exactly the requests it accepted, and answer a valid
// result for those.
func FuzzDecodeRequest(f *testing.F) {
	good, _ := json.Marshal(authReq("k", "p", 1200))
	f.Add(good, "k", "authorize")
	f.Add([]byte(`{"op":"capture","payment_id":"p","amount":{"value":1,"currency":"EUR"}}`), "k2", "capture")
	f.Add([]byte(`{"amount":{"value":-1}}`), "k", "refund")
	f.Add([]byte(`{"payment_id":"p","amount":{"value":1e40,"currency":"EUR"}}`), "k", "authorize")
	f.Add([]byte(`{} {}`), "k", "cancel")
	f.Add([]byte(`[`), "", "authorize")
	f.Fuzz(func(t *testing.T, body []byte, key, op string) {
		s := New(Config{})
		defer s.Close()
		req := httptest.NewRequest(http.MethodPost, wire.PaymentsPrefix+"authorize", bytes.NewReader(body))
		req.SetPathValue("op", op)
		req.Header.Set(wire.HeaderIdempotencyKey, key)
		rec := httptest.NewRecorder()
		s.handleOp(rec, req)

		switch rec.Code {
		case http.StatusOK:
			var res txswitch.ProviderResult
			if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil || !wire.ValidOutcome(txswitch.ProviderOp(op), res.Outcome) {
				t.Fatalf("200 with %q: %v", rec.Body.String(), err)
			}
			if l := s.Ledger(); len(l) != 1 || l[0].IdempotencyKey != key {
				t.Fatalf("accepted but ledger = %+v", l)
			}
			// The decoder's output must be stable: replaying is a replay.
			rec2 := httptest.NewRecorder()
			req2 := httptest.NewRequest(http.MethodPost, wire.PaymentsPrefix+op, bytes.NewReader(body))
			req2.SetPathValue("op", op)
			req2.Header.Set(wire.HeaderIdempotencyKey, key)
			s.handleOp(rec2, req2)
			if rec2.Code != http.StatusOK || !bytes.Equal(rec2.Body.Bytes(), rec.Body.Bytes()) {
				t.Fatalf("replay answered %d %q, first %q", rec2.Code, rec2.Body.String(), rec.Body.String())
			}
		case http.StatusBadRequest, http.StatusNotFound, http.StatusRequestEntityTooLarge:
			if l := s.Ledger(); len(l) != 0 {
				t.Fatalf("refused with %d but booked %+v", rec.Code, l)
			}
		default:
			t.Fatalf("unexpected status %d: %s", rec.Code, rec.Body.String())
		}
	})
}
