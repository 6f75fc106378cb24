package providers_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/txswitch/txswitch/providers"
	"github.com/txswitch/txswitch/providers/sim"
	txswitch "github.com/txswitch/txswitch/switch"
	"go.uber.org/zap/zaptest"
)

// scripted is a provider whose next answers the test sets; it counts the
// calls that reached it.
type scripted struct {
	name  string
	mu    sync.Mutex
	err   error
	res   txswitch.ProviderResult
	calls atomic.Int64
}

func (s *scripted) Name() string { return s.name }

func (s *scripted) Do(_ context.Context, req txswitch.ProviderRequest) (txswitch.ProviderResult, error) {
	s.calls.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return txswitch.ProviderResult{}, s.err
	}
	return s.res, nil
}

func (s *scripted) set(res txswitch.ProviderResult, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.res, s.err = res, err
}

func failure(definitive bool, code string) error {
	return &txswitch.ProviderError{Provider: "a", Op: txswitch.OpAuthorize, Definitive: definitive, Code: code, Err: errors.New(code)}
}

type changeLog struct {
	mu  sync.Mutex
	got []providers.StateChange
}

func (c *changeLog) add(s providers.StateChange) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, s)
}

func (c *changeLog) transitions() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, s := range c.got {
		out = append(out, s.Provider+"/"+s.Method+":"+string(s.From)+">"+string(s.To))
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// newFakeRegistry builds a registry over scripted providers, one per name.
func newFakeRegistry(t *testing.T, log *changeLog, names ...string) (*providers.Registry, map[string]*scripted) {
	t.Helper()
	fakes := map[string]*scripted{}
	for _, n := range names {
		fakes[n] = &scripted{name: n, res: txswitch.ProviderResult{Outcome: txswitch.OutcomeApproved}}
	}
	var reg *providers.Registry
	reg = providers.NewRegistry(providers.RegistryOptions{
		Logger:      zaptest.NewLogger(t),
		NewProvider: func(c txswitch.ProviderConfig) txswitch.Provider { return fakes[c.Name] },
		OnStateChange: func(c providers.StateChange) {
			log.add(c)
			_ = reg.States() // calling back into the registry must not deadlock
		},
	})
	return reg, fakes
}

func conf(name string, b txswitch.BreakerConfig) txswitch.ProviderConfig {
	return txswitch.ProviderConfig{Name: name, BaseURL: "http://" + name + ".example", TimeoutMillis: 1000, Breaker: b}
}

func call(t *testing.T, reg *providers.Registry, name, method string, op txswitch.ProviderOp) (txswitch.ProviderResult, error) {
	t.Helper()
	p, ok := reg.Get(name, method)
	if !ok {
		t.Fatalf("provider %s missing", name)
	}
	return p.Do(context.Background(), txswitch.ProviderRequest{IdempotencyKey: "k", Op: op, PaymentID: "p", Method: method})
}

func TestBreakerLifecycle(t *testing.T) {
	log := &changeLog{}
	reg, fakes := newFakeRegistry(t, log, "a")
	if err := reg.Configure([]txswitch.ProviderConfig{conf("a", txswitch.BreakerConfig{ConsecutiveFailures: 3, OpenMillis: 50})}); err != nil {
		t.Fatal(err)
	}
	a := fakes["a"]

	// Declines and pendings are answers, not failures.
	a.set(txswitch.ProviderResult{Outcome: txswitch.OutcomeDeclined, Code: "do_not_honor"}, nil)
	for range 10 {
		if _, err := call(t, reg, "a", "card", txswitch.OpAuthorize); err != nil {
			t.Fatal(err)
		}
	}
	if s := reg.State("a", "card"); s != txswitch.BreakerClosed {
		t.Fatalf("after declines: %s", s)
	}
	// iDEAL used once: it has a breaker of its own, which card's failures
	// leave alone (an untried method would take the provider's health:
	// TestUntriedMethodTakesTheProvidersHealth).
	if _, err := call(t, reg, "a", "ideal", txswitch.OpAuthorize); err != nil {
		t.Fatal(err)
	}

	// Mixed definitive and in-doubt failures trip it.
	for i, err := range []error{failure(true, "http_503"), failure(false, "timeout"), failure(true, "connection_refused")} {
		a.set(txswitch.ProviderResult{}, err)
		if _, got := call(t, reg, "a", "card", txswitch.OpAuthorize); !errors.Is(got, err) {
			t.Fatalf("failure %d passed through as %v", i, got)
		}
	}
	if s := reg.State("a", "card"); s != txswitch.BreakerOpen {
		t.Fatalf("after 3 failures: %s", s)
	}
	if s := reg.State("a", "ideal"); s != txswitch.BreakerClosed {
		t.Fatalf("other method's breaker: %s", s)
	}
	before := a.calls.Load()
	_, err := call(t, reg, "a", "card", txswitch.OpCapture)
	if pe := providerError(t, err); !pe.Definitive || pe.Code != providers.CodeBreakerOpen || pe.Provider != "a" {
		t.Fatalf("open breaker answered %v", pe)
	}
	if a.calls.Load() != before {
		t.Fatal("an open breaker let a call through")
	}
	// Status inquiries bypass the open breaker.
	a.set(txswitch.ProviderResult{Outcome: txswitch.OutcomeApproved}, nil)
	if res, err := call(t, reg, "a", "card", txswitch.OpStatus); err != nil || res.Outcome != txswitch.OutcomeApproved {
		t.Fatalf("status while open: %+v %v", res, err)
	}
	if s := reg.State("a", "card"); s != txswitch.BreakerOpen {
		t.Fatalf("a status inquiry changed the breaker to %s", s)
	}

	waitFor(t, "half-open", func() bool { return reg.State("a", "card") == txswitch.BreakerHalfOpen })
	if _, err := call(t, reg, "a", "card", txswitch.OpAuthorize); err != nil {
		t.Fatalf("probe: %v", err)
	}
	if s := reg.State("a", "card"); s != txswitch.BreakerClosed {
		t.Fatalf("after a successful probe: %s", s)
	}
	want := []string{"a/card:closed>open", "a/card:open>half_open", "a/card:half_open>closed"}
	if got := log.transitions(); !slices.Equal(got, want) {
		t.Fatalf("transitions = %v, want %v", got, want)
	}
	// Only breakers that were used exist; State of an unused method creates none.
	if st := reg.States(); len(st) != 1 || len(st["a"]) != 2 || st["a"]["card"] != txswitch.BreakerClosed || st["a"]["ideal"] != txswitch.BreakerClosed {
		t.Fatalf("States() = %v", st)
	}
}

func TestBreakerFailedProbeReopens(t *testing.T) {
	log := &changeLog{}
	reg, fakes := newFakeRegistry(t, log, "a")
	if err := reg.Configure([]txswitch.ProviderConfig{conf("a", txswitch.BreakerConfig{ConsecutiveFailures: 1, OpenMillis: 30})}); err != nil {
		t.Fatal(err)
	}
	fakes["a"].set(txswitch.ProviderResult{}, failure(false, "timeout"))
	_, _ = call(t, reg, "a", "card", txswitch.OpAuthorize)
	first := reg.Views()["a"]["card"]
	if first.State != txswitch.BreakerOpen || first.Changes != 1 || first.Since.IsZero() {
		t.Fatalf("after the trip: %+v", first)
	}
	waitFor(t, "half-open", func() bool { return reg.State("a", "card") == txswitch.BreakerHalfOpen })
	_, _ = call(t, reg, "a", "card", txswitch.OpAuthorize)
	if s := reg.State("a", "card"); s != txswitch.BreakerOpen {
		t.Fatalf("after a failed probe: %s", s)
	}
	// Open before and open after: only the count tells that the breaker
	// let a probe through in between.
	again := reg.Views()["a"]["card"]
	if again.State != txswitch.BreakerOpen || again.Changes != 3 || !again.Since.After(first.Since) {
		t.Fatalf("after the failed probe: %+v, first open: %+v", again, first)
	}
	if st := reg.States(); st["a"]["card"] != txswitch.BreakerOpen {
		t.Fatalf("States() = %v", st)
	}
}

func TestBreakerViewOfUnchangedBreaker(t *testing.T) {
	reg, _ := newFakeRegistry(t, &changeLog{}, "a")
	if err := reg.Configure([]txswitch.ProviderConfig{conf("a", txswitch.BreakerConfig{})}); err != nil {
		t.Fatal(err)
	}
	_, _ = call(t, reg, "a", "card", txswitch.OpAuthorize)
	if v := reg.Views()["a"]["card"]; v != (providers.BreakerView{State: txswitch.BreakerClosed}) {
		t.Fatalf("a breaker that never changed: %+v", v)
	}
}

func TestBreakerIgnoresCallerMistakes(t *testing.T) {
	reg, fakes := newFakeRegistry(t, &changeLog{}, "a")
	if err := reg.Configure([]txswitch.ProviderConfig{conf("a", txswitch.BreakerConfig{ConsecutiveFailures: 2})}); err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{
		failure(true, "http_400"), failure(true, providers.CodeInvalidRequest), failure(false, providers.CodeKeyReused),
		failure(false, providers.CodeCanceled), context.Canceled, failure(true, providers.CodeNotSent),
		failure(true, providers.CodeKeyFenced),
	} {
		fakes["a"].set(txswitch.ProviderResult{}, err)
		for range 3 {
			_, _ = call(t, reg, "a", "card", txswitch.OpAuthorize)
		}
		if s := reg.State("a", "card"); s != txswitch.BreakerClosed {
			t.Fatalf("%v tripped the breaker", err)
		}
	}
	fakes["a"].set(txswitch.ProviderResult{}, failure(true, "http_429"))
	for range 2 {
		_, _ = call(t, reg, "a", "card", txswitch.OpAuthorize)
	}
	if s := reg.State("a", "card"); s != txswitch.BreakerOpen {
		t.Fatalf("429s did not trip the breaker: %s", s)
	}
}

func TestBreakerFailureRatio(t *testing.T) {
	reg, fakes := newFakeRegistry(t, &changeLog{}, "a")
	if err := reg.Configure([]txswitch.ProviderConfig{conf("a", txswitch.BreakerConfig{ConsecutiveFailures: 100, FailureRatio: 0.5, MinRequests: 4})}); err != nil {
		t.Fatal(err)
	}
	ok, bad := txswitch.ProviderResult{Outcome: txswitch.OutcomeApproved}, failure(true, "http_503")
	for i, tc := range []struct {
		err  error
		want txswitch.BreakerState
	}{{bad, txswitch.BreakerClosed}, {nil, txswitch.BreakerClosed}, {bad, txswitch.BreakerClosed}, {bad, txswitch.BreakerOpen}} {
		fakes["a"].set(ok, tc.err)
		_, _ = call(t, reg, "a", "card", txswitch.OpAuthorize)
		if s := reg.State("a", "card"); s != tc.want {
			t.Fatalf("call %d: %s, want %s", i, s, tc.want)
		}
	}
}

func TestConfigureKeepsBreakerState(t *testing.T) {
	reg, fakes := newFakeRegistry(t, &changeLog{}, "a", "b")
	b := txswitch.BreakerConfig{ConsecutiveFailures: 1, OpenMillis: 60_000}
	if err := reg.Configure([]txswitch.ProviderConfig{conf("a", b), conf("b", b)}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"a", "b"} {
		fakes[n].set(txswitch.ProviderResult{}, failure(true, "connection_refused"))
		_, _ = call(t, reg, n, "card", txswitch.OpAuthorize)
	}

	moved := conf("a", b)
	moved.BaseURL, moved.TimeoutMillis = "http://a2.example", 5000 // same breaker settings
	changed := conf("b", txswitch.BreakerConfig{ConsecutiveFailures: 2, OpenMillis: 60_000})
	tests := []struct {
		name    string
		cfgs    []txswitch.ProviderConfig
		wantErr bool
		states  map[string]txswitch.BreakerState
		present []string
	}{
		{"invalid config changes nothing", []txswitch.ProviderConfig{conf("a", b), {Name: "x", BaseURL: "ftp://x"}}, true,
			map[string]txswitch.BreakerState{"a": txswitch.BreakerOpen, "b": txswitch.BreakerOpen}, []string{"a", "b"}},
		{"duplicate names", []txswitch.ProviderConfig{conf("a", b), conf("a", b)}, true,
			map[string]txswitch.BreakerState{"a": txswitch.BreakerOpen, "b": txswitch.BreakerOpen}, []string{"a", "b"}},
		{"same settings keep state, changed settings reset", []txswitch.ProviderConfig{moved, changed}, false,
			map[string]txswitch.BreakerState{"a": txswitch.BreakerOpen, "b": txswitch.BreakerClosed}, []string{"a", "b"}},
		{"removed provider vanishes", []txswitch.ProviderConfig{moved}, false,
			map[string]txswitch.BreakerState{"a": txswitch.BreakerOpen, "b": txswitch.BreakerClosed}, []string{"a"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := reg.Configure(tc.cfgs)
			if (err != nil) != tc.wantErr {
				t.Fatalf("Configure err = %v, want error %v", err, tc.wantErr)
			}
			for n, want := range tc.states {
				if got := reg.State(n, "card"); got != want {
					t.Errorf("%s: %s, want %s", n, got, want)
				}
			}
			if got := reg.Names(); !slices.Equal(got, tc.present) {
				t.Errorf("names = %v, want %v", got, tc.present)
			}
			for _, n := range []string{"a", "b"} {
				_, ok := reg.Get(n, "card")
				if ok != slices.Contains(tc.present, n) {
					t.Errorf("Get(%s) ok = %v", n, ok)
				}
			}
		})
	}
}

func TestGetBoundsMethods(t *testing.T) {
	reg := providers.NewRegistry(providers.RegistryOptions{MaxMethods: 2})
	if err := reg.Configure([]txswitch.ProviderConfig{conf("a", txswitch.BreakerConfig{})}); err != nil {
		t.Fatal(err)
	}
	for i, m := range []string{"card", "ideal", "card", "klarna"} {
		_, ok := reg.Get("a", m)
		if want := m != "klarna"; ok != want {
			t.Fatalf("Get #%d (%s) ok = %v, want %v", i, m, ok, want)
		}
	}
	if _, ok := reg.Get("nope", "card"); ok {
		t.Fatal("unknown provider found")
	}
	if s := reg.State("nope", "card"); s != txswitch.BreakerClosed {
		t.Fatalf("unknown provider state %s", s)
	}
}

// TestRegistryWithSim is the end-to-end path: real HTTP adapter, real
// breaker, simulated PSP. While the PSP fails and the breaker is open, a
// status inquiry still resolves an earlier payment.
func TestRegistryWithSim(t *testing.T) {
	s := startSim(t)
	log := &changeLog{}
	reg := providers.NewRegistry(providers.RegistryOptions{Logger: zaptest.NewLogger(t), OnStateChange: log.add})
	cfg := txswitch.ProviderConfig{Name: "sim", BaseURL: s.URL(), TimeoutMillis: 2000,
		Breaker: txswitch.BreakerConfig{ConsecutiveFailures: 2, OpenMillis: 50}}
	if err := reg.Configure([]txswitch.ProviderConfig{cfg}); err != nil {
		t.Fatal(err)
	}
	p, _ := reg.Get("sim", "card")
	ctx := context.Background()
	if res, err := p.Do(ctx, authorize("pay_1-1", "pay_1", 1000)); err != nil || res.Outcome != txswitch.OutcomeApproved {
		t.Fatalf("authorize: %+v %v", res, err)
	}
	if err := s.SetBehaviour(sim.Behaviour{Methods: map[string]sim.MethodBehaviour{"card": {Unavailable: true}}}); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		_, err := p.Do(ctx, authorize("pay_2-1", "pay_2", 1000))
		if pe := providerError(t, err); pe.Code != "http_503" {
			t.Fatalf("call %d: %v", i, pe)
		}
	}
	_, err := p.Do(ctx, authorize("pay_2-1", "pay_2", 1000))
	if pe := providerError(t, err); pe.Code != providers.CodeBreakerOpen {
		t.Fatalf("after tripping: %v", pe)
	}
	if refused := s.Stats().RefusedUnavailable; refused != 2 {
		t.Fatalf("PSP saw %d refused calls, want 2 (the breaker must stop the third)", refused)
	}
	res, err := p.Do(ctx, txswitch.ProviderRequest{IdempotencyKey: "pay_1-1", Op: txswitch.OpStatus})
	if err != nil || res.Outcome != txswitch.OutcomeApproved {
		t.Fatalf("status while open: %+v %v", res, err)
	}

	// Reconfiguring with the same breaker settings keeps it open.
	cfg.TimeoutMillis = 3000
	if err := reg.Configure([]txswitch.ProviderConfig{cfg}); err != nil {
		t.Fatal(err)
	}
	if st := reg.State("sim", "card"); st != txswitch.BreakerOpen && st != txswitch.BreakerHalfOpen {
		t.Fatalf("after reconfigure: %s", st)
	}

	s.ResetBehaviour()
	waitFor(t, "half-open", func() bool { return reg.State("sim", "card") == txswitch.BreakerHalfOpen })
	p, _ = reg.Get("sim", "card")
	if res, err := p.Do(ctx, authorize("pay_2-1", "pay_2", 1000)); err != nil || res.Outcome != txswitch.OutcomeApproved {
		t.Fatalf("probe: %+v %v", res, err)
	}
	if st := reg.State("sim", "card"); st != txswitch.BreakerClosed {
		t.Fatalf("after probe: %s", st)
	}
	if got := s.Totals("pay_2"); got.Charges != 1 {
		t.Fatalf("pay_2 charged %d times", got.Charges)
	}
	if got := log.transitions(); len(got) != 3 || got[0] != "sim/card:closed>open" || got[2] != "sim/card:half_open>closed" {
		t.Fatalf("transitions = %v", got)
	}
}

// A method never used on a provider takes the provider's health: open
// while every breaker the provider has is open, closed as soon as one is
// not (half-open included: the method may then be tried), and its own
// once it was called.
func TestUntriedMethodTakesTheProvidersHealth(t *testing.T) {
	log := &changeLog{}
	reg, fakes := newFakeRegistry(t, log, "a", "b")
	cfg := txswitch.BreakerConfig{ConsecutiveFailures: 1, OpenMillis: 60_000}
	if err := reg.Configure([]txswitch.ProviderConfig{conf("a", cfg), conf("b", txswitch.BreakerConfig{ConsecutiveFailures: 1, OpenMillis: 30})}); err != nil {
		t.Fatal(err)
	}
	if s := reg.State("a", "sepa"); s != txswitch.BreakerClosed {
		t.Fatalf("a provider never called: sepa %s", s)
	}
	fakes["a"].set(txswitch.ProviderResult{}, failure(true, "connection_refused"))
	_, _ = call(t, reg, "a", "card", txswitch.OpAuthorize)
	if s := reg.State("a", "sepa"); s != txswitch.BreakerOpen {
		t.Fatalf("every breaker of a open: untried sepa %s", s)
	}
	if _, ok := reg.Views()["a"]["sepa"]; ok {
		t.Fatal("reading the state made a breaker for sepa")
	}
	if s := reg.State("b", "sepa"); s != txswitch.BreakerClosed {
		t.Fatalf("b is not down: sepa %s", s)
	}
	// One method still working on a: the provider is up.
	fakes["a"].set(txswitch.ProviderResult{Outcome: txswitch.OutcomeApproved}, nil)
	if _, err := call(t, reg, "a", "ideal", txswitch.OpAuthorize); err != nil {
		t.Fatal(err)
	}
	if s := reg.State("a", "sepa"); s != txswitch.BreakerClosed {
		t.Fatalf("ideal works on a: untried sepa %s", s)
	}
	// Its only breaker going half-open lets the untried method be tried.
	fakes["b"].set(txswitch.ProviderResult{}, failure(true, "connection_refused"))
	_, _ = call(t, reg, "b", "card", txswitch.OpAuthorize)
	if s := reg.State("b", "sepa"); s != txswitch.BreakerOpen {
		t.Fatalf("every breaker of b open: untried sepa %s", s)
	}
	waitFor(t, "b's card breaker half-open", func() bool { return reg.State("b", "card") == txswitch.BreakerHalfOpen })
	if s := reg.State("b", "sepa"); s != txswitch.BreakerClosed {
		t.Fatalf("b's card half-open: untried sepa %s", s)
	}
}

// A node that stops leading forgets its breakers: it no longer routes
// payments, and an open breaker it kept would go on reporting the provider
// down while the new leader routes through it again. Every configured
// provider stays, with no breaker until its next use, which starts closed;
// a call in flight through a forgotten breaker still completes.
func TestForgetBreakers(t *testing.T) {
	log := &changeLog{}
	reg, fakes := newFakeRegistry(t, log, "a", "b")
	if err := reg.Configure([]txswitch.ProviderConfig{conf("a", txswitch.BreakerConfig{ConsecutiveFailures: 1, OpenMillis: 60_000}), conf("b", txswitch.BreakerConfig{})}); err != nil {
		t.Fatal(err)
	}
	fakes["a"].set(txswitch.ProviderResult{}, failure(true, "http_503"))
	_, _ = call(t, reg, "a", "card", txswitch.OpAuthorize)
	_, _ = call(t, reg, "b", "card", txswitch.OpAuthorize)
	if s := reg.State("a", "card"); s != txswitch.BreakerOpen {
		t.Fatalf("a/card after the failure: %s", s)
	}
	inFlight, ok := reg.Get("b", "ideal")
	if !ok {
		t.Fatal("provider b missing")
	}
	if n := reg.ForgetBreakers(); n != 3 {
		t.Fatalf("ForgetBreakers dropped %d breakers, want 3", n)
	}
	if v := reg.Views(); len(v) != 2 || len(v["a"]) != 0 || len(v["b"]) != 0 {
		t.Fatalf("Views() after ForgetBreakers = %v, want both providers without breakers", v)
	}
	if _, err := inFlight.Do(context.Background(), txswitch.ProviderRequest{IdempotencyKey: "k2", Op: txswitch.OpAuthorize, PaymentID: "p2", Method: "ideal"}); err != nil {
		t.Fatalf("a call through a forgotten breaker: %v", err)
	}
	fakes["a"].set(txswitch.ProviderResult{Outcome: txswitch.OutcomeApproved}, nil)
	if _, err := call(t, reg, "a", "card", txswitch.OpAuthorize); err != nil {
		t.Fatalf("a/card after ForgetBreakers: %v (want a closed breaker letting it through)", err)
	}
	if v := reg.Views()["a"]["card"]; v != (providers.BreakerView{State: txswitch.BreakerClosed}) {
		t.Fatalf("a/card after ForgetBreakers: %+v, want a new closed breaker", v)
	}
}
