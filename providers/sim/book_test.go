package sim

import (
	"errors"
	"testing"
	"time"

	txswitch "github.com/txswitch/txswitch/switch"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func eur(v int64) txswitch.Money { return txswitch.Money{Value: v, Currency: "EUR"} }

func authReq(key, pay string, v int64) txswitch.ProviderRequest {
	return txswitch.ProviderRequest{IdempotencyKey: key, Op: txswitch.OpAuthorize, PaymentID: pay, Method: "card", Amount: eur(v)}
}

func opReq(op txswitch.ProviderOp, key, pay, ref string, m txswitch.Money) txswitch.ProviderRequest {
	return txswitch.ProviderRequest{IdempotencyKey: key, Op: op, PaymentID: pay, Method: "card", Amount: m, ProviderRef: ref}
}

// TestBookMoneyRules drives the deterministic core through sequences of
// requests and checks every answer and the final totals.
func TestBookMoneyRules(t *testing.T) {
	type step struct {
		req      txswitch.ProviderRequest
		outcome  txswitch.ProviderOutcome
		code     string
		replayed bool
		err      error
	}
	ref1 := "sim_000001" // first reference handed out by a fresh book
	tests := []struct {
		name   string
		steps  []step
		pay    string
		totals Totals
	}{
		{
			name: "partial captures up to the authorization, then over-capture declined",
			pay:  "p1",
			steps: []step{
				{req: authReq("a", "p1", 1000), outcome: txswitch.OutcomeApproved},
				{req: opReq(txswitch.OpCapture, "c1", "p1", ref1, eur(600)), outcome: txswitch.OutcomeApproved},
				{req: opReq(txswitch.OpCapture, "c2", "p1", ref1, eur(401)), outcome: txswitch.OutcomeDeclined, code: DeclineExceedsAuthorization},
				{req: opReq(txswitch.OpCapture, "c3", "p1", ref1, eur(400)), outcome: txswitch.OutcomeApproved},
			},
			totals: Totals{Charges: 1, Authorized: 1000, Captured: 1000},
		},
		{
			name: "refund at most what was captured",
			pay:  "p1",
			steps: []step{
				{req: authReq("a", "p1", 1000), outcome: txswitch.OutcomeApproved},
				{req: opReq(txswitch.OpCapture, "c1", "p1", ref1, eur(700)), outcome: txswitch.OutcomeApproved},
				{req: opReq(txswitch.OpRefund, "r1", "p1", ref1, eur(500)), outcome: txswitch.OutcomeApproved},
				{req: opReq(txswitch.OpRefund, "r2", "p1", ref1, eur(201)), outcome: txswitch.OutcomeDeclined, code: DeclineExceedsCaptured},
				{req: opReq(txswitch.OpRefund, "r3", "p1", ref1, eur(200)), outcome: txswitch.OutcomeApproved},
			},
			totals: Totals{Charges: 1, Authorized: 1000, Captured: 700, Refunded: 700},
		},
		{
			name: "cancel only uncaptured; nothing after cancel",
			pay:  "p1",
			steps: []step{
				{req: authReq("a", "p1", 1000), outcome: txswitch.OutcomeApproved},
				{req: opReq(txswitch.OpCancel, "x1", "p1", ref1, txswitch.Money{}), outcome: txswitch.OutcomeApproved},
				{req: opReq(txswitch.OpCapture, "c1", "p1", ref1, eur(1)), outcome: txswitch.OutcomeDeclined, code: DeclineCancelled},
				{req: opReq(txswitch.OpCancel, "x2", "p1", ref1, txswitch.Money{}), outcome: txswitch.OutcomeDeclined, code: DeclineCancelled},
			},
			totals: Totals{Charges: 1, Authorized: 0},
		},
		{
			name: "cancel after capture declined",
			pay:  "p1",
			steps: []step{
				{req: func() txswitch.ProviderRequest { r := authReq("a", "p1", 1000); r.Capture = true; return r }(), outcome: txswitch.OutcomeApproved},
				{req: opReq(txswitch.OpCancel, "x1", "p1", ref1, txswitch.Money{}), outcome: txswitch.OutcomeDeclined, code: DeclineAlreadyCaptured},
			},
			totals: Totals{Charges: 1, Authorized: 1000, Captured: 1000},
		},
		{
			// A partial shipment whose other items never ship: the
			// merchant releases exactly the uncaptured rest; refunds go
			// on, nothing more can be captured or released.
			name: "release of the uncaptured rest after a partial capture",
			pay:  "p1",
			steps: []step{
				{req: authReq("a", "p1", 1000), outcome: txswitch.OutcomeApproved},
				{req: opReq(txswitch.OpCapture, "c1", "p1", ref1, eur(400)), outcome: txswitch.OutcomeApproved},
				{req: opReq(txswitch.OpCancel, "x1", "p1", ref1, eur(1000)), outcome: txswitch.OutcomeDeclined, code: DeclineAlreadyCaptured},
				{req: opReq(txswitch.OpCancel, "x2", "p1", ref1, eur(500)), outcome: txswitch.OutcomeDeclined, code: DeclineNotTheRest},
				{req: opReq(txswitch.OpCancel, "x3", "p1", ref1, txswitch.Money{Value: 600, Currency: "USD"}), outcome: txswitch.OutcomeDeclined, code: DeclineNotTheRest},
				{req: opReq(txswitch.OpCancel, "x4", "p1", ref1, eur(600)), outcome: txswitch.OutcomeApproved},
				{req: opReq(txswitch.OpCancel, "x4", "p1", ref1, eur(600)), outcome: txswitch.OutcomeApproved, replayed: true},
				{req: opReq(txswitch.OpCapture, "c2", "p1", ref1, eur(1)), outcome: txswitch.OutcomeDeclined, code: DeclineExceedsAuthorization},
				{req: opReq(txswitch.OpCancel, "x5", "p1", ref1, eur(600)), outcome: txswitch.OutcomeDeclined, code: DeclineAlreadyCaptured},
				{req: opReq(txswitch.OpRefund, "r1", "p1", ref1, eur(400)), outcome: txswitch.OutcomeApproved},
			},
			totals: Totals{Charges: 1, Authorized: 400, Captured: 400, Refunded: 400, Released: 600},
		},
		{
			name: "replay returns the stored result; a different body is key reuse",
			pay:  "p1",
			steps: []step{
				{req: authReq("a", "p1", 1000), outcome: txswitch.OutcomeApproved},
				{req: authReq("a", "p1", 1000), outcome: txswitch.OutcomeApproved, replayed: true},
				{req: authReq("a", "p1", 1001), err: errKeyReused, replayed: true},
			},
			totals: Totals{Charges: 1, Authorized: 1000},
		},
		{
			name: "two keys for one payment are two charges",
			pay:  "p1",
			steps: []step{
				{req: authReq("a1", "p1", 1000), outcome: txswitch.OutcomeApproved},
				{req: authReq("a2", "p1", 1000), outcome: txswitch.OutcomeApproved},
				// Without provider_ref the capture is ambiguous.
				{req: opReq(txswitch.OpCapture, "c1", "p1", "", eur(10)), outcome: txswitch.OutcomeDeclined, code: DeclineUnknownAuthorization},
			},
			totals: Totals{Charges: 2, Authorized: 2000},
		},
		{
			name: "capture by payment id alone, wrong payment id, wrong currency",
			pay:  "p1",
			steps: []step{
				{req: authReq("a", "p1", 1000), outcome: txswitch.OutcomeApproved},
				{req: opReq(txswitch.OpCapture, "c1", "p1", "", eur(100)), outcome: txswitch.OutcomeApproved},
				{req: opReq(txswitch.OpCapture, "c2", "p2", ref1, eur(100)), outcome: txswitch.OutcomeDeclined, code: DeclineUnknownAuthorization},
				{req: opReq(txswitch.OpCapture, "c3", "p1", ref1, txswitch.Money{Value: 100, Currency: "USD"}), outcome: txswitch.OutcomeDeclined, code: DeclineCurrencyMismatch},
			},
			totals: Totals{Charges: 1, Authorized: 1000, Captured: 100},
		},
		{
			name: "declined authorization is no charge and cannot be captured",
			pay:  "p1",
			steps: []step{
				{req: authReq("a", "p1", 1005), outcome: txswitch.OutcomeDeclined, code: "do_not_honor"},
				{req: opReq(txswitch.OpCapture, "c1", "p1", ref1, eur(1)), outcome: txswitch.OutcomeDeclined, code: DeclineNotApproved},
			},
			totals: Totals{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newBook(100, "sim")
			for i, s := range tc.steps {
				decline := Behaviour{}.declineCode(s.req)
				if s.req.Op != txswitch.OpAuthorize {
					decline = ""
				}
				res, replayed, err := b.process(s.req, t0, decline, false, "")
				if !errors.Is(err, s.err) {
					t.Fatalf("step %d: err = %v, want %v", i, err, s.err)
				}
				if replayed != s.replayed {
					t.Fatalf("step %d: replayed = %v, want %v", i, replayed, s.replayed)
				}
				if s.err != nil {
					continue
				}
				if res.Outcome != s.outcome || res.Code != s.code {
					t.Fatalf("step %d: got %s/%s, want %s/%s", i, res.Outcome, res.Code, s.outcome, s.code)
				}
			}
			if got := b.totals(tc.pay); got != tc.totals {
				t.Fatalf("totals = %+v, want %+v", got, tc.totals)
			}
			// The ledger marks the approved releases, and only them.
			for _, e := range b.ledger(tc.pay) {
				if want := e.Op == txswitch.OpCancel && e.Status == txswitch.OutcomeApproved && tc.totals.Released > 0; e.Release != want {
					t.Fatalf("ledger entry %s: release = %v", e.IdempotencyKey, e.Release)
				}
			}
		})
	}
}

func TestBookLedgerFullRefusesNewKeysOnly(t *testing.T) {
	b := newBook(2, "sim")
	for _, k := range []string{"a", "b"} {
		if _, _, err := b.process(authReq(k, "p-"+k, 100), t0, "", false, ""); err != nil {
			t.Fatalf("process %s: %v", k, err)
		}
	}
	if _, _, err := b.process(authReq("c", "p-c", 100), t0, "", false, ""); !errors.Is(err, errLedgerFull) {
		t.Fatalf("third key: err = %v, want errLedgerFull", err)
	}
	if res, replayed, err := b.process(authReq("a", "p-a", 100), t0, "", false, ""); err != nil || !replayed || res.Outcome != txswitch.OutcomeApproved {
		t.Fatalf("replay when full: %+v %v %v", res, replayed, err)
	}
	if n := len(b.ledger("")); n != 2 {
		t.Fatalf("ledger has %d entries, want 2", n)
	}
}

func TestBookAsyncCompletesOnce(t *testing.T) {
	for _, tc := range []struct {
		name    string
		decline string
		capture bool
		want    txswitch.ProviderOutcome
		totals  Totals
	}{
		{"approved", "", false, txswitch.OutcomeApproved, Totals{Charges: 1, Authorized: 100}},
		{"approved with capture", "", true, txswitch.OutcomeApproved, Totals{Charges: 1, Authorized: 100, Captured: 100}},
		{"declined", "insufficient_funds", true, txswitch.OutcomeDeclined, Totals{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBook(10, "sim")
			req := authReq("a", "p1", 100)
			req.Capture = tc.capture
			req.NotifyURL = "http://example.invalid/n"
			res, _, err := b.process(req, t0, tc.decline, true, "http://psp/redirect/")
			if err != nil || res.Outcome != txswitch.OutcomePending || res.RedirectURL != "http://psp/redirect/"+res.ProviderRef {
				t.Fatalf("authorize: %+v %v", res, err)
			}
			if got := statusOf(t, b, "a"); got != txswitch.OutcomePending {
				t.Fatalf("status before completion = %s", got)
			}
			fin, url, ok := b.complete("a", t0.Add(time.Second))
			if !ok || fin.Outcome != tc.want || url != req.NotifyURL {
				t.Fatalf("complete: %+v %q %v", fin, url, ok)
			}
			if _, _, ok := b.complete("a", t0); ok {
				t.Fatal("completed twice")
			}
			if got := statusOf(t, b, "a"); got != tc.want {
				t.Fatalf("status after completion = %s, want %s", got, tc.want)
			}
			if replay, _, _ := b.process(req, t0, tc.decline, true, "http://psp/redirect/"); replay.Outcome != tc.want {
				t.Fatalf("replay after completion = %s, want %s", replay.Outcome, tc.want)
			}
			if e := b.ledger("p1"); len(e) != 1 || e[0].Status != tc.want || e[0].Captured != (tc.totals.Captured > 0) {
				t.Fatalf("ledger = %+v", e)
			}
			if got := b.totals("p1"); got != tc.totals {
				t.Fatalf("totals = %+v, want %+v", got, tc.totals)
			}
		})
	}
}

// An abandoned redirect is cancelled before the bank completes it: the
// bank can no longer complete it, no money moves, and status inquiries
// answer declined. Once completed, a cancellation is a void (manual
// capture) or refused (captured).
func TestBookCancelPendingAuthorization(t *testing.T) {
	for _, tc := range []struct {
		name         string
		capture      bool
		completeAt   int // 0: never; 1: before the cancellation
		cancelWant   txswitch.ProviderOutcome
		cancelCode   string
		statusWant   txswitch.ProviderOutcome
		totals       Totals
		completeLate bool // a completion after the cancellation must be refused
		pendingOnly  bool // the switch's expiry cancellation
	}{
		{name: "abandoned", cancelWant: txswitch.OutcomeApproved, statusWant: txswitch.OutcomeDeclined, totals: Totals{}, completeLate: true},
		{name: "abandoned with capture", capture: true, cancelWant: txswitch.OutcomeApproved, statusWant: txswitch.OutcomeDeclined, totals: Totals{}, completeLate: true},
		{name: "completed first, manual capture: a void", completeAt: 1, cancelWant: txswitch.OutcomeApproved, statusWant: txswitch.OutcomeApproved, totals: Totals{Charges: 1}},
		{name: "completed first, captured: refused", capture: true, completeAt: 1, cancelWant: txswitch.OutcomeDeclined, cancelCode: DeclineAlreadyCaptured,
			statusWant: txswitch.OutcomeApproved, totals: Totals{Charges: 1, Authorized: 100, Captured: 100}},
		{name: "abandoned, pending only", pendingOnly: true, cancelWant: txswitch.OutcomeApproved, statusWant: txswitch.OutcomeDeclined, totals: Totals{}, completeLate: true},
		// The race the expiry's pending-only cancellation closes: the
		// shopper completed after the switch's status inquiry; the
		// authorization must stay held, as the completion's notification
		// tells the switch, not be voided behind its back.
		{name: "completed first, manual capture, pending only: refused, still held", pendingOnly: true, completeAt: 1,
			cancelWant: txswitch.OutcomeDeclined, cancelCode: DeclineNotPending, statusWant: txswitch.OutcomeApproved, totals: Totals{Charges: 1, Authorized: 100}},
		{name: "completed first, captured, pending only: refused", pendingOnly: true, capture: true, completeAt: 1,
			cancelWant: txswitch.OutcomeDeclined, cancelCode: DeclineNotPending, statusWant: txswitch.OutcomeApproved, totals: Totals{Charges: 1, Authorized: 100, Captured: 100}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBook(10, "sim")
			req := authReq("a", "p1", 100)
			req.Capture = tc.capture
			res, _, err := b.process(req, t0, "", true, "http://psp/redirect/")
			if err != nil || res.Outcome != txswitch.OutcomePending {
				t.Fatalf("authorize: %+v %v", res, err)
			}
			if tc.completeAt == 1 {
				if _, _, ok := b.complete("a", t0); !ok {
					t.Fatal("complete refused")
				}
			}
			cancel := opReq(txswitch.OpCancel, "a:expire", "p1", res.ProviderRef, eur(100))
			cancel.PendingOnly = tc.pendingOnly
			cres, _, err := b.process(cancel, t0.Add(time.Minute), "", false, "")
			if err != nil || cres.Outcome != tc.cancelWant || cres.Code != tc.cancelCode {
				t.Fatalf("cancel = %+v %v, want %s %q", cres, err, tc.cancelWant, tc.cancelCode)
			}
			if _, _, ok := b.complete("a", t0.Add(2*time.Minute)); ok && tc.completeLate {
				t.Fatal("the bank completed an authorization after its cancellation")
			}
			if got := statusOf(t, b, "a"); got != tc.statusWant {
				t.Fatalf("status after cancel = %s, want %s", got, tc.statusWant)
			}
			if got := b.totals("p1"); got != tc.totals {
				t.Fatalf("totals = %+v, want %+v", got, tc.totals)
			}
			if tc.pendingOnly && tc.completeAt == 1 && !tc.capture {
				// Still capturable: the refusal left the authorization alone.
				c, _, err := b.process(opReq(txswitch.OpCapture, "a:cap", "p1", res.ProviderRef, eur(100)), t0.Add(3*time.Minute), "", false, "")
				if err != nil || c.Outcome != txswitch.OutcomeApproved {
					t.Fatalf("capture after a refused pending-only cancel = %+v %v", c, err)
				}
			}
		})
	}
}

func statusOf(t *testing.T, b *book, key string) txswitch.ProviderOutcome {
	t.Helper()
	res, err := b.status(key)
	if err != nil {
		t.Fatalf("status(%s): %v", key, err)
	}
	return res.Outcome
}

// A status inquiry that answers "not found" fences the key: a request under
// it that arrives afterwards (delayed in a frozen switch or the network) is
// refused and moves no money. A known key is not fenced, and the fence set
// is bounded: when it is full the PSP cannot promise and says so.
func TestBookStatusFencesUnknownKeys(t *testing.T) {
	b := newBook(3, "sim")
	if got := statusOf(t, b, "late"); got != txswitch.OutcomeNotFound {
		t.Fatalf("status of an unknown key = %s", got)
	}
	if _, _, err := b.process(authReq("late", "p1", 100), t0, "", false, ""); !errors.Is(err, errKeyFenced) {
		t.Fatalf("authorize under a fenced key: %v", err)
	}
	if got := b.totals("p1"); got != (Totals{}) || len(b.ledger("")) != 0 {
		t.Fatalf("a fenced request moved money: %+v, ledger %+v", got, b.ledger(""))
	}
	// Asking again changes nothing and still answers not found.
	if got := statusOf(t, b, "late"); got != txswitch.OutcomeNotFound {
		t.Fatalf("second status = %s", got)
	}
	// A processed key is answered, not fenced; replays still work.
	if _, _, err := b.process(authReq("ok", "p2", 100), t0, "", false, ""); err != nil {
		t.Fatal(err)
	}
	if got := statusOf(t, b, "ok"); got != txswitch.OutcomeApproved {
		t.Fatalf("status of a processed key = %s", got)
	}
	if res, replayed, err := b.process(authReq("ok", "p2", 100), t0, "", false, ""); err != nil || !replayed || res.Outcome != txswitch.OutcomeApproved {
		t.Fatalf("replay after status: %+v %v %v", res, replayed, err)
	}
	// Capacity 3: two more fences fit, the next inquiry cannot promise.
	for _, k := range []string{"f2", "f3"} {
		statusOf(t, b, k)
	}
	if _, err := b.status("f4"); !errors.Is(err, errLedgerFull) {
		t.Fatalf("status with a full fence set: %v", err)
	}
}
