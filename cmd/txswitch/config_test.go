package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/txswitch/txswitch/cmd/cluster"
	txswitch "github.com/txswitch/txswitch/switch"
)

// shippedConfig is the default routing configuration with one merchant.
func shippedConfig() txswitch.RoutingConfig {
	return txswitch.DefaultConfig([]txswitch.MerchantConfig{{ID: "mer_1", Name: "Shop", APIKeyHashes: []string{txswitch.HashAPIKey("sk_1")}}},
		map[string]string{"psp_a": "http://127.0.0.1:9001", "psp_b": "http://127.0.0.1:9002", "psp_c": "http://127.0.0.1:9003"})
}

func writeConfig(t *testing.T, v any) string {
	t.Helper()
	var b []byte
	switch v := v.(type) {
	case string:
		b = []byte(v)
	default:
		var err error
		if b, err = json.MarshalIndent(v, "", "  "); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(t.TempDir(), "routing.json")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigCheck(t *testing.T) {
	good := shippedConfig()
	badRoute := shippedConfig()
	badRoute.Methods[1].Routes[0].Provider = "psp_nowhere"
	// Klarna's window as one limit over all its markets' currencies (the
	// shipped configuration before 2026-12-02): PUT refuses it, so does
	// the check.
	oneWindow := shippedConfig()
	klarna := &oneWindow.Methods[4]
	klarna.MinAmount, klarna.MaxAmount = 100, 1_000_000
	for i := range klarna.Routes {
		klarna.Routes[i].MinAmount, klarna.Routes[i].MaxAmount = 0, 0
	}
	tests := []struct {
		name    string
		config  any
		wantErr string // "" = valid
	}{
		{"the shipped configuration", good, ""},
		{"a route to an unknown provider", badRoute, "methods[1].routes[0].provider"},
		{"an amount limit over several currencies", oneWindow, "(at methods[4].currencies)"},
		{"an unknown field (a typo)", `{"merchants": [], "methods": [], "providers": [], "fraud_rule": []}`, `unknown field "fraud_rule"`},
		{"two JSON values", `{"merchants": []} {}`, "more than one JSON value"},
		{"not JSON", `merchants: []`, "invalid character"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			err := configCheck(&out, []string{"--file", writeConfig(t, tt.config)})
			if tt.wantErr == "" {
				if err != nil || !strings.Contains(out.String(), "valid: 1 merchants, 6 methods (6 enabled), 3 providers") {
					t.Fatalf("err %v, out %q", err, out.String())
				}
				return
			}
			if !errors.Is(err, errInvalidConfig) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err %v, want an invalid configuration mentioning %q", err, tt.wantErr)
			}
		})
	}
	if err := configCheck(&bytes.Buffer{}, []string{"--file", filepath.Join(t.TempDir(), "missing.json")}); err == nil || errors.Is(err, errInvalidConfig) {
		t.Fatalf("a missing file: %v, want a read error", err)
	}
}

// methodLine picks the "offered"/"not offered" lines of one method.
func methodLine(out, method string) string {
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) >= 2 && f[0] == "offered" && f[1] == method:
			return l
		case len(f) >= 3 && f[0] == "not" && f[2] == method:
			return l
		}
	}
	return ""
}

func TestConfigMethods(t *testing.T) {
	file := writeConfig(t, shippedConfig())
	tests := []struct {
		name, country, amount, channel string
		// method -> a substring of its line; only an offered one names
		// its providers ("via ...").
		want map[string]string
	}{
		{"a Dutch shopper gets iDEAL, not Bancontact", "NL", "49.98", "online", map[string]string{
			"ideal": "via ", "bancontact": "offered in BE only", "card": "via psp_a"}},
		{"a Belgian shopper gets Bancontact", "BE", "49.98", "online", map[string]string{
			"bancontact": "via ", "ideal": "country"}},
		{"iDEAL's fee takes EUR 50,000.00 over its ceiling", "NL", "50000.00", "online", map[string]string{
			"ideal": "the payment would be EUR 50000.29"}},
		{"in store, no redirect methods", "NL", "49.98", "pos", map[string]string{
			"ideal": "channel", "card": "via "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			err := configMethods(&out, []string{"--file", file, "--country", tt.country, "--currency", "EUR", "--amount", tt.amount, "--channel", tt.channel})
			if err != nil {
				t.Fatal(err)
			}
			for m, want := range tt.want {
				if l := methodLine(out.String(), m); !strings.Contains(l, want) {
					t.Errorf("%s: line %q lacks %q\n%s", m, l, want, out.String())
				}
			}
		})
	}
	var out bytes.Buffer
	if err := configMethods(&out, []string{"--file", file, "--country", "NL,be", "--amount", "10"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "NL, EUR 10.00, online:") || !strings.Contains(out.String(), "BE, EUR 10.00, online:") {
		t.Fatalf("one section per country expected:\n%s", out.String())
	}
	for _, args := range [][]string{
		{"--file", file, "--country", "XX", "--amount", "10"},
		{"--file", file, "--country", "NL", "--amount", "10.001"},
		{"--file", file, "--country", "NL", "--amount", "0"},
		{"--file", file, "--country", "NL", "--amount", "10", "--channel", "phone"},
	} {
		if err := configMethods(&bytes.Buffer{}, args); err == nil {
			t.Errorf("%v: accepted", args)
		}
	}
}

// TestConfigGetAndPut round-trips the live configuration of a real node:
// get, edit, put; a put based on an older version is refused by the node.
func TestConfigGetAndPut(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node")
	}
	l, err := cluster.StartLocal(cluster.LocalConfig{Nodes: 1, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	addr, token := l.APIAddrs()[0], l.AdminToken
	addr = strings.TrimPrefix(addr, "http://")

	var got bytes.Buffer
	if err := configGet(&got, []string{"--addr", addr, "--admin-token", token}); err != nil {
		t.Fatal(err)
	}
	cfg, err := decodeConfig(got.Bytes(), "get")
	if err != nil {
		t.Fatal(err)
	}
	base := cfg.Version
	for i := range cfg.Methods {
		if cfg.Methods[i].Name == "bancontact" {
			cfg.Methods[i].Enabled = false
		}
	}
	file := writeConfig(t, cfg)
	var out bytes.Buffer
	if err := configPut(&out, []string{"--addr", addr, "--admin-token", token, "--file", file}); err != nil {
		t.Fatal(err)
	}
	if want := "configuration version " + jsonNumber(base+1) + " is live"; !strings.Contains(out.String(), want) {
		t.Fatalf("put said %q, want %q", out.String(), want)
	}
	var methods bytes.Buffer
	if err := configMethods(&methods, []string{"--addr", addr, "--admin-token", token, "--country", "BE", "--amount", "20"}); err != nil {
		t.Fatal(err)
	}
	if l := methodLine(methods.String(), "bancontact"); !strings.Contains(l, "disabled") {
		t.Fatalf("the live configuration still offers Bancontact: %q", l)
	}
	// The same file again: its version is no longer the live one.
	if err := configPut(&bytes.Buffer{}, []string{"--addr", addr, "--admin-token", token, "--file", file}); err == nil || !strings.Contains(err.Error(), "409") {
		t.Fatalf("a put based on a replaced version: %v, want the node's 409", err)
	}
	if err := configGet(&bytes.Buffer{}, []string{"--addr", addr, "--admin-token", "wrong"}); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("a wrong admin token: %v, want the node's 401", err)
	}
}

func jsonNumber(v uint64) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// config example writes a file that config check (and so PUT) accepts,
// with the merchant's key as its hash and the providers' URLs as given; a
// key it makes up is told on the notes stream, never written to the file.
func TestConfigExample(t *testing.T) {
	var out, notes bytes.Buffer
	if err := configExample(&out, &notes, []string{"--merchant-key", "sk_live_1", "--merchant-id", "m_web", "--provider", "psp_b=http://10.0.0.9:9000"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := decodeConfig(out.Bytes(), "example")
	if err != nil {
		t.Fatalf("the example does not check: %v", err)
	}
	if e := cfg.CheckAmountCurrencies(); e != nil {
		t.Fatalf("the example names amounts without their currency: %s", e.Message)
	}
	if len(cfg.Merchants) != 1 || cfg.Merchants[0].ID != "m_web" || cfg.Merchants[0].APIKeyHashes[0] != txswitch.HashAPIKey("sk_live_1") {
		t.Fatalf("merchants = %+v", cfg.Merchants)
	}
	urls := map[string]string{}
	for _, p := range cfg.Providers {
		urls[p.Name] = p.BaseURL
	}
	if urls["psp_b"] != "http://10.0.0.9:9000" || !strings.HasSuffix(urls["psp_a"], ".invalid") {
		t.Fatalf("provider URLs = %v", urls)
	}
	if notes.Len() != 0 || strings.Contains(out.String(), "sk_live_1") {
		t.Fatalf("the given key leaked: notes %q", notes.String())
	}

	out.Reset()
	if err := configExample(&out, &notes, nil); err != nil {
		t.Fatal(err)
	}
	key := strings.Fields(strings.TrimPrefix(notes.String(), "merchant m_shop API key: "))[0]
	if cfg, err := decodeConfig(out.Bytes(), "example"); err != nil || cfg.Merchants[0].APIKeyHashes[0] != txswitch.HashAPIKey(key) || strings.Contains(out.String(), key) {
		t.Fatalf("made-up key %q: %v %+v", key, err, cfg.Merchants)
	}
	for _, bad := range []string{"psp_z=http://x", "psp_a", "=http://x"} {
		if err := configExample(&out, &notes, []string{"--provider", bad}); err == nil {
			t.Fatalf("--provider %q accepted", bad)
		}
	}
}
