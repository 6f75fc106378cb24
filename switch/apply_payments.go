package txswitch

import (
	"fmt"
	"strconv"
	"time"
)

// Capture modes.
const (
	CaptureAutomatic = "automatic"
	CaptureManual    = "manual"
)

func attemptKey(paymentID string, n int) string { return paymentID + "/" + strconv.Itoa(n) }

func paymentReply(status int, p *paymentRec) (Reply, error) {
	body, err := encodePayment(&p.Payment)
	if err != nil {
		return Reply{}, err
	}
	return Reply{Status: status, Body: body}, nil
}

// routingData is the timeline data of a routing decision.
type routingData struct {
	Method     string           `json:"method"`
	Attempt    int              `json:"attempt"`
	Provider   string           `json:"provider,omitempty"`
	Candidates []RouteCandidate `json:"candidates"`
	NoRoute    string           `json:"no_route,omitempty"`
}

// providerData is the timeline data of a provider request or response.
type providerData struct {
	Op          string `json:"op"`
	Provider    string `json:"provider"`
	Key         string `json:"idempotency_key"`
	Attempt     int    `json:"attempt,omitempty"`
	Amount      *Money `json:"amount,omitempty"`
	Outcome     string `json:"outcome,omitempty"`
	Code        string `json:"code,omitempty"`
	Message     string `json:"message,omitempty"`
	ProviderRef string `json:"provider_ref,omitempty"`
	LatencyMs   int64  `json:"latency_ms"`
	Source      string `json:"source,omitempty"`
}

func (ac *applyCtx) paymentIntent(c *cmdPaymentIntent) (*ApplyResult, error) {
	if r, err := ac.idemCheck(c.Idem); r != nil || err != nil {
		return r, err
	}
	o, err := ac.loadOrder(c.OrderID)
	if err != nil {
		return nil, err
	}
	if o == nil || o.MerchantID != c.MerchantID {
		return reject(KindNotFound, CodeOrderNotFound, "", "order "+c.OrderID+" not found"), nil
	}
	v, err := ac.version()
	if err != nil {
		return nil, err
	}
	if orderExpiredAt(o, c.At, v >= VersionMoneyRules) {
		return reject(KindConflict, CodeOrderExpired, "",
			fmt.Sprintf("order %s expired unpaid at %s; create a new order", o.ID, o.ExpiresAt.UTC().Format(time.RFC3339))), nil
	}
	if c.PaymentID == "" || c.Method == "" {
		return reject(KindInvalid, CodeInvalidCommand, "", "payment id and method are required"), nil
	}
	if p, err := ac.loadPayment(c.PaymentID); err != nil || p != nil {
		if err != nil {
			return nil, err
		}
		return reject(KindConflict, CodeInvalidCommand, "", "payment "+c.PaymentID+" exists"), nil
	}
	if c.Amount.Currency != o.Amount.Currency || c.Surcharge.Currency != o.Amount.Currency {
		return reject(KindUnprocessable, CodeCurrencyMismatch, "amount.currency",
			fmt.Sprintf("the payment must be in the order's currency %s", o.Amount.Currency)), nil
	}
	if c.Amount.Value <= 0 || c.Surcharge.Value < 0 {
		return reject(KindInvalid, CodeInvalidAmount, "amount.value", "amount must be greater than zero"), nil
	}
	if c.CaptureMode != CaptureAutomatic && c.CaptureMode != CaptureManual {
		return reject(KindInvalid, CodeInvalidCommand, "capture", "capture must be automatic or manual"), nil
	}
	ps, err := ac.orderPayments(o)
	if err != nil {
		return nil, err
	}
	if len(ps) >= MaxPaymentsPerOrder {
		return reject(KindConflict, CodeTooManyPayments, "",
			fmt.Sprintf("order %s already has %d payment attempts, the maximum; create a new order", o.ID, len(ps))), nil
	}
	for _, p := range ps {
		if unsettled(p.Status) {
			return reject(KindConflict, CodePaymentInProgress, "",
				fmt.Sprintf("payment %s of this order is still %s; wait for it to finish", p.ID, p.Status)), nil
		}
	}
	if open := openAmount(o, ps); c.Amount.Value > open {
		return reject(KindUnprocessable, CodeAmountExceedsOpen, "amount.value",
			fmt.Sprintf("amount %s exceeds the order's open amount %s", FormatMoney(c.Amount), FormatMoney(Money{Value: open, Currency: o.Amount.Currency}))), nil
	}

	zero := Money{Currency: o.Amount.Currency}
	p := &paymentRec{
		Payment: Payment{
			ID: c.PaymentID, OrderID: o.ID, MerchantID: o.MerchantID, Method: c.Method,
			Amount: c.Amount, Authorized: zero, Captured: zero, Refunded: zero,
			CaptureMode: c.CaptureMode, CreatedAt: c.At,
		},
		paymentExtra: paymentExtra{
			Country:     o.Customer.Country,
			PaymentData: c.PaymentData,
			Candidates:  c.Candidates,
			Idem:        c.Idem,
		},
	}
	if c.Surcharge.Value > 0 {
		s := c.Surcharge
		p.Surcharge = &s
	}
	if err := ac.b.Set(orderPaymentKey(o.ID, o.NumPayments), []byte(p.ID)); err != nil {
		return nil, fmt.Errorf("index payment: %w", err)
	}
	o.NumPayments++
	if o.idsKnown { // it is: orderPayments above made the ids known
		o.paymentIDs = append(o.paymentIDs, p.ID)
	}

	res := &ApplyResult{}
	switch {
	case c.HoldRule != "":
		p.Status = PaymentHeldForReview
		if err := ac.event(o, c.At, "held_for_review", p.ID,
			fmt.Sprintf("Payment of %s by %s held for manual review (fraud rule %q); no provider was called.", FormatMoney(p.Amount), c.Method, c.HoldRule),
			map[string]string{"rule": c.HoldRule}); err != nil {
			return nil, err
		}
	default:
		if err := ac.openOrFail(o, p, c.At, c.Provider, c.Candidates, c.NoRoute, res); err != nil {
			return nil, err
		}
	}
	if res.Open == nil {
		p.Idem = nil // answered now: nothing left to finish
	}
	body, err := ac.savePayment(p, c.At)
	if err != nil {
		return nil, err
	}
	if err := ac.saveOrder(o, c.At); err != nil {
		return nil, err
	}
	if res.Open != nil {
		res.Open.request, res.Open.candidates = paymentRequest(p, res.Open.Key), p.Candidates
		// The reply comes with the result; until then retries see 409.
		return res, ac.idemPut(c.Idem, c.At, idemInProgress, nil)
	}
	reply := Reply{Status: 201, Body: body}
	res.Reply = reply
	return res, ac.idemPut(c.Idem, c.At, idemDone, &reply)
}

// openOrFail records the routing decision and opens the next attempt at
// provider, or fails the payment when no provider is usable.
func (ac *applyCtx) openOrFail(o *orderRec, p *paymentRec, at time.Time, provider string, cands []RouteCandidate, noRoute string, res *ApplyResult) error {
	n := p.Attempt + 1
	if err := ac.event(o, at, "routing_decision", p.ID, routingMessage(p.Method, n, provider, cands, noRoute),
		routingData{Method: p.Method, Attempt: n, Provider: provider, Candidates: cands, NoRoute: noRoute}); err != nil {
		return err
	}
	if provider == "" {
		p.Status = PaymentFailed
		msg := "no provider is available for " + p.Method
		if noRoute != "" {
			msg += ": " + noRoute
		}
		p.Failure = &Failure{Code: CodeNoProviderAvailable, Message: msg}
		return ac.event(o, at, "payment_failed", p.ID, "Payment failed: "+msg+".", p.Failure)
	}
	p.Attempt = n
	p.Provider = provider
	p.Status = PaymentPending
	p.Candidates = cands
	key := attemptKey(p.ID, n)
	p.Open = &openAttempt{N: n, Provider: provider, Key: key, At: at}
	total := p.Amount
	if p.Surcharge != nil {
		total.Value += p.Surcharge.Value
	}
	d := inDoubtRec{Kind: "payment", Key: key, PaymentID: p.ID, OrderID: p.OrderID, MerchantID: p.MerchantID,
		Attempt: n, Provider: provider, Method: p.Method, Amount: total, Country: p.Country,
		Capture: p.CaptureMode == CaptureAutomatic, At: at, Idem: p.Idem}
	if err := ac.putInDoubt(&d); err != nil {
		return err
	}
	res.Open = &OpenCall{Kind: "payment", PaymentID: p.ID, Attempt: n, Provider: provider, Key: key, At: at}
	return ac.event(o, at, "provider_request", p.ID,
		fmt.Sprintf("Sent %s of %s to %s (attempt %d, key %s).", opWord(OpAuthorize, d.Capture), FormatMoney(total), provider, n, key),
		providerData{Op: string(OpAuthorize), Provider: provider, Key: key, Attempt: n, Amount: &total})
}

func opWord(op ProviderOp, capture bool) string {
	if op == OpAuthorize && capture {
		return "authorization with capture"
	}
	return map[ProviderOp]string{OpAuthorize: "authorization", OpCapture: "capture", OpRefund: "refund", OpCancel: "cancellation", OpStatus: "status inquiry"}[op]
}

func (ac *applyCtx) paymentResult(c *cmdPaymentResult) (*ApplyResult, error) {
	p, o, rej, err := ac.loadPaymentAndOrder(c.PaymentID)
	if rej != nil || err != nil {
		return rej, err
	}
	switch c.Outcome {
	case outcomeApproved, outcomeDeclined, outcomePending, outcomeNotFound, outcomeFailed, outcomeInDoubt:
	default:
		return reject(KindInvalid, CodeInvalidCommand, "", "unknown outcome "+c.Outcome), nil
	}
	if p.Open == nil || p.Open.N != c.Attempt {
		return ac.lateResult(o, p, c.At, fmt.Sprintf("attempt %d", c.Attempt), c.Source, c.Outcome, c.Result.Code)
	}
	open := *p.Open
	d, err := ac.loadInDoubt(open.Key)
	if err != nil {
		return nil, err
	}
	if d != nil {
		mismatch, first, err := ac.checkAmount(o, p, d, c.At, c.Result.Amount, c.Result.ProviderRef, &c.Outcome, &c.ErrCode, &c.ErrMessage)
		if err != nil {
			return nil, err
		}
		if mismatch && !first && p.Status == PaymentInDoubt {
			// The same answer again (the resolver asks on): nothing new.
			reply, err := paymentReply(201, p)
			return &ApplyResult{Reply: reply}, err
		}
	}
	pd := providerData{Op: string(OpAuthorize), Provider: open.Provider, Key: open.Key, Attempt: open.N,
		Outcome: c.Outcome, Code: firstNonEmpty(c.Result.Code, c.ErrCode), Message: firstNonEmpty(c.Result.Message, c.ErrMessage),
		ProviderRef: c.Result.ProviderRef, LatencyMs: c.LatencyMs, Source: c.Source}
	if err := ac.event(o, c.At, resultEventType(c.Source), p.ID, responseMessage(open.Provider, c.Source, c.Outcome, pd.Code, pd.Message, c.LatencyMs), pd); err != nil {
		return nil, err
	}
	res := &ApplyResult{}
	final, answered := true, false
	switch c.Outcome {
	case outcomeApproved:
		total := p.Amount
		if p.Surcharge != nil {
			total.Value += p.Surcharge.Value
		}
		p.Authorized = total
		p.Status = PaymentAuthorized
		if p.CaptureMode == CaptureAutomatic {
			p.Captured = total
			p.Status = PaymentCaptured
		}
		p.ProviderRef = c.Result.ProviderRef
		p.Failure = nil
		p.RedirectURL = ""
		if err := ac.markProvider(open.Provider, p.ID, c.At); err != nil {
			return nil, err
		}
	case outcomeDeclined:
		p.Status = PaymentDeclined
		p.Failure = &Failure{Code: firstNonEmpty(c.Result.Code, "declined"), Message: firstNonEmpty(c.Result.Message, "the provider declined the payment")}
	case outcomeNotFound:
		p.Status = PaymentFailed
		p.Failure = &Failure{Code: CodeProviderNeverReceived,
			Message: fmt.Sprintf("%s never received attempt %d; no money moved and the order is open for another payment", open.Provider, open.N)}
	case outcomePending:
		p.Status = PaymentPending
		p.RedirectURL = c.Result.RedirectURL
		if d != nil {
			d.Pending = true
			if err := ac.putInDoubt(d); err != nil {
				return nil, err
			}
		}
		// A pending answer is a final answer to the request: the shopper
		// needs the redirect now; the notification completes it later.
		final = false
		answered = true
	case outcomeInDoubt:
		p.Status = PaymentInDoubt
		if d != nil {
			d.InDoubt = true
			if err := ac.putInDoubt(d); err != nil {
				return nil, err
			}
		}
		if err := ac.event(o, c.At, "in_doubt", p.ID,
			fmt.Sprintf("%s did not answer attempt %d definitively (%s); the payment is in doubt and will be resolved by a status inquiry, never by charging again.", open.Provider, open.N, firstNonEmpty(c.ErrCode, "no answer")),
			map[string]string{"provider": open.Provider, "code": c.ErrCode, "key": open.Key}); err != nil {
			return nil, err
		}
		// The client is answered "in doubt" now, and API.md binds a retry
		// with the same key to the same status and body as the first
		// answer: the record is finished with this reply. The resolved
		// outcome is read with GET /v1/payments/{id}.
		final = false
		answered = true
	case outcomeFailed:
		if c.Next != nil && c.Next.Provider != "" {
			if err := ac.event(o, c.At, "failover", p.ID,
				fmt.Sprintf("%s failed definitively (%s) without processing attempt %d; failing over to %s.", open.Provider, firstNonEmpty(c.ErrCode, "error"), open.N, c.Next.Provider),
				map[string]string{"from": open.Provider, "to": c.Next.Provider, "code": c.ErrCode}); err != nil {
				return nil, err
			}
			if err := ac.del(inDoubtKey(open.Key)); err != nil {
				return nil, err
			}
			p.Open = nil
			if err := ac.openOrFail(o, p, c.At, c.Next.Provider, c.Next.Candidates, "", res); err != nil {
				return nil, err
			}
			final = false
			break
		}
		p.Status = PaymentFailed
		p.Failure = &Failure{Code: CodeNoProviderAvailable,
			Message: fmt.Sprintf("no provider could take the payment; the last, %s, failed with %s", open.Provider, firstNonEmpty(c.ErrCode, "an error"))}
		if err := ac.event(o, c.At, "payment_failed", p.ID, "Payment failed: "+p.Failure.Message+".", p.Failure); err != nil {
			return nil, err
		}
	}
	if final {
		p.Open = nil
		if err := ac.del(inDoubtKey(open.Key)); err != nil {
			return nil, err
		}
		if c.Source == sourceResolver {
			if err := ac.event(o, c.At, "resolved", p.ID,
				fmt.Sprintf("In-doubt attempt %d at %s resolved by status inquiry: %s.", open.N, open.Provider, c.Outcome),
				map[string]string{"provider": open.Provider, "outcome": c.Outcome, "key": open.Key}); err != nil {
				return nil, err
			}
		}
	}
	if res.Reply, err = ac.storeSettled(o, p, c.At, final || answered); err != nil {
		return nil, err
	}
	if res.Open != nil {
		res.Open.request, res.Open.candidates = paymentRequest(p, res.Open.Key), p.Candidates
	}
	return res, nil
}

// storeSettled stores p and its order o after a result and returns the
// payment as the reply. When answered, the request that created the
// payment is answered now: its idempotency record is finished with that
// reply and the payment forgets it (Idem is not part of the Payment
// resource, so the payment is stored once, without it).
func (ac *applyCtx) storeSettled(o *orderRec, p *paymentRec, at time.Time, answered bool) (Reply, error) {
	var finish *idemRef
	if answered && p.Idem != nil {
		finish, p.Idem = p.Idem, nil
	}
	body, err := ac.savePayment(p, at)
	if err != nil {
		return Reply{}, err
	}
	if err := ac.saveOrder(o, at); err != nil {
		return Reply{}, err
	}
	reply := Reply{Status: 201, Body: body}
	if finish != nil {
		if err := ac.idemFinish(finish, reply); err != nil {
			return Reply{}, err
		}
	}
	return reply, nil
}

func resultEventType(source string) string {
	if source == sourceNotification {
		return "notification"
	}
	return "provider_response"
}

// lateResult records a result for something no longer open and changes
// nothing else. Its reply is the payment as settled, 201 as the call that
// created it would have had (and as the stored idempotent reply has): the
// caller whose own result came late asked POST /payments, and a status
// that depends on who settled first would tell it something else
// happened. Operations replace the reply with their own (currentOpReply).
func (ac *applyCtx) lateResult(o *orderRec, p *paymentRec, at time.Time, what, source, outcome, code string) (*ApplyResult, error) {
	if err := ac.event(o, at, "late_result_ignored", p.ID,
		fmt.Sprintf("Ignored a late %s result (%s) for %s: it is no longer open (payment is %s).", source, outcome, what, p.Status),
		map[string]string{"what": what, "source": source, "outcome": outcome, "code": code}); err != nil {
		return nil, err
	}
	if err := ac.putOrder(o); err != nil {
		return nil, err
	}
	reply, err := paymentReply(201, p)
	if err != nil {
		return nil, err
	}
	return &ApplyResult{Reply: reply, Late: true}, nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// Review decisions.
const (
	ReviewApprove = "approve"
	ReviewReject  = "reject"
)

func (ac *applyCtx) review(c *cmdReview) (*ApplyResult, error) {
	if c.Decision == reviewWithdraw {
		return ac.withdraw(c)
	}
	p, err := ac.loadPayment(c.PaymentID)
	if err != nil {
		return nil, err
	}
	if p == nil {
		return reject(KindNotFound, CodePaymentNotFound, "", "payment "+c.PaymentID+" not found"), nil
	}
	if p.Status != PaymentHeldForReview {
		return reject(KindConflict, CodeInvalidState, "", "payment "+p.ID+" is "+p.Status+", not held for review"), nil
	}
	if c.Decision != ReviewApprove && c.Decision != ReviewReject {
		return reject(KindInvalid, "invalid_decision", "decision", "decision must be approve or reject"), nil
	}
	o, err := ac.loadOrder(p.OrderID)
	if err != nil || o == nil {
		return nil, fmt.Errorf("payment %s: load order %s: %v", p.ID, p.OrderID, err)
	}
	v, err := ac.version()
	if err != nil {
		return nil, err
	}
	if c.Decision == ReviewApprove && v >= VersionProviderAmount && o.Status == OrderHeldForReview && o.ExpiresAt != nil && !c.At.Before(*o.ExpiresAt) {
		// The shopper's checkout is long gone: charging now would surprise
		// them. (An order partly paid by other payments is authorized,
		// not held_for_review: it does not expire, and its held part may
		// still be approved.)
		return reject(KindConflict, CodeOrderExpired, "",
			fmt.Sprintf("order %s expired at %s; its held payment can only be rejected", o.ID, o.ExpiresAt.UTC().Format(time.RFC3339))), nil
	}
	res := &ApplyResult{}
	if c.Decision == ReviewReject {
		p.Status = PaymentCancelled
		p.Failure = &Failure{Code: CodeReviewRejected, Message: firstNonEmpty(c.Note, "rejected in manual review")}
		if err := ac.event(o, c.At, "review_rejected", p.ID, "Manual review rejected the payment: "+p.Failure.Message+".", map[string]string{"note": c.Note}); err != nil {
			return nil, err
		}
	} else {
		if err := ac.event(o, c.At, "review_approved", p.ID, "Manual review approved the payment; routing it to a provider.", map[string]string{"note": c.Note}); err != nil {
			return nil, err
		}
		if err := ac.openOrFail(o, p, c.At, c.Provider, c.Candidates, c.NoRoute, res); err != nil {
			return nil, err
		}
	}
	body, err := ac.savePayment(p, c.At)
	if err != nil {
		return nil, err
	}
	if err := ac.saveOrder(o, c.At); err != nil {
		return nil, err
	}
	res.Reply = Reply{Status: 200, Body: body}
	if res.Open != nil {
		res.Open.request, res.Open.candidates = paymentRequest(p, res.Open.Key), p.Candidates
	}
	return res, nil
}

// notify applies a provider's asynchronous report, once per notification id
// (the dedupe marker expires after the idempotency retention from cluster
// version 7; a report for a key with nothing open is recorded when the key
// names a known payment, also from version 7: notifications.go).
func (ac *applyCtx) notify(c *cmdNotify) (*ApplyResult, error) {
	n := c.Notification
	if n.NotificationID == "" || n.IdempotencyKey == "" || c.Provider == "" {
		return reject(KindInvalid, "invalid_notification", "", "notification_id, idempotency_key and provider are required"), nil
	}
	nk := notificationKey(c.Provider, n.NotificationID)
	if _, err := ac.b.Get(nk); err == nil {
		return &ApplyResult{Reply: statusReply("duplicate"), Replayed: true}, nil
	} else if !isNotFound(err) {
		return nil, fmt.Errorf("get notification: %w", err)
	}
	switch n.Result.Outcome {
	case OutcomeApproved, OutcomeDeclined, OutcomePending:
	default:
		return reject(KindInvalid, "invalid_notification", "result.outcome", "outcome must be approved, declined or pending"), nil
	}
	d, err := ac.loadInDoubt(n.IdempotencyKey)
	if err != nil {
		return nil, err
	}
	v, err := ac.version()
	if err != nil {
		return nil, err
	}
	if d == nil || d.Provider != c.Provider {
		if err := ac.recordNotification(nk, c, v); err != nil {
			return nil, err
		}
		if d == nil && v >= VersionProviderAmount {
			// Nothing open under the key: leave a trace when it names a
			// known payment (notifications.go).
			if err := ac.lateNotification(c); err != nil {
				return nil, err
			}
		}
		return &ApplyResult{Reply: statusReply("ignored")}, nil
	}
	var res *ApplyResult
	if d.Kind == "payment" {
		if n.Result.Outcome == OutcomePending {
			res = &ApplyResult{}
		} else {
			res, err = ac.paymentResult(&cmdPaymentResult{At: c.At, PaymentID: d.PaymentID, Attempt: d.Attempt,
				Source: sourceNotification, Outcome: string(n.Result.Outcome), Result: n.Result})
		}
	} else if n.Result.Outcome != OutcomePending {
		res, err = ac.opResult(&cmdOpResult{At: c.At, Kind: d.Kind, PaymentID: d.PaymentID, OpID: d.OpID,
			Source: sourceNotification, Outcome: string(n.Result.Outcome), Result: n.Result})
	} else {
		res = &ApplyResult{}
	}
	if err != nil {
		return nil, err
	}
	if res.Err != nil {
		return res, nil
	}
	if err := ac.recordNotification(nk, c, v); err != nil {
		return nil, err
	}
	return &ApplyResult{Reply: statusReply("accepted")}, nil
}

func statusReply(s string) Reply {
	return Reply{Status: 200, Body: []byte(`{"status":"` + s + `"}`)}
}

// loadPaymentAndOrder loads a payment a command names and its order: a
// missing payment is the command's rejection (rej), a payment without its
// order is corrupt state (err).
func (ac *applyCtx) loadPaymentAndOrder(paymentID string) (p *paymentRec, o *orderRec, rej *ApplyResult, err error) {
	if p, err = ac.loadPayment(paymentID); err != nil {
		return nil, nil, nil, err
	}
	if p == nil {
		return nil, nil, reject(KindNotFound, CodePaymentNotFound, "", "payment "+paymentID+" not found"), nil
	}
	if o, err = ac.loadOrder(p.OrderID); err != nil {
		return nil, nil, nil, err
	}
	if o == nil {
		return nil, nil, nil, fmt.Errorf("payment %s: order %s missing", p.ID, p.OrderID)
	}
	return p, o, nil, nil
}
