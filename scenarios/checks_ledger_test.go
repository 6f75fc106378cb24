package scenarios

import (
	"strings"
	"testing"

	"github.com/txswitch/txswitch/providers/sim"
	txswitch "github.com/txswitch/txswitch/switch"
)

// declined makes the healthy evidence's payment declined at the switch
// (nothing authorized or captured) and gives psp_a and psp_b the ledgers
// entries.
func declined(ev *Evidence, entries map[string][]sim.LedgerEntry) {
	for _, n := range []string{"n1", "n2"} {
		o := ev.Final[n]["ord_1"]
		p := &o.Payments[0]
		p.Status, p.Authorized, p.Captured = txswitch.PaymentDeclined, eur(0), eur(0)
		o.Status, o.Authorized, o.Captured = txswitch.OrderCreated, eur(0), eur(0)
	}
	ev.Ledgers = map[string][]sim.LedgerEntry{"psp_a": entries["psp_a"], "psp_b": entries["psp_b"]}
}

func authEntry(pay string, status txswitch.ProviderOutcome, code string) sim.LedgerEntry {
	return sim.LedgerEntry{Seq: 1, IdempotencyKey: pay + "-1", PaymentID: pay, Op: txswitch.OpAuthorize, Method: "card",
		Amount: eur(1000), Status: status, Code: code, ProviderRef: "ref_1", At: at(0)}
}

// money_adds_up ties the switch's "declined" to a PSP's decline (which
// availability trusts: declines are left out of its ratio) and a settled
// payment's money to the PSP the switch names. The legitimate ways to a
// declined payment pass; a decline no PSP gave, or at another PSP, fails.
func TestMoneyAddsUpAgainstTheNamedPSP(t *testing.T) {
	cases := []struct {
		name string
		mod  func(ev *Evidence)
		want string // "" passes, else a fragment of the violation
	}{
		{"captured at the PSP the switch names", func(ev *Evidence) {}, ""},
		{"declined by the PSP's decline rule", func(ev *Evidence) {
			declined(ev, map[string][]sim.LedgerEntry{"psp_a": {authEntry("pay_1", txswitch.OutcomeDeclined, "do_not_honor")}})
		}, ""},
		{"pending redirect cancelled before completion, then declined by inquiry", func(ev *Evidence) {
			declined(ev, map[string][]sim.LedgerEntry{"psp_a": {
				authEntry("pay_1", txswitch.OutcomeDeclined, sim.DeclineCancelledPending),
				{Seq: 2, IdempotencyKey: "x-1", PaymentID: "pay_1", Op: txswitch.OpCancel, Amount: eur(1000), Status: txswitch.OutcomeApproved, AuthRef: "ref_1"}}})
		}, ""},
		{"declined, no ledgers in the evidence: not judged", func(ev *Evidence) {
			declined(ev, nil)
			ev.Ledgers = nil
		}, ""},
		{"a provider 503 turned into declined", func(ev *Evidence) {
			declined(ev, nil)
		}, "payment pay_1 is declined at psp_a but psp_a's ledger holds no declined authorization"},
		{"declined at the switch, the PSP's entry is pending", func(ev *Evidence) {
			declined(ev, map[string][]sim.LedgerEntry{"psp_a": {authEntry("pay_1", txswitch.OutcomePending, "")}})
		}, "holds no declined authorization"},
		{"declined at the switch, only a capture was declined", func(ev *Evidence) {
			e := authEntry("pay_1", txswitch.OutcomeDeclined, sim.DeclineUnknownAuthorization)
			e.Op = txswitch.OpCapture
			declined(ev, map[string][]sim.LedgerEntry{"psp_a": {e}})
		}, "holds no declined authorization"},
		{"declined by another PSP than the switch names", func(ev *Evidence) {
			declined(ev, map[string][]sim.LedgerEntry{"psp_b": {authEntry("pay_1", txswitch.OutcomeDeclined, "do_not_honor")}})
		}, "(declined authorizations at: psp_b)"},
		{"captured, but the charge is at another PSP", func(ev *Evidence) {
			ev.Ledgers["psp_a"], ev.Ledgers["psp_b"] = nil, ev.Ledgers["psp_a"]
		}, "payment pay_1 is captured at psp_a but its approved authorization is in the ledger of psp_b"},
		{"refunded, but the charge and refund are at another PSP", func(ev *Evidence) {
			for _, n := range []string{"n1", "n2"} {
				o := ev.Final[n]["ord_1"]
				o.Payments[0].Status, o.Payments[0].Refunded, o.Refunded = txswitch.PaymentRefunded, eur(1000), eur(1000)
			}
			ev.Ledgers["psp_b"] = append(ev.Ledgers["psp_a"], sim.LedgerEntry{Seq: 2, PaymentID: "pay_1", Op: txswitch.OpRefund, Amount: eur(1000), Status: txswitch.OutcomeApproved})
			ev.Ledgers["psp_a"] = nil
		}, "is refunded at psp_a but its approved authorization is in the ledger of psp_b"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ev := healthy(t)
			tc.mod(ev)
			r := checkMoneyAddsUp(ev)
			switch {
			case tc.want == "" && !r.Passed:
				t.Fatalf("failed on legitimate evidence: %v", r.Violations)
			case tc.want != "" && r.Passed:
				t.Fatalf("passed on broken evidence (%s)", r.Note)
			case tc.want != "" && !strings.Contains(strings.Join(r.Violations, "\n"), tc.want):
				t.Fatalf("violations %q lack %q", r.Violations, tc.want)
			}
		})
	}
}

// provider_used counts what the named PSP's ledger holds, not where the
// switch says the payment went.
func TestProviderUsedFromTheLedgers(t *testing.T) {
	zero := 0
	moved := func(ev *Evidence) { ev.Ledgers["psp_a"], ev.Ledgers["psp_b"] = nil, ev.Ledgers["psp_a"] }
	cases := []struct {
		name string
		x    ExpectProvider
		mod  func(ev *Evidence)
		pass bool
	}{
		{"used, and in its ledger", ExpectProvider{Provider: "psp_a", Min: 1, Window: "whole"}, func(ev *Evidence) {}, true},
		{"the switch says psp_a, psp_a's ledger has nothing", ExpectProvider{Provider: "psp_a", Min: 1, Window: "whole"}, moved, false},
		{"the switch never names psp_b, psp_b holds the charge", ExpectProvider{Provider: "psp_b", Max: &zero, Window: "whole"}, moved, false},
		{"a declined authorization is not a use", ExpectProvider{Provider: "psp_a", Min: 1, Window: "whole"}, func(ev *Evidence) {
			ev.Ledgers["psp_a"][0].Status = txswitch.OutcomeDeclined
		}, false},
		{"a pending redirect is a use", ExpectProvider{Provider: "psp_a", Min: 1, Window: "whole"}, func(ev *Evidence) {
			ev.Ledgers["psp_a"][0].Status = txswitch.OutcomePending
		}, true},
		{"no ledgers: the switch's account", ExpectProvider{Provider: "psp_a", Min: 1, Window: "whole"}, func(ev *Evidence) { ev.Ledgers = nil }, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ev := healthy(t)
			tc.mod(ev)
			if r := expectProviderUsed(ev, tc.x); r.Passed != tc.pass {
				t.Fatalf("passed=%v, want %v (%s %v)", r.Passed, tc.pass, r.Note, r.Violations)
			}
		})
	}
}
