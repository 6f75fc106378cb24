package txswitch_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	txswitch "github.com/txswitch/txswitch/switch"
)

func TestOutboxDenseAndWatermark(t *testing.T) {
	h := newHarness(t)
	o := h.createOrder(1000)
	p := h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card"})
	if _, err := h.svc.Refund(h.ctx, caller(""), p.ID, txswitch.RefundRequest{Amount: eur(10)}); err != nil {
		t.Fatal(err)
	}
	evs, err := h.svc.ReadOutbox(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for i, e := range evs {
		if e.Seq != uint64(i+1) || e.ID == "" || e.At.IsZero() || len(e.Resource) == 0 {
			t.Fatalf("event %d = %+v", i, e)
		}
		kinds[e.Kind]++
	}
	for _, k := range []string{"merchant", "order", "payment", "timeline", "refund"} {
		if kinds[k] == 0 {
			t.Fatalf("no %s events: %v", k, kinds)
		}
	}
	// An order resource carries no payments; a payment resource is whole.
	for _, e := range evs {
		if e.Kind == "order" {
			var ord map[string]any
			_ = json.Unmarshal(e.Resource, &ord)
			if ord["payments"] != nil || ord["id"] != o.ID {
				t.Fatalf("order resource %s", e.Resource)
			}
		}
	}
	total := uint64(len(evs))
	if b, _ := h.svc.OutboxBacklog(); b != total {
		t.Fatalf("backlog %d, want %d", b, total)
	}
	if head, _ := h.svc.OutboxHead(); head != evs[len(evs)-1].Seq {
		t.Fatalf("head %d, want %d", head, evs[len(evs)-1].Seq)
	}
	page, _ := h.svc.ReadOutbox(3, 2)
	if len(page) != 2 || page[0].Seq != 4 || page[1].Seq != 5 {
		t.Fatalf("page = %+v", page)
	}
	steps := []struct {
		advance, want uint64
	}{
		{5, 5},
		{3, 5},               // lower watermark ignored
		{total + 100, total}, // clamped to the last event
	}
	for _, st := range steps {
		if err := h.svc.AdvanceExportWatermark(h.ctx, st.advance); err != nil {
			t.Fatal(err)
		}
		wm, _ := h.svc.ExportWatermark()
		if wm != st.want {
			t.Fatalf("advance %d: watermark %d, want %d", st.advance, wm, st.want)
		}
		rest, _ := h.svc.ReadOutbox(0, 0)
		if uint64(len(rest)) != total-wm || (len(rest) > 0 && rest[0].Seq != wm+1) {
			t.Fatalf("after watermark %d: %d events left", wm, len(rest))
		}
	}
	// New events continue the sequence after trimming.
	h.createOrder(5)
	next, _ := h.svc.ReadOutbox(0, 0)
	if len(next) == 0 || next[0].Seq != total+1 {
		t.Fatalf("after trim: %+v", next)
	}
}

func TestIdempotencyExpiry(t *testing.T) {
	h := newHarness(t)
	r1, err := h.svc.CreateOrder(h.ctx, caller("old"), orderReq(100))
	if err != nil {
		t.Fatal(err)
	}
	// An answered in-doubt payment's record expires like any other; the
	// payment itself still blocks a second one on its order.
	o := h.createOrder(100)
	h.a.Push(txswitch.OpAuthorize, memoryErr(timeoutErr("psp_a")))
	if _, err := h.svc.CreatePayment(h.ctx, caller("doubt"), o.ID, txswitch.CreatePaymentRequest{Method: "card"}); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(23 * time.Hour)
	if _, err := h.svc.CreateOrder(h.ctx, caller("young"), orderReq(100)); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(2 * time.Hour)
	n, err := h.svc.ExpireIdempotency(h.ctx)
	if err != nil || n != 2 {
		t.Fatalf("expired %d, %v", n, err)
	}
	// "old" is forgotten: the same key creates a new order.
	r2, err := h.svc.CreateOrder(h.ctx, caller("old"), orderReq(100))
	if err != nil || string(r1.Body) == string(r2.Body) {
		t.Fatalf("old key after expiry: %v, same reply %v", err, string(r1.Body) == string(r2.Body))
	}
	h.unchanged(func() {
		_, err = h.svc.CreatePayment(h.ctx, caller("doubt"), o.ID, txswitch.CreatePaymentRequest{Method: "card"})
		wantErr(t, err, 409, "payment_in_progress")
	})
	_, err = h.svc.CreateOrder(h.ctx, caller("young"), orderReq(999))
	wantErr(t, err, 422, "idempotency_key_reused")
}

func TestConfigAndAuthenticate(t *testing.T) {
	h := newHarness(t)
	id, err := h.svc.Authenticate(h.ctx, keyA)
	if err != nil || id != merchantA {
		t.Fatalf("auth = %q, %v", id, err)
	}
	for _, k := range []string{"", "sk_wrong"} {
		_, err := h.svc.Authenticate(h.ctx, k)
		wantErr(t, err, 401, "unauthorized")
	}
	r, err := h.svc.GetConfig(h.ctx)
	if err != nil || decode[txswitch.RoutingConfig](t, r).Version != 1 {
		t.Fatalf("GetConfig: %v %s", err, r.Body)
	}
	// EnsureConfig does not overwrite.
	other := testConfig()
	other.Methods = other.Methods[:1]
	if err := h.svc.EnsureConfig(h.ctx, other); err != nil {
		t.Fatal(err)
	}
	if cfg, _ := h.m.Config(); len(cfg.Methods) != 3 {
		t.Fatal("EnsureConfig overwrote the config")
	}
	// PutConfig replaces it, bumps the version and reconfigures providers.
	other.Providers[0].TimeoutMillis = 1234
	r, err = h.svc.PutConfig(h.ctx, other)
	if err != nil || decode[txswitch.RoutingConfig](t, r).Version != 2 {
		t.Fatalf("PutConfig: %v %s", err, r.Body)
	}
	if cs := h.provs.Configs(); len(cs) != 2 || cs[0].TimeoutMillis != 1234 {
		t.Fatalf("providers not reconfigured: %+v", cs)
	}
	bad := testConfig()
	bad.Methods[0].Routes[0].Provider = "nope"
	h.unchanged(func() {
		_, err = h.svc.PutConfig(h.ctx, bad)
		wantErr(t, err, 400, "invalid_config")
	})
	// A removed method can no longer be paid with.
	o := h.createOrder(100)
	_, err = h.svc.CreatePayment(h.ctx, caller(""), o.ID, txswitch.CreatePaymentRequest{Method: "ideal"})
	wantErr(t, err, 422, "method_not_available")
}

// ReadOutbox bounds a read by the events' size too: large orders (each
// event carries all its lines) stop a read short of its count, and the
// next read goes on where it stopped.
func TestReadOutboxBoundsBytes(t *testing.T) {
	h := newHarness(t)
	req := orderReq(1000 * 1000)
	sku := strings.Repeat("s", 200)
	for i := range 1000 {
		req.Lines = append(req.Lines, txswitch.OrderLine{SKU: fmt.Sprintf("%s-%04d", sku, i), Quantity: 1, UnitAmount: 1000})
	}
	for range 110 { // about 24 MB of order events
		if _, err := h.svc.CreateOrder(h.ctx, caller(""), req); err != nil {
			t.Fatal(err)
		}
	}
	head, _ := h.svc.OutboxHead()
	first, err := h.svc.ReadOutbox(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	size := 0
	for _, ev := range first {
		size += len(ev.Resource)
	}
	if uint64(len(first)) >= head || size < txswitch.MaxOutboxReadBytes/2 || size > txswitch.MaxOutboxReadBytes+300_000 {
		t.Fatalf("read %d of %d events, %d bytes of resources (bound %d)", len(first), head, size, txswitch.MaxOutboxReadBytes)
	}
	last := first[len(first)-1].Seq
	rest, err := h.svc.ReadOutbox(last, 0)
	if err != nil || len(rest) == 0 || rest[0].Seq != last+1 {
		t.Fatalf("the next read after %d: %d events, %v", last, len(rest), err)
	}
}

// outboxFinal is what an exporter that upserts by id makes of a list of
// outbox events: the last resource of each order, payment and refund, and
// every timeline event.
func outboxFinal(t *testing.T, evs []txswitch.OutboxEvent) map[string]string {
	t.Helper()
	final := map[string]string{}
	for _, e := range evs {
		var id struct {
			ID  string `json:"id"`
			Seq uint64 `json:"seq"`
		}
		if err := json.Unmarshal(e.Resource, &id); err != nil {
			t.Fatalf("event %d (%s): %v: %s", e.Seq, e.Kind, err, e.Resource)
		}
		key := e.Kind + "/" + id.ID
		if e.Kind == "timeline" {
			key = fmt.Sprintf("timeline/%s/%d", e.OrderID, id.Seq)
		}
		final[key] = string(e.Resource)
	}
	return final
}

// TestOutboxRefsExportTheSameRows: from VersionOutboxRefs an order,
// payment or timeline event is stored as a reference, a fraction of the
// bytes of the copy it replaces, and what ReadOutbox returns leaves an
// exporter with exactly the rows the copies did. A harness on the first
// version before the gate and one past it run the same flows (sequential
// ids, one fake clock: the same records).
func TestOutboxRefsExportTheSameRows(t *testing.T) {
	run := func(refs bool) (final map[string]string, stored, refEvents int) {
		v := txswitch.VersionOutboxRefs - 1
		if refs {
			v = txswitch.VersionOutboxRefs
		}
		h := newHarnessFor(t, txswitch.VersionRange{Min: 1, Max: v})
		h.gate(v)
		if got := h.m.ClusterVersion(); got != v {
			t.Fatalf("cluster version %d, want %d", got, v)
		}
		o := h.createOrder(1000)
		p := h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card"})
		if _, err := h.svc.Refund(h.ctx, caller(""), p.ID, txswitch.RefundRequest{Amount: eur(10)}); err != nil {
			t.Fatal(err)
		}
		o2 := h.createOrder(2000)
		p2 := h.pay(o2.ID, txswitch.CreatePaymentRequest{Method: "card", Capture: "manual"})
		if _, err := h.svc.Capture(h.ctx, caller(""), p2.ID, txswitch.CaptureRequest{Amount: eur(500)}); err != nil {
			t.Fatal(err)
		}
		if err := h.store.Scan([]byte("x/"), []byte("x0"), func(_, v []byte) bool {
			stored += len(v)
			if strings.Contains(string(v), `"ref":`) {
				refEvents++
			}
			return true
		}); err != nil {
			t.Fatal(err)
		}
		evs, err := h.svc.ReadOutbox(0, 0)
		if err != nil {
			t.Fatal(err)
		}
		for i, e := range evs {
			if e.Seq != uint64(i+1) || len(e.Resource) == 0 {
				t.Fatalf("refs=%v: event %d = %+v", refs, i, e)
			}
		}
		// Paged reads resolve the same way.
		var paged []txswitch.OutboxEvent
		for after := uint64(0); ; {
			page, err := h.svc.ReadOutbox(after, 3)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) == 0 {
				break
			}
			paged = append(paged, page...)
			after = page[len(page)-1].Seq
		}
		if len(paged) != len(evs) {
			t.Fatalf("refs=%v: %d events paged, %d at once", refs, len(paged), len(evs))
		}
		return outboxFinal(t, evs), stored, refEvents
	}
	copies, copyBytes, n := run(false)
	if n != 0 {
		t.Fatalf("%d references written below VersionOutboxRefs", n)
	}
	refs, refBytes, n := run(true)
	if n == 0 {
		t.Fatal("no reference written past VersionOutboxRefs")
	}
	if len(refs) != len(copies) {
		t.Fatalf("%d resources exported with references, %d with copies", len(refs), len(copies))
	}
	for k, want := range copies {
		if refs[k] != want {
			t.Fatalf("%s exported as\n%s\nwith references, as\n%s\nwith copies", k, refs[k], want)
		}
	}
	if refBytes*2 > copyBytes {
		t.Fatalf("the outbox holds %d bytes with references, %d with copies: want under half", refBytes, copyBytes)
	}
	t.Logf("outbox: %d bytes with copies, %d with references (%d of its events)", copyBytes, refBytes, n)
}
