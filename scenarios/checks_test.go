package scenarios

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/txswitch/txswitch/chaos"
	"github.com/txswitch/txswitch/providers/sim"
	txswitch "github.com/txswitch/txswitch/switch"
)

// Fabricated evidence: each checker must fail on the breakage it exists
// for, and pass on the healthy variant of the same evidence.

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

func eur(v int64) txswitch.Money { return txswitch.Money{Value: v, Currency: "EUR"} }

func js(t *testing.T, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func payment(id, order, status, provider string, amount, captured, refunded int64) txswitch.Payment {
	return txswitch.Payment{ID: id, OrderID: order, Status: status, Provider: provider, Method: "card",
		Amount: eur(amount), Authorized: eur(amount), Captured: eur(captured), Refunded: eur(refunded)}
}

func order(id string, pays ...txswitch.Payment) *txswitch.Order {
	o := &txswitch.Order{ID: id, Status: txswitch.OrderPaid, Amount: eur(1000), Payments: pays}
	for _, p := range pays {
		o.Authorized.Value += p.Authorized.Value
		o.Captured.Value += p.Captured.Value
		o.Refunded.Value += p.Refunded.Value
	}
	o.Authorized.Currency, o.Captured.Currency, o.Refunded.Currency = "EUR", "EUR", "EUR"
	return o
}

func charge(seq uint64, pay string, amount int64, captured bool) sim.LedgerEntry {
	return sim.LedgerEntry{Seq: seq, IdempotencyKey: pay + "-1", PaymentID: pay, Op: txswitch.OpAuthorize, Method: "card",
		Amount: eur(amount), Status: txswitch.OutcomeApproved, ProviderRef: "ref", Captured: captured, At: at(0)}
}

// healthy is one order paid by one captured payment, acknowledged, with
// a matching ledger and two nodes agreeing.
func healthy(t *testing.T) *Evidence {
	p := payment("pay_1", "ord_1", txswitch.PaymentCaptured, "psp_a", 1000, 1000, 0)
	o := order("ord_1", p)
	return &Evidence{
		Calls: []Call{
			{Seq: 0, FlowID: 1, Op: "create_order", Method: "POST", Path: "/v1/orders", Key: "k1", Status: 201, Body: js(t, o), Start: at(0), End: at(10)},
			{Seq: 1, FlowID: 1, Op: "create_payment", Method: "POST", Path: "/v1/orders/ord_1/payments", Key: "k2", Target: "ord_1", Status: 201, Body: js(t, p), Start: at(20), End: at(30)},
			// The flow reads its payment back after its last write.
			{Seq: 99, FlowID: 1, Op: "get_payment", Method: "GET", Path: "/v1/payments/pay_1", Node: "n1", Target: "pay_1", Status: 200, Body: js(t, p), Start: at(32), End: at(35)},
		},
		Runs:    []FlowRun{{ID: 1, Flow: "card_pay", Start: at(0), Pays: true, Outcome: "succeeded", OrderID: "ord_1"}},
		Ledgers: map[string][]sim.LedgerEntry{"psp_a": {charge(1, "pay_1", 1000, true)}, "psp_b": nil},
		Final:   map[string]map[string]*txswitch.Order{"n1": {"ord_1": o}, "n2": {"ord_1": order("ord_1", p)}},
		FinalTimelines: map[string]map[string][]txswitch.TimelineEvent{
			"n1": {"ord_1": timeline("order_created", "payment_captured")}, "n2": {"ord_1": timeline("order_created", "payment_captured")}},
	}
}

func timeline(types ...string) []txswitch.TimelineEvent {
	out := make([]txswitch.TimelineEvent, len(types))
	for i, typ := range types {
		out[i] = txswitch.TimelineEvent{Seq: uint64(i + 1), At: at(i), Type: typ}
	}
	return out
}

func TestCheckersPassOnHealthyEvidence(t *testing.T) {
	ev := healthy(t)
	for _, name := range AlwaysOn {
		if r := alwaysOn[name](ev); !r.Passed {
			t.Errorf("%s failed on healthy evidence: %v", name, r.Violations)
		}
	}
}

func TestCheckersFailOnBrokenEvidence(t *testing.T) {
	cases := []struct {
		name   string
		check  string
		breakf func(t *testing.T, ev *Evidence)
		want   string // a fragment of the violation
	}{
		{"two charges across providers", CheckNeverChargedTwice, func(t *testing.T, ev *Evidence) {
			ev.Ledgers["psp_b"] = append(ev.Ledgers["psp_b"], charge(7, "pay_1", 1000, true))
		}, "pay_1 charged 2 times"},
		{"acknowledged order missing on one node", CheckNoLostWrites, func(t *testing.T, ev *Evidence) {
			ev.Final["n2"]["ord_1"] = nil
		}, "ord_1 acknowledged"},
		{"acknowledged payment missing", CheckNoLostWrites, func(t *testing.T, ev *Evidence) {
			ev.Final["n1"]["ord_1"] = order("ord_1")
		}, "pay_1 acknowledged captured (call #1 create_payment) is missing"},
		{"payment went backwards", CheckNoLostWrites, func(t *testing.T, ev *Evidence) {
			ev.Final["n1"]["ord_1"].Payments[0].Status = txswitch.PaymentAuthorized
		}, "went backwards"},
		{"acknowledged refund missing", CheckNoLostWrites, func(t *testing.T, ev *Evidence) {
			r := txswitch.Refund{ID: "ref_1", PaymentID: "pay_1", OrderID: "ord_1", Amount: eur(100), Status: "succeeded"}
			ev.Calls = append(ev.Calls, Call{Seq: 2, Op: "refund", Method: "POST", Key: "k3", Target: "pay_1", Status: 201, Body: js(t, r), Start: at(40), End: at(50)})
		}, "refund ref_1 of pay_1"},
		{"refund acknowledged with the payment as its body", CheckNoLostWrites, func(t *testing.T, ev *Evidence) {
			p := payment("pay_1", "ord_1", txswitch.PaymentPartiallyRefunded, "psp_a", 1000, 1000, 100)
			ev.Calls = append(ev.Calls, Call{Seq: 2, Op: "refund", Method: "POST", Key: "k3", Target: "pay_1", Status: 200, Body: js(t, p), Start: at(40), End: at(50)})
		}, "acknowledged 200 with a body that is not a refund"},
		{"captured more than authorized", CheckMoneyAddsUp, func(t *testing.T, ev *Evidence) {
			for _, n := range []string{"n1", "n2"} {
				ev.Final[n]["ord_1"].Payments[0].Authorized = eur(500)
			}
		}, "captured 1000 > authorized 500"},
		{"refunded more than captured", CheckMoneyAddsUp, func(t *testing.T, ev *Evidence) {
			ev.Final["n1"]["ord_1"].Payments[0].Refunded = eur(2000)
			ev.Final["n1"]["ord_1"].Refunded = eur(2000)
		}, "refunded 2000 > captured 1000"},
		{"ledger refunded differs from the switch", CheckMoneyAddsUp, func(t *testing.T, ev *Evidence) {
			ev.Ledgers["psp_a"] = append(ev.Ledgers["psp_a"], sim.LedgerEntry{Seq: 2, PaymentID: "pay_1", Op: txswitch.OpRefund, Amount: eur(1), Status: txswitch.OutcomeApproved})
		}, "PSP ledgers captured 1000 refunded 1"},
		{"charge for a payment the switch does not know", CheckMoneyAddsUp, func(t *testing.T, ev *Evidence) {
			ev.Ledgers["psp_b"] = append(ev.Ledgers["psp_b"], charge(3, "pay_ghost", 700, true))
		}, "pay_ghost, which the switch does not have"},
		{"declined payment with an approved charge", CheckMoneyAddsUp, func(t *testing.T, ev *Evidence) {
			for _, n := range []string{"n1", "n2"} {
				p := &ev.Final[n]["ord_1"].Payments[0]
				p.Status, p.Captured, p.Authorized = txswitch.PaymentDeclined, eur(0), eur(0)
				ev.Final[n]["ord_1"].Captured = eur(0)
			}
			ev.Ledgers["psp_a"][0].Captured = false
		}, "is declined but a PSP holds an approved charge"},
		{"voided at the PSP, authorized at the switch", CheckMoneyAddsUp, func(t *testing.T, ev *Evidence) {
			ev.Ledgers["psp_a"] = append(ev.Ledgers["psp_a"], sim.LedgerEntry{Seq: 2, PaymentID: "pay_1", Op: txswitch.OpCancel, Status: txswitch.OutcomeApproved})
		}, "a PSP voided its authorization"},
		{"cancelled at the switch, never voided at the PSP", CheckMoneyAddsUp, func(t *testing.T, ev *Evidence) {
			for _, n := range []string{"n1", "n2"} {
				o := ev.Final[n]["ord_1"]
				p := &o.Payments[0]
				p.Status, p.Captured, p.Authorized = txswitch.PaymentCancelled, eur(0), eur(0)
				o.Captured = eur(0)
			}
			ev.Ledgers["psp_a"][0].Captured = false
		}, "never voided"},
		{"order paid twice under two payments", CheckMoneyAddsUp, func(t *testing.T, ev *Evidence) {
			for _, n := range []string{"n1", "n2"} {
				o := ev.Final[n]["ord_1"]
				o.Payments = append(o.Payments, payment("pay_2", "ord_1", txswitch.PaymentCaptured, "psp_b", 1000, 1000, 0))
				o.Captured, o.Authorized = eur(2000), eur(2000)
			}
			ev.Ledgers["psp_b"] = append(ev.Ledgers["psp_b"], charge(9, "pay_2", 1000, true))
		}, "order ord_1: captured 2000 at the switch, 2000 at the PSPs, over its amount 1000"},
		{"order totals do not sum", CheckMoneyAddsUp, func(t *testing.T, ev *Evidence) {
			ev.Final["n1"]["ord_1"].Captured = eur(999)
		}, "its payments sum to 1000"},
		{"same key, same body, different answer", CheckIdempotency, func(t *testing.T, ev *Evidence) {
			c := ev.Calls[1]
			c.Seq, c.Start, c.End = 2, at(40), at(50)
			c.Body = js(t, payment("pay_2", "ord_1", txswitch.PaymentCaptured, "psp_a", 1000, 1000, 0))
			ev.Calls = append(ev.Calls, c)
		}, "the first answer (call #1)"},
		// Pending answers are not final and are not compared answer to
		// answer; two copies that each created a payment still executed
		// twice (regression: the check skipped keys without a final answer).
		{"stale read after an acknowledged status", CheckReadsSeeWrites, func(t *testing.T, ev *Evidence) {
			stale := payment("pay_1", "ord_1", txswitch.PaymentPending, "psp_a", 1000, 0, 0)
			ev.Calls = append(ev.Calls, Call{Seq: 2, Op: "get_payment", Method: "GET", Node: "n2", Target: "pay_1", Status: 200, Body: js(t, stale), Start: at(40), End: at(45)})
		}, "shows payment pay_1 pending after captured was acknowledged"},
		{"same key executed twice, both pending", CheckIdempotency, func(t *testing.T, ev *Evidence) {
			c := ev.Calls[1]
			c.Body = js(t, payment("pay_1", "ord_1", txswitch.PaymentPending, "psp_b", 1000, 0, 0))
			ev.Calls[1] = c
			c.Seq, c.Start, c.End = 2, at(40), at(50)
			c.Body = js(t, payment("pay_2", "ord_1", txswitch.PaymentPending, "psp_b", 1000, 0, 0))
			ev.Calls = append(ev.Calls, c)
		}, "executed twice: call #1 created pay_1, call #2 created pay_2"},
		{"same key, different body, executed", CheckIdempotency, func(t *testing.T, ev *Evidence) {
			c := ev.Calls[1]
			c.Seq, c.Start, c.End = 2, at(40), at(50)
			c.Req = json.RawMessage(`{"method":"sepa_debit"}`)
			ev.Calls = append(ev.Calls, c)
		}, "want 422 idempotency_key_reused"},
		{"bad input acknowledged", CheckBadInput, func(t *testing.T, ev *Evidence) {
			ev.Calls = append(ev.Calls, Call{Seq: 2, Op: "create_order", Method: "POST", Bad: true, Status: 201, Body: json.RawMessage(`{"id":"ord_x"}`)})
		}, "want a 4xx"},
		{"bad input got a 500", CheckBadInput, func(t *testing.T, ev *Evidence) {
			ev.Calls = append(ev.Calls, Call{Seq: 2, Op: "create_order", Method: "POST", Bad: true, Status: 500, Body: json.RawMessage(`{}`)})
		}, "want a 4xx"},
		{"bad input without an error code", CheckBadInput, func(t *testing.T, ev *Evidence) {
			ev.Calls = append(ev.Calls, Call{Seq: 2, Op: "create_order", Method: "POST", Bad: true, Status: 400, Body: json.RawMessage(`{"error":{"message":"no"}}`)})
		}, "without an error code"},
		{"bad input changed state", CheckBadInput, func(t *testing.T, ev *Evidence) {
			ev.Calls = append(ev.Calls, Call{Seq: 2, Op: "capture", Method: "POST", Bad: true, Target: "pay_1", Status: 400, Body: json.RawMessage(`{"error":{"code":"x","message":"no"}}`)})
			ev.Claims = append(ev.Claims, Claim{Call: 2, Kind: "payment_captured", ID: "pay_1", Value: 0})
		}, "changed payment_captured of pay_1: 1000, want 0"},
		{"fault never injected", CheckFaultFired, func(t *testing.T, ev *Evidence) {
			ev.Faults = []FaultRun{{Spec: Fault{Kind: "node_stop", Target: "leader"}}}
		}, "never injected"},
		{"fault injected but touched nothing", CheckFaultFired, func(t *testing.T, ev *Evidence) {
			ev.Faults = []FaultRun{{Spec: Fault{Kind: "provider_unavailable", Target: "psp_a"}, Events: []chaos.Event{
				{Action: "inject", At: at(0)}, {Action: "undo", At: at(100)}, {Action: "effect", Hit: false, Detail: "0 requests refused"}}}}
		}, "no effect: 0 requests refused"},
		{"replicas disagree", CheckReplicasAgree, func(t *testing.T, ev *Evidence) {
			ev.Final["n2"]["ord_1"].Status = txswitch.OrderAuthorized
		}, "ord_1 differs"},
		{"a node applied an entry twice: its timeline has one event more", CheckReplicasAgree, func(t *testing.T, ev *Evidence) {
			ev.FinalTimelines["n2"]["ord_1"] = timeline("order_created", "payment_captured", "late_result_ignored")
		}, "timeline of order ord_1 differs at event 3 of 2/3"},
		{"in doubt after settling", CheckSettled, func(t *testing.T, ev *Evidence) {
			ev.Final["n1"]["ord_1"].Payments[0].Status = txswitch.PaymentInDoubt
		}, "still in_doubt"},
		{"cancellation in doubt after settling", CheckSettled, func(t *testing.T, ev *Evidence) {
			p := &ev.Final["n1"]["ord_1"].Payments[0]
			p.Status, p.Captured, p.Cancellation = txswitch.PaymentAuthorized, eur(0), &txswitch.Cancellation{Attempt: 1, Status: "in_doubt"}
		}, "pending capture, refund or cancellation"},
		{"nothing acknowledged", CheckTrafficRan, func(t *testing.T, ev *Evidence) {
			for i := range ev.Calls {
				ev.Calls[i].Status = 503
			}
		}, "no write was acknowledged"},
		// A run that acknowledged payments but judged no read of them
		// passed linearizable with nothing to decide (regression: flows
		// such as card_pay never read back).
		{"payments acknowledged, no read judged", CheckLinearizable, func(t *testing.T, ev *Evidence) {
			ev.Calls = ev.Calls[:2]
		}, "no read of any payment was judged"},
		// An open-loop run whose arrivals found every slot busy judged
		// only the traffic the switch let through (regression: dropped
		// arrivals were only counted in the note).
		{"arrivals dropped", CheckTrafficRan, func(t *testing.T, ev *Evidence) {
			for i := 2; i <= 19; i++ {
				ev.Runs = append(ev.Runs, FlowRun{ID: i, Flow: "card_pay"})
				ev.Calls = append(ev.Calls, Call{Seq: 100 + i, FlowID: i, Op: "create_order", Method: "POST", Key: fmt.Sprint("o", i), Status: 201, Start: at(40), End: at(50)})
			}
			ev.Dropped = 2 // 2 of 21 scheduled: 9.5 %
		}, "2 of 21 scheduled arrivals (9.5%) were dropped"},
		// One acknowledged write among many flows passed traffic_ran
		// (regression: it only asked for one).
		{"most flows got no write acknowledged", CheckTrafficRan, func(t *testing.T, ev *Evidence) {
			for i := 2; i <= 10; i++ {
				ev.Runs = append(ev.Runs, FlowRun{ID: i, Flow: "card_pay", Pays: true, Outcome: "failed"})
				ev.Calls = append(ev.Calls, Call{Seq: 100 + i, FlowID: i, Op: "create_order", Method: "POST", Key: fmt.Sprint("o", i), Status: 503, Start: at(40), End: at(50)})
			}
		}, "only 1 of 10 flows started (10.0%) got a write acknowledged, want at least 80%"},
		{"stale read after an acknowledged create", CheckReadsSeeWrites, func(t *testing.T, ev *Evidence) {
			ev.Calls = append(ev.Calls, Call{Seq: 2, Op: "get_order", Method: "GET", Target: "ord_1", Status: 404, Start: at(11), End: at(12)})
		}, "answered 404 after its creation"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ev := healthy(t)
			tc.breakf(t, ev)
			r := alwaysOn[tc.check](ev)
			if r.Passed {
				t.Fatalf("%s passed on broken evidence", tc.check)
			}
			if !strings.Contains(strings.Join(r.Violations, "\n"), tc.want) {
				t.Fatalf("%s violations %q lack %q", tc.check, r.Violations, tc.want)
			}
		})
	}
}

func TestIdempotencyInDoubtAnswers(t *testing.T) {
	ev := healthy(t)
	first := ev.Calls[1]
	first.Body, first.End = js(t, payment("pay_1", "ord_1", txswitch.PaymentInDoubt, "psp_a", 1000, 0, 0)), at(25)
	retry := ev.Calls[1]
	retry.Seq, retry.Start, retry.End = 2, at(40), at(50)
	ev.Calls = []Call{ev.Calls[0], first, retry}
	if r := checkIdempotency(ev); !r.Passed {
		t.Fatalf("an in-doubt answer followed by the final one is allowed: %v", r.Violations)
	}
	// Not so a cancel answered "cancellation in doubt", then cancelled:
	// from cluster version 12 an operation's in-doubt answer is its answer.
	cancelFirst := cancelCall(t, "in_doubt", 60, 70)
	cancelRetry := cancelCall(t, "succeeded", 80, 90)
	ev.Calls = append(ev.Calls, cancelFirst, cancelRetry)
	if r := checkIdempotency(ev); r.Passed {
		t.Fatal("a cancellation answered in doubt, then succeeded under the same key, passed")
	}
	ev.Calls = ev.Calls[:3]
	// A reused key answered 422 is the correct refusal.
	reuse := retry
	reuse.Seq, reuse.Start, reuse.End, reuse.Req = 3, at(60), at(70), json.RawMessage(`{"method":"x"}`)
	reuse.Status, reuse.Body = 422, json.RawMessage(`{"error":{"code":"idempotency_key_reused","message":"m"}}`)
	ev.Calls = append(ev.Calls, reuse)
	if r := checkIdempotency(ev); !r.Passed {
		t.Fatalf("422 idempotency_key_reused is the right answer: %v", r.Violations)
	}
}

func obs(ms int, leader, term uint64, open ...string) Observation {
	return Observation{At: at(ms), Leader: leader, Term: term, Open: open, Members: 3}
}

// methods fabricates checkouts: one before the fault offering ideal, one
// while both of its breakers were observed open, offering it or not.
func methods(offeredDuring bool) func(ev *Evidence) {
	return func(ev *Evidence) {
		ideal := `{"methods":[{"method":"card"},{"method":"ideal"}]}`
		during := `{"methods":[{"method":"card"}]}`
		if offeredDuring {
			during = ideal
		}
		ev.Observations = []Observation{obs(500, 1, 2), obs(1400, 1, 2, "psp_b/ideal", "psp_c/ideal"), obs(1700, 1, 2, "psp_c/ideal", "psp_b/ideal")}
		ev.Calls = append(ev.Calls,
			Call{Seq: 10, Op: "get_methods", Method: "GET", Status: 200, Body: json.RawMessage(ideal), Start: at(100), End: at(120)},
			Call{Seq: 11, Op: "get_methods", Method: "GET", Status: 200, Body: json.RawMessage(during), Start: at(1500), End: at(1520)})
	}
}

// counted gives the fabricated observations the leader's transition
// counts: every open breaker unchanged, at count c.
func counted(mod func(ev *Evidence), c uint64) func(ev *Evidence) {
	return func(ev *Evidence) {
		mod(ev)
		for i := range ev.Observations {
			o := &ev.Observations[i]
			o.LeaderOpen = map[string]OpenMark{}
			for _, k := range o.Open {
				o.LeaderOpen[k] = OpenMark{Changes: c, Since: at(1000)}
			}
		}
	}
}

func probeWindow(ev *Evidence) {
	counted(methods(true), 1)(ev)
	reopened := OpenMark{Changes: 4, Since: at(1600)}
	ev.Observations[2].LeaderOpen["psp_b/ideal"] = reopened
	ev.Observations = append(ev.Observations, Observation{At: at(2000), Leader: 1, Term: 2, Members: 3,
		Open: []string{"psp_b/ideal", "psp_c/ideal"}, LeaderOpen: map[string]OpenMark{"psp_b/ideal": reopened, "psp_c/ideal": {Changes: 1, Since: at(1000)}}})
	ev.Calls = append(ev.Calls, Call{Seq: 12, Op: "get_methods", Method: "GET", Status: 200,
		Body: json.RawMessage(`{"methods":[{"method":"card"}]}`), Start: at(1800), End: at(1820)})
}

func TestOpenThroughout(t *testing.T) {
	open := []string{"psp_b/ideal", "psp_c/ideal"}
	counts := func(b, c uint64) map[string]OpenMark {
		return map[string]OpenMark{"psp_b/ideal": {Changes: b, Since: at(int(100 * b))}, "psp_c/ideal": {Changes: c, Since: at(int(100 * c))}}
	}
	o := func(leader, term uint64, open []string, lo map[string]OpenMark) Observation {
		return Observation{Leader: leader, Term: term, Open: open, LeaderOpen: lo}
	}
	for _, c := range []struct {
		name string
		a, b Observation
		want bool
	}{
		{"same leader, term and counts", o(1, 2, open, counts(1, 3)), o(1, 2, open, counts(1, 3)), true},
		{"a transition between", o(1, 2, open, counts(1, 3)), o(1, 2, open, counts(3, 3)), false},
		{"one breaker not open at the end", o(1, 2, open, counts(1, 3)), o(1, 2, open[:1], map[string]OpenMark{"psp_b/ideal": {Changes: 1, Since: at(100)}}), false},
		// The configuration replaced psp_b's breaker: its count started
		// again and came back to 1, opening at another moment.
		{"a replaced breaker at the same count", o(1, 2, open, counts(1, 3)),
			o(1, 2, open, map[string]OpenMark{"psp_b/ideal": {Changes: 1, Since: at(900)}, "psp_c/ideal": {Changes: 3, Since: at(300)}}), false},
		{"another leader", o(1, 2, open, counts(1, 3)), o(2, 3, open, counts(1, 3)), false},
		{"another term", o(1, 2, open, counts(1, 3)), o(1, 3, open, counts(1, 3)), false},
		{"no leader", o(0, 2, open, counts(1, 3)), o(0, 2, open, counts(1, 3)), false},
		{"no counts: states at both ends", o(1, 2, open, nil), o(1, 2, open, nil), true},
		{"no counts, one end not open", o(1, 2, open, nil), o(1, 2, open[1:], nil), false},
		{"counts at one end only: states at both ends", o(1, 2, open, counts(1, 3)), o(1, 2, open, nil), true},
	} {
		if got := openThroughout(c.a, c.b, "ideal", []string{"psp_b", "psp_c"}); got != c.want {
			t.Errorf("%s: openThroughout = %v, want %v", c.name, got, c.want)
		}
	}
}

// calls fabricates n create_payment calls on node n1, starting at startMs
// 10 ms apart, each answered after took (the last one after last).
func calls(n, startMs int, took, last time.Duration) func(ev *Evidence) {
	return func(ev *Evidence) {
		for i := range n {
			d := took
			if i == n-1 {
				d = last
			}
			st := at(startMs + 10*i)
			ev.Calls = append(ev.Calls, Call{Seq: 100 + i, Op: "create_payment", Method: "POST", Path: "/v1/orders/o/payments",
				Node: "n1", Status: 201, Start: st, End: st.Add(d)})
		}
	}
}

// secondRun adds a card_pay flow run (id 2, order ord_2) whose one payment
// ended with status and whose creation was answered as answer says (its
// Status, Body and Err; a 2xx answer carries the payment).
func secondRun(status string, answer Call) func(ev *Evidence) {
	return func(ev *Evidence) {
		p := payment("pay_2", "ord_2", status, "psp_a", 1000, 0, 0)
		c := answer
		c.Seq, c.FlowID, c.Op, c.Method, c.Path, c.Target = 10, 2, "create_payment", "POST", "/v1/orders/ord_2/payments", "ord_2"
		c.Start, c.End = at(40), at(50)
		if c.Acked() {
			c.Body, _ = json.Marshal(p)
		}
		ev.Calls = append(ev.Calls, c)
		ev.Runs = append(ev.Runs, FlowRun{ID: 2, Flow: "card_pay", Start: at(40), Pays: true, Outcome: "failed", OrderID: "ord_2"})
		for _, n := range []string{"n1", "n2"} {
			ev.Final[n]["ord_2"] = order("ord_2", p)
		}
	}
}

func TestExpectations(t *testing.T) {
	fault := []FaultRun{{Spec: Fault{Kind: "provider_unavailable", Target: "psp_a"}, Events: []chaos.Event{
		{Action: "inject", At: at(1000)}, {Action: "undo", At: at(3000)}}}}
	inDoubt := func(ev *Evidence) { ev.Calls[1].Body = []byte(`{"id":"pay_1","order_id":"ord_1","status":"in_doubt"}`) }
	zero := 0
	cases := []struct {
		name string
		x    Expect
		mod  func(ev *Evidence)
		pass bool
	}{
		{"breaker opened in time", Expect{BreakerOpen: &ExpectBreaker{Provider: "psp_a", Within: Duration(time.Second)}},
			func(ev *Evidence) { ev.Observations = []Observation{obs(900, 1, 2), obs(1500, 1, 2, "psp_a/card")} }, true},
		{"breaker opened too late", Expect{BreakerOpen: &ExpectBreaker{Provider: "psp_a", Within: Duration(time.Second)}},
			func(ev *Evidence) { ev.Observations = []Observation{obs(900, 1, 2), obs(2500, 1, 2, "psp_a/card")} }, false},
		{"another breaker opened", Expect{BreakerOpen: &ExpectBreaker{Provider: "psp_a", Within: Duration(time.Second)}},
			func(ev *Evidence) { ev.Observations = []Observation{obs(1500, 1, 2, "psp_b/card")} }, false},
		{"new leader", Expect{LeaderChange: &ExpectWithin{Within: Duration(2 * time.Second)}},
			func(ev *Evidence) { ev.Observations = []Observation{obs(900, 1, 2), obs(1200, 0, 2), obs(2000, 3, 3)} }, true},
		{"same leader", Expect{LeaderChange: &ExpectWithin{Within: Duration(2 * time.Second)}},
			func(ev *Evidence) { ev.Observations = []Observation{obs(900, 1, 2), obs(2000, 1, 2)} }, false},
		{"availability met", Expect{Availability: &ExpectAvailability{Min: 0.5, Window: "during_faults"}},
			func(ev *Evidence) {
				ev.Runs = []FlowRun{{Pays: true, Start: at(1500), Outcome: "succeeded"}, {Pays: true, Start: at(1600), Outcome: "declined"},
					{Pays: true, Start: at(100), Outcome: "failed"}}
			}, true},
		{"availability missed", Expect{Availability: &ExpectAvailability{Min: 0.9, Window: "during_faults"}},
			func(ev *Evidence) {
				ev.Runs = []FlowRun{{Pays: true, Start: at(1500), Outcome: "succeeded"}, {Pays: true, Start: at(1600), Outcome: "failed"}}
			}, false},
		{"availability with nothing to judge", Expect{Availability: &ExpectAvailability{Min: 0.9, Window: "during_faults"}},
			func(ev *Evidence) { ev.Runs = []FlowRun{{Pays: true, Start: at(100), Outcome: "succeeded"}} }, false},
		{"in doubt seen and resolved", Expect{SawStatus: &ExpectStatus{Status: "in_doubt", Min: 1, ResolvedTo: []string{"captured"}}}, inDoubt, true},
		{"in doubt never seen", Expect{SawStatus: &ExpectStatus{Status: "in_doubt", Min: 1}}, func(ev *Evidence) {}, false},
		{"in doubt resolved wrongly", Expect{SawStatus: &ExpectStatus{Status: "in_doubt", Min: 1, ResolvedTo: []string{"failed"}}}, inDoubt, false},
		{"timeline has the event", Expect{TimelineEvent: &ExpectTimeline{Type: "failover", Flow: "card_pay", Min: 1}},
			func(ev *Evidence) { ev.Timelines = map[string][]txswitch.TimelineEvent{"ord_1": {{Type: "failover"}}} }, true},
		{"timeline lacks the event", Expect{TimelineEvent: &ExpectTimeline{Type: "failover", Flow: "card_pay", Min: 1}},
			func(ev *Evidence) { ev.Timelines = map[string][]txswitch.TimelineEvent{"ord_1": {{Type: "created"}}} }, false},
		{"affected order lacks the event", Expect{TimelineEvent: &ExpectTimeline{Type: "resolved", Status: "in_doubt", Min: 1}},
			func(ev *Evidence) {
				inDoubt(ev)
				ev.Timelines = map[string][]txswitch.TimelineEvent{"ord_1": {{Type: "in_doubt"}}}
			}, false},
		{"provider used", Expect{ProviderUsed: &ExpectProvider{Provider: "psp_a", Min: 1, Window: "whole"}}, func(ev *Evidence) {}, true},
		{"provider not used", Expect{ProviderUsed: &ExpectProvider{Provider: "psp_b", Min: 1, Window: "whole"}}, func(ev *Evidence) {}, false},
		{"provider used too much", Expect{ProviderUsed: &ExpectProvider{Provider: "psp_a", Max: &zero, Window: "whole"}}, func(ev *Evidence) {}, false},
		{"final status", Expect{FinalStatus: &ExpectFinal{Flow: "card_pay", Statuses: []string{"captured"}}}, func(ev *Evidence) {}, true},
		{"wrong final status", Expect{FinalStatus: &ExpectFinal{Flow: "card_pay", Statuses: []string{"refunded"}}}, func(ev *Evidence) {}, false},
		// A second card_pay run whose payment ended failed: forgiven only
		// when the client never got a definitive answer to its creation.
		{"a creation without an answer that failed is not judged", Expect{FinalStatus: &ExpectFinal{Flow: "card_pay", Statuses: []string{"captured"}}},
			secondRun(txswitch.PaymentFailed, Call{Status: 0, Err: "context deadline exceeded"}), true},
		{"a creation answered 503 that failed is not judged", Expect{FinalStatus: &ExpectFinal{Flow: "card_pay", Statuses: []string{"captured"}}},
			secondRun(txswitch.PaymentFailed, Call{Status: 503, Body: json.RawMessage(`{"error":{"code":"leader_unavailable","message":"m"}}`)}), true},
		{"a creation answered 201 that failed is judged", Expect{FinalStatus: &ExpectFinal{Flow: "card_pay", Statuses: []string{"captured"}}},
			secondRun(txswitch.PaymentFailed, Call{Status: 201}), false},
		{"a creation refused definitively is judged", Expect{FinalStatus: &ExpectFinal{Flow: "card_pay", Statuses: []string{"captured"}}},
			secondRun(txswitch.PaymentFailed, Call{Status: 422, Body: json.RawMessage(`{"error":{"code":"invalid_request","message":"m"}}`)}), false},
		{"a creation without an answer that failed with a charge at the PSP is judged", Expect{FinalStatus: &ExpectFinal{Flow: "card_pay", Statuses: []string{"captured"}}},
			func(ev *Evidence) {
				secondRun(txswitch.PaymentFailed, Call{Status: 0, Err: "context deadline exceeded"})(ev)
				ev.Ledgers["psp_a"] = append(ev.Ledgers["psp_a"], charge(2, "pay_2", 1000, false))
			}, false},
		{"a creation without an answer is judged unless it failed", Expect{FinalStatus: &ExpectFinal{Flow: "card_pay", Statuses: []string{"captured"}}},
			secondRun(txswitch.PaymentAuthorized, Call{Status: 0, Err: "context deadline exceeded"}), false},
		{"enough acknowledged", Expect{MinAcked: &ExpectCount{Min: 1}}, func(ev *Evidence) {}, true},
		{"too few acknowledged", Expect{MinAcked: &ExpectCount{Min: 2}}, func(ev *Evidence) {}, false},
		{"members", Expect{MemberCount: &ExpectMembers{Count: 3}}, func(ev *Evidence) { ev.Members = 3 }, true},
		{"too many members", Expect{MemberCount: &ExpectMembers{Count: 3}}, func(ev *Evidence) { ev.Members = 4 }, false},
		{"method hidden while its breakers are open", Expect{MethodHidden: &ExpectHidden{Method: "ideal", Providers: []string{"psp_b", "psp_c"}}},
			methods(false), true},
		{"method offered while its breakers are open", Expect{MethodHidden: &ExpectHidden{Method: "ideal", Providers: []string{"psp_b", "psp_c"}}},
			methods(true), false},
		{"method offered while the leader's breakers stayed open", Expect{MethodHidden: &ExpectHidden{Method: "ideal", Providers: []string{"psp_b", "psp_c"}}},
			counted(methods(true), 3), false},
		// psp_b's breaker changed three times (half-open, probe, open again)
		// around the checkout that offered ideal: a probe window, not judged;
		// the checkout after it, under steady breakers, hid ideal.
		{"method offered in a probe window between two samples", Expect{MethodHidden: &ExpectHidden{Method: "ideal", Providers: []string{"psp_b", "psp_c"}}},
			probeWindow, true},
		{"latency within bounds", Expect{Latency: &ExpectLatency{Op: "create_payment", P99: Duration(100 * time.Millisecond), Window: "whole"}},
			calls(200, 0, 20*time.Millisecond, 90*time.Millisecond), true},
		// 200 calls: the slowest two are left out of the p99, so two slow
		// calls stay under it and three do not.
		{"two slow calls in 200 are under the p99", Expect{Latency: &ExpectLatency{Op: "create_payment", P99: Duration(100 * time.Millisecond), Window: "whole"}},
			func(ev *Evidence) {
				calls(198, 0, 20*time.Millisecond, 20*time.Millisecond)(ev)
				calls(2, 5000, time.Second, time.Second)(ev)
			}, true},
		{"three slow calls in 200 are the p99", Expect{Latency: &ExpectLatency{Op: "create_payment", P99: Duration(100 * time.Millisecond), Window: "whole"}},
			func(ev *Evidence) {
				calls(197, 0, 20*time.Millisecond, 20*time.Millisecond)(ev)
				calls(3, 5000, time.Second, time.Second)(ev)
			}, false},
		{"one call over max", Expect{Latency: &ExpectLatency{Op: "create_payment", P99: Duration(100 * time.Millisecond), Max: Duration(500 * time.Millisecond), Window: "whole"}},
			calls(200, 0, 20*time.Millisecond, time.Second), false},
		{"slow calls of another op do not count", Expect{Latency: &ExpectLatency{Op: "create_order", P99: Duration(100 * time.Millisecond), Window: "whole"}},
			func(ev *Evidence) {
				calls(200, 0, time.Second, time.Second)(ev)
				for i := range 30 {
					ev.Calls = append(ev.Calls, Call{Seq: 400 + i, Op: "create_order", Method: "POST", Node: "n1", Status: 201, Start: at(i), End: at(i + 5)})
				}
			}, true},
		{"slow calls outside the fault window do not count", Expect{Latency: &ExpectLatency{P99: Duration(100 * time.Millisecond), Window: "during_faults"}},
			func(ev *Evidence) {
				calls(30, 0, time.Second, time.Second)(ev)
				calls(30, 1500, 10*time.Millisecond, 10*time.Millisecond)(ev)
			}, true},
		{"a call with no answer counts with its wait", Expect{Latency: &ExpectLatency{P99: Duration(100 * time.Millisecond), Window: "during_faults"}},
			func(ev *Evidence) {
				calls(30, 1500, 10*time.Millisecond, 10*time.Millisecond)(ev)
				for i := range 3 {
					ev.Calls = append(ev.Calls, Call{Seq: 500 + i, Op: "create_payment", Method: "POST", Node: "n2", Err: "context deadline exceeded",
						Start: at(1600 + i), End: at(6600 + i)})
				}
			}, false},
		{"too few calls to judge", Expect{Latency: &ExpectLatency{P99: Duration(100 * time.Millisecond), Window: "during_faults"}},
			calls(19, 1500, 10*time.Millisecond, 10*time.Millisecond), false},
		{"min_calls lowered", Expect{Latency: &ExpectLatency{P99: Duration(100 * time.Millisecond), Window: "during_faults", MinCalls: 5}},
			calls(19, 1500, 10*time.Millisecond, 10*time.Millisecond), true},
		// Of fewer than 100 calls the slowest is left out of the p99,
		// the second slowest is not.
		{"one stall in 60 calls", Expect{Latency: &ExpectLatency{P99: Duration(100 * time.Millisecond), Window: "during_faults"}},
			calls(60, 1500, 10*time.Millisecond, time.Second), true},
		{"two stalls in 60 calls", Expect{Latency: &ExpectLatency{P99: Duration(100 * time.Millisecond), Window: "during_faults"}},
			func(ev *Evidence) {
				calls(58, 1500, 10*time.Millisecond, 10*time.Millisecond)(ev)
				calls(2, 2500, time.Second, time.Second)(ev)
			}, false},
		{"rejected with a code", Expect{Rejected: &ExpectRejected{Status: 503, Min: 1}}, func(ev *Evidence) {
			ev.Calls = append(ev.Calls, Call{Seq: 9, Method: "POST", Status: 503, Body: json.RawMessage(`{"error":{"code":"not_leader","message":"m"}}`)})
		}, true},
		{"rejected without a code", Expect{Rejected: &ExpectRejected{Status: 503, Min: 1}}, func(ev *Evidence) {
			ev.Calls = append(ev.Calls, Call{Seq: 9, Method: "POST", Status: 503, Body: json.RawMessage(`"oops"`)})
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ev := healthy(t)
			ev.Faults = fault
			tc.mod(ev)
			r := tc.x.check(ev)
			if r.Passed != tc.pass {
				t.Fatalf("%s: passed=%v, want %v (%s %v)", tc.x.name(), r.Passed, tc.pass, r.Note, r.Violations)
			}
		})
	}
}

func TestVerdictWithExpectFail(t *testing.T) {
	pass := CheckResult{Name: "a", Passed: true}
	fail := CheckResult{Name: "b", Passed: false}
	cases := []struct {
		expectFail []string
		checks     []CheckResult
		want       bool
	}{
		{nil, []CheckResult{pass}, true},
		{nil, []CheckResult{pass, fail}, false},
		{[]string{"b"}, []CheckResult{pass, fail}, true},
		{[]string{"b"}, []CheckResult{pass, {Name: "b", Passed: true}}, false},  // the mutant was not caught
		{[]string{"b"}, []CheckResult{fail, {Name: "a", Passed: false}}, false}, // something else broke too
		{[]string{"c"}, []CheckResult{pass}, false},                             // the named check never ran
	}
	for i, tc := range cases {
		if got := verdict(&Scenario{ExpectFail: tc.expectFail}, tc.checks); got != tc.want {
			t.Errorf("case %d: verdict %v, want %v", i, got, tc.want)
		}
	}
}

// cancelled is pay_1 with a cancellation of status st ("" for none):
// cancelled when it succeeded, still authorized otherwise.
func cancelled(st string) txswitch.Payment {
	if st == "succeeded" {
		p := payment("pay_1", "ord_1", txswitch.PaymentCancelled, "psp_a", 900, 0, 0)
		p.Authorized = eur(0)
		p.Cancellation = &txswitch.Cancellation{Attempt: 1, Status: st}
		return p
	}
	p := payment("pay_1", "ord_1", txswitch.PaymentAuthorized, "psp_a", 900, 0, 0)
	if st != "" {
		p.Cancellation = &txswitch.Cancellation{Attempt: 1, Status: st}
	}
	return p
}

func cancelCall(t *testing.T, st string, start, end int) Call {
	return Call{Op: "cancel", Method: "POST", Key: "x", Target: "pay_1", Status: 200, Start: at(start), End: at(end), Body: js(t, cancelled(st))}
}

func readCancel(t *testing.T, st string, start, end int) Call {
	return Call{Op: "get_payment", Method: "GET", Target: "pay_1", Status: 200, Start: at(start), End: at(end), Body: js(t, cancelled(st))}
}

func linCalls(t *testing.T, extra ...Call) []Call {
	t.Helper()
	created := payment("pay_1", "ord_1", txswitch.PaymentAuthorized, "psp_a", 900, 0, 0)
	calls := []Call{{Seq: 0, Op: "create_payment", Method: "POST", Key: "c", Target: "ord_1", Status: 201, Body: js(t, created), Start: at(0), End: at(10)}}
	return append(calls, extra...)
}

func captureCall(t *testing.T, key string, amount int64, status int, captured int64, start, end int) Call {
	c := Call{Op: "capture", Method: "POST", Key: key, Target: "pay_1", Status: status, Start: at(start), End: at(end),
		Req: js(t, txswitch.CaptureRequest{Amount: &txswitch.Money{Value: amount, Currency: "EUR"}})}
	if status/100 == 2 {
		c.Body = js(t, payment("pay_1", "ord_1", txswitch.PaymentCaptured, "psp_a", 900, captured, 0))
	}
	return c
}

// releaseCall is a cancel of pay_1 after 300 of its 900 were captured,
// answered with the payment's authorization at authorized (300 once the
// rest is released).
func releaseCall(t *testing.T, authorized int64, start, end int) Call {
	p := payment("pay_1", "ord_1", txswitch.PaymentCaptured, "psp_a", 900, 300, 0)
	p.Authorized = eur(authorized)
	return Call{Op: "cancel", Method: "POST", Key: "r", Target: "pay_1", Status: 200, Start: at(start), End: at(end), Body: js(t, p)}
}

// readAs is a read of pay_1 answered with the body of c.
func readAs(t *testing.T, c Call) Call {
	return Call{Op: "get_payment", Method: "GET", Target: "pay_1", Status: 200, Start: c.Start, End: c.End, Body: c.Body}
}

func readCall(t *testing.T, captured int64, start, end int) Call {
	return Call{Op: "get_payment", Method: "GET", Target: "pay_1", Status: 200, Start: at(start), End: at(end),
		Body: js(t, payment("pay_1", "ord_1", txswitch.PaymentCaptured, "psp_a", 900, captured, 0))}
}

// createCall is a creation of pay_1 (900, automatic capture) under key
// answered status (0: no answer) with the payment in st.
func createCall(t *testing.T, key string, status int, st string, start, end int) Call {
	c := Call{Op: "create_payment", Method: "POST", Key: key, Target: "ord_1", Status: status, Start: at(start), End: at(end)}
	if status/100 == 2 {
		p := payment("pay_1", "ord_1", st, "psp_a", 900, 0, 0)
		switch st {
		case txswitch.PaymentCaptured:
			p.Captured = eur(900)
		case txswitch.PaymentInDoubt, txswitch.PaymentPending, txswitch.PaymentFailed:
			p.Authorized = eur(0)
		}
		c.Body = js(t, p)
	}
	return c
}

// readFailed reads pay_1 failed: nothing authorized or captured.
func readFailed(t *testing.T, start, end int) Call {
	p := payment("pay_1", "ord_1", txswitch.PaymentFailed, "psp_a", 900, 0, 0)
	p.Authorized = eur(0)
	return Call{Op: "get_payment", Method: "GET", Target: "pay_1", Status: 200, Start: at(start), End: at(end), Body: js(t, p)}
}

func inProgress(t *testing.T, c Call) Call {
	c.Body = json.RawMessage(`{"error":{"code":"idempotency_request_in_progress","message":"a request with this key is in progress"}}`)
	return c
}

func refused(t *testing.T, c Call) Call {
	c.Body = json.RawMessage(`{"error":{"code":"amount_exceeds_authorized","message":"no"}}`)
	return c
}

func TestLinearizable(t *testing.T) {
	cases := []struct {
		name  string
		calls []Call
		ok    bool
	}{
		{"read after an acknowledged capture sees it", linCalls(t, captureCall(t, "k", 300, 201, 300, 20, 30), readCall(t, 300, 40, 50)), true},
		{"stale read after an acknowledged capture", linCalls(t, captureCall(t, "k", 300, 201, 300, 20, 30), readCall(t, 0, 40, 50)), false},
		{"read concurrent with the capture may miss it", linCalls(t, captureCall(t, "k", 300, 201, 300, 20, 30), readCall(t, 0, 25, 35)), true},
		{"unanswered capture may show up later", linCalls(t, captureCall(t, "k", 300, 0, 0, 20, 30), readCall(t, 0, 40, 50), readCall(t, 300, 60, 70)), true},
		{"a capture cannot be undone", linCalls(t, captureCall(t, "k", 300, 0, 0, 20, 30), readCall(t, 300, 40, 50), readCall(t, 0, 60, 70)), false},
		{"retries of one key apply once", linCalls(t, captureCall(t, "k", 300, 503, 0, 20, 30), captureCall(t, "k", 300, 201, 300, 40, 50), readCall(t, 300, 60, 70)), true},
		{"a read showing money never captured", linCalls(t, readCall(t, 500, 40, 50)), false},
		// The cancel of moments/charge_then_timeout/during_cancel: the
		// provider voided but did not answer in time.
		{"cancel answered as if nothing happened", linCalls(t, cancelCall(t, "", 20, 30), readCall(t, 0, 40, 50)), false},
		{"cancel in doubt, then resolved as voided", linCalls(t, cancelCall(t, "in_doubt", 20, 30), readCancel(t, "in_doubt", 40, 50), readCancel(t, "succeeded", 60, 70)), true},
		{"cancel in doubt, then resolved as not voided", linCalls(t, cancelCall(t, "in_doubt", 20, 30), readCancel(t, "failed", 60, 70), readCall(t, 0, 80, 90)), true},
		{"a void cannot be undone", linCalls(t, cancelCall(t, "in_doubt", 20, 30), readCancel(t, "succeeded", 40, 50), readCall(t, 0, 60, 70)), false},
		{"an acknowledged void", linCalls(t, cancelCall(t, "succeeded", 20, 30), readCancel(t, "succeeded", 40, 50)), true},
		// A cancel after a partial capture releases the rest: the payment
		// stays captured and its authorization shrinks to the capture.
		{"a release after a partial capture", linCalls(t, captureCall(t, "k", 300, 201, 300, 20, 30), releaseCall(t, 300, 40, 50), readAs(t, releaseCall(t, 300, 60, 70))), true},
		{"a release read as if undone", linCalls(t, captureCall(t, "k", 300, 201, 300, 20, 30), releaseCall(t, 300, 40, 50), readCall(t, 300, 60, 70)), false},
		{"a release answered as if nothing happened", linCalls(t, captureCall(t, "k", 300, 201, 300, 20, 30), releaseCall(t, 900, 40, 50)), false},
		{"a read that lost the authorization", linCalls(t, readFailed(t, 40, 50)), false},
		{"a release read as a void", linCalls(t, captureCall(t, "k", 300, 201, 300, 20, 30), releaseCall(t, 300, 40, 50), readCancel(t, "succeeded", 60, 70)), false},
		// Ambiguous creations stay in the history (regression: a payment
		// whose creation answered in doubt, pending or not at all was
		// dropped with every read of it).
		{"a creation in doubt resolved once", []Call{createCall(t, "c", 201, txswitch.PaymentInDoubt, 0, 10), readCall(t, 900, 40, 50), readCall(t, 900, 60, 70)}, true},
		{"a creation in doubt may resolve as failed", []Call{createCall(t, "c", 201, txswitch.PaymentInDoubt, 0, 10), readFailed(t, 40, 50), readFailed(t, 60, 70)}, true},
		{"a creation in doubt whose resolution flips", []Call{createCall(t, "c", 201, txswitch.PaymentInDoubt, 0, 10), readCall(t, 900, 40, 50), readFailed(t, 60, 70)}, false},
		{"a pending creation, first unanswered, whose resolution flips", []Call{createCall(t, "c", 0, "", 0, 10), createCall(t, "c", 201, txswitch.PaymentPending, 20, 30), readFailed(t, 40, 50), readCall(t, 900, 60, 70)}, false},
		{"a creation in doubt, then settled by its retry, read otherwise", []Call{createCall(t, "c", 201, txswitch.PaymentInDoubt, 0, 10), createCall(t, "c", 201, txswitch.PaymentCaptured, 20, 30), readFailed(t, 40, 50)}, false},
		// 409 "the same key is in progress": the capture may have
		// happened (regression: it was left out as a refusal, so a read
		// showing it was called stale).
		{"a capture last answered 409 in progress may have happened", linCalls(t, inProgress(t, captureCall(t, "k", 300, 409, 0, 20, 30)), readCall(t, 300, 40, 50)), true},
		{"a capture last answered 409 in progress cannot be undone", linCalls(t, inProgress(t, captureCall(t, "k", 300, 409, 0, 20, 30)), readCall(t, 300, 40, 50), readCall(t, 0, 60, 70)), false},
		{"a capture refused outright changed nothing", linCalls(t, refused(t, captureCall(t, "k", 300, 422, 0, 20, 30)), readCall(t, 300, 40, 50)), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for i := range tc.calls {
				tc.calls[i].Seq = i
			}
			r := checkLinearizable(&Evidence{Calls: tc.calls})
			if r.Passed != tc.ok {
				t.Fatalf("passed=%v, want %v: %s %v", r.Passed, tc.ok, r.Note, r.Violations)
			}
			if !tc.ok && !strings.Contains(strings.Join(r.Violations, "\n"), "not linearizable") {
				t.Fatalf("failed for another reason than the model: %v", r.Violations)
			}
		})
	}
}

func TestDiffering(t *testing.T) {
	p := payment("pay_1", "ord_1", txswitch.PaymentAuthorized, "psp_a", 1000, 0, 0)
	voided := p
	voided.Status = txswitch.PaymentCancelled
	cases := []struct {
		name   string
		n1, n2 *txswitch.Order
		want   []string
	}{
		{"same", order("ord_1", p), order("ord_1", p), nil},
		{"one node saw the resolution", order("ord_1", p), order("ord_1", voided), []string{"ord_1"}},
		{"missing on one node", order("ord_1", p), nil, []string{"ord_1"}},
		{"timelines differ", order("ord_1", p), order("ord_1", p), []string{"ord_1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			final := map[string]map[string]*txswitch.Order{"n1": {"ord_1": tc.n1}, "n2": {"ord_1": tc.n2}}
			tls := map[string]map[string][]txswitch.TimelineEvent{"n1": {"ord_1": timeline("order_created")}, "n2": {"ord_1": timeline("order_created")}}
			if tc.name == "timelines differ" {
				tls["n2"]["ord_1"] = timeline("order_created", "order_created")
			}
			if got := differing(final, tls, []string{"ord_1"}); !slices.Equal(got, tc.want) {
				t.Fatalf("differing = %v, want %v", got, tc.want)
			}
		})
	}
}
