package txswitch

import (
	"context"
	"fmt"
)

// MaxRefundReasonLen bounds a refund's reason.
const MaxRefundReasonLen = 500

// Capture captures (part of) an authorization.
func (s *Svc) Capture(ctx context.Context, c Caller, paymentID string, req CaptureRequest) (Reply, error) {
	return s.operate(ctx, c, paymentID, opCapture, req, func(p *paymentRec) (*cmdOpIntent, error) {
		rest := Money{Value: p.Authorized.Value - p.Captured.Value - p.PendingCapture, Currency: p.Amount.Currency}
		amount := rest
		if req.Amount != nil {
			if e := ValidateMoney(*req.Amount, "amount"); e != nil {
				return nil, e
			}
			amount = *req.Amount
		}
		// With or without an amount: the same state answers the same
		// way (a 422 "EUR 0.00 still authorized" for an amount said the
		// amount was wrong, when nothing would have been right). A
		// payment that is not authorized (held for review, pending,
		// declined, cancelled) says so, as apply would: "nothing left to
		// capture" reads as if it had been captured already.
		if e := notCapturable(p); e != nil {
			return nil, e
		}
		if rest.Value <= 0 {
			return nil, NewError(KindConflict, CodeInvalidState, "", "payment "+p.ID+" has nothing left to capture")
		}
		return &cmdOpIntent{Kind: opCapture, OpID: s.ids.New(PrefixCapture), Amount: amount}, nil
	})
}

// Refund refunds (part of) what was captured, from any channel.
func (s *Svc) Refund(ctx context.Context, c Caller, paymentID string, req RefundRequest) (Reply, error) {
	return s.operate(ctx, c, paymentID, opRefund, req, func(p *paymentRec) (*cmdOpIntent, error) {
		if len(req.Reason) > MaxRefundReasonLen {
			return nil, NewError(KindInvalid, "invalid_reason", "reason", fmt.Sprintf("reason is at most %d bytes of UTF-8", MaxRefundReasonLen))
		}
		if req.Channel != "" && !ValidChannel(req.Channel) {
			return nil, NewError(KindInvalid, "invalid_channel", "channel", fmt.Sprintf("channel %q must be online, pos or moto", req.Channel))
		}
		rest := Money{Value: p.Captured.Value - p.Refunded.Value - p.PendingRefund, Currency: p.Amount.Currency}
		amount := rest
		if req.Amount != nil {
			if e := ValidateMoney(*req.Amount, "amount"); e != nil {
				return nil, e
			}
			amount = *req.Amount
		}
		if e := notRefundable(p); e != nil {
			return nil, e
		}
		if rest.Value <= 0 {
			return nil, NewError(KindConflict, CodeInvalidState, "", "payment "+p.ID+" has nothing left to refund")
		}
		return &cmdOpIntent{Kind: opRefund, OpID: s.ids.New(PrefixRefund), Amount: amount, Reason: req.Reason, Channel: req.Channel}, nil
	})
}

// notCapturable is the 409 for capturing a payment in a status that takes
// no capture (the text opIntent's check answers), nil when it takes one.
func notCapturable(p *paymentRec) *Error {
	switch p.Status {
	case PaymentAuthorized, PaymentCaptured, PaymentPartiallyRefunded:
		return nil
	}
	return NewError(KindConflict, CodeInvalidState, "", "payment "+p.ID+" is "+p.Status+"; only an authorized payment can be captured")
}

// notRefundable is notCapturable for a refund.
func notRefundable(p *paymentRec) *Error {
	switch p.Status {
	case PaymentCaptured, PaymentPartiallyRefunded, PaymentRefunded: // refunded: "nothing left to refund" says it
		return nil
	}
	return NewError(KindConflict, CodeInvalidState, "", "payment "+p.ID+" is "+p.Status+"; only a captured payment can be refunded")
}

// Cancel voids an uncaptured authorization.
func (s *Svc) Cancel(ctx context.Context, c Caller, paymentID string) (Reply, error) {
	return s.operate(ctx, c, paymentID, opCancel, struct{}{}, func(p *paymentRec) (*cmdOpIntent, error) {
		return &cmdOpIntent{Kind: opCancel, OpID: cancelKey(p.ID, p.CancelAttempts+1)}, nil
	})
}

// operate runs an operation on a payment: intent → provider call →
// result, with the same ordering contract as payments. Captures, refunds
// and cancels never fail over: they belong to the authorizing provider.
func (s *Svc) operate(ctx context.Context, c Caller, paymentID, kind string, body any, build func(*paymentRec) (*cmdOpIntent, error)) (Reply, error) {
	if !s.log.Leadership().IsLeader {
		return Reply{}, errNotLeader()
	}
	p, err := s.readPayment(ctx, c, paymentID, false)
	if err != nil {
		return Reply{}, err
	}
	// The idempotency record is read AFTER the payment, as CreatePayment
	// does: apply writes an operation's intent and its record in one
	// batch, so a concurrent duplicate that sees the first request's
	// reservation also sees its record and is answered as a duplicate. Read
	// the other way round, a duplicate could find no record, then a payment
	// with nothing left to capture, and be refused 409 invalid_state.
	ref, stored, err := s.idemStart(c, kind, paymentID, body)
	if err != nil || stored != nil {
		return derefReply(stored), err
	}
	if kind == opCancel && p.Status == PaymentHeldForReview && s.VersionActive(VersionWithdrawHeld) {
		return s.withdrawHeld(ctx, c, p, ref)
	}
	cmd, err := build(p)
	if err != nil {
		return Reply{}, err
	}
	cmd.At, cmd.Idem, cmd.MerchantID, cmd.PaymentID = s.clock.Now(), ref, c.MerchantID, p.ID
	res, err := s.propose(ctx, cmdTypeOpIntent, cmd)
	if err != nil {
		return replyOf(res), err
	}
	if res.Open == nil {
		return res.Reply, nil
	}
	req, err := s.opCall(kind, res.Open, p)
	if err != nil {
		return Reply{}, err
	}
	result, perr, latency := s.callOpen(ctx, res.Open, p.Method, req)
	rc := &cmdOpResult{At: s.clock.Now(), Kind: kind, PaymentID: p.ID, OpID: res.Open.OpID, Source: sourceCall, LatencyMs: latency.Milliseconds()}
	classify(result, perr, &rc.Outcome, &rc.Result, &rc.ErrCode, &rc.ErrMessage)
	if rc.Outcome == outcomePending {
		// Operations have no redirect step; a pending answer is treated
		// as in doubt and settled by inquiry or notification.
		rc.Outcome = outcomeInDoubt
		rc.ErrCode = "pending"
	}
	dctx, cancel := s.detached(ctx)
	rres, err := s.proposeAnywhere(dctx, cmdTypeOpResult, rc)
	cancel()
	s.done(req.IdempotencyKey)
	if err != nil {
		return replyOf(rres), err
	}
	return rres.Reply, nil
}

// opCall is the provider request of an applied operation intent: as apply
// prepared it, or built from the intent record when it did not.
func (s *Svc) opCall(kind string, open *OpenCall, p *paymentRec) (ProviderRequest, error) {
	if open.request != nil {
		return *open.request, nil
	}
	d, err := loadInDoubt(s.store, open.Key)
	if err != nil || d == nil {
		return ProviderRequest{}, fmt.Errorf("%s %s: intent record missing after apply: %v", kind, open.OpID, err)
	}
	return opRequest(kind, d, p), nil
}
