package txswitch

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Provider notifications that find nothing open, and the expiry of the
// notification dedupe markers. Both are behaviour of cluster version
// VersionProviderAmount (see its doc comment).
//
// A late notification. A PSP's notification for a key the switch no
// longer has open (the attempt or operation was settled as declined,
// never received, expired, failed over, or approved) changes nothing: the
// switch settled it, and only reconciliation with the PSP can tell who is
// right. Before version 7 it was acknowledged ("ignored") and left no
// trace, even an approval of an attempt the switch settled as declined: a
// real charge the merchant never heard of. From version 7, when its key
// names a known payment (an attempt <payment id>/<n>, a cancellation
// <payment id>/cancel/<n>), it is recorded on the order's timeline as a
// late_result_ignored event, and an approval of something the switch did
// not book as approved also as an unbooked_provider_approval event (a
// timeline event is an outbox event too, so the central database sees it)
// with an explain cause of that name. Each order records at most
// MaxLateNotificationEvents of the one and MaxUnbookedApprovalEvents of
// the other, counted under nc/<order id>, so a notification flood cannot
// grow an order's timeline without limit; past them the notification is
// acknowledged as before. Keys that name no known payment, or an attempt
// or cancellation the switch never made, stay "ignored" without a trace.
// Capture and refund keys are their operation's id (cap_…, ref_…); from
// cluster version 11 (VersionFollowUps) oi/<operation id> names its
// payment, and a late notification for one is recorded the same way (an
// approval of a capture or refund the switch settled as failed is money
// moved that it did not book). Operations made before version 11 have no
// index entry, and their late notifications stay "ignored" without a
// trace. The expiry cancellation of a pending attempt
// (<attempt key>:expire) is the switch's own clean-up, not an outcome: its
// notifications stay "ignored" too.
//
// Marker expiry. notify writes n/<provider>\x00<notification id> so that a
// redelivered notification is applied once. From version 7 notify also
// indexes the marker by time under ne/<%016x unix nanos>/<provider>\x00<id>,
// and the leader expires markers older than the idempotency retention
// with expire_notifications commands, bounded like expire_idempotency.
// Forgetting a marker is safe: a notification redelivered after it either
// finds its key settled (a late notification, bounded as above) or finds
// it still open, which only a notification that settled nothing leaves so
// (a pending report; an approval of another amount, flagged once), and
// applying such a notification again changes nothing. Markers written
// before version 7 have no index entry and are kept (they are not swept:
// finding them would take a scan of every marker).

const (
	// MaxLateNotificationEvents bounds the late_result_ignored events that
	// late notifications write on one order.
	MaxLateNotificationEvents = 20
	// MaxUnbookedApprovalEvents bounds the unbooked_provider_approval
	// events of one order (counted apart, so that a flood of late declines
	// cannot hide an approval).
	MaxUnbookedApprovalEvents = 20
	// CauseUnbookedApproval is the explain cause of an approval a provider
	// reported for an attempt or cancellation the switch did not book as
	// approved: money may have moved at the provider that the switch's
	// books do not show.
	CauseUnbookedApproval = "unbooked_provider_approval"

	prefixNotifyExpiry  = "ne/"
	prefixLateNotices   = "nc/"
	cmdTypeExpireNotify = "expire_notifications"
)

// cmdExpireNotify deletes notification markers indexed before Before (at
// most Limit; 0: DefaultExpireLimit). Version VersionProviderAmount.
type cmdExpireNotify struct {
	cmdHeader
	Before time.Time `json:"before"`
	Limit  int       `json:"limit,omitempty"`
}

func notifyExpiryKey(at time.Time, provider, id string) []byte {
	b := make([]byte, 0, len(prefixNotifyExpiry)+18+len(provider)+len(id))
	b = appendHex16(append(b, prefixNotifyExpiry...), uint64(max(at.UnixNano(), 0)))
	b = append(append(append(b, '/'), provider...), 0)
	return append(b, id...)
}

// notifyExpiryBefore is the end (exclusive) of the index for markers
// written before t.
func notifyExpiryBefore(t time.Time) []byte {
	return fmt.Appendf(nil, "%s%016x/", prefixNotifyExpiry, uint64(max(t.UnixNano(), 0)))
}

func lateNoticesKey(orderID string) []byte { return []byte(prefixLateNotices + orderID) }

// recordNotification writes the dedupe marker nk of c and, from version
// 7, its expiry index entry.
func (ac *applyCtx) recordNotification(nk []byte, c *cmdNotify, v int) error {
	if err := ac.b.Set(nk, nil); err != nil {
		return fmt.Errorf("record notification: %w", err)
	}
	if v < VersionProviderAmount {
		return nil
	}
	if err := ac.b.Set(notifyExpiryKey(c.At, c.Provider, c.Notification.NotificationID), nil); err != nil {
		return fmt.Errorf("index notification: %w", err)
	}
	return nil
}

// expireNotify deletes the markers of notifications applied before
// c.Before, oldest first, at most c.Limit.
func (ac *applyCtx) expireNotify(c *cmdExpireNotify) (*ApplyResult, error) {
	v, err := ac.version()
	if err != nil {
		return nil, err
	}
	if v < VersionProviderAmount {
		// An older member does not know the command: reject it the same way.
		return reject(KindInvalid, CodeInvalidCommand, "", fmt.Sprintf("%s needs cluster version %d (is %d)", cmdTypeExpireNotify, VersionProviderAmount, v)), nil
	}
	idx, err := ac.expiryBatch(prefixNotifyExpiry, notifyExpiryBefore(c.Before), nil, c.Limit)
	if err != nil {
		return nil, err
	}
	for _, k := range idx {
		// k = ne/<16 hex>/<provider>\x00<id>; the marker is n/<provider>\x00<id>.
		if len(k) < len(prefixNotifyExpiry)+17 {
			return nil, fmt.Errorf("notification expiry key %q: too short", k)
		}
		marker := append([]byte(prefixNotification), k[len(prefixNotifyExpiry)+17:]...)
		if err := ac.del(marker); err != nil {
			return nil, err
		}
		if err := ac.del(k); err != nil {
			return nil, err
		}
	}
	body, _ := json.Marshal(expiryResult{Deleted: len(idx), Scanned: len(idx)})
	return &ApplyResult{Reply: Reply{Status: 200, Body: body}}, nil
}

// ExpireNotifications proposes the deletion of notification markers older
// than the idempotency retention, one bounded command at a time, and
// returns how many it deleted. It does nothing on a follower or below
// cluster version VersionProviderAmount.
func (s *Svc) ExpireNotifications(ctx context.Context) (int, error) {
	if !s.log.Leadership().IsLeader || !s.VersionActive(VersionProviderAmount) {
		return 0, nil
	}
	before := s.clock.Now().Add(-s.cfg.IdempotencyRetention)
	// Every marker scanned is deleted: no cursor needed.
	n, _, err := s.expireInBatches(ctx, cmdTypeExpireNotify, nil, false, func([]byte) any {
		return &cmdExpireNotify{Before: before, Limit: DefaultExpireLimit}
	})
	return n, err
}

// notifiedKey is what a provider idempotency key says about the payment
// it belongs to.
type notifiedKey struct {
	paymentID string
	cancel    bool // <payment id>/cancel/<n>; else the attempt <payment id>/<n>
	n         int
	// opID is a capture or refund (the key is its id, found in the oi/
	// index); cancel and n are then unused.
	opID string
}

func opPaymentKey(opID string) []byte { return []byte(prefixOpPayment + opID) }

// indexOp records, from VersionFollowUps, that capture or refund opID
// belongs to payment paymentID.
func (ac *applyCtx) indexOp(opID, paymentID string) error {
	v, err := ac.version()
	if err != nil || v < VersionFollowUps {
		return err
	}
	return ac.set(opPaymentKey(opID), []byte(paymentID))
}

// opNotifiedKey reads key as a capture or refund id through the oi/
// index; ok is false for any other key.
func (ac *applyCtx) opNotifiedKey(key string) (k notifiedKey, ok bool, err error) {
	pid, err := ac.b.Get(opPaymentKey(key))
	if isNotFound(err) {
		return k, false, nil
	}
	if err != nil {
		return k, false, fmt.Errorf("get operation %s: %w", key, err)
	}
	return notifiedKey{paymentID: string(pid), opID: key}, true, nil
}

// operation finds k's capture or refund on p: its kind (opCapture,
// opRefund) and status; ok is false when k names none.
func (k notifiedKey) operation(p *paymentRec) (kind, status string, ok bool) {
	for _, c := range p.Captures {
		if c.ID == k.opID {
			return opCapture, c.Status, true
		}
	}
	for _, r := range p.Refunds {
		if r.ID == k.opID {
			return opRefund, r.Status, true
		}
	}
	return "", "", false
}

// parseNotifiedKey reads an attempt or cancellation key (as attemptKey
// and cancelKey build them); ok is false for any other key.
func parseNotifiedKey(key string) (k notifiedKey, ok bool) {
	i := strings.LastIndexByte(key, '/')
	if i <= 0 {
		return k, false
	}
	n, err := strconv.Atoi(key[i+1:])
	if err != nil || n < 1 || strconv.Itoa(n) != key[i+1:] {
		return k, false
	}
	k.paymentID, k.n = key[:i], n
	if pid, found := strings.CutSuffix(k.paymentID, "/cancel"); found {
		k.paymentID, k.cancel = pid, true
	}
	if k.paymentID == "" {
		return k, false
	}
	return k, true
}

// made reports whether the switch sent k for p (its attempts and
// cancellations are numbered from 1).
func (k notifiedKey) made(p *paymentRec) bool {
	if k.opID != "" {
		_, _, ok := k.operation(p)
		return ok
	}
	if k.cancel {
		return k.n <= p.CancelAttempts
	}
	return k.n <= p.Attempt
}

// booked reports whether the switch booked k of p as approved.
func (k notifiedKey) booked(p *paymentRec) bool {
	if k.opID != "" {
		_, status, _ := k.operation(p)
		return status == "succeeded"
	}
	if k.cancel {
		if c := p.Cancellation; c != nil {
			return c.Attempt == k.n && c.Status == "succeeded"
		}
		// Before VersionCancellation: the last cancellation succeeded if
		// the payment is cancelled or released part of its authorization.
		return k.n == p.CancelAttempts && (p.Status == PaymentCancelled || p.Released != nil)
	}
	if k.n != p.Attempt {
		return false // a later attempt exists: this one was not approved
	}
	switch p.Status {
	case PaymentAuthorized, PaymentCaptured, PaymentPartiallyRefunded, PaymentRefunded:
		return true
	case PaymentCancelled:
		// Voided after its approval (a cancellation needs an authorized
		// payment), not rejected in review before any provider call.
		return p.CancelAttempts > 0
	}
	return false
}

// couldBeAt reports whether provider can have handled what k names: the
// payment's provider for its latest attempt, its cancellations, captures
// and refunds, one of its route candidates for an earlier attempt (which
// of them is not kept). A notification from any other provider is about something else
// (a misrouted or forged report) and must not raise a reconciliation
// cause on this order.
func (k notifiedKey) couldBeAt(p *paymentRec, provider string) bool {
	if k.opID != "" || k.cancel || k.n == p.Attempt {
		return provider == p.Provider
	}
	return slices.ContainsFunc(p.Candidates, func(c RouteCandidate) bool { return c.Provider == provider })
}

// lateNotices counts what late notifications wrote on an order.
type lateNotices struct {
	Late     int `json:"late"`
	Unbooked int `json:"unbooked"`
}

// lateNotification records c, a notification whose key has nothing open
// (cluster version 7; see the comment at the top of this file). It writes
// nothing for keys that name no known payment.
func (ac *applyCtx) lateNotification(c *cmdNotify) error {
	n := c.Notification
	k, ok := parseNotifiedKey(n.IdempotencyKey)
	if !ok {
		var err error
		if k, ok, err = ac.opNotifiedKey(n.IdempotencyKey); err != nil || !ok {
			return err
		}
	}
	p, err := ac.loadPayment(k.paymentID)
	if err != nil || p == nil || !k.made(p) || !k.couldBeAt(p, c.Provider) {
		return err
	}
	o, err := ac.loadOrder(p.OrderID)
	if err != nil {
		return err
	}
	if o == nil {
		return fmt.Errorf("payment %s: order %s missing", p.ID, p.OrderID)
	}
	var cnt lateNotices
	if _, err := getJSON(ac.b, lateNoticesKey(o.ID), &cnt); err != nil {
		return err
	}
	outcome := string(n.Result.Outcome)
	what := fmt.Sprintf("attempt %d", k.n)
	op := string(OpAuthorize)
	if k.cancel {
		what, op = fmt.Sprintf("cancellation %d", k.n), opCancel
	}
	if k.opID != "" {
		op, _, _ = k.operation(p)
		what = op + " " + k.opID
	}
	unbooked := n.Result.Outcome == OutcomeApproved && !k.booked(p)
	if cnt.Late >= MaxLateNotificationEvents && (!unbooked || cnt.Unbooked >= MaxUnbookedApprovalEvents) {
		return nil
	}
	data := map[string]any{"what": what, "source": sourceNotification, "outcome": outcome, "code": n.Result.Code,
		"provider": c.Provider, "key": n.IdempotencyKey, "notification_id": n.NotificationID}
	if n.Result.ProviderRef != "" {
		data["provider_ref"] = n.Result.ProviderRef
	}
	if n.Result.Amount != nil {
		data["amount"] = *n.Result.Amount
	}
	if cnt.Late < MaxLateNotificationEvents {
		cnt.Late++
		msg := fmt.Sprintf("Ignored a late notification from %s (%s) for %s (key %s): it is no longer open (payment is %s).",
			c.Provider, outcome, what, n.IdempotencyKey, p.Status)
		if cnt.Late == MaxLateNotificationEvents {
			msg += fmt.Sprintf(" The order records no late notification after this one (%d).", MaxLateNotificationEvents)
		}
		if err := ac.event(o, c.At, "late_result_ignored", p.ID, msg, data); err != nil {
			return err
		}
	}
	if unbooked && cnt.Unbooked < MaxUnbookedApprovalEvents {
		cnt.Unbooked++
		money := "money may have moved that the switch did not book: reconcile it with " + c.Provider +
			" (book it, or refund or void it there)"
		switch {
		case k.cancel:
			money = "the authorization may be void at the provider although the switch still counts it: reconcile it with " + c.Provider
		case op == opCapture:
			money = "money may have been captured that the switch did not book: reconcile it with " + c.Provider +
				" (book it, or refund it there)"
		case op == opRefund:
			money = "money may have been refunded that the switch still counts as captured: reconcile it with " + c.Provider
		}
		ref := ""
		if n.Result.ProviderRef != "" {
			ref = ", provider reference " + n.Result.ProviderRef
		}
		msg := fmt.Sprintf("%s reports %s of payment %s approved (key %s%s), but the switch settled it as %s; %s.",
			c.Provider, what, p.ID, n.IdempotencyKey, ref, settledAs(k, p), money)
		ud := map[string]any{"provider": c.Provider, "key": n.IdempotencyKey, "op": op, "notification_id": n.NotificationID,
			"payment_status": p.Status}
		for _, f := range []string{"provider_ref", "amount"} {
			if v, ok := data[f]; ok {
				ud[f] = v
			}
		}
		if err := ac.event(o, c.At, "unbooked_provider_approval", p.ID, msg, ud); err != nil {
			return err
		}
	}
	if err := ac.putJSON(lateNoticesKey(o.ID), cnt); err != nil {
		return err
	}
	return ac.putOrder(o)
}

// settledAs says how the switch settled k of p, for a message.
func settledAs(k notifiedKey, p *paymentRec) string {
	if k.opID != "" {
		kind, status, _ := k.operation(p)
		return "a " + status + " " + kind
	}
	switch {
	case k.cancel && p.Cancellation != nil && p.Cancellation.Attempt == k.n:
		return "a " + p.Cancellation.Status + " cancellation"
	case k.cancel:
		return "not cancelled"
	case k.n != p.Attempt:
		return "not approved (a later attempt followed it)"
	case p.Failure != nil:
		return p.Status + " (" + p.Failure.Code + ")"
	}
	return p.Status
}
