package txswitch_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	txswitch "github.com/txswitch/txswitch/switch"
	"github.com/txswitch/txswitch/switch/memory"
)

// cancellationOf fails unless p carries a cancellation with status.
func cancellationOf(t *testing.T, p txswitch.Payment, status string) *txswitch.Cancellation {
	t.Helper()
	if p.Cancellation == nil || p.Cancellation.Status != status {
		t.Fatalf("payment %s (%s): cancellation %+v, want status %s", p.ID, p.Status, p.Cancellation, status)
	}
	return p.Cancellation
}

func (h *harness) explain(orderID string) txswitch.Reply {
	h.t.Helper()
	r, err := h.svc.Explain(h.ctx, caller(""), orderID)
	if err != nil {
		h.t.Fatalf("Explain: %v", err)
	}
	return r
}

func hasCause(e txswitch.Explanation, code string) bool {
	for _, c := range e.Causes {
		if c.Code == code {
			return true
		}
	}
	return false
}

// A void the provider books but does not answer in time is in doubt: the
// cancel request and every read show it (the payment keeps its status, its
// cancellation says in_doubt), nothing can act on the payment meanwhile,
// and the resolver settles it by a status inquiry under the same key —
// never a second void — with cancel_in_doubt and resolved on the timeline.
func TestCancelInDoubtResolved(t *testing.T) {
	tests := []struct {
		name        string
		status      memory.Step
		wantPayment string
		wantCancel  string
		retryKey    string // the provider key a later cancel uses; "" when none may be sent
	}{
		{"voided", approved("v"), txswitch.PaymentCancelled, "succeeded", ""},
		{"never received", memory.Step{Result: txswitch.ProviderResult{Outcome: txswitch.OutcomeNotFound}}, txswitch.PaymentAuthorized, "failed", "/cancel/2"},
		{"declined", declined("already_captured"), txswitch.PaymentAuthorized, "failed", "/cancel/2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.gate(txswitch.VersionCancellation)
			o, p := h.authorized()
			h.a.Push(txswitch.OpCancel, memoryErr(timeoutErr("psp_a")))
			r, err := h.svc.Cancel(h.ctx, caller("void-1"), p.ID)
			if err != nil || r.Status != 200 {
				t.Fatalf("cancel: %v %d", err, r.Status)
			}
			// The answer must not read as "authorized, nothing happened".
			if got := decode[txswitch.Payment](t, r); got.Status != txswitch.PaymentAuthorized || cancellationOf(t, got, txswitch.PaymentInDoubt).Attempt != 1 {
				t.Fatalf("cancel reply = %s", r.Body)
			}
			cancellationOf(t, h.payment(p.ID), txswitch.PaymentInDoubt)
			if ps := h.order(o.ID).Payments; len(ps) != 1 {
				t.Fatalf("order payments = %d", len(ps))
			} else {
				cancellationOf(t, ps[0], txswitch.PaymentInDoubt)
			}
			if ex := decode[txswitch.Explanation](t, h.explain(o.ID)); !hasCause(ex, txswitch.CauseCancelInDoubt) || !strings.Contains(ex.Summary, "cancellation is in doubt") {
				t.Fatalf("explain does not tell the cancellation is in doubt: %+v", ex)
			}
			first := r
			h.unchanged(func() {
				r, err := h.svc.Cancel(h.ctx, caller("void-1"), p.ID)
				if err != nil || r.Status != first.Status || string(r.Body) != string(first.Body) {
					t.Fatalf("replay in doubt = %v %d %s, want the first answer %s", err, r.Status, r.Body, first.Body)
				}
				_, err = h.svc.Cancel(h.ctx, caller("void-2"), p.ID)
				wantErr(t, err, 409, "invalid_state")
				_, err = h.svc.Capture(h.ctx, caller(""), p.ID, txswitch.CaptureRequest{})
				wantErr(t, err, 409, "invalid_state")
			})
			// Not before the provider timeout and the margin have passed.
			if n, err := h.svc.ResolveInDoubt(h.ctx); err != nil || n != 0 || len(h.a.CallsFor(txswitch.OpStatus)) != 0 {
				t.Fatalf("early resolve = %d %v, status calls %d", n, err, len(h.a.CallsFor(txswitch.OpStatus)))
			}
			h.clock.Advance(time.Minute)
			h.a.Push(txswitch.OpStatus, tc.status)
			if n, err := h.svc.ResolveInDoubt(h.ctx); err != nil || n != 1 {
				t.Fatalf("resolve = %d %v", n, err)
			}
			if st := h.a.CallsFor(txswitch.OpStatus); len(st) != 1 || st[0].IdempotencyKey != p.ID+"/cancel/1" {
				t.Fatalf("status inquiries = %+v", st)
			}
			got := h.payment(p.ID)
			c := cancellationOf(t, got, tc.wantCancel)
			if got.Status != tc.wantPayment || (tc.wantCancel == "failed") != (c.Failure != nil) {
				t.Fatalf("payment %s, cancellation %+v", got.Status, c)
			}
			evs := h.timeline(o.ID)
			for _, typ := range []string{"cancel_in_doubt", "cancel_" + tc.wantCancel, "resolved"} {
				if !hasEvent(evs, typ) {
					t.Fatalf("timeline %v has no %s", eventTypes(evs), typ)
				}
			}
			if hasCause(decode[txswitch.Explanation](t, h.explain(o.ID)), txswitch.CauseCancelInDoubt) {
				t.Fatal("explain still reports the cancellation in doubt")
			}
			// The first request's key answers what it answered first; the
			// payment above tells the outcome.
			r, err = h.svc.Cancel(h.ctx, caller("void-1"), p.ID)
			if err != nil || r.Status != first.Status || string(r.Body) != string(first.Body) {
				t.Fatalf("replay = %v %d %s, want the first answer %s", err, r.Status, r.Body, first.Body)
			}
			voids := func() []txswitch.ProviderRequest { return h.a.CallsFor(txswitch.OpCancel) }
			if n := len(voids()); n != 1 {
				t.Fatalf("%d voids sent, want 1", n)
			}
			// A new cancellation is possible only when the first is known
			// not to have voided, and then under a new key.
			_, err = h.svc.Cancel(h.ctx, caller("void-3"), p.ID)
			if tc.retryKey == "" {
				wantErr(t, err, 409, "invalid_state")
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if v := voids(); len(v) != 2 || v[1].IdempotencyKey != p.ID+tc.retryKey {
				t.Fatalf("voids = %+v", v)
			}
			if got := h.payment(p.ID); got.Status != txswitch.PaymentCancelled || cancellationOf(t, got, "succeeded").Attempt != 2 {
				t.Fatalf("after the retry: %s %+v", got.Status, got.Cancellation)
			}
		})
	}
}

// The leader commits a cancellation intent and dies before it calls the
// provider or records an answer: the next leader finds the intent on
// taking over and settles it by status inquiry, not by a void of its own.
func TestCancelIntentResolvedByNextLeader(t *testing.T) {
	h := newHarness(t)
	h.log.SetLeadership(txswitch.Leadership{IsLeader: true, LeaderID: 1, Term: 1})
	h.gate(txswitch.VersionCancellation)
	o, p := h.authorized()
	h.log.Fail(func(d []byte) bool { return strings.Contains(string(d), `"type":"op_intent"`) }, txswitch.ErrTimeout, true)
	_, err := h.svc.Cancel(h.ctx, caller("void-1"), p.ID)
	wantErr(t, err, 503, "outcome_unknown")
	cancellationOf(t, h.payment(p.ID), "pending")

	h.log.SetLeadership(txswitch.Leadership{IsLeader: true, LeaderID: 2, Term: 2})
	next := txswitch.NewService(txswitch.ServiceConfig{Log: h.log, Store: h.store, Machine: h.m, Providers: h.provs, Clock: h.clock,
		IDs: &txswitch.SequentialIDs{}})
	h.clock.Advance(time.Minute)
	h.a.Push(txswitch.OpStatus, approved("v"))
	if n, err := next.ResolveInDoubt(h.ctx); err != nil || n != 1 {
		t.Fatalf("resolve = %d %v", n, err)
	}
	got := h.payment(p.ID)
	if got.Status != txswitch.PaymentCancelled {
		t.Fatalf("payment = %s", got.Status)
	}
	cancellationOf(t, got, "succeeded")
	if n := len(h.a.CallsFor(txswitch.OpCancel)); n != 0 {
		t.Fatalf("%d voids sent; the intent's void was never sent and the inquiry answered", n)
	}
	if evs := h.timeline(o.ID); !hasEvent(evs, "resolved") || !hasEvent(evs, "cancel_succeeded") {
		t.Fatalf("timeline = %v", eventTypes(evs))
	}
	if st := h.order(o.ID).Status; st != txswitch.OrderCancelled {
		t.Fatalf("order = %s", st)
	}
}

// A rolling upgrade: while the cluster runs version 1 an in-doubt
// cancellation is recorded as before (no cancellation field anywhere in
// the state), as a version-1 member applying the same log writes it; once
// the gate has moved, the resolution of that same cancellation records it.
func TestCancelInDoubtAcrossTheVersionGate(t *testing.T) {
	h := newHarness(t)
	_, p := h.authorized()
	h.a.Push(txswitch.OpCancel, memoryErr(timeoutErr("psp_a")))
	r, err := h.svc.Cancel(h.ctx, caller("void-1"), p.ID)
	if err != nil || r.Status != 200 {
		t.Fatalf("cancel: %v %d", err, r.Status)
	}
	if got := decode[txswitch.Payment](t, r); got.Cancellation != nil || strings.Contains(string(r.Body), "cancellation") {
		t.Fatalf("version 1 wrote the cancellation: %s", r.Body)
	}
	// What a version-1 binary would have written: no cancellation in any
	// record, reply or outbox event.
	if bytes.Contains(h.store.Dump(), []byte(`cancellation\"`)) || bytes.Contains(h.store.Dump(), []byte(`"cancellation"`)) {
		t.Fatal("the state at cluster version 1 holds a cancellation")
	}
	h.gate(txswitch.VersionCancellation)
	h.clock.Advance(time.Minute)
	h.a.Push(txswitch.OpStatus, approved("v"))
	if n, err := h.svc.ResolveInDoubt(h.ctx); err != nil || n != 1 {
		t.Fatalf("resolve = %d %v", n, err)
	}
	got := h.payment(p.ID)
	if got.Status != txswitch.PaymentCancelled || cancellationOf(t, got, "succeeded").Attempt != 1 {
		t.Fatalf("resolved: %s %+v", got.Status, got.Cancellation)
	}
}
