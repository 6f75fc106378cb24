package txswitch

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

func isNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

// cancelKey is the provider idempotency key of a payment's n-th
// cancellation attempt. A declined or failed cancellation may be retried,
// and a retry must not reuse the key the provider answered before.
func cancelKey(paymentID string, n int) string { return paymentID + "/cancel/" + strconv.Itoa(n) }

// payLater reports methods whose refunds are credit notes (the shopper has
// not paid yet; the provider reduces the invoice).
func payLater(method string) bool { return strings.Contains(method, "paylater") }

// opIntent reserves a capture, refund or cancel on a payment and records
// the intent. All checks come first: a rejection writes nothing.
func (ac *applyCtx) opIntent(c *cmdOpIntent) (*ApplyResult, error) {
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
	if c.OpID == "" {
		return reject(KindInvalid, CodeInvalidCommand, "", "operation id is required"), nil
	}
	o, err := ac.loadOrder(p.OrderID)
	if err != nil {
		return nil, err
	}
	if o == nil {
		return nil, fmt.Errorf("payment %s: order %s missing", p.ID, p.OrderID)
	}
	if c.Kind != opCancel {
		if c.Amount.Currency != p.Amount.Currency {
			return reject(KindUnprocessable, CodeCurrencyMismatch, "amount.currency", "the amount must be in the payment's currency "+p.Amount.Currency), nil
		}
		if c.Amount.Value <= 0 {
			return reject(KindInvalid, CodeInvalidAmount, "amount.value", "amount must be greater than zero"), nil
		}
	}
	if c.Kind != opCancel && len(p.Captures)+len(p.Refunds) >= MaxOperationsPerPayment {
		return reject(KindConflict, CodeTooManyOperations, "",
			fmt.Sprintf("payment %s already has %d captures and refunds, the maximum", p.ID, MaxOperationsPerPayment)), nil
	}
	if p.PendingCancel != "" {
		return reject(KindConflict, CodeInvalidState, "", "payment "+p.ID+" is being cancelled"), nil
	}
	var key, typ, msg string
	amount := c.Amount
	switch c.Kind {
	case opCapture:
		if p.Status != PaymentAuthorized && p.Status != PaymentCaptured && p.Status != PaymentPartiallyRefunded {
			return reject(KindConflict, CodeInvalidState, "", "payment "+p.ID+" is "+p.Status+"; only an authorized payment can be captured"), nil
		}
		rest := p.Authorized.Value - p.Captured.Value - p.PendingCapture
		v, err := ac.version()
		if err != nil {
			return nil, err
		}
		if rest <= 0 && v >= VersionWithdrawHeld {
			// As the service answers when it sees it (ops.go): with
			// nothing left, no amount would have been right. A request
			// whose check raced another's capture ends here.
			return reject(KindConflict, CodeInvalidState, "", "payment "+p.ID+" has nothing left to capture"), nil
		}
		if amount.Value > rest {
			return reject(KindUnprocessable, CodeAmountExceedsAuthorized, "amount.value",
				fmt.Sprintf("capture of %s exceeds the %s still authorized", FormatMoney(amount), FormatMoney(Money{Value: rest, Currency: amount.Currency}))), nil
		}
		p.PendingCapture += amount.Value
		p.Captures = append(p.Captures, Capture{ID: c.OpID, PaymentID: p.ID, Amount: amount, Status: "pending", CreatedAt: c.At})
		key, typ = c.OpID, "capture_requested"
		msg = fmt.Sprintf("Capture %s of %s requested at %s.", c.OpID, FormatMoney(amount), p.Provider)
	case opRefund:
		if p.Status != PaymentCaptured && p.Status != PaymentPartiallyRefunded {
			return reject(KindConflict, CodeInvalidState, "", "payment "+p.ID+" is "+p.Status+"; only a captured payment can be refunded"), nil
		}
		rest := p.Captured.Value - p.Refunded.Value - p.PendingRefund
		v, err := ac.version()
		if err != nil {
			return nil, err
		}
		if rest <= 0 && v >= VersionWithdrawHeld {
			return reject(KindConflict, CodeInvalidState, "", "payment "+p.ID+" has nothing left to refund"), nil
		}
		if amount.Value > rest {
			return reject(KindUnprocessable, CodeAmountExceedsCaptured, "amount.value",
				fmt.Sprintf("refund of %s exceeds the %s captured and not refunded", FormatMoney(amount), FormatMoney(Money{Value: rest, Currency: amount.Currency}))), nil
		}
		ch := firstNonEmpty(c.Channel, o.Channel)
		p.PendingRefund += amount.Value
		p.Refunds = append(p.Refunds, Refund{ID: c.OpID, PaymentID: p.ID, OrderID: p.OrderID, Amount: amount,
			Reason: c.Reason, Channel: ch, Status: "pending", CreatedAt: c.At})
		key, typ = c.OpID, "refund_requested"
		msg = fmt.Sprintf("Refund %s of %s requested (channel %s, reason %q) at %s.", c.OpID, FormatMoney(amount), ch, c.Reason, p.Provider)
	case opCancel:
		v, err := ac.version()
		if err != nil {
			return nil, err
		}
		if rej := cancellable(p, v); rej != nil {
			return rej, nil
		}
		if want := cancelKey(p.ID, p.CancelAttempts+1); c.OpID != want {
			return reject(KindConflict, CodeInvalidState, "", "payment "+p.ID+" was cancelled concurrently; retry"), nil
		}
		// A void of the whole authorization, or (release) of what its
		// captures left: the rest that will never be captured.
		amount = Money{Value: p.Authorized.Value - p.Captured.Value, Currency: p.Authorized.Currency}
		p.PendingCancel = c.OpID
		p.CancelAttempts++
		if v >= VersionCancellation {
			p.Cancellation = &Cancellation{Attempt: p.CancelAttempts, Status: "pending", CreatedAt: c.At, UpdatedAt: c.At}
			if v >= VersionRelease {
				p.Cancellation.Amount = &Money{Value: amount.Value, Currency: amount.Currency}
			}
		}
		key, typ = c.OpID, "cancel_requested"
		msg = fmt.Sprintf("Cancellation of the %s authorization requested at %s.", FormatMoney(amount), p.Provider)
		if p.Captured.Value > 0 {
			msg = fmt.Sprintf("Release of the uncaptured %s of the %s authorization requested at %s (%s captured).",
				FormatMoney(amount), FormatMoney(p.Authorized), p.Provider, FormatMoney(p.Captured))
		}
	default:
		return reject(KindInvalid, CodeInvalidCommand, "", "unknown operation "+c.Kind), nil
	}
	d := inDoubtRec{Kind: c.Kind, Key: key, PaymentID: p.ID, OrderID: p.OrderID, MerchantID: p.MerchantID, OpID: c.OpID,
		Provider: p.Provider, Method: p.Method, Amount: amount, Country: p.Country, ProviderRef: p.ProviderRef, At: c.At, Idem: c.Idem}
	if err := ac.putInDoubt(&d); err != nil {
		return nil, err
	}
	if c.Kind != opCancel {
		if err := ac.indexOp(c.OpID, p.ID); err != nil {
			return nil, err
		}
	}
	if err := ac.event(o, c.At, typ, p.ID, msg, providerData{Op: c.Kind, Provider: p.Provider, Key: key, Amount: &amount}); err != nil {
		return nil, err
	}
	if _, err := ac.savePayment(p, c.At); err != nil {
		return nil, err
	}
	if c.Kind == opRefund {
		if err := ac.emitJSON("refund", p.MerchantID, p.OrderID, c.At, p.Refunds[len(p.Refunds)-1]); err != nil {
			return nil, err
		}
	}
	if err := ac.saveOrder(o, c.At); err != nil {
		return nil, err
	}
	if err := ac.idemPut(c.Idem, c.At, idemInProgress, nil); err != nil {
		return nil, err
	}
	req := opRequest(c.Kind, &d, p)
	return &ApplyResult{Open: &OpenCall{Kind: c.Kind, PaymentID: p.ID, OpID: c.OpID, Provider: p.Provider, Key: key, At: c.At, request: &req}}, nil
}

// cancellable refuses a cancel of p the cluster at version v cannot run:
// a void needs an uncaptured authorization; from VersionRelease, a payment
// part of whose authorization was captured releases the rest, once no
// capture is under way (its amount is not known to be captured or not).
func cancellable(p *paymentRec, v int) *ApplyResult {
	if p.Captured.Value == 0 {
		if p.Status != PaymentAuthorized || p.PendingCapture > 0 {
			return reject(KindConflict, CodeInvalidState, "", "payment "+p.ID+" is "+p.Status+"; only an uncaptured authorization can be cancelled")
		}
		return nil
	}
	switch {
	case v < VersionRelease:
		return reject(KindConflict, CodeInvalidState, "", "payment "+p.ID+" is "+p.Status+"; only an uncaptured authorization can be cancelled")
	case p.Status != PaymentCaptured && p.Status != PaymentPartiallyRefunded:
		return reject(KindConflict, CodeInvalidState, "", "payment "+p.ID+" is "+p.Status+"; its authorization cannot be released")
	case p.PendingCapture > 0:
		return reject(KindConflict, CodeInvalidState, "", "payment "+p.ID+" has a capture under way; release the rest of its authorization once that capture settled")
	case p.Captured.Value >= p.Authorized.Value:
		return reject(KindConflict, CodeInvalidState, "", "payment "+p.ID+" is captured in full; no authorization is left to release")
	}
	return nil
}

// settledStatus is a payment's status from its amounts once authorized.
// moneyRules is cluster version VersionMoneyRules: from it, a payment
// whose authorization is not all captured is not refunded (only
// partially), so the rest stays capturable.
func settledStatus(p *paymentRec, moneyRules bool) string {
	switch {
	case p.Captured.Value == 0:
		return PaymentAuthorized
	case p.Refunded.Value == 0:
		return PaymentCaptured
	case p.Refunded.Value >= p.Captured.Value && (!moneyRules || p.Captured.Value >= p.Authorized.Value):
		return PaymentRefunded
	}
	return PaymentPartiallyRefunded
}

func (ac *applyCtx) opResult(c *cmdOpResult) (*ApplyResult, error) {
	switch c.Outcome {
	case outcomeApproved, outcomeDeclined, outcomeNotFound, outcomeFailed, outcomeInDoubt:
	default:
		return reject(KindInvalid, CodeInvalidCommand, "", "unknown outcome "+c.Outcome), nil
	}
	p, o, rej, err := ac.loadPaymentAndOrder(c.PaymentID)
	if rej != nil || err != nil {
		return rej, err
	}
	d, err := ac.loadInDoubt(c.OpID)
	if err != nil {
		return nil, err
	}
	if d == nil || d.Kind != c.Kind || d.PaymentID != p.ID {
		res, err := ac.lateResult(o, p, c.At, c.Kind+" "+c.OpID, c.Source, c.Outcome, c.Result.Code)
		if err != nil {
			return nil, err
		}
		if res.Reply, err = currentOpReply(c.Kind, c.OpID, p); err != nil {
			return nil, err
		}
		return res, nil
	}
	mismatch, first, err := ac.checkAmount(o, p, d, c.At, c.Result.Amount, c.Result.ProviderRef, &c.Outcome, &c.ErrCode, &c.ErrMessage)
	if err != nil {
		return nil, err
	}
	if mismatch && first && d.InDoubt {
		// Already in doubt: keep the flag and the event, nothing else.
		if err := ac.putInDoubt(d); err != nil {
			return nil, err
		}
		if err := ac.putOrder(o); err != nil {
			return nil, err
		}
	}
	if c.Outcome == outcomeInDoubt && d.InDoubt {
		// Already in doubt; nothing new.
		reply, err := currentOpReply(c.Kind, c.OpID, p)
		if err != nil {
			return nil, err
		}
		return &ApplyResult{Reply: reply}, nil
	}
	v, err := ac.version()
	if err != nil {
		return nil, err
	}
	moneyRules := v >= VersionMoneyRules
	code := firstNonEmpty(c.Result.Code, c.ErrCode)
	pd := providerData{Op: c.Kind, Provider: d.Provider, Key: d.Key, Amount: &d.Amount, Outcome: c.Outcome, Code: code,
		Message: firstNonEmpty(c.Result.Message, c.ErrMessage), ProviderRef: c.Result.ProviderRef, LatencyMs: c.LatencyMs, Source: c.Source}
	ok := c.Outcome == outcomeApproved
	final := c.Outcome != outcomeInDoubt
	status := "failed"
	switch {
	case ok:
		status = "succeeded"
	case !final:
		status = PaymentInDoubt
	}
	var reply Reply
	var evType, evMsg string
	switch c.Kind {
	case opCapture:
		i := indexCapture(p.Captures, c.OpID)
		if i < 0 {
			return nil, fmt.Errorf("payment %s: capture %s in doubt index but not on payment", p.ID, c.OpID)
		}
		p.Captures[i].Status = status
		if final {
			p.PendingCapture -= d.Amount.Value
		}
		if ok {
			p.Captured.Value += d.Amount.Value
			p.Status = settledStatus(p, moneyRules)
		}
		evType = "capture_" + status
		evMsg = fmt.Sprintf("Capture %s of %s %s at %s.", c.OpID, FormatMoney(d.Amount), outcomeVerb(c.Outcome, code), d.Provider)
	case opRefund:
		i := indexRefund(p.Refunds, c.OpID)
		if i < 0 {
			return nil, fmt.Errorf("payment %s: refund %s in doubt index but not on payment", p.ID, c.OpID)
		}
		p.Refunds[i].Status = status
		if final {
			p.PendingRefund -= d.Amount.Value
		}
		if ok {
			p.Refunded.Value += d.Amount.Value
			p.Status = settledStatus(p, moneyRules)
		} else if final {
			p.Refunds[i].Failure = &Failure{Code: firstNonEmpty(code, c.Outcome), Message: firstNonEmpty(pd.Message, "the provider did not refund")}
		}
		evType = "refund_" + status
		evMsg = fmt.Sprintf("Refund %s of %s %s at %s.", c.OpID, FormatMoney(d.Amount), outcomeVerb(c.Outcome, code), d.Provider)
	case opCancel:
		if err := ac.recordCancellation(p, d, c, status, pd.Message); err != nil {
			return nil, err
		}
		if final {
			p.PendingCancel = ""
		}
		// No capture can start while the cancel is pending, so captures
		// now mean the intent was a release of d.Amount.
		release := p.Captured.Value > 0
		if ok && release {
			if d.Amount.Value > p.Authorized.Value-p.Captured.Value {
				return nil, fmt.Errorf("payment %s: release of %d exceeds the uncaptured %d", p.ID, d.Amount.Value, p.Authorized.Value-p.Captured.Value)
			}
			p.Authorized.Value -= d.Amount.Value
			rel := Money{Value: d.Amount.Value, Currency: d.Amount.Currency}
			if p.Released != nil {
				rel.Value += p.Released.Value
			}
			p.Released = &rel
			p.Status = settledStatus(p, moneyRules)
		} else if ok {
			p.Status = PaymentCancelled
			p.Authorized = Money{Currency: p.Amount.Currency}
		}
		evType = "cancel_" + status
		evMsg = fmt.Sprintf("Cancellation of the authorization %s at %s.", outcomeVerb(c.Outcome, code), d.Provider)
		if release {
			evMsg = fmt.Sprintf("Release of the uncaptured %s %s at %s.", FormatMoney(d.Amount), outcomeVerb(c.Outcome, code), d.Provider)
		}
	}
	if err := ac.event(o, c.At, evType, p.ID, evMsg, pd); err != nil {
		return nil, err
	}
	if ok && c.Kind == opRefund && payLater(p.Method) {
		if err := ac.event(o, c.At, "credit_note", p.ID,
			fmt.Sprintf("Refund %s on pay-later method %s recorded as a credit note of %s on the shopper's invoice.", c.OpID, p.Method, FormatMoney(d.Amount)),
			map[string]any{"refund_id": c.OpID, "amount": d.Amount}); err != nil {
			return nil, err
		}
	}
	if c.Source == sourceResolver && final {
		if err := ac.event(o, c.At, "resolved", p.ID, fmt.Sprintf("In-doubt %s %s resolved by status inquiry: %s.", c.Kind, c.OpID, c.Outcome),
			map[string]string{"provider": d.Provider, "outcome": c.Outcome, "key": d.Key}); err != nil {
			return nil, err
		}
	}
	if final {
		if err := ac.del(inDoubtKey(d.Key)); err != nil {
			return nil, err
		}
	} else {
		d.InDoubt = true
		if err := ac.putInDoubt(d); err != nil {
			return nil, err
		}
	}
	body, err := ac.savePayment(p, c.At)
	if err != nil {
		return nil, err
	}
	if c.Kind == opRefund {
		if err := ac.emitJSON("refund", p.MerchantID, p.OrderID, c.At, p.Refunds[indexRefund(p.Refunds, c.OpID)]); err != nil {
			return nil, err
		}
	}
	if err := ac.saveOrder(o, c.At); err != nil {
		return nil, err
	}
	switch {
	case c.Kind == opRefund:
		reply, err = jsonReply(201, p.Refunds[indexRefund(p.Refunds, c.OpID)])
	case ok || !final:
		st := 201
		if c.Kind == opCancel {
			st = 200
		}
		reply = Reply{Status: st, Body: body}
	case c.Kind == opCapture:
		reply = errorReply(NewError(KindUnprocessable, CodeCaptureFailed, "", evMsg))
	default:
		reply = errorReply(NewError(KindUnprocessable, CodeCancelFailed, "", evMsg))
	}
	if err != nil {
		return nil, err
	}
	// A final result answers the request. So does one in doubt from
	// VersionOperationReplay on: the caller hears "in doubt" now, and a
	// retry must hear the same (API.md), not whatever the inquiry finds
	// later; that is read from the payment.
	if !final && v < VersionOperationReplay {
		return &ApplyResult{Reply: reply}, nil
	}
	if err := ac.idemFinish(d.Idem, reply); err != nil {
		return nil, err
	}
	return &ApplyResult{Reply: reply}, nil
}

// recordCancellation sets the payment's cancellation to the result c of
// the cancellation d (status as opResult computed it), from cluster
// version VersionCancellation on.
func (ac *applyCtx) recordCancellation(p *paymentRec, d *inDoubtRec, c *cmdOpResult, status, message string) error {
	v, err := ac.version()
	if err != nil || v < VersionCancellation {
		return err
	}
	cn := p.Cancellation
	if cn == nil || cn.Attempt != p.CancelAttempts {
		// The intent was applied before the gate moved to the version
		// that records cancellations: start the record here.
		cn = &Cancellation{Attempt: p.CancelAttempts, CreatedAt: d.At}
		p.Cancellation = cn
	}
	cn.Status, cn.UpdatedAt = status, c.At
	if status == "failed" {
		cn.Failure = &Failure{Code: firstNonEmpty(c.Result.Code, c.ErrCode, c.Outcome), Message: firstNonEmpty(message, "the provider did not cancel the authorization")}
	}
	return nil
}

func outcomeVerb(outcome, code string) string {
	switch outcome {
	case outcomeApproved:
		return "succeeded"
	case outcomeDeclined:
		return "was declined (" + firstNonEmpty(code, "declined") + ")"
	case outcomeNotFound:
		return "was never received by the provider"
	case outcomeInDoubt:
		return "is in doubt (" + firstNonEmpty(code, "no answer") + ")"
	}
	return "failed (" + firstNonEmpty(code, "error") + ")"
}

// currentOpReply answers the caller of an operation whose own result
// changed nothing (another node's resolver settled the operation, or
// marked it in doubt, while the call was out: a leader change) with the
// operation as it now stands, in the shape its result would have had: the
// refund for a refund, the payment for a capture or cancel, a failed
// capture or cancel as the error it failed with. Never the bare payment
// for a refund: the client asked for a refund and reads a refund.
func currentOpReply(kind, opID string, p *paymentRec) (Reply, error) {
	switch kind {
	case opRefund:
		if i := indexRefund(p.Refunds, opID); i >= 0 {
			return jsonReply(201, p.Refunds[i])
		}
	case opCapture:
		if i := indexCapture(p.Captures, opID); i >= 0 && p.Captures[i].Status == "failed" {
			return errorReply(NewError(KindUnprocessable, CodeCaptureFailed, "", "capture "+opID+" failed at the provider")), nil
		}
		return paymentReply(201, p)
	case opCancel:
		if c := p.Cancellation; c != nil && c.Status == "failed" && p.Status != PaymentCancelled {
			return errorReply(NewError(KindUnprocessable, CodeCancelFailed, "", "the cancellation failed at the provider")), nil
		}
	}
	return paymentReply(200, p)
}

func indexCapture(cs []Capture, id string) int {
	for i := range cs {
		if cs[i].ID == id {
			return i
		}
	}
	return -1
}

func indexRefund(rs []Refund, id string) int {
	for i := range rs {
		if rs[i].ID == id {
			return i
		}
	}
	return -1
}
