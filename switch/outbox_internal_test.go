package txswitch

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"testing"
)

// TestResourcePrefix: the resource ReadOutbox cuts out of a stored order or
// payment record is byte for byte the resource apply emitted with it, and
// a record in any other form is decoded and encoded instead, to the same
// bytes.
func TestResourcePrefix(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	cut := 0
	for i := range 2000 {
		var o orderRec
		randFill(r, reflect.ValueOf(&o).Elem(), 0)
		o.Payments = nil // as in apply
		rec, res, err := encodeOrderRec(nil, &o)
		if err != nil {
			continue // a value JSON cannot hold (a time out of range): never stored
		}
		checkRecordResource(t, i, "order", rec, res, func(d *canonDec) bool { return d.orderFields().ID == o.ID }, &cut)

		var p paymentRec
		randFill(r, reflect.ValueOf(&p).Elem(), 0)
		if rec, res, err = encodePaymentRec(nil, &p); err != nil {
			continue
		}
		checkRecordResource(t, i, "payment", rec, res, func(d *canonDec) bool { return d.paymentFields().ID == p.ID }, &cut)
	}
	if cut < 1000 {
		t.Fatalf("only %d records cut without decoding", cut)
	}
}

func checkRecordResource(t *testing.T, i int, kind string, rec, res []byte, fields func(*canonDec) bool, cut *int) {
	t.Helper()
	if got, ok := resourcePrefix(rec, fields); ok {
		*cut++
		if !bytes.Equal(got, res) {
			t.Fatalf("%d %s: cut\n%s\nfrom the record, want\n%s", i, kind, got, res)
		}
	}
	// Indented, the record is no longer canonical: never cut, decoded.
	var ind bytes.Buffer
	if err := json.Indent(&ind, rec, "", " "); err != nil {
		t.Fatalf("%d %s: %v", i, kind, err)
	}
	if _, ok := resourcePrefix(ind.Bytes(), fields); ok {
		t.Fatalf("%d %s: an indented record was cut: %s", i, kind, ind.Bytes())
	}
	// The same resource, if not the same bytes: invalid UTF-8, which the
	// API never stores, comes back as U+FFFD unescaped.
	got, err := decodeResource(kind, ind.Bytes())
	var a, b any
	if err != nil || json.Unmarshal(got, &a) != nil || json.Unmarshal(res, &b) != nil || !reflect.DeepEqual(a, b) {
		t.Fatalf("%d %s: decoded %s (%v), want %s", i, kind, got, err, res)
	}
}
