package api

import (
	"os"
	"slices"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	txswitch "github.com/txswitch/txswitch/switch"
)

// openAPIRaw parses the document loosely, for checks the typed drift test
// does not make (response codes and descriptions, enums).
func openAPIRaw(t *testing.T) map[string]any {
	t.Helper()
	b, err := os.ReadFile(openAPIPath)
	if err != nil {
		t.Fatalf("read %s: %v", openAPIPath, err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("parse %s: %v", openAPIPath, err)
	}
	return doc
}

// dig follows keys through nested maps.
func dig(t *testing.T, v any, keys ...string) any {
	t.Helper()
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok || m[k] == nil {
			t.Fatalf("openapi: no %q under %v", k, keys)
		}
		v = m[k]
	}
	return v
}

// PUT /v1/admin/config documents the answers the Service gives: invalid
// configurations (Validate, and one without merchants) are 400
// invalid_config, the proposer's refusals are 409 with their codes, and
// there is no 422 (admin writes do not replay by Idempotency-Key, and no
// configuration check answers 422).
func TestOpenAPIPutConfigResponses(t *testing.T) {
	doc := openAPIRaw(t)
	responses := dig(t, doc, "paths", "/v1/admin/config", "put", "responses").(map[string]any)
	var codes []string
	for c := range responses {
		codes = append(codes, c)
	}
	sort.Strings(codes)
	want := []string{"200", "400", "401", "404", "409", "413", "415", "503"}
	if !slices.Equal(codes, want) {
		t.Errorf("PUT /v1/admin/config documents %v, the server answers %v", codes, want)
	}
	for code, mentions := range map[string][]string{
		"400": {txswitch.CodeInvalidConfig, "merchants"},
		"409": {txswitch.CodeProviderHasOpenCalls, txswitch.CodeProviderEndpointHasOpenCalls, txswitch.CodeProviderHasPayments, txswitch.CodeConfigVersionConflict},
	} {
		r, ok := responses[code].(map[string]any)
		if !ok {
			continue
		}
		desc, _ := r["description"].(string)
		for _, m := range mentions {
			if !strings.Contains(desc, m) {
				t.Errorf("PUT /v1/admin/config %s does not mention %s: %q", code, m, desc)
			}
		}
	}
}

// Every reason a method is excluded for is in the document's enum.
func TestOpenAPIExclusionReasons(t *testing.T) {
	doc := openAPIRaw(t)
	raw := dig(t, doc, "components", "schemas", "MethodExclusion", "properties", "reason", "enum").([]any)
	var enum []string
	for _, v := range raw {
		enum = append(enum, v.(string))
	}
	for _, r := range []string{
		txswitch.ExclusionDisabled, txswitch.ExclusionCountry, txswitch.ExclusionCurrency, txswitch.ExclusionChannel,
		txswitch.ExclusionAmountBelowMin, txswitch.ExclusionAmountAboveMax, txswitch.ExclusionNoRoute,
		txswitch.ExclusionAllProvidersDown, txswitch.ExclusionOrderExpired, txswitch.ExclusionNothingToPay,
		txswitch.ExclusionPaymentInProgress,
	} {
		if !slices.Contains(enum, r) {
			t.Errorf("MethodExclusion.reason enum %v lacks %s", enum, r)
		}
	}
}
