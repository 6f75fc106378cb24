package txswitch

import (
	"encoding/json"
	"fmt"
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

// intentState is the part of an in-doubt record IntentStats reads.
type intentState struct {
	At             time.Time `json:"at"`
	InDoubt        bool      `json:"in_doubt"`
	Pending        bool      `json:"pending"`
	AmountMismatch bool      `json:"amount_mismatch"`
}

func (d intentState) state() string {
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
		var d intentState
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
