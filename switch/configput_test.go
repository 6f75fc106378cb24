package txswitch_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	txswitch "github.com/txswitch/txswitch/switch"
	"github.com/txswitch/txswitch/switch/memory"
)

// configErr returns err as a *txswitch.Error after wantErr checked it.
func configErr(t *testing.T, err error, status int, code, field string) *txswitch.Error {
	t.Helper()
	wantErr(t, err, status, code)
	e := err.(*txswitch.Error)
	if e.Field != field {
		t.Fatalf("field %q, want %q (%s)", e.Field, field, e.Message)
	}
	return e
}

// A provider whose calls still wait for a final result keeps its
// endpoint: the status inquiry that settles them must reach the endpoint
// that received them. Another endpoint never saw the call and answers
// not_found, the switch would conclude "never received" and open the order
// again while the first endpoint may have charged. Timeouts and breaker
// settings may change; the endpoint may once the calls are settled.
func TestConfigKeepsTheEndpointOfAProviderWithOpenCalls(t *testing.T) {
	for _, tc := range []struct {
		name     string
		provider int // index in testConfig().Providers
		open     func(h *harness, orderID string) txswitch.Payment
		settle   memory.Step
	}{
		{"in doubt", 0, func(h *harness, id string) txswitch.Payment {
			h.a.Push(txswitch.OpAuthorize, memoryErr(timeoutErr("psp_a")))
			return h.pay(id, txswitch.CreatePaymentRequest{Method: "card"})
		}, approved("r")},
		{"pending at the shopper's bank", 1, func(h *harness, id string) txswitch.Payment {
			h.b.Push(txswitch.OpAuthorize, memory.Step{Result: txswitch.ProviderResult{Outcome: txswitch.OutcomePending, RedirectURL: "https://bank.test/r/1"}})
			return h.pay(id, txswitch.CreatePaymentRequest{Method: "ideal"})
		}, approved("r")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			o := h.createOrder(1000)
			p := tc.open(h, o.ID)
			if p.Status != txswitch.PaymentInDoubt && p.Status != txswitch.PaymentPending {
				t.Fatalf("payment %s, want an open call", p.Status)
			}
			name := testConfig().Providers[tc.provider].Name
			moved := testConfig()
			moved.Providers[tc.provider].BaseURL = "https://other-endpoint.test"
			h.unchanged(func() {
				_, err := h.svc.PutConfig(h.ctx, moved)
				e := configErr(t, err, 409, txswitch.CodeProviderEndpointHasOpenCalls, fmt.Sprintf("providers[%d].base_url", tc.provider))
				for _, w := range []string{name, p.ID, testConfig().Providers[tc.provider].BaseURL, "https://other-endpoint.test"} {
					if !strings.Contains(e.Message, w) {
						t.Fatalf("message %q does not name %q", e.Message, w)
					}
				}
			})
			// Timeouts and breaker settings are not where the call went.
			tuned := testConfig()
			tuned.Providers[tc.provider].TimeoutMillis = 5000
			tuned.Providers[tc.provider].Breaker.OpenMillis = 9000
			if r, err := h.svc.PutConfig(h.ctx, tuned); err != nil || r.Status != 200 {
				t.Fatalf("timeout and breaker change with an open call: %v", err)
			}
			if tc.provider == 0 {
				h.a.Push(txswitch.OpStatus, tc.settle)
			} else {
				h.b.Push(txswitch.OpStatus, tc.settle)
			}
			h.clock.Advance(time.Minute)
			if n, err := h.svc.ResolveInDoubt(h.ctx); err != nil || n != 1 {
				t.Fatalf("resolve = %d %v", n, err)
			}
			if r, err := h.svc.PutConfig(h.ctx, moved); err != nil || r.Status != 200 {
				t.Fatalf("endpoint change once the call settled: %v", err)
			}
		})
	}
}

// A configuration without merchants would lock every merchant out (every
// API key refused): the proposer refuses it, and nothing changes.
func TestConfigWithoutMerchantsIsRefused(t *testing.T) {
	h := newHarness(t)
	none := testConfig()
	none.Merchants = nil
	for _, cfg := range []txswitch.RoutingConfig{{}, none} {
		h.unchanged(func() {
			_, err := h.svc.PutConfig(h.ctx, cfg)
			e := configErr(t, err, 400, txswitch.CodeInvalidConfig, "merchants")
			if !strings.Contains(e.Message, "no merchants") {
				t.Fatalf("message %q does not say why", e.Message)
			}
		})
	}
	if _, err := h.svc.Authenticate(h.ctx, keyA); err != nil {
		t.Fatalf("merchant locked out: %v", err)
	}
}

// A change carrying a version is accepted only if that is the current
// version: two operators doing GET-edit-PUT do not silently undo each
// other's changes. A change without a version overwrites, as before.
func TestConfigVersionConflict(t *testing.T) {
	h := newHarness(t)
	get := func() txswitch.RoutingConfig {
		r, err := h.svc.GetConfig(h.ctx)
		if err != nil {
			t.Fatal(err)
		}
		return decode[txswitch.RoutingConfig](t, r)
	}
	first, second := get(), get()
	if first.Version == 0 {
		t.Fatal("stored configuration has no version")
	}
	first.Methods[0].Surcharge.BasisPoints = 10
	r, err := h.svc.PutConfig(h.ctx, first)
	if err != nil {
		t.Fatalf("PUT with the current version: %v", err)
	}
	if v := decode[txswitch.RoutingConfig](t, r).Version; v != first.Version+1 {
		t.Fatalf("new version %d, want %d", v, first.Version+1)
	}
	second.Methods[1].Surcharge.FixedMinor = 20
	h.unchanged(func() {
		_, err := h.svc.PutConfig(h.ctx, second)
		e := configErr(t, err, 409, txswitch.CodeConfigVersionConflict, "version")
		if !strings.Contains(e.Message, "version 2") || !strings.Contains(e.Message, "version 1") {
			t.Fatalf("message %q does not give both versions", e.Message)
		}
	})
	if got := get(); got.Methods[0].Surcharge.BasisPoints != 10 || got.Version != 2 {
		t.Fatalf("first change lost: %+v", got.Methods[0].Surcharge)
	}
	// Re-read, re-apply, PUT with the current version: accepted.
	third := get()
	third.Methods[1].Surcharge.FixedMinor = 20
	if _, err := h.svc.PutConfig(h.ctx, third); err != nil {
		t.Fatalf("PUT after re-reading: %v", err)
	}
	// A version from the future is as wrong as a stale one.
	future := get()
	future.Version += 5
	h.unchanged(func() {
		_, err := h.svc.PutConfig(h.ctx, future)
		configErr(t, err, 409, txswitch.CodeConfigVersionConflict, "version")
	})
	// Without a version: no check (today's behaviour).
	blind := testConfig()
	if r, err := h.svc.PutConfig(h.ctx, blind); err != nil || decode[txswitch.RoutingConfig](t, r).Version != 4 {
		t.Fatalf("PUT without a version: %v", err)
	}
}

// A fraud rule whose email suffix can never match an address (Validate
// accepts it) is refused where the change is proposed: it would silently
// hold nothing. The three documented forms stay accepted.
func TestConfigRefusesAnEmailSuffixThatCannotMatch(t *testing.T) {
	for _, tc := range []struct {
		suffix string
		ok     bool
	}{
		{"example.com", true}, {"@example.com", true}, {".example.com", true},
		{"@.example.com", false}, {"..", false}, {"example..com", false}, {"example.com.", false}, {".", false},
	} {
		t.Run(tc.suffix, func(t *testing.T) {
			h := newHarness(t)
			cfg := testConfig()
			cfg.FraudRules = append(cfg.FraudRules, txswitch.FraudRule{Name: "domain", EmailSuffix: tc.suffix})
			if cfg.Validate() != nil {
				t.Skip("Validate already refuses it")
			}
			_, err := h.svc.PutConfig(h.ctx, cfg)
			if tc.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			configErr(t, err, 400, txswitch.CodeInvalidConfig, "fraud_rules[1].email_suffix")
		})
	}
}

// An amount limit is in minor units of one currency. A method taking
// several currencies with one limit for all of them (EUR 10,000.00 and
// SEK 10,000.00, about EUR 900, at once) is refused where the change is
// proposed, naming the field; the same window set per currency on routes
// is accepted.
func TestConfigRefusesAnAmountLimitWithoutItsCurrency(t *testing.T) {
	h := newHarness(t)
	cfg := testConfig()
	k := &cfg.Methods[2] // klarna_paylater
	k.Currencies = []string{"EUR", "SEK"}
	k.MaxAmount = 1_000_000
	h.unchanged(func() {
		_, err := h.svc.PutConfig(h.ctx, cfg)
		e := configErr(t, err, 400, txswitch.CodeInvalidConfig, "methods[2].currencies")
		if !strings.Contains(e.Message, "EUR, SEK") || !strings.Contains(e.Message, "one currency") {
			t.Fatalf("message %q does not say why", e.Message)
		}
	})
	k.MaxAmount = 0
	k.Routes = []txswitch.RouteConfig{{Provider: "psp_a", MaxAmount: 1_000_000}}
	h.unchanged(func() {
		_, err := h.svc.PutConfig(h.ctx, cfg)
		configErr(t, err, 400, txswitch.CodeInvalidConfig, "methods[2].routes[0].currencies")
	})
	k.Routes = []txswitch.RouteConfig{
		{Provider: "psp_a", Currencies: []string{"EUR"}, MaxAmount: 1_000_000},
		{Provider: "psp_a", Currencies: []string{"SEK"}, MaxAmount: 10_000_000},
	}
	if _, err := h.svc.PutConfig(h.ctx, cfg); err != nil {
		t.Fatalf("limits per currency refused: %v", err)
	}

	// A fraud threshold too. The stored big_ticket rule (every currency)
	// is kept; a changed threshold, or a new rule like it, is refused.
	cfg.FraudRules[0].MinAmount = 500_000
	h.unchanged(func() {
		_, err := h.svc.PutConfig(h.ctx, cfg)
		e := configErr(t, err, 400, txswitch.CodeInvalidConfig, "fraud_rules[0].currencies")
		if !strings.Contains(e.Message, "big_ticket") || !strings.Contains(e.Message, "a rule per currency") {
			t.Fatalf("message %q does not say why", e.Message)
		}
	})
	cfg.FraudRules[0].MinAmount = 1_000_000
	cfg.FraudRules = append(cfg.FraudRules, txswitch.FraudRule{Name: "sek_high", MinAmount: 10_000_000, Currencies: []string{"SEK", "NOK"}})
	h.unchanged(func() {
		_, err := h.svc.PutConfig(h.ctx, cfg)
		configErr(t, err, 400, txswitch.CodeInvalidConfig, "fraud_rules[1].currencies")
	})
	cfg.FraudRules[1].Currencies = []string{"SEK"}
	if _, err := h.svc.PutConfig(h.ctx, cfg); err != nil {
		t.Fatalf("the stored rule and a one-currency rule refused: %v", err)
	}
}

// A fixed surcharge per currency waits for the cluster version every
// member understands (an older member would drop the field and, as leader,
// offer and charge other fees). From it, a payment in each currency pays
// that currency's fee, in its own minor units, and a currency not listed
// pays none; the offer at checkout shows the same.
func TestConfigFixedSurchargePerCurrency(t *testing.T) {
	cfgWithFees := func() txswitch.RoutingConfig {
		cfg := testConfig()
		cfg.Methods[0].Surcharge = txswitch.SurchargeConfig{FixedByCurrency: map[string]int64{"EUR": 25, "SEK": 300}, BasisPoints: 100}
		return cfg
	}
	t.Run("below version 10", func(t *testing.T) { configWaitsForVersion(t, txswitch.VersionCurrencyFees, cfgWithFees()) })

	h := newHarness(t)
	h.gate(txswitch.VersionCurrencyFees)
	if _, err := h.svc.PutConfig(h.ctx, cfgWithFees()); err != nil {
		t.Fatalf("PutConfig: %v", err)
	}
	for _, tc := range []struct {
		currency string
		amount   int64
		fee      int64
	}{
		{"EUR", 10_000, 25 + 100},  // EUR 0.25 + 1 %
		{"SEK", 10_000, 300 + 100}, // SEK 3.00 + 1 %
		{"JPY", 10_000, 100},       // not listed: 1 % only
	} {
		t.Run(tc.currency, func(t *testing.T) {
			req := orderReq(tc.amount)
			req.Amount.Currency = tc.currency
			r, err := h.svc.CreateOrder(h.ctx, caller(""), req)
			if err != nil {
				t.Fatalf("CreateOrder: %v", err)
			}
			o := decode[txswitch.Order](t, r)
			r, err = h.svc.Methods(h.ctx, caller(""), o.ID)
			if err != nil {
				t.Fatalf("Methods: %v", err)
			}
			offers := decode[txswitch.MethodsResponse](t, r)
			want := txswitch.Money{Value: tc.fee, Currency: tc.currency}
			if len(offers.Methods) == 0 || offers.Methods[0].Method != "card" || offers.Methods[0].Surcharge != want {
				t.Fatalf("card offered with %+v, want surcharge %v", offers.Methods, want)
			}
			p := h.pay(o.ID, txswitch.CreatePaymentRequest{Method: "card"})
			if p.Surcharge == nil || *p.Surcharge != want || p.Captured.Value != tc.amount+tc.fee {
				t.Fatalf("payment %+v, want surcharge %v and %d captured", p, want, tc.amount+tc.fee)
			}
		})
	}
}

// configWaitsForVersion checks that cfg, which uses a field of cluster
// version v, is refused on a cluster one version below: by PutConfig
// (409 cluster_version_not_supported) and by apply, should a command
// carry it anyway.
func configWaitsForVersion(t *testing.T, v int, cfg txswitch.RoutingConfig) {
	t.Helper()
	old := newHarnessFor(t, txswitch.VersionRange{Min: 1, Max: v - 1})
	old.gate(v - 1)
	old.unchanged(func() {
		_, err := old.svc.PutConfig(old.ctx, cfg)
		configErr(t, err, 409, txswitch.CodeVersionNotSupported, "methods")
	})
	old.applyRefuses(cfg, txswitch.CodeVersionNotSupported)
}

// applyRefuses proposes cfg as a configuration change without PutConfig's
// checks and fails unless apply refuses it with code, changing nothing:
// what a command from another proposer (or one that raced a check) meets.
func (h *harness) applyRefuses(cfg txswitch.RoutingConfig, code string) {
	h.t.Helper()
	h.unchanged(func() {
		res, err := h.log.Propose(h.ctx, txswitch.ConfigPutCommand(cfg, h.clock.Now()))
		if err != nil {
			h.t.Fatalf("propose: %v", err)
		}
		ar, ok := res.(*txswitch.ApplyResult)
		if !ok || ar.Err == nil || ar.Err.Code != code {
			h.t.Fatalf("apply answered %T (error %v), want %s", res, errOf(ar), code)
		}
	})
}

func errOf(ar *txswitch.ApplyResult) error {
	if ar == nil || ar.Err == nil {
		return nil
	}
	return ar.Err
}

// A cluster seeded by an earlier release may hold an amount limit over
// several currencies (the old default Klarna window). Another change must
// still go through with it as stored (an operator disabling iDEAL in an
// incident is not sent to rework Klarna first); changing that limit, or
// widening the currencies it spans, is a new setting and refused.
func TestConfigKeepsAnAmountLimitItAlreadyHeld(t *testing.T) {
	h := newHarness(t)
	legacy := func() txswitch.RoutingConfig {
		cfg := testConfig()
		k := &cfg.Methods[2] // klarna_paylater
		k.Currencies = []string{"EUR", "SEK"}
		k.MinAmount, k.MaxAmount = 100, 1_000_000
		return cfg
	}
	// Stored as an earlier release stored it: apply checks only Validate.
	res, err := h.log.Propose(h.ctx, txswitch.ConfigPutCommand(legacy(), h.clock.Now()))
	if ar, ok := res.(*txswitch.ApplyResult); err != nil || !ok || ar.Err != nil {
		t.Fatalf("store the legacy configuration: %v %v", err, errOf(ar))
	}

	incident := legacy()
	incident.Methods[1].Enabled = false // iDEAL off
	if _, err := h.svc.PutConfig(h.ctx, incident); err != nil {
		t.Fatalf("a change beside the stored limit refused: %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(k *txswitch.MethodConfig)
	}{
		{"the limit changed", func(k *txswitch.MethodConfig) { k.MaxAmount = 2_000_000 }},
		{"a third currency under it", func(k *txswitch.MethodConfig) { k.Currencies = append(k.Currencies, "NOK") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := legacy()
			cfg.Methods[1].Enabled = false
			tc.edit(&cfg.Methods[2])
			h.unchanged(func() {
				_, err := h.svc.PutConfig(h.ctx, cfg)
				configErr(t, err, 400, txswitch.CodeInvalidConfig, "methods[2].currencies")
			})
		})
	}
	// Moved onto routes, one per currency: accepted, and from then on the
	// old form is a new setting again.
	fixed := legacy()
	k := &fixed.Methods[2]
	k.MinAmount, k.MaxAmount = 0, 0
	k.Routes = []txswitch.RouteConfig{
		{Provider: "psp_a", Currencies: []string{"EUR"}, MinAmount: 100, MaxAmount: 1_000_000},
		{Provider: "psp_a", Currencies: []string{"SEK"}, MinAmount: 1_000, MaxAmount: 10_000_000},
	}
	if _, err := h.svc.PutConfig(h.ctx, fixed); err != nil {
		t.Fatalf("limits per currency refused: %v", err)
	}
	h.unchanged(func() {
		_, err := h.svc.PutConfig(h.ctx, legacy())
		configErr(t, err, 400, txswitch.CodeInvalidConfig, "methods[2].currencies")
	})
}
