package scenarios

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"

	txswitch "github.com/txswitch/txswitch/switch"
)

// CheckLinearizable: per payment, the history of creates, captures,
// cancels and reads is linearizable against a sequential model of the
// payment's money (porcupine). It is the model-based form of DESIGN's
// invariant 6: a read never shows a capture that is later undone, nor
// misses one that was acknowledged before it started.
const CheckLinearizable = "linearizable"

// linTimeout bounds the checker per scenario; past it the verdict is
// "unknown", which fails the check: the history is partitioned by payment,
// so each part is a handful of operations and a timeout means the history
// (or the model) went wrong, not that the run was large.
var linTimeout = 5 * time.Second

// payState is the model's state of one payment.
type payState struct {
	created bool
	// open: created by a request whose outcome the client never learned
	// (answered in doubt, pending or held for review, or not at all): its
	// money is whatever the first definitive read shows, and fixed from
	// then on.
	open                 bool
	authorized, captured int64
	cancelled            bool
}

type linInput struct {
	kind   string // create | capture | cancel | read
	amount int64  // capture: the amount; -1 for "the rest"
}

// linOutput is what the client saw; known is false when the request got
// no definitive answer (it may or may not have taken effect).
type linOutput struct {
	known bool
	st    payState
}

type linOp struct {
	payment string
	in      linInput
	out     linOutput
}

var payModel = porcupine.NondeterministicModel{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range h {
			id := op.Input.(linOp).payment
			if _, ok := by[id]; !ok {
				keys = append(keys, id)
			}
			by[id] = append(by[id], op)
		}
		sort.Strings(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, by[k])
		}
		return out
	},
	Init: func() []interface{} { return []interface{}{payState{}} },
	Step: func(state, input, output interface{}) []interface{} {
		s := state.(payState)
		op := input.(linOp)
		out := output.(linOutput)
		if op.in.kind == "create" {
			if s.created {
				return nil
			}
			if !out.known {
				// It may not have happened (yet): an operation that never
				// returns may also take effect at the very end.
				return []interface{}{s, payState{created: true, open: true}}
			}
			st := out.st
			st.created = true
			return []interface{}{st}
		}
		if !s.created {
			// Nothing acts on or shows a payment before its creation.
			if op.in.kind != "read" && !out.known {
				return []interface{}{s}
			}
			return nil
		}
		if s.open {
			// The first definitive answer fixes the money the unknown
			// creation left; an unanswered request leaves it unknown.
			if !out.known {
				return []interface{}{s}
			}
			st := out.st
			st.created = true
			return []interface{}{st}
		}
		switch op.in.kind {
		case "read":
			// The authorization too (a voided payment reads 0 and the model
			// keeps it): a read that lost it is as wrong as one that lost a
			// capture.
			if !out.known || out.st.captured != s.captured || out.st.cancelled != s.cancelled ||
				!s.cancelled && out.st.authorized != s.authorized {
				return nil
			}
			return []interface{}{s}
		case "capture":
			if s.cancelled {
				if out.known {
					return nil
				}
				return []interface{}{s}
			}
			next := s
			if op.in.amount < 0 {
				next.captured = s.authorized
			} else {
				next.captured = s.captured + op.in.amount
			}
			if out.known {
				if out.st.captured != next.captured {
					return nil
				}
				return []interface{}{next}
			}
			return []interface{}{s, next}
		case "cancel":
			// A void, or once part is captured a release of the rest:
			// the authorization shrinks to the captures.
			next := s
			if s.captured > 0 {
				next.authorized = s.captured
			} else {
				next.cancelled = true
			}
			if out.known {
				// (A voided payment reads authorized 0; the model keeps
				// its authorization.)
				if out.st.cancelled != next.cancelled || (s.captured > 0 && out.st.authorized != next.authorized) {
					return nil
				}
				return []interface{}{next}
			}
			return []interface{}{s, next}
		}
		return nil
	},
	DescribeOperation: func(input, output interface{}) string {
		op, out := input.(linOp), output.(linOutput)
		return fmt.Sprintf("%s %s(%d) -> known=%v %+v", op.payment, op.in.kind, op.in.amount, out.known, out.st)
	},
}

// settledBody reports the payment in a response body when the body is a
// definitive account of its money (no capture or the payment itself
// still in doubt or pending).
func settledBody(b []byte) (txswitch.Payment, bool) {
	var p txswitch.Payment
	if json.Unmarshal(b, &p) != nil || p.ID == "" {
		return p, false
	}
	return p, !unsettled(&p) && p.Status != txswitch.PaymentHeldForReview
}

// linHistory builds the porcupine history from the client's record:
// attempts of one request (same idempotency key) form one operation from
// the first attempt's start to its first definitive answer. A request
// never answered definitively (no answer, 5xx, 409 in progress, 429, or
// a payment or operation still in doubt, pending or held) stays open
// forever: it may take effect at any later time, or never. That includes
// a payment's creation: its payment (known from any 2xx answer) and
// every later request on it and read of it stay in the history. Only a
// definitive refusal (any other 4xx as the last answer) is left out: it
// changed nothing (bad_input and no_lost_writes judge those).
func linHistory(calls []Call) []porcupine.Operation {
	type group struct {
		first *Call
		last  *Call // the answer that came last
		final *Call // the first 2xx answer with a definitive body
		id    string
		acked bool
	}
	groups := map[string]*group{}
	var order []string
	for i := range calls {
		c := &calls[i]
		switch c.Op {
		case "create_payment", "capture", "cancel":
		default:
			continue
		}
		if c.Key == "" || c.Bad {
			continue
		}
		g := groups[c.Key]
		if g == nil {
			g = &group{first: c}
			groups[c.Key] = g
			order = append(order, c.Key)
		}
		if c.Start.Before(g.first.Start) {
			g.first = c
		}
		if g.last == nil || c.End.After(g.last.End) {
			g.last = c
		}
		if !c.Acked() {
			continue
		}
		g.acked = true
		p, settled := settledBody(c.Body)
		if g.id == "" {
			g.id = p.ID
		}
		if settled && (g.final == nil || c.End.Before(g.final.End)) {
			g.final = c
		}
	}
	stateOf := func(c *Call) linOutput {
		p, _ := settledBody(c.Body)
		return linOutput{known: true, st: payState{created: true, authorized: p.Authorized.Value, captured: p.Captured.Value, cancelled: p.Status == txswitch.PaymentCancelled}}
	}
	created := map[string]bool{}
	var ops []porcupine.Operation
	// Creations first: a payment is in the history when some answer to its
	// creation named it, whatever that answer said of its money.
	for _, k := range order {
		g := groups[k]
		if g.first.Op != "create_payment" || g.id == "" || created[g.id] {
			continue
		}
		created[g.id] = true
		o := porcupine.Operation{Input: linOp{payment: g.id, in: linInput{kind: "create"}}, Call: g.first.Start.UnixNano(), Return: math.MaxInt64, Output: linOutput{}}
		if g.final != nil {
			o.Output, o.Return = stateOf(g.final), g.final.End.UnixNano()
		}
		ops = append(ops, o)
	}
	for _, k := range order {
		g := groups[k]
		c := g.first
		var op linOp
		switch c.Op {
		case "capture":
			amount := int64(-1)
			var req txswitch.CaptureRequest
			if json.Unmarshal(c.Req, &req) == nil && req.Amount != nil {
				amount = req.Amount.Value
			}
			op = linOp{payment: c.Target, in: linInput{kind: "capture", amount: amount}}
		case "cancel":
			op = linOp{payment: c.Target, in: linInput{kind: "cancel"}}
		default:
			continue
		}
		if !created[op.payment] || !g.acked && definitiveRefusal(g.last) {
			continue
		}
		o := porcupine.Operation{Input: op, Call: c.Start.UnixNano(), Return: math.MaxInt64, Output: linOutput{}}
		if g.final != nil {
			o.Output, o.Return = stateOf(g.final), g.final.End.UnixNano()
		}
		ops = append(ops, o)
	}
	for i := range calls {
		c := &calls[i]
		if c.Op != "get_payment" || c.Status != 200 || !created[c.Target] {
			continue
		}
		p, ok := settledBody(c.Body)
		if !ok || p.ID != c.Target {
			continue
		}
		ops = append(ops, porcupine.Operation{Input: linOp{payment: c.Target, in: linInput{kind: "read"}},
			Output: stateOf(c), Call: c.Start.UnixNano(), Return: c.End.UnixNano()})
	}
	return ops
}

// definitiveRefusal reports whether an answer says the request was not
// executed and never will be: a 4xx other than 408, 429 and 409 "the same
// key is in progress" (a copy of the request is executing right now).
func definitiveRefusal(c *Call) bool {
	switch {
	case c.Status < 400 || c.Status >= 500, c.Status == 408, c.Status == 429:
		return false
	case c.Status == 409 && errorCode(c.Body) == txswitch.CodeIdempotencyInProgress:
		return false
	}
	return true
}

// linCounts summarizes a history for the check's note.
type linCounts struct {
	payments, reads, ambiguous, settledCreates int
}

func countOps(ops []porcupine.Operation) linCounts {
	var n linCounts
	for _, o := range ops {
		op, out := o.Input.(linOp), o.Output.(linOutput)
		switch {
		case op.in.kind == "create":
			n.payments++
			if out.known {
				n.settledCreates++
			}
		case op.in.kind == "read":
			n.reads++
		}
		if !out.known {
			n.ambiguous++
		}
	}
	return n
}

func checkLinearizable(ev *Evidence) CheckResult {
	ops := linHistory(ev.Calls)
	n := countOps(ops)
	if n.payments == 0 {
		return result(CheckLinearizable, "no payment was created: nothing to judge", nil)
	}
	note := fmt.Sprintf("%d operations on %d payments: %d reads judged, %d operations without a definitive answer", len(ops), n.payments, n.reads, n.ambiguous)
	res := porcupine.CheckOperationsTimeout(payModel.ToModel(), ops, linTimeout)
	var v []string
	switch res {
	case porcupine.Ok:
	case porcupine.Unknown:
		v = append(v, fmt.Sprintf("the checker timed out after %v: verdict unknown (a history partitioned by payment is small; this one is not)", linTimeout))
	default:
		v = append(v, fmt.Sprintf("the payment history is not linearizable (%d operations); the first payments involved:", len(ops)))
		v = append(v, illegalPayments(ops)...)
	}
	// Every paying flow reads its payment back after its last write, so a
	// run that created payments with a definitive answer and judged no
	// read lost its reads (the flows or the history broke): a pass would
	// say nothing.
	if n.settledCreates > 0 && n.reads == 0 {
		v = append(v, fmt.Sprintf("%d payments were created with a definitive answer but no read of any payment was judged: the check had nothing to decide", n.settledCreates))
	}
	return result(CheckLinearizable, note, v)
}

// illegalPayments names the payments whose own history is not
// linearizable, with their operations.
func illegalPayments(ops []porcupine.Operation) []string {
	var out []string
	for _, part := range payModel.Partition(ops) {
		if porcupine.CheckOperations(payModel.ToModel(), part) {
			continue
		}
		line := part[0].Input.(linOp).payment + ":"
		for _, o := range part {
			line += " [" + payModel.DescribeOperation(o.Input, o.Output) + "]"
		}
		out = append(out, line)
		if len(out) == 5 {
			break
		}
	}
	return out
}
