package cluster

import (
	"context"
	"testing"
	"time"

	"github.com/txswitch/txswitch/storage/central/pgtest"
	txswitch "github.com/txswitch/txswitch/switch"
)

// TestE2ECentralExpiryAndCancellation: what support reads in PostgreSQL
// about an order that expired unpaid (status and expires_at) and a voided
// authorization (cancellation status) matches the cluster.
func TestE2ECentralExpiryAndCancellation(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and a cluster on disk")
	}
	srv := pgtest.NewServer(t)
	l, dbURL := startCentralE2E(t, srv, "")
	e2eWaitVersion(t, l, txswitch.VersionCancellation)
	e2eSetOrderExpiry(t, l, 1)
	leader := e2eAnyAddr(t, l, true)
	unpaid := e2eCreateOrder(t, l, leader, e2eOrderReq(1100, "EUR", "NL"))
	voided := e2eCreateOrder(t, l, leader, e2eOrderReq(2200, "EUR", "NL"))
	r, p := e2ePay(t, l, leader, voided.ID, txswitch.CreatePaymentRequest{Method: "card", Capture: txswitch.CaptureManual})
	if r.Status != 201 {
		t.Fatalf("authorize: %d %s", r.Status, r.Body)
	}
	if r := e2eDo(t, l, leader, "POST", "/v1/payments/"+p.ID+"/cancel", e2eNewKey("void"), nil); r.Status != 200 {
		t.Fatalf("cancel: %d %s", r.Status, r.Body)
	}
	waitFor(t, 20*time.Second, "the unpaid order to expire", func() bool {
		return e2eGetOrder(t, l, leader, unpaid.ID).Status == txswitch.OrderExpired
	})
	waitExportedAll(t, l)

	pool := pgPool(t, dbURL)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var status string
	var expires *time.Time
	if err := pool.QueryRow(ctx, "SELECT status, expires_at FROM orders WHERE id = $1", unpaid.ID).Scan(&status, &expires); err != nil {
		t.Fatal(err)
	}
	if status != txswitch.OrderExpired || expires == nil || !expires.Equal(unpaid.ExpiresAt.Truncate(time.Microsecond)) { // PostgreSQL keeps microseconds
		t.Fatalf("PostgreSQL has order %s %s expires_at %v; the cluster %s %v", unpaid.ID, status, expires, txswitch.OrderExpired, unpaid.ExpiresAt)
	}
	var pstatus string
	var cstatus *string
	if err := pool.QueryRow(ctx, "SELECT status, cancellation_status FROM payments WHERE id = $1", p.ID).Scan(&pstatus, &cstatus); err != nil {
		t.Fatal(err)
	}
	if pstatus != txswitch.PaymentCancelled || cstatus == nil || *cstatus != "succeeded" {
		t.Fatalf("PostgreSQL has payment %s %s cancellation %v", p.ID, pstatus, cstatus)
	}
}
