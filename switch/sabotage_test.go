package txswitch_test

import (
	"encoding/json"
	"testing"

	txswitch "github.com/txswitch/txswitch/switch"
	"github.com/txswitch/txswitch/switch/memory"
)

// TestSabotageApplyTwice: the same log applied by an honest machine and
// by one with FlawApplyTwice on gives different replicated state (what
// the replicas_agree check must see), and the flaw counts its firings.
// An unknown flaw is refused, and a machine starts honest.
func TestSabotageApplyTwice(t *testing.T) {
	h := newHarness(t)
	_, p := h.authorized()
	if _, err := h.svc.Capture(h.ctx, caller("cap"), p.ID, txswitch.CaptureRequest{Amount: eur(400)}); err != nil {
		t.Fatal(err)
	}
	entries := h.log.Entries()
	timelines := map[bool]string{}
	for _, twice := range []bool{false, true} {
		store := memory.NewStore()
		m, err := txswitch.NewMachine(store)
		if err != nil {
			t.Fatal(err)
		}
		svc := txswitch.NewService(txswitch.ServiceConfig{Log: memory.NewLog(m), Store: store, Machine: m})
		sab := svc.Sabotage()
		if sab.Set("no_such_flaw", true) {
			t.Fatal("an unknown flaw was accepted")
		}
		if !sab.Set(txswitch.FlawApplyTwice, twice) {
			t.Fatal("apply_twice refused")
		}
		for i := range entries {
			if _, err := m.Apply(entries[i : i+1]); err != nil {
				t.Fatal(err)
			}
		}
		if got, want := sab.Fired(txswitch.FlawApplyTwice), map[bool]int64{false: 0, true: int64(len(entries))}[twice]; got != want {
			t.Fatalf("twice=%v: fired %d, want %d", twice, got, want)
		}
		r, err := svc.Timeline(h.ctx, caller(""), p.OrderID)
		if err != nil {
			t.Fatal(err)
		}
		var tl txswitch.TimelineResponse
		if err := json.Unmarshal(r.Body, &tl); err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(tl.Events)
		timelines[twice] = string(b)
	}
	if timelines[false] == timelines[true] {
		t.Fatalf("applying every entry twice left the timeline as it was: %s", timelines[true])
	}
}
