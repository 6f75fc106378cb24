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
// "unknown" and the check passes with a note saying so.
const linTimeout = 5 * time.Second

// payState is the model's state of one payment.
type payState struct {
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
		created := s.authorized > 0
		switch op.in.kind {
		case "create":
			if created {
				return nil
			}
			return []interface{}{out.st}
		case "read":
			if !created || !out.known || out.st.captured != s.captured || out.st.cancelled != s.cancelled {
				return nil
			}
			return []interface{}{s}
		case "capture":
			if !created || s.cancelled {
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
				// its authorization as the mark that it was created.)
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
// the first attempt's start to the final answer; a request never answered
// definitively stays open forever (it may take effect at any later time).
func linHistory(calls []Call) []porcupine.Operation {
	eligible := map[string]bool{} // payments created with a definitive answer
	for i := range calls {
		c := &calls[i]
		if c.Op == "create_payment" && c.Acked() {
			if p, ok := settledBody(c.Body); ok && p.Authorized.Value > 0 {
				eligible[p.ID] = true
			}
		}
	}
	type group struct {
		first, last *Call
		final       *Call
	}
	groups := map[string]*group{}
	var order []string
	var ops []porcupine.Operation
	for i := range calls {
		c := &calls[i]
		switch c.Op {
		case "create_payment", "capture", "cancel":
		case "get_payment":
			if c.Status != 200 || !eligible[c.Target] {
				continue
			}
			p, ok := settledBody(c.Body)
			if !ok {
				continue
			}
			ops = append(ops, porcupine.Operation{Input: linOp{payment: c.Target, in: linInput{kind: "read"}},
				Output: linOutput{known: true, st: payState{authorized: p.Authorized.Value, captured: p.Captured.Value, cancelled: p.Status == txswitch.PaymentCancelled}},
				Call:   c.Start.UnixNano(), Return: c.End.UnixNano()})
			continue
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
		if c.Acked() && g.final == nil {
			g.final = c
		}
	}
	for _, k := range order {
		g := groups[k]
		c := g.first
		var op linOp
		switch c.Op {
		case "create_payment":
			if g.final == nil {
				continue
			}
			p, ok := settledBody(g.final.Body)
			if !ok || !eligible[p.ID] {
				continue
			}
			op = linOp{payment: p.ID, in: linInput{kind: "create"}}
			ops = append(ops, porcupine.Operation{Input: op,
				Output: linOutput{known: true, st: payState{authorized: p.Authorized.Value, captured: p.Captured.Value, cancelled: p.Status == txswitch.PaymentCancelled}},
				Call:   c.Start.UnixNano(), Return: g.final.End.UnixNano()})
			continue
		case "capture":
			amount := int64(-1)
			var req txswitch.CaptureRequest
			if json.Unmarshal(c.Req, &req) == nil && req.Amount != nil {
				amount = req.Amount.Value
			}
			op = linOp{payment: c.Target, in: linInput{kind: "capture", amount: amount}}
		case "cancel":
			op = linOp{payment: c.Target, in: linInput{kind: "cancel"}}
		}
		if !eligible[op.payment] {
			continue
		}
		// A definitive refusal (4xx) changed nothing: bad_input and
		// no_lost_writes judge those; the model leaves them out.
		if g.final == nil && g.last.Status >= 400 && g.last.Status < 500 {
			continue
		}
		o := porcupine.Operation{Input: op, Call: c.Start.UnixNano(), Return: math.MaxInt64, Output: linOutput{}}
		if g.final != nil {
			if p, ok := settledBody(g.final.Body); ok {
				o.Output = linOutput{known: true, st: payState{authorized: p.Authorized.Value, captured: p.Captured.Value, cancelled: p.Status == txswitch.PaymentCancelled}}
				o.Return = g.final.End.UnixNano()
			}
		}
		ops = append(ops, o)
	}
	return ops
}

func checkLinearizable(ev *Evidence) CheckResult {
	ops := linHistory(ev.Calls)
	if len(ops) == 0 {
		return result(CheckLinearizable, "no payment history to check", nil)
	}
	res, info := porcupine.CheckOperationsVerbose(payModel.ToModel(), ops, linTimeout)
	switch res {
	case porcupine.Ok:
		return result(CheckLinearizable, fmt.Sprintf("%d operations linearizable", len(ops)), nil)
	case porcupine.Unknown:
		return result(CheckLinearizable, fmt.Sprintf("%d operations: checker timed out after %v, verdict unknown", len(ops), linTimeout), nil)
	}
	_ = info
	var v []string
	v = append(v, fmt.Sprintf("the payment history is not linearizable (%d operations); the first payments involved:", len(ops)))
	v = append(v, illegalPayments(ops)...)
	return result(CheckLinearizable, "", v)
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
