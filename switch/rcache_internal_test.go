package txswitch

import (
	"fmt"
	"reflect"
	"testing"
	"time"
)

// fill sets every field reachable from v to a non-zero value: pointers
// allocated, slices and maps given two elements, strings and numbers
// distinct, so a clone that shares any memory or drops any field shows.
func fill(v reflect.Value, n *int) {
	*n++
	switch v.Kind() {
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem(), n)
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			v.Set(reflect.ValueOf(time.Date(2026, 1, 2, 3, 4, 5, *n, time.UTC)))
			return
		}
		for i := range v.NumField() {
			f := v.Field(i)
			if !f.CanSet() { // unexported: reach it through an addressable copy
				f = reflect.NewAt(f.Type(), f.Addr().UnsafePointer()).Elem()
			}
			fill(f, n)
		}
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 2, 2)
		for i := range 2 {
			fill(s.Index(i), n)
		}
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		for range 2 {
			k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
			fill(k, n)
			fill(e, n)
			m.SetMapIndex(k, e)
		}
		v.Set(m)
	case reflect.String:
		v.SetString(fmt.Sprint("s", *n))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int64, reflect.Int32:
		v.SetInt(int64(*n))
	case reflect.Uint, reflect.Uint64, reflect.Uint32, reflect.Uint8:
		v.SetUint(uint64(*n))
	case reflect.Float64:
		v.SetFloat(float64(*n))
	case reflect.Interface:
	default:
		panic("fill: unhandled kind " + v.Kind().String())
	}
}

// shared reports memory a and b (same type) have in common.
func shared(a, b reflect.Value, path string) error {
	switch a.Kind() {
	case reflect.Pointer:
		if a.IsNil() {
			return nil
		}
		if a.Type() == reflect.TypeFor[*time.Location]() {
			return nil // immutable
		}
		if a.Pointer() == b.Pointer() {
			return fmt.Errorf("%s: pointer shared", path)
		}
		return shared(a.Elem(), b.Elem(), path)
	case reflect.Struct:
		if a.Type() == reflect.TypeFor[time.Time]() {
			return nil
		}
		for i := range a.NumField() {
			if err := shared(a.Field(i), b.Field(i), path+"."+a.Type().Field(i).Name); err != nil {
				return err
			}
		}
	case reflect.Slice:
		if a.Len() > 0 && a.Pointer() == b.Pointer() {
			return fmt.Errorf("%s: slice backing array shared", path)
		}
		for i := range a.Len() {
			if err := shared(a.Index(i), b.Index(i), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case reflect.Map:
		if !a.IsNil() && a.Pointer() == b.Pointer() {
			return fmt.Errorf("%s: map shared", path)
		}
	}
	return nil
}

// TestCloneRecordIsDeep: cached records are handed out as clones; a clone
// must equal the original and share no memory with it, for every field of
// every cached type (a field added later without updating the clone
// functions fails here).
func TestCloneRecordIsDeep(t *testing.T) {
	for _, v := range []any{&orderRec{}, &paymentRec{}, &inDoubtRec{}, &idemRecord{}} {
		t.Run(reflect.TypeOf(v).Elem().Name(), func(t *testing.T) {
			n := 0
			fill(reflect.ValueOf(v).Elem(), &n)
			c := cloneRecord(v)
			if !reflect.DeepEqual(c, v) {
				t.Fatalf("clone differs:\n%+v\n%+v", c, v)
			}
			if err := shared(reflect.ValueOf(c), reflect.ValueOf(v), reflect.TypeOf(v).Elem().Name()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestCloneKeepsNilAndEmpty: nil and empty slices and maps encode
// differently ("null" vs "[]"), so a clone keeps which one it was.
func TestCloneKeepsNilAndEmpty(t *testing.T) {
	empty := &paymentRec{Payment: Payment{Refunds: []Refund{}}, paymentExtra: paymentExtra{PaymentData: map[string]string{}, Candidates: []RouteCandidate{}}}
	nilp := &paymentRec{}
	for _, p := range []*paymentRec{empty, nilp} {
		c := cloneRecord(p).(*paymentRec)
		if (c.Refunds == nil) != (p.Refunds == nil) || (c.PaymentData == nil) != (p.PaymentData == nil) || (c.Candidates == nil) != (p.Candidates == nil) {
			t.Fatalf("nil-ness changed: %#v → %#v", p, c)
		}
	}
	o := &orderRec{Order: Order{Payments: []Payment{}, Lines: []OrderLine{}}}
	if c := cloneRecord(o).(*orderRec); c.Payments == nil || c.Lines == nil {
		t.Fatalf("empty became nil: %#v", c)
	}
}
