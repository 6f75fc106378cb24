package scenarios

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/txswitch/txswitch/chaos"
	"github.com/txswitch/txswitch/providers/sim"
	txswitch "github.com/txswitch/txswitch/switch"
)

// CheckResult is one check's verdict with its evidence.
type CheckResult struct {
	Name       string   `json:"name"`
	Passed     bool     `json:"passed"`
	Violations []string `json:"violations,omitempty"`
	// Note says what the check looked at (so a pass is not silent about
	// having judged nothing).
	Note string `json:"note,omitempty"`
}

func result(name, note string, violations []string) CheckResult {
	return CheckResult{Name: name, Passed: len(violations) == 0, Violations: violations, Note: note}
}

// alwaysOn maps each always-on check to its function.
var alwaysOn = map[string]func(*Evidence) CheckResult{
	CheckNoLostWrites:      checkNoLostWrites,
	CheckNeverChargedTwice: checkNeverChargedTwice,
	CheckMoneyAddsUp:       checkMoneyAddsUp,
	CheckIdempotency:       checkIdempotency,
	CheckBadInput:          checkBadInput,
	CheckFaultFired:        checkFaultFired,
	CheckReplicasAgree:     checkReplicasAgree,
	CheckSettled:           checkSettled,
	CheckTrafficRan:        checkTrafficRan,
	CheckReadsSeeWrites:    checkReadsSeeWrites,
	CheckLinearizable:      checkLinearizable,
}

// next lists the statuses a payment may move to from each status (and
// stay in). Acknowledging a status promises the payment never goes back.
var next = map[string][]string{
	txswitch.PaymentPending:           nil, // anything
	txswitch.PaymentInDoubt:           nil,
	txswitch.PaymentHeldForReview:     nil,
	txswitch.PaymentAuthorized:        {txswitch.PaymentAuthorized, txswitch.PaymentCaptured, txswitch.PaymentPartiallyRefunded, txswitch.PaymentRefunded, txswitch.PaymentCancelled},
	txswitch.PaymentCaptured:          {txswitch.PaymentCaptured, txswitch.PaymentPartiallyRefunded, txswitch.PaymentRefunded},
	txswitch.PaymentPartiallyRefunded: {txswitch.PaymentPartiallyRefunded, txswitch.PaymentRefunded},
	txswitch.PaymentRefunded:          {txswitch.PaymentRefunded},
	txswitch.PaymentDeclined:          {txswitch.PaymentDeclined},
	txswitch.PaymentFailed:            {txswitch.PaymentFailed},
	txswitch.PaymentCancelled:         {txswitch.PaymentCancelled},
}

func reachable(from, to string) bool {
	allowed, known := next[from]
	if !known || allowed == nil {
		return true
	}
	for _, s := range allowed {
		if s == to {
			return true
		}
	}
	return false
}

func checkNoLostWrites(ev *Evidence) CheckResult {
	var v []string
	nodes := ev.nodes()
	judged := 0
	for i := range ev.Calls {
		c := &ev.Calls[i]
		if !c.Acked() || c.Op != "create_order" {
			continue
		}
		var o txswitch.Order
		if json.Unmarshal(c.Body, &o) != nil || o.ID == "" {
			continue
		}
		judged++
		for _, n := range nodes {
			if ev.Final[n][o.ID] == nil {
				v = append(v, fmt.Sprintf("order %s acknowledged (call #%d, %d via %s at %s) is missing on node %s",
					o.ID, c.Seq, c.Status, c.Node, c.End.Format("15:04:05.000"), n))
			}
		}
	}
	for _, a := range ev.ackedPayments() {
		judged++
		for _, n := range nodes {
			p := findPayment(ev.Final[n][a.p.OrderID], a.p.ID)
			switch {
			case p == nil:
				v = append(v, fmt.Sprintf("payment %s acknowledged %s (call #%d %s) is missing on node %s", a.p.ID, a.p.Status, a.call.Seq, a.call.Op, n))
			case !reachable(a.p.Status, p.Status):
				v = append(v, fmt.Sprintf("payment %s acknowledged %s (call #%d %s) is %s on node %s: went backwards", a.p.ID, a.p.Status, a.call.Seq, a.call.Op, p.Status, n))
			case p.Captured.Value < a.p.Captured.Value:
				v = append(v, fmt.Sprintf("payment %s acknowledged captured %d (call #%d) has captured %d on node %s", a.p.ID, a.p.Captured.Value, a.call.Seq, p.Captured.Value, n))
			case p.Refunded.Value < a.p.Refunded.Value:
				v = append(v, fmt.Sprintf("payment %s acknowledged refunded %d (call #%d) has refunded %d on node %s", a.p.ID, a.p.Refunded.Value, a.call.Seq, p.Refunded.Value, n))
			}
		}
	}
	for i := range ev.Calls {
		c := &ev.Calls[i]
		if !c.Acked() || c.Op != "refund" {
			continue
		}
		var r txswitch.Refund
		if json.Unmarshal(c.Body, &r) != nil || r.ID == "" {
			continue
		}
		judged++
		if r.PaymentID == "" || !strings.HasPrefix(r.ID, txswitch.PrefixRefund+"_") {
			// The API promises the refund: a client cannot tell what it
			// acknowledged from anything else.
			v = append(v, fmt.Sprintf("refund call #%d (via %s) acknowledged %d with a body that is not a refund: %s", c.Seq, c.Node, c.Status, clip(c.Body)))
			continue
		}
		for _, n := range nodes {
			got := findRefund(ev.Final[n][r.OrderID], r.PaymentID, r.ID)
			switch {
			case got == nil:
				v = append(v, fmt.Sprintf("refund %s of %s acknowledged %s (call #%d) is missing on node %s", r.ID, r.PaymentID, r.Status, c.Seq, n))
			case r.Status == "succeeded" && got.Status != "succeeded":
				v = append(v, fmt.Sprintf("refund %s acknowledged succeeded (call #%d) is %s on node %s", r.ID, c.Seq, got.Status, n))
			}
		}
	}
	return result(CheckNoLostWrites, fmt.Sprintf("%d acknowledged writes against %d nodes", judged, len(nodes)), v)
}

func findPayment(o *txswitch.Order, id string) *txswitch.Payment {
	if o == nil {
		return nil
	}
	for i := range o.Payments {
		if o.Payments[i].ID == id {
			return &o.Payments[i]
		}
	}
	return nil
}

func findRefund(o *txswitch.Order, paymentID, id string) *txswitch.Refund {
	p := findPayment(o, paymentID)
	if p == nil {
		return nil
	}
	for i := range p.Refunds {
		if p.Refunds[i].ID == id {
			return &p.Refunds[i]
		}
	}
	return nil
}

// chargesByPayment lists every approved authorization at any PSP, per
// payment id.
func chargesByPayment(ledgers map[string][]sim.LedgerEntry) map[string][]string {
	out := map[string][]string{}
	for _, psp := range sortedKeys(ledgers) {
		for _, e := range ledgers[psp] {
			if e.Op == txswitch.OpAuthorize && e.Status == txswitch.OutcomeApproved {
				out[e.PaymentID] = append(out[e.PaymentID], fmt.Sprintf("%s seq %d key %s ref %s %d %s captured=%v at %s",
					psp, e.Seq, e.IdempotencyKey, e.ProviderRef, e.Amount.Value, e.Amount.Currency, e.Captured, e.At.Format("15:04:05.000")))
			}
		}
	}
	return out
}

func checkNeverChargedTwice(ev *Evidence) CheckResult {
	var v []string
	charges := chargesByPayment(ev.Ledgers)
	for _, id := range sortedKeys(charges) {
		if es := charges[id]; len(es) > 1 {
			v = append(v, fmt.Sprintf("payment %s charged %d times: %s", id, len(es), strings.Join(es, "; ")))
		}
	}
	return result(CheckNeverChargedTwice, fmt.Sprintf("%d charged payments in %d ledgers", len(charges), len(ev.Ledgers)), v)
}

// ledgerMoney is the PSPs' account of one payment.
type ledgerMoney struct {
	charges                      int
	cancelled                    bool
	captured, refunded, released int64
	// chargedAt and declinedAt count, per PSP, the approved and the
	// declined authorizations of the payment: the money and the refusals
	// belong to the provider that booked them, not to the payment id alone.
	chargedAt, declinedAt map[string]int
}

func ledgerTotals(ledgers map[string][]sim.LedgerEntry) map[string]*ledgerMoney {
	out := map[string]*ledgerMoney{}
	get := func(id string) *ledgerMoney {
		if out[id] == nil {
			out[id] = &ledgerMoney{chargedAt: map[string]int{}, declinedAt: map[string]int{}}
		}
		return out[id]
	}
	for psp, es := range ledgers {
		for _, e := range es {
			if e.Op == txswitch.OpAuthorize && e.Status == txswitch.OutcomeDeclined {
				get(e.PaymentID).declinedAt[psp]++
			}
			if e.Status != txswitch.OutcomeApproved {
				continue
			}
			m := get(e.PaymentID)
			switch e.Op {
			case txswitch.OpAuthorize:
				m.charges++
				m.chargedAt[psp]++
				if e.Captured {
					m.captured += e.Amount.Value
				}
			case txswitch.OpCapture:
				m.captured += e.Amount.Value
			case txswitch.OpRefund:
				m.refunded += e.Amount.Value
			case txswitch.OpCancel:
				if e.Release {
					m.released += e.Amount.Value
				} else {
					m.cancelled = true
				}
			}
		}
	}
	return out
}

func unsettled(p *txswitch.Payment) bool {
	if p.Status == txswitch.PaymentInDoubt || p.Status == txswitch.PaymentPending {
		return true
	}
	for _, c := range p.Captures {
		if c.Status == "pending" || c.Status == "in_doubt" {
			return true
		}
	}
	for _, r := range p.Refunds {
		if r.Status == "pending" || r.Status == "in_doubt" {
			return true
		}
	}
	if c := p.Cancellation; c != nil && (c.Status == "pending" || c.Status == "in_doubt") {
		return true
	}
	return false
}

// pspsOf lists the PSPs whose count in byPSP is positive.
func pspsOf(byPSP map[string]int) string {
	var out []string
	for _, psp := range sortedKeys(byPSP) {
		if byPSP[psp] > 0 {
			out = append(out, psp)
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}

func checkMoneyAddsUp(ev *Evidence) CheckResult {
	var v []string
	ledger := ledgerTotals(ev.Ledgers)
	view := ev.view()
	compared := 0
	// Declines and the provider a payment names are judged against the
	// PSPs' ledgers only when the evidence holds them (a run always
	// collects every simulated PSP's ledger; fabricated evidence may not).
	haveLedgers := len(ev.Ledgers) > 0
	declines, placed := 0, 0
	for _, oid := range sortedKeys(view) {
		o := view[oid]
		var capSum, refSum, pspCaptured, due int64
		due = o.Amount.Value
		for i := range o.Payments {
			p := &o.Payments[i]
			capSum += p.Captured.Value
			refSum += p.Refunded.Value
			if lm := ledger[p.ID]; lm != nil {
				pspCaptured += lm.captured
				if p.Surcharge != nil && lm.charges > 0 {
					due += p.Surcharge.Value // the PSP charged it with the goods
				}
			}
			cur := p.Amount.Currency
			for name, m := range map[string]txswitch.Money{"authorized": p.Authorized, "captured": p.Captured, "refunded": p.Refunded} {
				if m.Value != 0 && m.Currency != cur {
					v = append(v, fmt.Sprintf("payment %s: %s in %s, amount in %s", p.ID, name, m.Currency, cur))
				}
			}
			if p.Captured.Value > p.Authorized.Value {
				v = append(v, fmt.Sprintf("payment %s: captured %d > authorized %d", p.ID, p.Captured.Value, p.Authorized.Value))
			}
			if p.Refunded.Value > p.Captured.Value {
				v = append(v, fmt.Sprintf("payment %s: refunded %d > captured %d", p.ID, p.Refunded.Value, p.Captured.Value))
			}
			if unsettled(p) {
				continue // the ledger may be ahead until it resolves; "settled" reports it
			}
			compared++
			lm := ledger[p.ID]
			if lm == nil {
				lm = &ledgerMoney{}
			}
			var released int64
			if p.Released != nil {
				released = p.Released.Value
			}
			if lm.captured != p.Captured.Value || lm.refunded != p.Refunded.Value || lm.released != released {
				v = append(v, fmt.Sprintf("payment %s (%s at %s): switch captured %d refunded %d released %d, PSP ledgers captured %d refunded %d released %d",
					p.ID, p.Status, p.Provider, p.Captured.Value, p.Refunded.Value, released, lm.captured, lm.refunded, lm.released))
			}
			switch p.Status {
			case txswitch.PaymentDeclined, txswitch.PaymentFailed:
				if lm.charges > 0 && !lm.cancelled {
					v = append(v, fmt.Sprintf("payment %s is %s but a PSP holds an approved charge for it", p.ID, p.Status))
				}
				// "declined" is the one failure availability leaves out, so
				// the switch's word for it is not enough: the PSP it names
				// must have declined an authorization of the payment. Every
				// way the switch reaches declined is a PSP's declined
				// authorization (its answer, its notification or its status
				// inquiry) for the open attempt at p.Provider, and the
				// simulated PSP records each one as a declined authorize
				// entry, a pending redirect cancelled before completion
				// included (DeclineCancelledPending). Fraud rejects
				// (cancelled), expiries, no provider and a provider's
				// 503/timeout/refusal are failed or cancelled, never declined.
				if p.Status == txswitch.PaymentDeclined && haveLedgers {
					declines++
					if lm.declinedAt[p.Provider] == 0 {
						v = append(v, fmt.Sprintf("payment %s is declined at %s but %s's ledger holds no declined authorization for it (declined authorizations at: %s): a decline no PSP gave",
							p.ID, p.Provider, p.Provider, pspsOf(lm.declinedAt)))
					}
				}
			case txswitch.PaymentAuthorized, txswitch.PaymentCaptured, txswitch.PaymentPartiallyRefunded, txswitch.PaymentRefunded:
				if lm.charges != 1 {
					v = append(v, fmt.Sprintf("payment %s is %s but the PSP ledgers hold %d approved charges", p.ID, p.Status, lm.charges))
				}
				// The money is at the provider the switch names: captures,
				// refunds and voids go there, and reconciliation looks there.
				if haveLedgers && lm.charges > 0 {
					placed++
					if lm.chargedAt[p.Provider] == 0 {
						v = append(v, fmt.Sprintf("payment %s is %s at %s but its approved authorization is in the ledger of %s, not %s's",
							p.ID, p.Status, p.Provider, pspsOf(lm.chargedAt), p.Provider))
					}
				}
				if lm.cancelled {
					v = append(v, fmt.Sprintf("payment %s is %s but a PSP voided its authorization", p.ID, p.Status))
				}
			case txswitch.PaymentCancelled:
				if lm.charges > 0 && !lm.cancelled {
					v = append(v, fmt.Sprintf("payment %s is cancelled but the PSP ledgers hold its authorization, never voided", p.ID))
				}
			}
		}
		if o.Refunded.Value > o.Captured.Value {
			v = append(v, fmt.Sprintf("order %s: refunded %d > captured %d", oid, o.Refunded.Value, o.Captured.Value))
		}
		// Per order (DESIGN.md invariant 3), on the switch's totals and,
		// independently, on what the PSPs captured for its payments: an
		// order is never paid twice, whatever keys the payments had.
		if o.Captured.Value > o.Authorized.Value {
			v = append(v, fmt.Sprintf("order %s: captured %d > authorized %d", oid, o.Captured.Value, o.Authorized.Value))
		}
		if o.Captured.Value > due || pspCaptured > due {
			v = append(v, fmt.Sprintf("order %s: captured %d at the switch, %d at the PSPs, over its amount %d plus surcharges (%d in all)",
				oid, o.Captured.Value, pspCaptured, o.Amount.Value, due))
		}
		if o.Captured.Value != capSum || o.Refunded.Value != refSum {
			v = append(v, fmt.Sprintf("order %s: totals captured %d refunded %d, its payments sum to %d and %d", oid, o.Captured.Value, o.Refunded.Value, capSum, refSum))
		}
	}
	// Money the PSPs moved for a payment the switch does not know of is
	// money that does not add up either (every payment the flows make
	// belongs to an order whose creation was acknowledged, so the view
	// holds it unless it was lost).
	known := ev.payments()
	for _, id := range sortedKeys(ledger) {
		if m := ledger[id]; m.charges > 0 && known[id] == nil {
			v = append(v, fmt.Sprintf("the PSP ledgers hold %d approved charge(s) (captured %d) for payment %s, which the switch does not have", m.charges, m.captured, id))
		}
	}
	note := fmt.Sprintf("%d orders, %d settled payments compared with the ledgers; %d declines and %d charges checked at the PSP the switch names", len(view), compared, declines, placed)
	if !haveLedgers {
		note = fmt.Sprintf("%d orders, %d settled payments; no PSP ledgers in the evidence: declines and providers not judged", len(view), compared)
	}
	return result(CheckMoneyAddsUp, note, v)
}

// finalAnswer reports whether a response is one the switch must repeat
// for the same key: an answer that will not change (not 409 "in
// progress", not 429/5xx, not an in-doubt or pending payment).
func finalAnswer(c *Call) bool {
	switch {
	case c.Status == 0, c.Status >= 500, c.Status == 409, c.Status == 429:
		return false
	case c.Status >= 200 && c.Status < 300:
		// A payment's own status in doubt, pending or held is not compared.
		// A capture, refund or cancellation answered in doubt is: from
		// cluster version 12, which every scenario's cluster runs, its
		// retry answers the same (the payment tells the outcome).
		var p txswitch.Payment
		if json.Unmarshal(c.Body, &p) == nil && !strings.HasPrefix(p.ID, txswitch.PrefixRefund) &&
			(p.Status == txswitch.PaymentInDoubt || p.Status == txswitch.PaymentPending || p.Status == txswitch.PaymentHeldForReview) {
			return false
		}
	}
	return true
}

func checkIdempotency(ev *Evidence) CheckResult {
	var v []string
	byKey := map[string][]*Call{}
	for i := range ev.Calls {
		c := &ev.Calls[i]
		if c.Key != "" && c.Method != "GET" && c.Op != "review" {
			byKey[c.Key] = append(byKey[c.Key], c)
		}
	}
	repeated := 0
	for _, k := range sortedKeys(byKey) {
		calls := byKey[k]
		if len(calls) < 2 {
			continue
		}
		sort.Slice(calls, func(a, b int) bool { return calls[a].End.Before(calls[b].End) })
		// Copies of one request acknowledged with different resources were
		// executed more than once, whatever their answers said: pending
		// answers (a redirect payment, an operation in doubt) are not final
		// and are not compared below, so compare what they created here.
		if d := duplicateExecution(calls); d != "" {
			v = append(v, "key "+k+": "+d)
		}
		firstAt := -1
		for i, c := range calls {
			if finalAnswer(c) && c.Status != 401 {
				firstAt = i
				break
			}
		}
		if firstAt < 0 {
			continue
		}
		first := calls[firstAt]
		for _, c := range calls[firstAt+1:] {
			if c.Status == 0 || c.Status >= 500 || c.Status == 409 || c.Status == 429 {
				continue // no verdict: busy, down, or still in progress
			}
			repeated++
			if bytes.Equal(c.Req, first.Req) && c.Path == first.Path {
				if c.Status != first.Status || !bytes.Equal(c.Body, first.Body) {
					v = append(v, fmt.Sprintf("key %s: call #%d got %d %s, the first answer (call #%d) was %d %s",
						k, c.Seq, c.Status, clip(c.Body), first.Seq, first.Status, clip(first.Body)))
				}
				continue
			}
			if c.Status != 422 || errorCode(c.Body) != "idempotency_key_reused" {
				v = append(v, fmt.Sprintf("key %s reused with a different request (call #%d): got %d %s, want 422 idempotency_key_reused",
					k, c.Seq, c.Status, clip(c.Body)))
			}
		}
	}
	return result(CheckIdempotency, fmt.Sprintf("%d repeated requests compared", repeated), v)
}

// duplicateExecution names two copies of the first request under one key
// that were acknowledged with different resource ids, or "".
func duplicateExecution(calls []*Call) string {
	var firstID string
	var firstSeq int
	for _, c := range calls {
		if !c.Acked() || c.Path != calls[0].Path || !bytes.Equal(c.Req, calls[0].Req) {
			continue
		}
		var r struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(c.Body, &r) != nil || r.ID == "" {
			continue
		}
		switch {
		case firstID == "":
			firstID, firstSeq = r.ID, c.Seq
		case r.ID != firstID:
			return fmt.Sprintf("the same request was executed twice: call #%d created %s, call #%d created %s", firstSeq, firstID, c.Seq, r.ID)
		}
	}
	return ""
}

func errorCode(body []byte) string {
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil || e.Error.Message == "" {
		return ""
	}
	return e.Error.Code
}

func clip(b []byte) string {
	const n = 300
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}

func checkBadInput(ev *Evidence) CheckResult {
	var v []string
	judged := 0
	bySeq := map[int]*Call{}
	for i := range ev.Calls {
		c := &ev.Calls[i]
		bySeq[c.Seq] = c
		if !c.Bad || c.Status == 0 || c.Status == 503 || c.Status == 429 {
			continue // no verdict from the switch (down, busy)
		}
		judged++
		switch {
		case c.Status < 400 || c.Status >= 500:
			v = append(v, fmt.Sprintf("bad request (call #%d %s %s %s) got %d %s, want a 4xx", c.Seq, c.Op, c.Path, clip(c.Req), c.Status, clip(c.Body)))
		case errorCode(c.Body) == "":
			v = append(v, fmt.Sprintf("bad request (call #%d %s) got %d without an error code and message: %s", c.Seq, c.Op, c.Status, clip(c.Body)))
		}
	}
	view := ev.view()
	pays := ev.payments()
	for _, cl := range ev.Claims {
		c := bySeq[cl.Call]
		if c == nil || c.Status == 0 || c.Status == 503 || c.Status == 429 {
			continue
		}
		var got int64 = -1
		switch cl.Kind {
		case "order_payments":
			if o := view[cl.ID]; o != nil {
				got = int64(len(o.Payments))
			}
		case "payment_captured":
			if p := pays[cl.ID]; p != nil {
				got = p.Captured.Value
			}
		case "payment_refunded":
			if p := pays[cl.ID]; p != nil {
				got = p.Refunded.Value
			}
		}
		if got != cl.Value {
			v = append(v, fmt.Sprintf("bad request (call #%d %s %s) changed %s of %s: %d, want %d", c.Seq, c.Op, clip(c.Req), cl.Kind, cl.ID, got, cl.Value))
		}
	}
	return result(CheckBadInput, fmt.Sprintf("%d bad requests judged, %d no-change claims", judged, len(ev.Claims)), v)
}

func checkFaultFired(ev *Evidence) CheckResult {
	var v, notes []string
	for i, f := range ev.Faults {
		for _, e := range f.Events {
			if e.Action == "effect" || (e.Action == "inject" && e.Err == "") {
				notes = append(notes, fmt.Sprintf("%s %s %s: %s", e.Kind, e.Target, e.Action, e.Detail))
			}
		}
		injected, hit, why := chaos.Summary(f.Events)
		if !injected || !hit {
			v = append(v, fmt.Sprintf("fault %d (%s on %s at %v) did not fire: %s — the scenario tested nothing with it", i, f.Spec.Kind, f.Spec.Target, f.Spec.At.D(), why))
		}
	}
	return result(CheckFaultFired, fmt.Sprintf("%d faults: %s", len(ev.Faults), strings.Join(notes, "; ")), v)
}

func checkReplicasAgree(ev *Evidence) CheckResult {
	var v []string
	nodes := ev.nodes()
	ids := map[string]bool{}
	for _, n := range nodes {
		for id := range ev.Final[n] {
			ids[id] = true
		}
	}
	for _, id := range sortedKeys(ids) {
		var ref []byte
		var refNode string
		for _, n := range nodes {
			b, _ := json.Marshal(ev.Final[n][id])
			if ref == nil {
				ref, refNode = b, n
				continue
			}
			if !bytes.Equal(b, ref) {
				v = append(v, fmt.Sprintf("order %s differs: node %s has %s, node %s has %s", id, refNode, clip(ref), n, clip(b)))
				break
			}
		}
		if tl := timelineDiff(ev, nodes, id); tl != "" {
			v = append(v, tl)
		}
	}
	v = append(v, ev.ReadErrors...)
	return result(CheckReplicasAgree, fmt.Sprintf("%d orders on %d nodes", len(ids), len(nodes)), v)
}

// timelineDiff says where the nodes' timelines of order id part, or "".
// Nodes without a timeline read (the order missing there, or evidence
// without timelines) are left to the order comparison.
func timelineDiff(ev *Evidence, nodes []string, id string) string {
	var ref []txswitch.TimelineEvent
	refNode := ""
	for _, n := range nodes {
		tl, ok := ev.FinalTimelines[n][id]
		if !ok {
			continue
		}
		if refNode == "" {
			ref, refNode = tl, n
			continue
		}
		for i := 0; i < max(len(tl), len(ref)); i++ {
			var a, b []byte
			if i < len(ref) {
				a, _ = json.Marshal(ref[i])
			}
			if i < len(tl) {
				b, _ = json.Marshal(tl[i])
			}
			if !bytes.Equal(a, b) {
				return fmt.Sprintf("timeline of order %s differs at event %d of %d/%d: node %s has %s, node %s has %s",
					id, i+1, len(ref), len(tl), refNode, clip(a), n, clip(b))
			}
		}
	}
	return ""
}

func checkSettled(ev *Evidence) CheckResult {
	var v []string
	for _, id := range sortedKeys(ev.payments()) {
		p := ev.payments()[id]
		if unsettled(p) {
			v = append(v, fmt.Sprintf("payment %s still %s (or with a pending capture, refund or cancellation) after the settle time", p.ID, p.Status))
		}
	}
	return result(CheckSettled, "", v)
}

// traffic_ran's bounds.
const (
	// maxDroppedShare: arrivals the open-loop generator could not start
	// on time (every concurrency slot busy) above this share of the
	// schedule mean the switch did not keep up with the load the scenario
	// asked for, and the checks judged the traffic it let through.
	maxDroppedShare = 0.05
	// minServedShare: at least this share of the flows started must get a
	// write acknowledged (every flow starts with one), unless the
	// scenario expects refusals (servedFloor).
	minServedShare = 0.8
	// relaxedServedShare is the floor of a scenario that expects writes
	// to be refused (a rejected 5xx expectation: quorum loss, a minority
	// side); its min_acked says how many must still get through.
	relaxedServedShare = 0.1
)

// servedFloor is the share of started flows traffic_ran requires to get a
// write acknowledged: minServedShare, lowered to what the scenario's own
// expectations accept (an availability minimum below it; a rejected 5xx
// expectation, which says writes are refused for a while).
func servedFloor(sc *Scenario) float64 {
	floor := minServedShare
	for _, x := range sc.Expect {
		switch {
		case x.Rejected != nil && x.Rejected.Status >= 500:
			floor = min(floor, relaxedServedShare)
		case x.Availability != nil:
			floor = min(floor, x.Availability.Min)
		}
	}
	return floor
}

func checkTrafficRan(ev *Evidence) CheckResult {
	var v []string
	acked := 0
	served := map[int]bool{}
	for i := range ev.Calls {
		c := &ev.Calls[i]
		if c.Acked() && c.Method != "GET" {
			acked++
			served[c.FlowID] = true
		}
	}
	started := len(ev.Runs)
	nServed := 0
	for _, r := range ev.Runs {
		if served[r.ID] {
			nServed++
		}
	}
	scheduled := started + ev.Dropped
	floor := ev.ServedFloor
	if floor <= 0 {
		floor = minServedShare
	}
	if acked == 0 {
		v = append(v, "no write was acknowledged: the scenario judged nothing")
	}
	if scheduled > 0 && float64(ev.Dropped) > maxDroppedShare*float64(scheduled) {
		v = append(v, fmt.Sprintf("%d of %d scheduled arrivals (%.1f%%) were dropped, over %.0f%%: every concurrency slot was busy, the switch did not keep up with the load asked for",
			ev.Dropped, scheduled, 100*float64(ev.Dropped)/float64(scheduled), 100*maxDroppedShare))
	}
	if started > 0 && float64(nServed) < floor*float64(started) {
		v = append(v, fmt.Sprintf("only %d of %d flows started (%.1f%%) got a write acknowledged, want at least %.0f%%",
			nServed, started, 100*float64(nServed)/float64(started), 100*floor))
	}
	if ev.Truncated > 0 {
		v = append(v, fmt.Sprintf("the client record is truncated (%d calls not kept)", ev.Truncated))
	}
	share := 0.0
	if started > 0 {
		share = float64(nServed) / float64(started)
	}
	return result(CheckTrafficRan, fmt.Sprintf("%d flows, %d calls, %d acknowledged writes; %d flows (%.3f, floor %.2f) got a write acknowledged; %d of %d arrivals dropped (concurrency limit)",
		started, len(ev.Calls), acked, nServed, share, floor, ev.Dropped, scheduled), v)
}

func checkReadsSeeWrites(ev *Evidence) CheckResult {
	var v []string
	created := map[string]*Call{}
	for i := range ev.Calls {
		c := &ev.Calls[i]
		if c.Acked() && (c.Op == "create_order" || c.Op == "create_payment") {
			var x struct {
				ID string `json:"id"`
			}
			if json.Unmarshal(c.Body, &x) == nil && x.ID != "" {
				created[x.ID] = c
			}
		}
	}
	// The payment states acknowledged by writes: a read that starts after
	// one must show that state or one it can move on to (a node serving a
	// stale "pending" after "authorized" was acknowledged is a stale read).
	acked := map[string][]ackedPayment{}
	for _, a := range ev.ackedPayments() {
		acked[a.p.ID] = append(acked[a.p.ID], a)
	}
	reads := 0
	for i := range ev.Calls {
		c := &ev.Calls[i]
		if c.Method != "GET" || c.Bad || c.Target == "" {
			continue
		}
		w := created[c.Target]
		if w == nil || !c.Start.After(w.End) {
			continue
		}
		reads++
		if c.Status == 404 {
			v = append(v, fmt.Sprintf("read of %s (call #%d via %s) answered 404 after its creation was acknowledged (call #%d via %s)", c.Target, c.Seq, c.Node, w.Seq, w.Node))
			continue
		}
		if c.Status != 200 {
			continue
		}
		for _, p := range readPayments(c) {
			for _, a := range acked[p.ID] {
				if c.Start.After(a.call.End) && !reachable(a.p.Status, p.Status) {
					v = append(v, fmt.Sprintf("read of %s (call #%d via %s) shows payment %s %s after %s was acknowledged (call #%d via %s): a stale read",
						c.Target, c.Seq, c.Node, p.ID, p.Status, a.p.Status, a.call.Seq, a.call.Node))
				}
			}
		}
	}
	return result(CheckReadsSeeWrites, fmt.Sprintf("%d reads after acknowledged writes", reads), v)
}

// readPayments are the payments a read returned: the payment, or the
// order's payments.
func readPayments(c *Call) []txswitch.Payment {
	switch c.Op {
	case "get_payment":
		var p txswitch.Payment
		if json.Unmarshal(c.Body, &p) == nil && p.ID != "" {
			return []txswitch.Payment{p}
		}
	case "get_order":
		var o txswitch.Order
		if json.Unmarshal(c.Body, &o) == nil {
			return o.Payments
		}
	}
	return nil
}
