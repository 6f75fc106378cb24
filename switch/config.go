package txswitch

// RoutingConfig is the routing configuration, held as replicated state and
// changed at runtime through the admin API (no restart, no redeploy).
type RoutingConfig struct {
	// Version increases with every accepted change (set by apply).
	Version   uint64           `json:"version"`
	Merchants []MerchantConfig `json:"merchants"`
	Methods   []MethodConfig   `json:"methods"`
	Providers []ProviderConfig `json:"providers"`
	// FraudRules put payments on hold for manual review.
	FraudRules []FraudRule `json:"fraud_rules,omitempty"`
}

// MerchantConfig is a merchant and the hashes of its API keys (never the keys).
type MerchantConfig struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// APIKeyHashes are hex SHA-256 of the merchant's API keys.
	APIKeyHashes []string `json:"api_key_hashes"`
	// OrderExpirySeconds is how long an order may stay unpaid before it
	// expires (0: DefaultOrderExpiry). A shop's checkout session is
	// usually a day; a point of sale wants minutes.
	OrderExpirySeconds int64 `json:"order_expiry_seconds,omitempty"`
}

// MethodConfig is a payment method, where it may be offered, what it costs,
// and which providers serve it in which order.
type MethodConfig struct {
	Name    string `json:"name"` // card, ideal, bancontact, klarna_paylater, mobilepay, sepa_debit...
	Enabled bool   `json:"enabled"`
	// Redirect methods complete asynchronously (payment pending until the
	// provider notifies).
	Redirect bool `json:"redirect,omitempty"`
	// Eligibility; an empty list means "any".
	Countries  []string `json:"countries,omitempty"`
	Currencies []string `json:"currencies,omitempty"`
	Channels   []string `json:"channels,omitempty"`
	// MinAmount and MaxAmount bound the amount the provider is asked to
	// move, the surcharge included, in minor units; 0 = no limit.
	MinAmount int64 `json:"min_amount,omitempty"`
	MaxAmount int64 `json:"max_amount,omitempty"`
	// Surcharge = the fixed part + amount * BasisPoints / 10000 (rounded
	// half up), in the order's currency.
	Surcharge SurchargeConfig `json:"surcharge"`
	// PendingExpirySeconds is how long a payment of this method may wait
	// for the shopper (pending) before the switch cancels it at the
	// provider and opens the order for another attempt; 0 means
	// DefaultPendingExpiry.
	PendingExpirySeconds int64 `json:"pending_expiry_seconds,omitempty"`
	// AuthorizationValiditySeconds is how long the method's providers
	// hold an authorization before it lapses (cards about 7 days, Klarna
	// 28): past it a capture may be declined and the shopper's money is
	// no longer reserved. Explain warns a day before an authorization with
	// an uncaptured rest lapses, and says when it has (cluster version 11).
	// 0: not known, no warning.
	AuthorizationValiditySeconds int64 `json:"authorization_validity_seconds,omitempty"`
	// Routes are the providers for this method in priority order, each with
	// its own eligibility narrowing.
	Routes []RouteConfig `json:"routes"`
}

// SurchargeConfig is the fee a shopper pays for a method: a fixed part
// plus BasisPoints of the amount. The fixed part is in minor units of the
// order's currency: FixedMinor for a method of one currency, or
// FixedByCurrency for one of several (EUR 0.25 is not SEK 0.25; a
// currency it does not list pays no fixed part). Not both.
type SurchargeConfig struct {
	FixedMinor      int64            `json:"fixed"`
	FixedByCurrency map[string]int64 `json:"fixed_by_currency,omitempty"`
	BasisPoints     int64            `json:"basis_points"`
}

// RouteConfig is one provider for a method, with optional narrowing.
type RouteConfig struct {
	Provider   string   `json:"provider"`
	Countries  []string `json:"countries,omitempty"`
	Currencies []string `json:"currencies,omitempty"`
	Channels   []string `json:"channels,omitempty"`
	// Like the method's, surcharge included.
	MinAmount int64 `json:"min_amount,omitempty"`
	MaxAmount int64 `json:"max_amount,omitempty"`
}

// FraudRule holds a payment for review when all its set conditions match.
type FraudRule struct {
	Name      string `json:"name"`
	MinAmount int64  `json:"min_amount,omitempty"`
	// Currencies scopes MinAmount: an amount threshold means nothing
	// without its currency, so PutConfig refuses a new MinAmount unless
	// the rule lists exactly one (CheckAmountCurrencies).
	Currencies  []string `json:"currencies,omitempty"`
	Countries   []string `json:"countries,omitempty"`
	Methods     []string `json:"methods,omitempty"`
	EmailSuffix string   `json:"email_suffix,omitempty"`
}

// method is the configuration of the method named name (nil if none).
func (cfg *RoutingConfig) method(name string) *MethodConfig {
	for i := range cfg.Methods {
		if cfg.Methods[i].Name == name {
			return &cfg.Methods[i]
		}
	}
	return nil
}
