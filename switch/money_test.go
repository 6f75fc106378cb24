package txswitch

import (
	"errors"
	"math"
	"strings"
	"testing"
)

func TestValidateMoney(t *testing.T) {
	tests := []struct {
		name      string
		m         Money
		field     string
		wantCode  string
		wantField string
	}{
		{"ok EUR", Money{4998, "EUR"}, "amount", "", ""},
		{"ok JPY", Money{500, "JPY"}, "amount", "", ""},
		{"ok at cap", Money{MaxMoneyValue, "KWD"}, "amount", "", ""},
		{"unknown currency", Money{100, "XYZ"}, "amount", CodeInvalidCurrency, "amount.currency"},
		{"lower case currency", Money{100, "eur"}, "amount", CodeInvalidCurrency, "amount.currency"},
		{"missing currency", Money{100, ""}, "refund.amount", CodeInvalidCurrency, "refund.amount.currency"},
		{"zero", Money{0, "EUR"}, "amount", CodeInvalidAmount, "amount.value"},
		{"negative", Money{-1, "EUR"}, "amount", CodeInvalidAmount, "amount.value"},
		{"above cap", Money{MaxMoneyValue + 1, "EUR"}, "amount", CodeAmountTooLarge, "amount.value"},
		{"max int64", Money{math.MaxInt64, "EUR"}, "", CodeAmountTooLarge, "value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateMoney(tt.m, tt.field)
			if tt.wantCode == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("want %s, got nil", tt.wantCode)
			}
			if err.Code != tt.wantCode || err.Field != tt.wantField || err.Status != KindInvalid || err.Message == "" {
				t.Errorf("got %+v, want code %s field %s status 400", err, tt.wantCode, tt.wantField)
			}
		})
	}
}

func TestAddSubMoney(t *testing.T) {
	eur := func(v int64) Money { return Money{v, "EUR"} }
	tests := []struct {
		name     string
		a, b     Money
		sum      Money
		diff     Money
		wantCode string // same for add and sub
	}{
		{"simple", eur(1000), eur(250), eur(1250), eur(750), ""},
		{"negative difference", eur(100), eur(250), eur(350), eur(-150), ""},
		{"zero value adopts currency", Money{}, eur(5), eur(5), eur(-5), ""},
		{"zero value on the right", eur(5), Money{}, eur(5), eur(5), ""},
		{"both zero values", Money{}, Money{}, Money{}, Money{}, ""},
		{"currency mismatch", eur(1), Money{1, "USD"}, Money{}, Money{}, CodeCurrencyMismatch},
		{"non-zero without currency", eur(1), Money{Value: 1}, Money{}, Money{}, CodeCurrencyMismatch},
		{"at cap", eur(MaxMoneyValue - 1), eur(1), eur(MaxMoneyValue), eur(MaxMoneyValue - 2), ""},
		{"operand beyond cap", eur(math.MaxInt64), eur(1), Money{}, Money{}, CodeAmountTooLarge},
		{"operand min int64", eur(math.MinInt64), eur(1), Money{}, Money{}, CodeAmountTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sum, err := AddMoney(tt.a, tt.b)
			checkMoneyOp(t, "AddMoney", sum, err, tt.sum, tt.wantCode)
			diff, err := SubMoney(tt.a, tt.b)
			checkMoneyOp(t, "SubMoney", diff, err, tt.diff, tt.wantCode)
		})
	}
}

func TestAddSubMoneyResultBeyondCap(t *testing.T) {
	if _, err := AddMoney(Money{MaxMoneyValue, "EUR"}, Money{1, "EUR"}); err == nil || err.Code != CodeAmountTooLarge {
		t.Errorf("AddMoney past the cap: got %v, want %s", err, CodeAmountTooLarge)
	}
	if _, err := SubMoney(Money{-MaxMoneyValue, "EUR"}, Money{1, "EUR"}); err == nil || err.Code != CodeAmountTooLarge {
		t.Errorf("SubMoney past the cap: got %v, want %s", err, CodeAmountTooLarge)
	}
}

func checkMoneyOp(t *testing.T, op string, got Money, err *Error, want Money, wantCode string) {
	t.Helper()
	if wantCode != "" {
		if err == nil || err.Code != wantCode || err.Status != KindUnprocessable {
			t.Errorf("%s: got %v, %v; want error %s", op, got, err, wantCode)
		}
		return
	}
	if err != nil || got != want {
		t.Errorf("%s: got %v, %v; want %v", op, got, err, want)
	}
}

func TestFormatMoney(t *testing.T) {
	tests := []struct {
		m    Money
		want string
	}{
		{Money{4998, "EUR"}, "EUR 49.98"},
		{Money{5, "EUR"}, "EUR 0.05"},
		{Money{0, "EUR"}, "EUR 0.00"},
		{Money{-5, "EUR"}, "EUR -0.05"},
		{Money{-4998, "EUR"}, "EUR -49.98"},
		{Money{500, "JPY"}, "JPY 500"},
		{Money{1250, "KWD"}, "KWD 1.250"},
		{Money{1, "BHD"}, "BHD 0.001"},
		{Money{12345, "CLF"}, "CLF 1.2345"},
		{Money{MaxMoneyValue, "EUR"}, "EUR 10000000000000.00"},
		{Money{math.MinInt64, "EUR"}, "EUR -92233720368547758.08"},
		{Money{math.MaxInt64, "JPY"}, "JPY 9223372036854775807"},
		{Money{4998, "XYZ"}, "XYZ 4998"},
		{Money{4998, ""}, "??? 4998"},
	}
	for _, tt := range tests {
		if got := FormatMoney(tt.m); got != tt.want {
			t.Errorf("FormatMoney(%+v) = %q, want %q", tt.m, got, tt.want)
		}
	}
}

func TestParseMajorAmount(t *testing.T) {
	tests := []struct {
		s, cur   string
		want     int64
		wantCode string
	}{
		{"12.50", "EUR", 1250, ""},
		{"12.5", "EUR", 1250, ""},
		{"12", "EUR", 1200, ""},
		{"0.29", "EUR", 29, ""},
		{"0", "EUR", 0, ""},
		{"007.00", "EUR", 700, ""},
		{"500", "JPY", 500, ""},
		{"1.250", "KWD", 1250, ""},
		{"1.25", "KWD", 1250, ""},
		{"10000000000000.00", "EUR", MaxMoneyValue, ""},
		{"1000000000000000", "JPY", MaxMoneyValue, ""},
		{"10000000000000.01", "EUR", 0, CodeInvalidAmount},
		{"99999999999999999999999", "JPY", 0, CodeInvalidAmount},
		{"12.505", "EUR", 0, CodeInvalidAmount},
		{"5.0", "JPY", 0, CodeInvalidAmount},
		{"1.2500", "KWD", 0, CodeInvalidAmount},
		{"-1.00", "EUR", 0, CodeInvalidAmount},
		{"+1.00", "EUR", 0, CodeInvalidAmount},
		{"1e3", "EUR", 0, CodeInvalidAmount},
		{" 1.00", "EUR", 0, CodeInvalidAmount},
		{"1.00 ", "EUR", 0, CodeInvalidAmount},
		{"1,00", "EUR", 0, CodeInvalidAmount},
		{"1,000.00", "EUR", 0, CodeInvalidAmount},
		{".50", "EUR", 0, CodeInvalidAmount},
		{"1.", "EUR", 0, CodeInvalidAmount},
		{"1..0", "EUR", 0, CodeInvalidAmount},
		{"", "EUR", 0, CodeInvalidAmount},
		{"٣", "EUR", 0, CodeInvalidAmount}, // non-ASCII digit
		{strings.Repeat("0", 40), "EUR", 0, CodeInvalidAmount},
		{"1.00", "eur", 0, CodeInvalidCurrency},
		{"1.00", "", 0, CodeInvalidCurrency},
	}
	for _, tt := range tests {
		got, err := ParseMajorAmount(tt.s, tt.cur)
		if tt.wantCode != "" {
			var de *Error
			if !errors.As(err, &de) || de.Code != tt.wantCode || de.Status != KindInvalid {
				t.Errorf("ParseMajorAmount(%q, %q) = %v, %v; want error %s", tt.s, tt.cur, got, err, tt.wantCode)
			}
			continue
		}
		if err != nil || got != (Money{tt.want, tt.cur}) {
			t.Errorf("ParseMajorAmount(%q, %q) = %v, %v; want %d", tt.s, tt.cur, got, err, tt.want)
		}
	}
}

// fuzzCurrencies cover every exponent the table has.
var fuzzCurrencies = []string{"EUR", "JPY", "KWD", "CLF", "ISK", "BHD"}

// FuzzParseMajorAmount checks that parsing never panics, that whatever
// parses is in range and formats back to an amount that parses to the same
// value, and that every in-range value survives FormatMoney -> parse.
func FuzzParseMajorAmount(f *testing.F) {
	for _, s := range []string{"12.50", "0", "1.250", "-1", "1e3", " 1", "1.", ".5", "10000000000000.00", "٣", "00000000000000000000001"} {
		f.Add(s, int64(1250), uint8(0))
	}
	f.Add("", int64(MaxMoneyValue), uint8(2))
	f.Add("", int64(math.MinInt64), uint8(3))
	f.Fuzz(func(t *testing.T, s string, v int64, ci uint8) {
		cur := fuzzCurrencies[int(ci)%len(fuzzCurrencies)]
		if m, err := ParseMajorAmount(s, cur); err == nil {
			if m.Value < 0 || m.Value > MaxMoneyValue || m.Currency != cur {
				t.Fatalf("ParseMajorAmount(%q) = %+v: out of range", s, m)
			}
			text, ok := strings.CutPrefix(FormatMoney(m), cur+" ")
			if !ok {
				t.Fatalf("FormatMoney(%+v) lacks the currency prefix", m)
			}
			back, err := ParseMajorAmount(text, cur)
			if err != nil || back != m {
				t.Fatalf("round trip %q -> %+v -> %q -> %+v, %v", s, m, text, back, err)
			}
		}
		if v < 0 {
			v = -(v + 1) // stays non-negative, including for MinInt64
		}
		m := Money{Value: v % (MaxMoneyValue + 1), Currency: cur}
		text, _ := strings.CutPrefix(FormatMoney(m), cur+" ")
		back, err := ParseMajorAmount(text, cur)
		if err != nil || back != m {
			t.Fatalf("round trip %+v -> %q -> %+v, %v", m, text, back, err)
		}
	})
}
