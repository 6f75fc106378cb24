package txswitch

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
)

// decodeWithJSON is what the resource decoders must equal.
func decodeWithJSON(kind string, raw []byte) (any, error) {
	switch kind {
	case "order":
		var o Order
		err := json.Unmarshal(raw, &o)
		return o, err
	case "payment":
		var p Payment
		err := json.Unmarshal(raw, &p)
		return p, err
	default:
		var ev TimelineEvent
		err := json.Unmarshal(raw, &ev)
		return ev, err
	}
}

func decodeFast(kind string, raw []byte) (v any, canonical bool, err error) {
	switch kind {
	case "order":
		d := &canonDec{b: raw}
		d.order()
		v, err = DecodeOrder(raw)
		return v, !d.bad && d.end(), err
	case "payment":
		d := &canonDec{b: raw}
		d.payment()
		v, err = DecodePayment(raw)
		return v, !d.bad && d.end(), err
	default:
		_, canonical = decodeTimelineCanon(raw)
		v, err = DecodeTimelineEvent(raw)
		return v, canonical, err
	}
}

// checkResource: the decoder agrees with encoding/json on raw (value, or
// both failing), and says whether its canonical path read it.
func checkResource(t *testing.T, kind string, raw []byte) (canonical bool) {
	t.Helper()
	want, wantErr := decodeWithJSON(kind, raw)
	got, canonical, err := decodeFast(kind, raw)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("%s %q: error %v, encoding/json says %v", kind, raw, err, wantErr)
	}
	if err == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("%s %q:\n got %#v\nwant %#v", kind, raw, got, want)
	}
	if canonical && wantErr != nil {
		t.Fatalf("%s %q: the canonical path accepted what encoding/json refuses: %v", kind, raw, wantErr)
	}
	return canonical
}

// TestResourceDecodersMatchEncodingJSON: random resources (every optional
// field absent or present, nil and empty slices, awkward strings and
// zones), encoded as the switch encodes them, decode to exactly what
// encoding/json decodes — and through the canonical path.
func TestResourceDecodersMatchEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 3000 {
		var o Order
		randFill(r, reflect.ValueOf(&o).Elem(), 0)
		var p Payment
		randFill(r, reflect.ValueOf(&p).Elem(), 0)
		var ev TimelineEvent
		randFill(r, reflect.ValueOf(&ev).Elem(), 0)
		for _, c := range []struct {
			kind string
			v    any
		}{{"order", &o}, {"payment", &p}, {"timeline", &ev}} {
			raw, err := json.Marshal(c.v)
			if err != nil {
				continue // a year outside RFC 3339: the switch never stores it
			}
			if !checkResource(t, c.kind, raw) {
				t.Fatalf("%d %s: canonical encoding not read by the canonical path: %s", i, c.kind, raw)
			}
		}
	}
}

func TestResourceDecodersOffCanonical(t *testing.T) {
	p := `{"id":"pay_1","order_id":"ord_1","merchant_id":"m","status":"captured","method":"card","amount":{"value":5,"currency":"EUR"},"authorized":{"value":5,"currency":"EUR"},"captured":{"value":5,"currency":"EUR"},"refunded":{"value":0,"currency":"EUR"},"capture":"automatic","attempt":1,"created_at":"2026-11-30T01:00:00Z","updated_at":"2026-11-30T01:00:01Z"}`
	for _, c := range []struct {
		kind, raw string
		canonical bool
	}{
		{"payment", p, true},
		{"payment", p[:len(p)-1] + `,"extra":1}`, false},
		{"payment", ` ` + p, false},
		{"payment", p + ` `, false},
		{"payment", `{"attempt":1,"id":"pay_1"}`, false},
		{"payment", `{"id":"pay_1","attempt":1.5}`, false},
		{"payment", `null`, false},
		{"payment", `[]`, false},
		{"payment", p[:len(p)-1], false},
		{"order", `{"id":"o","merchant_id":"m","reference":"r","status":"s","amount":{"value":1,"currency":"EUR"},"customer":{"country":"NL"},"channel":"web","lines":[],"authorized":{"value":0,"currency":"EUR"},"captured":{"value":0,"currency":"EUR"},"refunded":{"value":0,"currency":"EUR"},"payments":[],"created_at":"2026-11-30T01:00:00Z","updated_at":"2026-11-30T01:00:00Z"}`, true},
		{"order", `{"id":"o","payments":null}`, false},
		{"order", `{"id":1}`, false},
		{"timeline", `{"seq":1,"at":"2026-11-30T01:00:00Z","type":"t","data":{"a":[1,2]}}`, true},
		{"timeline", `{"seq":1,"at":"2026-11-30T01:00:00Z","type":"t","data":null}`, false},
		{"timeline", `{"seq":1,"at":"2026-11-30T01:00:00Z","type":"t","data":{"a":1} }`, false},
		{"timeline", `{"seq":1,"at":"2026-11-30T01:00:00Z","type":"t","data":{"a":1}}}`, false},
		{"timeline", `{"seq":-1,"at":"2026-11-30T01:00:00Z","type":"t"}`, false},
		{"timeline", `{"seq":18446744073709551615,"at":"2026-11-30T01:00:00Z","type":"t"}`, true},
		{"timeline", `{"seq":18446744073709551616,"at":"2026-11-30T01:00:00Z","type":"t"}`, false},
		{"timeline", `{"seq":01,"at":"2026-11-30T01:00:00Z","type":"t"}`, false},
		{"timeline", `{"seq":1,"at":"2026-11-30T01:00:00Z","type":"t\u00e9\n"}`, true},
	} {
		t.Run(fmt.Sprintf("%s/%.40s", c.kind, c.raw), func(t *testing.T) {
			if got := checkResource(t, c.kind, []byte(c.raw)); got != c.canonical {
				t.Fatalf("canonical path took it: %v, want %v", got, c.canonical)
			}
		})
	}
}

func FuzzResourceDecoders(f *testing.F) {
	r := rand.New(rand.NewPCG(5, 6))
	for range 20 {
		var o Order
		randFill(r, reflect.ValueOf(&o).Elem(), 0)
		if raw, err := json.Marshal(&o); err == nil {
			f.Add("order", raw)
		}
		var ev TimelineEvent
		randFill(r, reflect.ValueOf(&ev).Elem(), 0)
		if raw, err := json.Marshal(&ev); err == nil {
			f.Add("timeline", raw)
		}
	}
	f.Add("payment", []byte(`{"id":"p","order_id":"o","merchant_id":"m","status":"s","method":"card","amount":{"value":1,"currency":"EUR"},"authorized":{"value":1,"currency":"EUR"},"captured":{"value":0,"currency":"EUR"},"refunded":{"value":0,"currency":"EUR"},"capture":"manual","attempt":0,"created_at":"2026-11-30T01:00:00Z","updated_at":"2026-11-30T01:00:00Z"}`))
	f.Fuzz(func(t *testing.T, kind string, raw []byte) {
		checkResource(t, kind, raw)
	})
}
