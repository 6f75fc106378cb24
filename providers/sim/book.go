package sim

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	txswitch "github.com/txswitch/txswitch/switch"
)

// LedgerEntry is one request the PSP processed, keyed by idempotency key.
// Declined requests are recorded too (a decline is a processed request);
// requests refused before processing (503 X-Processed: false, 4xx) are not.
type LedgerEntry struct {
	Seq            uint64                   `json:"seq"`
	IdempotencyKey string                   `json:"idempotency_key"`
	PaymentID      string                   `json:"payment_id"`
	Op             txswitch.ProviderOp      `json:"op"`
	Method         string                   `json:"method,omitempty"`
	Amount         txswitch.Money           `json:"amount"`
	Status         txswitch.ProviderOutcome `json:"status"` // approved, declined or pending
	Code           string                   `json:"code,omitempty"`
	// ProviderRef is this entry's reference; for an authorization it is the
	// reference captures, refunds and cancels name.
	ProviderRef string `json:"provider_ref"`
	// AuthRef is the authorization a capture, refund or cancel applied to.
	AuthRef string `json:"auth_ref,omitempty"`
	// Captured marks an authorization with capture (money moved at once).
	Captured bool `json:"captured,omitempty"`
	// Release marks an approved cancel that released the uncaptured rest
	// of a partially captured authorization (Amount) instead of voiding
	// all of it.
	Release   bool      `json:"release,omitempty"`
	At        time.Time `json:"at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Totals is the PSP's view of one payment id, summed over every
// authorization that carried it.
type Totals struct {
	// Charges counts approved authorizations: more than one for a payment id
	// is a double charge.
	Charges    int   `json:"charges"`
	Authorized int64 `json:"authorized"` // approved authorizations minus cancelled and released amounts
	Captured   int64 `json:"captured"`
	Refunded   int64 `json:"refunded"`
	Released   int64 `json:"released,omitempty"` // uncaptured rests released after partial captures
}

// Decline codes of the money rules.
const (
	DeclineUnknownAuthorization = "unknown_authorization"
	DeclineNotApproved          = "authorization_not_approved"
	DeclineCancelled            = "authorization_cancelled"
	DeclineCurrencyMismatch     = "currency_mismatch"
	DeclineExceedsAuthorization = "amount_exceeds_authorization"
	DeclineExceedsCaptured      = "amount_exceeds_captured"
	DeclineAlreadyCaptured      = "already_captured"
	// DeclineNotTheRest refuses a release whose amount is not the
	// authorization's uncaptured rest (a release gives up all of it).
	DeclineNotTheRest = "amount_not_uncaptured_rest"
	// DeclineCancelledPending is the final status of a pending (redirect)
	// authorization cancelled before the shopper completed it.
	DeclineCancelledPending = "cancelled_before_completion"
	// DeclineNotPending refuses a pending-only cancellation of an
	// authorization that is no longer pending (the shopper completed).
	DeclineNotPending = "not_pending"
)

var (
	errKeyReused  = errors.New("idempotency key reused with a different request")
	errLedgerFull = errors.New("ledger full")
	errKeyFenced  = errors.New("idempotency key fenced by an earlier status inquiry")
)

// book is the PSP's deterministic core: idempotency, money rules and the
// ledger. It does no I/O and reads no clock (now is passed in); the server
// serializes calls.
type book struct {
	cap     int
	prefix  string
	entries []LedgerEntry
	byKey   map[string]*record
	auths   map[string]*auth    // by provider ref
	byPay   map[string][]string // payment id -> auth refs, in order
	// fenced are the keys a status inquiry found unknown. Answering
	// "not found" is a promise that the key is never processed afterwards
	// (a request under it that was delayed in a frozen switch or the
	// network would otherwise move money the switch has declared
	// unmoved). Bounded with the ledger: len(fenced) <= cap.
	fenced  map[string]struct{}
	nextRef uint64
}

type record struct {
	idx         int // into entries
	fingerprint [32]byte
	result      txswitch.ProviderResult
	// pendingDecline is the decline code decided at authorization time for a
	// pending (async) authorization, "" to approve.
	pendingDecline string
	notifyURL      string
	capture        bool // authorize with capture: capture on approval
}

type auth struct {
	ref       string
	key       string
	paymentID string
	amount    txswitch.Money
	status    txswitch.ProviderOutcome
	captured  int64
	refunded  int64
	released  int64 // the uncaptured rest given up after partial captures
	cancelled bool
}

func newBook(capacity int, prefix string) *book {
	return &book{cap: capacity, prefix: prefix, byKey: map[string]*record{}, auths: map[string]*auth{}, byPay: map[string][]string{},
		fenced: map[string]struct{}{}}
}

func fingerprint(req txswitch.ProviderRequest) [32]byte {
	b, _ := json.Marshal(req) // a struct of strings, numbers and a map: cannot fail
	return sha256.Sum256(b)
}

// process applies req once per idempotency key. A replay with the same
// request returns the stored (possibly since completed) result and
// replayed=true; a different request under the same key is errKeyReused. A
// new key when the ledger is full is errLedgerFull: the PSP refuses new
// business rather than forget old business. declineCode (authorize only)
// declines; async makes an authorization pending with completion later.
func (b *book) process(req txswitch.ProviderRequest, now time.Time, declineCode string, async bool, redirectBase string) (res txswitch.ProviderResult, replayed bool, err error) {
	fp := fingerprint(req)
	if r, ok := b.byKey[req.IdempotencyKey]; ok {
		if r.fingerprint != fp {
			return txswitch.ProviderResult{}, true, errKeyReused
		}
		return r.result, true, nil
	}
	if _, ok := b.fenced[req.IdempotencyKey]; ok {
		return txswitch.ProviderResult{}, false, errKeyFenced
	}
	if len(b.entries) >= b.cap {
		return txswitch.ProviderResult{}, false, errLedgerFull
	}
	b.nextRef++
	ref := fmt.Sprintf("%s_%06d", b.prefix, b.nextRef)
	e := LedgerEntry{
		Seq: uint64(len(b.entries) + 1), IdempotencyKey: req.IdempotencyKey, PaymentID: req.PaymentID,
		Op: req.Op, Method: req.Method, Amount: req.Amount, ProviderRef: ref, At: now, UpdatedAt: now,
	}
	rec := &record{idx: len(b.entries), fingerprint: fp}
	if req.Op == txswitch.OpAuthorize {
		a := &auth{ref: ref, key: req.IdempotencyKey, paymentID: req.PaymentID, amount: req.Amount}
		switch {
		case async:
			a.status = txswitch.OutcomePending
			rec.pendingDecline = declineCode
			rec.notifyURL = req.NotifyURL
			rec.capture = req.Capture
			res = txswitch.ProviderResult{Outcome: txswitch.OutcomePending, ProviderRef: ref, RedirectURL: redirectBase + ref}
		case declineCode != "":
			a.status = txswitch.OutcomeDeclined
			res = decline(ref, declineCode)
		default:
			a.status = txswitch.OutcomeApproved
			if req.Capture {
				a.captured = req.Amount.Value
				e.Captured = true
			}
			res = txswitch.ProviderResult{Outcome: txswitch.OutcomeApproved, ProviderRef: ref}
		}
		b.auths[ref] = a
		b.byPay[req.PaymentID] = append(b.byPay[req.PaymentID], ref)
	} else {
		var a *auth
		a, res = b.apply(req, ref, now)
		if a != nil {
			e.AuthRef = a.ref
			e.Release = req.Op == txswitch.OpCancel && res.Outcome == txswitch.OutcomeApproved && a.captured > 0
		}
	}
	if res.Outcome != txswitch.OutcomePending {
		amt := req.Amount
		res.Amount = &amt
	}
	e.Status, e.Code = res.Outcome, res.Code
	rec.result = res
	b.entries = append(b.entries, e)
	b.byKey[req.IdempotencyKey] = rec
	return res, false, nil
}

// apply runs a capture, refund or cancel against its authorization,
// enforcing the money rules a real PSP enforces: capture <= authorized not
// yet captured (nor released), refund <= captured not yet refunded, cancel
// of the whole authorization while nothing is captured, of exactly its
// uncaptured rest (a release) once some is. A violation is a decline, not
// an error.
func (b *book) apply(req txswitch.ProviderRequest, ref string, now time.Time) (*auth, txswitch.ProviderResult) {
	a := b.findAuth(req)
	if a == nil {
		return nil, decline(ref, DeclineUnknownAuthorization)
	}
	if req.Op == txswitch.OpCancel && a.status == txswitch.OutcomePending {
		return a, b.cancelPending(a, now)
	}
	if req.Op == txswitch.OpCancel && req.PendingOnly {
		return a, decline(ref, DeclineNotPending)
	}
	switch {
	case a.status != txswitch.OutcomeApproved:
		return a, decline(ref, DeclineNotApproved)
	case a.cancelled:
		return a, decline(ref, DeclineCancelled)
	case req.Op != txswitch.OpCancel && req.Amount.Currency != a.amount.Currency:
		return a, decline(ref, DeclineCurrencyMismatch)
	}
	switch req.Op {
	case txswitch.OpCapture:
		if req.Amount.Value > a.amount.Value-a.captured-a.released {
			return a, decline(ref, DeclineExceedsAuthorization)
		}
		a.captured += req.Amount.Value
	case txswitch.OpRefund:
		if req.Amount.Value > a.captured-a.refunded {
			return a, decline(ref, DeclineExceedsCaptured)
		}
		a.refunded += req.Amount.Value
	case txswitch.OpCancel:
		if a.captured > 0 {
			rest := a.amount.Value - a.captured - a.released
			switch {
			case rest == 0 || req.Amount.Value == 0 || req.Amount.Value == a.amount.Value:
				// Nothing left, or a void of the whole authorization
				// (which a cancel without an amount asks for).
				return a, decline(ref, DeclineAlreadyCaptured)
			case req.Amount.Value != rest || req.Amount.Currency != a.amount.Currency:
				return a, decline(ref, DeclineNotTheRest)
			}
			a.released += rest
			break
		}
		a.cancelled = true
	}
	return a, txswitch.ProviderResult{Outcome: txswitch.OutcomeApproved, ProviderRef: ref}
}

// cancelPending ends a pending authorization before the shopper completes
// it, as a PSP does for an abandoned redirect: the bank can no longer
// complete it, and a status inquiry answers declined from now on.
func (b *book) cancelPending(a *auth, now time.Time) txswitch.ProviderResult {
	a.status = txswitch.OutcomeDeclined
	a.cancelled = true
	if r, ok := b.byKey[a.key]; ok {
		e := &b.entries[r.idx]
		r.result = decline(a.ref, DeclineCancelledPending)
		amt := e.Amount
		r.result.Amount = &amt
		e.Status, e.Code, e.UpdatedAt = r.result.Outcome, r.result.Code, now
	}
	return txswitch.ProviderResult{Outcome: txswitch.OutcomeApproved, ProviderRef: a.ref}
}

// findAuth resolves the authorization by provider_ref or, when that is
// empty, by payment id if exactly one approved authorization carries it
// (with two there is no telling which one is meant).
func (b *book) findAuth(req txswitch.ProviderRequest) *auth {
	if req.ProviderRef != "" {
		a := b.auths[req.ProviderRef]
		if a == nil || a.paymentID != req.PaymentID {
			return nil
		}
		return a
	}
	var found *auth
	for _, ref := range b.byPay[req.PaymentID] {
		if a := b.auths[ref]; a.status == txswitch.OutcomeApproved {
			if found != nil {
				return nil
			}
			found = a
		}
	}
	return found
}

func decline(ref, code string) txswitch.ProviderResult {
	return txswitch.ProviderResult{Outcome: txswitch.OutcomeDeclined, ProviderRef: ref, Code: code, Message: "declined by the simulated PSP: " + code}
}

// complete finishes a pending authorization as the simulated bank would.
// It returns the final result and the URL to notify; ok is false when key
// is not pending (already completed: completion happens once).
func (b *book) complete(key string, now time.Time) (res txswitch.ProviderResult, notifyURL string, ok bool) {
	r, found := b.byKey[key]
	if !found || r.result.Outcome != txswitch.OutcomePending {
		return txswitch.ProviderResult{}, "", false
	}
	e := &b.entries[r.idx]
	a := b.auths[e.ProviderRef]
	if r.pendingDecline != "" {
		res = decline(e.ProviderRef, r.pendingDecline)
		a.status = txswitch.OutcomeDeclined
	} else {
		res = txswitch.ProviderResult{Outcome: txswitch.OutcomeApproved, ProviderRef: e.ProviderRef}
		a.status = txswitch.OutcomeApproved
		if r.capture {
			a.captured = a.amount.Value
			e.Captured = true
		}
	}
	amt := e.Amount
	res.Amount = &amt
	r.result = res
	e.Status, e.Code, e.UpdatedAt = res.Outcome, res.Code, now
	return res, r.notifyURL, true
}

// status is the answer to a status inquiry. An unknown key is fenced
// before "not found" is answered, so the answer stays true: a request under
// it that arrives later is refused (errKeyFenced), never processed. When
// the fence set is full the PSP cannot make that promise and answers
// errLedgerFull instead (the switch asks again later).
func (b *book) status(key string) (txswitch.ProviderResult, error) {
	if r, ok := b.byKey[key]; ok {
		return r.result, nil
	}
	if _, ok := b.fenced[key]; !ok {
		if len(b.fenced) >= b.cap {
			return txswitch.ProviderResult{}, errLedgerFull
		}
		b.fenced[key] = struct{}{}
	}
	return txswitch.ProviderResult{Outcome: txswitch.OutcomeNotFound,
		Message: "no request was processed under this idempotency key; the key is now fenced and will never be processed"}, nil
}

// ledger returns a copy of the entries, all or those of paymentID.
func (b *book) ledger(paymentID string) []LedgerEntry {
	out := make([]LedgerEntry, 0, len(b.entries))
	for _, e := range b.entries {
		if paymentID == "" || e.PaymentID == paymentID {
			out = append(out, e)
		}
	}
	return out
}

func (b *book) totals(paymentID string) Totals {
	var t Totals
	for _, ref := range b.byPay[paymentID] {
		a := b.auths[ref]
		if a.status != txswitch.OutcomeApproved {
			continue
		}
		t.Charges++
		if !a.cancelled {
			t.Authorized += a.amount.Value - a.released
		}
		t.Released += a.released
		t.Captured += a.captured
		t.Refunded += a.refunded
	}
	return t
}
