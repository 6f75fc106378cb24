package txswitch_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	txswitch "github.com/txswitch/txswitch/switch"
)

// Idempotency records still in progress (requests whose result never
// committed) are kept by expiry; a full batch of them at the front of the
// expiry index made every expiry command scan them again and delete
// nothing, which stopped expiry for good: every later record stayed
// forever. From VersionProviderAmount the leader's next command scans on
// after them.
func TestIdempotencyExpiryGoesPastRecordsInProgress(t *testing.T) {
	h := newHarness(t)
	h.gate(txswitch.VersionProviderAmount)
	stuck := txswitch.DefaultExpireLimit + 5
	for i := range stuck {
		o := h.createOrder(100)
		h.log.Fail(func(d []byte) bool { return strings.Contains(string(d), `"type":"payment_result"`) }, txswitch.ErrStopped, false)
		_, err := h.svc.CreatePayment(h.ctx, caller(fmt.Sprintf("stuck-%d", i)), o.ID, txswitch.CreatePaymentRequest{Method: "card"})
		wantErr(t, err, 503, "outcome_unknown")
	}
	h.clock.Advance(time.Minute)
	first, err := h.svc.CreateOrder(h.ctx, caller("done"), orderReq(100))
	if err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(25 * time.Hour)
	if n, err := h.svc.ExpireIdempotency(h.ctx); err != nil || n != 1 {
		t.Fatalf("expired %d, %v; want the one finished record", n, err)
	}
	again, err := h.svc.CreateOrder(h.ctx, caller("done"), orderReq(100))
	if err != nil || string(again.Body) == string(first.Body) {
		t.Fatalf("the expired key still answers the first order: %v", err)
	}
	// The records in progress are kept: a retry is still told so.
	_, err = h.svc.CreatePayment(h.ctx, caller("stuck-0"), h.order(decode[txswitch.Order](t, first).ID).ID, txswitch.CreatePaymentRequest{Method: "card"})
	if err == nil || !strings.Contains(err.Error(), "in_progress") && !strings.Contains(err.Error(), "reused") {
		t.Fatalf("a record in progress was expired: %v", err)
	}
}
