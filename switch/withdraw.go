package txswitch

import (
	"context"
	"fmt"
)

// reviewWithdraw is the decision of a merchant who cancels a payment held
// for review (POST /v1/payments/{id}/cancel, from VersionWithdrawHeld).
// It is not a decision the admin review API takes: an operator rejects.
const reviewWithdraw = "withdraw"

// CodeCancelledByMerchant is the failure of a payment its merchant
// cancelled while it was held for review.
const CodeCancelledByMerchant = "cancelled_by_merchant"

// withdrawHeld cancels p, held for review, at its merchant's request. A
// held payment has not been sent to any provider, so nothing is voided:
// the payment is cancelled and the order takes another payment, as after
// a rejection. ref binds the request's Idempotency-Key to the answer.
func (s *Svc) withdrawHeld(ctx context.Context, c Caller, p *paymentRec, ref *idemRef) (Reply, error) {
	res, err := s.propose(ctx, cmdTypeReview, &cmdReview{
		At: s.clock.Now(), PaymentID: p.ID, Decision: reviewWithdraw, MerchantID: c.MerchantID, Idem: ref,
	})
	if err != nil {
		return replyOf(res), err
	}
	return res.Reply, nil
}

// withdraw applies reviewWithdraw.
func (ac *applyCtx) withdraw(c *cmdReview) (*ApplyResult, error) {
	v, err := ac.version()
	if err != nil {
		return nil, err
	}
	if v < VersionWithdrawHeld {
		return reject(KindInvalid, "invalid_decision", "decision", "decision must be approve or reject"), nil
	}
	if r, err := ac.idemCheck(c.Idem); r != nil || err != nil {
		return r, err
	}
	p, err := ac.loadPayment(c.PaymentID)
	if err != nil {
		return nil, err
	}
	if p == nil || p.MerchantID != c.MerchantID {
		return reject(KindNotFound, CodePaymentNotFound, "", "payment "+c.PaymentID+" not found"), nil
	}
	if p.Status != PaymentHeldForReview {
		// The review decided first (approved: it is being routed, or is
		// authorized by now; rejected: cancelled already).
		return reject(KindConflict, CodeInvalidState, "", "payment "+p.ID+" is "+p.Status+", no longer held for review; cancel it again to void it once it is authorized"), nil
	}
	o, err := ac.loadOrder(p.OrderID)
	if err != nil || o == nil {
		return nil, fmt.Errorf("payment %s: load order %s: %v", p.ID, p.OrderID, err)
	}
	p.Status = PaymentCancelled
	p.Failure = &Failure{Code: CodeCancelledByMerchant, Message: "cancelled by the merchant while held for review, before any provider was asked"}
	if err := ac.event(o, c.At, "review_withdrawn", p.ID, "The merchant cancelled the payment while it was held for review; no provider had been asked.", nil); err != nil {
		return nil, err
	}
	body, err := ac.savePayment(p, c.At)
	if err != nil {
		return nil, err
	}
	if err := ac.saveOrder(o, c.At); err != nil {
		return nil, err
	}
	reply := Reply{Status: 200, Body: body}
	if err := ac.idemPut(c.Idem, c.At, idemDone, &reply); err != nil {
		return nil, err
	}
	return &ApplyResult{Reply: reply}, nil
}
