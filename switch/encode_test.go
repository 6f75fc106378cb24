package txswitch

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

// The hand-written encoders must write exactly what encoding/json writes:
// stored state and replies are compared byte for byte across nodes and
// against the golden corpus. These tests compare them on random values
// that include every awkward case: strings needing escapes or holding
// invalid UTF-8, nil vs empty slices, absent optional fields, times in
// other zones, with odd offsets or outside the years RFC 3339 allows.

var awkward = []string{"", "a", "<&>", "é", "\u2028\u2029", "\x00\x1f\x7f", "\"\\/", "\xff\xfe", "tab\tnl\n", "日本", "\ufffd", "a\xc3"}

func randString(r *rand.Rand) string {
	if r.IntN(3) == 0 {
		return ""
	}
	var b []byte
	for range r.IntN(4) {
		b = append(b, awkward[r.IntN(len(awkward))]...)
	}
	b = append(b, fmt.Sprint(r.IntN(1000))...)
	return string(b)
}

func randTime(r *rand.Rand) time.Time {
	zones := []*time.Location{time.UTC, time.FixedZone("x", 3600), time.FixedZone("y", -5*3600-1800), time.FixedZone("z", 25*3600), time.FixedZone("s", 61)}
	years := []int{2026, 1, 9999, 10000, -1, 1970}
	y := 2026
	if r.IntN(6) == 0 {
		y = years[r.IntN(len(years))]
	}
	return time.Date(y, time.Month(1+r.IntN(12)), 1+r.IntN(28), r.IntN(24), r.IntN(60), r.IntN(60), r.IntN(3)*r.IntN(1e9), zones[r.IntN(len(zones))])
}

// randFill fills v with random values (pointers, slices and maps nil,
// empty or populated).
func randFill(r *rand.Rand, v reflect.Value, depth int) {
	switch v.Kind() {
	case reflect.Pointer:
		if r.IntN(2) == 0 || depth > 4 {
			return
		}
		v.Set(reflect.New(v.Type().Elem()))
		randFill(r, v.Elem(), depth+1)
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			v.Set(reflect.ValueOf(randTime(r)))
			return
		}
		for i := range v.NumField() {
			f := v.Field(i)
			if !f.CanSet() {
				if !v.Type().Field(i).Anonymous {
					continue // unexported, not encoded
				}
				// An embedded unexported struct (paymentExtra, orderExtra)
				// whose exported fields are encoded.
				f = reflect.NewAt(f.Type(), f.Addr().UnsafePointer()).Elem()
			}
			randFill(r, f, depth+1)
		}
	case reflect.Slice:
		if v.Type() == reflect.TypeFor[json.RawMessage]() {
			if r.IntN(2) == 0 {
				raw, _ := json.Marshal(map[string]any{"k": randString(r), "n": r.IntN(9)})
				v.SetBytes(raw)
			}
			return
		}
		switch r.IntN(3) {
		case 0:
			return
		case 1:
			v.Set(reflect.MakeSlice(v.Type(), 0, 0))
		default:
			if depth > 4 {
				return
			}
			s := reflect.MakeSlice(v.Type(), 1+r.IntN(3), 3)
			for i := range s.Len() {
				randFill(r, s.Index(i), depth+1)
			}
			v.Set(s)
		}
	case reflect.Map:
		if r.IntN(2) == 0 {
			return
		}
		m := reflect.MakeMap(v.Type())
		for range r.IntN(3) {
			k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
			randFill(r, k, depth+1)
			randFill(r, e, depth+1)
			m.SetMapIndex(k, e)
		}
		v.Set(m)
	case reflect.String:
		v.SetString(randString(r))
	case reflect.Bool:
		v.SetBool(r.IntN(2) == 0)
	case reflect.Int, reflect.Int64:
		v.SetInt([]int64{0, 1, -1, 1 << 62, -(1 << 62), int64(r.IntN(1e6))}[r.IntN(6)])
	case reflect.Uint64:
		v.SetUint([]uint64{0, 1, 1 << 63, uint64(r.IntN(1e6))}[r.IntN(4)])
	}
}

func sameAsMarshal(t *testing.T, what string, v any, got []byte, gotErr error) {
	t.Helper()
	want, wantErr := json.Marshal(v)
	if (gotErr != nil) != (wantErr != nil) {
		t.Fatalf("%s: error %v, encoding/json says %v for %+v", what, gotErr, wantErr, v)
	}
	if gotErr == nil && !bytes.Equal(got, want) {
		t.Fatalf("%s:\n got %s\nwant %s", what, got, want)
	}
}

func TestEncodersMatchEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 3000 {
		var p Payment
		randFill(r, reflect.ValueOf(&p).Elem(), 0)
		b, err := encodePayment(&p)
		sameAsMarshal(t, fmt.Sprint(i, " payment"), &p, b, err)

		var o Order
		randFill(r, reflect.ValueOf(&o).Elem(), 0)
		b, err = encodeOrder(&o)
		sameAsMarshal(t, fmt.Sprint(i, " order"), &o, b, err)

		var x orderExtra
		randFill(r, reflect.ValueOf(&x).Elem(), 0)
		sameAsMarshal(t, fmt.Sprint(i, " order extra"), &x, encodeOrderExtra(&x), nil)

		var ev TimelineEvent
		randFill(r, reflect.ValueOf(&ev).Elem(), 0)
		b, err = appendTimelineEvent(nil, &ev)
		sameAsMarshal(t, fmt.Sprint(i, " timeline event"), &ev, b, err)

		var rec idemRecord
		randFill(r, reflect.ValueOf(&rec).Elem(), 0)
		b, err = encodeIdemRecord(&rec)
		sameAsMarshal(t, fmt.Sprint(i, " idempotency record"), &rec, b, err)

		var pr paymentRec
		randFill(r, reflect.ValueOf(&pr).Elem(), 0)
		rec2, res, err := encodePaymentRec(nil, &pr)
		sameAsMarshal(t, fmt.Sprint(i, " payment record"), &pr, rec2, err)
		if err == nil {
			sameAsMarshal(t, fmt.Sprint(i, " payment resource"), &pr.Payment, res, nil)
		}

		var or orderRec
		randFill(r, reflect.ValueOf(&or).Elem(), 0)
		rec2, res, err = encodeOrderRec(nil, &or)
		sameAsMarshal(t, fmt.Sprint(i, " order record"), &or, rec2, err)
		view := or.Order
		view.Payments = nil
		if err == nil {
			sameAsMarshal(t, fmt.Sprint(i, " order resource"), &view, res, nil)
		}

		var rd routingData
		randFill(r, reflect.ValueOf(&rd).Elem(), 0)
		sameAsMarshal(t, fmt.Sprint(i, " routing data"), &rd, encodeRoutingData(&rd), nil)

		var pd providerData
		randFill(r, reflect.ValueOf(&pd).Elem(), 0)
		sameAsMarshal(t, fmt.Sprint(i, " provider data"), &pd, encodeProviderData(&pd), nil)

		var px paymentExtra
		randFill(r, reflect.ValueOf(&px).Elem(), 0)
		b, err = encodePaymentExtra(&px)
		sameAsMarshal(t, fmt.Sprint(i, " payment extra"), &px, b, err)

		var dr inDoubtRec
		randFill(r, reflect.ValueOf(&dr).Elem(), 0)
		b, err = encodeInDoubt(&dr)
		sameAsMarshal(t, fmt.Sprint(i, " in-doubt record"), &dr, b, err)

		var ob OutboxEvent
		randFill(r, reflect.ValueOf(&ob).Elem(), 0)
		if len(ob.Resource) == 0 {
			ob.Resource = json.RawMessage(`{}`)
		}
		b, err = appendOutboxEvent(nil, ob.Seq, ob.Kind, ob.MerchantID, ob.OrderID, ob.At, ob.Resource)
		ob.ID = fmt.Sprint("evt_", ob.Seq)
		ob.AsOf = 0 // set by ReadOutbox, never stored
		sameAsMarshal(t, fmt.Sprint(i, " outbox event"), &ob, b, err)

		var orec outboxRecord
		randFill(r, reflect.ValueOf(&orec).Elem(), 0)
		orec.ID, orec.Resource, orec.AsOf = fmt.Sprint("evt_", orec.Seq), nil, 0
		if orec.Ref == "" {
			orec.Ref = "pay_1"
		}
		b, err = appendOutboxRef(nil, orec.Seq, orec.Kind, orec.MerchantID, orec.OrderID, orec.At, orec.Ref)
		// encoding/json writes the absent resource as null; the stored
		// reference leaves it out, and both decode to the same record.
		var fromRef, fromJSON outboxRecord
		if err == nil {
			want, _ := json.Marshal(&orec)
			okRef, okJSON := json.Unmarshal(b, &fromRef) == nil, json.Unmarshal(want, &fromJSON) == nil
			if string(fromJSON.Resource) == "null" {
				fromJSON.Resource = nil // RawMessage keeps the literal
			}
			if !okRef || !okJSON || !reflect.DeepEqual(fromRef, fromJSON) {
				t.Fatalf("%d outbox reference: %s decodes as %+v, encoding/json's %s as %+v", i, b, fromRef, want, fromJSON)
			}
		}
	}
}

func FuzzAppendJSONString(f *testing.F) {
	for _, s := range awkward {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := appendJSONString(nil, s); !bytes.Equal(got, want) {
			t.Fatalf("%q: got %s want %s", s, got, want)
		}
	})
}

func FuzzAppendJSONTime(f *testing.F) {
	f.Add(int64(0), int64(0), 0)
	f.Add(int64(253402300800), int64(5), 3600)        // year 10000
	f.Add(int64(-62135596801), int64(1), -3600)       // year 0
	f.Add(int64(1795000000), int64(999999999), 90000) // offset past 24 h
	f.Fuzz(func(t *testing.T, sec, nsec int64, offset int) {
		tm := time.Unix(sec, nsec).In(time.FixedZone("", offset%200000))
		want, wantErr := json.Marshal(tm)
		got, err := appendJSONTime(nil, tm)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("%v: error %v, encoding/json %v", tm, err, wantErr)
		}
		if err == nil && !bytes.Equal(got, want) {
			t.Fatalf("%v: got %s want %s", tm, got, want)
		}
	})
}

// TestKeysMatchFmt: the key builders write what fmt's %016x wrote.
func TestKeysMatchFmt(t *testing.T) {
	for _, v := range []uint64{0, 1, 15, 16, 255, 1 << 32, 1<<63 + 12345, ^uint64(0)} {
		if got, want := string(outboxKey(v)), fmt.Sprintf("%s%016x", prefixOutbox, v); got != want {
			t.Fatalf("outboxKey(%d) = %q, want %q", v, got, want)
		}
		if got, want := string(timelineKey("ord/1", v)), fmt.Sprintf("%s%s/%016x", prefixTimeline, "ord/1", v); got != want {
			t.Fatalf("timelineKey = %q, want %q", got, want)
		}
	}
	for _, n := range []int{0, 1, 49, 1 << 40} {
		if got, want := string(orderPaymentKey("o", n)), fmt.Sprintf("%s%s/%016x", prefixOrderPayments, "o", n); got != want {
			t.Fatalf("orderPaymentKey = %q, want %q", got, want)
		}
	}
	for _, at := range []time.Time{time.Unix(0, 0), time.Unix(1795000000, 123), time.Unix(-5, 0)} {
		got := string(idemExpiryKey(at, "m/1", "k\x00"))
		want := fmt.Sprintf("%s%016x/%s\x00%s", prefixIdemExpiry, uint64(max(at.UnixNano(), 0)), "m/1", "k\x00")
		if got != want {
			t.Fatalf("idemExpiryKey = %q, want %q", got, want)
		}
	}
}
