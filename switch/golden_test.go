package txswitch_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	txswitch "github.com/txswitch/txswitch/switch"
	"github.com/txswitch/txswitch/switch/memory"
)

// The golden corpus pins apply's output byte for byte: a command log
// recorded from a long random run of every flow, the store it produced and
// every command's result. Apply is optimised (caches, hand-written
// encoders); this test proves the optimised machine still writes exactly
// the bytes, and answers exactly the replies, of the straightforward
// implementation the corpus was recorded with, whatever the batching.
//
// Regenerate (only when the stored format changes on purpose) with
// go test ./switch/ -run TestGoldenReplay -update-golden

var updateGolden = flag.Bool("update-golden", false, "rewrite testdata/golden_*")

const (
	goldenLog     = "testdata/golden_log.json"
	goldenDump    = "testdata/golden_dump.txt"
	goldenResults = "testdata/golden_results.json"
)

// goldenResult is an ApplyResult in comparable form.
type goldenResult struct {
	Status   int                `json:"status,omitempty"`
	Body     json.RawMessage    `json:"body,omitempty"`
	Err      *txswitch.Error    `json:"err,omitempty"`
	ErrSt    int                `json:"err_status,omitempty"`
	Replayed bool               `json:"replayed,omitempty"`
	Late     bool               `json:"late,omitempty"`
	Open     *txswitch.OpenCall `json:"open,omitempty"`
}

func toGolden(t *testing.T, v any) goldenResult {
	t.Helper()
	if v == nil {
		return goldenResult{}
	}
	r, ok := v.(*txswitch.ApplyResult)
	if !ok {
		t.Fatalf("result %T", v)
	}
	g := goldenResult{Status: r.Reply.Status, Body: r.Reply.Body, Err: r.Err, Replayed: r.Replayed, Late: r.Late, Open: r.Open}
	if r.Err != nil {
		g.ErrSt = r.Err.Status
	}
	return g
}

func TestGoldenReplay(t *testing.T) {
	if *updateGolden {
		writeGolden(t)
	}
	raw, err := os.ReadFile(goldenLog)
	if err != nil {
		t.Fatal(err)
	}
	var entries []txswitch.Command
	if err := json.Unmarshal(raw, &entries); err != nil {
		t.Fatal(err)
	}
	wantDump, err := os.ReadFile(goldenDump)
	if err != nil {
		t.Fatal(err)
	}
	raw, err = os.ReadFile(goldenResults)
	if err != nil {
		t.Fatal(err)
	}
	var wantResults []goldenResult
	if err := json.Unmarshal(raw, &wantResults); err != nil {
		t.Fatal(err)
	}
	if len(wantResults) != len(entries) || len(entries) < 500 {
		t.Fatalf("corpus: %d entries, %d results", len(entries), len(wantResults))
	}
	batchings := []struct {
		name string
		size func(i int) int
		// restart: halfway, a new machine takes over the store (a node
		// restart: cold caches, a key filter that must catch up by
		// scanning the store a few keys per Apply).
		restart bool
		// tinyCache: the record cache keeps almost nothing, so loads go
		// to the key filter and the store.
		tinyCache bool
	}{
		{"one by one", func(int) int { return 1 }, false, false},
		{"uneven", func(i int) int { return 1 + i%7 }, false, false},
		{"all at once", func(int) int { return len(entries) }, false, false},
		{"restart halfway", func(i int) int { return 1 + i%3 }, true, false},
		{"tiny record cache, restart halfway", func(i int) int { return 1 + i%2 }, true, true},
	}
	defer txswitch.SetFilterScanChunk(3)()
	for _, bt := range batchings {
		t.Run(bt.name, func(t *testing.T) {
			s := memory.NewStore()
			m, err := txswitch.NewMachine(s)
			if err != nil {
				t.Fatal(err)
			}
			if bt.tinyCache {
				txswitch.SetRecordCacheLimit(m, 1)
			}
			restarted := false
			var got []goldenResult
			for i := 0; i < len(entries); {
				if bt.restart && !restarted && i >= len(entries)/2 {
					if m, err = txswitch.NewMachine(s); err != nil {
						t.Fatal(err)
					}
					if bt.tinyCache {
						txswitch.SetRecordCacheLimit(m, 1)
					}
					restarted = true
				}
				n := min(bt.size(i), len(entries)-i)
				res, err := m.Apply(entries[i : i+n])
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range res {
					got = append(got, toGolden(t, r))
				}
				i += n
			}
			for i := range got {
				a, _ := json.Marshal(got[i])
				b, _ := json.Marshal(wantResults[i])
				if !bytes.Equal(a, b) {
					t.Fatalf("entry %d (%s): result\n got %s\nwant %s", entries[i].Index, entries[i].Data, a, b)
				}
			}
			if d := s.Dump(); !bytes.Equal(d, wantDump) {
				t.Fatalf("store differs from the golden dump:\n%s", firstDiff(d, wantDump))
			}
			if !txswitch.KeyFilterReady(m) {
				t.Fatal("the key filter never caught up: the replay did not exercise it")
			}
		})
	}
}

func firstDiff(got, want []byte) string {
	g, w := bytes.Split(got, []byte("\n")), bytes.Split(want, []byte("\n"))
	for i := range max(len(g), len(w)) {
		var a, b []byte
		if i < len(g) {
			a = g[i]
		}
		if i < len(w) {
			b = w[i]
		}
		if !bytes.Equal(a, b) {
			return fmt.Sprintf("line %d\n got %s\nwant %s", i+1, a, b)
		}
	}
	return "equal"
}

// writeGolden records the corpus: a random run over every flow.
func writeGolden(t *testing.T) {
	h := newHarness(t)
	r := rand.New(rand.NewPCG(7, 2026))
	var orders, payments, notifyKeys []string
	key := func() string {
		if r.IntN(3) == 0 {
			return ""
		}
		return fmt.Sprintf("k%d", r.IntN(400)) // reuse some keys: replays and mismatches
	}
	domainErr := func(step int, err error) {
		if e := (*txswitch.Error)(nil); err != nil && (!errors.As(err, &e) || e.Status >= 500) {
			t.Fatalf("step %d: %v", step, err)
		}
	}
	for step := range 700 {
		switch op := r.IntN(20); {
		case op < 3 || len(orders) == 0:
			v := int64(100 + r.IntN(5000))
			if r.IntN(10) == 0 {
				v = 1_000_000 + int64(r.IntN(1000)) // fraud hold
			}
			req := orderReq(v)
			if r.IntN(4) == 0 {
				req.Lines = []txswitch.OrderLine{{SKU: "sku-<&>\u2028", Quantity: 1, UnitAmount: v, Category: "x"}}
				req.Reference = "ref \"quoted\" <b>é</b>"
			}
			res, err := h.svc.CreateOrder(h.ctx, caller(key()), req)
			domainErr(step, err)
			if err == nil {
				if o := decode[txswitch.Order](t, res); o.ID != "" {
					orders = append(orders, o.ID)
				}
			}
		case op < 8:
			o := orders[r.IntN(len(orders))]
			for _, p := range []string{"psp_a", "psp_b"} {
				prov := h.a
				if p == "psp_b" {
					prov = h.b
				}
				st := randomStep(r, p)
				if r.IntN(6) == 0 {
					st = memory.Step{Result: txswitch.ProviderResult{Outcome: txswitch.OutcomePending, RedirectURL: "https://psp/redirect?a=1&b=2"}}
				}
				prov.Push(txswitch.OpAuthorize, st)
			}
			method := []string{"card", "card", "ideal", "klarna_paylater"}[r.IntN(4)]
			req := txswitch.CreatePaymentRequest{Method: method, Capture: []string{"automatic", "manual"}[r.IntN(2)]}
			if r.IntN(3) == 0 {
				req.Amount = eur(int64(1 + r.IntN(3000)))
			}
			if r.IntN(3) == 0 {
				req.PaymentData = map[string]string{"token": fmt.Sprint(r.IntN(1e6)), "b": "<x>"}
			}
			res, err := h.svc.CreatePayment(h.ctx, caller(key()), o, req)
			domainErr(step, err)
			if err == nil {
				if p := decode[txswitch.Payment](t, res); p.ID != "" {
					payments = append(payments, p.ID)
					if p.Status == txswitch.PaymentPending && p.Provider != "" {
						notifyKeys = append(notifyKeys, p.Provider+" "+p.ID+"/"+fmt.Sprint(p.Attempt))
					}
				}
			}
		case op < 13 && len(payments) > 0:
			p := payments[r.IntN(len(payments))]
			prov := h.payment(p).Provider
			pp := h.a
			if prov == "psp_b" {
				pp = h.b
			}
			var err error
			amount := eur(int64(1 + r.IntN(3000)))
			if r.IntN(2) == 0 {
				amount = nil
			}
			switch r.IntN(3) {
			case 0:
				pp.Push(txswitch.OpCapture, randomStep(r, prov))
				_, err = h.svc.Capture(h.ctx, caller(key()), p, txswitch.CaptureRequest{Amount: amount})
			case 1:
				pp.Push(txswitch.OpRefund, randomStep(r, prov))
				_, err = h.svc.Refund(h.ctx, caller(key()), p, txswitch.RefundRequest{Amount: amount, Reason: "<returned>", Channel: []string{"", "pos"}[r.IntN(2)]})
			default:
				pp.Push(txswitch.OpCancel, randomStep(r, prov))
				_, err = h.svc.Cancel(h.ctx, caller(key()), p)
			}
			domainErr(step, err)
		case op < 14 && len(payments) > 0:
			p := payments[r.IntN(len(payments))]
			h.a.Push(txswitch.OpAuthorize, randomStep(r, "psp_a"))
			h.b.Push(txswitch.OpAuthorize, randomStep(r, "psp_b"))
			_, err := h.svc.ReviewPayment(h.ctx, p, txswitch.ReviewRequest{Decision: []string{"approve", "reject"}[r.IntN(2)], Note: "looked <ok>"})
			domainErr(step, err)
		case op < 15 && len(notifyKeys) > 0:
			var prov, k string
			fmt.Sscan(notifyKeys[r.IntN(len(notifyKeys))], &prov, &k)
			out := []txswitch.ProviderOutcome{txswitch.OutcomeApproved, txswitch.OutcomeDeclined, txswitch.OutcomePending}[r.IntN(3)]
			_, err := h.svc.Notify(h.ctx, prov, txswitch.ProviderNotification{NotificationID: fmt.Sprintf("n%d", r.IntN(50)), IdempotencyKey: k,
				Result: txswitch.ProviderResult{Outcome: out, ProviderRef: "ref", Code: "c"}})
			domainErr(step, err)
		case op < 16:
			_, err := h.svc.Methods(h.ctx, caller(""), orders[r.IntN(len(orders))])
			domainErr(step, err)
		case op < 17:
			h.clock.Advance(time.Duration(r.IntN(90)) * time.Second)
			for _, prov := range []*memory.Provider{h.a, h.b} {
				for range 3 {
					st := randomStep(r, prov.Name())
					if st.Err != nil && r.IntN(2) == 0 {
						st = memory.Step{Result: txswitch.ProviderResult{Outcome: txswitch.OutcomeNotFound}}
					}
					prov.Push(txswitch.OpStatus, st)
				}
			}
			_, err := h.svc.ResolveInDoubt(h.ctx)
			domainErr(step, err)
		case op < 18:
			head, err := h.svc.OutboxHead()
			if err != nil {
				t.Fatal(err)
			}
			domainErr(step, h.svc.AdvanceExportWatermark(h.ctx, head/2+uint64(r.IntN(5))))
		case op < 19:
			h.clock.Advance(time.Duration(r.IntN(30)) * time.Hour)
			_, err := h.svc.ExpireIdempotency(h.ctx)
			domainErr(step, err)
		default:
			cfg := testConfig()
			if r.IntN(2) == 0 {
				cfg.Methods[0].Routes = []txswitch.RouteConfig{{Provider: "psp_b"}, {Provider: "psp_a"}}
			}
			_, err := h.svc.PutConfig(h.ctx, cfg)
			domainErr(step, err)
		}
		h.clock.Advance(time.Duration(r.IntN(1500)) * time.Millisecond)
	}
	entries := h.log.Entries()
	// Replay once to record the results apply gives each entry.
	m, err := txswitch.NewMachine(memory.NewStore())
	if err != nil {
		t.Fatal(err)
	}
	res, err := m.Apply(entries)
	if err != nil {
		t.Fatal(err)
	}
	results := make([]goldenResult, len(res))
	for i, r := range res {
		results[i] = toGolden(t, r)
	}
	write := func(name string, data []byte) {
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	logRaw, _ := json.Marshal(entries)
	resRaw, _ := json.MarshalIndent(results, "", " ")
	write(goldenLog, logRaw)
	write(goldenResults, resRaw)
	write(goldenDump, h.store.Dump())
	t.Logf("golden corpus: %d entries, %d orders, %d payments", len(entries), len(orders), len(payments))
}
