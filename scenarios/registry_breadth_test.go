package scenarios

import (
	"encoding/json"
	"strings"
	"testing"

	txswitch "github.com/txswitch/txswitch/switch"
)

func shippedConfig() txswitch.RoutingConfig {
	return txswitch.DefaultConfig([]txswitch.MerchantConfig{{ID: "m", APIKeyHashes: []string{txswitch.HashAPIKey("k")}}},
		map[string]string{"psp_a": "http://127.0.0.1:1", "psp_b": "http://127.0.0.1:2", "psp_c": "http://127.0.0.1:3"})
}

// Every configuration change must change the shipped configuration (a
// change that is a no-op would make its scenario vacuous), keep it valid
// (the switch would refuse it with 400), and say so when its method is
// missing.
func TestConfigChanges(t *testing.T) {
	for name, c := range configChanges {
		t.Run(name, func(t *testing.T) {
			cfg := shippedConfig()
			before, _ := json.Marshal(cfg)
			if err := c.change(&cfg); err != nil {
				t.Fatalf("change: %v", err)
			}
			after, _ := json.Marshal(cfg)
			if string(before) == string(after) {
				t.Fatal("the change changed nothing")
			}
			if e := cfg.Validate(); e != nil {
				t.Fatalf("the changed configuration is invalid: %v", e)
			}
			if e := cfg.CheckAmountCurrencies(); e != nil {
				t.Fatalf("PUT would refuse the changed configuration: %v", e)
			}
			if _, ok := faultKinds["config_"+name]; !ok {
				t.Fatal("not registered as a fault kind")
			}
		})
	}
	empty := txswitch.RoutingConfig{}
	for _, name := range []string{"card_reroute", "ideal_disabled", "card_hold_all"} {
		if err := configChanges[name].change(&empty); err == nil || !strings.Contains(err.Error(), "no ") {
			t.Errorf("%s on an empty configuration: %v, want an error", name, err)
		}
	}
}

// The op-limited provider faults exist for every op they are documented
// for, and a scenario using one validates.
func TestOpFaultKinds(t *testing.T) {
	for _, k := range []string{"provider_unavailable_on_capture", "provider_unavailable_on_refund", "provider_unavailable_on_cancel",
		"provider_charge_then_timeout_on_capture", "provider_charge_then_timeout_on_refund", "provider_charge_then_timeout_on_cancel",
		"provider_malformed_on_capture", "provider_malformed_on_refund", "provider_hang_on_capture", "provider_hang_on_refund", "leader_transfer"} {
		if _, ok := faultKinds[k]; !ok {
			t.Errorf("fault kind %s is not registered", k)
		}
	}
	docs, err := Parse("x.yaml", []byte(`name: x
tags: [chaos]
traffic: {rate: 1, duration: 2s, mix: {capture_full: 1}}
faults:
  - {kind: provider_hang_on_capture, target: psp_a, at: 1s, latency: 1500ms}
expect:
  - timeline_event: {type: capture_in_doubt, flow: capture_full}
`))
	if err != nil || len(docs) != 1 {
		t.Fatalf("parse: %v (%d)", err, len(docs))
	}
	if _, err := Parse("x.yaml", []byte(`name: x
tags: [chaos]
traffic: {rate: 1, duration: 2s, mix: {capture_full: 1}}
faults:
  - {kind: provider_hang_on_capture, target: psp_a, at: 1s}
expect:
  - min_acked: {min: 1}
`)); err == nil || !strings.Contains(err.Error(), "latency") {
		t.Fatalf("a hang without its latency: %v, want an error", err)
	}
}
