package txswitch

import (
	"encoding/json"
	"time"
)

// Stored records. They embed the API resources so a read is one Get and a
// reply is one Marshal; the extra fields are internal state no API shows.

// orderRec is an order as stored under o/<id>. Payments are not embedded
// (they live under p/ and are listed by the op/ index).
type orderRec struct {
	Order
	orderExtra
	// paymentIDs mirrors the op/ index in creation order when idsKnown
	// (never stored: the op/ keys are the stored form). It saves apply a
	// prefix scan per command on orders it has touched recently.
	paymentIDs []string
	idsKnown   bool
}

// orderExtra is the internal part of orderRec. It is a separate embedded
// struct so the API resource and the extras can be encoded separately and
// joined (encoding/json flattens both the same way).
type orderExtra struct {
	NumPayments int    `json:"num_payments"`
	TimelineSeq uint64 `json:"timeline_seq"`
	// OfferHash identifies the last methods offer recorded on the timeline.
	OfferHash   string `json:"offer_hash,omitempty"`
	OfferEvents int    `json:"offer_events,omitempty"`
}

// paymentRec is a payment as stored under p/<id>.
type paymentRec struct {
	Payment
	paymentExtra
}

// paymentExtra is the internal part of paymentRec (see orderExtra).
type paymentExtra struct {
	Country     string            `json:"country"` // customer country, for provider requests
	PaymentData map[string]string `json:"payment_data,omitempty"`
	Candidates  []RouteCandidate  `json:"candidates,omitempty"`
	// Open is the provider attempt awaiting its result.
	Open *openAttempt `json:"open,omitempty"`
	// Idem is the idempotency record of the request that created the
	// payment; the final result finishes it with the reply.
	Idem *idemRef `json:"idem,omitempty"`
	// Reserved amounts of captures and refunds whose result is not known:
	// they count against the limits so concurrent operations cannot
	// overshoot.
	PendingCapture int64  `json:"pending_capture,omitempty"`
	PendingRefund  int64  `json:"pending_refund,omitempty"`
	PendingCancel  string `json:"pending_cancel,omitempty"`
	CancelAttempts int    `json:"cancel_attempts,omitempty"`
}

type openAttempt struct {
	N        int       `json:"n"`
	Provider string    `json:"provider"`
	Key      string    `json:"key"`
	At       time.Time `json:"at"`
}

// Idempotency record states.
const (
	idemInProgress = "in_progress"
	idemDone       = "done"
)

// idemRecord is an idempotency record under i/<merchant>\x00<key>.
type idemRecord struct {
	Fingerprint string    `json:"fingerprint"`
	State       string    `json:"state"`
	Reply       *Reply    `json:"reply,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
}

// inDoubtRec is an intent without a final result, under d/<provider key>.
// It holds everything a status inquiry needs, so the resolver on a new
// leader can ask without any in-memory state.
type inDoubtRec struct {
	Kind        string    `json:"kind"` // payment, capture, refund, cancel
	Key         string    `json:"key"`
	PaymentID   string    `json:"payment_id"`
	OrderID     string    `json:"order_id"`
	MerchantID  string    `json:"merchant_id"`
	OpID        string    `json:"op_id,omitempty"`
	Attempt     int       `json:"attempt,omitempty"`
	Provider    string    `json:"provider"`
	Method      string    `json:"method"`
	Amount      Money     `json:"amount"`
	Country     string    `json:"country,omitempty"`
	Capture     bool      `json:"capture,omitempty"`
	ProviderRef string    `json:"provider_ref,omitempty"`
	At          time.Time `json:"at"`
	// InDoubt: the call failed without a definite answer. Otherwise the
	// call may still be in flight, or the provider answered "pending".
	InDoubt bool `json:"in_doubt,omitempty"`
	Pending bool `json:"pending,omitempty"`
	// AmountMismatch: the provider approved another amount than asked
	// (VersionProviderAmount); recorded once on the timeline.
	AmountMismatch bool     `json:"amount_mismatch,omitempty"`
	Idem           *idemRef `json:"idem,omitempty"`
}

// InDoubt is an intent without a final result, as the resolver sees it.
type InDoubt = inDoubtRec

// errorBody is API.md's error format.
type errorBody struct {
	Error *Error `json:"error"`
}

func errorReply(e *Error) Reply {
	body, _ := json.Marshal(errorBody{Error: e}) // marshalling strings cannot fail
	return Reply{Status: e.Status, Body: body}
}

func jsonReply(status int, v any) (Reply, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return Reply{}, err
	}
	return Reply{Status: status, Body: body}, nil
}
