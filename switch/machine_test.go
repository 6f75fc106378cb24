package txswitch_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	txswitch "github.com/txswitch/txswitch/switch"
	"github.com/txswitch/txswitch/switch/memory"
)

// busyHarness runs a mix of every flow and returns the harness.
func busyHarness(t *testing.T) *harness {
	h := newHarness(t)
	o1 := h.createOrder(1000)
	h.a.Push(txswitch.OpAuthorize, memoryErr(refusedErr("psp_a")))
	p1 := h.pay(o1.ID, txswitch.CreatePaymentRequest{Method: "card", Capture: "manual"})
	if _, err := h.svc.Capture(h.ctx, caller("c1"), p1.ID, txswitch.CaptureRequest{Amount: eur(600)}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.svc.Refund(h.ctx, caller("r1"), p1.ID, txswitch.RefundRequest{Amount: eur(100), Reason: "r"}); err != nil {
		t.Fatal(err)
	}
	o2 := h.createOrder(500)
	h.a.Push(txswitch.OpAuthorize, memoryErr(timeoutErr("psp_a")))
	h.pay(o2.ID, txswitch.CreatePaymentRequest{Method: "card"})
	h.clock.Advance(time.Minute)
	h.a.Push(txswitch.OpStatus, approved("z"))
	if _, err := h.svc.ResolveInDoubt(h.ctx); err != nil {
		t.Fatal(err)
	}
	o3 := h.createOrder(700)
	h.b.Push(txswitch.OpAuthorize, memory.Step{Result: txswitch.ProviderResult{Outcome: txswitch.OutcomePending, RedirectURL: "https://b"}})
	p3 := h.pay(o3.ID, txswitch.CreatePaymentRequest{Method: "ideal"})
	if _, err := h.svc.Notify(h.ctx, "psp_b", txswitch.ProviderNotification{NotificationID: "n", IdempotencyKey: p3.ID + "/1",
		Result: txswitch.ProviderResult{Outcome: txswitch.OutcomeApproved}}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.svc.Methods(h.ctx, caller(""), o3.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := h.svc.CreateOrder(h.ctx, caller("o4"), orderReq(42)); err != nil {
		t.Fatal(err)
	}
	// A cancellation in doubt, settled by status inquiry, recorded on the
	// payment once the gate is at VersionCancellation.
	h.gate(txswitch.VersionCancellation)
	_, p5 := h.authorized()
	h.a.Push(txswitch.OpCancel, memoryErr(timeoutErr("psp_a")))
	if _, err := h.svc.Cancel(h.ctx, caller("x5"), p5.ID); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(time.Minute)
	h.a.Push(txswitch.OpStatus, approved("v5"))
	if n, err := h.svc.ResolveInDoubt(h.ctx); err != nil || n != 1 {
		t.Fatalf("resolve = %d %v", n, err)
	}
	return h
}

func TestDeterministicReplay(t *testing.T) {
	h := busyHarness(t)
	entries := h.log.Entries()
	if len(entries) < 15 {
		t.Fatalf("only %d entries", len(entries))
	}
	replay := func() *memory.Store {
		s := memory.NewStore()
		m, err := txswitch.NewMachine(s)
		if err != nil {
			t.Fatal(err)
		}
		// Apply in uneven batches: batching must not change the result.
		for i := 0; i < len(entries); {
			n := min(1+i%3, len(entries)-i)
			if _, err := m.Apply(entries[i : i+n]); err != nil {
				t.Fatal(err)
			}
			i += n
		}
		return s
	}
	a, b := replay(), replay()
	if !bytes.Equal(a.Dump(), b.Dump()) {
		t.Fatal("two replays differ")
	}
	if !bytes.Equal(a.Dump(), h.store.Dump()) {
		t.Fatal("replay differs from the original")
	}
}

func TestSnapshotRestore(t *testing.T) {
	h := busyHarness(t)
	idx, img, err := h.m.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if idx != h.m.AppliedIndex() || idx == 0 {
		t.Fatalf("snapshot at %d, applied %d", idx, h.m.AppliedIndex())
	}
	s2 := memory.NewStore()
	m2, err := txswitch.NewMachine(s2)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m2.Config(); ok {
		t.Fatal("fresh machine has a config")
	}
	var seen []txswitch.RoutingConfig
	m2.OnConfig(func(c txswitch.RoutingConfig) { seen = append(seen, c) })
	if err := m2.Restore(idx, img); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(s2.Dump(), h.store.Dump()) {
		t.Fatal("restored store differs")
	}
	if cfg, ok := m2.Config(); !ok || cfg.Version != 1 || len(seen) != 1 {
		t.Fatalf("config after restore: %v %+v, hook calls %d", ok, cfg, len(seen))
	}
	// The restored machine goes on applying where the original left off.
	l2 := memory.NewLog(m2)
	svc2 := txswitch.NewService(txswitch.ServiceConfig{Log: l2, Store: s2, Machine: m2, Providers: h.provs, Clock: h.clock, IDs: txswitch.RandomIDs{}})
	if _, err := svc2.CreateOrder(h.ctx, caller(""), orderReq(5)); err != nil {
		t.Fatal(err)
	}
	if m2.AppliedIndex() != idx+1 {
		t.Fatalf("applied %d, want %d", m2.AppliedIndex(), idx+1)
	}
}

func TestApplyEdgeCases(t *testing.T) {
	s := memory.NewStore()
	m, err := txswitch.NewMachine(s)
	if err != nil {
		t.Fatal(err)
	}
	res, err := m.Apply([]txswitch.Command{
		{Index: 1, Term: 1}, // raft's empty entry
		{Index: 2, Term: 1, Data: []byte(`{"v":2,"type":"create_order"}`)}, // future version
		{Index: 3, Term: 1, Data: []byte(`{"v":1,"type":"launch_rockets"}`)},
		{Index: 4, Term: 1, Data: []byte(`not json`)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res[0] != nil {
		t.Fatalf("empty entry result %v", res[0])
	}
	for i := 1; i < 4; i++ {
		r, ok := res[i].(*txswitch.ApplyResult)
		if !ok || r.Err == nil || r.Err.Code != "invalid_command" {
			t.Fatalf("entry %d: %+v", i+1, res[i])
		}
	}
	if m.AppliedIndex() != 4 {
		t.Fatalf("applied %d", m.AppliedIndex())
	}
	if s.Len() != 0 {
		t.Fatalf("rejections wrote %d keys", s.Len())
	}
}

func TestStoreFailureStopsApply(t *testing.T) {
	h := newHarness(t)
	idx := h.m.AppliedIndex()
	h.store.FailNextCommit(bytes.ErrTooLarge)
	_, err := h.m.Apply([]txswitch.Command{{Index: idx + 1, Data: []byte(`{"v":1,"type":"export_watermark","seq":0}`)}})
	if err == nil || !strings.Contains(err.Error(), "commit") {
		t.Fatalf("err = %v", err)
	}
	if h.m.AppliedIndex() != idx {
		t.Fatal("applied index moved")
	}
}

func FuzzApplyCommand(f *testing.F) {
	f.Add([]byte(`{"v":1,"type":"create_order","order":{"id":"ord_1","merchant_id":"m","amount":{"value":1,"currency":"EUR"}}}`))
	f.Add([]byte(`{"v":1,"type":"payment_result","payment_id":"pay_1","attempt":1,"outcome":"approved"}`))
	f.Add([]byte(`{"v":1,"type":"op_intent","kind":"refund","payment_id":"p","op_id":"r","amount":{"value":-1}}`))
	f.Add([]byte(`{"v":1,"type":"export_watermark","seq":18446744073709551615}`))
	f.Add([]byte(`{"v":1,"type":"expire_idempotency","before":"2030-01-01T00:00:00Z","limit":-4}`))
	f.Add([]byte(`{"v":1,"type":"notify","provider":"p","notification":{"notification_id":"n","idempotency_key":"x/1","result":{"outcome":"approved"}}}`))
	f.Add([]byte(`{"v":0}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		h := newHarness(t)
		o := h.createOrder(1000)
		h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card", Capture: "manual"})
		// Point fuzz input at real ids some of the time.
		data = bytes.ReplaceAll(data, []byte("ORD"), []byte(o.ID))
		idx := h.m.AppliedIndex()
		res, err := h.m.Apply([]txswitch.Command{{Index: idx + 1, Data: data}})
		if err != nil {
			t.Fatalf("store error on fuzz input: %v", err)
		}
		if len(data) > 0 {
			if _, ok := res[0].(*txswitch.ApplyResult); !ok {
				t.Fatalf("result %T", res[0])
			}
		}
		var hdr struct{ V int }
		if json.Unmarshal(data, &hdr) == nil && hdr.V != 1 && len(data) > 0 {
			if r := res[0].(*txswitch.ApplyResult); r.Err == nil || r.Err.Code != "invalid_command" {
				t.Fatalf("version %d accepted: %+v", hdr.V, r)
			}
		}
	})
}
