package providers

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/txswitch/txswitch/providers/wire"
	txswitch "github.com/txswitch/txswitch/switch"
)

// FuzzClassify feeds arbitrary answers to the response classifier. Whatever
// the PSP sends, the adapter must not panic, must answer either a result
// with an outcome valid for the op or a *ProviderError, and may call an
// answer definitive only when the PSP explicitly refused before processing.
func FuzzClassify(f *testing.F) {
	f.Add(200, false, []byte(`{"outcome":"approved","provider_ref":"r"}`), uint8(0))
	f.Add(402, false, []byte(`{"outcome":"declined","code":"do_not_honor"}`), uint8(0))
	f.Add(503, true, []byte(`{"error":{"code":"unavailable"}}`), uint8(0))
	f.Add(422, false, []byte(`{"error":{"code":"idempotency_key_reused"}}`), uint8(1))
	f.Add(200, false, []byte(`{"outcome":"not_found"}`), uint8(4))
	f.Add(200, false, []byte(`{"outcome":`), uint8(0))
	p := NewHTTPProvider(txswitch.ProviderConfig{Name: "fz", BaseURL: "http://x"}, nil)
	ops := []txswitch.ProviderOp{txswitch.OpAuthorize, txswitch.OpCapture, txswitch.OpRefund, txswitch.OpCancel, txswitch.OpStatus}
	f.Fuzz(func(t *testing.T, status int, notProcessed bool, body []byte, opIdx uint8) {
		if status < 100 || status > 999 {
			return
		}
		op := ops[int(opIdx)%len(ops)]
		resp := &http.Response{StatusCode: status, Header: http.Header{}}
		if notProcessed {
			resp.Header.Set(wire.HeaderProcessed, "false")
		}
		res, err := p.classify(op, resp, body)
		if err == nil {
			if !wire.ValidOutcome(op, res.Outcome) {
				t.Fatalf("result %+v is not a valid answer to %s", res, op)
			}
			if status >= 200 && status < 300 {
				var direct txswitch.ProviderResult
				if json.Unmarshal(body, &direct) != nil {
					t.Fatalf("undecodable 2xx body accepted: %q", body)
				}
			} else if res.Outcome != txswitch.OutcomeDeclined || status < 400 || status > 499 {
				t.Fatalf("status %d gave result %+v", status, res)
			}
			return
		}
		pe, ok := err.(*txswitch.ProviderError)
		if !ok {
			t.Fatalf("error %T is not a *ProviderError", err)
		}
		if pe.Definitive {
			explicit := (notProcessed && (status == 502 || status == 503)) || refusedBeforeProcessing[status]
			if !explicit {
				t.Fatalf("status %d (X-Processed false: %v) classified definitive: %v", status, notProcessed, pe)
			}
		}
	})
}
