package providers_test

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"

	"github.com/txswitch/txswitch/providers"
	txswitch "github.com/txswitch/txswitch/switch"
)

// TestProviderMetrics: every call is counted by its result (an outcome,
// or the error code that says whether it was sent and whether the payment
// is in doubt), calls that reached the provider are timed, and the
// breakers are read at scrape time.
func TestProviderMetrics(t *testing.T) {
	fake := &scripted{name: "a", res: txswitch.ProviderResult{Outcome: txswitch.OutcomeApproved}}
	promReg := prometheus.NewPedanticRegistry()
	reg := providers.NewRegistry(providers.RegistryOptions{
		Logger:      zaptest.NewLogger(t),
		NewProvider: func(txswitch.ProviderConfig) txswitch.Provider { return fake },
		Registerer:  promReg,
	})
	if err := reg.Configure([]txswitch.ProviderConfig{conf("a", txswitch.BreakerConfig{ConsecutiveFailures: 2, OpenMillis: 60_000})}); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		res txswitch.ProviderResult
		err error
		op  txswitch.ProviderOp
	}{
		{res: txswitch.ProviderResult{Outcome: txswitch.OutcomeApproved}, op: txswitch.OpAuthorize},
		{res: txswitch.ProviderResult{Outcome: txswitch.OutcomeApproved}, op: txswitch.OpAuthorize},
		{res: txswitch.ProviderResult{Outcome: txswitch.OutcomeDeclined, Code: "do_not_honor"}, op: txswitch.OpAuthorize},
		{res: txswitch.ProviderResult{Outcome: txswitch.OutcomeApproved}, op: txswitch.OpStatus},
		{err: failure(false, "timeout"), op: txswitch.OpAuthorize},
		{err: failure(true, "connection_refused"), op: txswitch.OpAuthorize}, // the second failure opens the breaker
		{op: txswitch.OpAuthorize}, // refused by the open breaker: never sent
		{res: txswitch.ProviderResult{Outcome: txswitch.OutcomeApproved}, op: txswitch.OpStatus}, // inquiries pass an open breaker
	}
	for _, s := range steps {
		if s.res.Outcome != "" || s.err != nil {
			fake.set(s.res, s.err)
		}
		_, _ = call(t, reg, "a", "card", s.op)
	}
	if got := fake.calls.Load(); got != 7 {
		t.Fatalf("%d calls reached the provider, want 7 (the breaker refused one)", got)
	}
	want := `
# HELP txswitch_provider_breaker_state Breaker of a provider for a payment method: 0 closed, 1 half-open (probing), 2 open (the method's calls skip this provider).
# TYPE txswitch_provider_breaker_state gauge
txswitch_provider_breaker_state{method="card",provider="a"} 2
# HELP txswitch_provider_breaker_transitions_total Transitions of a provider's breaker for a payment method since the node started (or last stopped leading, or the provider's breaker settings changed): a count that moves fast is a flapping provider.
# TYPE txswitch_provider_breaker_transitions_total counter
txswitch_provider_breaker_transitions_total{method="card",provider="a"} 1
`
	if err := testutil.GatherAndCompare(promReg, strings.NewReader(want), "txswitch_provider_breaker_state", "txswitch_provider_breaker_transitions_total"); err != nil {
		t.Error(err)
	}
	calls := map[string]float64{}
	mfs, err := promReg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var timed uint64
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			switch mf.GetName() {
			case "txswitch_provider_calls_total":
				if labels["provider"] != "a" || labels["method"] != "card" {
					t.Errorf("labels %v", labels)
				}
				calls[labels["op"]+"/"+labels["result"]] = m.GetCounter().GetValue()
			case "txswitch_provider_call_duration_seconds":
				timed += m.GetHistogram().GetSampleCount()
			}
		}
	}
	wantCalls := map[string]float64{
		"authorize/approved": 2, "authorize/declined": 1, "status/approved": 2,
		"authorize/timeout": 1, "authorize/connection_refused": 1, "authorize/breaker_open": 1,
	}
	if len(calls) != len(wantCalls) {
		t.Errorf("calls %v, want %v", calls, wantCalls)
	}
	for k, v := range wantCalls {
		if calls[k] != v {
			t.Errorf("calls[%s] = %v, want %v (all: %v)", k, calls[k], v, calls)
		}
	}
	var inDoubt float64
	for _, mf := range mfs {
		if mf.GetName() == "txswitch_provider_in_doubt_total" {
			for _, m := range mf.GetMetric() {
				inDoubt += m.GetCounter().GetValue()
			}
		}
	}
	if inDoubt != 1 {
		t.Errorf("%v calls counted in doubt, want the timeout alone", inDoubt)
	}
	if timed != 7 {
		t.Errorf("%d calls timed, want the 7 that reached the provider", timed)
	}
}
