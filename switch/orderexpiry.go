package txswitch

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Order expiry: an order nobody paid expires, so it stops blocking stock
// and reporting shows it as abandoned rather than open forever. Each
// order gets expires_at at creation (created_at + the merchant's
// order_expiry_seconds, default a day); past it, the order refuses new
// payments (409 order_expired) and the leader's sweep marks it expired,
// with a timeline event and an explain cause. An order with a payment
// still moving (pending at the bank, in doubt, held for review) waits for
// that payment: the sweep looks again later. Money never moves on an
// expired order, so its status never changes again.
//
// expires_at and the oe/ index are formats of cluster version 2: orders
// created while an older binary was still a member do not expire.
const (
	// VersionOrderExpiry is the cluster version that writes expires_at.
	VersionOrderExpiry = 2
	// DefaultOrderExpiry applies when a merchant sets none.
	DefaultOrderExpiry = 24 * time.Hour
	// MaxOrderExpirySeconds bounds a merchant's setting (90 days).
	MaxOrderExpirySeconds = 90 * 24 * 3600
	// orderExpiryRecheck is when the sweep looks again at an order whose
	// payment was still moving at its expiry time.
	orderExpiryRecheck = time.Hour
	// MaxOrderExpiriesPerPass bounds one sweep (the rest wait a tick).
	MaxOrderExpiriesPerPass = 200
)

// CodeOrderExpired rejects a payment for an expired order.
const CodeOrderExpired = "order_expired"

// CauseOrderExpired is the explain cause of an expired order.
const CauseOrderExpired = "order_expired"

const cmdTypeOrderExpire = "order_expire"

// cmdOrderExpire asks apply to expire OrderID, found under the index key
// of time Due.
type cmdOrderExpire struct {
	cmdHeader
	At      time.Time `json:"at"`
	OrderID string    `json:"order_id"`
	Due     time.Time `json:"due"`
}

func orderExpiryKey(at time.Time, orderID string) []byte {
	b := make([]byte, 0, len(prefixOrderExpiry)+18+len(orderID))
	b = appendHex16(append(b, prefixOrderExpiry...), uint64(max(at.UnixNano(), 0)))
	return append(append(b, '/'), orderID...)
}

// orderExpiredAt: at t, o takes no more payments because it expired.
// moneyRules is cluster version VersionMoneyRules: from it, an order whose
// payments were cancelled is as unpaid as a failed one.
func orderExpiredAt(o *orderRec, t time.Time, moneyRules bool) bool {
	if o.Status == OrderExpired {
		return true
	}
	return o.ExpiresAt != nil && !t.Before(*o.ExpiresAt) && unpaidStatus(o.Status, moneyRules)
}

// unpaidStatus: an order in this status holds no money and expires.
func unpaidStatus(status string, moneyRules bool) bool {
	return status == OrderCreated || status == OrderFailed || (moneyRules && status == OrderCancelled)
}

func (ac *applyCtx) orderExpire(c *cmdOrderExpire) (*ApplyResult, error) {
	if c.OrderID == "" {
		return reject(KindInvalid, CodeInvalidCommand, "", "order_expire: order id required"), nil
	}
	// The index entry is consumed whatever happens next.
	if err := ac.b.Delete(orderExpiryKey(c.Due, c.OrderID)); err != nil {
		return nil, fmt.Errorf("delete order expiry index: %w", err)
	}
	o, err := ac.loadOrder(c.OrderID)
	if err != nil {
		return nil, err
	}
	if o == nil || o.ExpiresAt == nil || c.At.Before(*o.ExpiresAt) {
		return &ApplyResult{}, nil // gone, never expiring, or not due: a stale index entry
	}
	v, err := ac.version()
	if err != nil {
		return nil, err
	}
	switch {
	case unpaidStatus(o.Status, v >= VersionMoneyRules):
	case o.Status == OrderHeldForReview && v >= VersionProviderAmount:
		// No provider was asked: the holds end with the order.
		if err := ac.endHolds(o, c.At); err != nil {
			return nil, err
		}
	case o.Status == OrderPending || o.Status == OrderHeldForReview:
		// A payment is still moving: look again later.
		if err := ac.b.Set(orderExpiryKey(c.At.Add(orderExpiryRecheck), o.ID), nil); err != nil {
			return nil, fmt.Errorf("re-index order expiry: %w", err)
		}
		return &ApplyResult{}, nil
	default:
		return &ApplyResult{}, nil // paid, authorized, cancelled, expired: nothing to expire
	}
	if err := ac.markExpired(o, c.At, "no payment succeeded by "+o.ExpiresAt.UTC().Format(time.RFC3339)); err != nil {
		return nil, err
	}
	if err := ac.saveOrder(o, c.At); err != nil {
		return nil, err
	}
	return &ApplyResult{}, nil
}

// markExpired sets o expired with its order_expired event (why completes
// "Order expired unpaid: ..."); the caller saves o.
// CodeReviewExpired is the failure of a payment still held for review when
// its order expired.
const CodeReviewExpired = "review_expired"

// endHolds cancels the payments of o still held for review (o expired).
func (ac *applyCtx) endHolds(o *orderRec, at time.Time) error {
	ps, err := ac.orderPayments(o)
	if err != nil {
		return err
	}
	for _, p := range ps {
		if p.Status != PaymentHeldForReview {
			continue
		}
		p.Status = PaymentCancelled
		p.Failure = &Failure{Code: CodeReviewExpired, Message: "the order expired while the payment was held for manual review; no provider was asked"}
		if err := ac.event(o, at, "review_expired", p.ID, "Hold ended: "+p.Failure.Message+".", nil); err != nil {
			return err
		}
		if _, err := ac.savePayment(p, at); err != nil {
			return err
		}
	}
	return nil
}

func (ac *applyCtx) markExpired(o *orderRec, at time.Time, why string) error {
	o.Status = OrderExpired
	return ac.event(o, at, "order_expired", "", "Order expired unpaid: "+why+".", nil)
}

// orderExpiry is merchant's order lifetime.
func (s *Svc) orderExpiry(merchant string) time.Duration {
	if cfg, ok := s.m.Config(); ok {
		for i := range cfg.Merchants {
			if cfg.Merchants[i].ID == merchant && cfg.Merchants[i].OrderExpirySeconds > 0 {
				return time.Duration(cfg.Merchants[i].OrderExpirySeconds) * time.Second
			}
		}
	}
	return DefaultOrderExpiry
}

// ExpireOrders proposes the expiry of orders whose time has come (at most
// MaxOrderExpiriesPerPass per call) and returns how many it proposed.
// Followers do nothing.
func (s *Svc) ExpireOrders(ctx context.Context) (int, error) {
	if !s.log.Leadership().IsLeader {
		return 0, nil
	}
	now := s.clock.Now()
	type due struct {
		id string
		at time.Time
	}
	var dues []due
	start, _ := prefixRange(prefixOrderExpiry)
	end := orderExpiryKey(now, "\xff") // every entry due at or before now
	var perr error
	err := s.store.Scan(start, end, func(k, _ []byte) bool {
		rest := k[len(prefixOrderExpiry):]
		if len(rest) < 18 || rest[16] != '/' {
			perr = fmt.Errorf("order expiry key %q is malformed", k)
			return false
		}
		var nanos uint64
		for _, c := range rest[:16] {
			nanos = nanos<<4 | uint64(hexVal(c))
		}
		dues = append(dues, due{id: string(rest[17:]), at: time.Unix(0, int64(nanos)).UTC()})
		return len(dues) < MaxOrderExpiriesPerPass
	})
	if err != nil {
		return 0, fmt.Errorf("scan order expiries: %w", err)
	}
	if perr != nil {
		return 0, perr
	}
	n := 0
	for _, d := range dues {
		if _, err := s.propose(ctx, cmdTypeOrderExpire, &cmdOrderExpire{At: now, OrderID: d.id, Due: d.at}); err != nil {
			var e *Error
			if errors.As(err, &e) && e.Status != KindUnavailable {
				continue // a rejection changed nothing; the others still go
			}
			return n, fmt.Errorf("expire order %s: %w", d.id, err)
		}
		n++
	}
	return n, nil
}

func hexVal(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return 0
}
