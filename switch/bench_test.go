package txswitch_test

import (
	"testing"

	txswitch "github.com/txswitch/txswitch/switch"
	"github.com/txswitch/txswitch/switch/memory"
)

// BenchmarkOrderAndPay measures the domain's cost of one order and one
// automatically captured card payment over the in-memory log and store
// (three commands applied: order, intent, result).
func BenchmarkOrderAndPay(b *testing.B) {
	h := newHarness(&testing.T{})
	b.ReportAllocs()
	var cpu cpuClock
	cpu.start()
	for b.Loop() {
		r, err := h.svc.CreateOrder(h.ctx, caller(""), orderReq(1000))
		if err != nil {
			b.Fatal(err)
		}
		o := decode[txswitch.Order](&testing.T{}, r)
		if _, err := h.svc.CreatePayment(h.ctx, caller(""), o.ID, txswitch.CreatePaymentRequest{Method: "card"}); err != nil {
			b.Fatal(err)
		}
	}
	cpu.stop()
	cpu.report(b, 1, "cpu-ns/op")
}

// BenchmarkReplay measures Apply alone: replaying a recorded command log
// into a fresh machine.
func BenchmarkReplay(b *testing.B) {
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
	cpu.start()
	for b.Loop() {
		m, err := txswitch.NewMachine(newStore())
		if err != nil {
			b.Fatal(err)
		}
		if _, err := m.Apply(entries); err != nil {
			b.Fatal(err)
		}
	}
	cpu.stop()
	b.ReportMetric(float64(len(entries)), "cmds/op")
	cpu.report(b, len(entries), "cpu-ns/cmd")
}

func newStore() txswitch.Store { return memory.NewStore() }
