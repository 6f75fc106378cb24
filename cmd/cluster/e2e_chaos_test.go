package cluster

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/txswitch/txswitch/providers/sim"
	txswitch "github.com/txswitch/txswitch/switch"
)

// Answers that break API.md's contract for unavailability, counted by
// e2eRetrying.
var (
	badAnswers atomic.Int64
	badSample  atomic.Value
)

// e2eAckedPayment is what a client was told, 2xx, about one payment.
type e2eAckedPayment struct {
	orderID string
	payment txswitch.Payment
}

// e2eRetrying sends one logical request with one Idempotency-Key until a 2xx
// or a definitive 4xx, rotating over the node addresses; transport errors,
// 5xx and 409 "in progress" are retried (that is what the key is for).
func e2eRetrying(l *Local, addrs []string, start int, method, path, key string, body []byte, until time.Time, retries *atomic.Int64) (e2eResp, bool) {
	for i := start; time.Now().Before(until); i++ {
		if i > start {
			retries.Add(1)
		}
		r, err := e2eSend(addrs[i%len(addrs)], e2eRawReq{Method: method, Path: path, Headers: e2eMerchantHeaders(l.APIKey, key), Body: body})
		if err == nil && r.Status >= 500 && (r.Status != 503 || r.Header.Get("Retry-After") == "") {
			// API.md: a node that cannot serve answers 503 with Retry-After.
			badAnswers.Add(1)
			badSample.Store(fmt.Sprintf("%d %s %s", r.Status, r.Header, r.Body))
		}
		switch {
		case err != nil, r.Status >= 500, r.Status == 409 && r.errCode() == "idempotency_request_in_progress":
			time.Sleep(30 * time.Millisecond)
			continue
		}
		return r, r.Status/100 == 2
	}
	return e2eResp{}, false
}

// TestE2ELeaderKillDuringTraffic runs concurrent clients creating and
// paying orders while the leader is stopped and restarted twice, then
// checks the client's acknowledgements and the PSP ledgers against every
// node.
func TestE2ELeaderKillDuringTraffic(t *testing.T) {
	l := startE2E(t)
	addrs := l.APIAddrs()
	// PSP latency widens the window between intent and result, so the
	// kills land on provider calls in flight.
	for _, name := range []string{"psp_a", "psp_b"} {
		if err := l.Sims[name].SetBehaviour(sim.Behaviour{Methods: map[string]sim.MethodBehaviour{
			"*": {Latency: sim.Latency{MinMillis: 10, MaxMillis: 120}},
		}}); err != nil {
			t.Fatal(err)
		}
	}
	const clients = 8
	trafficFor := 7 * time.Second

	var (
		mu       sync.Mutex
		acked    []e2eAckedPayment
		orders   []string // every acknowledged order
		attempts atomic.Int64
		failures atomic.Int64
		retries  atomic.Int64
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				attempts.Add(1)
				until := time.Now().Add(15 * time.Second)
				// Multiples of 10 never hit the PSP's magic decline amounts.
				amount := int64(1000 + 10*(c*1000+i))
				ob := e2eMustJSON(t, txswitch.CreateOrderRequest{Reference: fmt.Sprintf("chaos-%d-%d", c, i),
					Amount: txswitch.Money{Value: amount, Currency: "EUR"}, Customer: txswitch.Customer{Country: "DE"}, Channel: "online"})
				r, ok := e2eRetrying(l, addrs, c+i, "POST", "/v1/orders", e2eNewKey("chaos-o"), ob, until, &retries)
				if !ok {
					failures.Add(1)
					continue
				}
				var o txswitch.Order
				if json.Unmarshal(r.Body, &o) != nil || o.ID == "" {
					t.Errorf("order answer: %s", r.Body)
					return
				}
				mu.Lock()
				orders = append(orders, o.ID)
				mu.Unlock()
				capture := "automatic"
				if i%4 == 3 {
					capture = "manual"
				}
				pb := e2eMustJSON(t, txswitch.CreatePaymentRequest{Method: "card", Capture: capture})
				pkey := e2eNewKey("chaos-p")
				var dup chan e2eResp
				if i%3 == 0 {
					// An impatient client: a concurrent copy with the same
					// key to another node. Both answers must agree.
					dup = make(chan e2eResp, 1)
					go func() {
						d, ok := e2eRetrying(l, addrs, c+i+2, "POST", "/v1/orders/"+o.ID+"/payments", pkey, pb, until, &retries)
						if !ok {
							d = e2eResp{}
						}
						dup <- d
					}()
				}
				r, ok = e2eRetrying(l, addrs, c+i+1, "POST", "/v1/orders/"+o.ID+"/payments", pkey, pb, until, &retries)
				if dup != nil {
					if d := <-dup; ok && d.Status != 0 && (d.Status != r.Status || !bytes.Equal(d.Body, r.Body)) {
						t.Errorf("two copies of one payment request answered differently:\n%d %s\n%d %s", r.Status, r.Body, d.Status, d.Body)
					}
				}
				if !ok {
					failures.Add(1)
					continue
				}
				var p txswitch.Payment
				if json.Unmarshal(r.Body, &p) != nil || p.ID == "" {
					t.Errorf("payment answer: %d %s", r.Status, r.Body)
					return
				}
				mu.Lock()
				acked = append(acked, e2eAckedPayment{orderID: o.ID, payment: p})
				mu.Unlock()
			}
		}(c)
	}

	// The nemesis: stop the leader, restart it, twice.
	kills := 0
	deadline := time.Now().Add(trafficFor)
	for round := 0; round < 2; round++ {
		time.Sleep(time.Second)
		li := -1
		waitFor(t, 20*time.Second, "a leader to kill", func() bool { li = l.LeaderIndex(); return li >= 0 })
		if err := l.StopNode(li); err != nil {
			t.Errorf("stop node %d: %v", li+1, err)
		}
		kills++
		time.Sleep(1500 * time.Millisecond)
		if err := l.RestartNode(li); err != nil {
			t.Fatalf("restart node %d: %v", li+1, err)
		}
	}
	time.Sleep(time.Until(deadline))
	close(stop)
	wg.Wait()
	if err := l.WaitReady(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d kills; %d payments acknowledged of %d attempts, %d gave up, %d retries", kills, len(acked), attempts.Load(), failures.Load(), retries.Load())
	byStatus := map[string]int{}
	for _, a := range acked {
		byStatus[a.payment.Status]++
	}
	t.Logf("acknowledged payments by status: %v", byStatus)
	if n := badAnswers.Load(); n > 0 {
		t.Errorf("%d answers were 5xx other than 503 with Retry-After, e.g. %v", n, badSample.Load())
	}
	if retries.Load() == 0 {
		t.Fatal("no request was ever retried: the leader kills did not reach the clients (vacuous run)")
	}
	if len(acked) < clients {
		t.Fatalf("only %d payments acknowledged: the cluster did not keep taking payments", len(acked))
	}

	// Every acknowledged order exists on every node.
	for i := 0; i < l.Size(); i++ {
		n := l.Node(i)
		for _, id := range orders {
			waitFor(t, 30*time.Second, "order "+id+" on node "+fmt.Sprint(i+1), func() bool {
				r, err := e2eSend(n.APIAddr(), e2eRawReq{Method: "GET", Path: "/v1/orders/" + id, Headers: e2eMerchantHeaders(l.APIKey, "")})
				return err == nil && r.Status == 200
			})
		}
	}

	// Every acknowledged payment exists on every node, consistent with
	// what the client was told once it is settled.
	settled := func(s string) bool { return s != txswitch.PaymentInDoubt && s != txswitch.PaymentPending }
	for _, a := range acked {
		for i := 0; i < l.Size(); i++ {
			n := l.Node(i)
			var got txswitch.Payment
			waitFor(t, 30*time.Second, "payment "+a.payment.ID+" settled on node "+fmt.Sprint(i+1), func() bool {
				r, err := e2eSend(n.APIAddr(), e2eRawReq{Method: "GET", Path: "/v1/payments/" + a.payment.ID, Headers: e2eMerchantHeaders(l.APIKey, "")})
				if err != nil || r.Status != 200 || json.Unmarshal(r.Body, &got) != nil {
					return false
				}
				return settled(got.Status)
			})
			was := a.payment
			switch was.Status {
			case txswitch.PaymentCaptured, txswitch.PaymentAuthorized, txswitch.PaymentDeclined, txswitch.PaymentFailed:
				if got.Status != was.Status || got.Captured != was.Captured || got.Authorized != was.Authorized {
					t.Errorf("node %d: payment %s acknowledged %s (captured %d) is now %s (captured %d)",
						i+1, was.ID, was.Status, was.Captured.Value, got.Status, got.Captured.Value)
				}
			case txswitch.PaymentInDoubt, txswitch.PaymentPending:
				// Settled later: checked against the ledger below.
			default:
				t.Errorf("payment %s acknowledged in status %s", was.ID, was.Status)
			}
			if got.OrderID != a.orderID {
				t.Errorf("payment %s belongs to %s, acknowledged for %s", was.ID, got.OrderID, a.orderID)
			}
		}
	}

	// The PSPs' side: at most one charge per payment id, at most one
	// charged payment per order, and each charge known to the switch
	// with the same amounts.
	leader := e2eAnyAddr(t, l, true)
	perOrder := map[string]int{}
	seen := map[string]bool{}
	for name, s := range l.Sims {
		for _, e := range s.Ledger() {
			if e.Op != txswitch.OpAuthorize || seen[e.PaymentID] {
				continue
			}
			seen[e.PaymentID] = true
			tot := e2eTotalsAll(l, e.PaymentID)
			if tot.Charges > 1 {
				t.Errorf("payment %s charged %d times (seen at %s)", e.PaymentID, tot.Charges, name)
			}
			var got txswitch.Payment
			waitFor(t, 30*time.Second, "payment "+e.PaymentID+" to settle", func() bool {
				r, err := e2eSend(leader, e2eRawReq{Method: "GET", Path: "/v1/payments/" + e.PaymentID, Headers: e2eMerchantHeaders(l.APIKey, "")})
				if err != nil || r.Status != 200 || json.Unmarshal(r.Body, &got) != nil {
					return false
				}
				return settled(got.Status)
			})
			if tot.Charges == 1 {
				perOrder[got.OrderID]++
			}
			if got.Captured.Value != tot.Captured || (tot.Charges == 1) != (got.Authorized.Value > 0) {
				t.Errorf("payment %s: switch says %s authorized %d captured %d, PSPs say %+v",
					e.PaymentID, got.Status, got.Authorized.Value, got.Captured.Value, tot)
			}
		}
	}
	for id, n := range perOrder {
		if n > 1 {
			t.Errorf("order %s charged by %d payments", id, n)
		}
	}
	for _, a := range acked {
		if a.payment.Status == txswitch.PaymentCaptured {
			if tot := e2eTotalsAll(l, a.payment.ID); tot.Charges != 1 || tot.Captured != a.payment.Captured.Value {
				t.Errorf("acknowledged captured payment %s: PSPs say %+v", a.payment.ID, tot)
			}
		}
	}
}

// e2ePspTotals is one payment id's totals over every PSP.
type e2ePspTotals struct {
	Charges  int
	Captured int64
}

func e2eTotalsAll(l *Local, paymentID string) e2ePspTotals {
	var t e2ePspTotals
	for _, s := range l.Sims {
		x := s.Totals(paymentID)
		t.Charges += x.Charges
		t.Captured += x.Captured
	}
	return t
}
