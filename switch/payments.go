package txswitch

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"
)

// Bounds on payment input.
const (
	MaxPaymentDataEntries = 32
	MaxPaymentDataLen     = 2048
	MaxMethodLen          = 64
)

func (s *Svc) health(provider, method string) BreakerState { return s.prov.State(provider, method) }

func orderContext(o *orderRec) OrderContext {
	return OrderContext{Country: o.Customer.Country, Currency: o.Amount.Currency, Amount: o.Amount.Value, Channel: o.Channel, Email: o.Customer.Email}
}

// route picks the first usable candidate. noRoute says why none is usable
// when candidates were seen; a nil *Error with no candidates cannot happen.
func route(cands []RouteCandidate, e *Error) (provider, noRoute string) {
	for _, c := range cands {
		if !c.Skipped {
			return c.Provider, ""
		}
	}
	if e != nil {
		return "", e.Message
	}
	return "", "every provider's breaker is open"
}

// nextCandidate is the first usable candidate after provider.
func nextCandidate(cands []RouteCandidate, provider string) string {
	seen := false
	for _, c := range cands {
		if seen && !c.Skipped {
			return c.Provider
		}
		if c.Provider == provider {
			seen = true
		}
	}
	return ""
}

func validatePaymentRequest(req *CreatePaymentRequest) *Error {
	if req.Method == "" || len(req.Method) > MaxMethodLen {
		return NewError(KindInvalid, "invalid_method", "method", "method is required (e.g. card, ideal)")
	}
	switch req.Capture {
	case "":
		req.Capture = CaptureAutomatic
	case CaptureAutomatic, CaptureManual:
	default:
		return NewError(KindInvalid, "invalid_capture", "capture", fmt.Sprintf("capture %q must be automatic or manual", req.Capture))
	}
	if req.Amount != nil {
		if e := ValidateMoney(*req.Amount, "amount"); e != nil {
			return e
		}
	}
	if len(req.PaymentData) > MaxPaymentDataEntries {
		return NewError(KindInvalid, "invalid_payment_data", "payment_data", fmt.Sprintf("at most %d payment_data entries", MaxPaymentDataEntries))
	}
	for k, v := range req.PaymentData {
		if len(k) > MaxPaymentDataLen || len(v) > MaxPaymentDataLen {
			return NewError(KindInvalid, "invalid_payment_data", "payment_data."+k, fmt.Sprintf("payment_data entries are at most %d bytes", MaxPaymentDataLen))
		}
	}
	return nil
}

// CreatePayment routes and executes a payment: intent → provider call →
// result, failing over on definitive failures. The reply is produced by
// apply of the final result and stored with the idempotency record.
func (s *Svc) CreatePayment(ctx context.Context, c Caller, orderID string, req CreatePaymentRequest) (Reply, error) {
	r, err := s.createPayment(ctx, c, orderID, req)
	if err == nil && s.m.sabotage.slowAnswer.Load() {
		s.m.sabotage.firedSlow.Add(1)
		select {
		case <-time.After(SlowAnswerDelay):
		case <-ctx.Done():
		}
	}
	return r, err
}

func (s *Svc) createPayment(ctx context.Context, c Caller, orderID string, req CreatePaymentRequest) (Reply, error) {
	if !s.log.Leadership().IsLeader {
		return Reply{}, errNotLeader()
	}
	if e := validatePaymentRequest(&req); e != nil {
		return Reply{}, e
	}
	o, err := s.readOrder(ctx, c, orderID, false)
	if err != nil {
		return Reply{}, err
	}
	var ps []*paymentRec
	if o.NumPayments > 0 { // the op/ index has NumPayments entries
		if ps, err = loadOrderPayments(s.store, o.ID); err != nil {
			return Reply{}, err
		}
	}
	// The idempotency record is read AFTER the order and its payments:
	// apply writes a payment and its record in one batch, so a concurrent
	// duplicate that already sees the first request's payment also sees
	// its record, and is answered as a duplicate (409 in progress, or the
	// stored reply) rather than as a second payment.
	ref, stored, err := s.idemStart(c, "create_payment", orderID, req)
	if err != nil || stored != nil {
		return derefReply(stored), err
	}
	for _, p := range ps {
		if unsettled(p.Status) {
			cfg, _ := s.m.Config() // nil: the default expiry
			return Reply{}, NewError(KindConflict, CodePaymentInProgress, "",
				fmt.Sprintf("payment %s of this order is still %s; wait for it to finish%s", p.ID, p.Status, pendingNote(cfg, p)))
		}
	}
	open := openAmount(o, ps)
	amount := Money{Value: open, Currency: o.Amount.Currency}
	if req.Amount != nil {
		amount = *req.Amount
	}
	if amount.Currency != o.Amount.Currency {
		return Reply{}, NewError(KindUnprocessable, CodeCurrencyMismatch, "amount.currency",
			fmt.Sprintf("the payment is in %s but the order is in %s", amount.Currency, o.Amount.Currency))
	}
	if open <= 0 {
		return Reply{}, NewError(KindConflict, "order_fully_paid", "", "the order has no open amount left to pay")
	}
	if amount.Value > open {
		return Reply{}, NewError(KindUnprocessable, CodeAmountExceedsOpen, "amount.value",
			fmt.Sprintf("amount %s exceeds the order's open amount %s", FormatMoney(amount), FormatMoney(Money{Value: open, Currency: o.Amount.Currency})))
	}
	cfg, ok := s.m.Config()
	if !ok {
		return Reply{}, NewError(KindUnavailable, CodeNotConfigured, "", "no routing configuration is loaded")
	}
	oc := orderContext(o)
	oc.Amount = amount.Value
	cands, rerr := RouteCandidates(cfg, oc, req.Method, s.health)
	if rerr != nil && len(cands) == 0 {
		return Reply{}, rerr // not eligible at all: nothing to record
	}
	provider, noRoute := route(cands, rerr)
	var surcharge Money
	if mc := cfg.method(req.Method); mc != nil {
		surcharge = Surcharge(*mc, amount)
	}
	surcharge.Currency = amount.Currency
	if amount.Value > MaxMoneyValue-surcharge.Value {
		// The provider is asked for the amount and its surcharge: that
		// total must fit the bound every amount keeps.
		return Reply{}, NewError(KindUnprocessable, CodeAmountTooLarge, "amount.value",
			fmt.Sprintf("%s plus the %s surcharge of %s exceeds the maximum of %d minor units", FormatMoney(amount), req.Method, FormatMoney(surcharge), MaxMoneyValue))
	}
	cmd := &cmdPaymentIntent{
		At: s.clock.Now(), Idem: ref, MerchantID: c.MerchantID, OrderID: o.ID, PaymentID: s.ids.New(PrefixPayment),
		Method: req.Method, Amount: amount, Surcharge: surcharge, CaptureMode: req.Capture, PaymentData: req.PaymentData,
		Candidates: cands, Provider: provider, NoRoute: noRoute,
	}
	// Fraud rules judge the order, not this payment: an order of 9,000
	// paid in two payments of 4,500 must not slip under a 5,000 threshold.
	if rule, hold := HoldForReview(cfg, orderContext(o), req.Method); hold && provider != "" {
		cmd.HoldRule = rule
	}
	res, err := s.propose(ctx, cmdTypePaymentIntent, cmd)
	if err != nil {
		return replyOf(res), err
	}
	if res.Open == nil {
		return res.Reply, nil
	}
	return s.runPayment(ctx, res.Open)
}

func replyOf(res *ApplyResult) Reply {
	if res == nil {
		return Reply{}
	}
	return res.Reply
}

// runPayment calls the provider for an applied intent and records the
// result, failing over while definitive failures leave candidates.
// Ordering contract: the provider is called only after the intent is
// applied (we hold its OpenCall), and the client is answered only after
// the result is applied.
func (s *Svc) runPayment(ctx context.Context, call *OpenCall) (Reply, error) {
	for {
		req, cands, err := s.paymentCall(call)
		if err != nil {
			return Reply{}, err
		}
		if s.cfg.NotifyURL != nil {
			req.NotifyURL = s.cfg.NotifyURL(call.Provider)
		}
		result, perr, latency := s.callOpen(ctx, call, req.Method, req)
		if s.m.sabotage.chargeTwiceOnRetry.Load() {
			result, perr, latency = s.retryInDoubt(ctx, call.Provider, req, result, perr, latency)
		}
		cmd := &cmdPaymentResult{At: s.clock.Now(), PaymentID: req.PaymentID, Attempt: call.Attempt, Source: sourceCall, LatencyMs: latency.Milliseconds()}
		classify(result, perr, &cmd.Outcome, &cmd.Result, &cmd.ErrCode, &cmd.ErrMessage)
		if cmd.Outcome == outcomeFailed {
			if next := nextCandidate(cands, call.Provider); next != "" {
				cmd.Next = &nextAttempt{Provider: next, Candidates: cands}
			}
		}
		dctx, cancel := s.detached(ctx)
		res, err := s.proposeAnywhere(dctx, cmdTypePaymentResult, cmd)
		cancel()
		s.done(call.Key)
		if err != nil {
			// The intent stays in doubt; the resolver (here or on the next
			// leader) settles it by status inquiry.
			return replyOf(res), err
		}
		if res.Open == nil {
			return res.Reply, nil
		}
		// The failover's intent is committed: make its call, even if this
		// node lost the lead meanwhile (the result above went through the
		// new leader). Nobody else sends it: the next leader's resolver
		// only asks about it, and would find the healthy candidate never
		// asked (not_found) and fail the payment. Sending it is as safe as
		// any call of a committed intent: callOpen sends only within the
		// provider timeout after the intent, the resolver asks only after
		// it, and a not_found fences the key at the PSP.
		call = res.Open
	}
}

// paymentCall is the authorization request of an open attempt and the
// payment's candidates: as apply prepared them, or read back from the
// store when it did not.
func (s *Svc) paymentCall(call *OpenCall) (ProviderRequest, []RouteCandidate, error) {
	if call.request != nil {
		return *call.request, call.candidates, nil
	}
	p, err := loadPayment(s.store, call.PaymentID)
	if err != nil {
		return ProviderRequest{}, nil, err
	}
	if p == nil {
		return ProviderRequest{}, nil, fmt.Errorf("payment %s vanished after its intent", call.PaymentID)
	}
	return *paymentRequest(p, call.Key), p.Candidates, nil
}

// CodeSendDeadlinePassed is the (in doubt) error of a money-moving call
// that was not sent because its intent was older than the provider timeout.
const CodeSendDeadlinePassed = "send_deadline_passed"

// callOpen makes the provider call of an applied intent. It starts only
// within the provider's timeout after the intent, and is bounded by what
// is left of it: a node that stalled after committing the intent (a long
// GC pause, a frozen VM, SIGSTOP) must not send a money-moving request
// that the next leader's resolver may already have settled as never
// received. Past the deadline nothing is sent and the call is in doubt,
// settled by status inquiry like any other. The window between this check
// and the request reaching the PSP is closed by the provider's fence: a
// status inquiry that answers not_found guarantees the key is never
// processed afterwards (see Provider).
func (s *Svc) callOpen(ctx context.Context, open *OpenCall, method string, req ProviderRequest) (ProviderResult, error, time.Duration) {
	timeout := s.providerTimeout(open.Provider)
	left := timeout
	if !open.At.IsZero() {
		left = timeout - s.clock.Now().Sub(open.At)
	}
	if left <= 0 {
		s.mu.Lock()
		s.inflight[req.IdempotencyKey] = struct{}{} // the caller calls done, as after call
		s.mu.Unlock()
		s.logger.Warn("intent older than the provider timeout: not sending it; the resolver settles it",
			zap.String("provider", open.Provider), zap.String("key", req.IdempotencyKey), zap.Duration("late", -left))
		return ProviderResult{}, &ProviderError{Provider: open.Provider, Op: req.Op, Code: CodeSendDeadlinePassed,
			Err: fmt.Errorf("intent %s is %s past the %s provider timeout: not sent", req.IdempotencyKey, -left, timeout)}, 0
	}
	return s.callWithin(ctx, open.Provider, method, req, left)
}

// call makes one provider call under the provider's timeout, marking the
// key in flight so the resolver leaves it alone. The caller calls done.
func (s *Svc) call(ctx context.Context, provider, method string, req ProviderRequest) (ProviderResult, error, time.Duration) {
	return s.callWithin(ctx, provider, method, req, s.providerTimeout(provider))
}

// callWithin makes a provider call detached from ctx's cancellation: a
// client hanging up must not turn a call into a doubt.
func (s *Svc) callWithin(ctx context.Context, provider, method string, req ProviderRequest, timeout time.Duration) (ProviderResult, error, time.Duration) {
	return s.callBounded(context.WithoutCancel(ctx), provider, method, req, timeout)
}

// callBounded makes a provider call that ends with ctx or after timeout,
// whichever comes first, marking its key in flight (the caller calls
// s.done). Status inquiries use it directly: they move no money, and the
// resolver pass that makes them abandons them at its end.
func (s *Svc) callBounded(ctx context.Context, provider, method string, req ProviderRequest, timeout time.Duration) (ProviderResult, error, time.Duration) {
	s.mu.Lock()
	s.inflight[req.IdempotencyKey] = struct{}{}
	s.mu.Unlock()
	p, ok := s.prov.Get(provider, method)
	if !ok {
		return ProviderResult{}, &ProviderError{Provider: provider, Op: req.Op, Definitive: true, Code: "provider_not_configured",
			Err: errors.New("no such provider")}, 0
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := s.clock.Now()
	res, err := p.Do(cctx, req)
	latency := s.clock.Now().Sub(start)
	if err != nil {
		s.logger.Info("provider call failed", zap.String("provider", provider), zap.String("op", string(req.Op)),
			zap.String("key", req.IdempotencyKey), zap.Error(err))
	}
	return res, err, latency
}

func (s *Svc) done(key string) {
	s.mu.Lock()
	delete(s.inflight, key)
	s.mu.Unlock()
}

func (s *Svc) isInflight(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.inflight[key]
	return ok
}

// classify maps a provider answer onto a result command's outcome. Only a
// *ProviderError marked Definitive allows failover; anything else that is
// not a result (timeout, garbled answer, unknown error) is in doubt.
func classify(res ProviderResult, err error, outcome *string, result *ProviderResult, code, msg *string) {
	if err != nil {
		var pe *ProviderError
		if errors.As(err, &pe) {
			*code = pe.Code
			*msg = errString(pe.Err)
			if pe.Definitive {
				*outcome = outcomeFailed
				return
			}
		} else {
			*code, *msg = "error", err.Error()
		}
		*outcome = outcomeInDoubt
		return
	}
	switch res.Outcome {
	case OutcomeApproved, OutcomeDeclined, OutcomePending:
		*outcome = string(res.Outcome)
		*result = res
	default:
		// A money-moving call answered something we do not understand.
		*outcome, *code, *msg = outcomeInDoubt, "malformed_answer", "unexpected outcome "+string(res.Outcome)
	}
}

// ReviewPayment releases or rejects a payment held for review.
func (s *Svc) ReviewPayment(ctx context.Context, paymentID string, req ReviewRequest) (Reply, error) {
	if !s.log.Leadership().IsLeader {
		return Reply{}, errNotLeader()
	}
	if req.Decision != ReviewApprove && req.Decision != ReviewReject {
		return Reply{}, NewError(KindInvalid, "invalid_decision", "decision", "decision must be approve or reject")
	}
	if len(req.Note) > 1000 {
		return Reply{}, NewError(KindInvalid, "invalid_note", "note", "note is at most 1000 bytes of UTF-8")
	}
	// Any merchant's payment: the review is the operator's.
	p, err := s.readPaymentIf(ctx, paymentID, false, func(*paymentRec) bool { return true })
	if err != nil {
		return Reply{}, err
	}
	cmd := &cmdReview{At: s.clock.Now(), PaymentID: paymentID, Decision: req.Decision, Note: req.Note}
	if req.Decision == ReviewApprove {
		o, err := loadOrder(s.store, p.OrderID)
		if err != nil || o == nil {
			return Reply{}, fmt.Errorf("payment %s: load order: %v", p.ID, err)
		}
		cfg, ok := s.m.Config()
		if !ok {
			return Reply{}, NewError(KindUnavailable, CodeNotConfigured, "", "no routing configuration is loaded")
		}
		oc := orderContext(o)
		oc.Amount = p.Amount.Value
		cands, rerr := RouteCandidates(cfg, oc, p.Method, s.health)
		cmd.Candidates = cands
		cmd.Provider, cmd.NoRoute = route(cands, rerr)
	}
	res, err := s.propose(ctx, cmdTypeReview, cmd)
	if err != nil {
		return replyOf(res), err
	}
	if res.Open == nil {
		return res.Reply, nil
	}
	r, err := s.runPayment(ctx, res.Open)
	if err != nil {
		return r, err
	}
	r.Status = 200
	return r, nil
}

// Notify applies a provider's asynchronous report.
func (s *Svc) Notify(ctx context.Context, provider string, n ProviderNotification) (Reply, error) {
	if provider == "" || n.NotificationID == "" || n.IdempotencyKey == "" || len(n.NotificationID) > 255 || len(n.IdempotencyKey) > 255 {
		return Reply{}, NewError(KindInvalid, "invalid_notification", "", "provider, notification_id and idempotency_key are required (at most 255 bytes each)")
	}
	res, err := s.propose(ctx, cmdTypeNotify, &cmdNotify{At: s.clock.Now(), Provider: provider, Notification: n})
	if err != nil {
		return replyOf(res), err
	}
	return res.Reply, nil
}

// retryInDoubt is FlawChargeTwiceOnRetry (sabotage.go), the bug the
// resolver exists to prevent: a call that ended in doubt is sent once more
// under a fresh idempotency key, and its answer taken for the attempt's.
func (s *Svc) retryInDoubt(ctx context.Context, provider string, req ProviderRequest, res ProviderResult, err error, latency time.Duration) (ProviderResult, error, time.Duration) {
	var pe *ProviderError
	if !errors.As(err, &pe) || pe.Definitive {
		return res, err, latency
	}
	s.m.sabotage.firedRetry.Add(1)
	again := req
	again.IdempotencyKey = req.IdempotencyKey + "-retry"
	s.logger.Warn("SABOTAGE charge_twice_on_retry: sending an in-doubt call again under a new key",
		zap.String("provider", provider), zap.String("key", again.IdempotencyKey))
	res, err, latency = s.call(ctx, provider, req.Method, again)
	s.done(again.IdempotencyKey)
	return res, err, latency
}
