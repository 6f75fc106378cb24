package txswitch

import (
	"fmt"
	"strconv"
	"strings"
)

// MaxMoneyValue is the largest amount, in minor units, the switch accepts
// for any single amount (10^15: ten trillion EUR, a quadrillion JPY). Keeping
// every amount this far below math.MaxInt64 (~9.2*10^18) means thousands of
// them can be summed, and a surcharge computed in basis points, without any
// risk of int64 overflow; AddMoney and SubMoney still check.
const MaxMoneyValue int64 = 1_000_000_000_000_000

// maxAmountText bounds the strings ParseMajorAmount looks at: a valid amount
// is at most 16 integer digits, a dot and 4 decimals.
const maxAmountText = 32

// Error codes for money problems (API.md error format).
const (
	CodeInvalidCurrency  = "invalid_currency"
	CodeInvalidAmount    = "invalid_amount"
	CodeAmountTooLarge   = "amount_too_large"
	CodeCurrencyMismatch = "currency_mismatch"
)

// ValidateMoney checks an amount given by a caller: a known ISO 4217
// currency, a value above zero and at most MaxMoneyValue. field is the JSON
// path of the amount ("amount", "lines[2].unit_amount"...); the error's
// field points at the bad part ("amount.currency").
func ValidateMoney(m Money, field string) *Error {
	if m == (Money{}) {
		// Absent (or {}): say so, rather than blame its currency.
		name := field
		if name == "" {
			name = "the amount"
		}
		return NewError(KindInvalid, CodeInvalidAmount, field,
			name+` is required: {"value": <integer minor units>, "currency": "<ISO 4217 code>"}`)
	}
	if _, ok := CurrencyExponent(m.Currency); !ok {
		msg := fmt.Sprintf("currency %q is not an ISO 4217 currency code (use upper case, e.g. EUR)", m.Currency)
		if m.Currency == "" {
			msg = "currency is required (an ISO 4217 code such as EUR)"
		}
		return NewError(KindInvalid, CodeInvalidCurrency, moneyField(field, "currency"), msg)
	}
	if m.Value <= 0 {
		return NewError(KindInvalid, CodeInvalidAmount, moneyField(field, "value"),
			fmt.Sprintf("amount must be greater than zero minor units, got %d", m.Value))
	}
	if m.Value > MaxMoneyValue {
		return NewError(KindInvalid, CodeAmountTooLarge, moneyField(field, "value"),
			fmt.Sprintf("amount %d exceeds the maximum of %d minor units", m.Value, MaxMoneyValue))
	}
	return nil
}

func moneyField(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

// AddMoney returns a+b. The currencies must match, except that the Go zero
// value Money{} (no currency, value 0) adopts the other's currency, so totals
// can start from Money{}. The result must stay within ±MaxMoneyValue: totals
// beyond it mean something upstream went wrong, and refusing keeps every
// later sum far from int64 overflow.
func AddMoney(a, b Money) (Money, *Error) {
	cur, err := commonCurrency(a, b)
	if err != nil {
		return Money{}, err
	}
	if !moneyInRange(a.Value) || !moneyInRange(b.Value) {
		return Money{}, overflowError(a, b, "+")
	}
	// Both operands are within ±10^15, so the sum cannot overflow int64.
	sum := a.Value + b.Value
	if !moneyInRange(sum) {
		return Money{}, overflowError(a, b, "+")
	}
	return Money{Value: sum, Currency: cur}, nil
}

// SubMoney returns a-b with the same currency and range rules as AddMoney.
// The result may be negative: callers comparing "captured - refunded"
// decide what a negative remainder means.
func SubMoney(a, b Money) (Money, *Error) {
	cur, err := commonCurrency(a, b)
	if err != nil {
		return Money{}, err
	}
	if !moneyInRange(a.Value) || !moneyInRange(b.Value) {
		return Money{}, overflowError(a, b, "-")
	}
	diff := a.Value - b.Value
	if !moneyInRange(diff) {
		return Money{}, overflowError(a, b, "-")
	}
	return Money{Value: diff, Currency: cur}, nil
}

func moneyInRange(v int64) bool { return v >= -MaxMoneyValue && v <= MaxMoneyValue }

func commonCurrency(a, b Money) (string, *Error) {
	switch {
	case a.Currency == b.Currency:
		return a.Currency, nil
	case a.Currency == "" && a.Value == 0:
		return b.Currency, nil
	case b.Currency == "" && b.Value == 0:
		return a.Currency, nil
	}
	return "", NewError(KindUnprocessable, CodeCurrencyMismatch, "",
		fmt.Sprintf("cannot combine %s with %s: currencies differ", FormatMoney(a), FormatMoney(b)))
}

func overflowError(a, b Money, op string) *Error {
	return NewError(KindUnprocessable, CodeAmountTooLarge, "",
		fmt.Sprintf("%s %s %s is outside the supported range of ±%d minor units",
			FormatMoney(a), op, FormatMoney(b), MaxMoneyValue))
}

// FormatMoney renders an amount for human messages: "EUR 49.98", "JPY 500",
// "KWD 1.250", "EUR -0.05". An unknown currency is shown in minor units
// ("XYZ 4998") rather than guessed. It is not a wire format: the API always
// sends integer minor units.
func FormatMoney(m Money) string {
	exp, ok := CurrencyExponent(m.Currency)
	if !ok {
		exp = 0
	}
	cur := m.Currency
	if cur == "" {
		cur = "???"
	}
	return cur + " " + formatMinor(m.Value, exp)
}

// formatMinor writes v minor units as a decimal with exp decimals. It works
// on the unsigned magnitude so math.MinInt64 formats correctly.
func formatMinor(v int64, exp int) string {
	neg := v < 0
	mag := uint64(v)
	if neg {
		mag = uint64(-(v + 1)) + 1
	}
	digits := strconv.FormatUint(mag, 10)
	if exp > 0 {
		if len(digits) <= exp {
			digits = strings.Repeat("0", exp-len(digits)+1) + digits
		}
		digits = digits[:len(digits)-exp] + "." + digits[len(digits)-exp:]
	}
	if neg {
		return "-" + digits
	}
	return digits
}

// ParseMajorAmount parses a decimal amount in major units ("12.50", "500",
// "1.250") into minor units of currency, exactly: no floating point, so
// "0.29" is 29 cents and not 28.999... It accepts at most the currency's
// number of decimals ("12.5" is 1250 EUR cents; "12.505" EUR and "5.0" JPY
// are errors), digits on both sides of the dot, and nothing else: no sign,
// exponent, thousands separator or whitespace. The value may be 0 (the caller
// decides whether zero is allowed) and at most MaxMoneyValue. Errors are
// *Error with code invalid_amount or invalid_currency.
func ParseMajorAmount(s string, currency string) (Money, error) {
	exp, ok := CurrencyExponent(currency)
	if !ok {
		return Money{}, NewError(KindInvalid, CodeInvalidCurrency, "currency",
			fmt.Sprintf("currency %q is not an ISO 4217 currency code", currency))
	}
	bad := func(why string) (Money, error) {
		shown := s
		if len(shown) > maxAmountText {
			shown = shown[:maxAmountText] + "..."
		}
		return Money{}, NewError(KindInvalid, CodeInvalidAmount, "amount",
			fmt.Sprintf("amount %q is not a valid %s amount: %s", shown, currency, why))
	}
	if len(s) > maxAmountText {
		return bad("too long")
	}
	intPart, frac, hasDot := strings.Cut(s, ".")
	if intPart == "" {
		return bad("expected digits before the decimal point")
	}
	if hasDot {
		if exp == 0 {
			return bad(currency + " has no minor unit, so no decimals are allowed")
		}
		if frac == "" {
			return bad("expected digits after the decimal point")
		}
		if len(frac) > exp {
			return bad(fmt.Sprintf("%s allows at most %d decimals", currency, exp))
		}
	}
	if !allASCIIDigits(intPart) || !allASCIIDigits(frac) {
		return bad("only digits and one decimal point are allowed")
	}
	// Build the minor-unit value with a bound check at every step: v stays
	// <= 10^15 before each multiplication, so v*10+9 never wraps.
	var v uint64
	for _, c := range intPart + frac + strings.Repeat("0", exp-len(frac)) {
		v = v*10 + uint64(c-'0')
		if v > uint64(MaxMoneyValue) {
			return bad(fmt.Sprintf("exceeds the maximum of %d minor units", MaxMoneyValue))
		}
	}
	return Money{Value: int64(v), Currency: currency}, nil
}

func allASCIIDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
