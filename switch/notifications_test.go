package txswitch_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	txswitch "github.com/txswitch/txswitch/switch"
)

func (h *harness) notify(provider, id, key string, outcome txswitch.ProviderOutcome, ref string) string {
	h.t.Helper()
	r, err := h.svc.Notify(h.ctx, provider, txswitch.ProviderNotification{NotificationID: id, IdempotencyKey: key,
		Result: txswitch.ProviderResult{Outcome: outcome, ProviderRef: ref, Code: "c"}})
	if err != nil {
		h.t.Fatalf("Notify %s %s: %v", provider, key, err)
	}
	return string(r.Body)
}

func (h *harness) explanation(orderID string) txswitch.Explanation {
	h.t.Helper()
	return decode[txswitch.Explanation](h.t, h.explain(orderID))
}

// A notification for an attempt the switch settled otherwise (here: as
// declined) changed nothing and left no trace, even an approval: a real
// charge acknowledged to the PSP and lost. From VersionProviderAmount it
// is recorded on the order's timeline, an approval the switch did not book
// also as unbooked_provider_approval with an explain cause; below the gate
// it stays as it was, so every member applies the same.
func TestLateNotificationRecorded(t *testing.T) {
	for _, gate := range []bool{true, false} {
		t.Run(fmt.Sprintf("gate=%v", gate), func(t *testing.T) {
			h := newHarness(t)
			if gate {
				h.gate(txswitch.VersionProviderAmount)
			}
			o := h.createOrder(1000)
			h.a.Push(txswitch.OpAuthorize, declined("do_not_honor"))
			p := h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card"})
			if p.Status != txswitch.PaymentDeclined {
				t.Fatalf("payment = %s", p.Status)
			}
			before := len(h.timeline(o.ID))
			if got := h.notify("psp_a", "n1", p.ID+"/1", txswitch.OutcomeApproved, "a-late"); got != `{"status":"ignored"}` {
				t.Fatalf("late approval = %s", got)
			}
			if got := h.payment(p.ID); got.Status != txswitch.PaymentDeclined || got.Captured.Value != 0 {
				t.Fatalf("a late notification changed the payment: %s captured %d", got.Status, got.Captured.Value)
			}
			if got := h.order(o.ID); got.Status != txswitch.OrderFailed {
				t.Fatalf("order = %s", got.Status)
			}
			evs := h.timeline(o.ID)
			if !gate {
				if len(evs) != before {
					t.Fatalf("below the gate the timeline changed: %v", eventTypes(evs[before:]))
				}
				return
			}
			if got := eventTypes(evs[before:]); strings.Join(got, ",") != "late_result_ignored,unbooked_provider_approval" {
				t.Fatalf("events = %v", got)
			}
			ub := evs[len(evs)-1]
			if ub.PaymentID != p.ID || !strings.Contains(ub.Message, "psp_a reports attempt 1") || !strings.Contains(ub.Message, "a-late") ||
				!strings.Contains(ub.Message, "declined") || !bytes.Contains(ub.Data, []byte(`"provider_ref":"a-late"`)) {
				t.Fatalf("unbooked event = %s %s", ub.Message, ub.Data)
			}
			ex := h.explanation(o.ID)
			if !hasCause(ex, txswitch.CauseUnbookedApproval) {
				t.Fatalf("explain causes = %+v", ex.Causes)
			}
			// A late decline of the same attempt is recorded, not flagged.
			h.notify("psp_a", "n2", p.ID+"/1", txswitch.OutcomeDeclined, "")
			if evs := h.timeline(o.ID); countEvents(evs, "late_result_ignored") != 2 || countEvents(evs, "unbooked_provider_approval") != 1 {
				t.Fatalf("after a late decline: %v", eventTypes(evs))
			}
		})
	}
}

// Which late notifications count as unbooked approvals: an approval of the
// attempt the switch booked as approved does not; one of an attempt the
// switch failed over from, or of a cancellation it booked as failed, does.
func TestLateNotificationBookedOrNot(t *testing.T) {
	h := newHarness(t)
	h.gate(txswitch.VersionProviderAmount)

	// Approved and booked: a late approval repeats what the switch knows.
	o1 := h.createOrder(1000)
	p1 := h.pay(o1.ID, txswitch.CreatePaymentRequest{Method: "card"})
	h.notify("psp_a", "b1", p1.ID+"/1", txswitch.OutcomeApproved, "x")
	if evs := h.timeline(o1.ID); countEvents(evs, "late_result_ignored") != 1 || hasEvent(evs, "unbooked_provider_approval") {
		t.Fatalf("booked approval: %v", eventTypes(evs))
	}

	// Failed over: attempt 1 at psp_a was refused, attempt 2 at psp_b
	// approved. psp_a claiming attempt 1 is money the switch never booked.
	o2 := h.createOrder(1000)
	h.a.Push(txswitch.OpAuthorize, memoryErr(refusedErr("psp_a")))
	p2 := h.pay(o2.ID, txswitch.CreatePaymentRequest{Method: "card"})
	if p2.Status != txswitch.PaymentCaptured || p2.Provider != "psp_b" {
		t.Fatalf("failover payment = %s at %s", p2.Status, p2.Provider)
	}
	h.notify("psp_a", "f1", p2.ID+"/1", txswitch.OutcomeApproved, "a-ghost")
	if evs := h.timeline(o2.ID); !hasEvent(evs, "unbooked_provider_approval") {
		t.Fatalf("failed-over attempt: %v", eventTypes(evs))
	}

	// A cancellation the provider declined, then reported as done.
	o3 := h.createOrder(1000)
	p3 := h.pay(o3.ID, txswitch.CreatePaymentRequest{Method: "card", Capture: txswitch.CaptureManual})
	h.a.Push(txswitch.OpCancel, declined("too_late"))
	if r, err := h.svc.Cancel(h.ctx, caller(""), p3.ID); err != nil || r.Status != 422 {
		t.Fatalf("cancel declined by the provider: %v %d", err, r.Status)
	}
	if got := h.payment(p3.ID); got.Status != txswitch.PaymentAuthorized {
		t.Fatalf("after a declined cancel: %s", got.Status)
	}
	h.notify("psp_a", "c1", p3.ID+"/cancel/1", txswitch.OutcomeApproved, "")
	evs := h.timeline(o3.ID)
	ub := evs[len(evs)-1]
	if ub.Type != "unbooked_provider_approval" || !bytes.Contains(ub.Data, []byte(`"op":"cancel"`)) {
		t.Fatalf("late cancellation approval: %v, last %s", eventTypes(evs), ub.Data)
	}
	if got := h.payment(p3.ID); got.Status != txswitch.PaymentAuthorized {
		t.Fatalf("a late cancellation changed the payment: %s", got.Status)
	}
}

// Keys that name no payment, or an attempt the switch never made, stay
// "ignored" and leave nothing but the dedupe marker.
func TestLateNotificationUnknownKeys(t *testing.T) {
	h := newHarness(t)
	h.gate(txswitch.VersionProviderAmount)
	o := h.createOrder(1000)
	h.a.Push(txswitch.OpAuthorize, declined("do_not_honor"))
	p := h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card"})
	before := len(h.timeline(o.ID))
	for i, key := range []string{"nope", "pay_unknown/1", p.ID + "/2", p.ID + "/0", p.ID + "/01", p.ID + "/cancel/1", p.ID + "/1:expire", "cap_000001", "/1"} {
		if got := h.notify("psp_a", fmt.Sprintf("u%d", i), key, txswitch.OutcomeApproved, ""); got != `{"status":"ignored"}` {
			t.Fatalf("%s: %s", key, got)
		}
	}
	if evs := h.timeline(o.ID); len(evs) != before {
		t.Fatalf("unknown keys wrote %v", eventTypes(evs[before:]))
	}
	// A provider that did not handle the attempt (psp_c is no candidate
	// of this card payment, made at psp_a) raises nothing on the order.
	if got := h.notify("psp_c", "other", p.ID+"/1", txswitch.OutcomeApproved, ""); got != `{"status":"ignored"}` {
		t.Fatalf("another provider's notification: %s", got)
	}
	if evs := h.timeline(o.ID); len(evs) != before {
		t.Fatalf("another provider's notification wrote %v", eventTypes(evs[before:]))
	}
}

// A flood of late notifications for one order writes a bounded number of
// events; late declines do not use up the room for an unbooked approval.
func TestLateNotificationsBounded(t *testing.T) {
	h := newHarness(t)
	h.gate(txswitch.VersionProviderAmount)
	o := h.createOrder(1000)
	h.a.Push(txswitch.OpAuthorize, declined("do_not_honor"))
	p := h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card"})
	for i := range 3 * txswitch.MaxLateNotificationEvents {
		h.notify("psp_a", fmt.Sprintf("d%d", i), p.ID+"/1", txswitch.OutcomeDeclined, "")
	}
	evs := h.timeline(o.ID)
	if n := countEvents(evs, "late_result_ignored"); n != txswitch.MaxLateNotificationEvents {
		t.Fatalf("late events = %d, want %d", n, txswitch.MaxLateNotificationEvents)
	}
	h.notify("psp_a", "a0", p.ID+"/1", txswitch.OutcomeApproved, "a-1")
	if n := countEvents(h.timeline(o.ID), "unbooked_provider_approval"); n != 1 {
		t.Fatalf("unbooked events after the late cap = %d", n)
	}
	for i := range 3 * txswitch.MaxUnbookedApprovalEvents {
		h.notify("psp_a", fmt.Sprintf("a%d", i+1), p.ID+"/1", txswitch.OutcomeApproved, "a-1")
	}
	evs = h.timeline(o.ID)
	if n := countEvents(evs, "unbooked_provider_approval"); n != txswitch.MaxUnbookedApprovalEvents {
		t.Fatalf("unbooked events = %d, want %d", n, txswitch.MaxUnbookedApprovalEvents)
	}
	// Past both bounds a notification writes only its marker.
	r := len(evs)
	h.notify("psp_a", "last", p.ID+"/1", txswitch.OutcomeApproved, "a-1")
	if got := len(h.timeline(o.ID)); got != r {
		t.Fatalf("timeline grew past the bounds: %d -> %d", r, got)
	}
}

func markerKeys(h *harness) (markers, index int) {
	for _, line := range bytes.Split(h.store.Dump(), []byte("\n")) {
		switch {
		case bytes.HasPrefix(line, []byte(`"n/`)) || bytes.HasPrefix(line, []byte(`n/`)):
			markers++
		case bytes.HasPrefix(line, []byte(`"ne/`)) || bytes.HasPrefix(line, []byte(`ne/`)):
			index++
		}
	}
	return markers, index
}

// The dedupe markers of notifications expire after the idempotency
// retention from VersionProviderAmount (they grew replicated state
// forever); below it nothing is deleted.
func TestNotificationMarkersExpire(t *testing.T) {
	for _, gate := range []bool{true, false} {
		t.Run(fmt.Sprintf("gate=%v", gate), func(t *testing.T) {
			h := newHarness(t)
			if gate {
				h.gate(txswitch.VersionProviderAmount)
			}
			o := h.createOrder(1000)
			h.b.Push(txswitch.OpAuthorize, pendingStep())
			p := h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "ideal"})
			h.notify("psp_b", "old-1", "unknown-key", txswitch.OutcomeApproved, "")
			h.notify("psp_b", "old-2", p.ID+"/1", txswitch.OutcomeApproved, "b-1")
			h.clock.Advance(20 * time.Hour)
			h.notify("psp_b", "young", "other-key", txswitch.OutcomeDeclined, "")
			if m, _ := markerKeys(h); m != 3 {
				t.Fatalf("markers = %d", m)
			}
			if got := h.notify("psp_b", "old-2", p.ID+"/1", txswitch.OutcomeApproved, "b-1"); got != `{"status":"duplicate"}` {
				t.Fatalf("redelivery within the retention = %s", got)
			}
			h.clock.Advance(5 * time.Hour) // old-* are 25 h old, young 5 h
			n, err := h.svc.ExpireNotifications(h.ctx)
			if err != nil {
				t.Fatal(err)
			}
			m, idx := markerKeys(h)
			if !gate {
				if n != 0 || m != 3 || idx != 0 {
					t.Fatalf("below the gate: expired %d, markers %d, index %d", n, m, idx)
				}
				return
			}
			if n != 2 || m != 1 || idx != 1 {
				t.Fatalf("expired %d, left markers %d and index entries %d; want 2, 1, 1", n, m, idx)
			}
			if got := h.notify("psp_b", "young", "other-key", txswitch.OutcomeDeclined, ""); got != `{"status":"duplicate"}` {
				t.Fatalf("young marker: %s", got)
			}
			// A redelivery after its marker expired finds the payment settled
			// by its first delivery: recorded as late, nothing booked twice.
			if got := h.notify("psp_b", "old-2", p.ID+"/1", txswitch.OutcomeApproved, "b-1"); got != `{"status":"ignored"}` {
				t.Fatalf("redelivery after expiry = %s", got)
			}
			if got := h.payment(p.ID); got.Status != txswitch.PaymentCaptured || got.Captured.Value != 1029 {
				t.Fatalf("payment after a redelivery = %s captured %d", got.Status, got.Captured.Value)
			}
			if evs := h.timeline(o.ID); hasEvent(evs, "unbooked_provider_approval") || !hasEvent(evs, "late_result_ignored") {
				t.Fatalf("timeline after a redelivery: %v", eventTypes(evs))
			}
		})
	}
}

// Expiry is bounded per command and the leader proposes as many as needed.
func TestNotificationMarkersExpireInBoundedCommands(t *testing.T) {
	h := newHarness(t)
	h.gate(txswitch.VersionProviderAmount)
	total := txswitch.DefaultExpireLimit + 5
	for i := range total {
		h.notify("psp_a", fmt.Sprintf("n%d", i), "k", txswitch.OutcomeDeclined, "")
	}
	h.clock.Advance(25 * time.Hour)
	entries := len(h.log.Entries())
	n, err := h.svc.ExpireNotifications(h.ctx)
	if err != nil || n != total {
		t.Fatalf("expired %d %v, want %d", n, err, total)
	}
	if cmds := len(h.log.Entries()) - entries; cmds != 2 {
		t.Fatalf("commands = %d, want 2", cmds)
	}
	if m, idx := markerKeys(h); m != 0 || idx != 0 {
		t.Fatalf("left %d markers, %d index entries", m, idx)
	}
}

// A capture or refund is notified under its own id (cap_…, ref_…), which
// named no payment: a late notification for one left no trace, even a
// provider's approval of a capture the switch had booked as failed. From
// VersionFollowUps the oi/ index names its payment and it is recorded like
// one for an attempt; below, and for operations made before, it is not.
func TestLateOperationNotificationRecorded(t *testing.T) {
	h := newHarness(t)
	h.gate(txswitch.VersionFollowUps)
	o := h.createOrder(1000)
	p := h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card", Capture: txswitch.CaptureManual})
	h.a.Push(txswitch.OpCapture, declined("too_late"))
	if r, err := h.svc.Capture(h.ctx, caller(""), p.ID, txswitch.CaptureRequest{}); err == nil && r.Status < 300 {
		t.Fatalf("capture declined by the provider answered %d", r.Status)
	}
	failed := h.payment(p.ID).Captures[0]
	if failed.Status != "failed" {
		t.Fatalf("capture = %+v", failed)
	}
	before := len(h.timeline(o.ID))
	// Another provider's word about it raises nothing.
	h.notify("psp_b", "x0", failed.ID, txswitch.OutcomeApproved, "")
	if evs := h.timeline(o.ID); len(evs) != before {
		t.Fatalf("another provider's notification wrote %v", eventTypes(evs[before:]))
	}
	if got := h.notify("psp_a", "x1", failed.ID, txswitch.OutcomeApproved, "cap-late"); got != `{"status":"ignored"}` {
		t.Fatalf("late capture approval = %s", got)
	}
	evs := h.timeline(o.ID)
	if got := strings.Join(eventTypes(evs[before:]), ","); got != "late_result_ignored,unbooked_provider_approval" {
		t.Fatalf("events = %s", got)
	}
	ub := evs[len(evs)-1]
	for _, want := range []string{"psp_a reports capture " + failed.ID + " of payment " + p.ID + " approved", "cap-late", "a failed capture", "captured that the switch did not book"} {
		if !strings.Contains(ub.Message, want) {
			t.Fatalf("unbooked event %q does not say %q", ub.Message, want)
		}
	}
	if !bytes.Contains(ub.Data, []byte(`"op":"capture"`)) || !hasCause(h.explanation(o.ID), txswitch.CauseUnbookedApproval) {
		t.Fatalf("unbooked event data %s, causes %+v", ub.Data, h.explanation(o.ID).Causes)
	}
	if got := h.payment(p.ID); got.Status != txswitch.PaymentAuthorized || got.Captured.Value != 0 {
		t.Fatalf("a late notification changed the payment: %s captured %d", got.Status, got.Captured.Value)
	}

	// A booked capture's late approval is recorded, not flagged; a refund
	// the provider declined, then reported done, is flagged.
	if _, err := h.svc.Capture(h.ctx, caller(""), p.ID, txswitch.CaptureRequest{}); err != nil {
		t.Fatalf("capture: %v", err)
	}
	done := h.payment(p.ID).Captures[1]
	h.notify("psp_a", "x2", done.ID, txswitch.OutcomeApproved, "")
	h.a.Push(txswitch.OpRefund, declined("refused"))
	if _, err := h.svc.Refund(h.ctx, caller(""), p.ID, txswitch.RefundRequest{Reason: "return"}); err != nil {
		t.Fatalf("refund: %v", err)
	}
	ref := h.payment(p.ID).Refunds[0]
	if ref.Status != "failed" {
		t.Fatalf("refund declined by the provider: %+v", ref)
	}
	h.notify("psp_a", "x3", ref.ID, txswitch.OutcomeApproved, "")
	evs = h.timeline(o.ID)
	if countEvents(evs, "late_result_ignored") != 3 || countEvents(evs, "unbooked_provider_approval") != 2 {
		t.Fatalf("events = %v", eventTypes(evs))
	}
	if ub := evs[len(evs)-1]; !strings.Contains(ub.Message, "refund "+ref.ID) || !strings.Contains(ub.Message, "refunded that the switch still counts as captured") {
		t.Fatalf("refund event = %s", ub.Message)
	}

	t.Run("below version 11", func(t *testing.T) {
		old := newHarnessFor(t, txswitch.VersionRange{Min: 1, Max: txswitch.VersionFollowUps - 1})
		old.gate(txswitch.VersionFollowUps - 1)
		o := old.createOrder(1000)
		p := old.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card", Capture: txswitch.CaptureManual})
		old.a.Push(txswitch.OpCapture, declined("too_late"))
		_, _ = old.svc.Capture(old.ctx, caller(""), p.ID, txswitch.CaptureRequest{})
		before := len(old.timeline(o.ID))
		old.notify("psp_a", "y1", old.payment(p.ID).Captures[0].ID, txswitch.OutcomeApproved, "")
		if evs := old.timeline(o.ID); len(evs) != before {
			t.Fatalf("below version 11 the timeline changed: %v", eventTypes(evs[before:]))
		}
	})
}
