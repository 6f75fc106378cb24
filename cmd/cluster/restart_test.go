package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	txswitch "github.com/txswitch/txswitch/switch"
)

// restartClient drives merchant traffic at a local cluster whose nodes come
// and go: each request is retried with the SAME Idempotency-Key on another
// node until it gets a definite answer, so every reference is created by
// exactly one key and every payment attempted under one key.
type restartClient struct {
	l    *Local
	http *http.Client
	next atomic.Uint64
}

// send posts body (nil: GET) to some running node; it returns the status
// and body of the first answer that is not "try again", or ok=false when
// every attempt failed (the outcome is then unknown).
func (c *restartClient) send(method, path, idemKey string, body any) (code int, out []byte, ok bool) {
	var raw []byte
	if body != nil {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			panic(err)
		}
	}
	addrs := c.l.APIAddrs()
	for attempt := 0; attempt < 60; attempt++ {
		addr := addrs[c.next.Add(1)%uint64(len(addrs))]
		req, err := http.NewRequestWithContext(context.Background(), method, "http://"+addr+path, bytes.NewReader(raw))
		if err != nil {
			panic(err)
		}
		req.Header.Set("Authorization", "Bearer "+c.l.APIKey)
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		if idemKey != "" {
			req.Header.Set("Idempotency-Key", idemKey)
		}
		resp, err := c.http.Do(req)
		if err == nil {
			b, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch {
			case rerr != nil:
			case resp.StatusCode == http.StatusConflict, resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode >= 500:
				// In progress elsewhere, or this node cannot serve now.
			default:
				return resp.StatusCode, b, true
			}
		}
		time.Sleep(time.Duration(10+attempt*5) * time.Millisecond)
	}
	return 0, nil, false
}

type restartAck struct {
	id, orderID, provider, status string
	amount                        int64
}

type restartLedger struct {
	mu         sync.Mutex
	orders     map[string]string // reference → acknowledged order id
	references []string          // every reference used (each with one key)
	payments   []restartAck
	unexpected []string
	payAcks    atomic.Int64
}

// TestRestartKeepsAcknowledgedWork stops and restarts every node in turn,
// the leader first, then the whole cluster, under create-order + pay
// traffic over HTTP, on real data directories. Afterwards every node
// serves every acknowledged order and payment in its acknowledged state,
// each reference has at most one order (exactly one when acknowledged),
// and each payment was charged at most once by its PSP (exactly once when
// acknowledged captured).
func TestRestartKeepsAcknowledgedWork(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts a cluster on disk")
	}
	l, err := StartLocal(LocalConfig{Dir: t.TempDir(), TickInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cl := &restartClient{l: l, http: &http.Client{Timeout: 10 * time.Second}}
	led := &restartLedger{orders: map[string]string{}}

	const clients = 4
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for op := 0; ; op++ {
				select {
				case <-stop:
					return
				default:
				}
				restartTraffic(cl, led, c, op)
			}
		})
	}
	waitPays := func(n int64) {
		t.Helper()
		target := led.payAcks.Load() + n
		deadline := time.Now().Add(60 * time.Second)
		for led.payAcks.Load() < target {
			if time.Now().After(deadline) {
				t.Fatalf("only %d of %d payments acknowledged in time", led.payAcks.Load(), target)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	restart := func(i int) {
		t.Helper()
		if err := l.StopNode(i); err != nil {
			t.Fatalf("stop node %d: %v", i+1, err)
		}
		waitPays(10) // the other two carry on
		if err := l.RestartNode(i); err != nil {
			t.Fatalf("restart node %d: %v", i+1, err)
		}
		if err := l.WaitReady(30 * time.Second); err != nil {
			t.Fatal(err)
		}
		waitPays(10)
	}

	waitPays(10)
	first := e2eLeaderIndex(t, l)
	restart(first)
	for i := range l.Size() {
		if i != first {
			restart(i)
		}
	}
	// Whole cluster down at once, under traffic.
	for i := range l.Size() {
		if err := l.StopNode(i); err != nil {
			t.Fatalf("stop node %d: %v", i+1, err)
		}
	}
	for i := range l.Size() {
		if err := l.RestartNode(i); err != nil {
			t.Fatalf("restart node %d: %v", i+1, err)
		}
	}
	if err := l.WaitReady(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	waitPays(10)
	close(stop)
	wg.Wait()

	led.mu.Lock()
	defer led.mu.Unlock()
	for _, u := range led.unexpected {
		t.Error(u)
	}
	checkRestartedState(t, l, led)
}

// restartTraffic creates one order and pays it, recording what was
// acknowledged.
func restartTraffic(cl *restartClient, led *restartLedger, c, op int) {
	ref := fmt.Sprintf("rs-%d-%d", c, op)
	// Amounts avoid the simulated PSPs' magic decline suffixes (05, 51).
	amount := int64(1000 + (c*1000+op)%89*10)
	led.mu.Lock()
	led.references = append(led.references, ref)
	led.mu.Unlock()
	code, b, ok := cl.send("POST", "/v1/orders", "o-"+ref, txswitch.CreateOrderRequest{
		Reference: ref, Amount: txswitch.Money{Value: amount, Currency: "EUR"},
		Customer: txswitch.Customer{Country: "NL", ID: "cust-" + ref}, Channel: "online",
	})
	if !ok {
		return // outcome unknown: the reference may have 0 or 1 order
	}
	var o txswitch.Order
	if code != http.StatusCreated || json.Unmarshal(b, &o) != nil || o.ID == "" {
		led.mu.Lock()
		led.unexpected = append(led.unexpected, fmt.Sprintf("create %s: %d %s", ref, code, b))
		led.mu.Unlock()
		return
	}
	led.mu.Lock()
	led.orders[ref] = o.ID
	led.mu.Unlock()

	code, b, ok = cl.send("POST", "/v1/orders/"+o.ID+"/payments", "p-"+ref, txswitch.CreatePaymentRequest{Method: "card"})
	if !ok {
		return
	}
	var p txswitch.Payment
	if code/100 != 2 || json.Unmarshal(b, &p) != nil || p.ID == "" {
		led.mu.Lock()
		led.unexpected = append(led.unexpected, fmt.Sprintf("pay %s: %d %s", o.ID, code, b))
		led.mu.Unlock()
		return
	}
	led.mu.Lock()
	led.payments = append(led.payments, restartAck{id: p.ID, orderID: o.ID, provider: p.Provider, status: p.Status, amount: amount})
	led.mu.Unlock()
	if p.Status == txswitch.PaymentCaptured {
		led.payAcks.Add(1)
	}
}

func checkRestartedState(t *testing.T, l *Local, led *restartLedger) {
	t.Helper()
	// Every node must have caught up before its local state is compared.
	lead := l.Node(e2eLeaderIndex(t, l))
	commit := lead.Raft().Status().Commit
	deadline := time.Now().Add(30 * time.Second)
	for _, n := range l.Nodes() {
		for n.Raft().Status().Applied < commit {
			if time.Now().After(deadline) {
				t.Fatalf("node %d applied %d < commit %d", n.ID(), n.Raft().Status().Applied, commit)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	for _, n := range l.Nodes() {
		// Orders per reference, from the node's own durable state.
		perRef := map[string]int{}
		err := n.db.StateStore(DefaultGroup).Scan([]byte("o/"), []byte("o0"), func(_, v []byte) bool {
			var o txswitch.Order
			if err := json.Unmarshal(v, &o); err != nil {
				t.Errorf("node %d: decode order: %v", n.ID(), err)
				return false
			}
			perRef[o.Reference]++
			return true
		})
		if err != nil {
			t.Fatalf("node %d: scan orders: %v", n.ID(), err)
		}
		for _, ref := range led.references {
			_, acked := led.orders[ref]
			if got := perRef[ref]; got > 1 || (acked && got != 1) {
				t.Errorf("node %d: reference %s has %d orders (acknowledged: %v)", n.ID(), ref, got, acked)
			}
		}
		// Acknowledged resources, as served by this node.
		for _, p := range led.payments {
			var got txswitch.Payment
			if code := restartGet(t, l, n.APIAddr(), "/v1/payments/"+p.id, &got); code != http.StatusOK || got.Status != p.status {
				t.Errorf("node %d: payment %s: %d %q; acknowledged %q", n.ID(), p.id, code, got.Status, p.status)
			}
		}
		for ref, id := range led.orders {
			var got txswitch.Order
			if code := restartGet(t, l, n.APIAddr(), "/v1/orders/"+id, &got); code != http.StatusOK || got.Reference != ref {
				t.Errorf("node %d: order %s (%s): %d %+v", n.ID(), id, ref, code, got)
			}
		}
	}
	// Independent evidence: the PSPs' ledgers. One charge per captured
	// payment, and no payment the switch knows of charged twice.
	for _, p := range led.payments {
		if p.status != txswitch.PaymentCaptured {
			continue
		}
		tot := l.Sims[p.provider].Totals(p.id)
		if tot.Charges != 1 || tot.Captured != p.amount {
			t.Errorf("PSP %s ledger for %s: %+v; want one charge of %d captured", p.provider, p.id, tot, p.amount)
		}
	}
	n := l.Nodes()[0]
	err := n.db.StateStore(DefaultGroup).Scan([]byte("p/"), []byte("p0"), func(_, v []byte) bool {
		var p txswitch.Payment
		if err := json.Unmarshal(v, &p); err != nil {
			t.Errorf("decode payment: %v", err)
			return false
		}
		for name, s := range l.Sims {
			if tot := s.Totals(p.ID); tot.Charges > 1 {
				t.Errorf("PSP %s charged payment %s %d times", name, p.ID, tot.Charges)
			}
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d references, %d orders and %d payments acknowledged", len(led.references), len(led.orders), len(led.payments))
}

// restartGet GETs path from the node at addr and decodes a 200 answer. A
// node that cannot serve reads right now (503: e.g. no leader confirmed
// yet after the restarts) is asked again, for a bounded time.
func restartGet(t *testing.T, l *Local, addr, path string, out any) int {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		req, err := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+l.APIKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Errorf("GET %s on %s: %v", path, addr, err)
			return 0
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusOK:
			if err := json.Unmarshal(b, out); err != nil {
				t.Errorf("GET %s: decode %s: %v", path, b, err)
			}
		case resp.StatusCode == http.StatusServiceUnavailable && time.Now().Before(deadline):
			time.Sleep(20 * time.Millisecond)
			continue
		default:
			t.Logf("GET %s on %s: %d %s", path, addr, resp.StatusCode, b)
		}
		return resp.StatusCode
	}
}
