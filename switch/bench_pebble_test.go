package txswitch_test

import (
	"context"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/txswitch/txswitch/storage/pebblestore"
	txswitch "github.com/txswitch/txswitch/switch"
	"github.com/txswitch/txswitch/switch/memory"
)

// BenchmarkReplayPebble measures Apply over the production store (pebble,
// in-memory filesystem) the way a node applies while serving: one command
// per Apply, each payment's commands in separate batches. The memory store
// of the other benchmarks keeps its keys in a sorted slice, whose inserts
// grow with the store and dominate their profiles.
func BenchmarkReplayPebble(b *testing.B) {
	h := newHarness(&testing.T{})
	for range 100 {
		r, _ := h.svc.CreateOrder(h.ctx, caller(""), orderReq(1000))
		o := decode[txswitch.Order](&testing.T{}, r)
		if _, err := h.svc.CreatePayment(h.ctx, caller(""), o.ID, txswitch.CreatePaymentRequest{Method: "card"}); err != nil {
			b.Fatal(err)
		}
	}
	entries := h.log.Entries()
	b.ReportAllocs()
	var cpu cpuClock
	for b.Loop() {
		b.StopTimer()
		db, err := pebblestore.Open("db", pebblestore.Options{FS: vfs.NewMem()})
		if err != nil {
			b.Fatal(err)
		}
		m, err := txswitch.NewMachine(db.StateStore(1))
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		cpu.start()
		for i := range entries {
			if _, err := m.Apply(entries[i : i+1]); err != nil {
				b.Fatal(err)
			}
		}
		cpu.stop()
		b.StopTimer()
		if err := db.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(entries)), "ns/cmd")
	cpu.report(b, len(entries), "cpu-ns/cmd")
}

// BenchmarkOrderAndPayPebble is BenchmarkOrderAndPay over the pebble
// state store: service, apply and store of one order and one card payment.
func BenchmarkOrderAndPayPebble(b *testing.B) {
	db, err := pebblestore.Open("db", pebblestore.Options{FS: vfs.NewMem()})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	store := db.StateStore(1)
	m, err := txswitch.NewMachine(store)
	if err != nil {
		b.Fatal(err)
	}
	log := memory.NewLog(m)
	provs := memory.NewProviders(memory.NewProvider("psp_a"), memory.NewProvider("psp_b"))
	m.OnConfig(func(cfg txswitch.RoutingConfig) { _ = provs.Configure(cfg.Providers) })
	clock := &fakeClock{now: time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)}
	svc := txswitch.NewService(txswitch.ServiceConfig{Log: log, Store: store, Machine: m, Providers: provs, Clock: clock, IDs: &txswitch.SequentialIDs{}})
	ctx := context.Background()
	if err := svc.EnsureConfig(ctx, testConfig()); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	var cpu cpuClock
	cpu.start()
	for b.Loop() {
		r, err := svc.CreateOrder(ctx, caller(""), orderReq(1000))
		if err != nil {
			b.Fatal(err)
		}
		o := decode[txswitch.Order](&testing.T{}, r)
		if _, err := svc.CreatePayment(ctx, caller(""), o.ID, txswitch.CreatePaymentRequest{Method: "card"}); err != nil {
			b.Fatal(err)
		}
	}
	cpu.stop()
	cpu.report(b, 1, "cpu-ns/op")
}
