package txswitch

import (
	"context"
	"errors"
	"io"
	"time"
)

// ---------------------------------------------------------------------------
// Replicated log (implemented by consensus/).

// Log is the replicated log the domain proposes commands to.
//
// Contract: Propose returns only after the command is committed on a quorum
// AND applied to this node's state machine, with the value StateMachine.Apply
// returned for it; otherwise it returns a definite error (one of the Err*
// below, possibly wrapped). It never drops a proposal silently: when it cannot
// know the outcome (ErrTimeout) the command may still commit later, so callers
// must make commands idempotent.
type Log interface {
	Propose(ctx context.Context, data []byte) (any, error)
	// ReadBarrier returns once this node's state machine reflects every write
	// committed before the call (raft ReadIndex), so a read that follows is
	// linearizable. Each call uses a fresh request context.
	ReadBarrier(ctx context.Context) error
	// Leadership reports this node's view: whether it leads, the leader's id
	// (0 when unknown) and the term.
	Leadership() Leadership
}

// Leadership is a node's view of who leads.
type Leadership struct {
	IsLeader bool
	LeaderID uint64
	Term     uint64
}

// Errors a Log returns. Each is definite: the caller knows what happened.
var (
	ErrNoLeader  = errors.New("no leader known")
	ErrTimeout   = errors.New("timed out waiting for commit and apply; outcome unknown")
	ErrStopped   = errors.New("node is shutting down")
	ErrQueueFull = errors.New("proposal queue is full")
	ErrDropped   = errors.New("proposal dropped by raft (leader changed or no leader)")
	// ErrRemoved: this node was removed from the cluster. It is refused
	// before anything is proposed or read: a removed node hears nothing
	// more from the cluster, so it could neither learn a proposal's
	// outcome nor confirm a read.
	ErrRemoved = errors.New("this node was removed from the cluster")
)

// ---------------------------------------------------------------------------
// State machine (implemented here, driven by consensus/).

// Command is one committed log entry handed to the state machine.
type Command struct {
	Index uint64
	Term  uint64
	Data  []byte
}

// StateMachine is the deterministic replicated state machine.
//
// Contract:
//   - Apply receives committed commands in log order. It persists the effects
//     of the whole slice and AppliedIndex = last command's Index in ONE atomic
//     write, so after a crash a command is neither lost nor applied twice.
//     It returns one result per command (handed to the proposer). A domain
//     rejection is a result, not an error; an error means the store failed and
//     the node must stop.
//   - Commands with empty Data (raft's empty entries) must still advance the
//     applied index.
//   - AppliedIndex is the durable applied index (0 for a fresh store).
//   - Snapshot makes the applied state durable (synced) and returns a
//     consistent image of it at the index it reports. Consensus calls it
//     from a background goroutine, CONCURRENTLY with Apply: the image must
//     be one consistent state at that index. Restore replaces the whole
//     state with such an image (never concurrently with Apply).
type StateMachine interface {
	Apply(cmds []Command) ([]any, error)
	AppliedIndex() uint64
	Snapshot() (index uint64, data []byte, err error)
	Restore(index uint64, data []byte) error
}

// ---------------------------------------------------------------------------
// State store (implemented by storage/).

// ErrNotFound is returned by Get when a key is absent.
var ErrNotFound = errors.New("not found")

// Reader reads the state machine's key space.
type Reader interface {
	// Get returns a copy of key's value (the caller may keep it), or
	// ErrNotFound.
	Get(key []byte) ([]byte, error)
	// Scan calls fn for each key in [start, end) in key order until fn
	// returns false. The slices passed to fn are only valid during the call.
	Scan(start, end []byte, fn func(key, value []byte) bool) error
}

// Store is the state machine's key space plus its applied index.
type Store interface {
	Reader
	// NewBatch starts an atomic write that also reads its own writes.
	NewBatch() Batch
	AppliedIndex() (uint64, error)
	// SnapshotState syncs and returns a consistent image of every key and the
	// applied index; RestoreState replaces everything with such an image.
	SnapshotState() (index uint64, data []byte, err error)
	RestoreState(index uint64, data []byte) error
	// OpenImage and RestoreImage are the streamed forms of SnapshotState
	// and RestoreState, in bounded memory whatever the size of the state:
	// OpenImage pins a consistent view of the state and its applied index,
	// durable when it returns; RestoreImage replaces the state with an
	// image of size bytes read from r. A crash during RestoreImage leaves
	// AppliedIndex where it was (below index), so the restore is redone.
	OpenImage() (StateImage, error)
	RestoreImage(index uint64, r io.Reader, size int64) error
	// View pins a consistent read-only view of the state as it is now
	// (whole batches only), until Close: several reads that must agree
	// with each other, while apply goes on.
	View() (View, error)
}

// View is a consistent read-only view of the state (Store.View).
type View interface {
	Reader
	Close() error
}

// StateImage is a consistent view of the state at Index, written on
// demand, as many times as asked (concurrently too), until Close.
type StateImage interface {
	Index() uint64
	WriteTo(w io.Writer) (int64, error)
	Close() error
}

// ImageSink receives a state image a follower stages (consensus hands it
// what the transport reads; storage keeps it): Commit validates the whole
// image and makes it durable, Abort discards it.
type ImageSink interface {
	io.Writer
	Commit() (size int64, err error)
	Abort()
}

// ErrImageStaged: the image of that snapshot is already staged whole.
var ErrImageStaged = errors.New("state image already staged")

// Batch is an atomic write over the state key space.
type Batch interface {
	Reader
	// Set copies key and value: the caller may reuse both afterwards.
	Set(key, value []byte) error
	Delete(key []byte) error
	// DeleteRange deletes every key in [start, end) without reading them
	// (start < end; a store may keep one range tombstone).
	DeleteRange(start, end []byte) error
	// Commit writes the batch and the applied index atomically. It need not
	// sync: the raft log is durable and re-applies after a crash from the
	// last committed applied index.
	Commit(appliedIndex uint64) error
	Close() error
}

// ---------------------------------------------------------------------------
// Providers (implemented by providers/).

// ProviderOp is a provider operation.
type ProviderOp string

const (
	OpAuthorize ProviderOp = "authorize"
	OpCapture   ProviderOp = "capture"
	OpRefund    ProviderOp = "refund"
	OpCancel    ProviderOp = "cancel"
	OpStatus    ProviderOp = "status"
)

// ProviderRequest is one money-moving call (or a status inquiry).
// IdempotencyKey is stable across retries of the same attempt (payment id +
// attempt number, or the capture/refund id); the provider must never move
// money twice for one key.
type ProviderRequest struct {
	IdempotencyKey string            `json:"idempotency_key"`
	Op             ProviderOp        `json:"op"`
	PaymentID      string            `json:"payment_id"`
	OrderID        string            `json:"order_id"`
	MerchantID     string            `json:"merchant_id"`
	Method         string            `json:"method"`
	Amount         Money             `json:"amount"`
	Country        string            `json:"country,omitempty"`
	Capture        bool              `json:"capture,omitempty"` // authorize and capture at once
	PaymentData    map[string]string `json:"payment_data,omitempty"`
	// ProviderRef is the provider's reference of the authorization that a
	// capture, refund or cancel applies to.
	ProviderRef string `json:"provider_ref,omitempty"`
	// NotifyURL is where an asynchronous method reports completion.
	NotifyURL string `json:"notify_url,omitempty"`
	// PendingOnly (cancel only) ends the attempt only while it is still
	// pending, as for an abandoned redirect: once the shopper completed,
	// the provider refuses it instead of voiding the authorization, which
	// the switch, having recorded the completion meanwhile, would still
	// count as held.
	PendingOnly bool `json:"pending_only,omitempty"`
}

// ProviderOutcome is what a provider said.
type ProviderOutcome string

const (
	OutcomeApproved ProviderOutcome = "approved"  // money moved / authorization held
	OutcomeDeclined ProviderOutcome = "declined"  // definitive refusal (issuer, rules)
	OutcomePending  ProviderOutcome = "pending"   // asynchronous: a notification follows
	OutcomeNotFound ProviderOutcome = "not_found" // status inquiry: the provider never processed the key
)

// ProviderResult is a provider's answer.
type ProviderResult struct {
	Outcome     ProviderOutcome `json:"outcome"`
	ProviderRef string          `json:"provider_ref,omitempty"`
	Code        string          `json:"code,omitempty"`
	Message     string          `json:"message,omitempty"`
	// RedirectURL is where the shopper completes a redirect method.
	RedirectURL string `json:"redirect_url,omitempty"`
	// Amount is the amount the provider processed, when it says.
	Amount *Money `json:"amount,omitempty"`
}

// ProviderError is a provider call that produced no ProviderResult.
// Definitive means the provider certainly did not process the request
// (connection refused, breaker open, 5xx before processing): the switch may
// fail over. A non-definitive error (timeout, reset after sending, garbled
// answer) leaves the payment in doubt: resolve by status inquiry, never by
// charging again.
type ProviderError struct {
	Provider   string
	Op         ProviderOp
	Definitive bool
	Code       string // machine code: "breaker_open", "connection_refused", "timeout", "http_503", ...
	Err        error
}

func (e *ProviderError) Error() string {
	kind := "in doubt"
	if e.Definitive {
		kind = "definitive"
	}
	return "provider " + e.Provider + " " + string(e.Op) + " failed (" + kind + ", " + e.Code + "): " + errString(e.Err)
}

func (e *ProviderError) Unwrap() error { return e.Err }

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// Provider is one payment service provider, already wrapped in its breaker.
//
// The status inquiry (OpStatus) is a fence: when it answers not_found, the
// provider guarantees that no request under that idempotency key will be
// processed afterwards (the simulated PSP refuses it with
// idempotency_key_fenced; a real PSP's adapter gets the same effect with a
// "technical cancel" by reference). The resolver relies on it: it settles
// an intent as never received on a not_found answer, and a request for
// that intent still travelling from a stalled former leader must then not
// move money.
type Provider interface {
	Name() string
	// Do performs req before ctx's deadline. It returns either a result or a
	// *ProviderError.
	Do(ctx context.Context, req ProviderRequest) (ProviderResult, error)
}

// BreakerState is a breaker's state as routing sees it.
type BreakerState string

const (
	BreakerClosed   BreakerState = "closed"
	BreakerHalfOpen BreakerState = "half_open"
	BreakerOpen     BreakerState = "open"
)

// ProviderConfig is a provider's replicated configuration.
type ProviderConfig struct {
	Name    string `json:"name"`
	BaseURL string `json:"base_url"`
	// TimeoutMillis bounds one call; past it the call is in doubt.
	TimeoutMillis int64 `json:"timeout_ms"`
	// Breaker settings (sony/gobreaker): open after ConsecutiveFailures
	// definitive failures or timeouts in a row, or when FailureRatio is
	// exceeded over at least MinRequests in IntervalMillis; stay open
	// OpenMillis, then let HalfOpenMax probes through.
	Breaker BreakerConfig `json:"breaker"`
}

// BreakerConfig configures one provider's breakers.
type BreakerConfig struct {
	ConsecutiveFailures uint32  `json:"consecutive_failures"`
	FailureRatio        float64 `json:"failure_ratio"`
	MinRequests         uint32  `json:"min_requests"`
	IntervalMillis      int64   `json:"interval_ms"`
	OpenMillis          int64   `json:"open_ms"`
	HalfOpenMax         uint32  `json:"half_open_max"`
}

// Providers is the set of configured providers with a breaker per
// (provider, method).
type Providers interface {
	// Configure replaces the provider set (called after a config change is
	// applied). Breakers of providers that remain keep their state.
	Configure(cfgs []ProviderConfig) error
	// Get returns the provider wrapped in the breaker for method.
	Get(name, method string) (Provider, bool)
	// State reports the breaker of (provider, method); unknown is closed.
	State(name, method string) BreakerState
}

// ---------------------------------------------------------------------------
// Time.

// Clock gives the proposer's time; apply never reads a clock (timestamps are
// inside commands).
type Clock interface {
	Now() time.Time
}

// SystemClock is the wall clock.
type SystemClock struct{}

// Now returns the current time in UTC.
func (SystemClock) Now() time.Time { return time.Now().UTC() }
