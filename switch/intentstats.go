package txswitch

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// States of an open intent (a money-moving provider call whose final
// result is not committed yet), as IntentStats counts them.
const (
	// IntentInFlight: the call is out (or the leader that made it died
	// and the resolver has not asked yet). Normal under traffic, for as
	// long as a provider call takes.
	IntentInFlight = "in_flight"
	// IntentInDoubt: the call failed without a definite answer; the
	// resolver asks the provider until it says.
	IntentInDoubt = "in_doubt"
	// IntentPending: the provider answered pending (a redirect method
	// waiting for the shopper).
	IntentPending = "pending"
	// IntentAmountMismatch: the provider approved another amount than
	// asked; only an operator settles it (POST /v1/admin/payments/{id}/resolve).
	IntentAmountMismatch = "amount_mismatch"
)

// IntentStates lists the states in a fixed order.
var IntentStates = []string{IntentInFlight, IntentInDoubt, IntentPending, IntentAmountMismatch}

// IntentStats is the open intents by state, with when the oldest of each
// was made: an alert on its age finds a provider that never answers
// before any shopper complains.
type IntentStats struct {
	Count  map[string]int
	Oldest map[string]time.Time // absent for a state without intents
	// Truncated: more than the limit were open; the counts are a floor.
	Truncated bool
}

// state classifies an open intent; an amount mismatch is also in doubt,
// but only an operator settles it.
func (d *inDoubtRec) state() string {
	switch {
	case d.AmountMismatch:
		return IntentAmountMismatch
	case d.InDoubt:
		return IntentInDoubt
	case d.Pending:
		return IntentPending
	}
	return IntentInFlight
}

// CountIntents reads at most limit entries of the in-doubt index (all when
// limit <= 0).
func CountIntents(r Reader, limit int) (IntentStats, error) {
	st := IntentStats{Count: make(map[string]int, len(IntentStates)), Oldest: map[string]time.Time{}}
	for _, s := range IntentStates {
		st.Count[s] = 0
	}
	var decodeErr error
	seen := 0
	start, end := prefixRange(prefixInDoubt)
	if err := r.Scan(start, end, func(k, v []byte) bool {
		if limit > 0 && seen == limit {
			st.Truncated = true
			return false
		}
		seen++
		var d inDoubtRec
		if err := json.Unmarshal(v, &d); err != nil {
			decodeErr = fmt.Errorf("decode %q: %w", k, err)
			return false
		}
		s := d.state()
		st.Count[s]++
		if o, ok := st.Oldest[s]; !ok || d.At.Before(o) {
			st.Oldest[s] = d.At
		}
		return true
	}); err != nil {
		return st, fmt.Errorf("scan in-doubt index: %w", err)
	}
	return st, decodeErr
}

// MaxIntentsCounted bounds the in-doubt index entries a metrics scrape
// reads: a backlog past it (a provider down for hours under traffic) is
// reported as at least this many.
const MaxIntentsCounted = 100_000

// IntentStats counts this node's open intents (from its replica of the
// state: a follower sees what the leader committed).
func (s *Svc) IntentStats() (IntentStats, error) {
	return CountIntents(s.store, MaxIntentsCounted)
}

// OpenIntent is one open intent as GET /v1/admin/intents lists it: enough
// to find the payment (and its operation) an alert is about.
type OpenIntent struct {
	State string `json:"state"`
	// Kind is payment, capture, refund or cancel.
	Kind string `json:"kind"`
	// Key is the provider idempotency key: the cursor of the listing.
	Key        string    `json:"key"`
	PaymentID  string    `json:"payment_id"`
	OrderID    string    `json:"order_id"`
	MerchantID string    `json:"merchant_id"`
	OpID       string    `json:"op_id,omitempty"`
	Attempt    int       `json:"attempt,omitempty"`
	Provider   string    `json:"provider"`
	Method     string    `json:"method"`
	Amount     Money     `json:"amount"`
	At         time.Time `json:"at"`
}

// IntentsResponse is the body of GET /v1/admin/intents.
type IntentsResponse struct {
	Intents []OpenIntent `json:"intents"`
	// Next, when set, is the after= of the following page: more intents
	// may follow (the page was full, or the scan stopped at its bound).
	Next string `json:"next,omitempty"`
}

// Bounds of one intents listing: the page, and the index entries one
// request reads looking for intents in the state asked (a page of
// amount_mismatch intents among many in flight ends early, with Next).
const (
	DefaultIntentsPage = 100
	MaxIntentsPage     = 1000
	maxIntentsScanned  = 10_000
)

// ListIntents lists the open intents in key order after the key after,
// those in state only when state is set; limit 0 is DefaultIntentsPage.
// Admin only; linearizable, like the other reads.
func (s *Svc) ListIntents(ctx context.Context, state, after string, limit int) (Reply, error) {
	if state != "" && !slices.Contains(IntentStates, state) {
		return Reply{}, NewError(KindInvalid, CodeInvalidQuery, "state",
			fmt.Sprintf("state must be one of %s", strings.Join(IntentStates, ", ")))
	}
	if limit == 0 {
		limit = DefaultIntentsPage
	}
	if limit < 0 || limit > MaxIntentsPage {
		return Reply{}, NewError(KindInvalid, CodeInvalidQuery, "limit", fmt.Sprintf("limit must be 1 to %d", MaxIntentsPage))
	}
	if len(after) > MaxIdempotencyKeyLen+64 {
		return Reply{}, NewError(KindInvalid, CodeInvalidQuery, "after", "after is not a key of this listing")
	}
	if err := s.barrier(ctx); err != nil {
		return Reply{}, err
	}
	page, err := listIntents(s.store, state, after, limit, maxIntentsScanned)
	if err != nil {
		return Reply{}, err
	}
	return jsonReply(200, page)
}

// CodeInvalidQuery is a query parameter the route does not accept.
const CodeInvalidQuery = "invalid_query"

func listIntents(r Reader, state, after string, limit, maxScanned int) (IntentsResponse, error) {
	page := IntentsResponse{Intents: []OpenIntent{}}
	start, end := prefixRange(prefixInDoubt)
	if after != "" {
		start = append(inDoubtKey(after), 0) // the first key past after
	}
	var decodeErr error
	scanned := 0
	last := ""
	if err := r.Scan(start, end, func(k, v []byte) bool {
		if len(page.Intents) == limit || scanned == maxScanned {
			page.Next = last
			return false
		}
		scanned++
		last = string(k[len(prefixInDoubt):])
		var d inDoubtRec
		if err := json.Unmarshal(v, &d); err != nil {
			decodeErr = fmt.Errorf("decode %q: %w", k, err)
			return false
		}
		st := d.state()
		if state != "" && st != state {
			return true
		}
		page.Intents = append(page.Intents, OpenIntent{State: st, Kind: d.Kind, Key: d.Key, PaymentID: d.PaymentID,
			OrderID: d.OrderID, MerchantID: d.MerchantID, OpID: d.OpID, Attempt: d.Attempt, Provider: d.Provider,
			Method: d.Method, Amount: d.Amount, At: d.At})
		return true
	}); err != nil {
		return page, fmt.Errorf("scan in-doubt index: %w", err)
	}
	return page, decodeErr
}
