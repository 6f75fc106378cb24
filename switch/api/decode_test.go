package api

import (
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"

	txswitch "github.com/txswitch/txswitch/switch"
)

// anyBody is a request type whose only field takes any JSON value, so the
// scanner's syntax checks can be compared with encoding/json's.
type anyBody struct {
	X any `json:"x"`
}

// scanAny runs the scanner over {"x": doc}. It reports whether the scan
// accepted the whole input, and skips (ok=false) documents deeper than
// the scanner follows.
func scanAny(doc []byte) (accepted, ok bool) {
	body := append(append([]byte(`{"x":`), doc...), '}')
	sc := scanner{b: body}
	err := sc.value(shapeOf(reflect.TypeFor[anyBody]()), nil, 0)
	if err == nil {
		if sc.ws(); sc.i < len(sc.b) {
			return false, true
		}
		return true, true
	}
	var e *txswitch.Error
	if errors.As(err, &e) && strings.Contains(e.Message, "nested too deeply") {
		return false, false
	}
	return false, true
}

// validWithoutNUL is encoding/json's idea of valid, less strings that hold
// the NUL character or half a surrogate pair (which encoding/json turns
// into U+FFFD), both of which the scanner refuses on purpose.
func validWithoutNUL(doc []byte) bool {
	body := []byte(`{"x":` + string(doc) + `}`)
	var v any
	return json.Valid(body) && json.Unmarshal(body, &v) == nil && !holdsNUL(v) && !unpairedSurrogate(doc)
}

// unpairedSurrogate reports whether doc (valid JSON) escapes half a
// surrogate pair: a low one, or a high one not followed by a low one.
func unpairedSurrogate(doc []byte) bool {
	unit := func(i int) (int64, bool) {
		if i+6 > len(doc) || doc[i] != '\\' || doc[i+1] != 'u' {
			return 0, false
		}
		u, err := strconv.ParseInt(string(doc[i+2:i+6]), 16, 32)
		return u, err == nil
	}
	for i := 0; i < len(doc); i++ {
		if doc[i] != '\\' || i+1 >= len(doc) {
			continue
		}
		u, ok := unit(i)
		switch {
		case !ok:
			i++ // another escape: skip its second byte
		case u >= 0xDC00 && u <= 0xDFFF:
			return true
		case u >= 0xD800 && u <= 0xDBFF:
			if lo, ok := unit(i + 6); !ok || lo < 0xDC00 || lo > 0xDFFF {
				return true
			}
			i += 11
		default:
			i += 5
		}
	}
	return false
}

func holdsNUL(v any) bool {
	switch t := v.(type) {
	case string:
		return strings.IndexByte(t, 0) >= 0
	case []any:
		for _, e := range t {
			if holdsNUL(e) {
				return true
			}
		}
	case map[string]any:
		for k, e := range t {
			if strings.IndexByte(k, 0) >= 0 || holdsNUL(e) {
				return true
			}
		}
	}
	return false
}

func TestScannerSyntaxMatchesEncodingJSON(t *testing.T) {
	docs := []string{
		`0`, `-0`, `12`, `-12.5e+3`, `1E9`, `0.5`, `01`, `1.`, `.5`, `-`, `+1`, `1e`, `1e+`, `--1`, `0x10`, `1_000`,
		`"a"`, `"\u0000"`, `"a\u0000b"`, `{"\u0000":1}`, `"a\\u0000"`, `"\u00e9"`, `"\ud83d\ude00"`, `"\ud800"`, `"a\udc00"`, `"\ud800\u0041"`, `"\ud800x"`, `"\ud800\ud800\udc00"`, `"\\ud800"`, `"\x"`, `"\u12"`, `"\u12G4"`, "\"a\tb\"", `"a\/b"`, `"unterminated`, `"\"`,
		`true`, `false`, `null`, `tru`, `nul`, `True`, `NaN`, `Infinity`,
		`[]`, `[1,2]`, `[1,]`, `[,1]`, `[1 2]`, `[`, `]`, `{}`, `{"a":1}`, `{"a":1,}`, `{"a"}`, `{"a":}`, `{a:1}`, `{'a':1}`,
		`{"a":{"b":[{"c":null}]}}`, `{"a":1 "b":2}`, `{"a":1}}`, ` [ 1 , { "k" : [ ] } ] `, `[[[[[[[[[[1]]]]]]]]]]`,
	}
	for _, d := range docs {
		acc, ok := scanAny([]byte(d))
		if !ok {
			t.Fatalf("%q: unexpectedly deep", d)
		}
		if want := validWithoutNUL([]byte(d)); acc != want {
			t.Errorf("%q: scanner accepts = %v, encoding/json = %v", d, acc, want)
		}
	}
}

func TestScannerDepthBounded(t *testing.T) {
	deep := strings.Repeat("[", 10*maxDepth) + strings.Repeat("]", 10*maxDepth)
	err := decodeStrict([]byte(`{"x":`+deep+`}`), &anyBody{})
	var e *txswitch.Error
	if !errors.As(err, &e) || e.Status != 400 || e.Code != "invalid_json" {
		t.Fatalf("deep nesting: %v", err)
	}
}

func TestDecodeStrictFieldPaths(t *testing.T) {
	tests := []struct {
		body      string
		wantCode  string
		wantField string
	}{
		{`{"lines":[{"sku":"a"},{"sku":"b","quantity":"x"}]}`, "invalid_field", "lines[1].quantity"},
		{`{"customer":{"country":"NL","country":"BE"}}`, "duplicate_field", "customer.country"},
		{`{"customer":{"\u0063ountry":"NL","country":"BE"}}`, "duplicate_field", "customer.country"},
		{`{"amount":{"value":1,"currency":"EUR","x":{"deep":[1,2]}}}`, "unknown_field", "amount.x"},
		{`{"lines":[[]]}`, "invalid_field", "lines[0]"},
		{`{"reference":"a"}`, "", ""},
		{`{"reference":"\u0041\n"}`, "", ""},
	}
	for _, tt := range tests {
		var v txswitch.CreateOrderRequest
		err := decodeStrict([]byte(tt.body), &v)
		var code, field string
		if e := (*txswitch.Error)(nil); errors.As(err, &e) {
			code, field = e.Code, e.Field
		} else if err != nil {
			t.Fatalf("%s: %v is not a domain error", tt.body, err)
		}
		if code != tt.wantCode || field != tt.wantField {
			t.Errorf("%s: got %q %q (%v), want %q %q", tt.body, code, field, err, tt.wantCode, tt.wantField)
		}
	}
	// Many keys: duplicates are found past the on-stack key buffer too.
	var b strings.Builder
	b.WriteString(`{"payment_data":{`)
	for i := range 40 {
		b.WriteString(`"k` + strings.Repeat("x", i) + `":"v",`)
	}
	b.WriteString(`"kxxx":"dup"}}`)
	var p txswitch.CreatePaymentRequest
	err := decodeStrict([]byte(b.String()), &p)
	if e := (*txswitch.Error)(nil); !errors.As(err, &e) || e.Code != "duplicate_field" || e.Field != "payment_data.kxxx" {
		t.Fatalf("duplicate among many keys: %v", err)
	}
}

// FuzzScannerSyntax compares the scanner's idea of valid JSON with
// encoding/json's.
func FuzzScannerSyntax(f *testing.F) {
	for _, s := range []string{`1`, `"a\u00e9"`, `[1,{"a":null}]`, `-0.5e3`, `{"a":[true,false]}`, `01`, `"\ud800"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		acc, ok := scanAny(doc)
		if !ok {
			return
		}
		if want := validWithoutNUL(doc); acc != want {
			t.Fatalf("%q: scanner accepts = %v, encoding/json = %v", doc, acc, want)
		}
	})
}
