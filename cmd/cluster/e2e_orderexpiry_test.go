package cluster

import (
	"strings"
	"testing"
	"time"

	txswitch "github.com/txswitch/txswitch/switch"
)

// TestE2EOrderExpiry: with the merchant's orders living 2 s, an unpaid
// order turns expired on every node (the leader's sweep), explains why,
// and refuses a payment with 409 order_expired; a paid one is untouched.
func TestE2EOrderExpiry(t *testing.T) {
	l := startE2E(t)
	e2eWaitVersion(t, l, txswitch.VersionOrderExpiry)
	e2eSetOrderExpiry(t, l, 2)
	leader := e2eAnyAddr(t, l, true)
	unpaid := e2eCreateOrder(t, l, leader, e2eOrderReq(1200, "EUR", "NL"))
	paid := e2eCreateOrder(t, l, leader, e2eOrderReq(1300, "EUR", "NL"))
	if unpaid.ExpiresAt == nil || unpaid.ExpiresAt.Sub(unpaid.CreatedAt) != 2*time.Second {
		t.Fatalf("expires_at %v for created_at %v", unpaid.ExpiresAt, unpaid.CreatedAt)
	}
	if r, _ := e2ePay(t, l, leader, paid.ID, txswitch.CreatePaymentRequest{Method: "card"}); r.Status != 201 {
		t.Fatalf("pay: %d %s", r.Status, r.Body)
	}
	waitFor(t, 20*time.Second, "the unpaid order expired on every node", func() bool {
		for _, n := range l.Nodes() {
			if e2eGetOrder(t, l, n.APIAddr(), unpaid.ID).Status != txswitch.OrderExpired {
				return false
			}
		}
		return true
	})
	if st := e2eGetOrder(t, l, leader, paid.ID).Status; st != txswitch.OrderPaid {
		t.Fatalf("paid order is %s", st)
	}
	ex := e2eExplainOf(t, l, leader, unpaid.ID)
	if ex.Status != txswitch.OrderExpired || len(ex.Causes) == 0 {
		t.Fatalf("explain = %+v", ex)
	}
	r := e2eDo(t, l, e2eAnyAddr(t, l, true), "POST", "/v1/orders/"+unpaid.ID+"/payments", e2eNewKey("late"), txswitch.CreatePaymentRequest{Method: "card"})
	if r.Status != 409 || !strings.Contains(string(r.Body), txswitch.CodeOrderExpired) {
		t.Fatalf("payment on an expired order: %d %s", r.Status, r.Body)
	}
	if !e2eHas(e2eEventTypes(e2eTimelineOf(t, l, leader, unpaid.ID)), "order_expired") {
		t.Fatal("no order_expired timeline event")
	}
}
