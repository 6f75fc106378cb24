package txswitch_test

import (
	"maps"
	"testing"
	"time"

	txswitch "github.com/txswitch/txswitch/switch"
	"github.com/txswitch/txswitch/switch/memory"
)

// TestIntentStats: each open intent is counted in its one state (a
// provider call out, one that timed out, a redirect waiting for the
// shopper, an approval of another amount), with the time of the oldest of
// each; a settled payment is not counted, nor is a call once it returned.
func TestIntentStats(t *testing.T) {
	h := newHarness(t)
	h.gate(txswitch.VersionProviderAmount)
	t0 := h.clock.Now()
	step := func() { h.clock.Advance(time.Minute) }

	h.a.Push(txswitch.OpAuthorize, memoryErr(timeoutErr("psp_a")))
	if p := h.pay(h.createOrder(1000).ID, txswitch.CreatePaymentRequest{Method: "card"}); p.Status != txswitch.PaymentInDoubt {
		t.Fatalf("timed out: %s", p.Status)
	}
	step()
	h.b.Push(txswitch.OpAuthorize, memory.Step{Result: txswitch.ProviderResult{Outcome: txswitch.OutcomePending, RedirectURL: "https://bank.test/r/1"}})
	if p := h.pay(h.createOrder(1000).ID, txswitch.CreatePaymentRequest{Method: "ideal"}); p.Status != txswitch.PaymentPending {
		t.Fatalf("redirect: %s", p.Status)
	}
	step()
	h.a.Push(txswitch.OpAuthorize, approvedFor("a-odd", txswitch.Money{Value: 900, Currency: "EUR"}))
	if p := h.pay(h.createOrder(1000).ID, txswitch.CreatePaymentRequest{Method: "card"}); p.Status != txswitch.PaymentInDoubt {
		t.Fatalf("another amount: %s", p.Status)
	}
	step()
	h.a.Push(txswitch.OpAuthorize, approved("a-ok"))
	if p := h.pay(h.createOrder(1000).ID, txswitch.CreatePaymentRequest{Method: "card"}); p.Status != txswitch.PaymentCaptured {
		t.Fatalf("approved: %s", p.Status)
	}
	step()
	// A call still out: held by the provider until release.
	release := make(chan struct{})
	h.a.Push(txswitch.OpAuthorize, memory.Step{Block: release, Result: txswitch.ProviderResult{Outcome: txswitch.OutcomeApproved, ProviderRef: "a-late"}})
	held := h.createOrder(1000)
	done := make(chan error, 1)
	go func() {
		_, err := h.svc.CreatePayment(h.ctx, caller(""), held.ID, txswitch.CreatePaymentRequest{Method: "card"})
		done <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	var st txswitch.IntentStats
	for {
		var err error
		if st, err = h.svc.IntentStats(); err != nil {
			t.Fatal(err)
		}
		if st.Count[txswitch.IntentInFlight] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the held call never showed as in flight: %v", st.Count)
		}
		time.Sleep(2 * time.Millisecond)
	}
	want := map[string]int{txswitch.IntentInFlight: 1, txswitch.IntentInDoubt: 1, txswitch.IntentPending: 1, txswitch.IntentAmountMismatch: 1}
	if !maps.Equal(st.Count, want) || st.Truncated {
		t.Fatalf("counts %v (truncated %v), want %v", st.Count, st.Truncated, want)
	}
	wantOldest := map[string]time.Time{
		txswitch.IntentInDoubt: t0, txswitch.IntentPending: t0.Add(time.Minute),
		txswitch.IntentAmountMismatch: t0.Add(2 * time.Minute), txswitch.IntentInFlight: t0.Add(4 * time.Minute),
	}
	for s, at := range wantOldest {
		if !st.Oldest[s].Equal(at) {
			t.Errorf("oldest %s at %v, want %v", s, st.Oldest[s], at)
		}
	}

	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	st, err := h.svc.IntentStats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Count[txswitch.IntentInFlight] != 0 {
		t.Errorf("the call returned, still in flight: %v", st.Count)
	}
	if _, ok := st.Oldest[txswitch.IntentInFlight]; ok {
		t.Errorf("an oldest time for a state without intents: %v", st.Oldest)
	}

	// Past the limit the counts are a floor, and say so.
	capped, err := txswitch.CountIntents(h.store, 2)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, n := range capped.Count {
		total += n
	}
	if !capped.Truncated || total != 2 {
		t.Fatalf("limit 2: counts %v truncated %v", capped.Count, capped.Truncated)
	}
}
