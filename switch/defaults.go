package txswitch

import "slices"

// The shipped (demo) routing configuration. It is only a starting point:
// operators change methods, providers, surcharges and fraud rules at runtime
// through the admin API, so nothing below is special to the code.

// DefaultProviderTimeoutMillis bounds one provider call in the default
// configuration: long enough for a slow acquirer, short enough that a
// checkout does not hang (past it the payment is in doubt).
const DefaultProviderTimeoutMillis = 2_000

// Amount window of klarna_paylater's euro market in the default
// configuration, in euro cents (1.00 to 10,000.00). Each Klarna market has
// its own window in its own currency (klarnaMarkets), set on its routes:
// a limit in minor units means nothing without its currency.
const (
	DefaultKlarnaMinAmount int64 = 100
	DefaultKlarnaMaxAmount int64 = 1_000_000
)

// DefaultIDEALMaxAmount is iDEAL's per-payment ceiling (EUR 50,000.00).
const DefaultIDEALMaxAmount int64 = 5_000_000

// DefaultCardHoldAmount is the card amount from which the default fraud
// rule holds euro-area payments for review (5,000.00 in EUR cents).
const DefaultCardHoldAmount int64 = 500_000

// defaultProviderNames are the three simulated PSPs of the demo.
var defaultProviderNames = []string{"psp_a", "psp_b", "psp_c"}

// DefaultProviderNames returns the names of the providers DefaultConfig
// configures, in a fresh slice.
func DefaultProviderNames() []string { return slices.Clone(defaultProviderNames) }

// cardCurrencies are the currencies the demo card acquirers settle.
var cardCurrencies = []string{
	"EUR", "GBP", "USD", "CHF", "NOK", "SEK", "DKK", "PLN", "CZK", "HUF",
	"RON", "BGN", "ISK", "CAD", "AUD", "NZD", "JPY", "KRW", "CLP", "BHD",
	"KWD", "JOD", "OMR", "TND", "CNY", "INR", "BRL", "MXN", "ZAR", "SGD",
	"HKD",
}

// klarnaMarket is one Klarna country group with its local currency and
// amount window: Klarna only pays out in the customer's local currency, a
// pairing the method-level lists cannot express, so each pair becomes its
// own route, with the window in that currency's minor units (demo values
// of about the same worth in each market; Klarna's real limits differ per
// market and per merchant).
type klarnaMarket struct {
	countries []string
	currency  string
	min, max  int64
}

var klarnaMarkets = []klarnaMarket{
	{[]string{"AT", "BE", "DE", "ES", "FI", "FR", "IT", "NL"}, "EUR", DefaultKlarnaMinAmount, DefaultKlarnaMaxAmount},
	{[]string{"DK"}, "DKK", 1_000, 7_500_000},  // DKK 10.00 to 75,000.00
	{[]string{"NO"}, "NOK", 1_000, 10_000_000}, // NOK 10.00 to 100,000.00
	{[]string{"SE"}, "SEK", 1_000, 10_000_000}, // SEK 10.00 to 100,000.00
	{[]string{"GB"}, "GBP", 100, 800_000},      // GBP 1.00 to 8,000.00
	{[]string{"CH"}, "CHF", 100, 1_000_000},    // CHF 1.00 to 10,000.00
	{[]string{"PL"}, "PLN", 500, 4_000_000},    // PLN 5.00 to 40,000.00
}

// DefaultBreakerConfig is the breaker of every default provider: open after
// 5 consecutive failures, or above 50 % failures over at least 20 calls in a
// 10 s window; stay open 5 s, then let 2 probes through.
func DefaultBreakerConfig() BreakerConfig {
	return BreakerConfig{
		ConsecutiveFailures: 5,
		FailureRatio:        0.5,
		MinRequests:         20,
		IntervalMillis:      10_000,
		OpenMillis:          5_000,
		HalfOpenMax:         2,
	}
}

// DefaultFraudRules is the default review rule set, first match wins:
// high-value card payments in euros, and any payment from
// throw-away mailbox domains.
func DefaultFraudRules() []FraudRule {
	return []FraudRule{
		{Name: "card_high_value", Methods: []string{"card"}, Currencies: []string{"EUR"}, MinAmount: DefaultCardHoldAmount},
		{Name: "disposable_email_mailinator", EmailSuffix: "mailinator.com"},
		{Name: "disposable_email_guerrillamail", EmailSuffix: "guerrillamail.com"},
	}
}

// DefaultConfig returns the shipped routing configuration for merchants,
// with providers psp_a, psp_b and psp_c at the base URLs in providerURLs
// (keyed by provider name; a missing URL leaves base_url empty, which
// Validate reports). Methods, in checkout order:
//
//   - card: every country, cardCurrencies, online/moto/pos; psp_a then psp_b
//   - ideal: NL, EUR, online, redirect, EUR 0.29 fixed surcharge (demo),
//     at most EUR 50,000.00; psp_b then psp_c
//   - bancontact: BE, EUR, online/pos, redirect; psp_c then psp_b
//   - mobilepay: DK with DKK and FI with EUR, online, redirect; psp_a then psp_c
//   - klarna_paylater: Klarna markets with their local currency, online,
//     redirect, an amount window per market (EUR 1.00..10,000.00, SEK
//     10.00..100,000.00, ...); psp_c then psp_b
//   - sepa_debit: SEPA countries, EUR, online/moto; psp_b then psp_a
//
// The result shares no slices with the arguments or package variables.
func DefaultConfig(merchants []MerchantConfig, providerURLs map[string]string) RoutingConfig {
	cfg := RoutingConfig{}
	for _, m := range merchants {
		m.APIKeyHashes = slices.Clone(m.APIKeyHashes)
		cfg.Merchants = append(cfg.Merchants, m)
	}
	// Iterate the fixed name list, not the map, so the order is stable.
	for _, name := range defaultProviderNames {
		cfg.Providers = append(cfg.Providers, ProviderConfig{
			Name:          name,
			BaseURL:       providerURLs[name],
			TimeoutMillis: DefaultProviderTimeoutMillis,
			Breaker:       DefaultBreakerConfig(),
		})
	}

	var mobilepay []RouteConfig
	for _, p := range []string{"psp_a", "psp_c"} {
		mobilepay = append(mobilepay,
			RouteConfig{Provider: p, Countries: []string{"DK"}, Currencies: []string{"DKK"}},
			RouteConfig{Provider: p, Countries: []string{"FI"}, Currencies: []string{"EUR"}})
	}
	var klarnaCountries, klarnaCurrencies []string
	var klarna []RouteConfig
	for _, p := range []string{"psp_c", "psp_b"} {
		for _, km := range klarnaMarkets {
			klarna = append(klarna, RouteConfig{Provider: p, Countries: slices.Clone(km.countries), Currencies: []string{km.currency},
				MinAmount: km.min, MaxAmount: km.max})
		}
	}
	for _, km := range klarnaMarkets {
		klarnaCountries = append(klarnaCountries, km.countries...)
		klarnaCurrencies = append(klarnaCurrencies, km.currency)
	}
	slices.Sort(klarnaCountries)

	cfg.Methods = []MethodConfig{
		{
			Name: "card", Enabled: true,
			Currencies: slices.Clone(cardCurrencies),
			Channels:   []string{ChannelOnline, ChannelMOTO, ChannelPOS},
			Routes:     []RouteConfig{{Provider: "psp_a"}, {Provider: "psp_b"}},
		},
		{
			Name: "ideal", Enabled: true, Redirect: true,
			Countries: []string{"NL"}, Currencies: []string{"EUR"}, Channels: []string{ChannelOnline},
			MaxAmount: DefaultIDEALMaxAmount,
			Surcharge: SurchargeConfig{FixedMinor: 29},
			// An iDEAL transaction at the bank expires after about 15 minutes.
			PendingExpirySeconds: 15 * 60,
			Routes:               []RouteConfig{{Provider: "psp_b"}, {Provider: "psp_c"}},
		},
		{
			Name: "bancontact", Enabled: true, Redirect: true,
			Countries: []string{"BE"}, Currencies: []string{"EUR"}, Channels: []string{ChannelOnline, ChannelPOS},
			PendingExpirySeconds: 15 * 60,
			Routes:               []RouteConfig{{Provider: "psp_c"}, {Provider: "psp_b"}},
		},
		{
			Name: "mobilepay", Enabled: true, Redirect: true,
			Countries: []string{"DK", "FI"}, Currencies: []string{"DKK", "EUR"}, Channels: []string{ChannelOnline},
			PendingExpirySeconds: 15 * 60,
			Routes:               mobilepay,
		},
		{
			Name: "klarna_paylater", Enabled: true, Redirect: true,
			Countries: klarnaCountries, Currencies: klarnaCurrencies, Channels: []string{ChannelOnline},
			// The shopper fills in Klarna's checkout: allow an hour.
			PendingExpirySeconds: 60 * 60,
			Routes:               klarna,
		},
		{
			Name: "sepa_debit", Enabled: true,
			Countries: SEPACountries(), Currencies: []string{"EUR"}, Channels: []string{ChannelOnline, ChannelMOTO},
			Routes: []RouteConfig{{Provider: "psp_b"}, {Provider: "psp_a"}},
		},
	}
	cfg.FraudRules = DefaultFraudRules()
	return cfg
}
