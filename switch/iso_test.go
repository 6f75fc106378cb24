package txswitch

import (
	"slices"
	"testing"
)

func TestCurrencyExponent(t *testing.T) {
	tests := []struct {
		code string
		exp  int
		ok   bool
	}{
		{"EUR", 2, true}, {"GBP", 2, true}, {"CHF", 2, true}, {"NOK", 2, true},
		{"SEK", 2, true}, {"DKK", 2, true}, {"PLN", 2, true}, {"CZK", 2, true},
		{"HUF", 2, true}, {"RON", 2, true}, {"BGN", 2, true}, {"USD", 2, true},
		{"CAD", 2, true}, {"AUD", 2, true}, {"NZD", 2, true}, {"CNY", 2, true},
		{"INR", 2, true}, {"BRL", 2, true}, {"MXN", 2, true}, {"ZAR", 2, true},
		{"SGD", 2, true}, {"HKD", 2, true},
		{"JPY", 0, true}, {"KRW", 0, true}, {"CLP", 0, true}, {"ISK", 0, true},
		{"VND", 0, true}, {"XOF", 0, true},
		{"BHD", 3, true}, {"KWD", 3, true}, {"JOD", 3, true}, {"OMR", 3, true},
		{"TND", 3, true}, {"IQD", 3, true}, {"LYD", 3, true},
		{"CLF", 4, true},
		{"eur", 0, false}, {"", 0, false}, {"EU", 0, false}, {"EURO", 0, false},
		{"XAU", 0, false}, // metal, minor unit N.A.
		{"DEM", 0, false}, // withdrawn
		{"HRK", 0, false}, // withdrawn when Croatia joined the euro
	}
	for _, tt := range tests {
		exp, ok := CurrencyExponent(tt.code)
		if exp != tt.exp || ok != tt.ok {
			t.Errorf("CurrencyExponent(%q) = %d, %v; want %d, %v", tt.code, exp, ok, tt.exp, tt.ok)
		}
	}
}

func TestKnownCurrenciesSortedAndConsistent(t *testing.T) {
	cs := KnownCurrencies()
	if len(cs) < 150 {
		t.Fatalf("only %d currencies; the active ISO 4217 list has about 170", len(cs))
	}
	if !slices.IsSorted(cs) {
		t.Error("KnownCurrencies is not sorted")
	}
	for _, c := range cs {
		exp, ok := CurrencyExponent(c)
		if !ok || exp < 0 || exp > 4 || len(c) != 3 {
			t.Errorf("currency %q: exponent %d, ok %v", c, exp, ok)
		}
	}
}

func TestValidCountry(t *testing.T) {
	tests := []struct {
		code string
		want bool
	}{
		{"NL", true}, {"BE", true}, {"DK", true}, {"GB", true}, {"US", true},
		{"AX", true}, {"BQ", true}, {"SS", true}, {"ZW", true}, {"AQ", true},
		{"nl", false}, {"UK", false}, {"EU", false}, {"XK", false},
		{"", false}, {"N", false}, {"NLD", false}, {"AN", false},
	}
	for _, tt := range tests {
		if got := ValidCountry(tt.code); got != tt.want {
			t.Errorf("ValidCountry(%q) = %v, want %v", tt.code, got, tt.want)
		}
	}
}

func TestKnownCountriesIsTheFullList(t *testing.T) {
	cs := KnownCountries()
	if len(cs) != 249 {
		t.Fatalf("got %d country codes, ISO 3166-1 assigns 249", len(cs))
	}
	if !slices.IsSorted(cs) {
		t.Error("KnownCountries is not sorted")
	}
	for _, c := range cs {
		if len(c) != 2 || c[0] < 'A' || c[0] > 'Z' || c[1] < 'A' || c[1] > 'Z' {
			t.Errorf("malformed code %q", c)
		}
	}
}

func TestEuroAreaAndSEPA(t *testing.T) {
	ea, sepa := EuroArea(), SEPACountries()
	if len(ea) != 21 {
		t.Errorf("euro area has %d members, want 21", len(ea))
	}
	for name, list := range map[string][]string{"EuroArea": ea, "SEPACountries": sepa} {
		if !slices.IsSorted(list) {
			t.Errorf("%s is not sorted", name)
		}
		for i, c := range list {
			if !ValidCountry(c) {
				t.Errorf("%s: %q is not a country", name, c)
			}
			if slices.Contains(list[:i], c) {
				t.Errorf("%s: %q listed twice", name, c)
			}
		}
	}
	for _, c := range ea {
		if !slices.Contains(sepa, c) {
			t.Errorf("euro-area member %s missing from SEPA", c)
		}
	}
	for _, c := range []string{"NO", "CH", "GB", "IS", "LI", "MC"} {
		if !slices.Contains(sepa, c) {
			t.Errorf("SEPA country %s missing", c)
		}
	}
	// The lists are copies: changing one must not change the next call.
	ea[0], sepa[0] = "XX", "XX"
	if EuroArea()[0] == "XX" || SEPACountries()[0] == "XX" {
		t.Error("EuroArea/SEPACountries return shared slices")
	}
}
