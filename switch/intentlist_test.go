package txswitch_test

import (
	"encoding/json"
	"testing"

	txswitch "github.com/txswitch/txswitch/switch"
	"github.com/txswitch/txswitch/switch/memory"
)

// TestListIntents: the listing finds the payments an alert is about, by
// state, a page at a time, and refuses what it cannot serve.
func TestListIntents(t *testing.T) {
	h := newHarness(t)
	h.gate(txswitch.VersionProviderAmount)
	h.a.Push(txswitch.OpAuthorize, memoryErr(timeoutErr("psp_a")))
	doubt := h.pay(h.createOrder(1000).ID, txswitch.CreatePaymentRequest{Method: "card"})
	h.b.Push(txswitch.OpAuthorize, memory.Step{Result: txswitch.ProviderResult{Outcome: txswitch.OutcomePending, RedirectURL: "https://bank.test/r/1"}})
	pending := h.pay(h.createOrder(1000).ID, txswitch.CreatePaymentRequest{Method: "ideal"})
	h.a.Push(txswitch.OpAuthorize, approvedFor("a-odd", txswitch.Money{Value: 900, Currency: "EUR"}))
	odd := h.pay(h.createOrder(1000).ID, txswitch.CreatePaymentRequest{Method: "card"})

	list := func(state, after string, limit int) txswitch.IntentsResponse {
		t.Helper()
		r, err := h.svc.ListIntents(h.ctx, state, after, limit)
		if err != nil {
			t.Fatalf("ListIntents(%q, %q, %d): %v", state, after, limit, err)
		}
		var page txswitch.IntentsResponse
		if err := json.Unmarshal(r.Body, &page); err != nil || r.Status != 200 {
			t.Fatalf("reply %d %s: %v", r.Status, r.Body, err)
		}
		return page
	}
	all := list("", "", 0)
	byPayment := map[string]txswitch.OpenIntent{}
	for _, in := range all.Intents {
		byPayment[in.PaymentID] = in
	}
	if len(all.Intents) != 3 || all.Next != "" {
		t.Fatalf("all: %+v", all)
	}
	for p, want := range map[string]string{doubt.ID: txswitch.IntentInDoubt, pending.ID: txswitch.IntentPending, odd.ID: txswitch.IntentAmountMismatch} {
		in := byPayment[p]
		if in.State != want || in.Kind != "payment" || in.OrderID == "" || in.Amount.Value == 0 || in.Key == "" || in.At.IsZero() {
			t.Errorf("payment %s listed as %+v, want state %s", p, in, want)
		}
	}
	if got := list(txswitch.IntentAmountMismatch, "", 0).Intents; len(got) != 1 || got[0].PaymentID != odd.ID || got[0].Provider != "psp_a" {
		t.Errorf("amount_mismatch: %+v", got)
	}
	// One a page: each page names where the next starts, the last none.
	var paged []string
	after := ""
	for range 5 {
		page := list("", after, 1)
		for _, in := range page.Intents {
			paged = append(paged, in.PaymentID)
		}
		if page.Next == "" {
			break
		}
		after = page.Next
	}
	if len(paged) != 3 || paged[0] != all.Intents[0].PaymentID || paged[2] != all.Intents[2].PaymentID {
		t.Errorf("paged %v, want %+v in order", paged, all.Intents)
	}
	for _, bad := range []struct {
		state string
		limit int
		field string
	}{{"stuck", 0, "state"}, {"", -1, "limit"}, {"", txswitch.MaxIntentsPage + 1, "limit"}} {
		_, err := h.svc.ListIntents(h.ctx, bad.state, "", bad.limit)
		wantErr(t, err, 400, txswitch.CodeInvalidQuery)
	}
}
