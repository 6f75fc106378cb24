package txswitch

import (
	"context"
	"encoding/json"
	"time"
)

// This file is the wire contract of ../shared/API.md as Go types. Fields may
// be added; none may be renamed or removed.

// Money is an amount in integer minor units of an ISO 4217 currency.
type Money struct {
	Value    int64  `json:"value"`
	Currency string `json:"currency"`
}

// Order statuses (API.md).
const (
	OrderCreated           = "created"
	OrderPending           = "pending"
	OrderHeldForReview     = "held_for_review"
	OrderAuthorized        = "authorized"
	OrderPaid              = "paid"
	OrderPartiallyRefunded = "partially_refunded"
	OrderRefunded          = "refunded"
	OrderFailed            = "failed"
	OrderCancelled         = "cancelled"
	OrderExpired           = "expired"
)

// Payment statuses (API.md).
const (
	PaymentPending           = "pending"
	PaymentInDoubt           = "in_doubt"
	PaymentAuthorized        = "authorized"
	PaymentCaptured          = "captured"
	PaymentPartiallyRefunded = "partially_refunded"
	PaymentRefunded          = "refunded"
	PaymentDeclined          = "declined"
	PaymentFailed            = "failed"
	PaymentCancelled         = "cancelled"
	PaymentHeldForReview     = "held_for_review"
)

// Channels.
const (
	ChannelOnline = "online"
	ChannelPOS    = "pos"
	ChannelMOTO   = "moto"
)

// Customer is who pays.
type Customer struct {
	Country string `json:"country"`
	ID      string `json:"id,omitempty"`
	Email   string `json:"email,omitempty"`
}

// OrderLine is one line of an order.
type OrderLine struct {
	SKU        string `json:"sku"`
	Quantity   int64  `json:"quantity"`
	UnitAmount int64  `json:"unit_amount"`
	Category   string `json:"category,omitempty"`
}

// CreateOrderRequest is the body of POST /v1/orders.
type CreateOrderRequest struct {
	Reference string      `json:"reference"`
	Amount    Money       `json:"amount"`
	Customer  Customer    `json:"customer"`
	Channel   string      `json:"channel"`
	Lines     []OrderLine `json:"lines,omitempty"`
}

// CreatePaymentRequest is the body of POST /v1/orders/{id}/payments.
type CreatePaymentRequest struct {
	Method      string            `json:"method"`
	Amount      *Money            `json:"amount,omitempty"`
	Capture     string            `json:"capture,omitempty"` // automatic (default) | manual
	PaymentData map[string]string `json:"payment_data,omitempty"`
}

// CaptureRequest is the body of POST /v1/payments/{id}/captures.
type CaptureRequest struct {
	Amount *Money `json:"amount,omitempty"` // default: the rest of the authorization
}

// RefundRequest is the body of POST /v1/payments/{id}/refunds.
type RefundRequest struct {
	Amount  *Money `json:"amount,omitempty"` // default: everything captured and not refunded
	Reason  string `json:"reason,omitempty"`
	Channel string `json:"channel,omitempty"` // where the return happened: online, pos, moto
}

// Failure says why a payment did not succeed.
type Failure struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Order is the order resource.
type Order struct {
	ID         string      `json:"id"`
	MerchantID string      `json:"merchant_id"`
	Reference  string      `json:"reference"`
	Status     string      `json:"status"`
	Amount     Money       `json:"amount"`
	Customer   Customer    `json:"customer"`
	Channel    string      `json:"channel"`
	Lines      []OrderLine `json:"lines,omitempty"`
	Authorized Money       `json:"authorized"`
	Captured   Money       `json:"captured"`
	Refunded   Money       `json:"refunded"`
	Payments   []Payment   `json:"payments"`
	CreatedAt  time.Time   `json:"created_at"`
	UpdatedAt  time.Time   `json:"updated_at"`
	// ExpiresAt is when the order expires if it is still unpaid (nil: it
	// does not expire: created before the cluster ran version 2).
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// Payment is the payment resource.
type Payment struct {
	ID          string `json:"id"`
	OrderID     string `json:"order_id"`
	MerchantID  string `json:"merchant_id"`
	Status      string `json:"status"`
	Provider    string `json:"provider,omitempty"`
	ProviderRef string `json:"provider_ref,omitempty"`
	Method      string `json:"method"`
	Amount      Money  `json:"amount"`
	Surcharge   *Money `json:"surcharge,omitempty"`
	Authorized  Money  `json:"authorized"`
	Captured    Money  `json:"captured"`
	Refunded    Money  `json:"refunded"`
	// Released is the authorized money given back uncaptured after part
	// of the authorization was captured (a cancel of a partially captured
	// payment): the authorization shrank by it. Nil when nothing was.
	Released    *Money    `json:"released,omitempty"`
	CaptureMode string    `json:"capture"`
	RedirectURL string    `json:"redirect_url,omitempty"`
	Failure     *Failure  `json:"failure,omitempty"`
	Attempt     int       `json:"attempt"`
	Refunds     []Refund  `json:"refunds,omitempty"`
	Captures    []Capture `json:"captures,omitempty"`
	// Cancellation is the latest request to void the authorization, from
	// the moment it is made: a void the provider has not confirmed yet is
	// visible here, not only after it succeeded. Absent in records written
	// before it existed (they decode as nil).
	Cancellation *Cancellation `json:"cancellation,omitempty"`
	CreatedAt    time.Time     `json:"created_at"`
	UpdatedAt    time.Time     `json:"updated_at"`
}

// Cancellation is a payment's (latest) request to void its authorization.
// While its status is pending or in_doubt the payment keeps its status
// (authorized): the void may or may not have happened at the provider, and
// the switch settles it by a status inquiry under the same key, never by a
// second void.
type Cancellation struct {
	// Attempt numbers the payment's cancellation requests: a declined or
	// failed cancellation may be retried, as attempt 2 under a new
	// provider key.
	Attempt int    `json:"attempt"`
	Status  string `json:"status"` // pending | succeeded | failed | in_doubt
	// Amount is what the request voids: the whole authorization, or its
	// uncaptured rest when part of it was captured (a release). Absent in
	// records written before cluster version VersionRelease.
	Amount    *Money    `json:"amount,omitempty"`
	Failure   *Failure  `json:"failure,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Capture is one (partial) capture of a payment.
type Capture struct {
	ID        string    `json:"id"`
	PaymentID string    `json:"payment_id"`
	Amount    Money     `json:"amount"`
	Status    string    `json:"status"` // pending | succeeded | failed | in_doubt
	CreatedAt time.Time `json:"created_at"`
}

// Refund is the refund resource (ids ref_…).
type Refund struct {
	ID        string    `json:"id"`
	PaymentID string    `json:"payment_id"`
	OrderID   string    `json:"order_id"`
	Amount    Money     `json:"amount"`
	Reason    string    `json:"reason,omitempty"`
	Channel   string    `json:"channel,omitempty"`
	Status    string    `json:"status"` // pending | succeeded | failed | in_doubt
	Failure   *Failure  `json:"failure,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// MethodOffer is one entry of GET /v1/orders/{id}/methods.
type MethodOffer struct {
	Method    string   `json:"method"`
	Surcharge Money    `json:"surcharge"`
	Providers []string `json:"providers,omitempty"`
}

// MethodExclusion says why a method was not offered.
type MethodExclusion struct {
	Method string `json:"method"`
	Reason string `json:"reason"` // disabled, country, currency, channel, amount_below_min, amount_above_max, no_route, all_providers_down
	Detail string `json:"detail,omitempty"`
}

// MethodsResponse is the body of GET /v1/orders/{id}/methods.
type MethodsResponse struct {
	Methods  []MethodOffer     `json:"methods"`
	Excluded []MethodExclusion `json:"excluded,omitempty"`
}

// TimelineEvent is one step the switch took for an order. Data holds the
// type-specific details (breaker states seen, provider latency and codes...).
type TimelineEvent struct {
	Seq       uint64          `json:"seq"`
	At        time.Time       `json:"at"`
	Type      string          `json:"type"`
	PaymentID string          `json:"payment_id,omitempty"`
	Message   string          `json:"message,omitempty"`
	Data      json.RawMessage `json:"data,omitempty"`
}

// TimelineResponse is the body of GET /v1/orders/{id}/timeline.
type TimelineResponse struct {
	Events []TimelineEvent `json:"events"`
}

// Explanation is the body of GET /v1/orders/{id}/explain.
type Explanation struct {
	Status  string  `json:"status"`
	Summary string  `json:"summary"`
	Causes  []Cause `json:"causes"`
}

// Cause is one reason in an Explanation.
type Cause struct {
	Code      string `json:"code"` // provider_down, provider_slow, declined, invalid_input, in_doubt, held_for_review...
	Message   string `json:"message"`
	PaymentID string `json:"payment_id,omitempty"`
	Provider  string `json:"provider,omitempty"`
}

// ---------------------------------------------------------------------------
// Errors and replies.

// Error kinds map onto HTTP statuses in the API layer.
const (
	KindInvalid       = 400 // malformed or semantically invalid input
	KindUnauthorized  = 401
	KindNotFound      = 404
	KindConflict      = 409 // state does not allow it (capture a declined payment...)
	KindUnprocessable = 422 // idempotency_key_reused, business rule violations
	KindRateLimited   = 429
	KindUnavailable   = 503 // this node cannot serve: no leader, shutting down, queue full
)

// Error is a domain error with a machine-readable code (API.md's error format).
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf is a shorthand for a domain error.
func NewError(status int, code, field, message string) *Error {
	return &Error{Status: status, Code: code, Field: field, Message: message}
}

// Reply is a finished response: the HTTP status and the JSON body. Replies of
// POSTs are stored with their idempotency key, so a retry gets the same bytes.
type Reply struct {
	Status int             `json:"status"`
	Body   json.RawMessage `json:"body"`
}

// Caller identifies the authenticated merchant of a request.
type Caller struct {
	MerchantID     string
	IdempotencyKey string // "" when the request carried none
}

// Service is what the HTTP API calls. Every method validates its input,
// returns *Error for the caller's mistakes and for unavailability, and
// otherwise a Reply. Mutating methods run on the leader (the API forwards
// there); reads are linearizable.
type Service interface {
	Authenticate(ctx context.Context, apiKey string) (merchantID string, err error)

	CreateOrder(ctx context.Context, c Caller, req CreateOrderRequest) (Reply, error)
	GetOrder(ctx context.Context, c Caller, orderID string) (Reply, error)
	Methods(ctx context.Context, c Caller, orderID string) (Reply, error)
	Timeline(ctx context.Context, c Caller, orderID string) (Reply, error)
	Explain(ctx context.Context, c Caller, orderID string) (Reply, error)

	CreatePayment(ctx context.Context, c Caller, orderID string, req CreatePaymentRequest) (Reply, error)
	GetPayment(ctx context.Context, c Caller, paymentID string) (Reply, error)
	Capture(ctx context.Context, c Caller, paymentID string, req CaptureRequest) (Reply, error)
	Refund(ctx context.Context, c Caller, paymentID string, req RefundRequest) (Reply, error)
	Cancel(ctx context.Context, c Caller, paymentID string) (Reply, error)

	// Notify takes an asynchronous completion from a provider (deduplicated
	// by NotificationID).
	Notify(ctx context.Context, provider string, n ProviderNotification) (Reply, error)

	// ReviewPayment releases (approve: the authorization proceeds) or
	// rejects a payment held for manual fraud review. Admin only.
	ReviewPayment(ctx context.Context, paymentID string, req ReviewRequest) (Reply, error)
	// ResolvePayment settles a payment attempt in doubt by hand, after the
	// operator reconciled it with the provider. Admin only.
	ResolvePayment(ctx context.Context, paymentID string, req ResolveRequest) (Reply, error)

	// Admin: routing configuration as replicated state.
	GetConfig(ctx context.Context) (Reply, error)
	PutConfig(ctx context.Context, cfg RoutingConfig) (Reply, error)

	// ListIntents lists the provider calls without a final result (in
	// flight, in doubt, pending, amount mismatch), state "" for all.
	// Admin only.
	ListIntents(ctx context.Context, state, after string, limit int) (Reply, error)
	// ListReviews lists the payments held for manual review, the soonest
	// to expire first. Admin only.
	ListReviews(ctx context.Context, after string, limit int) (Reply, error)
}

// ReviewRequest is the body of POST /v1/admin/payments/{id}/review.
type ReviewRequest struct {
	Decision string `json:"decision"` // approve | reject
	Note     string `json:"note,omitempty"`
}

// ProviderNotification is a provider's asynchronous report on a key.
type ProviderNotification struct {
	NotificationID string         `json:"notification_id"`
	IdempotencyKey string         `json:"idempotency_key"`
	Result         ProviderResult `json:"result"`
}

// ---------------------------------------------------------------------------
// Outbox (read by the central-database exporter).

// OutboxEvent is one committed change shipped to the central database,
// exactly once, in Seq order. Seq is dense and assigned in apply.
// Resource is the full JSON of the changed resource (an Order without
// Payments, a Payment, a Refund, a TimelineEvent or a Merchant), so the
// exporter can upsert without reconstructing state: as it was right after
// the change, or (from VersionOutboxRefs, for orders, payments and
// timeline events) as it was when ReadOutbox read it, at outbox head AsOf.
type OutboxEvent struct {
	Seq        uint64          `json:"seq"`
	ID         string          `json:"id"`   // stable event id: "evt_<seq>"
	Kind       string          `json:"kind"` // order, payment, refund, timeline, merchant
	MerchantID string          `json:"merchant_id"`
	OrderID    string          `json:"order_id,omitempty"`
	At         time.Time       `json:"at"`
	Resource   json.RawMessage `json:"resource"`
	// AsOf, when set, is the outbox head of the consistent view Resource
	// was read from (>= Seq): the resource shows every change up to it.
	AsOf uint64 `json:"as_of,omitempty"`
}

// RowVersion is the version of the state Resource shows, for a row that
// must never move backwards: AsOf when the resource was read when asked
// (it may show changes of later events), Seq otherwise.
func (e *OutboxEvent) RowVersion() uint64 { return max(e.Seq, e.AsOf) }
