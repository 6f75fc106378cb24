package txswitch

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// The review queue: the payments a fraud rule held, for the people who
// approve or reject them (POST /v1/admin/payments/{id}/review). It needs
// no state of its own: an order with a held payment is open, so it is in
// the order expiry index, which also orders the queue by urgency (the
// order that expires first, taking its held payment with it, comes first).
// A listing reads at most maxReviewScanned index entries and gives a
// cursor to go on, so one request stays bounded however many orders are
// open. Orders made before cluster version 2 (VersionOrderExpiry) are not
// in that index and not listed.

// HeldPayment is one entry of the review queue.
type HeldPayment struct {
	PaymentID  string   `json:"payment_id"`
	OrderID    string   `json:"order_id"`
	MerchantID string   `json:"merchant_id"`
	Method     string   `json:"method"`
	Amount     Money    `json:"amount"`
	Customer   Customer `json:"customer"`
	Channel    string   `json:"channel"`
	// Rule is the fraud rule that held it (from its timeline).
	Rule   string    `json:"rule,omitempty"`
	HeldAt time.Time `json:"held_at"`
	// OrderExpiresAt is when the order, and the hold with it, expires
	// (review_expired): review before then.
	OrderExpiresAt time.Time `json:"order_expires_at"`
}

// ReviewsResponse is the body of GET /v1/admin/reviews.
type ReviewsResponse struct {
	Payments []HeldPayment `json:"payments"`
	// Next, when set, is the after= of the following page.
	Next string `json:"next,omitempty"`
}

const (
	DefaultReviewsPage = 50
	MaxReviewsPage     = 500
	maxReviewScanned   = 10_000
)

// ListReviews lists the payments held for review, the soonest to expire
// first, after the cursor after; limit 0 is DefaultReviewsPage. Admin
// only; linearizable.
func (s *Svc) ListReviews(ctx context.Context, after string, limit int) (Reply, error) {
	if limit == 0 {
		limit = DefaultReviewsPage
	}
	if limit < 0 || limit > MaxReviewsPage {
		return Reply{}, NewError(KindInvalid, CodeInvalidQuery, "limit", fmt.Sprintf("limit must be 1 to %d", MaxReviewsPage))
	}
	if len(after) > 17+maxIDLen || (after != "" && !strings.Contains(after, "/")) {
		return Reply{}, NewError(KindInvalid, CodeInvalidQuery, "after", "after is not a cursor of this listing")
	}
	if err := s.barrier(ctx); err != nil {
		return Reply{}, err
	}
	page, err := listReviews(s.store, after, limit, maxReviewScanned)
	if err != nil {
		return Reply{}, err
	}
	return jsonReply(200, page)
}

// maxIDLen bounds an order id in a cursor; ids are far shorter.
const maxIDLen = 128

func listReviews(r Reader, after string, limit, maxScanned int) (ReviewsResponse, error) {
	page := ReviewsResponse{Payments: []HeldPayment{}}
	start, end := prefixRange(prefixOrderExpiry)
	if after != "" {
		start = append([]byte(prefixOrderExpiry+after), 0)
	}
	// The orders are read once the scan is over: a store may hold a read
	// lock for the scan that a Get inside it would take again.
	type entry struct{ cursor, orderID string }
	var entries []entry
	if err := r.Scan(start, end, func(k, _ []byte) bool {
		if len(entries) == maxScanned {
			return false
		}
		cursor := string(k[len(prefixOrderExpiry):])
		_, id, ok := strings.Cut(cursor, "/")
		if !ok {
			return true // not a key this index writes
		}
		entries = append(entries, entry{cursor, id})
		return true
	}); err != nil {
		return page, fmt.Errorf("scan order expiry index: %w", err)
	}
	for i, e := range entries {
		o, err := loadOrder(r, e.orderID)
		if err != nil {
			return page, fmt.Errorf("order %s: %w", e.orderID, err)
		}
		if o == nil || o.Status != OrderHeldForReview {
			continue
		}
		held, err := heldPayments(r, o)
		if err != nil {
			return page, err
		}
		if len(page.Payments)+len(held) > limit && len(page.Payments) > 0 {
			page.Next = entries[i-1].cursor
			return page, nil
		}
		page.Payments = append(page.Payments, held...)
	}
	if len(entries) == maxScanned {
		page.Next = entries[len(entries)-1].cursor
	}
	return page, nil
}

// heldPayments returns o's payments held for review with the rule and time
// of their hold from o's timeline.
func heldPayments(r Reader, o *orderRec) ([]HeldPayment, error) {
	ps, err := loadOrderPayments(r, o.ID)
	if err != nil {
		return nil, fmt.Errorf("payments of order %s: %w", o.ID, err)
	}
	var out []HeldPayment
	for _, p := range ps {
		if p.Status != PaymentHeldForReview {
			continue
		}
		h := HeldPayment{PaymentID: p.ID, OrderID: o.ID, MerchantID: o.MerchantID, Method: p.Method, Amount: p.Amount,
			Customer: o.Customer, Channel: o.Channel, HeldAt: p.CreatedAt}
		if o.ExpiresAt != nil {
			h.OrderExpiresAt = *o.ExpiresAt
		}
		out = append(out, h)
	}
	if len(out) == 0 {
		return nil, nil
	}
	evs, err := loadTimeline(r, o.ID)
	if err != nil {
		return nil, fmt.Errorf("timeline of order %s: %w", o.ID, err)
	}
	for _, ev := range evs {
		if ev.Type != "held_for_review" {
			continue
		}
		for i := range out {
			if out[i].PaymentID != ev.PaymentID {
				continue
			}
			var d struct {
				Rule string `json:"rule"`
			}
			if json.Unmarshal(ev.Data, &d) == nil {
				out[i].Rule = d.Rule
			}
			out[i].HeldAt = ev.At
		}
	}
	return out, nil
}
