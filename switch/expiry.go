package txswitch

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"
)

// Pending expiry. A redirect payment (iDEAL, Bancontact, ...) is pending
// until the shopper finishes at the bank. A shopper who closes the tab
// never finishes, and a pending payment reserves the order's open amount
// and blocks another attempt (one unsettled payment at a time, so that a
// slow bank can never lead to a double charge). Without an end, an
// abandoned redirect would leave the order unpayable forever.
//
// The resolver therefore ends pending attempts older than their method's
// expiry, in this order, so that money never moves behind the switch's back:
//  1. a status inquiry: if the shopper did finish, the real outcome wins;
//  2. a cancellation of the pending attempt at the provider (its own
//     idempotency key, so a retry after a leader change is a replay), for
//     the pending attempt only (PendingOnly): if the shopper completed
//     between the inquiry and the cancellation, a plain cancel would void
//     the authorization while the completion's notification records it
//     as authorized;
//  3. only when the provider confirms the cancellation is the payment
//     marked failed with code "expired", and the order is open again.
// A provider that refuses the cancellation (the shopper completed at that
// very moment) leaves the payment pending; the next pass reads the outcome.

const (
	// CodeExpired is the failure code of a pending payment that the
	// shopper did not complete in time and the switch cancelled.
	CodeExpired = "expired"
	// DefaultPendingExpiry applies to methods whose configuration sets no
	// pending_expiry_seconds: long enough for a slow shopper, short enough
	// that an abandoned checkout does not block the order for a day.
	DefaultPendingExpiry = 30 * time.Minute
	// MaxPendingExpirySeconds bounds the configuration (7 days: beyond
	// that a "pending" payment is an operational problem, not a shopper).
	MaxPendingExpirySeconds = 7 * 24 * 3600
	// MaxAuthorizationValiditySeconds bounds a method's authorization
	// validity (90 days).
	MaxAuthorizationValiditySeconds = 90 * 24 * 3600

	cmdTypePaymentExpire = "payment_expire"
	sourceExpiry         = "expiry"
)

// cmdPaymentExpire records that the provider confirmed the cancellation of
// a pending attempt that outlived its method's expiry.
type cmdPaymentExpire struct {
	cmdHeader
	At        time.Time `json:"at"`
	PaymentID string    `json:"payment_id"`
	Attempt   int       `json:"attempt"`
	// Key is the cancellation's idempotency key at the provider.
	Key           string         `json:"key"`
	ExpirySeconds int64          `json:"expiry_seconds"`
	Result        ProviderResult `json:"result"`
	LatencyMs     int64          `json:"latency_ms"`
}

// expireKey is the idempotency key of the cancellation of attempt key.
func expireKey(attemptKey string) string { return attemptKey + ":expire" }

// pendingExpiry is how long a payment of method may stay pending.
func pendingExpiry(cfg *RoutingConfig, method string) time.Duration {
	if cfg == nil {
		return DefaultPendingExpiry
	}
	if m := cfg.method(method); m != nil && m.PendingExpirySeconds > 0 {
		return time.Duration(m.PendingExpirySeconds) * time.Second
	}
	return DefaultPendingExpiry
}

// pendingNote says, for a payment waiting for its shopper at the provider,
// when the resolver ends the attempt unless the shopper completes it
// first (and the order takes another payment again); "" for any other
// payment. It starts with "; " to follow a sentence part.
func pendingNote(cfg *RoutingConfig, p *paymentRec) string {
	if p.Status != PaymentPending || p.Open == nil || p.RedirectURL == "" {
		return ""
	}
	exp := pendingExpiry(cfg, p.Method)
	return fmt.Sprintf("; unless the shopper completes it, the switch cancels it from %s (%s's pending expiry of %s) and the order takes another payment",
		p.Open.At.Add(exp).UTC().Format(time.RFC3339), p.Method, exp)
}

// expired reports whether d is a pending payment attempt past its expiry.
// An attempt first in doubt (its call timed out) that a status inquiry
// then found pending counts too: expireOne asks again first and cancels
// only what the provider still says is pending.
func (s *Svc) expired(d InDoubt, now time.Time) bool {
	if d.Kind != "payment" || !d.Pending {
		return false
	}
	cfg, _ := s.m.Config()
	return now.Sub(d.At) >= pendingExpiry(cfg, d.Method)
}

// expireOne ends one expired pending attempt (see the package comment
// above). It reports true when the attempt was settled, either by its real
// outcome or by the confirmed cancellation.
func (s *Svc) expireOne(ctx context.Context, d InDoubt) (bool, error) {
	req := ProviderRequest{IdempotencyKey: d.Key, Op: OpStatus, PaymentID: d.PaymentID, OrderID: d.OrderID,
		MerchantID: d.MerchantID, Method: d.Method, Amount: d.Amount, Country: d.Country, Capture: d.Capture, ProviderRef: d.ProviderRef}
	st, perr, stLatency := s.call(ctx, d.Provider, d.Method, req)
	s.done(d.Key)
	if perr != nil {
		return false, perr
	}
	if st.Outcome != OutcomePending {
		// The shopper finished after all: settle with the real outcome.
		return s.proposeResolution(ctx, d, st, stLatency)
	}
	cancel := req
	cancel.Op, cancel.IdempotencyKey, cancel.PendingOnly = OpCancel, expireKey(d.Key), true
	cancel.ProviderRef = firstNonEmpty(st.ProviderRef, d.ProviderRef)
	res, perr, latency := s.call(ctx, d.Provider, d.Method, cancel)
	s.done(cancel.IdempotencyKey)
	if perr != nil {
		return false, perr
	}
	if res.Outcome != OutcomeApproved {
		s.logger.Info("provider refused to cancel an expired pending payment; reading its outcome next pass",
			zap.String("payment", d.PaymentID), zap.String("provider", d.Provider), zap.String("outcome", string(res.Outcome)), zap.String("code", res.Code))
		return false, nil
	}
	cfg, _ := s.m.Config()
	if _, err := s.propose(ctx, cmdTypePaymentExpire, &cmdPaymentExpire{At: s.clock.Now(), PaymentID: d.PaymentID, Attempt: d.Attempt,
		Key: cancel.IdempotencyKey, ExpirySeconds: int64(pendingExpiry(cfg, d.Method) / time.Second), Result: res, LatencyMs: latency.Milliseconds()}); err != nil {
		return false, fmt.Errorf("propose expiry of %s: %w", d.Key, err)
	}
	return true, nil
}

// paymentExpire applies a confirmed cancellation of an expired attempt.
func (ac *applyCtx) paymentExpire(c *cmdPaymentExpire) (*ApplyResult, error) {
	p, o, rej, err := ac.loadPaymentAndOrder(c.PaymentID)
	if rej != nil || err != nil {
		return rej, err
	}
	if p.Open == nil || p.Open.N != c.Attempt || p.Status != PaymentPending {
		return ac.lateResult(o, p, c.At, fmt.Sprintf("expiry of attempt %d", c.Attempt), sourceExpiry, string(c.Result.Outcome), c.Result.Code)
	}
	open := *p.Open
	after := time.Duration(c.ExpirySeconds) * time.Second
	if err := ac.event(o, c.At, "provider_response", p.ID,
		responseMessage(open.Provider, sourceExpiry, string(c.Result.Outcome), c.Result.Code, c.Result.Message, c.LatencyMs),
		providerData{Op: string(OpCancel), Provider: open.Provider, Key: c.Key, Attempt: open.N, Outcome: string(c.Result.Outcome),
			Code: c.Result.Code, Message: c.Result.Message, ProviderRef: c.Result.ProviderRef, LatencyMs: c.LatencyMs, Source: sourceExpiry}); err != nil {
		return nil, err
	}
	p.Status = PaymentFailed
	p.Failure = &Failure{Code: CodeExpired, Message: fmt.Sprintf("the shopper did not complete %s within %s; %s cancelled attempt %d and no money moved",
		p.Method, after, open.Provider, open.N)}
	p.RedirectURL = ""
	p.Open = nil
	if err := ac.del(inDoubtKey(open.Key)); err != nil {
		return nil, err
	}
	if err := ac.event(o, c.At, "payment_expired", p.ID, "Payment expired: "+p.Failure.Message+"; the order is open for another payment.", p.Failure); err != nil {
		return nil, err
	}
	body, err := ac.savePayment(p, c.At)
	if err != nil {
		return nil, err
	}
	if err := ac.saveOrder(o, c.At); err != nil {
		return nil, err
	}
	return &ApplyResult{Reply: Reply{Status: 200, Body: body}}, nil
}
