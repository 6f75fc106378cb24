package cluster

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"

	txswitch "github.com/txswitch/txswitch/switch"
)

// call sends one merchant API request and decodes a JSON answer.
func call(t *testing.T, l *Local, addr, method, path, idemKey string, body any, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://"+addr+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+l.APIKey)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if idemKey != "" {
		req.Header.Set("Idempotency-Key", idemKey)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: decode %s: %v", method, path, b, err)
		}
	}
	return resp.StatusCode
}

func TestLocalClusterOrderAndPayThroughAFollower(t *testing.T) {
	l, err := StartLocal(LocalConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	follower := l.Node((e2eLeaderIndex(t, l) + 1) % l.Size())

	var o txswitch.Order
	if code := call(t, l, follower.APIAddr(), "POST", "/v1/orders", "o-1", txswitch.CreateOrderRequest{
		Reference: "shop-1", Amount: txswitch.Money{Value: 4998, Currency: "EUR"},
		Customer: txswitch.Customer{Country: "NL"}, Channel: "online",
	}, &o); code != 201 {
		t.Fatalf("create order: %d", code)
	}
	var p txswitch.Payment
	if code := call(t, l, follower.APIAddr(), "POST", "/v1/orders/"+o.ID+"/payments", "p-1",
		txswitch.CreatePaymentRequest{Method: "card"}, &p); code != 201 || p.Status != txswitch.PaymentCaptured {
		t.Fatalf("pay: %d %+v", code, p)
	}
	// Independent evidence: the PSP's ledger has exactly one charge.
	if tot := l.Sims[p.Provider].Totals(p.ID); tot.Charges != 1 {
		t.Fatalf("ledger of %s for %s: %+v", p.Provider, p.ID, tot)
	}
	var got txswitch.Order
	for _, n := range l.Nodes() {
		if code := call(t, l, n.APIAddr(), "GET", "/v1/orders/"+o.ID, "", nil, &got); code != 200 || got.Status != txswitch.OrderPaid {
			t.Fatalf("node %d: order %d %+v", n.ID(), code, got)
		}
	}
	var tl txswitch.TimelineResponse
	if code := call(t, l, follower.APIAddr(), "GET", "/v1/orders/"+o.ID+"/timeline", "", nil, &tl); code != 200 || len(tl.Events) < 3 {
		t.Fatalf("timeline: %d %+v", code, tl)
	}
}
