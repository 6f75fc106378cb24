package scenarios

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/txswitch/txswitch/chaos"
	txswitch "github.com/txswitch/txswitch/switch"
)

// checkout appends a GET methods answer of flow "methods_x" for ord_1.
func checkout(ev *Evidence, seq, ms int, body string) {
	ev.Calls = append(ev.Calls, Call{Seq: seq, Flow: "methods_x", Op: "get_methods", Method: "GET", Target: "ord_1", Status: 200,
		Body: json.RawMessage(body), Start: at(ms), End: at(ms + 20)})
}

// idealPayment replaces the healthy evidence's payment by an iDEAL one
// carrying surcharge (nil: none).
func idealPayment(t *testing.T, ev *Evidence, surcharge *txswitch.Money) {
	p := payment("pay_1", "ord_1", txswitch.PaymentCaptured, "psp_b", 1000, 1000, 0)
	p.Method, p.Surcharge = "ideal", surcharge
	ev.Calls[1].Body, ev.Calls[1].Flow = js(t, p), "methods_x"
	ev.Runs[0].Flow = "methods_x"
	for n := range ev.Final {
		ev.Final[n]["ord_1"] = order("ord_1", p)
	}
}

func TestBreadthExpectations(t *testing.T) {
	fault := []FaultRun{{Spec: Fault{Kind: "config_ideal_surcharge"}, Events: []chaos.Event{
		{Action: "inject", At: at(1000)}, {Action: "undo", At: at(3000)}}}}
	nl := `{"methods":[{"method":"card"},{"method":"ideal","surcharge":{"value":29,"currency":"EUR"}}],"excluded":[{"method":"bancontact","reason":"country"}]}`
	nlBancontact := `{"methods":[{"method":"card"},{"method":"ideal"},{"method":"bancontact"}]}`
	nlWrongReason := `{"methods":[{"method":"card"},{"method":"ideal"}],"excluded":[{"method":"bancontact","reason":"currency"}]}`
	nlNoIDEAL := `{"methods":[{"method":"card"}],"excluded":[{"method":"ideal","reason":"all_providers_down"},{"method":"bancontact","reason":"country"}]}`
	want := func(window string, after time.Duration) Expect {
		return Expect{MethodsOffered: &ExpectMethods{Flow: "methods_x", Offered: []string{"card", "ideal"},
			Absent: map[string]string{"bancontact": "country"}, Window: window, After: Duration(after)}}
	}
	surcharge := Expect{Surcharge: &ExpectSurcharge{Flow: "methods_x", Method: "ideal", Fixed: 29, Window: "whole"}}
	raised := Expect{Surcharge: &ExpectSurcharge{Flow: "methods_x", Method: "ideal", Fixed: 50, BasisPoints: 150, Window: "whole"}}
	cases := []struct {
		name string
		x    Expect
		mod  func(ev *Evidence)
		pass bool
	}{
		{"order status", Expect{OrderStatus: &ExpectFinal{Flow: "card_pay", Statuses: []string{"paid"}}}, func(ev *Evidence) {}, true},
		{"wrong order status", Expect{OrderStatus: &ExpectFinal{Flow: "card_pay", Statuses: []string{"failed"}}}, func(ev *Evidence) {}, false},
		{"no order of the flow", Expect{OrderStatus: &ExpectFinal{Flow: "cancel", Statuses: []string{"paid"}}}, func(ev *Evidence) {}, false},
		{"methods as configured", want("whole", 0), func(ev *Evidence) { checkout(ev, 10, 100, nl) }, true},
		{"a method offered in the wrong country", want("whole", 0), func(ev *Evidence) { checkout(ev, 10, 100, nlBancontact) }, false},
		{"excluded for the wrong reason", want("whole", 0), func(ev *Evidence) { checkout(ev, 10, 100, nlWrongReason) }, false},
		{"a method missing", want("whole", 0), func(ev *Evidence) { checkout(ev, 10, 100, nlNoIDEAL) }, false},
		{"no checkout to judge", want("whole", 0), func(ev *Evidence) {}, false},
		{"missing during the fault only", want("during_faults", 0), func(ev *Evidence) {
			checkout(ev, 10, 100, nlNoIDEAL)
			checkout(ev, 11, 1500, nl)
		}, true},
		{"back after the fault", want("after_faults", time.Second), func(ev *Evidence) {
			checkout(ev, 10, 1500, nlNoIDEAL)
			checkout(ev, 11, 4100, nl)
		}, true},
		{"still missing after the fault", want("after_faults", time.Second), func(ev *Evidence) {
			checkout(ev, 10, 4100, nlNoIDEAL)
		}, false},
		{"surcharge charged and offered", surcharge, func(ev *Evidence) {
			idealPayment(t, ev, &txswitch.Money{Value: 29, Currency: "EUR"})
			checkout(ev, 10, 100, nl)
		}, true},
		{"surcharge missing on the payment", surcharge, func(ev *Evidence) { idealPayment(t, ev, nil) }, false},
		{"surcharge offered wrongly", raised, func(ev *Evidence) {
			idealPayment(t, ev, &txswitch.Money{Value: 65, Currency: "EUR"}) // 50 + 1.5% of 1000
			checkout(ev, 10, 100, nl)
		}, false},
		{"raised surcharge", raised, func(ev *Evidence) { idealPayment(t, ev, &txswitch.Money{Value: 65, Currency: "EUR"}) }, true},
		{"no payment of the method", surcharge, func(ev *Evidence) {}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ev := healthy(t)
			ev.Faults = fault
			tc.mod(ev)
			r := tc.x.check(ev)
			if r.Passed != tc.pass {
				t.Fatalf("%s: passed=%v, want %v (%s %v)", tc.x.name(), r.Passed, tc.pass, r.Note, r.Violations)
			}
		})
	}
}

func TestBreadthExpectationsValidate(t *testing.T) {
	base := func() *Scenario {
		return &Scenario{Name: "x", Tags: []string{"regression"},
			Traffic: Traffic{Rate: 1, Duration: Duration(time.Second), Mix: map[string]float64{"methods_nl_eur_online": 1}}}
	}
	cases := []struct {
		name string
		x    Expect
		err  string
	}{
		{"unknown order status", Expect{OrderStatus: &ExpectFinal{Flow: "card_pay", Statuses: []string{"captured"}}}, "unknown order status"},
		{"flow not in the mix", Expect{MethodsOffered: &ExpectMethods{Flow: "card_pay", Offered: []string{"card"}}}, "not in the mix"},
		{"both offered and absent", Expect{MethodsOffered: &ExpectMethods{Flow: "methods_nl_eur_online", Offered: []string{"card"},
			Absent: map[string]string{"card": ""}}}, "both"},
		{"unknown reason", Expect{MethodsOffered: &ExpectMethods{Flow: "methods_nl_eur_online", Absent: map[string]string{"ideal": "moon"}}}, "reason"},
		{"after_faults without faults", Expect{MethodsOffered: &ExpectMethods{Flow: "methods_nl_eur_online", Offered: []string{"card"},
			Window: "after_faults"}}, "without faults"},
		{"negative surcharge", Expect{Surcharge: &ExpectSurcharge{Flow: "card_pay", Method: "card", Fixed: -1}}, "non-negative"},
		{"latency without p99", Expect{Latency: &ExpectLatency{Op: "create_payment"}}, "p99 is required"},
		{"latency max below p99", Expect{Latency: &ExpectLatency{P99: Duration(time.Second), Max: Duration(time.Millisecond)}}, "below p99"},
		{"latency of an unknown op", Expect{Latency: &ExpectLatency{Op: "pay", P99: Duration(time.Second)}}, "unknown op"},
		{"latency during faults without faults", Expect{Latency: &ExpectLatency{P99: Duration(time.Second), Window: "during_faults"}}, "without faults"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := base()
			s.Expect = []Expect{tc.x}
			err := s.validate()
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("validate: %v, want an error with %q", err, tc.err)
			}
		})
	}
	s := base()
	s.Expect = []Expect{{MethodsOffered: &ExpectMethods{Flow: "methods_nl_eur_online", Offered: []string{"card"}}}}
	if err := s.validate(); err != nil {
		t.Fatalf("a valid methods_offered: %v", err)
	}
}

// The surcharge check works the fee out itself (not with the switch's
// txswitch.Surcharge): the fixed part of the currency plus basis points,
// rounded half up.
func TestExpectSurchargeWant(t *testing.T) {
	byCur := ExpectSurcharge{FixedByCurrency: map[string]int64{"EUR": 25, "SEK": 300}, BasisPoints: 150}
	flat := ExpectSurcharge{Fixed: 29}
	for _, tc := range []struct {
		x      ExpectSurcharge
		amount txswitch.Money
		want   int64
	}{
		{byCur, txswitch.Money{Value: 10_000, Currency: "EUR"}, 25 + 150},
		{byCur, txswitch.Money{Value: 69_291, Currency: "SEK"}, 300 + 1_039}, // 1039.365
		{byCur, txswitch.Money{Value: 4_998, Currency: "USD"}, 75},           // 74.97: none fixed
		{byCur, txswitch.Money{Value: 100, Currency: "EUR"}, 25 + 2},         // 1.5 rounds up
		{flat, txswitch.Money{Value: 4_998, Currency: "EUR"}, 29},
	} {
		if got := tc.x.want(tc.amount); got != (txswitch.Money{Value: tc.want, Currency: tc.amount.Currency}) {
			t.Errorf("%+v of %v: %v, want %d", tc.x, tc.amount, got, tc.want)
		}
	}
}
