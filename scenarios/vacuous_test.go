package scenarios

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	txswitch "github.com/txswitch/txswitch/switch"
)

// Checks that passed with nothing to judge: each test below fails on the
// code before the fix.

// fakeSwitch answers the API calls the paying flows make, every payment
// approved at once (captured, or authorized for manual capture).
type fakeSwitch struct {
	mu     sync.Mutex
	n      int
	orders map[string]*txswitch.Order
	pays   map[string]*txswitch.Payment
}

func (s *fakeSwitch) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/") // v1, kind, id, sub
	reply := func(code int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(v)
	}
	s.n++
	switch {
	case r.Method == http.MethodPost && len(parts) == 2 && parts[1] == "orders":
		var req txswitch.CreateOrderRequest
		_ = json.NewDecoder(r.Body).Decode(&req)
		o := &txswitch.Order{ID: fmt.Sprintf("ord_%d", s.n), Status: txswitch.OrderCreated, Amount: req.Amount, Channel: req.Channel}
		s.orders[o.ID] = o
		reply(http.StatusCreated, o)
	case r.Method == http.MethodPost && len(parts) == 4 && parts[1] == "orders" && parts[3] == "payments":
		o := s.orders[parts[2]]
		var req txswitch.CreatePaymentRequest
		_ = json.NewDecoder(r.Body).Decode(&req)
		amount := o.Amount
		if req.Amount != nil {
			amount = *req.Amount
		}
		p := &txswitch.Payment{ID: fmt.Sprintf("pay_%d", s.n), OrderID: o.ID, Status: txswitch.PaymentCaptured, Provider: "psp_a", Method: req.Method,
			Amount: amount, Authorized: amount, Captured: amount, Refunded: txswitch.Money{Currency: amount.Currency}}
		if req.Capture == "manual" {
			p.Status, p.Captured.Value = txswitch.PaymentAuthorized, 0
		}
		s.pays[p.ID] = p
		reply(http.StatusCreated, p)
	case len(parts) == 3 && parts[1] == "payments" && r.Method == http.MethodGet:
		reply(http.StatusOK, s.pays[parts[2]])
	case len(parts) == 4 && parts[1] == "payments" && parts[3] == "captures":
		p := s.pays[parts[2]]
		var req txswitch.CaptureRequest
		_ = json.NewDecoder(r.Body).Decode(&req)
		if req.Amount == nil {
			p.Captured.Value = p.Authorized.Value
		} else {
			p.Captured.Value += req.Amount.Value
		}
		p.Status = txswitch.PaymentCaptured
		reply(http.StatusCreated, p)
	case len(parts) == 4 && parts[1] == "payments" && parts[3] == "refunds":
		p := s.pays[parts[2]]
		var req txswitch.RefundRequest
		_ = json.NewDecoder(r.Body).Decode(&req)
		amount := txswitch.Money{Value: p.Captured.Value - p.Refunded.Value, Currency: p.Captured.Currency}
		if req.Amount != nil {
			amount = *req.Amount
		}
		p.Refunded.Value += amount.Value
		reply(http.StatusCreated, txswitch.Refund{ID: fmt.Sprintf("ref_%d", s.n), PaymentID: p.ID, OrderID: p.OrderID, Amount: amount, Status: "succeeded"})
	default:
		reply(http.StatusNotFound, map[string]any{"error": map[string]string{"code": "not_found", "message": r.URL.Path}})
	}
}

// fakeTier points the client at one address; the runner's other needs of
// a cluster are not used by the traffic.
type fakeTier struct {
	tierCluster
	addr string
}

func (f fakeTier) apiNodes() []apiNode { return []apiNode{{addr: f.addr, leader: true}} }
func (f fakeTier) apiKey() string      { return "sk_test" }

// The paying flows that never read their payment back left linearizable
// and reads_see_writes with creates only (regression): every flow that
// made a payment now reads it back once after its last write, and only
// once when it did not read it already.
func TestPayingFlowsReadBack(t *testing.T) {
	srv := httptest.NewServer(&fakeSwitch{orders: map[string]*txswitch.Order{}, pays: map[string]*txswitch.Payment{}})
	defer srv.Close()
	names := []string{"card_pay", "sepa_pay", "partial_refund", "full_refund", "pos_sale", "multi_currency", "moto_card", "refund_moto", "manual_capture"}
	var sched []arrival
	for i, n := range names {
		sched = append(sched, arrival{at: time.Duration(i) * time.Millisecond, flow: n, seed: uint64(i + 1)})
	}
	e := &env{sc: &Scenario{Traffic: Traffic{Target: "any"}}, t: fakeTier{addr: strings.TrimPrefix(srv.URL, "http://")}, hist: &History{}, start: time.Now()}
	cl := newClient(e, 0, 0)
	defer cl.close()
	drive(context.Background(), e, cl, sched, len(sched))
	calls, runs, _, _, _ := e.hist.snapshot()
	if len(runs) != len(names) {
		t.Fatalf("%d flows ran, want %d", len(runs), len(names))
	}
	byFlow := map[int][]Call{}
	for _, c := range calls {
		byFlow[c.FlowID] = append(byFlow[c.FlowID], c)
	}
	for _, r := range runs {
		cs := byFlow[r.ID]
		last := cs[len(cs)-1]
		reads := 0
		for _, c := range cs {
			if c.Op == "get_payment" {
				reads++
			}
		}
		if last.Op != "get_payment" || last.Status != 200 {
			t.Errorf("flow %s: last call is %s %s (%d), want a read of its payment", r.Flow, last.Op, last.Path, last.Status)
		}
		want := 1
		if r.Flow == "manual_capture" {
			want = 3 // it reads after each write already: nothing added
		}
		if reads != want {
			t.Errorf("flow %s: %d reads of its payment, want %d", r.Flow, reads, want)
		}
	}
	ev := &Evidence{Calls: calls, Runs: runs}
	lin := checkLinearizable(ev)
	if !lin.Passed || !strings.Contains(lin.Note, fmt.Sprintf("%d reads judged", len(names)+2)) {
		t.Errorf("linearizable: %v %s %v", lin.Passed, lin.Note, lin.Violations)
	}
	if r := checkReadsSeeWrites(ev); !r.Passed || strings.HasPrefix(r.Note, "0 ") {
		t.Errorf("reads_see_writes judged nothing: %s %v", r.Note, r.Violations)
	}
}

// A checker that timed out passed as "unknown" (regression): it fails now.
func TestLinearizableTimeoutFails(t *testing.T) {
	defer func(d time.Duration) { linTimeout = d }(linTimeout)
	linTimeout = time.Millisecond
	// Twenty unanswered captures of distinct powers of two and a read of
	// a sum none of their subsets makes: the search is exponential.
	calls := linCalls(t)
	for i := range 20 {
		calls = append(calls, captureCall(t, fmt.Sprint("u", i), int64(1)<<i, 0, 0, 20, 30))
	}
	calls = append(calls, readCall(t, 1<<21, 40, 50))
	r := checkLinearizable(&Evidence{Calls: calls})
	if r.Passed || !strings.Contains(strings.Join(r.Violations, "\n"), "timed out") {
		t.Fatalf("a timed-out check must fail: passed=%v %v", r.Passed, r.Violations)
	}
}

// The share of flows that must get a write acknowledged follows what the
// scenario says it tolerates.
func TestServedFloor(t *testing.T) {
	cases := []struct {
		name   string
		expect []Expect
		want   float64
	}{
		{"no expectation", nil, minServedShare},
		{"availability above the default", []Expect{{Availability: &ExpectAvailability{Min: 0.95}}}, minServedShare},
		{"availability below the default", []Expect{{Availability: &ExpectAvailability{Min: 0.5, Window: "during_faults"}}}, 0.5},
		{"refusals expected", []Expect{{Rejected: &ExpectRejected{Status: 503, Min: 3}}, {MinAcked: &ExpectCount{Min: 5}}}, relaxedServedShare},
		{"a 422 expected is no outage", []Expect{{Rejected: &ExpectRejected{Status: 422, Min: 1}}}, minServedShare},
	}
	for _, tc := range cases {
		if got := servedFloor(&Scenario{Expect: tc.expect}); got != tc.want {
			t.Errorf("%s: floor %v, want %v", tc.name, got, tc.want)
		}
	}
	// The floor reaches the check through the evidence.
	ev := healthy(t)
	ev.Runs = append(ev.Runs, FlowRun{ID: 2, Flow: "card_pay"}, FlowRun{ID: 3, Flow: "card_pay"})
	if checkTrafficRan(ev).Passed {
		t.Fatal("1 of 3 flows served passed the default floor")
	}
	ev.ServedFloor = relaxedServedShare
	if r := checkTrafficRan(ev); !r.Passed {
		t.Fatalf("1 of 3 flows served failed the relaxed floor: %v", r.Violations)
	}
}
