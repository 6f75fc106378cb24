package scenarios

import (
	"encoding/json"
	"sync"
	"time"
)

// maxCalls bounds the client's record of one scenario; past it the run
// fails as "evidence truncated" rather than judging on half the evidence.
const maxCalls = 500_000

// Call is one HTTP request the client sent and what came back: the
// client's own record, independent of anything the switch says later.
type Call struct {
	Seq    int    `json:"seq"`
	FlowID int    `json:"flow_id"`
	Flow   string `json:"flow"`
	// Op names the request: create_order, create_payment, capture, refund,
	// cancel, review, get_order, get_payment, get_methods (callOps).
	Op     string `json:"op"`
	Method string `json:"method"`
	Path   string `json:"path"`
	Node   string `json:"node"`
	Key    string `json:"key,omitempty"`
	// Target is the order or payment the request acts on ("" to create).
	Target string `json:"target,omitempty"`
	// Bad marks a deliberately invalid request (must get a 4xx).
	Bad     bool            `json:"bad,omitempty"`
	Attempt int             `json:"attempt"`
	Req     json.RawMessage `json:"req,omitempty"`
	Start   time.Time       `json:"start"`
	End     time.Time       `json:"end"`
	Status  int             `json:"status"` // 0: no answer
	Body    json.RawMessage `json:"body,omitempty"`
	Err     string          `json:"err,omitempty"`
}

// Acked reports whether the switch acknowledged the write (2xx).
func (c *Call) Acked() bool { return c.Status >= 200 && c.Status < 300 }

// FlowRun is one flow instance: an arrival of the open-loop generator.
type FlowRun struct {
	ID    int       `json:"id"`
	Flow  string    `json:"flow"`
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// Pays says the flow tried to take a payment; Outcome is how that
	// went: "succeeded", "declined", "failed" (no usable payment).
	Pays    bool   `json:"pays"`
	Outcome string `json:"outcome,omitempty"`
	OrderID string `json:"order_id,omitempty"`
}

// Claim is something a bad request must not have changed: checked
// against the final state.
type Claim struct {
	Call  int    `json:"call"` // Seq of the bad request
	Kind  string `json:"kind"` // order_payments | payment_captured | payment_refunded
	ID    string `json:"id"`
	Value int64  `json:"value"`
}

// History is the client's record of a run.
type History struct {
	mu        sync.Mutex
	calls     []Call
	runs      []FlowRun
	claims    []Claim
	truncated int
	dropped   int // arrivals not started: concurrency limit reached
}

func (h *History) addCall(c Call) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.calls) >= maxCalls {
		h.truncated++
		return -1
	}
	c.Seq = len(h.calls)
	h.calls = append(h.calls, c)
	return c.Seq
}

func (h *History) addRun(r FlowRun) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.runs = append(h.runs, r)
}

func (h *History) addClaim(c Claim) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.claims = append(h.claims, c)
}

func (h *History) drop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.dropped++
}

// snapshot copies the record for the checkers.
func (h *History) snapshot() ([]Call, []FlowRun, []Claim, int, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Call(nil), h.calls...), append([]FlowRun(nil), h.runs...), append([]Claim(nil), h.claims...), h.truncated, h.dropped
}
