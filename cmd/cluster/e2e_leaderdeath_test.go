package cluster

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/txswitch/txswitch/providers/sim"
	txswitch "github.com/txswitch/txswitch/switch"
)

// TestE2ELeaderDiesBetweenIntentAndResult stops the leader while its
// provider call is in flight, after the intent was committed and before
// any result could be: the new leader's resolver must settle the payment
// by status inquiry (never by charging again), and every node, the
// restarted one included, must agree with the PSP's ledger.
func TestE2ELeaderDiesBetweenIntentAndResult(t *testing.T) {
	l := startE2E(t)
	psA := l.Sims["psp_a"]
	tests := []struct {
		name string
		// behaviour of psp_a's authorizations while the leader dies.
		stall sim.MethodBehaviour
		// wantCaptured: the PSP charged (captured) or booked nothing.
		wantCaptured bool
	}{
		{"psp charged then stalled", sim.MethodBehaviour{Ops: []txswitch.ProviderOp{txswitch.OpAuthorize}, ChargeThenTimeoutRate: 1, StallMillis: 20_000}, true},
		// The PSP's latency outlives the old leader's call, so it never
		// books anything: the inquiry answers not_found.
		{"psp stalled before charging", sim.MethodBehaviour{Ops: []txswitch.ProviderOp{txswitch.OpAuthorize}, Latency: sim.Latency{FixedMillis: 20_000}}, false},
	}
	for k, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A timeout beyond the API's 5 s graceful shutdown: the old
			// leader cannot record a result before it stops.
			e2eTuneProviders(t, l, 8000, 5000)
			li := e2eLeaderIndex(t, l)
			leader := l.Node(li).APIAddr()
			other := l.Node((li + 1) % l.Size()).APIAddr()
			if err := psA.SetBehaviour(sim.Behaviour{Methods: map[string]sim.MethodBehaviour{"*": tt.stall}}); err != nil {
				t.Fatal(err)
			}
			amount := int64(6540 + 10*k)
			o := e2eCreateOrder(t, l, leader, e2eOrderReq(amount, "EUR", "NL"))
			// The intent is committed (another node shows the payment)
			// and psp_a has the request.
			done, paymentID := e2ePayInBackground(t, l, leader, other, o.ID)
			if tt.wantCaptured {
				waitFor(t, 10*time.Second, "psp_a to book the charge", func() bool { return psA.Totals(paymentID).Charges == 1 })
			} else {
				time.Sleep(200 * time.Millisecond) // let the request reach the PSP
			}
			if err := l.StopNode(li); err != nil {
				t.Fatalf("stop leader: %v", err)
			}
			psA.ResetBehaviour()
			a := <-done
			t.Logf("client's answer: err=%v status=%d %s", a.err, a.r.Status, a.r.Body)
			if a.err == nil && a.r.Status >= 500 && (a.r.Status != 503 || a.r.Header.Get("Retry-After") == "") {
				t.Errorf("a node that cannot finish must answer 503 with Retry-After: %d %v %s", a.r.Status, a.r.Header, a.r.Body)
			}
			if a.err == nil && a.r.Status/100 == 2 && !strings.Contains(string(a.r.Body), paymentID) {
				t.Fatalf("answer names another payment: %s", a.r.Body)
			}

			// Back to short timeouts so the new leader's resolver asks
			// soon. (The old call is bounded by 8 s and psp_a's stall
			// outlives it, so nothing can be booked after the inquiry.)
			// Short, but one a loaded machine meets: the inquiry and the
			// second payment below must be answered, not in doubt.
			waitFor(t, 20*time.Second, "a new leader", func() bool { return l.Leader() != nil })
			e2eTuneProviders(t, l, 2000, 5000)
			got := e2eWaitPayment(t, l, paymentID, "resolved by the new leader", func(p txswitch.Payment) bool {
				return p.Status != txswitch.PaymentInDoubt && p.Status != txswitch.PaymentPending
			})
			tot := e2eTotalsAll(l, paymentID)
			if tt.wantCaptured {
				if tot.Charges != 1 || got.Status != txswitch.PaymentCaptured || got.Captured.Value != tot.Captured {
					t.Fatalf("payment %+v vs ledgers %+v", got, tot)
				}
			} else {
				if tot.Charges != 0 || got.Status == txswitch.PaymentCaptured || got.Status == txswitch.PaymentAuthorized {
					t.Fatalf("payment %+v vs ledgers %+v", got, tot)
				}
				if n := len(l.Sims["psp_b"].LedgerFor(paymentID)); n != 0 {
					t.Fatalf("an unresolved call was failed over to psp_b (%d entries)", n)
				}
			}
			if a.err == nil && a.r.Status/100 == 2 {
				var p txswitch.Payment
				a.r.decode(t, &p)
				if p.Status == txswitch.PaymentCaptured && got.Status != txswitch.PaymentCaptured {
					t.Fatalf("acknowledged captured, now %s", got.Status)
				}
			}
			// The old leader comes back and agrees.
			if err := l.RestartNode(li); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < l.Size(); i++ {
				n := l.Node(i)
				var last string
				defer func() {
					if t.Failed() {
						t.Logf("node %d last answered: %s", i+1, last)
					}
				}()
				waitFor(t, 20*time.Second, fmt.Sprintf("node %d to agree with the ledger", i+1), func() bool {
					r, err := e2eSend(n.APIAddr(), e2eRawReq{Method: "GET", Path: "/v1/payments/" + paymentID, Headers: e2eMerchantHeaders(l.APIKey, "")})
					last = fmt.Sprintf("%v %d %s", err, r.Status, r.Body)
					var p txswitch.Payment
					if err != nil || r.Status != 200 || json.Unmarshal(r.Body, &p) != nil {
						return false
					}
					return p.Status == got.Status && p.Captured == got.Captured
				})
			}
			if !tt.wantCaptured {
				// Nothing was charged, so the order can still be paid, once.
				r, p := e2ePay(t, l, e2eAnyAddr(t, l, true), o.ID, txswitch.CreatePaymentRequest{Method: "card"})
				if r.Status != 201 || p.Status != txswitch.PaymentCaptured {
					t.Fatalf("paying again after a payment the PSP never received: %d %s", r.Status, r.Body)
				}
				if e2eTotalsAll(l, p.ID).Charges != 1 || e2eTotalsAll(l, paymentID).Charges != 0 {
					t.Fatalf("charges after the second attempt: new %+v, old %+v", e2eTotalsAll(l, p.ID), e2eTotalsAll(l, paymentID))
				}
			}
		})
	}
}
