package txswitch

import (
	"encoding/json"
	"fmt"
	"time"
)

// Authorization lapse. A provider holds an authorization only so long
// (cards about 7 days, Klarna 28): past it the shopper's money is no
// longer reserved and a capture may be declined. A merchant that captures
// on shipment learns that from a failed capture, days after the order,
// unless someone says so before. A method's authorization_validity_seconds
// (cluster version 11) lets explain say it: a day before an authorization
// with an uncaptured rest lapses (authorization_expiring), and once it has
// (authorization_lapsed). Nothing changes state: the provider, not the
// switch, ends the authorization, and a capture after the lapse is still
// sent (some providers honour it) and its answer recorded as any other.

// Explain causes of an authorization's lapse.
const (
	CauseAuthorizationExpiring = "authorization_expiring"
	CauseAuthorizationLapsed   = "authorization_lapsed"
	// AuthorizationWarning is how long before the lapse explain warns.
	AuthorizationWarning = 24 * time.Hour
)

// authorizationCauses are the lapse causes of ps as of now, from cfg's
// validities and the time each payment's authorization was approved (its
// approval event on the order's timeline, evs).
func authorizationCauses(cfg *RoutingConfig, now time.Time, ps []*paymentRec, evs []TimelineEvent) []Cause {
	if cfg == nil {
		return nil
	}
	var out []Cause
	for _, p := range ps {
		rest := uncapturedRest(p)
		if rest.Value <= 0 {
			continue
		}
		mc := cfg.method(p.Method)
		if mc == nil || mc.AuthorizationValiditySeconds <= 0 {
			continue
		}
		at, ok := approvedAt(p, evs)
		if !ok {
			continue
		}
		validity := time.Duration(mc.AuthorizationValiditySeconds) * time.Second
		lapse := at.Add(validity)
		when := lapse.UTC().Format(time.RFC3339)
		switch {
		case !now.Before(lapse):
			out = append(out, Cause{Code: CauseAuthorizationLapsed, PaymentID: p.ID, Provider: p.Provider,
				Message: fmt.Sprintf("the %s authorization of payment %s at %s lapsed at %s (%s authorizations last %s) with %s uncaptured: a capture may be declined; capture what has shipped, or cancel the rest and ask the shopper to pay again",
					p.Method, p.ID, p.Provider, when, p.Method, roughly(validity), FormatMoney(rest))})
		case !now.Before(lapse.Add(-AuthorizationWarning)):
			out = append(out, Cause{Code: CauseAuthorizationExpiring, PaymentID: p.ID, Provider: p.Provider,
				Message: fmt.Sprintf("the %s authorization of payment %s at %s lapses at %s, in %s, with %s uncaptured: capture what has shipped before then",
					p.Method, p.ID, p.Provider, when, roughly(lapse.Sub(now)), FormatMoney(rest))})
		}
	}
	return out
}

// uncapturedRest is what p's authorization still reserves: authorized,
// not captured, not released, and not being cancelled (a cancellation
// that succeeded made the payment cancelled or released the rest).
func uncapturedRest(p *paymentRec) Money {
	rest := Money{Currency: p.Authorized.Currency}
	switch p.Status {
	case PaymentAuthorized, PaymentCaptured, PaymentPartiallyRefunded, PaymentRefunded:
	default:
		return rest
	}
	if c := p.Cancellation; p.PendingCancel != "" || c != nil && (c.Status == "pending" || c.Status == PaymentInDoubt) {
		return rest
	}
	rest.Value = p.Authorized.Value - p.Captured.Value
	if p.Released != nil {
		rest.Value -= p.Released.Value
	}
	return rest
}

// approvedAt is when p's current attempt was approved, from the last
// approval of it on the timeline (a provider response, a notification, a
// status inquiry's answer).
func approvedAt(p *paymentRec, evs []TimelineEvent) (time.Time, bool) {
	for i := len(evs) - 1; i >= 0; i-- {
		ev := evs[i]
		if ev.PaymentID != p.ID || ev.Type != "provider_response" && ev.Type != "notification" {
			continue
		}
		var d providerData
		if json.Unmarshal(ev.Data, &d) != nil || d.Op != string(OpAuthorize) || d.Outcome != outcomeApproved {
			continue
		}
		if d.Attempt != 0 && d.Attempt != p.Attempt {
			continue
		}
		return ev.At, true
	}
	return time.Time{}, false
}

// roughly says d in the unit a person would: days from two days on,
// hours from two hours, else minutes.
func roughly(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%d days", int(d.Round(24*time.Hour)/(24*time.Hour)))
	case d >= 2*time.Hour:
		return fmt.Sprintf("%d hours", int(d.Round(time.Hour)/time.Hour))
	case d >= 2*time.Minute:
		return fmt.Sprintf("%d minutes", int(d.Round(time.Minute)/time.Minute))
	}
	return "a minute"
}
