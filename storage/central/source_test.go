package central

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	txswitch "github.com/txswitch/txswitch/switch"
)

// fakeSource is an in-memory outbox with a watermark, faithful to the Source
// contract: dense seqs, trimmed only up to the watermark, reads after it.
// It also keeps the "truth" (latest order/payment states) for comparison.
type fakeSource struct {
	mu      sync.Mutex
	events  []txswitch.OutboxEvent // retained: seq > trimmed
	trimmed uint64
	head    uint64
	wm      uint64
	leader  atomic.Bool

	// advanceHook, when set, runs before the watermark moves; an error
	// simulates the leader dying after the PostgreSQL commit.
	advanceHook func(seq uint64) error
	regressions int // AdvanceExportWatermark called with seq < wm
	// readErr, when set, fails every ReadOutbox (a journal that cannot be
	// read).
	readErr error

	orders    map[string]txswitch.Order
	payments  map[string]txswitch.Payment
	orderSeq  map[string]uint64
	nOrders   int
	nTimeline int
	base      time.Time
}

func newFakeSource() *fakeSource {
	s := &fakeSource{orders: map[string]txswitch.Order{}, payments: map[string]txswitch.Payment{},
		orderSeq: map[string]uint64{}, base: time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)}
	s.leader.Store(true)
	return s
}

func (s *fakeSource) IsLeader() bool { return s.leader.Load() }

func (s *fakeSource) ReadOutbox(after uint64, limit int) ([]txswitch.OutboxEvent, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.readErr != nil {
		return nil, s.readErr
	}
	if after < s.trimmed {
		return nil, fmt.Errorf("read after %d: trimmed up to %d", after, s.trimmed)
	}
	i := int(after - s.trimmed)
	if i >= len(s.events) {
		return nil, nil
	}
	n := min(limit, len(s.events)-i)
	out := make([]txswitch.OutboxEvent, n)
	copy(out, s.events[i:i+n])
	return out, nil
}

func (s *fakeSource) ExportWatermark() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.wm, nil
}

func (s *fakeSource) OutboxHead() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.head, nil
}

func (s *fakeSource) AdvanceExportWatermark(_ context.Context, seq uint64) error {
	s.mu.Lock()
	hook := s.advanceHook
	s.mu.Unlock()
	if hook != nil {
		if err := hook(seq); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if seq > s.head {
		return fmt.Errorf("watermark %d beyond head %d", seq, s.head)
	}
	if seq < s.wm {
		s.regressions++
		return nil
	}
	s.wm = seq
	// Trim behind the watermark, as the replicated outbox does.
	drop := int(seq - s.trimmed)
	clear(s.events[:drop]) // release trimmed resources; reslice, no copy
	s.events = s.events[drop:]
	s.trimmed = seq
	return nil
}

func (s *fakeSource) Head() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.head
}

func (s *fakeSource) emitLocked(kind, merchant, order string, res any) {
	raw, err := json.Marshal(res)
	if err != nil {
		panic(err)
	}
	s.head++
	at := s.base.Add(time.Duration(s.head) * time.Millisecond)
	s.events = append(s.events, txswitch.OutboxEvent{Seq: s.head, ID: fmt.Sprintf("evt_%d", s.head),
		Kind: kind, MerchantID: merchant, OrderID: order, At: at, Resource: raw})
	switch kind {
	case KindOrder:
		s.orderSeq[order] = s.head
	case KindTimeline:
		s.nTimeline++
	}
}

var merchantIDs = []string{"mer_alpha", "mer_bravo", "mer_charlie"}

// produceMerchants emits the merchant events.
func (s *fakeSource) produceMerchants() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range merchantIDs {
		s.emitLocked(KindMerchant, m, "", map[string]string{"id": m, "name": "Merchant " + m})
	}
}

// produceOrders emits n orders' lives: created, payment pending, provider
// request/response, authorized, captured, paid, and every 4th refunded in
// part. Roughly 12 events per order, resources of realistic size.
func (s *fakeSource) produceOrders(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := 0; k < n; k++ {
		s.nOrders++
		i := s.nOrders
		m := merchantIDs[i%len(merchantIDs)]
		at := s.base.Add(time.Duration(s.head) * time.Millisecond)
		amount := int64(1000 + (i*137)%90000)
		o := txswitch.Order{ID: fmt.Sprintf("ord_%08d", i), MerchantID: m, Reference: fmt.Sprintf("web-%d", i),
			Status: txswitch.OrderCreated, Amount: txswitch.Money{Value: amount, Currency: "EUR"},
			Customer: txswitch.Customer{Country: "NL", ID: fmt.Sprintf("cus_%d", i%500), Email: "shopper@example.com"},
			Channel:  txswitch.ChannelOnline,
			Lines: []txswitch.OrderLine{{SKU: "SKU-1", Quantity: 1, UnitAmount: amount - 500, Category: "shoes"},
				{SKU: "SHIP", Quantity: 1, UnitAmount: 500, Category: "shipping"}},
			Authorized: eur0(), Captured: eur0(), Refunded: eur0(), CreatedAt: at, UpdatedAt: at}
		tl := 0
		timeline := func(typ, pay, msg string, data any) {
			tl++
			var raw json.RawMessage
			if data != nil {
				raw, _ = json.Marshal(data)
			}
			s.emitLocked(KindTimeline, m, o.ID, txswitch.TimelineEvent{Seq: uint64(tl), At: at, Type: typ, PaymentID: pay, Message: msg, Data: raw})
		}
		s.emitLocked(KindOrder, m, o.ID, o)
		timeline("order_created", "", "Order created.", map[string]any{"amount": o.Amount})
		p := txswitch.Payment{ID: fmt.Sprintf("pay_%08d", i), OrderID: o.ID, MerchantID: m, Status: txswitch.PaymentPending,
			Provider: "adyen_sim", Method: "card", Amount: o.Amount, Authorized: eur0(), Captured: eur0(),
			Refunded: eur0(), CaptureMode: "automatic", Attempt: 1, CreatedAt: at, UpdatedAt: at}
		s.emitLocked(KindPayment, m, o.ID, p)
		timeline("provider_request", p.ID, "Asked adyen_sim to authorize.", map[string]any{"op": "authorize", "provider": "adyen_sim", "attempt": 1, "idempotency_key": p.ID + "-1"})
		outcome := "authorized"
		if i%10 == 0 {
			outcome = "declined"
		}
		timeline(TimelineProviderResponse, p.ID, "adyen_sim answered.", map[string]any{"op": "authorize", "provider": "adyen_sim",
			"attempt": 1, "latency_ms": 20 + i%300, "outcome": outcome, "code": map[bool]string{true: "05", false: ""}[outcome == "declined"]})
		if outcome == "declined" {
			p.Status, p.Failure = txswitch.PaymentDeclined, &txswitch.Failure{Code: "declined", Message: "Do not honor"}
			s.emitLocked(KindPayment, m, o.ID, p)
			o.Status = txswitch.OrderPending
			s.emitLocked(KindOrder, m, o.ID, o)
		} else {
			p.Status, p.ProviderRef = txswitch.PaymentAuthorized, fmt.Sprintf("psp-%d", i)
			p.Authorized = o.Amount
			s.emitLocked(KindPayment, m, o.ID, p)
			p.Status, p.Captured = txswitch.PaymentCaptured, o.Amount
			p.Captures = []txswitch.Capture{{ID: fmt.Sprintf("cap_%08d", i), PaymentID: p.ID, Amount: o.Amount, Status: "succeeded", CreatedAt: at}}
			s.emitLocked(KindPayment, m, o.ID, p)
			timeline("captured", p.ID, "Captured.", nil)
			o.Status, o.Authorized, o.Captured = txswitch.OrderPaid, o.Amount, o.Amount
			s.emitLocked(KindOrder, m, o.ID, o)
			if i%4 == 0 {
				r := txswitch.Refund{ID: fmt.Sprintf("ref_%08d", i), PaymentID: p.ID, OrderID: o.ID,
					Amount: txswitch.Money{Value: amount / 2, Currency: "EUR"}, Reason: "return", Channel: "pos", Status: "succeeded", CreatedAt: at}
				s.emitLocked(KindRefund, m, o.ID, r)
				p.Status, p.Refunded, p.Refunds = txswitch.PaymentPartiallyRefunded, r.Amount, []txswitch.Refund{r}
				s.emitLocked(KindPayment, m, o.ID, p)
				o.Status, o.Refunded = txswitch.OrderPartiallyRefunded, r.Amount
				s.emitLocked(KindOrder, m, o.ID, o)
				timeline("refunded", p.ID, "Refunded in part.", nil)
			}
		}
		s.orders[o.ID] = o
		s.payments[p.ID] = p
	}
}

// eur0 is a zero EUR amount.
func eur0() txswitch.Money { return txswitch.Money{Currency: "EUR"} }

// truth returns copies of the latest states.
func (s *fakeSource) truth() (map[string]txswitch.Order, map[string]txswitch.Payment, map[string]uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, p, q := map[string]txswitch.Order{}, map[string]txswitch.Payment{}, map[string]uint64{}
	for k, v := range s.orders {
		o[k] = v
	}
	for k, v := range s.payments {
		p[k] = v
	}
	for k, v := range s.orderSeq {
		q[k] = v
	}
	return o, p, q
}

var errLeaderDied = errors.New("leader died before the watermark committed")

// editFirstOrder rewrites every event of the first order (its row is its
// last event's) through edit and returns the order's id. Strings holding
// NUL are encoded as \u0000, as the switch encodes them.
func (s *fakeSource) editFirstOrder(t *testing.T, edit func(doc map[string]any)) string {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	id := ""
	for i := range s.events {
		ev := &s.events[i]
		if ev.Kind != KindOrder || id != "" && ev.OrderID != id {
			continue
		}
		id = ev.OrderID
		editResource(t, ev, edit)
	}
	if id == "" {
		t.Fatal("no order event to edit")
	}
	return id
}

// editEvent rewrites the first retained event of kind through edit.
func (s *fakeSource) editEvent(t *testing.T, kind string, edit func(doc map[string]any)) bool {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.events {
		if s.events[i].Kind == kind {
			editResource(t, &s.events[i], edit)
			return true
		}
	}
	return false
}

func editResource(t *testing.T, ev *txswitch.OutboxEvent, edit func(doc map[string]any)) {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(ev.Resource, &doc); err != nil {
		t.Fatal(err)
	}
	edit(doc)
	raw, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	ev.Resource = raw
}
