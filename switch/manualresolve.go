package txswitch

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Manual resolution of a payment attempt in doubt.
//
// The resolver settles an attempt in doubt by asking its provider, and
// the provider's answer for a key does not change. When that answer is
// one the switch cannot book (an approval of another amount or currency
// than asked: amount_mismatch), the attempt stays in doubt for good and
// its order can take no other payment. An operator who has reconciled it
// with the provider (voided the odd authorization there, or had the
// provider correct it) settles it here: failed (nothing is held at the
// provider any more: the order is open again) or approved (the provider
// holds the amount asked: booked as any approval, under the reference of
// its odd approval). The note, required, says what was done; it lands on
// the timeline.
//
// From cluster version 9 (VersionOperationResolve) the same goes for a
// capture, refund or cancellation of the payment whose provider approved
// another amount than asked: ResolveRequest.Operation names it, failed
// means nothing moved at the provider (the reserved amount is free again,
// a refund or cancellation may be asked again), approved that the
// provider did the amount asked. The operation's own idempotency record
// is finished with the result, so a client retrying the capture or refund
// reads it.
//
// Only such an attempt qualifies. One in doubt because its provider has
// not answered yet is the resolver's: settled "failed" by hand, it would
// leave a request the provider may still process unfenced (only a status
// inquiry's not_found fences a key), and a second payment could then be
// charged beside it.

const (
	cmdTypeResolveManually   = "resolve_manually"
	cmdTypeResolveOpManually = "resolve_op_manually"
	// OperationCancellation in ResolveRequest.Operation names the
	// payment's latest cancellation (which has no id of its own).
	OperationCancellation = "cancellation"
	// maxOperationID bounds ResolveRequest.Operation (bytes).
	maxOperationID = 128
	// sourceOperator marks a result an operator recorded.
	sourceOperator = "operator"
	// CodeResolvedManually is the failure of an attempt an operator
	// resolved as failed.
	CodeResolvedManually = "resolved_manually"
	// ResolveApproved and ResolveFailed are the outcomes of
	// ResolveRequest.
	ResolveApproved = "approved"
	ResolveFailed   = "failed"
	// maxResolveNote bounds ResolveRequest.Note (bytes).
	maxResolveNote = 1000
)

// ResolveRequest is the body of POST /v1/admin/payments/{id}/resolve.
type ResolveRequest struct {
	Outcome string `json:"outcome"` // approved | failed
	Note    string `json:"note"`    // required: what the operator did at the provider
	// Operation, when set, names what to settle instead of the payment's
	// attempt: a capture (cap_...) or refund (ref_...) of the payment, or
	// "cancellation" for its latest cancellation.
	Operation string `json:"operation,omitempty"`
}

// cmdResolveManually settles attempt Attempt of a payment in doubt.
type cmdResolveManually struct {
	cmdHeader
	At        time.Time `json:"at"`
	PaymentID string    `json:"payment_id"`
	Attempt   int       `json:"attempt"`
	Outcome   string    `json:"outcome"`
	Note      string    `json:"note"`
}

// cmdResolveOpManually settles the operation OpID (its provider key) of
// kind Kind of a payment.
type cmdResolveOpManually struct {
	cmdHeader
	At        time.Time `json:"at"`
	PaymentID string    `json:"payment_id"`
	Kind      string    `json:"kind"`
	OpID      string    `json:"op_id"`
	Outcome   string    `json:"outcome"`
	Note      string    `json:"note"`
}

func errInvalidOperation() *Error {
	return NewError(KindInvalid, "invalid_operation", "operation", fmt.Sprintf("operation must be a capture or refund id of the payment, or %q", OperationCancellation))
}

func (r ResolveRequest) validate() *Error {
	if len(r.Operation) > maxOperationID || !utf8.ValidString(r.Operation) {
		return errInvalidOperation()
	}
	if r.Outcome != ResolveApproved && r.Outcome != ResolveFailed {
		return NewError(KindInvalid, "invalid_outcome", "outcome", "outcome must be approved or failed")
	}
	if r.Note == "" || len(r.Note) > maxResolveNote || !utf8.ValidString(r.Note) {
		return NewError(KindInvalid, "invalid_note", "note", fmt.Sprintf("note is required (at most %d bytes): say what was done at the provider", maxResolveNote))
	}
	return nil
}

// ResolvePayment settles a payment attempt in doubt by hand (admin only,
// any merchant's payment). Only a payment in doubt qualifies: one whose
// provider the resolver can still ask is settled by its answer.
func (s *Svc) ResolvePayment(ctx context.Context, paymentID string, req ResolveRequest) (Reply, error) {
	if !s.log.Leadership().IsLeader {
		return Reply{}, errNotLeader()
	}
	if e := req.validate(); e != nil {
		return Reply{}, e
	}
	if !s.VersionActive(VersionProviderAmount) {
		return Reply{}, NewError(KindConflict, CodeVersionNotSupported, "",
			fmt.Sprintf("resolving a payment by hand needs cluster version %d: every member must run a release that supports it", VersionProviderAmount))
	}
	if req.Operation != "" && !s.VersionActive(VersionOperationResolve) {
		return Reply{}, NewError(KindConflict, CodeVersionNotSupported, "",
			fmt.Sprintf("resolving a capture, refund or cancellation by hand needs cluster version %d: every member must run a release that supports it", VersionOperationResolve))
	}
	p, err := s.readPaymentIf(ctx, paymentID, true, func(*paymentRec) bool { return true })
	if err != nil {
		return Reply{}, err
	}
	if req.Operation != "" {
		return s.resolveOperation(ctx, p, req)
	}
	if p.Status != PaymentInDoubt || p.Open == nil {
		return Reply{}, NewError(KindConflict, CodeInvalidState, "", "payment "+p.ID+" is "+p.Status+"; only a payment in doubt is resolved by hand")
	}
	if s.isInflight(p.Open.Key) {
		return Reply{}, NewError(KindConflict, CodeInvalidState, "", "a call or status inquiry for payment "+p.ID+" is under way; retry once it ended")
	}
	res, err := s.propose(ctx, cmdTypeResolveManually, &cmdResolveManually{At: s.clock.Now(), PaymentID: p.ID, Attempt: p.Open.N,
		Outcome: req.Outcome, Note: req.Note})
	if err != nil {
		return replyOf(res), err
	}
	r := res.Reply
	r.Status = 200
	return r, nil
}

// resolveOperation settles the operation req names of payment p.
func (s *Svc) resolveOperation(ctx context.Context, p *paymentRec, req ResolveRequest) (Reply, error) {
	var kind, key, what, status string
	switch {
	case req.Operation == OperationCancellation:
		if p.PendingCancel == "" || p.Cancellation == nil {
			return Reply{}, NewError(KindConflict, CodeInvalidState, "operation", "payment "+p.ID+" has no cancellation under way; only an operation in doubt is resolved by hand")
		}
		kind, key, what, status = opCancel, p.PendingCancel, "the cancellation", p.Cancellation.Status
	case strings.HasPrefix(req.Operation, PrefixCapture+"_"):
		i := indexCapture(p.Captures, req.Operation)
		if i < 0 {
			return Reply{}, NewError(KindNotFound, CodeOperationNotFound, "operation", "payment "+p.ID+" has no capture "+req.Operation)
		}
		kind, key, what, status = opCapture, req.Operation, "capture "+req.Operation, p.Captures[i].Status
	case strings.HasPrefix(req.Operation, PrefixRefund+"_"):
		i := indexRefund(p.Refunds, req.Operation)
		if i < 0 {
			return Reply{}, NewError(KindNotFound, CodeOperationNotFound, "operation", "payment "+p.ID+" has no refund "+req.Operation)
		}
		kind, key, what, status = opRefund, req.Operation, "refund "+req.Operation, p.Refunds[i].Status
	default:
		return Reply{}, errInvalidOperation()
	}
	if status != PaymentInDoubt {
		return Reply{}, NewError(KindConflict, CodeInvalidState, "operation", fmt.Sprintf("%s of payment %s is %s; only an operation in doubt is resolved by hand", what, p.ID, status))
	}
	if s.isInflight(key) {
		return Reply{}, NewError(KindConflict, CodeInvalidState, "operation", fmt.Sprintf("a call or status inquiry for %s of payment %s is under way; retry once it ended", what, p.ID))
	}
	res, err := s.propose(ctx, cmdTypeResolveOpManually, &cmdResolveOpManually{At: s.clock.Now(), PaymentID: p.ID, Kind: kind, OpID: key,
		Outcome: req.Outcome, Note: req.Note})
	if err != nil {
		return replyOf(res), err
	}
	return res.Reply, nil
}

func (ac *applyCtx) resolveManually(c *cmdResolveManually) (*ApplyResult, error) {
	v, err := ac.version()
	if err != nil {
		return nil, err
	}
	if v < VersionProviderAmount {
		return reject(KindConflict, CodeVersionNotSupported, "", "resolve_manually needs cluster version 7"), nil
	}
	if e := (ResolveRequest{Outcome: c.Outcome, Note: c.Note}).validate(); e != nil {
		return &ApplyResult{Err: e}, nil
	}
	p, o, rej, err := ac.loadPaymentAndOrder(c.PaymentID)
	if rej != nil || err != nil {
		return rej, err
	}
	if p.Status != PaymentInDoubt || p.Open == nil || p.Open.N != c.Attempt {
		return reject(KindConflict, CodeInvalidState, "", "payment "+p.ID+" is "+p.Status+"; only a payment in doubt is resolved by hand"), nil
	}
	open := *p.Open
	d, err := ac.loadInDoubt(open.Key)
	if err != nil {
		return nil, err
	}
	if d == nil || !d.AmountMismatch {
		return reject(KindConflict, CodeInvalidState, "",
			"attempt "+strconv.Itoa(open.N)+" of payment "+p.ID+" waits for its provider's answer, which the resolver asks for; only an answer the switch cannot book (amount_mismatch) is settled by hand"), nil
	}
	msg := fmt.Sprintf("An operator resolved attempt %d at %s (key %s) as %s: %s.", open.N, open.Provider, open.Key, c.Outcome, c.Note)
	data := map[string]any{"provider": open.Provider, "key": open.Key, "attempt": open.N, "outcome": c.Outcome, "note": c.Note}
	if c.Outcome == ResolveApproved {
		// Booked as the provider's approval of the amount asked, through
		// the path every approval takes; the order is then saved by it.
		res, err := ac.paymentResult(&cmdPaymentResult{At: c.At, PaymentID: p.ID, Attempt: open.N, Source: sourceOperator,
			Outcome: outcomeApproved, Result: ProviderResult{Outcome: OutcomeApproved, ProviderRef: d.ProviderRef}})
		if err != nil || res.Err != nil {
			return res, err
		}
		if o, err = ac.loadOrder(p.OrderID); err != nil {
			return nil, err
		}
		if err := ac.event(o, c.At, "resolved_manually", p.ID, msg, data); err != nil {
			return nil, err
		}
		return res, ac.putOrder(o)
	}
	p.Status = PaymentFailed
	p.Failure = &Failure{Code: CodeResolvedManually, Message: fmt.Sprintf("an operator resolved attempt %d at %s as failed: %s", open.N, open.Provider, c.Note)}
	p.Open = nil
	if err := ac.del(inDoubtKey(open.Key)); err != nil {
		return nil, err
	}
	if err := ac.event(o, c.At, "resolved_manually", p.ID, msg, data); err != nil {
		return nil, err
	}
	reply, err := ac.storeSettled(o, p, c.At, true)
	if err != nil {
		return nil, err
	}
	return &ApplyResult{Reply: reply}, nil
}

// resolveOpManually settles an operation in doubt whose provider approved
// another amount than asked, through the path every operation result
// takes (opResult: the reserved amount, the payment's totals and status,
// the operation's idempotency record), then records the operator's note.
// The admin who asked reads the payment.
func (ac *applyCtx) resolveOpManually(c *cmdResolveOpManually) (*ApplyResult, error) {
	v, err := ac.version()
	if err != nil {
		return nil, err
	}
	if v < VersionOperationResolve {
		return reject(KindConflict, CodeVersionNotSupported, "", fmt.Sprintf("resolve_op_manually needs cluster version %d", VersionOperationResolve)), nil
	}
	if e := (ResolveRequest{Outcome: c.Outcome, Note: c.Note}).validate(); e != nil {
		return &ApplyResult{Err: e}, nil
	}
	p, _, rej, err := ac.loadPaymentAndOrder(c.PaymentID)
	if rej != nil || err != nil {
		return rej, err
	}
	d, err := ac.loadInDoubt(c.OpID)
	if err != nil {
		return nil, err
	}
	if d == nil || d.Kind != c.Kind || d.PaymentID != p.ID || !d.InDoubt {
		return reject(KindConflict, CodeInvalidState, "", fmt.Sprintf("no %s %s of payment %s is in doubt; only an operation in doubt is resolved by hand", c.Kind, c.OpID, p.ID)), nil
	}
	if !d.AmountMismatch {
		return reject(KindConflict, CodeInvalidState, "",
			fmt.Sprintf("%s %s of payment %s waits for its provider's answer, which the resolver asks for; only an answer the switch cannot book (amount_mismatch) is settled by hand", c.Kind, c.OpID, p.ID)), nil
	}
	msg := fmt.Sprintf("An operator resolved %s %s at %s (key %s) as %s: %s.", c.Kind, c.OpID, d.Provider, d.Key, c.Outcome, c.Note)
	rc := &cmdOpResult{At: c.At, Kind: c.Kind, PaymentID: p.ID, OpID: c.OpID, Source: sourceOperator}
	if c.Outcome == ResolveApproved {
		rc.Outcome, rc.Result = outcomeApproved, ProviderResult{Outcome: OutcomeApproved, ProviderRef: d.ProviderRef}
	} else {
		rc.Outcome, rc.ErrCode = outcomeFailed, CodeResolvedManually
		rc.ErrMessage = fmt.Sprintf("an operator resolved %s %s at %s as failed: %s", c.Kind, c.OpID, d.Provider, c.Note)
	}
	res, err := ac.opResult(rc)
	if err != nil || res.Err != nil {
		return res, err
	}
	o, err := ac.loadOrder(p.OrderID)
	if err != nil {
		return nil, err
	}
	data := map[string]any{"provider": d.Provider, "key": d.Key, "operation": c.Kind, "op_id": c.OpID, "outcome": c.Outcome, "note": c.Note}
	if err := ac.event(o, c.At, "resolved_manually", p.ID, msg, data); err != nil {
		return nil, err
	}
	if err := ac.putOrder(o); err != nil {
		return nil, err
	}
	if p, err = ac.loadPayment(p.ID); err != nil {
		return nil, err
	}
	body, err := encodePayment(&p.Payment)
	if err != nil {
		return nil, fmt.Errorf("encode payment %s: %w", p.ID, err)
	}
	return &ApplyResult{Reply: Reply{Status: 200, Body: body}}, nil
}
