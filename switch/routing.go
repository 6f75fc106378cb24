package txswitch

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// Method selection and provider routing. Both are pure functions of the
// routing configuration, the order and a breaker-state snapshot, so every
// node computes the same answer for the same inputs and tests need no
// providers. The configuration's slice order is the priority order: methods
// are listed in config order, providers in route order; no map is iterated.

// OrderContext is what routing knows about an order.
type OrderContext struct {
	Country  string // ISO 3166-1 alpha-2 of the customer
	Currency string // ISO 4217 of the amount
	Amount   int64  // minor units
	Channel  string // online, pos, moto
	Email    string // customer email, for fraud rules; may be empty
}

// money returns the order amount as Money.
func (oc OrderContext) money() Money { return Money{Value: oc.Amount, Currency: oc.Currency} }

// Reasons a method is not offered (MethodExclusion.Reason).
const (
	ExclusionDisabled         = "disabled"
	ExclusionCountry          = "country"
	ExclusionCurrency         = "currency"
	ExclusionChannel          = "channel"
	ExclusionAmountBelowMin   = "amount_below_min"
	ExclusionAmountAboveMax   = "amount_above_max"
	ExclusionNoRoute          = "no_route"
	ExclusionAllProvidersDown = "all_providers_down"
	// The order itself takes no payment now: every method is excluded.
	ExclusionOrderExpired = "order_expired"
	ExclusionNothingToPay = "nothing_to_pay"
	// Another payment of the order is still unsettled (pending, in doubt,
	// held for review): a new one would be refused with 409
	// payment_in_progress until it finishes.
	ExclusionPaymentInProgress = "payment_in_progress"
)

// CodeMethodNotAvailable is the error code for paying with a method the
// order may not use.
const CodeMethodNotAvailable = "method_not_available"

// SkipBreakerOpen is RouteCandidate.SkipReason for a provider whose breaker
// is open.
const SkipBreakerOpen = "breaker_open"

// RouteCandidate is one provider routing would use for a payment, in
// priority order, with the breaker state seen when routing decided.
type RouteCandidate struct {
	Provider string       `json:"provider"`
	Breaker  BreakerState `json:"breaker"`
	// Skipped providers are not called (their breaker is open); they are
	// listed so the timeline shows why a lower-priority provider was used.
	Skipped    bool   `json:"skipped,omitempty"`
	SkipReason string `json:"skip_reason,omitempty"`
}

// methodTitles are display names for the methods the project ships with.
// A method added by configuration is shown by its config name.
var methodTitles = map[string]string{
	"card":            "Card",
	"ideal":           "iDEAL",
	"bancontact":      "Bancontact",
	"klarna_paylater": "Klarna Pay Later",
	"mobilepay":       "MobilePay",
	"sepa_debit":      "SEPA Direct Debit",
}

func methodTitle(name string) string {
	if t, ok := methodTitles[name]; ok {
		return t
	}
	return name
}

// evaluation is the outcome of checking one method for one order.
type evaluation struct {
	exclusion  *MethodExclusion // nil when offered
	candidates []RouteCandidate // eligible configured providers, route order, deduplicated
	surcharge  Money            // the shopper's fee for the method, when offered
}

// evaluateMethod checks mc for oc. The checks run in a fixed order (disabled,
// country, currency, channel, minimum, maximum, routes, health) so that the
// reason reported is stable and the most useful one: a Dutch customer is told
// Bancontact is Belgian-only, not that its providers happen to be down.
func evaluateMethod(cfg *RoutingConfig, mc *MethodConfig, oc OrderContext, health func(provider, method string) BreakerState) evaluation {
	title := methodTitle(mc.Name)
	excl := func(reason, detail string) evaluation {
		return evaluation{exclusion: &MethodExclusion{Method: mc.Name, Reason: reason, Detail: detail}}
	}
	if !mc.Enabled {
		return excl(ExclusionDisabled, title+" is disabled in the routing configuration")
	}
	if !eligibleIn(mc.Countries, oc.Country) {
		return excl(ExclusionCountry, fmt.Sprintf("%s is offered %s; customer country is %s",
			title, describeCountries(mc.Countries), orNotGiven(oc.Country)))
	}
	if !eligibleIn(mc.Currencies, oc.Currency) {
		return excl(ExclusionCurrency, fmt.Sprintf("%s accepts %s only; order currency is %s",
			title, strings.Join(mc.Currencies, ", "), orNotGiven(oc.Currency)))
	}
	if !eligibleIn(mc.Channels, oc.Channel) {
		return excl(ExclusionChannel, fmt.Sprintf("%s is available for %s only; order channel is %s",
			title, strings.Join(mc.Channels, ", "), orNotGiven(oc.Channel)))
	}
	// The amount limits bound what the provider is asked to move, and the
	// shopper's surcharge is part of it: iDEAL refuses EUR 50,000.29
	// whatever part of it is a fee, so an order of EUR 50,000.00 paid with
	// a EUR 0.29 surcharge must not be offered iDEAL.
	surcharge := Surcharge(*mc, oc.money())
	charged := Money{Value: min(max(oc.Amount, 0)+surcharge.Value, MaxMoneyValue), Currency: oc.Currency}
	chargedDetail := func() string { // only for an exclusion: this runs per method per request
		if surcharge.Value == 0 {
			return "order amount is " + FormatMoney(oc.money())
		}
		return fmt.Sprintf("the payment would be %s (order amount %s plus a %s surcharge)",
			FormatMoney(charged), FormatMoney(oc.money()), FormatMoney(surcharge))
	}
	if mc.MinAmount > 0 && charged.Value < mc.MinAmount {
		return excl(ExclusionAmountBelowMin, fmt.Sprintf("%s needs at least %s; %s",
			title, FormatMoney(Money{Value: mc.MinAmount, Currency: oc.Currency}), chargedDetail()))
	}
	if mc.MaxAmount > 0 && charged.Value > mc.MaxAmount {
		return excl(ExclusionAmountAboveMax, fmt.Sprintf("%s allows at most %s; %s",
			title, FormatMoney(Money{Value: mc.MaxAmount, Currency: oc.Currency}), chargedDetail()))
	}

	var cands []RouteCandidate
	var why []string // per-route reasons, only used when no route fits
	// The floors and ceilings of the routes that fit the order but for its
	// amount. Amount limits are in minor units of one currency, so a method
	// taking several currencies sets them per route (Klarna's per market);
	// when those alone stop every route, the shopper is told the amount, as
	// with the method's own limits, not that no provider serves the order.
	var floors, ceilings []int64
	for i := range mc.Routes {
		r := &mc.Routes[i]
		if miss := routeMismatch(cfg, r, oc, charged.Value); miss.reason != "" {
			why = append(why, r.Provider+": "+miss.reason)
			switch miss.limit {
			case limitMin:
				floors = append(floors, r.MinAmount)
			case limitMax:
				ceilings = append(ceilings, r.MaxAmount)
			}
			continue
		}
		if slices.ContainsFunc(cands, func(c RouteCandidate) bool { return c.Provider == r.Provider }) {
			// A provider may appear in several routes (one per market);
			// it is tried once, at its highest priority.
			continue
		}
		state := BreakerClosed
		if health != nil {
			state = health(r.Provider, mc.Name)
		}
		c := RouteCandidate{Provider: r.Provider, Breaker: state}
		if state == BreakerOpen {
			c.Skipped, c.SkipReason = true, SkipBreakerOpen
		}
		cands = append(cands, c)
	}
	if len(cands) == 0 {
		switch {
		case len(floors) > 0 && len(ceilings) == 0:
			return excl(ExclusionAmountBelowMin, fmt.Sprintf("%s needs at least %s; %s",
				title, FormatMoney(Money{Value: slices.Min(floors), Currency: oc.Currency}), chargedDetail()))
		case len(ceilings) > 0 && len(floors) == 0:
			return excl(ExclusionAmountAboveMax, fmt.Sprintf("%s allows at most %s; %s",
				title, FormatMoney(Money{Value: slices.Max(ceilings), Currency: oc.Currency}), chargedDetail()))
		}
		detail := fmt.Sprintf("no provider route of %s serves %s", title, describeOrder(oc))
		if len(why) > 0 {
			detail += " (" + strings.Join(why, "; ") + ")"
		} else {
			detail += " (the method has no routes)"
		}
		return excl(ExclusionNoRoute, detail)
	}
	if !slices.ContainsFunc(cands, func(c RouteCandidate) bool { return !c.Skipped }) {
		states := make([]string, len(cands))
		for i, c := range cands {
			states[i] = c.Provider + ": breaker " + string(c.Breaker)
		}
		ev := excl(ExclusionAllProvidersDown, fmt.Sprintf("every provider of %s is unavailable right now (%s)",
			title, strings.Join(states, ", ")))
		ev.candidates = cands
		return ev
	}
	return evaluation{candidates: cands, surcharge: surcharge}
}

// routeMiss is why a route cannot serve an order: reason for the
// timeline, and which of its amount limits stopped it, if one did.
type routeMiss struct {
	reason string // "" when the route fits
	limit  int    // limitNone, limitMin or limitMax
}

const (
	limitNone = iota
	limitMin
	limitMax
)

// routeMismatch says why route r cannot serve oc; charged is what the
// provider would be asked to move (surcharge included), which its amount
// limits bound. The amount is checked last, so limitMin and limitMax mean
// the route fits everything else.
func routeMismatch(cfg *RoutingConfig, r *RouteConfig, oc OrderContext, charged int64) routeMiss {
	switch {
	case !slices.ContainsFunc(cfg.Providers, func(p ProviderConfig) bool { return p.Name == r.Provider }):
		return routeMiss{reason: "provider is not configured"}
	case !eligibleIn(r.Countries, oc.Country):
		return routeMiss{reason: "country " + strings.Join(r.Countries, "/") + " only"}
	case !eligibleIn(r.Currencies, oc.Currency):
		return routeMiss{reason: "currency " + strings.Join(r.Currencies, "/") + " only"}
	case !eligibleIn(r.Channels, oc.Channel):
		return routeMiss{reason: "channel " + strings.Join(r.Channels, "/") + " only"}
	case r.MinAmount > 0 && charged < r.MinAmount:
		return routeMiss{reason: "minimum " + FormatMoney(Money{Value: r.MinAmount, Currency: oc.Currency}), limit: limitMin}
	case r.MaxAmount > 0 && charged > r.MaxAmount:
		return routeMiss{reason: "maximum " + FormatMoney(Money{Value: r.MaxAmount, Currency: oc.Currency}), limit: limitMax}
	}
	return routeMiss{}
}

// eligibleIn implements the config rule "an empty list means any".
func eligibleIn(list []string, v string) bool {
	return len(list) == 0 || slices.Contains(list, v)
}

func orNotGiven(s string) string {
	if s == "" {
		return "not given"
	}
	return s
}

// describeCountries keeps details short: SEPA alone is 39 countries.
func describeCountries(cs []string) string {
	if len(cs) <= 8 {
		return "in " + strings.Join(cs, ", ") + " only"
	}
	return fmt.Sprintf("in %d countries only (%s, ...)", len(cs), strings.Join(cs[:8], ", "))
}

func describeOrder(oc OrderContext) string {
	return fmt.Sprintf("country %s, %s, channel %s", orNotGiven(oc.Country), FormatMoney(oc.money()), orNotGiven(oc.Channel))
}

// EligibleMethods lists the methods to show for an order: every enabled
// method, in config order, that fits the customer's country, the currency,
// the channel and the amount, and has at least one eligible route whose
// provider is configured and whose breaker (per provider and method, as
// reported by health) is not open. Each offer carries its surcharge and its
// usable providers in priority order. Every other method is listed in
// Excluded, in config order, with a reason and a human detail. A nil health
// treats every breaker as closed. cfg is not modified.
func EligibleMethods(cfg *RoutingConfig, oc OrderContext, health func(provider, method string) BreakerState) MethodsResponse {
	resp := MethodsResponse{Methods: []MethodOffer{}} // [] not null in JSON
	for i := range cfg.Methods {
		mc := &cfg.Methods[i]
		ev := evaluateMethod(cfg, mc, oc, health)
		if ev.exclusion != nil {
			resp.Excluded = append(resp.Excluded, *ev.exclusion)
			continue
		}
		offer := MethodOffer{Method: mc.Name, Surcharge: ev.surcharge}
		for _, c := range ev.candidates {
			if !c.Skipped {
				offer.Providers = append(offer.Providers, c.Provider)
			}
		}
		resp.Methods = append(resp.Methods, offer)
	}
	return resp
}

// RouteCandidates gives the providers to try for a payment with method, in
// priority order, each with the breaker state seen; providers with an open
// breaker are included with Skipped set so the timeline can show them.
//
// A method that is unknown or that EligibleMethods would exclude is a 422
// method_not_available on field "method" whose message says why. When the
// method is excluded only because every provider's breaker is open, the
// (all skipped) candidates are returned together with the error, so the
// caller can record the breaker states it saw.
func RouteCandidates(cfg *RoutingConfig, oc OrderContext, method string, health func(provider, method string) BreakerState) ([]RouteCandidate, *Error) {
	i := slices.IndexFunc(cfg.Methods, func(m MethodConfig) bool { return m.Name == method })
	if i < 0 {
		return nil, NewError(KindUnprocessable, CodeMethodNotAvailable, "method",
			fmt.Sprintf("payment method %q is not configured", method))
	}
	ev := evaluateMethod(cfg, &cfg.Methods[i], oc, health)
	if ev.exclusion != nil {
		return ev.candidates, NewError(KindUnprocessable, CodeMethodNotAvailable, "method",
			ev.exclusion.Detail+" ("+ev.exclusion.Reason+")")
	}
	return ev.candidates, nil
}

// MaxSurchargeBasisPoints caps SurchargeConfig.BasisPoints at 100 %: a
// higher percentage is a typo, and the cap keeps the arithmetic exact.
const MaxSurchargeBasisPoints = 10_000

// Surcharge is the fee the shopper pays for using mc on amount, in amount's
// currency: Fixed + amount*BasisPoints/10000, the percentage part rounded
// half up to a whole minor unit. It is computed in integers, splitting the
// amount so that amount*BasisPoints never overflows. Negative settings and
// non-positive amounts contribute nothing (Validate rejects the former); the
// result is capped at MaxMoneyValue.
func Surcharge(mc MethodConfig, amount Money) Money {
	fixed := max(mc.Surcharge.FixedMinor, 0)
	if len(mc.Surcharge.FixedByCurrency) > 0 {
		fixed = max(mc.Surcharge.FixedByCurrency[amount.Currency], 0) // unlisted: none
	}
	bps := min(max(mc.Surcharge.BasisPoints, 0), MaxSurchargeBasisPoints)
	v := min(max(amount.Value, 0), MaxMoneyValue)
	// v*bps/10000 = q*bps + r*bps/10000 with v = q*10000 + r; q*bps <= 10^15
	// and r*bps < 10^8, so nothing overflows; only the second term rounds.
	q, r := v/10_000, v%10_000
	pct := q*bps + (r*bps+5_000)/10_000
	total := min(fixed, MaxMoneyValue) + pct
	return Money{Value: min(total, MaxMoneyValue), Currency: amount.Currency}
}

// HashAPIKey returns the hex SHA-256 of an API key, the form in which keys
// are stored in MerchantConfig.APIKeyHashes (a leaked config or snapshot
// does not leak keys). API keys are long random strings, so an unsalted fast
// hash is enough; it is not meant for passwords.
func HashAPIKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// MerchantForKeyHash finds the merchant owning an API key hash. Every stored
// hash is compared in constant time and the loop does not stop at a match,
// so the time taken does not reveal which or how many bytes matched.
func (cfg *RoutingConfig) MerchantForKeyHash(hash string) (MerchantConfig, bool) {
	var found MerchantConfig
	ok := false
	for i := range cfg.Merchants {
		for _, h := range cfg.Merchants[i].APIKeyHashes {
			if subtle.ConstantTimeCompare([]byte(h), []byte(hash)) == 1 && !ok {
				found, ok = cfg.Merchants[i], true
			}
		}
	}
	return found, ok
}

// Bounds of a routing configuration. The configuration is one replicated
// command and is evaluated on every checkout, so it must stay small; the
// limits are far above any real setup.
const (
	MaxConfigMerchants       = 10_000
	MaxConfigMethods         = 64
	MaxConfigProviders       = 64
	MaxRoutesPerMethod       = 32
	MaxFraudRules            = 256
	MaxConfigListLen         = 300 // countries/currencies/channels/methods in one list
	MaxKeyHashesPerMerchant  = 16
	MaxProviderTimeoutMillis = 60_000    // one provider call; longer is a hung checkout
	maxBreakerMillis         = 3_600_000 // breaker windows above an hour are typos
	maxNameLen               = 64
	maxTextLen               = 256
)

// CodeInvalidConfig is the error code of every Validate failure.
const CodeInvalidConfig = "invalid_config"

// Validate checks a routing configuration before it is accepted: names are
// well formed and unique, every country, currency and channel is known,
// amounts and fees are in range, every route points at a configured
// provider, providers have a base URL and sane timeouts and breaker
// settings, and every merchant has API key hashes. It returns the first
// problem in document order as a 400 invalid_config whose Field is the JSON
// path ("methods[2].routes[0].provider"), or nil.
func (cfg *RoutingConfig) Validate() *Error {
	bad := func(field, format string, args ...any) *Error {
		return NewError(KindInvalid, CodeInvalidConfig, field, fmt.Sprintf(format, args...))
	}
	if len(cfg.Merchants) > MaxConfigMerchants {
		return bad("merchants", "at most %d merchants are allowed, got %d", MaxConfigMerchants, len(cfg.Merchants))
	}
	merchantIDs := map[string]bool{}
	keyOwner := map[string]string{}
	for i, m := range cfg.Merchants {
		p := fmt.Sprintf("merchants[%d]", i)
		if !validMerchantID(m.ID) {
			return bad(p+".id", "merchant id %q must be 1-%d letters, digits, '_' or '-'", m.ID, maxNameLen)
		}
		if merchantIDs[m.ID] {
			return bad(p+".id", "duplicate merchant id %q", m.ID)
		}
		merchantIDs[m.ID] = true
		if len(m.Name) > maxTextLen {
			return bad(p+".name", "merchant name is longer than %d bytes", maxTextLen)
		}
		if m.OrderExpirySeconds < 0 || m.OrderExpirySeconds > MaxOrderExpirySeconds {
			return bad(p+".order_expiry_seconds", "order expiry must be 0 (the default, %s) or 1..%d seconds, got %d", DefaultOrderExpiry, MaxOrderExpirySeconds, m.OrderExpirySeconds)
		}
		if len(m.APIKeyHashes) == 0 {
			return bad(p+".api_key_hashes", "merchant %q has no API key hashes, so it could never authenticate", m.ID)
		}
		if len(m.APIKeyHashes) > MaxKeyHashesPerMerchant {
			return bad(p+".api_key_hashes", "at most %d API key hashes per merchant, got %d", MaxKeyHashesPerMerchant, len(m.APIKeyHashes))
		}
		for j, h := range m.APIKeyHashes {
			hp := fmt.Sprintf("%s.api_key_hashes[%d]", p, j)
			if !validKeyHash(h) {
				return bad(hp, "API key hash must be 64 lower-case hex digits (hex SHA-256 of the key, never the key itself)")
			}
			if owner, dup := keyOwner[h]; dup {
				return bad(hp, "API key hash is already used by merchant %q", owner)
			}
			keyOwner[h] = m.ID
		}
	}

	if len(cfg.Providers) > MaxConfigProviders {
		return bad("providers", "at most %d providers are allowed, got %d", MaxConfigProviders, len(cfg.Providers))
	}
	providers := map[string]bool{}
	for i, pc := range cfg.Providers {
		p := fmt.Sprintf("providers[%d]", i)
		if !validConfigName(pc.Name) {
			return bad(p+".name", "provider name %q must be 1-%d of a-z, 0-9 and '_', starting with a letter or digit", pc.Name, maxNameLen)
		}
		if providers[pc.Name] {
			return bad(p+".name", "duplicate provider name %q", pc.Name)
		}
		providers[pc.Name] = true
		if e := validBaseURL(pc.BaseURL); e != "" {
			return bad(p+".base_url", "provider %q: %s", pc.Name, e)
		}
		if pc.TimeoutMillis <= 0 || pc.TimeoutMillis > MaxProviderTimeoutMillis {
			return bad(p+".timeout_ms", "provider %q: timeout_ms must be 1..%d, got %d", pc.Name, MaxProviderTimeoutMillis, pc.TimeoutMillis)
		}
		b := pc.Breaker
		// !(x >= 0 && x <= 1) also rejects NaN.
		if !(b.FailureRatio >= 0 && b.FailureRatio <= 1) {
			return bad(p+".breaker.failure_ratio", "provider %q: failure_ratio must be between 0 and 1, got %v", pc.Name, b.FailureRatio)
		}
		for _, d := range []struct {
			name string
			v    int64
		}{{"interval_ms", b.IntervalMillis}, {"open_ms", b.OpenMillis}} {
			if d.v < 0 || d.v > maxBreakerMillis {
				return bad(p+".breaker."+d.name, "provider %q: %s must be 0..%d, got %d", pc.Name, d.name, maxBreakerMillis, d.v)
			}
		}
	}

	if len(cfg.Methods) > MaxConfigMethods {
		return bad("methods", "at most %d methods are allowed, got %d", MaxConfigMethods, len(cfg.Methods))
	}
	methods := map[string]bool{}
	for i, mc := range cfg.Methods {
		p := fmt.Sprintf("methods[%d]", i)
		if !validConfigName(mc.Name) {
			return bad(p+".name", "method name %q must be 1-%d of a-z, 0-9 and '_', starting with a letter or digit", mc.Name, maxNameLen)
		}
		if methods[mc.Name] {
			return bad(p+".name", "duplicate method name %q", mc.Name)
		}
		methods[mc.Name] = true
		if e := validateEligibility(p, mc.Countries, mc.Currencies, mc.Channels, mc.MinAmount, mc.MaxAmount); e != nil {
			return e
		}
		if mc.PendingExpirySeconds < 0 || mc.PendingExpirySeconds > MaxPendingExpirySeconds {
			return bad(p+".pending_expiry_seconds", "method %q: pending_expiry_seconds must be 0..%d (0 = %s), got %d",
				mc.Name, MaxPendingExpirySeconds, DefaultPendingExpiry, mc.PendingExpirySeconds)
		}
		if mc.AuthorizationValiditySeconds < 0 || mc.AuthorizationValiditySeconds > MaxAuthorizationValiditySeconds {
			return bad(p+".authorization_validity_seconds", "method %q: authorization_validity_seconds must be 0..%d (0 = not known), got %d",
				mc.Name, MaxAuthorizationValiditySeconds, mc.AuthorizationValiditySeconds)
		}
		if mc.Surcharge.FixedMinor < 0 || mc.Surcharge.FixedMinor > MaxMoneyValue {
			return bad(p+".surcharge.fixed", "fixed surcharge must be 0..%d minor units, got %d", MaxMoneyValue, mc.Surcharge.FixedMinor)
		}
		if e := validateFixedByCurrency(p+".surcharge", mc); e != nil {
			return e
		}
		if mc.Surcharge.BasisPoints < 0 || mc.Surcharge.BasisPoints > MaxSurchargeBasisPoints {
			return bad(p+".surcharge.basis_points", "surcharge basis points must be 0..%d, got %d", MaxSurchargeBasisPoints, mc.Surcharge.BasisPoints)
		}
		if len(mc.Routes) > MaxRoutesPerMethod {
			return bad(p+".routes", "at most %d routes per method, got %d", MaxRoutesPerMethod, len(mc.Routes))
		}
		if mc.Enabled && len(mc.Routes) == 0 {
			return bad(p+".routes", "enabled method %q has no routes, so it could never be offered", mc.Name)
		}
		for j, r := range mc.Routes {
			rp := fmt.Sprintf("%s.routes[%d]", p, j)
			if !providers[r.Provider] {
				return bad(rp+".provider", "route of method %q names provider %q, which is not configured", mc.Name, r.Provider)
			}
			if e := validateEligibility(rp, r.Countries, r.Currencies, r.Channels, r.MinAmount, r.MaxAmount); e != nil {
				return e
			}
		}
	}

	if len(cfg.FraudRules) > MaxFraudRules {
		return bad("fraud_rules", "at most %d fraud rules are allowed, got %d", MaxFraudRules, len(cfg.FraudRules))
	}
	rules := map[string]bool{}
	for i, fr := range cfg.FraudRules {
		p := fmt.Sprintf("fraud_rules[%d]", i)
		if !validConfigName(fr.Name) {
			return bad(p+".name", "fraud rule name %q must be 1-%d of a-z, 0-9 and '_', starting with a letter or digit", fr.Name, maxNameLen)
		}
		if rules[fr.Name] {
			return bad(p+".name", "duplicate fraud rule name %q", fr.Name)
		}
		rules[fr.Name] = true
		if fr.MinAmount < 0 || fr.MinAmount > MaxMoneyValue {
			return bad(p+".min_amount", "min_amount must be 0..%d minor units, got %d", MaxMoneyValue, fr.MinAmount)
		}
		if e := validateCountries(p+".countries", fr.Countries); e != nil {
			return e
		}
		if e := validateCurrencies(p+".currencies", fr.Currencies); e != nil {
			return e
		}
		if len(fr.Methods) > MaxConfigListLen {
			return bad(p+".methods", "at most %d entries, got %d", MaxConfigListLen, len(fr.Methods))
		}
		for j, m := range fr.Methods {
			if !methods[m] {
				return bad(fmt.Sprintf("%s.methods[%d]", p, j), "fraud rule %q names method %q, which is not configured", fr.Name, m)
			}
		}
		if fr.EmailSuffix != "" && !validEmailSuffix(fr.EmailSuffix) {
			return bad(p+".email_suffix", "email_suffix %q must be a lower-case domain such as \"example.com\" (optionally starting with '@' or '.')", fr.EmailSuffix)
		}
		if fr.MinAmount == 0 && len(fr.Currencies) == 0 && len(fr.Countries) == 0 && len(fr.Methods) == 0 && fr.EmailSuffix == "" {
			return bad(p, "fraud rule %q has no conditions and would hold every payment", fr.Name)
		}
	}
	return nil
}

// CheckAmountCurrencies refuses amounts in the configuration that do not
// name their currency: a method's fixed surcharge over several currencies
// (give it per currency in fixed_by_currency), and amount limits over
// several. Limits are minor units of the order's currency, so a maximum
// of 1,000,000 over several currencies is EUR 10,000.00, SEK 10,000.00
// (about EUR 900) and JPY 1,000,000 at once: a method or route with
// min_amount or max_amount must accept exactly one currency (its own list,
// or for a route without one, its method's). A method that takes several
// currencies sets its limits on routes, one per currency, as the default
// configuration does for Klarna. A fraud rule's min_amount likewise needs
// exactly one currency: over every currency, a threshold of 1,000,000
// holds HUF orders from about EUR 25 (flooding the review queue) and lets
// GBP orders through up to about EUR 11,700.
//
// Validate does not check this: apply accepts stored configurations that
// earlier releases accepted. `txswitch config check` refuses every such
// amount; PutConfig only the ones the configuration in force does not
// already hold (CheckNewAmountCurrencies).
func (cfg *RoutingConfig) CheckAmountCurrencies() *Error {
	return cfg.CheckNewAmountCurrencies(nil)
}

// CheckNewAmountCurrencies is CheckAmountCurrencies without the problems
// cur (the configuration in force, nil for none) already has: the same
// setting on the same method or route. A cluster seeded by an earlier
// release may hold one (its default Klarna window over seven currencies),
// and an operator disabling a method in an incident must not first have to
// rework another one; a new or changed setting is refused.
func (cfg *RoutingConfig) CheckNewAmountCurrencies(cur *RoutingConfig) *Error {
	had := map[string]bool{}
	if cur != nil {
		for _, p := range cur.amountCurrencyProblems() {
			had[p.key] = true
		}
	}
	for _, p := range cfg.amountCurrencyProblems() {
		if !had[p.key] {
			return p.err
		}
	}
	return nil
}

// amountProblem is one amount that does not name its currency; key
// identifies the setting (method, route, values, currencies), not its
// position, so that reordering methods keeps it the same problem.
type amountProblem struct {
	key string
	err *Error
}

func (cfg *RoutingConfig) amountCurrencyProblems() []amountProblem {
	var out []amountProblem
	add := func(key, field, format string, args ...any) {
		out = append(out, amountProblem{key, NewError(KindInvalid, CodeInvalidConfig, field, fmt.Sprintf(format, args...))})
	}
	describe := func(currencies []string) string {
		if len(currencies) == 0 {
			return "every currency"
		}
		return strings.Join(currencies, ", ")
	}
	for i, mc := range cfg.Methods {
		p := fmt.Sprintf("methods[%d]", i)
		curs := strings.Join(mc.Currencies, ",")
		if mc.Surcharge.FixedMinor > 0 && len(mc.Currencies) != 1 {
			add(fmt.Sprintf("fixed %s %d %s", mc.Name, mc.Surcharge.FixedMinor, curs), p+".surcharge.fixed",
				"method %q has a fixed surcharge of %d minor units but accepts %s: that is a different fee in each currency (EUR %s, JPY %d); give it per currency in surcharge.fixed_by_currency (from cluster version %d)",
				mc.Name, mc.Surcharge.FixedMinor, describe(mc.Currencies), formatMinor(mc.Surcharge.FixedMinor, 2), mc.Surcharge.FixedMinor, VersionCurrencyFees)
		}
		if (mc.MinAmount > 0 || mc.MaxAmount > 0) && len(mc.Currencies) != 1 {
			add(fmt.Sprintf("limits %s %d %d %s", mc.Name, mc.MinAmount, mc.MaxAmount, curs), p+".currencies",
				"method %q has an amount limit (min_amount %d, max_amount %d minor units) but accepts %s: a limit means one currency; set it on routes, one per currency",
				mc.Name, mc.MinAmount, mc.MaxAmount, describe(mc.Currencies))
		}
		for j, r := range mc.Routes {
			if r.MinAmount == 0 && r.MaxAmount == 0 {
				continue
			}
			rc := r.Currencies
			if len(rc) == 0 {
				rc = mc.Currencies
			}
			if len(rc) != 1 {
				add(fmt.Sprintf("route %s %s %s %s %d %d", mc.Name, r.Provider, strings.Join(r.Countries, ","), strings.Join(rc, ","), r.MinAmount, r.MaxAmount),
					fmt.Sprintf("%s.routes[%d].currencies", p, j),
					"route %d of method %q (provider %q) has an amount limit (min_amount %d, max_amount %d minor units) but serves %s: a limit means one currency; give the route one",
					j, mc.Name, r.Provider, r.MinAmount, r.MaxAmount, describe(rc))
			}
		}
	}
	for i, fr := range cfg.FraudRules {
		if fr.MinAmount > 0 && len(fr.Currencies) != 1 {
			add(fmt.Sprintf("fraud %s %d %s", fr.Name, fr.MinAmount, strings.Join(fr.Currencies, ",")), fmt.Sprintf("fraud_rules[%d].currencies", i),
				"fraud rule %q holds orders from %d minor units of %s: that is a different threshold in each currency (EUR %s, HUF %s, JPY %d); give the rule one currency, and a rule per currency",
				fr.Name, fr.MinAmount, describe(fr.Currencies), formatMinor(fr.MinAmount, 2), formatMinor(fr.MinAmount, 2), fr.MinAmount)
		}
	}
	return out
}

// validateFixedByCurrency checks a method's per-currency fixed surcharges:
// ISO currencies the method accepts (a fee for a currency it never takes
// is a typo), amounts in range, and not beside a plain fixed part.
func validateFixedByCurrency(prefix string, mc MethodConfig) *Error {
	by := mc.Surcharge.FixedByCurrency
	if len(by) == 0 {
		return nil
	}
	field := prefix + ".fixed_by_currency"
	bad := func(field, format string, args ...any) *Error {
		return NewError(KindInvalid, CodeInvalidConfig, field, fmt.Sprintf(format, args...))
	}
	if mc.Surcharge.FixedMinor != 0 {
		return bad(prefix+".fixed", "method %q: give the fixed surcharge either as fixed or per currency in fixed_by_currency, not both", mc.Name)
	}
	if len(by) > MaxConfigListLen {
		return bad(field, "at most %d currencies, got %d", MaxConfigListLen, len(by))
	}
	// Sorted, so that the error reported is the same on every node.
	cur := make([]string, 0, len(by))
	for c := range by {
		cur = append(cur, c)
	}
	slices.Sort(cur)
	for _, c := range cur {
		f := field + "." + c
		if _, ok := CurrencyExponent(c); !ok {
			return bad(f, "%q is not an ISO 4217 currency code (upper case)", c)
		}
		if len(mc.Currencies) > 0 && !slices.Contains(mc.Currencies, c) {
			return bad(f, "method %q does not accept %s (it accepts %s)", mc.Name, c, strings.Join(mc.Currencies, ", "))
		}
		if v := by[c]; v < 0 || v > MaxMoneyValue {
			return bad(f, "fixed surcharge must be 0..%d minor units, got %d", MaxMoneyValue, v)
		}
	}
	return nil
}

// usesFixedByCurrency reports whether cfg gives any method's fixed
// surcharge per currency (cluster version VersionCurrencyFees).
func usesFixedByCurrency(cfg *RoutingConfig) bool {
	return slices.ContainsFunc(cfg.Methods, func(mc MethodConfig) bool { return len(mc.Surcharge.FixedByCurrency) > 0 })
}

// usesAuthorizationValidity reports whether cfg gives any method an
// authorization validity (cluster version VersionFollowUps).
func usesAuthorizationValidity(cfg *RoutingConfig) bool {
	return slices.ContainsFunc(cfg.Methods, func(mc MethodConfig) bool { return mc.AuthorizationValiditySeconds > 0 })
}

// configFieldsGate refuses cfg while the cluster runs below the version
// of a field cfg uses: an older member would decode the configuration
// without it and store it so, and its state would differ from the
// others'. Proposers ask it, and apply repeats it from its own state.
func configFieldsGate(cfg *RoutingConfig, clusterVersion int) *Error {
	for _, g := range []struct {
		version int
		uses    func(*RoutingConfig) bool
		what    string
	}{
		{VersionCurrencyFees, usesFixedByCurrency, "a fixed surcharge per currency (surcharge.fixed_by_currency)"},
		{VersionFollowUps, usesAuthorizationValidity, "an authorization validity (authorization_validity_seconds)"},
	} {
		if clusterVersion < g.version && g.uses(cfg) {
			return NewError(KindConflict, CodeVersionNotSupported, "methods",
				fmt.Sprintf("%s needs cluster version %d: every member must run a release that supports it (the cluster is at %d)", g.what, g.version, clusterVersion))
		}
	}
	return nil
}

// validateEligibility checks the eligibility fields shared by methods and
// routes, reporting paths under prefix.
func validateEligibility(prefix string, countries, currencies, channels []string, minAmount, maxAmount int64) *Error {
	bad := func(field, format string, args ...any) *Error {
		return NewError(KindInvalid, CodeInvalidConfig, prefix+"."+field, fmt.Sprintf(format, args...))
	}
	if e := validateCountries(prefix+".countries", countries); e != nil {
		return e
	}
	if e := validateCurrencies(prefix+".currencies", currencies); e != nil {
		return e
	}
	if len(channels) > MaxConfigListLen {
		return bad("channels", "at most %d entries, got %d", MaxConfigListLen, len(channels))
	}
	for j, c := range channels {
		if !ValidChannel(c) {
			return bad(fmt.Sprintf("channels[%d]", j), "channel %q must be one of online, pos, moto", c)
		}
		if slices.Contains(channels[:j], c) {
			return bad(fmt.Sprintf("channels[%d]", j), "duplicate channel %q", c)
		}
	}
	if minAmount < 0 || minAmount > MaxMoneyValue {
		return bad("min_amount", "min_amount must be 0..%d minor units, got %d", MaxMoneyValue, minAmount)
	}
	if maxAmount < 0 || maxAmount > MaxMoneyValue {
		return bad("max_amount", "max_amount must be 0..%d minor units, got %d", MaxMoneyValue, maxAmount)
	}
	if maxAmount > 0 && minAmount > maxAmount {
		return bad("min_amount", "min_amount %d is above max_amount %d", minAmount, maxAmount)
	}
	return nil
}

func validateCurrencies(field string, currencies []string) *Error {
	if len(currencies) > MaxConfigListLen {
		return NewError(KindInvalid, CodeInvalidConfig, field, fmt.Sprintf("at most %d entries, got %d", MaxConfigListLen, len(currencies)))
	}
	for j, c := range currencies {
		f := fmt.Sprintf("%s[%d]", field, j)
		if _, ok := CurrencyExponent(c); !ok {
			return NewError(KindInvalid, CodeInvalidConfig, f, fmt.Sprintf("%q is not an ISO 4217 currency code (upper case)", c))
		}
		if slices.Contains(currencies[:j], c) {
			return NewError(KindInvalid, CodeInvalidConfig, f, fmt.Sprintf("duplicate currency %q", c))
		}
	}
	return nil
}

func validateCountries(field string, countries []string) *Error {
	if len(countries) > MaxConfigListLen {
		return NewError(KindInvalid, CodeInvalidConfig, field, fmt.Sprintf("at most %d entries, got %d", MaxConfigListLen, len(countries)))
	}
	for j, c := range countries {
		f := fmt.Sprintf("%s[%d]", field, j)
		if !ValidCountry(c) {
			return NewError(KindInvalid, CodeInvalidConfig, f, fmt.Sprintf("%q is not an ISO 3166-1 alpha-2 country code (upper case, e.g. NL)", c))
		}
		if slices.Contains(countries[:j], c) {
			return NewError(KindInvalid, CodeInvalidConfig, f, fmt.Sprintf("duplicate country %q", c))
		}
	}
	return nil
}

// validConfigName accepts config names used in URLs, metrics labels and keys.
func validConfigName(s string) bool {
	if s == "" || len(s) > maxNameLen || s[0] == '_' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func validMerchantID(s string) bool {
	if s == "" || len(s) > maxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func validKeyHash(h string) bool {
	if len(h) != 2*sha256.Size {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// validBaseURL returns "" for an absolute http(s) URL with a host, else why not.
func validBaseURL(s string) string {
	if s == "" {
		return "base_url is required"
	}
	if len(s) > maxTextLen {
		return fmt.Sprintf("base_url is longer than %d bytes", maxTextLen)
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Sprintf("base_url %q is not a URL: %v", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Sprintf("base_url %q must start with http:// or https://", s)
	}
	if u.Host == "" {
		return fmt.Sprintf("base_url %q has no host", s)
	}
	if u.User != nil {
		return "base_url must not contain credentials"
	}
	return ""
}

// validEmailSuffix accepts a lower-case domain, optionally led by '@' or '.'.
func validEmailSuffix(s string) bool {
	d := strings.TrimPrefix(strings.TrimPrefix(s, "@"), ".")
	if d == "" || len(s) > maxTextLen {
		return false
	}
	for i := 0; i < len(d); i++ {
		c := d[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}
