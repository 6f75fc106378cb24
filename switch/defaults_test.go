package txswitch

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"
)

// dfURLs are the base URLs the default-config tests use.
var dfURLs = map[string]string{
	"psp_a": "http://127.0.0.1:7001",
	"psp_b": "http://127.0.0.1:7002",
	"psp_c": "http://127.0.0.1:7003",
}

func dfConfig() RoutingConfig {
	return DefaultConfig([]MerchantConfig{{ID: "demo", Name: "Demo shop", APIKeyHashes: []string{HashAPIKey("demo-key")}}}, dfURLs)
}

func TestDefaultConfigValidates(t *testing.T) {
	cfg := dfConfig()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("DefaultConfig does not validate: %+v", err)
	}
	if err := cfg.CheckAmountCurrencies(); err != nil {
		t.Fatalf("DefaultConfig would be refused by PUT: %+v", err)
	}
	var names []string
	for _, m := range cfg.Methods {
		names = append(names, m.Name)
	}
	want := []string{"card", "ideal", "bancontact", "mobilepay", "klarna_paylater", "sepa_debit"}
	if !slices.Equal(names, want) {
		t.Errorf("methods %v, want %v", names, want)
	}
	for i, p := range cfg.Providers {
		if p.BaseURL != dfURLs[p.Name] || p.TimeoutMillis != DefaultProviderTimeoutMillis {
			t.Errorf("providers[%d] = %+v", i, p)
		}
	}
	if m, ok := cfg.MerchantForKeyHash(HashAPIKey("demo-key")); !ok || m.ID != "demo" {
		t.Errorf("demo key does not authenticate: %+v %v", m, ok)
	}
}

func TestDefaultConfigMissingURL(t *testing.T) {
	cfg := DefaultConfig(nil, map[string]string{"psp_a": "http://a", "psp_c": "http://c"})
	err := cfg.Validate()
	if err == nil || err.Field != "providers[1].base_url" {
		t.Errorf("got %+v, want error on providers[1].base_url", err)
	}
}

func TestDefaultConfigIsFreshAndDeterministic(t *testing.T) {
	merchants := []MerchantConfig{{ID: "m", APIKeyHashes: []string{HashAPIKey("k")}}}
	a := DefaultConfig(merchants, dfURLs)
	b := DefaultConfig(merchants, dfURLs)
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	if string(ja) != string(jb) {
		t.Fatal("DefaultConfig is not deterministic")
	}
	// Mutating one result must not reach the next one or the arguments.
	a.Methods[5].Countries[0] = "XX"
	a.Methods[0].Currencies[0] = "XXX"
	a.Methods[4].Routes[0].Countries[0] = "XX"
	a.FraudRules[0].Currencies[0] = "XXX"
	a.Merchants[0].APIKeyHashes[0] = "x"
	if !reflect.DeepEqual(b, DefaultConfig(merchants, dfURLs)) {
		t.Error("DefaultConfig results share slices")
	}
	if merchants[0].APIKeyHashes[0] == "x" {
		t.Error("DefaultConfig shares the merchants' key slices")
	}
	if SEPACountries()[0] == "XX" || EuroArea()[0] == "XX" {
		t.Error("DefaultConfig shares package country lists")
	}
}

func TestDefaultConfigCheckout(t *testing.T) {
	type want struct {
		offered  []string
		excluded map[string]string // method -> reason; only the listed ones are checked
	}
	open := func(pairs ...string) map[string]BreakerState {
		m := map[string]BreakerState{}
		for _, p := range pairs {
			m[p] = BreakerOpen
		}
		return m
	}
	tests := []struct {
		name   string
		oc     OrderContext
		health map[string]BreakerState
		want   want
	}{
		{"dutch EUR online", OrderContext{"NL", "EUR", 4998, ChannelOnline, ""}, nil,
			want{[]string{"card", "ideal", "klarna_paylater", "sepa_debit"},
				map[string]string{"bancontact": ExclusionCountry, "mobilepay": ExclusionCountry}}},
		{"belgian EUR online", OrderContext{"BE", "EUR", 4998, ChannelOnline, ""}, nil,
			want{[]string{"card", "bancontact", "klarna_paylater", "sepa_debit"},
				map[string]string{"ideal": ExclusionCountry, "mobilepay": ExclusionCountry}}},
		{"dane DKK online", OrderContext{"DK", "DKK", 35000, ChannelOnline, ""}, nil,
			want{[]string{"card", "mobilepay", "klarna_paylater"},
				map[string]string{"ideal": ExclusionCountry, "bancontact": ExclusionCountry, "sepa_debit": ExclusionCurrency}}},
		{"dane paying EUR: mobilepay needs DKK in DK", OrderContext{"DK", "EUR", 35000, ChannelOnline, ""}, nil,
			want{[]string{"card", "sepa_debit"},
				map[string]string{"mobilepay": ExclusionNoRoute, "klarna_paylater": ExclusionNoRoute}}},
		{"finn EUR online", OrderContext{"FI", "EUR", 2500, ChannelOnline, ""}, nil,
			want{[]string{"card", "mobilepay", "klarna_paylater", "sepa_debit"}, nil}},
		{"swede SEK", OrderContext{"SE", "SEK", 99900, ChannelOnline, ""}, nil,
			want{[]string{"card", "klarna_paylater"}, map[string]string{"sepa_debit": ExclusionCurrency}}},
		{"american USD", OrderContext{"US", "USD", 4998, ChannelOnline, ""}, nil,
			want{[]string{"card"}, map[string]string{"klarna_paylater": ExclusionCountry, "sepa_debit": ExclusionCountry}}},
		{"japanese JPY", OrderContext{"JP", "JPY", 5000, ChannelOnline, ""}, nil,
			want{[]string{"card"}, nil}},
		{"card currency not settled", OrderContext{"NL", "IDR", 5000, ChannelOnline, ""}, nil,
			want{nil, map[string]string{"card": ExclusionCurrency, "ideal": ExclusionCurrency}}},
		{"dutch POS excludes online-only methods", OrderContext{"NL", "EUR", 4998, ChannelPOS, ""}, nil,
			want{[]string{"card"}, map[string]string{"ideal": ExclusionChannel, "klarna_paylater": ExclusionChannel, "sepa_debit": ExclusionChannel}}},
		{"belgian POS keeps bancontact", OrderContext{"BE", "EUR", 4998, ChannelPOS, ""}, nil,
			want{[]string{"card", "bancontact"}, map[string]string{"klarna_paylater": ExclusionChannel}}},
		{"dutch MOTO", OrderContext{"NL", "EUR", 4998, ChannelMOTO, ""}, nil,
			want{[]string{"card", "sepa_debit"}, map[string]string{"ideal": ExclusionChannel}}},
		// Each Klarna market has its window in its own currency.
		{"swede SEK 9.99 under Klarna's SEK floor", OrderContext{"SE", "SEK", 999, ChannelOnline, ""}, nil,
			want{[]string{"card"}, map[string]string{"klarna_paylater": ExclusionAmountBelowMin}}},
		{"swede SEK 15,000.00 inside SEK's window (over EUR's in minor units)", OrderContext{"SE", "SEK", 1_500_000, ChannelOnline, ""}, nil,
			want{[]string{"card", "klarna_paylater"}, nil}},
		{"brit GBP 8,000.01 over Klarna's GBP ceiling", OrderContext{"GB", "GBP", 800_001, ChannelOnline, ""}, nil,
			want{[]string{"card"}, map[string]string{"klarna_paylater": ExclusionAmountAboveMax}}},
		{"klarna below minimum", OrderContext{"NL", "EUR", 99, ChannelOnline, ""}, nil,
			want{[]string{"card", "ideal", "sepa_debit"}, map[string]string{"klarna_paylater": ExclusionAmountBelowMin}}},
		{"klarna above maximum", OrderContext{"NL", "EUR", 1_000_001, ChannelOnline, ""}, nil,
			want{[]string{"card", "ideal", "sepa_debit"}, map[string]string{"klarna_paylater": ExclusionAmountAboveMax}}},
		{"ideal above its ceiling", OrderContext{"NL", "EUR", DefaultIDEALMaxAmount + 1, ChannelOnline, ""}, nil,
			want{[]string{"card", "sepa_debit"}, map[string]string{"ideal": ExclusionAmountAboveMax}}},
		// iDEAL's ceiling bounds the amount charged, its EUR 0.29 fee included.
		{"ideal at its ceiling with the surcharge", OrderContext{"NL", "EUR", DefaultIDEALMaxAmount - 29, ChannelOnline, ""}, nil,
			want{[]string{"card", "ideal", "sepa_debit"}, map[string]string{"klarna_paylater": ExclusionAmountAboveMax}}},
		{"the surcharge takes ideal over its ceiling", OrderContext{"NL", "EUR", DefaultIDEALMaxAmount, ChannelOnline, ""}, nil,
			want{[]string{"card", "sepa_debit"}, map[string]string{"ideal": ExclusionAmountAboveMax}}},
		{"ideal providers all open", OrderContext{"NL", "EUR", 4998, ChannelOnline, ""}, open("psp_b/ideal", "psp_c/ideal"),
			want{[]string{"card", "klarna_paylater", "sepa_debit"}, map[string]string{"ideal": ExclusionAllProvidersDown, "bancontact": ExclusionCountry}}},
		{"ideal back when psp_b half-opens", OrderContext{"NL", "EUR", 4998, ChannelOnline, ""},
			map[string]BreakerState{"psp_b/ideal": BreakerHalfOpen, "psp_c/ideal": BreakerOpen},
			want{[]string{"card", "ideal", "klarna_paylater", "sepa_debit"}, nil}},
		{"ideal back when psp_c closes", OrderContext{"NL", "EUR", 4998, ChannelOnline, ""}, open("psp_b/ideal"),
			want{[]string{"card", "ideal", "klarna_paylater", "sepa_debit"}, nil}},
		{"psp_b down for ideal only leaves sepa alone", OrderContext{"NL", "EUR", 4998, ChannelOnline, ""}, open("psp_b/ideal", "psp_c/ideal", "psp_a/card"),
			want{[]string{"card", "klarna_paylater", "sepa_debit"}, map[string]string{"ideal": ExclusionAllProvidersDown}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := dfConfig()
			resp := EligibleMethods(&cfg, tt.oc, rtHealth(tt.health))
			var offered []string
			for _, m := range resp.Methods {
				offered = append(offered, m.Method)
			}
			if !slices.Equal(offered, tt.want.offered) {
				t.Errorf("offered %v, want %v (excluded %+v)", offered, tt.want.offered, resp.Excluded)
			}
			for method, reason := range tt.want.excluded {
				i := slices.IndexFunc(resp.Excluded, func(e MethodExclusion) bool { return e.Method == method })
				if i < 0 || resp.Excluded[i].Reason != reason {
					t.Errorf("%s: want excluded for %s, got %+v", method, reason, resp.Excluded)
				}
			}
		})
	}
}

func TestDefaultConfigOffers(t *testing.T) {
	cfg := dfConfig()
	resp := EligibleMethods(&cfg, OrderContext{"NL", "EUR", 4998, ChannelOnline, ""}, rtHealth(map[string]BreakerState{"psp_b/ideal": BreakerOpen}))
	want := []MethodOffer{
		{Method: "card", Surcharge: Money{0, "EUR"}, Providers: []string{"psp_a", "psp_b"}},
		{Method: "ideal", Surcharge: Money{29, "EUR"}, Providers: []string{"psp_c"}},
		{Method: "klarna_paylater", Surcharge: Money{0, "EUR"}, Providers: []string{"psp_c", "psp_b"}},
		{Method: "sepa_debit", Surcharge: Money{0, "EUR"}, Providers: []string{"psp_b", "psp_a"}},
	}
	if !reflect.DeepEqual(resp.Methods, want) {
		t.Errorf("offers\n%+v\nwant\n%+v", resp.Methods, want)
	}
	got, err := RouteCandidates(&cfg, OrderContext{"NL", "EUR", 4998, ChannelOnline, ""}, "bancontact", nil)
	if err == nil || got != nil || err.Message != "Bancontact is offered in BE only; customer country is NL (country)" {
		t.Errorf("bancontact for a Dutch customer: %+v, %+v", got, err)
	}
}
