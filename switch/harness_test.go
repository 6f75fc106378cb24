package txswitch_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	txswitch "github.com/txswitch/txswitch/switch"
	"github.com/txswitch/txswitch/switch/memory"
)

const (
	merchantA = "m_shop"
	merchantB = "m_other"
	keyA      = "sk_test_shop"
	keyB      = "sk_test_other"
)

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func testConfig() txswitch.RoutingConfig {
	br := txswitch.BreakerConfig{ConsecutiveFailures: 5, FailureRatio: 0.5, MinRequests: 10, IntervalMillis: 10000, OpenMillis: 5000, HalfOpenMax: 1}
	return txswitch.RoutingConfig{
		Merchants: []txswitch.MerchantConfig{
			{ID: merchantA, Name: "Shop", APIKeyHashes: []string{txswitch.HashAPIKey(keyA)}},
			{ID: merchantB, Name: "Other", APIKeyHashes: []string{txswitch.HashAPIKey(keyB)}},
		},
		Providers: []txswitch.ProviderConfig{
			{Name: "psp_a", BaseURL: "http://psp-a.test", TimeoutMillis: 2000, Breaker: br},
			{Name: "psp_b", BaseURL: "http://psp-b.test", TimeoutMillis: 2000, Breaker: br},
		},
		Methods: []txswitch.MethodConfig{
			{Name: "card", Enabled: true, Routes: []txswitch.RouteConfig{{Provider: "psp_a"}, {Provider: "psp_b"}}},
			{Name: "ideal", Enabled: true, Redirect: true, Countries: []string{"NL"}, Currencies: []string{"EUR"},
				Surcharge: txswitch.SurchargeConfig{FixedMinor: 29}, Routes: []txswitch.RouteConfig{{Provider: "psp_b"}}},
			{Name: "klarna_paylater", Enabled: true, Routes: []txswitch.RouteConfig{{Provider: "psp_a"}}},
		},
		FraudRules: []txswitch.FraudRule{{Name: "big_ticket", MinAmount: 1_000_000}},
	}
}

type harness struct {
	t     *testing.T
	store *memory.Store
	m     *txswitch.Machine
	log   *memory.Log
	provs *memory.Providers
	a, b  *memory.Provider
	clock *fakeClock
	svc   *txswitch.Svc
	ctx   context.Context
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	return newHarnessFor(t, txswitch.BinaryVersions)
}

// newHarnessFor is newHarness with a binary that runs the versions of
// binary (gate then stops at binary.Max).
func newHarnessFor(t *testing.T, binary txswitch.VersionRange) *harness {
	t.Helper()
	h := &harness{t: t, store: memory.NewStore(), clock: &fakeClock{now: time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)}, ctx: context.Background()}
	var err error
	h.m, err = txswitch.NewMachineFor(h.store, binary)
	if err != nil {
		t.Fatal(err)
	}
	h.log = memory.NewLog(h.m)
	h.a, h.b = memory.NewProvider("psp_a"), memory.NewProvider("psp_b")
	h.provs = memory.NewProviders(h.a, h.b)
	h.m.OnConfig(func(cfg txswitch.RoutingConfig) { _ = h.provs.Configure(cfg.Providers) })
	h.svc = txswitch.NewService(txswitch.ServiceConfig{
		Log: h.log, Store: h.store, Machine: h.m, Providers: h.provs, Clock: h.clock, IDs: &txswitch.SequentialIDs{},
		NotifyURL: func(p string) string { return "http://switch.test/v1/notify/" + p },
	})
	if err := h.svc.EnsureConfig(h.ctx, testConfig()); err != nil {
		t.Fatalf("EnsureConfig: %v", err)
	}
	return h
}

// gate moves the harness's single-member cluster to at least version v,
// as its node's version loop does in a real cluster: the member reports
// the binary's versions, then the leader moves the gate as far as they go.
func (h *harness) gate(v int) {
	h.t.Helper()
	if err := h.svc.ReportVersion(h.ctx, 1); err != nil {
		h.t.Fatalf("ReportVersion: %v", err)
	}
	if got, err := h.svc.AdvanceClusterVersion(h.ctx, []uint64{1}); err != nil || got < v {
		h.t.Fatalf("advance to version %d: %d %v", v, got, err)
	}
}

func caller(key string) txswitch.Caller {
	return txswitch.Caller{MerchantID: merchantA, IdempotencyKey: key}
}

func orderReq(value int64) txswitch.CreateOrderRequest {
	return txswitch.CreateOrderRequest{Reference: "shop-1", Amount: txswitch.Money{Value: value, Currency: "EUR"},
		Customer: txswitch.Customer{Country: "NL", Email: "a@example.com"}, Channel: "online"}
}

func decode[T any](t *testing.T, r txswitch.Reply) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(r.Body, &v); err != nil {
		t.Fatalf("decode reply %s: %v", r.Body, err)
	}
	return v
}

func (h *harness) createOrder(value int64) txswitch.Order {
	h.t.Helper()
	r, err := h.svc.CreateOrder(h.ctx, caller(""), orderReq(value))
	if err != nil {
		h.t.Fatalf("CreateOrder: %v", err)
	}
	return decode[txswitch.Order](h.t, r)
}

func (h *harness) pay(orderID string, req txswitch.CreatePaymentRequest) txswitch.Payment {
	h.t.Helper()
	r, err := h.svc.CreatePayment(h.ctx, caller(""), orderID, req)
	if err != nil {
		h.t.Fatalf("CreatePayment: %v", err)
	}
	return decode[txswitch.Payment](h.t, r)
}

func (h *harness) order(id string) txswitch.Order {
	h.t.Helper()
	r, err := h.svc.GetOrder(h.ctx, caller(""), id)
	if err != nil {
		h.t.Fatalf("GetOrder: %v", err)
	}
	return decode[txswitch.Order](h.t, r)
}

func (h *harness) payment(id string) txswitch.Payment {
	h.t.Helper()
	r, err := h.svc.GetPayment(h.ctx, caller(""), id)
	if err != nil {
		h.t.Fatalf("GetPayment: %v", err)
	}
	return decode[txswitch.Payment](h.t, r)
}

func (h *harness) timeline(orderID string) []txswitch.TimelineEvent {
	h.t.Helper()
	r, err := h.svc.Timeline(h.ctx, caller(""), orderID)
	if err != nil {
		h.t.Fatalf("Timeline: %v", err)
	}
	return decode[txswitch.TimelineResponse](h.t, r).Events
}

func eventTypes(evs []txswitch.TimelineEvent) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.Type)
	}
	return out
}

func hasEvent(evs []txswitch.TimelineEvent, typ string) bool {
	for _, e := range evs {
		if e.Type == typ {
			return true
		}
	}
	return false
}

// wantErr checks err is a *txswitch.Error with status and code.
func wantErr(t *testing.T, err error, status int, code string) {
	t.Helper()
	var e *txswitch.Error
	if !errors.As(err, &e) {
		t.Fatalf("want *Error %d %s, got %v", status, code, err)
	}
	if e.Status != status || e.Code != code {
		t.Fatalf("want %d %s, got %d %s (%s)", status, code, e.Status, e.Code, e.Message)
	}
}

// stateDump is the store's key space without the applied index (which a
// rejected command still advances).
func (h *harness) stateDump() []byte {
	d := h.store.Dump()
	return d[bytes.IndexByte(d, '\n')+1:]
}

// unchanged runs fn and fails if the store's state changed.
func (h *harness) unchanged(fn func()) {
	h.t.Helper()
	before := h.stateDump()
	fn()
	if after := h.stateDump(); !bytes.Equal(before, after) {
		h.t.Fatalf("store changed:\nbefore %d bytes, after %d bytes", len(before), len(after))
	}
}

func timeoutErr(p string) error {
	return &txswitch.ProviderError{Provider: p, Op: txswitch.OpAuthorize, Definitive: false, Code: "timeout", Err: context.DeadlineExceeded}
}

func refusedErr(p string) error {
	return &txswitch.ProviderError{Provider: p, Op: txswitch.OpAuthorize, Definitive: true, Code: "connection_refused", Err: errors.New("dial: connection refused")}
}

func approved(ref string) memory.Step {
	return memory.Step{Result: txswitch.ProviderResult{Outcome: txswitch.OutcomeApproved, ProviderRef: ref}}
}

func declined(code string) memory.Step {
	return memory.Step{Result: txswitch.ProviderResult{Outcome: txswitch.OutcomeDeclined, Code: code, Message: "issuer says no"}}
}

func memoryErr(err error) memory.Step { return memory.Step{Err: err} }
