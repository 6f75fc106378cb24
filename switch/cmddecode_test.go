package txswitch

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// jsonDecode is what encoding/json makes of a command of type typ (the
// general path of decodeCommand).
func jsonDecode(typ string, data []byte) (any, error) {
	cmd := newCommand(typ)
	err := json.Unmarshal(data, cmd)
	return cmd, err
}

// checkCanonical fails t when decodeCanonical accepts data but encoding/json
// rejects it or decodes another value. It reports whether it was accepted.
func checkCanonical(t *testing.T, typ string, data []byte) bool {
	t.Helper()
	got, ok := decodeCanonical(typ, data)
	if !ok {
		return false
	}
	want, err := jsonDecode(typ, data)
	if err != nil {
		t.Fatalf("canonical decoder accepted what encoding/json rejects (%v): %s", err, data)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("canonical decoder differs from encoding/json for %s\n got %+v\nwant %+v", data, got, want)
	}
	return true
}

func goldenCommands(t testing.TB) []Command {
	raw, err := os.ReadFile("testdata/golden_log.json")
	if err != nil {
		t.Fatal(err)
	}
	var cmds []Command
	if err := json.Unmarshal(raw, &cmds); err != nil {
		t.Fatal(err)
	}
	return cmds
}

var canonicalTypes = []string{cmdTypeCreateOrder, cmdTypePaymentIntent, cmdTypePaymentResult}

func commandType(data []byte) string {
	var h cmdHeader
	_ = json.Unmarshal(data, &h)
	return h.Type
}

// TestCanonicalDecodeGoldenLog decodes every command of the golden log both
// ways, and checks the fast path actually takes every command of its types
// the service wrote (the log's strings include every kind of escape).
func TestCanonicalDecodeGoldenLog(t *testing.T) {
	seen, taken := map[string]int{}, map[string]int{}
	for _, c := range goldenCommands(t) {
		typ := commandType(c.Data)
		seen[typ]++
		if checkCanonical(t, typ, c.Data) {
			taken[typ]++
		}
	}
	for _, typ := range canonicalTypes {
		if seen[typ] == 0 || taken[typ] != seen[typ] {
			t.Errorf("%s: canonical path took %d of %d commands", typ, taken[typ], seen[typ])
		}
	}
	for typ, n := range taken {
		if !strings.Contains(strings.Join(canonicalTypes, ","), typ) {
			t.Errorf("%s: canonical path took %d commands of a type it does not decode", typ, n)
		}
	}
}

// TestCanonicalDecodeCases covers what the golden log may lack (optional
// fields, unusual values) and what must fall back to encoding/json.
func TestCanonicalDecodeCases(t *testing.T) {
	at := time.Date(2026, 11, 23, 9, 0, 0, 123, time.FixedZone("x", 3600))
	amount := Money{Value: -7, Currency: "EUR"}
	encoded := map[string]struct {
		typ string
		cmd any
	}{
		"order with lines": {cmdTypeCreateOrder, &cmdCreateOrder{At: at, Idem: &idemRef{Merchant: "m", Key: "k/ü", Fingerprint: "f"},
			Order: Order{ID: "o", MerchantID: "m", Amount: amount, Customer: Customer{Country: "NL", ID: "c", Email: "e@x"}, Channel: "online",
				Lines: []OrderLine{{SKU: "a", Quantity: 2, UnitAmount: 3, Category: "c"}, {SKU: "b", Quantity: 0, UnitAmount: -1}}}}},
		"order, nothing optional": {cmdTypeCreateOrder, &cmdCreateOrder{Order: Order{ID: "o"}}},
		"intent with everything": {cmdTypePaymentIntent, &cmdPaymentIntent{At: at, Idem: &idemRef{Key: "k"}, MerchantID: "m", OrderID: "o", PaymentID: "p",
			Method: "card", Amount: amount, Surcharge: Money{Value: 29, Currency: "EUR"}, CaptureMode: CaptureManual,
			PaymentData: map[string]string{"token": "t", "": "empty", "b": ""},
			Candidates:  []RouteCandidate{{Provider: "a", Breaker: "open", Skipped: true, SkipReason: "breaker open"}, {Provider: "b", Breaker: "closed"}},
			Provider:    "b", NoRoute: "n", HoldRule: "h"}},
		"intent, no candidates":    {cmdTypePaymentIntent, &cmdPaymentIntent{At: at, Candidates: nil}},
		"intent, empty candidates": {cmdTypePaymentIntent, &cmdPaymentIntent{At: at, Candidates: []RouteCandidate{}}},
		"result with everything": {cmdTypePaymentResult, &cmdPaymentResult{At: at, PaymentID: "p", Attempt: 3, Source: sourceResolver, Outcome: outcomeFailed,
			Result:  ProviderResult{Outcome: OutcomePending, ProviderRef: "r", Code: "c", Message: "m", RedirectURL: "u", Amount: &amount},
			ErrCode: "e", ErrMessage: "em", LatencyMs: 1 << 40, Next: &nextAttempt{Provider: "b", Candidates: []RouteCandidate{{Provider: "b"}}}}},
		"result, next without candidates": {cmdTypePaymentResult, &cmdPaymentResult{Next: &nextAttempt{Provider: "b"}}},
	}
	for name, tc := range encoded {
		t.Run(name, func(t *testing.T) {
			data, err := encodeCommand(tc.typ, tc.cmd)
			if err != nil {
				t.Fatal(err)
			}
			if !checkCanonical(t, tc.typ, data) {
				t.Fatalf("canonical path refused what encodeCommand wrote: %s", data)
			}
		})
	}

	base, err := encodeCommand(cmdTypePaymentResult, &cmdPaymentResult{At: at, PaymentID: "p", Attempt: 1, Source: sourceCall,
		Outcome: outcomeApproved, Result: ProviderResult{Outcome: OutcomeApproved, ProviderRef: "ref"}, LatencyMs: 12})
	if err != nil {
		t.Fatal(err)
	}
	if !checkCanonical(t, cmdTypePaymentResult, base) {
		t.Fatalf("base case refused: %s", base)
	}
	edit := func(old, new string) []byte {
		s := string(base)
		if !strings.Contains(s, old) {
			t.Fatalf("%q not in %s", old, s)
		}
		return []byte(strings.Replace(s, old, new, 1))
	}
	// Strings encoding/json must unescape are decoded as it does.
	accepted := map[string][]byte{
		"escapes":                  edit(`"ref"`, `"r\u0065f \"\\\/\b\f\n\r\t\u003c\u2028"`),
		"surrogate pair":           edit(`"ref"`, `"\ud83d\ude00"`),
		"lone surrogate":           edit(`"ref"`, `"\ud83d"`),
		"invalid UTF-8":            edit(`"ref"`, "\"r\xffef\""),
		"escaped quote at the end": edit(`"ref"`, `"ref\""`),
		"negative zero":            edit(`"latency_ms":12`, `"latency_ms":-0`),
	}
	for name, data := range accepted {
		t.Run("accepts "+name, func(t *testing.T) {
			if !checkCanonical(t, cmdTypePaymentResult, data) {
				t.Fatalf("canonical path refused %s", data)
			}
		})
	}
	refused := map[string][]byte{
		"control character":           edit(`"ref"`, "\"r\tf\""),
		"bad escape":                  edit(`"ref"`, `"r\x41"`),
		"unterminated escape":         edit(`"ref"}`, `"ref\`),
		"fields out of order":         edit(`"source":"call","outcome":"approved"`, `"outcome":"approved","source":"call"`),
		"unknown field":               edit(`,"latency_ms"`, `,"extra":1,"latency_ms"`),
		"whitespace":                  edit(`"attempt":1`, `"attempt": 1`),
		"fraction":                    edit(`"latency_ms":12`, `"latency_ms":12.0`),
		"exponent":                    edit(`"latency_ms":12`, `"latency_ms":1e1`),
		"leading zero":                edit(`"latency_ms":12`, `"latency_ms":012`),
		"overflow":                    edit(`"latency_ms":12`, `"latency_ms":9223372036854775808`),
		"string for a number":         edit(`"latency_ms":12`, `"latency_ms":"12"`),
		"null for a time":             edit(`"at":"`+at.Format(time.RFC3339Nano)+`"`, `"at":null`),
		"bad time":                    edit(at.Format(time.RFC3339Nano), "yesterday"),
		"escaped time":                edit(`"at":"2`, `"at":"\u0032`),
		"trailing data":               append(append([]byte{}, base...), ' '),
		"truncated":                   base[:len(base)-1],
		"duplicate field":             edit(`,"latency_ms":12`, `,"latency_ms":12,"latency_ms":13`),
		"optional field out of place": edit(`,"latency_ms":12`, `,"latency_ms":12,"err_code":"x"`),
	}
	for name, data := range refused {
		t.Run("refuses "+name, func(t *testing.T) {
			if checkCanonical(t, cmdTypePaymentResult, data) {
				t.Fatalf("canonical path accepted %s", data)
			}
			// decodeCommand still decodes it exactly as encoding/json does.
			got, gerr := decodeCommand(data)
			want, werr := jsonDecode(cmdTypePaymentResult, data)
			if (gerr == nil) != (werr == nil) || (gerr == nil && !reflect.DeepEqual(got, want)) {
				t.Fatalf("decodeCommand = %+v, %v; encoding/json = %+v, %v", got, gerr, want, werr)
			}
		})
	}
	order, err := encodeCommand(cmdTypeCreateOrder, &cmdCreateOrder{Order: Order{ID: "o", Payments: []Payment{}}})
	if err != nil {
		t.Fatal(err)
	}
	if checkCanonical(t, cmdTypeCreateOrder, order) {
		t.Fatalf("canonical path accepted an order with payments: %s", order)
	}
}

// FuzzCanonicalDecode: whatever the canonical command and outbox decoders
// accept, encoding/json decodes to the same value.
func FuzzCanonicalDecode(f *testing.F) {
	for i, c := range goldenCommands(f) {
		if i%7 == 0 {
			f.Add(c.Data)
		}
	}
	ev, err := appendOutboxEvent(nil, 3, "order", "m", "o", time.Unix(1, 2).UTC(), []byte(`{"id":"o","n":[1,2]}`))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ev)
	ref, err := appendOutboxRef(nil, 4, "payment", "m", "o", time.Unix(1, 2).UTC(), "pay_1")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ref)
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, typ := range canonicalTypes {
			checkCanonical(t, typ, data)
		}
		checkOutboxEvent(t, data)
	})
}

// checkOutboxEvent fails t when decodeOutboxEvent accepts data but
// encoding/json rejects it or decodes another event; it reports whether it
// was accepted.
func checkOutboxEvent(t *testing.T, data []byte) bool {
	t.Helper()
	got, ok := decodeOutboxEvent(data)
	if !ok {
		return false
	}
	var want outboxRecord
	if err := json.Unmarshal(data, &want); err != nil {
		t.Fatalf("outbox decoder accepted what encoding/json rejects (%v): %s", err, data)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("outbox decoder differs from encoding/json for %s\n got %+v\nwant %+v", data, got, want)
	}
	return true
}

func TestOutboxEventDecode(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	taken := 0
	for i := range 3000 {
		var ev OutboxEvent
		randFill(r, reflect.ValueOf(&ev).Elem(), 0)
		if len(ev.Resource) == 0 {
			ev.Resource = json.RawMessage(`{}`)
		}
		data, err := appendOutboxEvent(nil, ev.Seq, ev.Kind, ev.MerchantID, ev.OrderID, ev.At, ev.Resource)
		if err != nil {
			continue // a time JSON cannot hold: never stored
		}
		if checkOutboxEvent(t, data) {
			taken++
		} else if ev.Seq < 1<<63 {
			t.Fatalf("event %d refused: %s", i, data)
		}
	}
	if taken < 1000 {
		t.Fatalf("only %d events decoded by the fast path", taken)
	}
	// References (VersionOutboxRefs) decode the same way, and one never
	// passes for a resource or the other way round.
	refs := 0
	for i := range 2000 {
		var rec outboxRecord
		randFill(r, reflect.ValueOf(&rec).Elem(), 0)
		if rec.Ref == "" {
			rec.Ref = "ord_1"
		}
		data, err := appendOutboxRef(nil, rec.Seq, rec.Kind, rec.MerchantID, rec.OrderID, rec.At, rec.Ref)
		if err != nil {
			continue
		}
		if checkOutboxEvent(t, data) {
			refs++
			// checkOutboxEvent compared it with encoding/json (which
			// also replaces invalid UTF-8 in the random reference).
			if got, _ := decodeOutboxEvent(data); got.Ref == "" || got.Resource != nil {
				t.Fatalf("reference %d decoded as %+v", i, got)
			}
		} else if rec.Seq < 1<<63 {
			t.Fatalf("reference %d refused: %s", i, data)
		}
	}
	if refs < 1000 {
		t.Fatalf("only %d references decoded by the fast path", refs)
	}
	base, err := appendOutboxEvent(nil, 7, "timeline", "m", "o", time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), []byte(`{"a":[1,{"b":null}]}`))
	if err != nil {
		t.Fatal(err)
	}
	edit := func(old, new string) []byte {
		if !strings.Contains(string(base), old) {
			t.Fatalf("%q not in %s", old, base)
		}
		return []byte(strings.Replace(string(base), old, new, 1))
	}
	refused := map[string][]byte{
		"negative zero seq":      edit(`"seq":7`, `"seq":-0`),
		"resource not an object": edit(`{"a":[1,{"b":null}]}`, `[1]`),
		"null resource":          edit(`{"a":[1,{"b":null}]}`, `null`),
		"invalid resource":       edit(`{"a":[1,{"b":null}]}`, `{"a":[1,{"b":nul}]}`),
		"two values":             edit(`{"a":[1,{"b":null}]}`, `{"a":1}{"b":2}`),
		"space after resource":   edit(`{"a":[1,{"b":null}]}`, `{"a":[1,{"b":null}]} `),
		"missing closing brace":  base[:len(base)-1],
		"field after resource":   edit(`{"a":[1,{"b":null}]}`, `{"a":1},"x":1`),
		"unknown field":          edit(`,"at"`, `,"x":1,"at"`),
		"seq beyond int64":       edit(`"seq":7`, `"seq":9223372036854775808`),
	}
	for name, data := range refused {
		t.Run("refuses "+name, func(t *testing.T) {
			if checkOutboxEvent(t, data) {
				t.Fatalf("fast path accepted %s", data)
			}
		})
	}
	if !checkOutboxEvent(t, edit(`,"order_id":"o"`, ``)) {
		t.Fatal("event without order_id refused")
	}
}
