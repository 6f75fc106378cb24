package txswitch

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// rtHashA/rtHashB are HashAPIKey of two demo keys.
var (
	rtHashA = HashAPIKey("key-a")
	rtHashB = HashAPIKey("key-b")
)

// rtConfig is a small valid configuration exercising every eligibility
// knob; each test gets a fresh copy so mutations do not leak.
func rtConfig() RoutingConfig {
	prov := func(name string) ProviderConfig {
		return ProviderConfig{Name: name, BaseURL: "http://127.0.0.1:9000/" + name, TimeoutMillis: 2000, Breaker: DefaultBreakerConfig()}
	}
	return RoutingConfig{
		Merchants: []MerchantConfig{
			{ID: "m1", Name: "Shop One", APIKeyHashes: []string{rtHashA}},
			{ID: "m2", Name: "Shop Two", APIKeyHashes: []string{rtHashB}},
		},
		Providers: []ProviderConfig{prov("p1"), prov("p2"), prov("p3")},
		Methods: []MethodConfig{
			{
				Name: "m_card", Enabled: true,
				Currencies: []string{"EUR", "USD", "JPY", "KWD", "DKK"},
				Channels:   []string{ChannelOnline, ChannelPOS},
				Surcharge:  SurchargeConfig{BasisPoints: 150},
				Routes:     []RouteConfig{{Provider: "p1"}, {Provider: "p2"}},
			},
			{
				Name: "m_local", Enabled: true,
				Countries: []string{"NL"}, Currencies: []string{"EUR"}, Channels: []string{ChannelOnline},
				MinAmount: 100, MaxAmount: 10_000,
				Surcharge: SurchargeConfig{FixedMinor: 29},
				Routes:    []RouteConfig{{Provider: "p2", MaxAmount: 5_000}, {Provider: "p3"}},
			},
			{
				Name: "m_off", Enabled: false,
				Routes: []RouteConfig{{Provider: "p1"}},
			},
			{
				Name: "m_narrow", Enabled: true,
				Countries: []string{"DK", "FI"}, Currencies: []string{"DKK", "EUR"},
				Routes: []RouteConfig{
					{Provider: "p1", Countries: []string{"DK"}, Currencies: []string{"DKK"}},
					{Provider: "p1", Countries: []string{"FI"}, Currencies: []string{"EUR"}},
					{Provider: "p3", Countries: []string{"FI"}, Currencies: []string{"EUR"}, Channels: []string{ChannelOnline}},
				},
			},
		},
		FraudRules: []FraudRule{{Name: "big", MinAmount: 1_000_000, Currencies: []string{"EUR"}}},
	}
}

// rtHealth builds a health func from "provider/method" -> state; anything
// unlisted is closed, as Providers.State reports unknown breakers.
func rtHealth(states map[string]BreakerState) func(provider, method string) BreakerState {
	return func(provider, method string) BreakerState {
		if s, ok := states[provider+"/"+method]; ok {
			return s
		}
		return BreakerClosed
	}
}

// rtSummary renders a response compactly: "m_card[p1,p2]" for offers,
// "m_local:country" for exclusions, in response order.
func rtSummary(r MethodsResponse) (offered, excluded []string) {
	for _, m := range r.Methods {
		offered = append(offered, m.Method+"["+strings.Join(m.Providers, ",")+"]")
	}
	for _, e := range r.Excluded {
		excluded = append(excluded, e.Method+":"+e.Reason)
	}
	return offered, excluded
}

func TestEligibleMethods(t *testing.T) {
	nl := OrderContext{Country: "NL", Currency: "EUR", Amount: 6000, Channel: ChannelOnline}
	with := func(f func(*OrderContext)) OrderContext { oc := nl; f(&oc); return oc }
	tests := []struct {
		name     string
		oc       OrderContext
		health   map[string]BreakerState
		offered  []string
		excluded []string
	}{
		{"dutch online", nl, nil,
			[]string{"m_card[p1,p2]", "m_local[p3]"},
			[]string{"m_off:disabled", "m_narrow:country"}},
		{"route max narrows to p2 below it", with(func(o *OrderContext) { o.Amount = 4000 }), nil,
			[]string{"m_card[p1,p2]", "m_local[p2,p3]"},
			[]string{"m_off:disabled", "m_narrow:country"}},
		{"german customer", with(func(o *OrderContext) { o.Country = "DE" }), nil,
			[]string{"m_card[p1,p2]"},
			[]string{"m_local:country", "m_off:disabled", "m_narrow:country"}},
		{"currency not accepted", with(func(o *OrderContext) { o.Currency = "GBP" }), nil,
			nil,
			[]string{"m_card:currency", "m_local:currency", "m_off:disabled", "m_narrow:country"}},
		{"moto channel", with(func(o *OrderContext) { o.Channel = ChannelMOTO }), nil,
			nil,
			[]string{"m_card:channel", "m_local:channel", "m_off:disabled", "m_narrow:country"}},
		// m_local's limits (1.00 to 100.00) bound the amount charged: the
		// order's plus its 0.29 surcharge.
		{"below minimum", with(func(o *OrderContext) { o.Amount = 70 }), nil,
			[]string{"m_card[p1,p2]"},
			[]string{"m_local:amount_below_min", "m_off:disabled", "m_narrow:country"}},
		{"at minimum with the surcharge", with(func(o *OrderContext) { o.Amount = 71 }), nil,
			[]string{"m_card[p1,p2]", "m_local[p2,p3]"},
			[]string{"m_off:disabled", "m_narrow:country"}},
		{"at maximum with the surcharge", with(func(o *OrderContext) { o.Amount = 9_971 }), nil,
			[]string{"m_card[p1,p2]", "m_local[p3]"},
			[]string{"m_off:disabled", "m_narrow:country"}},
		{"above maximum", with(func(o *OrderContext) { o.Amount = 9_972 }), nil,
			[]string{"m_card[p1,p2]"},
			[]string{"m_local:amount_above_max", "m_off:disabled", "m_narrow:country"}},
		{"the surcharge takes the maximum order over", with(func(o *OrderContext) { o.Amount = 10_000 }), nil,
			[]string{"m_card[p1,p2]"},
			[]string{"m_local:amount_above_max", "m_off:disabled", "m_narrow:country"}},
		{"route max with the surcharge", with(func(o *OrderContext) { o.Amount = 4_971 }), nil,
			[]string{"m_card[p1,p2]", "m_local[p2,p3]"},
			[]string{"m_off:disabled", "m_narrow:country"}},
		{"the surcharge takes the order over the route max", with(func(o *OrderContext) { o.Amount = 4_972 }), nil,
			[]string{"m_card[p1,p2]", "m_local[p3]"},
			[]string{"m_off:disabled", "m_narrow:country"}},
		{"first card provider open", nl, map[string]BreakerState{"p1/m_card": BreakerOpen},
			[]string{"m_card[p2]", "m_local[p3]"},
			[]string{"m_off:disabled", "m_narrow:country"}},
		{"breaker is per method", nl, map[string]BreakerState{"p1/m_local": BreakerOpen, "p2/m_local": BreakerOpen},
			[]string{"m_card[p1,p2]", "m_local[p3]"},
			[]string{"m_off:disabled", "m_narrow:country"}},
		{"half open still offered", nl, map[string]BreakerState{"p1/m_card": BreakerHalfOpen, "p2/m_card": BreakerOpen},
			[]string{"m_card[p1]", "m_local[p3]"},
			[]string{"m_off:disabled", "m_narrow:country"}},
		{"all card providers open", nl, map[string]BreakerState{"p1/m_card": BreakerOpen, "p2/m_card": BreakerOpen},
			[]string{"m_local[p3]"},
			[]string{"m_card:all_providers_down", "m_off:disabled", "m_narrow:country"}},
		{"ineligible route's breaker does not matter", with(func(o *OrderContext) { o.Amount = 6000 }),
			map[string]BreakerState{"p3/m_local": BreakerOpen},
			[]string{"m_card[p1,p2]"},
			[]string{"m_local:all_providers_down", "m_off:disabled", "m_narrow:country"}},
		{"dane paying DKK", OrderContext{Country: "DK", Currency: "DKK", Amount: 10000, Channel: ChannelOnline}, nil,
			[]string{"m_card[p1,p2]", "m_narrow[p1]"},
			[]string{"m_local:country", "m_off:disabled"}},
		{"dane paying EUR has no route", OrderContext{Country: "DK", Currency: "EUR", Amount: 10000, Channel: ChannelOnline}, nil,
			[]string{"m_card[p1,p2]"},
			[]string{"m_local:country", "m_off:disabled", "m_narrow:no_route"}},
		{"finn online: p1 once despite two routes", OrderContext{Country: "FI", Currency: "EUR", Amount: 10000, Channel: ChannelOnline}, nil,
			[]string{"m_card[p1,p2]", "m_narrow[p1,p3]"},
			[]string{"m_local:country", "m_off:disabled"}},
		{"finn at pos: p3 narrowed to online", OrderContext{Country: "FI", Currency: "EUR", Amount: 10000, Channel: ChannelPOS}, nil,
			[]string{"m_card[p1,p2]", "m_narrow[p1]"},
			[]string{"m_local:country", "m_off:disabled"}},
		{"empty context", OrderContext{}, nil,
			nil,
			[]string{"m_card:currency", "m_local:country", "m_off:disabled", "m_narrow:country"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := rtConfig()
			resp := EligibleMethods(&cfg, tt.oc, rtHealth(tt.health))
			offered, excluded := rtSummary(resp)
			if !slices.Equal(offered, tt.offered) || !slices.Equal(excluded, tt.excluded) {
				t.Errorf("offered %v excluded %v\nwant    %v excluded %v", offered, excluded, tt.offered, tt.excluded)
			}
			if resp.Methods == nil {
				t.Error("Methods is nil; JSON must say [] not null")
			}
			for _, e := range resp.Excluded {
				if e.Detail == "" {
					t.Errorf("exclusion %s has no detail", e.Method)
				}
			}
			if !reflect.DeepEqual(cfg, rtConfig()) {
				t.Error("EligibleMethods modified the config")
			}
		})
	}
}

func TestEligibleMethodsDetails(t *testing.T) {
	cfg := rtConfig()
	tests := []struct {
		oc     OrderContext
		health map[string]BreakerState
		method string
		want   []string // substrings of the detail
	}{
		{OrderContext{Country: "DE", Currency: "EUR", Amount: 500, Channel: ChannelOnline}, nil, "m_local",
			[]string{"offered in NL only", "customer country is DE"}},
		{OrderContext{Country: "NL", Currency: "GBP", Amount: 500, Channel: ChannelOnline}, nil, "m_card",
			[]string{"accepts EUR, USD, JPY, KWD, DKK only", "order currency is GBP"}},
		{OrderContext{Country: "NL", Currency: "EUR", Amount: 500, Channel: ChannelMOTO}, nil, "m_local",
			[]string{"online only", "order channel is moto"}},
		{OrderContext{Country: "NL", Currency: "EUR", Amount: 50, Channel: ChannelOnline}, nil, "m_local",
			[]string{"at least EUR 1.00", "the payment would be EUR 0.79 (order amount EUR 0.50 plus a EUR 0.29 surcharge)"}},
		{OrderContext{Country: "NL", Currency: "EUR", Amount: 20000, Channel: ChannelOnline}, nil, "m_local",
			[]string{"at most EUR 100.00", "EUR 200.00"}},
		{OrderContext{Country: "DK", Currency: "EUR", Amount: 500, Channel: ChannelOnline}, nil, "m_narrow",
			[]string{"no provider route", "p1: currency DKK only", "p1: country FI only", "p3: country FI only"}},
		{OrderContext{Country: "NL", Currency: "EUR", Amount: 500, Channel: ChannelOnline},
			map[string]BreakerState{"p1/m_card": BreakerOpen, "p2/m_card": BreakerOpen}, "m_card",
			[]string{"p1: breaker open", "p2: breaker open"}},
		{OrderContext{Country: "NL", Currency: "EUR", Amount: 500, Channel: ChannelOnline}, nil, "m_off",
			[]string{"disabled"}},
	}
	for _, tt := range tests {
		resp := EligibleMethods(&cfg, tt.oc, rtHealth(tt.health))
		i := slices.IndexFunc(resp.Excluded, func(e MethodExclusion) bool { return e.Method == tt.method })
		if i < 0 {
			t.Errorf("%+v: %s not excluded", tt.oc, tt.method)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(resp.Excluded[i].Detail, w) {
				t.Errorf("%+v: detail %q lacks %q", tt.oc, resp.Excluded[i].Detail, w)
			}
		}
	}
}

func TestEligibleMethodsSurchargeAndDeterminism(t *testing.T) {
	cfg := rtConfig()
	oc := OrderContext{Country: "NL", Currency: "EUR", Amount: 4998, Channel: ChannelOnline}
	a := EligibleMethods(&cfg, oc, nil)
	// 1.5 % of 49.98 = 0.7497 -> 0.75; m_local has a fixed 0.29.
	want := map[string]Money{"m_card": {75, "EUR"}, "m_local": {29, "EUR"}}
	for _, m := range a.Methods {
		if m.Surcharge != want[m.Method] {
			t.Errorf("%s surcharge %v, want %v", m.Method, m.Surcharge, want[m.Method])
		}
	}
	ja, _ := json.Marshal(a)
	for range 20 {
		jb, _ := json.Marshal(EligibleMethods(&cfg, oc, nil))
		if string(ja) != string(jb) {
			t.Fatalf("non-deterministic output:\n%s\n%s", ja, jb)
		}
	}
}

func TestEligibleMethodsUnconfiguredProvider(t *testing.T) {
	// A config that skipped Validate must still never offer a provider
	// that does not exist.
	cfg := rtConfig()
	cfg.Methods[0].Routes = []RouteConfig{{Provider: "ghost"}, {Provider: "p2"}}
	resp := EligibleMethods(&cfg, OrderContext{Country: "NL", Currency: "EUR", Amount: 500, Channel: ChannelOnline}, nil)
	if offered, _ := rtSummary(resp); offered[0] != "m_card[p2]" {
		t.Errorf("offered %v, want m_card[p2] first", offered)
	}
	cfg.Methods[0].Routes = []RouteConfig{{Provider: "ghost"}}
	resp = EligibleMethods(&cfg, OrderContext{Country: "NL", Currency: "EUR", Amount: 500, Channel: ChannelOnline}, nil)
	if _, excluded := rtSummary(resp); excluded[0] != "m_card:no_route" {
		t.Errorf("excluded %v, want m_card:no_route first", excluded)
	}
}

func TestRouteCandidates(t *testing.T) {
	nl := OrderContext{Country: "NL", Currency: "EUR", Amount: 4000, Channel: ChannelOnline}
	fi := OrderContext{Country: "FI", Currency: "EUR", Amount: 4000, Channel: ChannelOnline}
	tests := []struct {
		name      string
		oc        OrderContext
		method    string
		health    map[string]BreakerState
		want      []RouteCandidate
		wantErr   bool
		errDetail string
	}{
		{"priority order", nl, "m_card", nil,
			[]RouteCandidate{{Provider: "p1", Breaker: BreakerClosed}, {Provider: "p2", Breaker: BreakerClosed}}, false, ""},
		{"open breaker listed as skipped", nl, "m_card", map[string]BreakerState{"p1/m_card": BreakerOpen},
			[]RouteCandidate{{Provider: "p1", Breaker: BreakerOpen, Skipped: true, SkipReason: SkipBreakerOpen}, {Provider: "p2", Breaker: BreakerClosed}}, false, ""},
		{"half open is tried", nl, "m_card", map[string]BreakerState{"p2/m_card": BreakerHalfOpen},
			[]RouteCandidate{{Provider: "p1", Breaker: BreakerClosed}, {Provider: "p2", Breaker: BreakerHalfOpen}}, false, ""},
		{"route narrowing", nl, "m_local", nil,
			[]RouteCandidate{{Provider: "p2", Breaker: BreakerClosed}, {Provider: "p3", Breaker: BreakerClosed}}, false, ""},
		{"duplicate provider routes tried once", fi, "m_narrow", nil,
			[]RouteCandidate{{Provider: "p1", Breaker: BreakerClosed}, {Provider: "p3", Breaker: BreakerClosed}}, false, ""},
		{"all open: candidates and error", nl, "m_card", map[string]BreakerState{"p1/m_card": BreakerOpen, "p2/m_card": BreakerOpen},
			[]RouteCandidate{{Provider: "p1", Breaker: BreakerOpen, Skipped: true, SkipReason: SkipBreakerOpen}, {Provider: "p2", Breaker: BreakerOpen, Skipped: true, SkipReason: SkipBreakerOpen}},
			true, "all_providers_down"},
		{"wrong country", nl, "m_narrow", nil, nil, true, "offered in DK, FI only; customer country is NL"},
		{"disabled", nl, "m_off", nil, nil, true, "disabled"},
		{"unknown method", nl, "bitcoin", nil, nil, true, `"bitcoin" is not configured`},
		{"empty method", nl, "", nil, nil, true, "not configured"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := rtConfig()
			got, err := RouteCandidates(&cfg, tt.oc, tt.method, rtHealth(tt.health))
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("candidates %+v, want %+v", got, tt.want)
			}
			if !tt.wantErr {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("want error, got nil")
			}
			if err.Status != KindUnprocessable || err.Code != CodeMethodNotAvailable || err.Field != "method" || !strings.Contains(err.Message, tt.errDetail) {
				t.Errorf("error %+v, want 422 %s on method containing %q", err, CodeMethodNotAvailable, tt.errDetail)
			}
		})
	}
}

func TestSurcharge(t *testing.T) {
	sc := func(fixed, bps int64) MethodConfig {
		return MethodConfig{Surcharge: SurchargeConfig{FixedMinor: fixed, BasisPoints: bps}}
	}
	tests := []struct {
		name   string
		mc     MethodConfig
		amount Money
		want   int64
	}{
		{"none", sc(0, 0), Money{4998, "EUR"}, 0},
		{"fixed only", sc(29, 0), Money{4998, "EUR"}, 29},
		{"1.5% rounds 74.97 up", sc(0, 150), Money{4998, "EUR"}, 75},
		{"exact half rounds up", sc(0, 5000), Money{1, "EUR"}, 1},
		{"1.5 rounds up to 2", sc(0, 5000), Money{3, "EUR"}, 2},
		{"below half rounds down", sc(0, 1), Money{4999, "EUR"}, 0},
		{"half of a unit", sc(0, 1), Money{5000, "EUR"}, 1},
		{"fixed plus percent", sc(25, 290), Money{10000, "EUR"}, 25 + 290},
		{"JPY exponent 0", sc(30, 250), Money{1999, "JPY"}, 30 + 50},   // 49.975 -> 50
		{"JPY small", sc(0, 250), Money{19, "JPY"}, 0},                 // 0.475 -> 0
		{"KWD exponent 3", sc(100, 125), Money{1250, "KWD"}, 100 + 16}, // 15.625 -> 16
		{"KWD exact", sc(0, 1000), Money{1250, "KWD"}, 125},
		{"100% at the cap stays exact", sc(0, 10_000), Money{MaxMoneyValue, "EUR"}, MaxMoneyValue},
		{"large amount no overflow", sc(0, 9_999), Money{MaxMoneyValue, "EUR"}, MaxMoneyValue / 10_000 * 9_999},
		{"capped at MaxMoneyValue", sc(MaxMoneyValue, 10_000), Money{MaxMoneyValue, "EUR"}, MaxMoneyValue},
		{"huge amount clamped", sc(0, 100), Money{1 << 62, "EUR"}, MaxMoneyValue / 100},
		{"bps above 100% clamped", sc(0, 1<<40), Money{200, "EUR"}, 200},
		{"negative settings ignored", sc(-5, -100), Money{4998, "EUR"}, 0},
		{"zero amount", sc(29, 150), Money{0, "EUR"}, 29},
		{"negative amount", sc(29, 150), Money{-4998, "EUR"}, 29},
		// A fixed part per currency: each in its own minor units, none for
		// a currency not listed.
		{"per currency: EUR", byCur(150), Money{10000, "EUR"}, 25 + 150},
		{"per currency: SEK", byCur(150), Money{10000, "SEK"}, 300 + 150},
		{"per currency: KWD exponent 3", byCur(0), Money{1250, "KWD"}, 80},
		{"per currency: JPY not listed pays the percentage only", byCur(250), Money{1999, "JPY"}, 50},
	}
	for _, tt := range tests {
		got := Surcharge(tt.mc, tt.amount)
		if got != (Money{tt.want, tt.amount.Currency}) {
			t.Errorf("%s: Surcharge = %v, want %d %s", tt.name, got, tt.want, tt.amount.Currency)
		}
	}
}

// byCur is a surcharge with a fixed part per currency (EUR 0.25, SEK
// 3.00, KWD 0.080) and bps.
func byCur(bps int64) MethodConfig {
	return MethodConfig{Surcharge: SurchargeConfig{FixedByCurrency: map[string]int64{"EUR": 25, "SEK": 300, "KWD": 80}, BasisPoints: bps}}
}

func TestSurchargeMatchesBigArithmetic(t *testing.T) {
	// Cross-check the split computation against the naive formula where the
	// naive one cannot overflow.
	for _, v := range []int64{0, 1, 9, 4999, 5000, 5001, 12345, 99_999, 1_000_001, 123_456_789} {
		for _, bps := range []int64{0, 1, 49, 50, 150, 999, 5000, 9999, 10000} {
			want := (v*bps + 5000) / 10000
			got := Surcharge(MethodConfig{Surcharge: SurchargeConfig{BasisPoints: bps}}, Money{v, "EUR"}).Value
			if got != want {
				t.Errorf("v=%d bps=%d: got %d, want %d", v, bps, got, want)
			}
		}
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*RoutingConfig)
		field  string // "" = valid
	}{
		{"valid", func(*RoutingConfig) {}, ""},
		{"empty config", func(c *RoutingConfig) { *c = RoutingConfig{} }, ""},
		{"disabled method without routes", func(c *RoutingConfig) { c.Methods[2].Routes = nil }, ""},
		{"merchant without id", func(c *RoutingConfig) { c.Merchants[1].ID = "" }, "merchants[1].id"},
		{"merchant id with space", func(c *RoutingConfig) { c.Merchants[0].ID = "a b" }, "merchants[0].id"},
		{"duplicate merchant", func(c *RoutingConfig) { c.Merchants[1].ID = "m1" }, "merchants[1].id"},
		{"merchant without keys", func(c *RoutingConfig) { c.Merchants[1].APIKeyHashes = nil }, "merchants[1].api_key_hashes"},
		{"raw key instead of hash", func(c *RoutingConfig) { c.Merchants[0].APIKeyHashes = []string{"key-a"} }, "merchants[0].api_key_hashes[0]"},
		{"upper-case hash", func(c *RoutingConfig) { c.Merchants[0].APIKeyHashes[0] = strings.ToUpper(rtHashA) }, "merchants[0].api_key_hashes[0]"},
		{"key shared by two merchants", func(c *RoutingConfig) { c.Merchants[1].APIKeyHashes = []string{rtHashB, rtHashA} }, "merchants[1].api_key_hashes[1]"},
		{"duplicate provider", func(c *RoutingConfig) { c.Providers[2].Name = "p1" }, "providers[2].name"},
		{"provider name upper case", func(c *RoutingConfig) { c.Providers[0].Name = "P1" }, "providers[0].name"},
		{"provider without base_url", func(c *RoutingConfig) { c.Providers[1].BaseURL = "" }, "providers[1].base_url"},
		{"provider relative url", func(c *RoutingConfig) { c.Providers[1].BaseURL = "/psp" }, "providers[1].base_url"},
		{"provider ftp url", func(c *RoutingConfig) { c.Providers[1].BaseURL = "ftp://x" }, "providers[1].base_url"},
		{"provider url with credentials", func(c *RoutingConfig) { c.Providers[1].BaseURL = "https://u:p@x" }, "providers[1].base_url"},
		{"zero timeout", func(c *RoutingConfig) { c.Providers[0].TimeoutMillis = 0 }, "providers[0].timeout_ms"},
		{"negative timeout", func(c *RoutingConfig) { c.Providers[0].TimeoutMillis = -1 }, "providers[0].timeout_ms"},
		{"huge timeout", func(c *RoutingConfig) { c.Providers[0].TimeoutMillis = MaxProviderTimeoutMillis + 1 }, "providers[0].timeout_ms"},
		{"failure ratio above 1", func(c *RoutingConfig) { c.Providers[2].Breaker.FailureRatio = 1.5 }, "providers[2].breaker.failure_ratio"},
		{"negative open_ms", func(c *RoutingConfig) { c.Providers[2].Breaker.OpenMillis = -1 }, "providers[2].breaker.open_ms"},
		{"negative interval", func(c *RoutingConfig) { c.Providers[2].Breaker.IntervalMillis = -1 }, "providers[2].breaker.interval_ms"},
		{"duplicate method", func(c *RoutingConfig) { c.Methods[3].Name = "m_card" }, "methods[3].name"},
		{"method without name", func(c *RoutingConfig) { c.Methods[0].Name = "" }, "methods[0].name"},
		{"unknown country", func(c *RoutingConfig) { c.Methods[1].Countries = []string{"NL", "UK"} }, "methods[1].countries[1]"},
		{"lower-case country", func(c *RoutingConfig) { c.Methods[1].Countries = []string{"nl"} }, "methods[1].countries[0]"},
		{"duplicate country", func(c *RoutingConfig) { c.Methods[1].Countries = []string{"NL", "NL"} }, "methods[1].countries[1]"},
		{"unknown currency", func(c *RoutingConfig) { c.Methods[0].Currencies[2] = "YEN" }, "methods[0].currencies[2]"},
		{"duplicate currency", func(c *RoutingConfig) { c.Methods[0].Currencies[1] = "EUR" }, "methods[0].currencies[1]"},
		{"unknown channel", func(c *RoutingConfig) { c.Methods[0].Channels[1] = "atm" }, "methods[0].channels[1]"},
		{"min above max", func(c *RoutingConfig) { c.Methods[1].MinAmount = 20_000 }, "methods[1].min_amount"},
		{"negative min", func(c *RoutingConfig) { c.Methods[1].MinAmount = -1 }, "methods[1].min_amount"},
		{"max beyond cap", func(c *RoutingConfig) { c.Methods[1].MaxAmount = MaxMoneyValue + 1 }, "methods[1].max_amount"},
		{"negative fixed fee", func(c *RoutingConfig) { c.Methods[1].Surcharge.FixedMinor = -1 }, "methods[1].surcharge.fixed"},
		{"negative basis points", func(c *RoutingConfig) { c.Methods[0].Surcharge.BasisPoints = -1 }, "methods[0].surcharge.basis_points"},
		{"fixed surcharge per currency", func(c *RoutingConfig) {
			c.Methods[0].Surcharge.FixedByCurrency = map[string]int64{"EUR": 25, "JPY": 40, "KWD": 80}
		}, ""},
		{"fixed surcharge per currency on a method of any currency", func(c *RoutingConfig) {
			c.Methods[2].Surcharge.FixedByCurrency = map[string]int64{"GBP": 20}
		}, ""},
		{"fixed surcharge for a currency the method does not take", func(c *RoutingConfig) {
			c.Methods[0].Surcharge.FixedByCurrency = map[string]int64{"EUR": 25, "SEK": 300}
		}, "methods[0].surcharge.fixed_by_currency.SEK"},
		{"fixed surcharge for a made-up currency", func(c *RoutingConfig) {
			c.Methods[2].Surcharge.FixedByCurrency = map[string]int64{"ABC": 1, "EUR": 1}
		}, "methods[2].surcharge.fixed_by_currency.ABC"},
		{"negative fixed surcharge per currency", func(c *RoutingConfig) {
			c.Methods[0].Surcharge.FixedByCurrency = map[string]int64{"EUR": -1}
		}, "methods[0].surcharge.fixed_by_currency.EUR"},
		{"fixed surcharge per currency beyond the cap", func(c *RoutingConfig) {
			c.Methods[0].Surcharge.FixedByCurrency = map[string]int64{"USD": MaxMoneyValue + 1}
		}, "methods[0].surcharge.fixed_by_currency.USD"},
		{"fixed surcharge both ways", func(c *RoutingConfig) {
			c.Methods[1].Surcharge.FixedByCurrency = map[string]int64{"EUR": 29}
		}, "methods[1].surcharge.fixed"},
		{"basis points above 100%", func(c *RoutingConfig) { c.Methods[0].Surcharge.BasisPoints = 10_001 }, "methods[0].surcharge.basis_points"},
		{"enabled method without routes", func(c *RoutingConfig) { c.Methods[1].Routes = nil }, "methods[1].routes"},
		{"route to unknown provider", func(c *RoutingConfig) { c.Methods[3].Routes[2].Provider = "p9" }, "methods[3].routes[2].provider"},
		{"route without provider", func(c *RoutingConfig) { c.Methods[0].Routes[0].Provider = "" }, "methods[0].routes[0].provider"},
		{"route unknown country", func(c *RoutingConfig) { c.Methods[3].Routes[0].Countries = []string{"XX"} }, "methods[3].routes[0].countries[0]"},
		{"route unknown currency", func(c *RoutingConfig) { c.Methods[3].Routes[1].Currencies = []string{"ABC"} }, "methods[3].routes[1].currencies[0]"},
		{"route unknown channel", func(c *RoutingConfig) { c.Methods[3].Routes[2].Channels = []string{"web"} }, "methods[3].routes[2].channels[0]"},
		{"route min above max", func(c *RoutingConfig) { c.Methods[1].Routes[0].MinAmount = 6_000 }, "methods[1].routes[0].min_amount"},
		{"negative authorization validity", func(c *RoutingConfig) { c.Methods[0].AuthorizationValiditySeconds = -1 }, "methods[0].authorization_validity_seconds"},
		{"authorization validity over 90 days", func(c *RoutingConfig) {
			c.Methods[0].AuthorizationValiditySeconds = MaxAuthorizationValiditySeconds + 1
		}, "methods[0].authorization_validity_seconds"},
		{"fraud rule without name", func(c *RoutingConfig) { c.FraudRules[0].Name = "" }, "fraud_rules[0].name"},
		{"duplicate fraud rule", func(c *RoutingConfig) {
			c.FraudRules = append(c.FraudRules, FraudRule{Name: "big", MinAmount: 1})
		}, "fraud_rules[1].name"},
		{"fraud rule without conditions", func(c *RoutingConfig) { c.FraudRules[0].MinAmount, c.FraudRules[0].Currencies = 0, nil }, "fraud_rules[0]"},
		{"fraud rule negative amount", func(c *RoutingConfig) { c.FraudRules[0].MinAmount = -5 }, "fraud_rules[0].min_amount"},
		{"fraud rule unknown method", func(c *RoutingConfig) { c.FraudRules[0].Methods = []string{"m_card", "crd"} }, "fraud_rules[0].methods[1]"},
		{"fraud rule unknown country", func(c *RoutingConfig) { c.FraudRules[0].Countries = []string{"ZZ"} }, "fraud_rules[0].countries[0]"},
		{"fraud rule bad email suffix", func(c *RoutingConfig) { c.FraudRules[0].EmailSuffix = "Evil Mail" }, "fraud_rules[0].email_suffix"},
		{"fraud rule bare @", func(c *RoutingConfig) { c.FraudRules[0].EmailSuffix = "@" }, "fraud_rules[0].email_suffix"},
		{"too many methods", func(c *RoutingConfig) {
			for i := range MaxConfigMethods {
				c.Methods = append(c.Methods, MethodConfig{Name: "x" + strings.Repeat("y", i%10)})
			}
		}, "methods"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := rtConfig()
			tt.mutate(&cfg)
			err := cfg.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("unexpected error %+v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("want error on %s, got nil", tt.field)
			}
			if err.Field != tt.field || err.Code != CodeInvalidConfig || err.Status != KindInvalid || err.Message == "" {
				t.Errorf("got %+v, want 400 %s on %s", err, CodeInvalidConfig, tt.field)
			}
		})
	}
}

func TestHashAPIKey(t *testing.T) {
	// FIPS 180-2 test vector for "abc".
	if got := HashAPIKey("abc"); got != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Errorf("HashAPIKey(abc) = %s", got)
	}
	if HashAPIKey("key-a") == HashAPIKey("key-b") {
		t.Error("different keys hash equal")
	}
}

func TestMerchantForKeyHash(t *testing.T) {
	cfg := rtConfig()
	cfg.Merchants[1].APIKeyHashes = append(cfg.Merchants[1].APIKeyHashes, HashAPIKey("key-b2"))
	tests := []struct {
		hash   string
		wantID string
	}{
		{rtHashA, "m1"},
		{rtHashB, "m2"},
		{HashAPIKey("key-b2"), "m2"},
		{HashAPIKey("key-c"), ""},
		{"", ""},
		{rtHashA[:63], ""},
		{"key-a", ""}, // the raw key is not its hash
	}
	for _, tt := range tests {
		m, ok := cfg.MerchantForKeyHash(tt.hash)
		if ok != (tt.wantID != "") || m.ID != tt.wantID {
			t.Errorf("MerchantForKeyHash(%q) = %q, %v; want %q", tt.hash, m.ID, ok, tt.wantID)
		}
	}
}

// FuzzValidateConfig decodes arbitrary JSON into a RoutingConfig. Validate
// must never panic, and a configuration it accepts must route sanely: every
// method appears exactly once (offered or excluded), offers only name
// configured providers, and RouteCandidates agrees with EligibleMethods.
func FuzzValidateConfig(f *testing.F) {
	def := DefaultConfig([]MerchantConfig{{ID: "m1", APIKeyHashes: []string{rtHashA}}},
		map[string]string{"psp_a": "http://a", "psp_b": "http://b", "psp_c": "http://c"})
	for _, c := range []RoutingConfig{rtConfig(), def, {}} {
		b, err := json.Marshal(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, "NL", "EUR", int64(4998), uint8(0))
	}
	f.Add([]byte(`{"methods":[{"name":"x","enabled":true,"routes":[{"provider":"p"}]}]}`), "BE", "JPY", int64(1), uint8(1))
	f.Add([]byte(`{"providers":[{"name":"p","base_url":"http://p","timeout_ms":1,"breaker":{"failure_ratio":1e999}}]}`), "DK", "DKK", int64(-1), uint8(2))
	channels := []string{ChannelOnline, ChannelPOS, ChannelMOTO, ""}
	f.Fuzz(func(t *testing.T, data []byte, country, currency string, amount int64, hs uint8) {
		var cfg RoutingConfig
		if json.Unmarshal(data, &cfg) != nil {
			return
		}
		if err := cfg.Validate(); err != nil {
			if err.Code != CodeInvalidConfig || err.Field == "" || err.Status != KindInvalid {
				t.Fatalf("malformed validation error %+v", err)
			}
			return
		}
		providers := map[string]bool{}
		for _, p := range cfg.Providers {
			providers[p.Name] = true
		}
		health := func(provider, method string) BreakerState {
			// A deterministic mix of states driven by the fuzzer.
			return []BreakerState{BreakerClosed, BreakerHalfOpen, BreakerOpen}[(int(hs)+len(provider)+len(method))%3]
		}
		oc := OrderContext{Country: country, Currency: currency, Amount: amount, Channel: channels[int(hs)%len(channels)]}
		resp := EligibleMethods(&cfg, oc, health)
		if len(resp.Methods)+len(resp.Excluded) != len(cfg.Methods) {
			t.Fatalf("%d methods configured, %d offered + %d excluded", len(cfg.Methods), len(resp.Methods), len(resp.Excluded))
		}
		for _, m := range resp.Methods {
			if len(m.Providers) == 0 {
				t.Fatalf("method %s offered without providers", m.Method)
			}
			for _, p := range m.Providers {
				if !providers[p] || health(p, m.Method) == BreakerOpen {
					t.Fatalf("method %s offers unusable provider %s", m.Method, p)
				}
			}
			if m.Surcharge.Value < 0 || m.Surcharge.Value > MaxMoneyValue {
				t.Fatalf("surcharge %v out of range", m.Surcharge)
			}
			if _, err := RouteCandidates(&cfg, oc, m.Method, health); err != nil {
				t.Fatalf("offered method %s rejected by RouteCandidates: %v", m.Method, err)
			}
		}
		for _, e := range resp.Excluded {
			if _, err := RouteCandidates(&cfg, oc, e.Method, health); err == nil {
				t.Fatalf("excluded method %s (%s) accepted by RouteCandidates", e.Method, e.Reason)
			}
		}
	})
}

// BenchmarkEligibleMethods measures one checkout's method selection on the
// default configuration (six methods, SEPA-sized country lists).
func BenchmarkEligibleMethods(b *testing.B) {
	cfg := DefaultConfig(nil, map[string]string{"psp_a": "http://a", "psp_b": "http://b", "psp_c": "http://c"})
	oc := OrderContext{Country: "NL", Currency: "EUR", Amount: 4998, Channel: ChannelOnline}
	health := rtHealth(map[string]BreakerState{"psp_b/ideal": BreakerOpen})
	b.ReportAllocs()
	for b.Loop() {
		EligibleMethods(&cfg, oc, health)
	}
}

// BenchmarkRouteCandidates measures routing one card payment.
func BenchmarkRouteCandidates(b *testing.B) {
	cfg := DefaultConfig(nil, map[string]string{"psp_a": "http://a", "psp_b": "http://b", "psp_c": "http://c"})
	oc := OrderContext{Country: "NL", Currency: "EUR", Amount: 4998, Channel: ChannelOnline}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := RouteCandidates(&cfg, oc, "card", nil); err != nil {
			b.Fatal(err)
		}
	}
}

// A method over several currencies carries its amount windows on routes,
// one per currency. Only the routes of the order's currency judge its
// amount, and when their limits alone stop every route the exclusion says
// so (below or above, with the limit in the order's currency) rather than
// "no route"; limits on both sides at once stay no_route with each route's
// reason.
func TestEligibleMethodsRouteAmountLimits(t *testing.T) {
	cfg := rtConfig()
	cfg.Methods = append(cfg.Methods, MethodConfig{
		Name: "m_paylater", Enabled: true, Currencies: []string{"EUR", "SEK"},
		Routes: []RouteConfig{
			{Provider: "p1", Currencies: []string{"EUR"}, MinAmount: 100, MaxAmount: 1_000_000},
			{Provider: "p2", Currencies: []string{"SEK"}, MinAmount: 1_000, MaxAmount: 10_000_000},
			{Provider: "p3", Currencies: []string{"SEK"}, MinAmount: 5_000, MaxAmount: 20_000_000},
		},
	})
	if e := cfg.Validate(); e != nil {
		t.Fatal(e)
	}
	if e := cfg.CheckAmountCurrencies(); e != nil {
		t.Fatal(e)
	}
	tests := []struct {
		name      string
		currency  string
		amount    int64
		reason    string   // "" = offered
		providers []string // when offered
		detail    []string // substrings, when excluded
	}{
		{"EUR inside its window", "EUR", 50_000, "", []string{"p1"}, nil},
		{"EUR below", "EUR", 99, ExclusionAmountBelowMin, nil, []string{"needs at least EUR 1.00", "order amount is EUR 0.99"}},
		{"EUR above", "EUR", 1_000_001, ExclusionAmountAboveMax, nil, []string{"allows at most EUR 10000.00"}},
		// SEK 15,000.00 is over EUR's ceiling in minor units, not SEK's.
		{"SEK over the EUR ceiling is fine", "SEK", 1_500_000, "", []string{"p2", "p3"}, nil},
		{"SEK between the two floors", "SEK", 2_000, "", []string{"p2"}, nil},
		{"SEK below both floors names the lowest", "SEK", 999, ExclusionAmountBelowMin, nil, []string{"needs at least SEK 10.00"}},
		{"SEK above both ceilings names the highest", "SEK", 20_000_001, ExclusionAmountAboveMax, nil, []string{"allows at most SEK 200000.00"}},
		{"SEK above one ceiling uses the other route", "SEK", 15_000_000, "", []string{"p3"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := EligibleMethods(&cfg, OrderContext{Country: "SE", Currency: tt.currency, Amount: tt.amount, Channel: ChannelOnline}, nil)
			i := slices.IndexFunc(resp.Methods, func(m MethodOffer) bool { return m.Method == "m_paylater" })
			j := slices.IndexFunc(resp.Excluded, func(e MethodExclusion) bool { return e.Method == "m_paylater" })
			if tt.reason == "" {
				if i < 0 {
					t.Fatalf("not offered: %+v", resp.Excluded)
				}
				if !slices.Equal(resp.Methods[i].Providers, tt.providers) {
					t.Fatalf("providers %v, want %v", resp.Methods[i].Providers, tt.providers)
				}
				return
			}
			if j < 0 || resp.Excluded[j].Reason != tt.reason {
				t.Fatalf("want excluded for %s, got offers %+v, exclusions %+v", tt.reason, resp.Methods, resp.Excluded)
			}
			for _, w := range tt.detail {
				if !strings.Contains(resp.Excluded[j].Detail, w) {
					t.Errorf("detail %q lacks %q", resp.Excluded[j].Detail, w)
				}
			}
		})
	}

	// One route too small, the other too large for the amount: neither
	// limit alone explains it.
	cfg.Methods[len(cfg.Methods)-1].Routes = []RouteConfig{
		{Provider: "p2", Currencies: []string{"SEK"}, MaxAmount: 10_000},
		{Provider: "p3", Currencies: []string{"SEK"}, MinAmount: 50_000},
	}
	resp := EligibleMethods(&cfg, OrderContext{Country: "SE", Currency: "SEK", Amount: 20_000, Channel: ChannelOnline}, nil)
	j := slices.IndexFunc(resp.Excluded, func(e MethodExclusion) bool { return e.Method == "m_paylater" })
	if j < 0 || resp.Excluded[j].Reason != ExclusionNoRoute ||
		!strings.Contains(resp.Excluded[j].Detail, "p2: maximum SEK 100.00") || !strings.Contains(resp.Excluded[j].Detail, "p3: minimum SEK 500.00") {
		t.Fatalf("want no_route naming both limits, got %+v", resp.Excluded)
	}
}

func TestCheckAmountCurrencies(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(c *RoutingConfig)
		field string // "" = accepted
	}{
		{"rtConfig as is (a limit on a one-currency method and route)", func(*RoutingConfig) {}, ""},
		{"method limit over several currencies", func(c *RoutingConfig) { c.Methods[0].MaxAmount = 1_000_000 }, "methods[0].currencies"},
		{"method minimum over every currency", func(c *RoutingConfig) { c.Methods[2].MinAmount = 100 }, "methods[2].currencies"},
		{"route limit inheriting several currencies", func(c *RoutingConfig) { c.Methods[0].Routes[1].MinAmount = 100 }, "methods[0].routes[1].currencies"},
		{"route limit with two currencies of its own", func(c *RoutingConfig) {
			c.Methods[3].Routes[0].Currencies = []string{"DKK", "EUR"}
			c.Methods[3].Routes[0].MaxAmount = 100
		}, "methods[3].routes[0].currencies"},
		{"route limit on a method of every currency", func(c *RoutingConfig) { c.Methods[2].Routes[0].MaxAmount = 100 }, "methods[2].routes[0].currencies"},
		{"route limit with its one currency", func(c *RoutingConfig) { c.Methods[3].Routes[0].MaxAmount = 100 }, ""},
		{"route limit inheriting its method's one currency", func(c *RoutingConfig) { c.Methods[1].Routes[1].MinAmount = 100 }, ""},
		{"fixed surcharge over several currencies", func(c *RoutingConfig) { c.Methods[0].Surcharge.FixedMinor = 25 }, "methods[0].surcharge.fixed"},
		{"fixed surcharge over every currency", func(c *RoutingConfig) { c.Methods[2].Surcharge.FixedMinor = 25 }, "methods[2].surcharge.fixed"},
		{"fixed surcharge per currency over several", func(c *RoutingConfig) {
			c.Methods[0].Surcharge.FixedByCurrency = map[string]int64{"EUR": 25, "JPY": 40}
		}, ""},
		{"fraud rule minimum in its one currency", func(*RoutingConfig) {}, ""},
		{"fraud rule minimum in every currency", func(c *RoutingConfig) { c.FraudRules[0].Currencies = nil }, "fraud_rules[0].currencies"},
		{"fraud rule minimum over two currencies", func(c *RoutingConfig) { c.FraudRules[0].Currencies = []string{"EUR", "HUF"} }, "fraud_rules[0].currencies"},
		{"fraud rule without a minimum over every currency", func(c *RoutingConfig) {
			c.FraudRules = append(c.FraudRules, FraudRule{Name: "nl_card", Countries: []string{"NL"}, Methods: []string{"m_card"}})
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := rtConfig()
			tt.edit(&cfg)
			if e := cfg.Validate(); e != nil {
				t.Fatalf("Validate refuses it: %v", e)
			}
			e := cfg.CheckAmountCurrencies()
			switch {
			case tt.field == "" && e != nil:
				t.Fatalf("refused: %v", e)
			case tt.field != "" && e == nil:
				t.Fatal("accepted")
			case tt.field != "" && (e.Field != tt.field || e.Code != CodeInvalidConfig):
				t.Fatalf("got %s at %q, want invalid_config at %q (%s)", e.Code, e.Field, tt.field, e.Message)
			}
		})
	}
}
