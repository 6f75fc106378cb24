package txswitch

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

// sortedReader is a Reader over entries already in key order.
type sortedReader struct{ keys, vals [][]byte }

func (r *sortedReader) Get([]byte) ([]byte, error) { return nil, ErrNotFound }

func (r *sortedReader) Scan(start, end []byte, fn func(k, v []byte) bool) error {
	for i, k := range r.keys {
		if bytes.Compare(k, start) >= 0 && bytes.Compare(k, end) < 0 && !fn(k, r.vals[i]) {
			return nil
		}
	}
	return nil
}

// A listing of a rare state among many others stops at its scan bound
// and says where to go on, so one request never reads the whole index.
func TestListIntentsScanBound(t *testing.T) {
	r := &sortedReader{}
	for i := range 7 {
		d := inDoubtRec{Kind: "payment", Key: fmt.Sprintf("k%d", i), PaymentID: fmt.Sprintf("pay_%d", i), At: time.Unix(int64(i), 0)}
		d.InDoubt = i == 5 // one in doubt among calls in flight
		v, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		r.keys, r.vals = append(r.keys, inDoubtKey(d.Key)), append(r.vals, v)
	}
	var found []string
	var cursors []string
	after := ""
	for range 10 {
		page, err := listIntents(r, IntentInDoubt, after, 10, 3)
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range page.Intents {
			found = append(found, in.PaymentID)
		}
		if page.Next == "" {
			break
		}
		cursors = append(cursors, page.Next)
		after = page.Next
	}
	if len(found) != 1 || found[0] != "pay_5" {
		t.Fatalf("found %v, want pay_5", found)
	}
	if want := []string{"k2", "k5"}; fmt.Sprint(cursors) != fmt.Sprint(want) {
		t.Fatalf("cursors %v, want %v (three entries read per page)", cursors, want)
	}
}

// The review queue reads at most its bound of open orders per request and
// says where to go on.
func TestListReviewsScanBound(t *testing.T) {
	r := &sortedReader{}
	for i := range 5 {
		// Orders this reader does not hold: not held, so not listed.
		r.keys = append(r.keys, orderExpiryKey(time.Unix(int64(i+1), 0), fmt.Sprintf("ord_%d", i)))
		r.vals = append(r.vals, nil)
	}
	var cursors []string
	after := ""
	for range 10 {
		page, err := listReviews(r, after, 10, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Payments) != 0 {
			t.Fatalf("listed %+v", page.Payments)
		}
		if page.Next == "" {
			break
		}
		cursors = append(cursors, page.Next)
		after = page.Next
	}
	want := []string{
		string(orderExpiryKey(time.Unix(2, 0), "ord_1"))[len(prefixOrderExpiry):],
		string(orderExpiryKey(time.Unix(4, 0), "ord_3"))[len(prefixOrderExpiry):],
	}
	if fmt.Sprint(cursors) != fmt.Sprint(want) {
		t.Fatalf("cursors %v, want %v (two entries read per page)", cursors, want)
	}
}
