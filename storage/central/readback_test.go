package central

import (
	"context"
	"encoding/json"
	"reflect"
	"slices"
	"testing"

	txswitch "github.com/txswitch/txswitch/switch"
	"github.com/txswitch/txswitch/switch/memory"
)

// TestReadBackRowsNeverGoBackwards: from VersionOutboxRefs the exporter
// gets an order's or payment's resource as it is when it reads it, which
// may show later changes than its event (a payment's refunds succeeded)
// while a later copy event shows an earlier state (the refund's pending
// intent). Exported one event per batch after every change was made (the
// widest gap between an event and the state read back), the rows a guarded
// upsert keeps must never go back: a refund that showed succeeded never
// shows pending again, and the final rows are the final state.
func TestReadBackRowsNeverGoBackwards(t *testing.T) {
	ctx := context.Background()
	store := memory.NewStore()
	m, err := txswitch.NewMachine(store)
	if err != nil {
		t.Fatal(err)
	}
	psp := memory.NewProvider("psp_a")
	provs := memory.NewProviders(psp)
	m.OnConfig(func(cfg txswitch.RoutingConfig) { _ = provs.Configure(cfg.Providers) })
	svc := txswitch.NewService(txswitch.ServiceConfig{Log: memory.NewLog(m), Store: store, Machine: m, Providers: provs,
		IDs: &txswitch.SequentialIDs{}})
	err = svc.EnsureConfig(ctx, txswitch.RoutingConfig{
		Merchants: []txswitch.MerchantConfig{{ID: "m_shop", Name: "Shop", APIKeyHashes: []string{txswitch.HashAPIKey("sk_test_readback")}}},
		Providers: []txswitch.ProviderConfig{{Name: "psp_a", BaseURL: "http://psp-a.test", TimeoutMillis: 2000,
			Breaker: txswitch.DefaultBreakerConfig()}},
		Methods: []txswitch.MethodConfig{{Name: "card", Enabled: true, Routes: []txswitch.RouteConfig{{Provider: "psp_a"}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.ReportVersion(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if v, err := svc.AdvanceClusterVersion(ctx, []uint64{1}); err != nil || v < txswitch.VersionOutboxRefs {
		t.Fatalf("cluster version %d (%v), want >= %d", v, err, txswitch.VersionOutboxRefs)
	}
	caller := txswitch.Caller{MerchantID: "m_shop"}
	r, err := svc.CreateOrder(ctx, caller, txswitch.CreateOrderRequest{Reference: "r1", Amount: txswitch.Money{Value: 1000, Currency: "EUR"},
		Customer: txswitch.Customer{Country: "NL"}, Channel: "online"})
	if err != nil {
		t.Fatal(err)
	}
	var o txswitch.Order
	if err := json.Unmarshal(r.Body, &o); err != nil {
		t.Fatal(err)
	}
	if r, err = svc.CreatePayment(ctx, caller, o.ID, txswitch.CreatePaymentRequest{Method: "card"}); err != nil {
		t.Fatal(err)
	}
	var p txswitch.Payment
	if err := json.Unmarshal(r.Body, &p); err != nil {
		t.Fatal(err)
	}
	for _, v := range []int64{100, 250} {
		if _, err := svc.Refund(ctx, caller, p.ID, txswitch.RefundRequest{Amount: &txswitch.Money{Value: v, Currency: "EUR"}}); err != nil {
			t.Fatal(err)
		}
	}
	// A second order and payment, read back in the same batches as the
	// first: one must not be taken for the other.
	if r, err = svc.CreateOrder(ctx, caller, txswitch.CreateOrderRequest{Reference: "r2", Amount: txswitch.Money{Value: 700, Currency: "EUR"},
		Customer: txswitch.Customer{Country: "NL"}, Channel: "online"}); err != nil {
		t.Fatal(err)
	}
	var o2 txswitch.Order
	if err := json.Unmarshal(r.Body, &o2); err != nil {
		t.Fatal(err)
	}
	if _, err = svc.CreatePayment(ctx, caller, o2.ID, txswitch.CreatePaymentRequest{Method: "card"}); err != nil {
		t.Fatal(err)
	}

	// The guarded upsert, as PostgreSQL runs it: a row is replaced only
	// by a newer version.
	type row struct {
		ver  uint64
		vals []any
	}
	tables := map[string]map[string]row{}
	status := slices.IndexFunc(refundsTable.cols, func(c column) bool { return c.name == "status" })
	succeeded := map[string]bool{}
	refs := 0
	for after := uint64(0); ; {
		evs, err := svc.ReadOutbox(after, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			break
		}
		if evs[0].AsOf > 0 {
			refs++
		}
		b, err := decodeBatch(evs)
		if err != nil {
			t.Fatal(err)
		}
		for name, rs := range b.byName {
			if tables[name] == nil {
				tables[name] = map[string]row{}
			}
			for k, vals := range rs.rows {
				if old, ok := tables[name][k]; !ok || old.ver < rs.seq[k] {
					tables[name][k] = row{rs.seq[k], vals}
				}
			}
		}
		for id, rw := range tables["refunds"] {
			st := rw.vals[status].(string)
			if succeeded[id] && st != "succeeded" {
				t.Fatalf("after event %d (%s): refund %s went back from succeeded to %s", evs[0].Seq, evs[0].Kind, id, st)
			}
			succeeded[id] = succeeded[id] || st == "succeeded"
		}
		after = evs[0].Seq
	}
	if refs == 0 {
		t.Fatal("no event was read back: the test ran below VersionOutboxRefs")
	}
	if len(tables["refunds"]) != 2 || len(succeeded) != 2 {
		t.Fatalf("refund rows at the end: %v", tables["refunds"])
	}
	for id, ok := range succeeded {
		if !ok {
			t.Fatalf("refund %s not succeeded at the end", id)
		}
	}
	// All events in one batch (several name the same order and payment,
	// read back once): the same rows as one event per batch.
	all, err := svc.ReadOutbox(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := decodeBatch(all)
	if err != nil {
		t.Fatal(err)
	}
	if len(tables["orders"]) != 2 || len(tables["payments"]) != 2 {
		t.Fatalf("%d order rows and %d payment rows, want 2 of each", len(tables["orders"]), len(tables["payments"]))
	}
	for _, name := range []string{"orders", "order_lines", "payments", "captures", "refunds", "timeline_events"} {
		rs := b.byName[name]
		if len(rs.rows) != len(tables[name]) {
			t.Fatalf("%s: %d rows from one batch, %d from one event per batch", name, len(rs.rows), len(tables[name]))
		}
		for k, vals := range rs.rows {
			if want := tables[name][k]; !reflect.DeepEqual(vals, want.vals) {
				t.Fatalf("%s %q: %v from one batch, %v from one event per batch", name, k, vals, want.vals)
			}
		}
	}
	refunded := slices.IndexFunc(paymentsTable.cols, func(c column) bool { return c.name == "refunded_minor" })
	if got := tables["payments"][p.ID].vals[refunded]; got != int64(350) {
		t.Fatalf("payment row refunded %v at the end, want 350", got)
	}
}
