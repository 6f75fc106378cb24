package txswitch

import "testing"

func TestHoldForReview(t *testing.T) {
	cfg := RoutingConfig{FraudRules: []FraudRule{
		{Name: "empty"}, // no conditions: must never match
		{Name: "big_card_nl", Methods: []string{"card"}, Countries: []string{"NL", "BE"}, MinAmount: 500_000},
		{Name: "disposable", EmailSuffix: "mailinator.com"},
		{Name: "exact_domain", EmailSuffix: "@risky.example"},
		{Name: "subdomains_only", EmailSuffix: ".temp.example"},
		{Name: "big_huf", Currencies: []string{"HUF"}, MinAmount: 200_000_000},
		{Name: "any_huge", MinAmount: 5_000_000},
	}}
	tests := []struct {
		name   string
		oc     OrderContext
		method string
		rule   string
	}{
		{"nothing matches", OrderContext{"NL", "EUR", 4998, ChannelOnline, "a@example.com"}, "card", ""},
		{"big dutch card at threshold", OrderContext{"NL", "EUR", 500_000, ChannelOnline, ""}, "card", "big_card_nl"},
		{"just below threshold", OrderContext{"NL", "EUR", 499_999, ChannelOnline, ""}, "card", ""},
		{"other method", OrderContext{"NL", "EUR", 600_000, ChannelOnline, ""}, "ideal", ""},
		{"other country", OrderContext{"DE", "EUR", 600_000, ChannelOnline, ""}, "card", ""},
		{"first match wins", OrderContext{"BE", "EUR", 6_000_000, ChannelOnline, "x@mailinator.com"}, "card", "big_card_nl"},
		{"later rule when earlier misses", OrderContext{"DE", "EUR", 6_000_000, ChannelOnline, "x@mailinator.com"}, "card", "disposable"},
		{"catch-all amount", OrderContext{"US", "USD", 5_000_000, ChannelPOS, ""}, "card", "any_huge"},
		{"currency scopes the threshold", OrderContext{"HU", "HUF", 6_000_000, ChannelOnline, ""}, "card", "any_huge"},
		{"threshold in its own currency", OrderContext{"HU", "HUF", 200_000_000, ChannelOnline, ""}, "card", "big_huf"},
		{"email domain", OrderContext{"NL", "EUR", 100, ChannelOnline, "x@mailinator.com"}, "ideal", "disposable"},
		{"email case folded", OrderContext{"NL", "EUR", 100, ChannelOnline, "X@MailInator.COM"}, "ideal", "disposable"},
		{"email subdomain", OrderContext{"NL", "EUR", 100, ChannelOnline, "x@eu.mailinator.com"}, "ideal", "disposable"},
		{"no partial label match", OrderContext{"NL", "EUR", 100, ChannelOnline, "x@notmailinator.com"}, "ideal", ""},
		{"local part does not count", OrderContext{"NL", "EUR", 100, ChannelOnline, "mailinator.com@example.com"}, "ideal", ""},
		{"no at sign", OrderContext{"NL", "EUR", 100, ChannelOnline, "mailinator.com"}, "ideal", ""},
		{"empty email", OrderContext{"NL", "EUR", 100, ChannelOnline, ""}, "ideal", ""},
		// What a shopper or a webshop may send around the same domain
		// must not slip past the rule.
		{"trailing space", OrderContext{"NL", "EUR", 100, ChannelOnline, "x@mailinator.com "}, "ideal", "disposable"},
		{"trailing newline", OrderContext{"NL", "EUR", 100, ChannelOnline, "x@mailinator.com\r\n"}, "ideal", "disposable"},
		{"space after the at sign", OrderContext{"NL", "EUR", 100, ChannelOnline, "x@ mailinator.com"}, "ideal", "disposable"},
		{"root's trailing dot", OrderContext{"NL", "EUR", 100, ChannelOnline, "x@mailinator.com."}, "ideal", "disposable"},
		{"name and address", OrderContext{"NL", "EUR", 100, ChannelOnline, "X <x@mailinator.com>"}, "ideal", "disposable"},
		{"exact domain with trailing dot", OrderContext{"NL", "EUR", 100, ChannelOnline, "a@risky.example. "}, "card", "exact_domain"},
		{"no partial label match after trimming", OrderContext{"NL", "EUR", 100, ChannelOnline, "x@notmailinator.com. "}, "ideal", ""},
		{"@ suffix exact", OrderContext{"NL", "EUR", 100, ChannelOnline, "a@risky.example"}, "card", "exact_domain"},
		{"@ suffix not subdomain", OrderContext{"NL", "EUR", 100, ChannelOnline, "a@x.risky.example"}, "card", ""},
		{". suffix subdomain", OrderContext{"NL", "EUR", 100, ChannelOnline, "a@x.temp.example"}, "card", "subdomains_only"},
		{". suffix not the domain itself", OrderContext{"NL", "EUR", 100, ChannelOnline, "a@temp.example"}, "card", ""},
	}
	for _, tt := range tests {
		rule, hold := HoldForReview(&cfg, tt.oc, tt.method)
		if rule != tt.rule || hold != (tt.rule != "") {
			t.Errorf("%s: HoldForReview = %q, %v; want %q", tt.name, rule, hold, tt.rule)
		}
	}
}

func TestDefaultFraudRules(t *testing.T) {
	cfg := dfConfig()
	tests := []struct {
		name   string
		oc     OrderContext
		method string
		rule   string
	}{
		{"card EUR 5,000.00 in NL", OrderContext{"NL", "EUR", DefaultCardHoldAmount, ChannelOnline, "a@example.com"}, "card", "card_high_value"},
		{"card EUR 4,999.99", OrderContext{"NL", "EUR", DefaultCardHoldAmount - 1, ChannelOnline, "a@example.com"}, "card", ""},
		{"sepa EUR 6,000.00", OrderContext{"NL", "EUR", 600_000, ChannelOnline, "a@example.com"}, "sepa_debit", ""},
		{"card in USD", OrderContext{"US", "USD", 600_000, ChannelOnline, "a@example.com"}, "card", ""},
		{"card in EUR from outside the euro area", OrderContext{"US", "EUR", 600_000, ChannelOnline, "a@example.com"}, "card", "card_high_value"},
		{"card in HUF is not measured in euros", OrderContext{"NL", "HUF", 600_000, ChannelOnline, "a@example.com"}, "card", ""},
		{"disposable email", OrderContext{"NL", "EUR", 1000, ChannelOnline, "a@mailinator.com"}, "ideal", "disposable_email_mailinator"},
		{"guerrillamail", OrderContext{"DE", "EUR", 1000, ChannelOnline, "a@guerrillamail.com"}, "card", "disposable_email_guerrillamail"},
	}
	for _, tt := range tests {
		rule, hold := HoldForReview(&cfg, tt.oc, tt.method)
		if rule != tt.rule || hold != (tt.rule != "") {
			t.Errorf("%s: HoldForReview = %q, %v; want %q", tt.name, rule, hold, tt.rule)
		}
	}
}
