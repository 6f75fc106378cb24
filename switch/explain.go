package txswitch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"
)

func offerHash(r MethodsResponse) string {
	raw, _ := json.Marshal(r) // plain data always marshals
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:])
}

// Methods lists the methods this order's customer can pay with right now.
// When the offer differs from the last one recorded for the order (and
// this node leads) it is recorded on the timeline, so explain can show
// what the shopper was offered and why other methods were not.
func (s *Svc) Methods(ctx context.Context, c Caller, orderID string) (Reply, error) {
	o, err := s.readOrder(ctx, c, orderID, true)
	if err != nil {
		return Reply{}, err
	}
	cfg, ok := s.m.Config()
	if !ok {
		return Reply{}, NewError(KindUnavailable, CodeNotConfigured, "", "no routing configuration is loaded")
	}
	ps, err := loadOrderPayments(s.store, o.ID)
	if err != nil {
		return Reply{}, err
	}
	// An order that takes no payment now (expired, a payment still
	// unsettled, or its amount covered by its payments) offers nothing: a
	// method offered here would be refused with a 409 at the payment
	// (order_expired, payment_in_progress, order_fully_paid; an unsettled
	// payment comes before a covered amount, as in CreatePayment). Nothing is
	// recorded on the timeline: the order's own events say why, and
	// recording the empty offer of each running payment would spend the
	// order's MaxOfferEvents twice per attempt (empty, then the real offer
	// again once the payment failed).
	reason, detail := "", ""
	open := openAmount(o, ps)
	busy := slices.IndexFunc(ps, func(p *paymentRec) bool { return unsettled(p.Status) })
	switch {
	case orderExpiredAt(o, s.clock.Now(), s.VersionActive(VersionMoneyRules)):
		reason, detail = ExclusionOrderExpired, "the order expired unpaid; create a new order"
	case busy >= 0:
		reason, detail = ExclusionPaymentInProgress, fmt.Sprintf("payment %s of this order is still %s; wait for it to finish%s", ps[busy].ID, ps[busy].Status, pendingNote(cfg, ps[busy]))
	case open <= 0:
		reason, detail = ExclusionNothingToPay, "the order's amount is covered by its payments"
	}
	if reason != "" {
		resp := MethodsResponse{Methods: []MethodOffer{}}
		for _, m := range cfg.Methods {
			if m.Enabled {
				resp.Excluded = append(resp.Excluded, MethodExclusion{Method: m.Name, Reason: reason, Detail: detail})
			}
		}
		return jsonReply(200, resp)
	}
	oc := orderContext(o)
	oc.Amount = open
	resp := EligibleMethods(cfg, oc, s.health)
	if resp.Methods == nil {
		resp.Methods = []MethodOffer{}
	}
	if offerHash(resp) != o.OfferHash && o.OfferEvents < MaxOfferEvents && s.log.Leadership().IsLeader {
		// Best effort: the answer does not depend on the record.
		if _, err := s.propose(ctx, cmdTypeMethodsOffered, &cmdMethodsOffered{At: s.clock.Now(), OrderID: o.ID, Offer: resp}); err != nil {
			s.logger.Info("methods offer not recorded", zap.String("order", o.ID), zap.Error(err))
		}
	}
	return jsonReply(200, resp)
}

// Explain says why an order is (not) paid, from its payments and timeline.
func (s *Svc) Explain(ctx context.Context, c Caller, orderID string) (Reply, error) {
	o, err := s.readOrder(ctx, c, orderID, true)
	if err != nil {
		return Reply{}, err
	}
	ps, err := loadOrderPayments(s.store, o.ID)
	if err != nil {
		return Reply{}, err
	}
	evs, err := loadTimeline(s.store, o.ID)
	if err != nil {
		return Reply{}, err
	}
	cfg, _ := s.m.Config() // nil when none is loaded
	return jsonReply(200, explain(o, ps, evs, cfg, s.clock.Now()))
}

// Cause codes of an Explanation.
const (
	CauseProviderDown = "provider_down"
	CauseProviderSlow = "provider_slow"
	// CauseProviderRefused: the provider refused the request itself (a
	// 4xx: credentials, a request it cannot take): neither the customer
	// nor the provider's availability, but the integration with it.
	CauseProviderRefused = "provider_refused"
	CauseDeclined        = "declined"
	CauseInvalidInput    = "invalid_input"
	CauseInDoubt         = "in_doubt"
	CauseHeldForReview   = "held_for_review"
	CauseNoMethod        = "no_method_available"
	CauseNeverReceived   = "provider_never_received"
	CauseReviewRejected  = "review_rejected"
	// CauseCancelledByMerchant: the merchant cancelled a payment while it
	// was held for review (VersionWithdrawHeld).
	CauseCancelledByMerchant = "cancelled_by_merchant"
	CauseAwaitingShopper     = "awaiting_shopper"
	CauseNoPaymentAttempts   = "no_payment_attempt"
	CauseExpired             = "payment_expired"
	// CauseCancelInDoubt: the provider did not answer a cancellation; the
	// authorization may or may not be voided until a status inquiry says.
	CauseCancelInDoubt = "cancellation_in_doubt"
	// CauseAmountMismatch: the provider approved another amount than it
	// was asked for; the switch booked nothing and keeps it in doubt until
	// someone reconciles it with the provider.
	CauseAmountMismatch = "provider_amount_mismatch"
	// CauseAmountNotCovered: the order's payments authorized less than it
	// is due (a payment of part of the amount, the rest never paid): no
	// capture can make it paid, only another payment of the rest.
	CauseAmountNotCovered = "amount_not_covered"
	// CauseCaptureFailed: the last capture of a payment that still holds
	// an uncaptured rest failed (the provider was down, refused or
	// declined it): nothing was captured, the capture may be requested
	// again. CauseCaptureInDoubt: the provider gave no definite answer to
	// a capture; a status inquiry settles it, it is never sent again.
	CauseCaptureFailed  = "capture_failed"
	CauseCaptureInDoubt = "capture_in_doubt"
	// CauseRefundFailed: a refund failed and no later refund of the same
	// amount on the payment took its place: the shopper has not got that
	// money back. CauseRefundInDoubt: as CauseCaptureInDoubt, for a refund.
	CauseRefundFailed  = "refund_failed"
	CauseRefundInDoubt = "refund_in_doubt"
)

// downCodes are provider error codes meaning "the provider is down".
func downCode(code string) bool {
	return code == "breaker_open" || code == "connection_refused" || code == "provider_not_configured" ||
		strings.HasPrefix(code, "http_5") || code == "connection_reset_before_send" || code == "dns"
}

func slowCode(code string) bool { return code == "timeout" || code == "deadline_exceeded" }

// refusedCode: the provider answered that it will not take the request as
// sent (429, the provider shedding load, is its availability).
func refusedCode(code string) bool {
	return code == "invalid_request" || strings.HasPrefix(code, "http_4") && code != "http_429"
}

// inputCodes are decline codes caused by what the customer typed.
var inputCodes = map[string]string{
	"invalid_card":   "the customer entered an invalid card number",
	"invalid_cvc":    "the customer entered a wrong security code",
	"expired_card":   "the customer's card has expired",
	"invalid_expiry": "the customer entered an invalid expiry date",
}

// providerTrouble: a cause that says why a provider did not take a payment.
func providerTrouble(code string) bool {
	return code == CauseProviderDown || code == CauseProviderSlow || code == CauseProviderRefused
}

// explain works out the explanation from the order's records as read; cfg
// (nil: none loaded) and now are for what depends on them, the lapse of
// authorizations (authlapse.go).
func explain(o *orderRec, ps []*paymentRec, evs []TimelineEvent, cfg *RoutingConfig, now time.Time) Explanation {
	var causes []Cause
	add := func(c Cause) {
		if !slices.Contains(causes, c) {
			causes = append(causes, c)
		}
	}
	for _, ev := range evs {
		switch ev.Type {
		case "amount_mismatch":
			if p := paymentOf(ps, ev.PaymentID); p == nil || p.Status != PaymentInDoubt && !opInDoubt(p) {
				continue // settled since (by hand, or the provider corrected it)
			}
			var d struct {
				Provider string `json:"provider"`
			}
			_ = json.Unmarshal(ev.Data, &d) // the message says it all; the provider is a nicety
			add(Cause{Code: CauseAmountMismatch, PaymentID: ev.PaymentID, Provider: d.Provider, Message: strings.TrimSuffix(ev.Message, ".")})
		case "unbooked_provider_approval": // cluster version 7 (notifications.go)
			var d struct {
				Provider string `json:"provider"`
			}
			_ = json.Unmarshal(ev.Data, &d)
			add(Cause{Code: CauseUnbookedApproval, PaymentID: ev.PaymentID, Provider: d.Provider, Message: strings.TrimSuffix(ev.Message, ".")})
		case "routing_decision":
			var d routingData
			if json.Unmarshal(ev.Data, &d) == nil {
				for _, c := range d.Candidates {
					if c.Skipped || c.Breaker == BreakerOpen {
						add(Cause{Code: CauseProviderDown, PaymentID: ev.PaymentID, Provider: c.Provider,
							Message: fmt.Sprintf("%s was unavailable for %s: its circuit breaker is open after repeated failures", c.Provider, d.Method)})
					}
				}
			}
		case "provider_response", "failover":
			var d providerData
			if json.Unmarshal(ev.Data, &d) != nil || d.Provider == "" {
				continue
			}
			switch {
			case d.Outcome == outcomeFailed && downCode(d.Code):
				add(Cause{Code: CauseProviderDown, PaymentID: ev.PaymentID, Provider: d.Provider,
					Message: fmt.Sprintf("%s was down (%s)", d.Provider, strings.ReplaceAll(d.Code, "_", " "))})
			case d.Outcome == outcomeFailed && refusedCode(d.Code):
				add(Cause{Code: CauseProviderRefused, PaymentID: ev.PaymentID, Provider: d.Provider,
					Message: fmt.Sprintf("%s refused the request (%s): the switch's credentials or integration for it need attention, not the customer", d.Provider, strings.ReplaceAll(d.Code, "_", " "))})
			case d.Outcome == outcomeFailed:
				add(Cause{Code: CauseProviderDown, PaymentID: ev.PaymentID, Provider: d.Provider,
					Message: fmt.Sprintf("%s failed without processing the payment (%s)", d.Provider, firstNonEmpty(d.Code, "error"))})
			case d.Outcome == outcomeInDoubt && slowCode(d.Code):
				add(Cause{Code: CauseProviderSlow, PaymentID: ev.PaymentID, Provider: d.Provider,
					Message: fmt.Sprintf("%s was too slow: it did not answer within its timeout", d.Provider)})
			}
		}
	}
	for _, p := range ps {
		if c := p.Cancellation; c != nil && c.Status == PaymentInDoubt {
			what := "the cancellation of the " + FormatMoney(p.Authorized) + " authorization"
			if p.Captured.Value > 0 && c.Amount != nil {
				what = "the release of the uncaptured " + FormatMoney(*c.Amount) + " of the authorization"
			}
			add(Cause{Code: CauseCancelInDoubt, PaymentID: p.ID, Provider: p.Provider,
				Message: fmt.Sprintf("%s gave no definite answer to %s; the switch is asking it whether the authorization was voided and will not send the cancellation again",
					p.Provider, what)})
		}
		switch p.Status {
		case PaymentDeclined:
			code := "declined"
			if p.Failure != nil {
				code = p.Failure.Code
			}
			add(Cause{Code: CauseDeclined, PaymentID: p.ID, Provider: p.Provider,
				Message: fmt.Sprintf("%s declined the %s payment (%s)", p.Provider, p.Method, code)})
			if why, ok := inputCodes[code]; ok {
				add(Cause{Code: CauseInvalidInput, PaymentID: p.ID, Provider: p.Provider, Message: why + " (" + code + ")"})
			}
		case PaymentInDoubt:
			add(Cause{Code: CauseInDoubt, PaymentID: p.ID, Provider: p.Provider,
				Message: fmt.Sprintf("%s gave no definite answer; the switch is asking it for the outcome and will not charge again", p.Provider)})
		case PaymentHeldForReview:
			msg := "the payment is held for manual fraud review"
			if rule := holdRule(evs, p.ID); rule != "" {
				msg += fmt.Sprintf(" (fraud rule %q)", rule)
			}
			add(Cause{Code: CauseHeldForReview, PaymentID: p.ID, Message: msg})
		case PaymentPending:
			if p.RedirectURL != "" {
				add(Cause{Code: CauseAwaitingShopper, PaymentID: p.ID, Provider: p.Provider,
					Message: fmt.Sprintf("the shopper has not completed %s at %s yet%s", p.Method, p.Provider, pendingNote(cfg, p))})
			}
		case PaymentFailed, PaymentCancelled:
			if p.Failure == nil {
				continue
			}
			switch p.Failure.Code {
			case CodeNoProviderAvailable:
				add(Cause{Code: CauseNoMethod, PaymentID: p.ID, Message: fmt.Sprintf("no provider could take %s: %s", p.Method, p.Failure.Message)})
			case CodeProviderNeverReceived:
				add(Cause{Code: CauseNeverReceived, PaymentID: p.ID, Provider: p.Provider, Message: p.Failure.Message})
			case CodeReviewRejected:
				add(Cause{Code: CauseReviewRejected, PaymentID: p.ID, Message: "manual review rejected the payment: " + p.Failure.Message})
			case CodeCancelledByMerchant:
				add(Cause{Code: CauseCancelledByMerchant, PaymentID: p.ID, Message: "the merchant cancelled the payment while it was held for review; no provider was asked"})
			case CodeExpired:
				add(Cause{Code: CauseExpired, PaymentID: p.ID, Provider: p.Provider, Message: p.Failure.Message})
			}
		}
	}
	for _, c := range operationCauses(ps, evs) {
		add(c)
	}
	for _, c := range authorizationCauses(cfg, now, ps, evs) {
		add(c)
	}
	if o.Status == OrderAuthorized {
		if due := amountDue(o, ps); o.Authorized.Value < due {
			add(Cause{Code: CauseAmountNotCovered, Message: fmt.Sprintf("%s of the %s due is not covered by any payment; only another payment of it can make the order paid",
				FormatMoney(Money{Value: due - o.Authorized.Value, Currency: o.Amount.Currency}), FormatMoney(Money{Value: due, Currency: o.Amount.Currency}))})
		}
	}
	if len(ps) == 0 {
		add(Cause{Code: CauseNoPaymentAttempts, Message: "no payment has been attempted for this order"})
	}
	if o.Status == OrderExpired && o.ExpiresAt != nil {
		add(Cause{Code: CauseOrderExpired, Message: fmt.Sprintf("no payment succeeded before the order expired at %s", o.ExpiresAt.UTC().Format(time.RFC3339))})
	}
	if causes == nil {
		causes = []Cause{}
	}
	return Explanation{Status: o.Status, Summary: summary(o, ps, causes), Causes: causes}
}

func summary(o *orderRec, ps []*paymentRec, causes []Cause) string {
	var last, settled *paymentRec
	if len(ps) > 0 {
		last = ps[len(ps)-1]
	}
	for _, p := range ps {
		if p.Authorized.Value > 0 || p.Captured.Value > 0 {
			settled = p // the payment that moved money, for the paid sentences
		}
	}
	if settled == nil {
		settled = last
	}
	why := ""
	for _, c := range causes {
		if providerTrouble(c.Code) {
			why = " after " + c.Message
			break
		}
	}
	first := func(code string) *Cause {
		for i := range causes {
			if causes[i].Code == code {
				return &causes[i]
			}
		}
		return nil
	}
	// ofLast is the cause of the last payment: an order can be paid again
	// after a failed attempt, and why it is not paid now is why its last
	// payment failed (an earlier attempt's wrong security code must not be
	// blamed for a later provider outage).
	ofLast := func(code string) *Cause {
		for i := range causes {
			if causes[i].Code == code && last != nil && causes[i].PaymentID == last.ID {
				return &causes[i]
			}
		}
		return nil
	}
	switch o.Status {
	case OrderPaid:
		released := Money{Currency: o.Amount.Currency}
		for _, p := range ps {
			if p.Released != nil {
				released.Value += p.Released.Value
			}
		}
		if released.Value > 0 {
			return fmt.Sprintf("The order is paid: %s captured with %s at %s%s; the other %s of the authorization was released uncaptured%s.",
				FormatMoney(o.Captured), settled.Method, settled.Provider, why, FormatMoney(released), refundTrouble(causes))
		}
		return fmt.Sprintf("The order is paid: %s captured with %s at %s%s%s.", FormatMoney(o.Captured), settled.Method, settled.Provider, why, refundTrouble(causes))
	case OrderAuthorized:
		if c := first(CauseCancelInDoubt); c != nil {
			return fmt.Sprintf("The order is authorized for %s, but its cancellation is in doubt: %s.", FormatMoney(o.Authorized), c.Message)
		}
		if c := first(CauseAuthorizationLapsed); c != nil {
			return fmt.Sprintf("The order is authorized for %s, but not fully captured, and %s.", FormatMoney(o.Authorized), c.Message)
		}
		if c := firstOf(causes, CauseCaptureInDoubt, CauseCaptureFailed); c != nil {
			return fmt.Sprintf("The order is authorized for %s with %s at %s, but not fully captured yet: %s.", FormatMoney(o.Authorized), settled.Method, settled.Provider, c.Message)
		}
		if c := first(CauseAmountNotCovered); c != nil {
			if o.Captured.Value >= o.Authorized.Value {
				return fmt.Sprintf("The order is partly paid: %s captured with %s at %s%s, and %s.", FormatMoney(o.Captured), settled.Method, settled.Provider, why, c.Message)
			}
			return fmt.Sprintf("The order is authorized for %s with %s at %s%s, but not fully captured yet, and %s.", FormatMoney(o.Authorized), settled.Method, settled.Provider, why, c.Message)
		}
		msg := fmt.Sprintf("The order is authorized for %s with %s at %s%s, but not fully captured yet", FormatMoney(o.Authorized), settled.Method, settled.Provider, why)
		rest := Money{Value: orderUncaptured(ps), Currency: o.Amount.Currency}
		if o.Captured.Value == 0 || rest.Value <= 0 {
			return msg + "."
		}
		// Captures on shipment add up to the order's amount, and the
		// shopper's surcharge is easily left out: say so, or the merchant
		// is left wondering why a fully shipped order is not paid.
		if sur := surcharges(ps); o.Captured.Value >= o.Amount.Value && sur > 0 && rest.Value <= sur {
			return fmt.Sprintf("%s: the order's %s is captured, and the %s still to capture is the surcharge the shopper pays for %s; capture it, or cancel the payment to release it, to make the order paid.",
				msg, FormatMoney(o.Amount), FormatMoney(rest), settled.Method)
		}
		return fmt.Sprintf("%s: %s captured, %s still to capture.", msg, FormatMoney(o.Captured), FormatMoney(rest))
	case OrderRefunded:
		return fmt.Sprintf("The order was paid and then fully refunded (%s%s)%s.", FormatMoney(o.Refunded), creditNotes(ps), refundTrouble(causes))
	case OrderPartiallyRefunded:
		// A refund makes the order partially_refunded whether or not all
		// of it was captured: a return from the first shipment while the
		// second is still to be captured is not a paid order.
		cur := o.Amount.Currency
		due, uncaptured := amountDue(o, ps), orderUncaptured(ps)
		if o.Captured.Value >= due && uncaptured == 0 {
			return fmt.Sprintf("The order was paid; %s of %s has been refunded%s%s.", FormatMoney(o.Refunded), FormatMoney(o.Captured), creditNotes(ps), refundTrouble(causes))
		}
		msg := fmt.Sprintf("The order is partly captured: %s captured, of which %s has been refunded%s", FormatMoney(o.Captured), FormatMoney(o.Refunded), creditNotes(ps))
		if uncaptured > 0 {
			msg += fmt.Sprintf(", and %s is still authorized and not captured yet", FormatMoney(Money{Value: uncaptured, Currency: cur}))
			if c := firstOf(causes, CauseCaptureInDoubt, CauseCaptureFailed); c != nil {
				msg += ": " + c.Message
			}
		}
		if rest := due - o.Captured.Value - uncaptured; rest > 0 {
			msg += fmt.Sprintf(", and %s of the %s due is not covered by any payment", FormatMoney(Money{Value: rest, Currency: cur}), FormatMoney(Money{Value: due, Currency: cur}))
		}
		return msg + refundTrouble(causes) + "."
	case OrderHeldForReview:
		if c := first(CauseHeldForReview); c != nil {
			return "The order is not paid yet: " + strings.Replace(c.Message, "the payment", "its payment", 1) + " and no provider has been asked."
		}
		return "The order is not paid yet: its payment is held for manual fraud review and no provider has been asked."
	case OrderExpired:
		msg := "The order expired unpaid"
		if o.ExpiresAt != nil {
			msg += " at " + o.ExpiresAt.UTC().Format(time.RFC3339)
		}
		switch {
		case len(ps) == 0:
			return msg + ": no payment was ever attempted."
		case last.Failure != nil:
			return msg + "; its last payment failed: " + last.Failure.Message + "."
		}
		return msg + "."
	case OrderPending:
		if c := ofLast(CauseAmountMismatch); c != nil && last.Status == PaymentInDoubt {
			return "The order is not paid yet: " + c.Message + "."
		}
		if c := ofLast(CauseInDoubt); c != nil {
			return "The order is not paid yet: " + c.Message + "."
		}
		if c := ofLast(CauseAwaitingShopper); c != nil {
			return "The order is not paid yet: " + c.Message + "."
		}
		return "The order is not paid yet: its payment is being processed."
	case OrderCancelled:
		// Not final: the order takes another payment until it expires,
		// which a reader of "cancelled" would not guess.
		until := "; another payment can still pay it"
		if o.ExpiresAt != nil {
			until = "; another payment can still pay it until it expires at " + o.ExpiresAt.UTC().Format(time.RFC3339)
		}
		if c := ofLast(CauseReviewRejected); c != nil {
			return "The order is not paid: " + c.Message + until + "."
		}
		return "The order is not paid: its authorization was cancelled" + until + "."
	case OrderFailed:
		if c := ofLast(CauseInvalidInput); c != nil {
			return fmt.Sprintf("The order is not paid: %s declined the payment because %s.", c.Provider, c.Message)
		}
		if c := ofLast(CauseDeclined); c != nil && last.Status == PaymentDeclined {
			return "The order is not paid: " + c.Message + "; the customer can try again."
		}
		if c := ofLast(CauseNoMethod); c != nil {
			down := ""
			for _, d := range causes {
				if providerTrouble(d.Code) && d.PaymentID == last.ID {
					down = " (" + d.Message + ")"
					break
				}
			}
			return "The order is not paid: " + c.Message + down + "."
		}
		if c := ofLast(CauseNeverReceived); c != nil {
			return "The order is not paid: " + c.Message + "."
		}
		if c := ofLast(CauseExpired); c != nil && last.Failure != nil && last.Failure.Code == CodeExpired {
			return "The order is not paid: " + c.Message + "; the customer can try again."
		}
		return "The order is not paid: its last payment failed."
	}
	return "The order is not paid: no payment has been attempted yet."
}

// firstOf is the first cause with one of codes, in the order of causes.
func firstOf(causes []Cause, codes ...string) *Cause {
	for i := range causes {
		if slices.Contains(codes, causes[i].Code) {
			return &causes[i]
		}
	}
	return nil
}

// refundTrouble is the summary's tail for a refund in doubt or failed
// ("" when there is none): the order's money is as its status says, but a
// return the merchant booked has not reached the shopper (yet).
func refundTrouble(causes []Cause) string {
	if c := firstOf(causes, CauseRefundInDoubt, CauseRefundFailed); c != nil {
		return ", but " + c.Message
	}
	return ""
}

// operationCauses says why a capture or refund of the order's payments
// did not go through: one in doubt (the provider gave no definite answer;
// a status inquiry settles it), or one that failed and still matters: a
// payment's last capture, while the payment holds an uncaptured rest it
// could capture, or a refund that no later refund of the same amount took
// the place of. The provider's answer comes from the operation's result
// event on the timeline, so the merchant hears whether the provider was
// down, slow, refused the request or declined it, without asking it.
func operationCauses(ps []*paymentRec, evs []TimelineEvent) []Cause {
	// The last result event of each operation, by its id (the key).
	results := map[string]providerData{}
	for _, ev := range evs {
		switch ev.Type {
		case "capture_failed", "capture_in_doubt", "refund_failed", "refund_in_doubt":
		default:
			continue
		}
		var d providerData
		if json.Unmarshal(ev.Data, &d) == nil && d.Key != "" {
			results[d.Key] = d
		}
	}
	var out []Cause
	for _, p := range ps {
		capturable := p.Status == PaymentAuthorized || p.Status == PaymentCaptured || p.Status == PaymentPartiallyRefunded
		for i, c := range p.Captures {
			switch {
			case c.Status == PaymentInDoubt:
				out = append(out, Cause{Code: CauseCaptureInDoubt, PaymentID: p.ID, Provider: p.Provider,
					Message: fmt.Sprintf("the capture %s of %s is in doubt: %s; the switch is asking %s whether it captured and will not send the capture again",
						c.ID, FormatMoney(c.Amount), opAnswer(p.Provider, c.Status, results[c.ID]), p.Provider)})
			case c.Status == "failed" && i == len(p.Captures)-1 && capturable && p.PendingCancel == "" &&
				p.Authorized.Value-p.Captured.Value-p.PendingCapture > 0:
				out = append(out, Cause{Code: CauseCaptureFailed, PaymentID: p.ID, Provider: p.Provider,
					Message: fmt.Sprintf("the capture %s of %s failed: %s; nothing was captured, and it can be requested again",
						c.ID, FormatMoney(c.Amount), opAnswer(p.Provider, c.Status, results[c.ID]))})
			}
		}
		for i, r := range p.Refunds {
			switch {
			case r.Status == PaymentInDoubt:
				out = append(out, Cause{Code: CauseRefundInDoubt, PaymentID: p.ID, Provider: p.Provider,
					Message: fmt.Sprintf("the refund %s of %s is in doubt: %s; the switch is asking %s whether it refunded and will not send the refund again",
						r.ID, FormatMoney(r.Amount), opAnswer(p.Provider, r.Status, results[r.ID]), p.Provider)})
			case r.Status == "failed" && !slices.ContainsFunc(p.Refunds[i+1:], func(l Refund) bool { return l.Amount == r.Amount && l.Status != "failed" }):
				out = append(out, Cause{Code: CauseRefundFailed, PaymentID: p.ID, Provider: p.Provider,
					Message: fmt.Sprintf("the refund %s of %s failed: %s; the shopper has not been refunded it",
						r.ID, FormatMoney(r.Amount), opAnswer(p.Provider, r.Status, results[r.ID]))})
			}
		}
	}
	return out
}

// opAnswer says in words what provider answered to an operation whose
// status is status (in_doubt or failed), from its result event's data
// (zero when the event is missing).
func opAnswer(provider, status string, d providerData) string {
	if d.Outcome == "" {
		d.Outcome = outcomeFailed
		if status == PaymentInDoubt {
			d.Outcome = outcomeInDoubt
		}
	}
	code := strings.ReplaceAll(d.Code, "_", " ")
	switch {
	case d.Outcome == outcomeInDoubt && slowCode(d.Code):
		return provider + " did not answer within its timeout"
	case d.Outcome == outcomeInDoubt:
		return provider + " gave no definite answer (" + firstNonEmpty(code, "no answer") + ")"
	case d.Outcome == outcomeDeclined:
		return provider + " declined it (" + firstNonEmpty(code, "declined") + ")"
	case d.Outcome == outcomeNotFound:
		return provider + " never received it"
	case d.Outcome == outcomeFailed && downCode(d.Code):
		return provider + " was down (" + code + ")"
	case d.Outcome == outcomeFailed && refusedCode(d.Code):
		return provider + " refused the request (" + code + "): the switch's credentials or integration for it need attention"
	case d.Outcome == outcomeFailed:
		return provider + " failed without processing it (" + firstNonEmpty(code, "error") + ")"
	}
	return provider + " did not complete it (" + firstNonEmpty(code, d.Outcome) + ")"
}

// orderUncaptured is what the order's payments hold authorized and could
// still capture (uncapturedRest of each).
func orderUncaptured(ps []*paymentRec) int64 {
	var rest int64
	for _, p := range ps {
		rest += max(uncapturedRest(p).Value, 0)
	}
	return rest
}

// holdRule is the fraud rule that held payment id for review, from its
// held_for_review event ("" when there is none).
func holdRule(evs []TimelineEvent, id string) string {
	rule := ""
	for _, ev := range evs {
		if ev.Type != "held_for_review" || ev.PaymentID != id {
			continue
		}
		var d struct {
			Rule string `json:"rule"`
		}
		if json.Unmarshal(ev.Data, &d) == nil {
			rule = d.Rule
		}
	}
	return rule
}

// surcharges is what the shoppers pay for their methods on the order's
// payments that count towards it.
func surcharges(ps []*paymentRec) int64 {
	var sum int64
	for _, p := range ps {
		if p.Surcharge != nil && reserves(p.Status) {
			sum += p.Surcharge.Value
		}
	}
	return sum
}

// creditNotes says which part of the order's refunds went to pay-later
// methods, where a refund is a credit note on the shopper's invoice (no
// money goes back to a shopper who has not paid yet): "" when none did.
func creditNotes(ps []*paymentRec) string {
	var v int64
	cur, method := "", ""
	all := true
	for _, p := range ps {
		if p.Refunded.Value == 0 {
			continue
		}
		if !payLater(p.Method) {
			all = false
			continue
		}
		v += p.Refunded.Value
		cur, method = p.Refunded.Currency, p.Method
	}
	switch {
	case v == 0:
		return ""
	case all:
		return fmt.Sprintf(", as credit notes on the shopper's %s invoice", method)
	}
	return fmt.Sprintf(", %s of it as credit notes on the shopper's %s invoice", FormatMoney(Money{Value: v, Currency: cur}), method)
}
