package txswitch

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"
)

// applyCtx applies one command through the batch. Handlers validate
// everything before their first write, so a rejection (an *Error result)
// leaves the batch untouched. A returned error is a store failure.
type applyCtx struct {
	b         Batch
	bs        *batchState
	newConfig *RoutingConfig
	// newClusterVersion is the gate this command moved (0: none).
	newClusterVersion int
	// binary is what this node's binary runs (see version.go).
	binary VersionRange
	// loaded is this command's identity map of cached-table records: key →
	// the live object (nil: absent). See rcache.go.
	loaded map[string]any
}

// Codes of rejections made in apply.
const (
	CodeInvalidCommand          = "invalid_command"
	CodeIdempotencyKeyReused    = "idempotency_key_reused"
	CodeIdempotencyInProgress   = "idempotency_request_in_progress"
	CodeOrderNotFound           = "order_not_found"
	CodePaymentNotFound         = "payment_not_found"
	CodeOperationNotFound       = "operation_not_found"
	CodeOrderExists             = "order_exists"
	CodePaymentInProgress       = "payment_in_progress"
	CodeAmountExceedsOpen       = "amount_exceeds_open_amount"
	CodeAmountExceedsAuthorized = "amount_exceeds_authorized"
	CodeAmountExceedsCaptured   = "amount_exceeds_captured"
	CodeInvalidState            = "invalid_state"
	CodeNoProviderAvailable     = "no_provider_available"
	CodeProviderNeverReceived   = "provider_never_received"
	CodeReviewRejected          = "review_rejected"
	CodeCaptureFailed           = "capture_failed"
	CodeCancelFailed            = "cancel_failed"
	CodeTooManyPayments         = "too_many_payments"
	CodeTooManyOperations       = "too_many_operations"
)

// Bounds on per-order state, so one order's apply cost and size stay
// bounded: every payment command re-derives the order from its payments.
const (
	MaxPaymentsPerOrder     = 50
	MaxOperationsPerPayment = 100 // captures + refunds
	// MaxOfferEvents bounds methods_offered events per order (a flapping
	// breaker changes the offer often); later offers are not recorded.
	MaxOfferEvents = 50
)

func reject(status int, code, field, msg string) *ApplyResult {
	return &ApplyResult{Err: NewError(status, code, field, msg)}
}

func (ac *applyCtx) apply(data []byte) (*ApplyResult, error) {
	cmd, err := decodeCommand(data)
	if err != nil {
		return reject(KindInvalid, CodeInvalidCommand, "", err.Error()), nil
	}
	switch c := cmd.(type) {
	case *cmdCreateOrder:
		return ac.createOrder(c)
	case *cmdPaymentIntent:
		return ac.paymentIntent(c)
	case *cmdPaymentResult:
		return ac.paymentResult(c)
	case *cmdReview:
		return ac.review(c)
	case *cmdOpIntent:
		return ac.opIntent(c)
	case *cmdOpResult:
		return ac.opResult(c)
	case *cmdMethodsOffered:
		return ac.methodsOffered(c)
	case *cmdNotify:
		return ac.notify(c)
	case *cmdConfigPut:
		return ac.configPut(c)
	case *cmdWatermark:
		return ac.watermark(c)
	case *cmdExpireIdem:
		return ac.expireIdem(c)
	case *cmdExpireNotify:
		return ac.expireNotify(c)
	case *cmdResolveManually:
		return ac.resolveManually(c)
	case *cmdResolveOpManually:
		return ac.resolveOpManually(c)
	case *cmdPaymentExpire:
		return ac.paymentExpire(c)
	case *cmdOrderExpire:
		return ac.orderExpire(c)
	case *cmdNodeVersion:
		return ac.nodeVersion(c)
	case *cmdClusterVersion:
		return ac.clusterVersion(c)
	}
	return reject(KindInvalid, CodeInvalidCommand, "", fmt.Sprintf("no handler for %T", cmd)), nil
}

// ---------------------------------------------------------------------------
// Store helpers.

func getJSON(r Reader, key []byte, v any) (bool, error) {
	raw, err := r.Get(key)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("get %q: %w", key, err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return false, fmt.Errorf("decode %q: %w", key, err)
	}
	return true, nil
}

func (ac *applyCtx) putJSON(key []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %q: %w", key, err)
	}
	return ac.set(key, raw)
}

func (ac *applyCtx) set(key, raw []byte) error {
	if err := ac.b.Set(key, raw); err != nil {
		return fmt.Errorf("set %q: %w", key, err)
	}
	return nil
}

// putRecord writes a cached-table record v encoded as raw. v stays the
// command's live object for key; the batch keeps a deep copy of it as
// encoded now (see rcache.go).
func (ac *applyCtx) putRecord(key []byte, v any, raw []byte) error {
	if err := ac.set(key, raw); err != nil {
		return err
	}
	k := string(key)
	ac.loaded[k] = v
	ac.bs.written[k] = cloneRecord(v)
	ac.bs.filter.add(key)
	return nil
}

func (ac *applyCtx) del(key []byte) error {
	if err := ac.b.Delete(key); err != nil {
		return fmt.Errorf("delete %q: %w", key, err)
	}
	if cachedTable(key) {
		k := string(key)
		ac.loaded[k] = nil
		ac.bs.written[k] = nil
	}
	return nil
}

// loadRecord reads a cached-table record through the command's, the
// batch's and the committed caches, falling back to the store. It returns
// nil when the key is absent. Within a command every load of a key returns
// the same object.
func loadRecord[T any](ac *applyCtx, key []byte) (*T, error) {
	k := string(key)
	if v, ok := ac.loaded[k]; ok {
		if v == nil {
			return nil, nil
		}
		return v.(*T), nil
	}
	var r *T
	if v, ok := ac.bs.written[k]; ok {
		if v != nil {
			r = cloneRecord(v).(*T)
		}
	} else if v, ok := ac.bs.committed.get(k); ok {
		r = cloneRecord(v).(*T)
	} else if ac.bs.filter.absent(key) {
		// Certainly not in the store (keyfilter.go): r stays nil.
	} else {
		var x T
		ok, err := getJSON(ac.b, key, &x)
		if err != nil {
			return nil, err
		}
		if ok {
			r = &x
		}
	}
	if r == nil {
		ac.loaded[k] = nil
	} else {
		ac.loaded[k] = r
	}
	return r, nil
}

func (ac *applyCtx) loadOrder(id string) (*orderRec, error) {
	return loadRecord[orderRec](ac, orderKey(id))
}

func (ac *applyCtx) loadPayment(id string) (*paymentRec, error) {
	return loadRecord[paymentRec](ac, paymentKey(id))
}

func (ac *applyCtx) loadInDoubt(key string) (*inDoubtRec, error) {
	return loadRecord[inDoubtRec](ac, inDoubtKey(key))
}

func (ac *applyCtx) loadIdem(merchant, key string) (*idemRecord, error) {
	return loadRecord[idemRecord](ac, idemKey(merchant, key))
}

// orderPayments returns o's payments in creation order. The ids come from
// o itself once known, else from one scan of the op/ index.
func (ac *applyCtx) orderPayments(o *orderRec) ([]*paymentRec, error) {
	if !o.idsKnown && o.NumPayments == 0 {
		// The op/ index holds exactly NumPayments entries: nothing to scan.
		o.paymentIDs, o.idsKnown = nil, true
	}
	if !o.idsKnown {
		ids, err := scanOrderPaymentIDs(ac.b, o.ID)
		if err != nil {
			return nil, err
		}
		o.paymentIDs, o.idsKnown = ids, true
	}
	ps := make([]*paymentRec, 0, len(o.paymentIDs))
	for _, id := range o.paymentIDs {
		p, err := ac.loadPayment(id)
		if err != nil {
			return nil, err
		}
		if p == nil {
			return nil, fmt.Errorf("order %s lists missing payment %s", o.ID, id)
		}
		ps = append(ps, p)
	}
	return ps, nil
}

func (ac *applyCtx) putInDoubt(d *inDoubtRec) error {
	raw, err := encodeInDoubt(d)
	if err != nil {
		raw, err = json.Marshal(d)
	}
	if err != nil {
		return fmt.Errorf("encode in-doubt %s: %w", d.Key, err)
	}
	return ac.putRecord(inDoubtKey(d.Key), d, raw)
}

func loadOrder(r Reader, id string) (*orderRec, error) {
	var o orderRec
	ok, err := getJSON(r, orderKey(id), &o)
	if !ok || err != nil {
		return nil, err
	}
	return &o, nil
}

func loadPayment(r Reader, id string) (*paymentRec, error) {
	var p paymentRec
	ok, err := getJSON(r, paymentKey(id), &p)
	if !ok || err != nil {
		return nil, err
	}
	return &p, nil
}

func scanOrderPaymentIDs(r Reader, orderID string) ([]string, error) {
	var ids []string
	start, end := orderPaymentsRange(orderID)
	if err := r.Scan(start, end, func(_, v []byte) bool {
		ids = append(ids, string(v))
		return true
	}); err != nil {
		return nil, fmt.Errorf("scan payments of %s: %w", orderID, err)
	}
	return ids, nil
}

// loadOrderPayments returns an order's payments in creation order (reads
// outside apply).
func loadOrderPayments(r Reader, orderID string) ([]*paymentRec, error) {
	ids, err := scanOrderPaymentIDs(r, orderID)
	if err != nil {
		return nil, err
	}
	ps := make([]*paymentRec, 0, len(ids))
	for _, id := range ids {
		p, err := loadPayment(r, id)
		if err != nil {
			return nil, err
		}
		if p == nil {
			return nil, fmt.Errorf("order %s lists missing payment %s", orderID, id)
		}
		ps = append(ps, p)
	}
	return ps, nil
}

func loadInDoubt(r Reader, key string) (*inDoubtRec, error) {
	var d inDoubtRec
	ok, err := getJSON(r, inDoubtKey(key), &d)
	if !ok || err != nil {
		return nil, err
	}
	return &d, nil
}

// ---------------------------------------------------------------------------
// Outbox and timeline.

// nextOutboxSeq assigns the next outbox seq; the batch writes the last one
// to m/outbox_seq once, before commit.
func (ac *applyCtx) nextOutboxSeq() (uint64, error) {
	seq, err := ac.outboxSeq()
	if err != nil {
		return 0, err
	}
	seq++
	ac.bs.outboxSeq, ac.bs.seqDirty = seq, true
	return seq, nil
}

// outboxSeq is the last assigned outbox seq as of this point of the batch.
func (ac *applyCtx) outboxSeq() (uint64, error) {
	if !ac.bs.seqLoaded {
		raw, err := ac.b.Get([]byte(keyOutboxSeq))
		var seq uint64
		switch {
		case errors.Is(err, ErrNotFound):
		case err != nil:
			return 0, fmt.Errorf("get outbox seq: %w", err)
		default:
			if seq, err = decodeUint64(raw); err != nil {
				return 0, fmt.Errorf("decode outbox seq: %w", err)
			}
		}
		ac.bs.outboxSeq, ac.bs.seqLoaded = seq, true
	}
	return ac.bs.outboxSeq, nil
}

// emit appends an outbox event whose resource is already encoded (by
// encoding/json or an encoder that matches it byte for byte).
func (ac *applyCtx) emit(kind, merchant, orderID string, at time.Time, resource []byte) error {
	return ac.putOutbox(kind, func(dst []byte, seq uint64) ([]byte, error) {
		return appendOutboxEvent(dst, seq, kind, merchant, orderID, at, resource)
	})
}

// emitRef appends the outbox event of an order, payment or timeline
// event: from VersionOutboxRefs it names the resource (ref, resolved by
// ReadOutbox) instead of copying it.
func (ac *applyCtx) emitRef(kind, merchant, orderID string, at time.Time, resource []byte, ref string) error {
	v, err := ac.version()
	if err != nil {
		return err
	}
	if v < VersionOutboxRefs {
		return ac.emit(kind, merchant, orderID, at, resource)
	}
	return ac.putOutbox(kind, func(dst []byte, seq uint64) ([]byte, error) {
		return appendOutboxRef(dst, seq, kind, merchant, orderID, at, ref)
	})
}

// putOutbox stores the event encode writes under the next outbox seq.
func (ac *applyCtx) putOutbox(kind string, encode func(dst []byte, seq uint64) ([]byte, error)) error {
	seq, err := ac.nextOutboxSeq()
	if err != nil {
		return err
	}
	raw, err := encode(ac.bs.buf.outbox[:0], seq)
	ac.bs.buf.outbox = raw
	if err != nil {
		return fmt.Errorf("encode outbox %s event: %w", kind, err)
	}
	return ac.set(outboxKey(seq), raw)
}

// emitJSON is emit of a resource encoding/json encodes.
func (ac *applyCtx) emitJSON(kind, merchant, orderID string, at time.Time, resource any) error {
	res, err := json.Marshal(resource)
	if err != nil {
		return fmt.Errorf("encode outbox %s resource: %w", kind, err)
	}
	return ac.emit(kind, merchant, orderID, at, res)
}

// event appends a timeline event to o (the caller saves o afterwards).
// The event's bytes are stored and are also the outbox event's resource.
func (ac *applyCtx) event(o *orderRec, at time.Time, typ, paymentID, msg string, data any) error {
	o.TimelineSeq++
	ev := TimelineEvent{Seq: o.TimelineSeq, At: at, Type: typ, PaymentID: paymentID, Message: msg}
	switch d := data.(type) {
	case nil:
	case routingData: // the two kinds every payment writes
		ev.Data = encodeRoutingData(&d)
	case providerData:
		ev.Data = encodeProviderData(&d)
	default:
		raw, err := json.Marshal(data)
		if err != nil {
			return fmt.Errorf("encode %s event data: %w", typ, err)
		}
		ev.Data = raw
	}
	raw, err := appendTimelineEvent(ac.bs.buf.timeline[:0], &ev)
	ac.bs.buf.timeline = raw
	if err != nil {
		return fmt.Errorf("encode %s event: %w", typ, err)
	}
	if err := ac.set(timelineKey(o.ID, ev.Seq), raw); err != nil {
		return err
	}
	return ac.emitRef("timeline", o.MerchantID, o.ID, at, raw, strconv.FormatUint(ev.Seq, 10))
}

// savePayment stores p and emits it; it returns the encoded Payment
// resource, which is also the body of a reply showing p as it is now.
func (ac *applyCtx) savePayment(p *paymentRec, at time.Time) ([]byte, error) {
	p.UpdatedAt = at
	rec, res, err := encodePaymentRec(ac.bs.buf.record[:0], p)
	ac.bs.buf.record = rec
	if err != nil {
		return nil, fmt.Errorf("encode payment %s: %w", p.ID, err)
	}
	if err := ac.putRecord(paymentKey(p.ID), p, rec); err != nil {
		return nil, err
	}
	return res, ac.emitRef("payment", p.MerchantID, p.OrderID, at, res, p.ID)
}

// encodePaymentRec returns json.Marshal(p), appended to dst, and
// json.Marshal(p.Payment), encoding the resource once.
func encodePaymentRec(dst []byte, p *paymentRec) (rec, res []byte, err error) {
	if res, err = encodePayment(&p.Payment); err != nil {
		return nil, nil, err
	}
	extra, err := encodePaymentExtra(&p.paymentExtra)
	if err != nil {
		if extra, err = json.Marshal(&p.paymentExtra); err != nil {
			return nil, nil, err
		}
	}
	return joinObjects(dst, res, extra), res, nil
}

// encodeOrderRec returns json.Marshal(o), appended to dst, and the order
// resource (o.Order without payments), encoding the resource once.
func encodeOrderRec(dst []byte, o *orderRec) (rec, res []byte, err error) {
	if o.Payments != nil { // never so in apply; keep the general path exact
		if rec, err = json.Marshal(o); err != nil {
			return nil, nil, err
		}
		r := o.Order
		r.Payments = nil
		res, err = encodeOrder(&r)
		return rec, res, err
	}
	if res, err = encodeOrder(&o.Order); err != nil {
		return nil, nil, err
	}
	return joinObjects(dst, res, encodeOrderExtra(&o.orderExtra)), res, nil
}

// putOrder stores o without emitting it (timeline-only changes).
func (ac *applyCtx) putOrder(o *orderRec) error {
	rec, _, err := encodeOrderRec(ac.bs.buf.record[:0], o)
	ac.bs.buf.record = rec
	if err != nil {
		return fmt.Errorf("encode order %s: %w", o.ID, err)
	}
	return ac.putRecord(orderKey(o.ID), o, rec)
}

// saveOrder recomputes the order's totals and status from its payments,
// checks the money invariants, and stores it.
func (ac *applyCtx) saveOrder(o *orderRec, at time.Time) error {
	ps, err := ac.orderPayments(o)
	if err != nil {
		return err
	}
	if err := checkInvariants(o, ps); err != nil {
		// Handlers validate before writing, so this is a bug; stopping the
		// node is better than persisting money that does not add up.
		return fmt.Errorf("order %s: %w", o.ID, err)
	}
	o.Authorized, o.Captured, o.Refunded = orderTotals(o, ps)
	v, err := ac.version()
	if err != nil {
		return err
	}
	o.Status = deriveOrderStatus(o, ps, v >= VersionMoneyRules)
	if v >= VersionMoneyRules && o.Status == OrderCancelled && o.ExpiresAt != nil && !at.Before(*o.ExpiresAt) {
		// Cancelled past its expiry: the sweep found it authorized (money
		// held) and let it be; now that it holds none it expires here.
		if err := ac.markExpired(o, at, "its payment was cancelled after "+o.ExpiresAt.UTC().Format(time.RFC3339)+", when it was due to expire"); err != nil {
			return err
		}
	}
	o.UpdatedAt = at
	rec, res, err := encodeOrderRec(ac.bs.buf.record[:0], o)
	ac.bs.buf.record = rec
	if err != nil {
		return fmt.Errorf("encode order %s: %w", o.ID, err)
	}
	if err := ac.putRecord(orderKey(o.ID), o, rec); err != nil {
		return err
	}
	return ac.emitRef("order", o.MerchantID, o.ID, at, res, o.ID)
}

// ---------------------------------------------------------------------------
// Idempotency.

// idemCheck returns a result when the record answers the request (stored
// reply, mismatch, in progress) and nil when the command may execute.
func (ac *applyCtx) idemCheck(ref *idemRef) (*ApplyResult, error) {
	if ref == nil {
		return nil, nil
	}
	rec, err := ac.loadIdem(ref.Merchant, ref.Key)
	if rec == nil || err != nil {
		return nil, err
	}
	return idemAnswer(rec, ref.Fingerprint), nil
}

// idemAnswer is what an existing record says to a request with fingerprint.
func idemAnswer(rec *idemRecord, fingerprint string) *ApplyResult {
	switch {
	case rec.Fingerprint != fingerprint:
		return reject(KindUnprocessable, CodeIdempotencyKeyReused, "Idempotency-Key",
			"this Idempotency-Key was already used with a different request; use a new key for a new request")
	case rec.State == idemDone && rec.Reply != nil:
		return &ApplyResult{Reply: *rec.Reply, Replayed: true}
	default:
		return reject(KindConflict, CodeIdempotencyInProgress, "Idempotency-Key",
			"a request with this Idempotency-Key is still being processed; retry later with the same key")
	}
}

func (ac *applyCtx) idemPut(ref *idemRef, at time.Time, state string, reply *Reply) error {
	if ref == nil {
		return nil
	}
	rec := &idemRecord{Fingerprint: ref.Fingerprint, State: state, Reply: reply, CreatedAt: at}
	if err := ac.putIdem(ref, rec); err != nil {
		return err
	}
	return ac.b.Set(idemExpiryKey(at, ref.Merchant, ref.Key), nil)
}

func (ac *applyCtx) putIdem(ref *idemRef, rec *idemRecord) error {
	raw, err := encodeIdemRecord(rec)
	if err != nil {
		return fmt.Errorf("encode idempotency record: %w", err)
	}
	return ac.putRecord(idemKey(ref.Merchant, ref.Key), rec, raw)
}

// idemFinish stores the final reply in a record still in progress.
func (ac *applyCtx) idemFinish(ref *idemRef, reply Reply) error {
	if ref == nil {
		return nil
	}
	rec, err := ac.loadIdem(ref.Merchant, ref.Key)
	if err != nil || rec == nil || rec.State != idemInProgress || rec.Fingerprint != ref.Fingerprint {
		return err // expired or already finished: nothing to do
	}
	rec.State, rec.Reply = idemDone, &reply
	return ac.putIdem(ref, rec)
}

// ---------------------------------------------------------------------------
// Orders.

func (ac *applyCtx) createOrder(c *cmdCreateOrder) (*ApplyResult, error) {
	if r, err := ac.idemCheck(c.Idem); r != nil || err != nil {
		return r, err
	}
	if c.Order.ID == "" || c.Order.MerchantID == "" {
		return reject(KindInvalid, CodeInvalidCommand, "", "order id and merchant are required"), nil
	}
	if e := ValidateMoney(c.Order.Amount, "amount"); e != nil {
		return &ApplyResult{Err: e}, nil
	}
	existing, err := ac.loadOrder(c.Order.ID)
	if err != nil {
		return nil, err
	}
	if existing != nil {
		return reject(KindConflict, CodeOrderExists, "", "order "+c.Order.ID+" exists"), nil
	}
	o := &orderRec{Order: c.Order, idsKnown: true}
	o.Status = OrderCreated
	o.Payments = nil
	o.CreatedAt = c.At
	zero := Money{Currency: o.Amount.Currency}
	o.Authorized, o.Captured, o.Refunded = zero, zero, zero
	if err := ac.event(o, c.At, "order_created", "",
		fmt.Sprintf("Order created for %s (reference %q, channel %s, customer in %s).", FormatMoney(o.Amount), o.Reference, o.Channel, o.Customer.Country), nil); err != nil {
		return nil, err
	}
	if err := ac.saveOrder(o, c.At); err != nil {
		return nil, err
	}
	if o.ExpiresAt != nil {
		if err := ac.b.Set(orderExpiryKey(*o.ExpiresAt, o.ID), nil); err != nil {
			return nil, fmt.Errorf("index order expiry: %w", err)
		}
	}
	view := o.Order
	view.Payments = []Payment{}
	body, err := encodeOrder(&view)
	if err != nil {
		return nil, err
	}
	reply := Reply{Status: 201, Body: body}
	if err := ac.idemPut(c.Idem, c.At, idemDone, &reply); err != nil {
		return nil, err
	}
	return &ApplyResult{Reply: reply}, nil
}

// orderView is the order as GET /v1/orders/{id} shows it.
func orderView(o *orderRec, ps []*paymentRec) Order {
	v := o.Order
	v.Payments = make([]Payment, 0, len(ps))
	for _, p := range ps {
		v.Payments = append(v.Payments, p.Payment)
	}
	return v
}

func orderTotals(o *orderRec, ps []*paymentRec) (auth, capt, refd Money) {
	cur := o.Amount.Currency
	auth, capt, refd = Money{Currency: cur}, Money{Currency: cur}, Money{Currency: cur}
	for _, p := range ps {
		auth.Value += p.Authorized.Value
		capt.Value += p.Captured.Value
		refd.Value += p.Refunded.Value
	}
	return auth, capt, refd
}

// reservedStatuses are payment statuses that consume part of the order
// amount: their money is moving or moved.
func reserves(status string) bool {
	switch status {
	case PaymentPending, PaymentInDoubt, PaymentHeldForReview, PaymentAuthorized,
		PaymentCaptured, PaymentPartiallyRefunded, PaymentRefunded:
		return true
	}
	return false
}

// unsettled payments block another attempt on the order: one payment at a
// time, so a slow provider cannot lead to a double charge.
func unsettled(status string) bool {
	return status == PaymentPending || status == PaymentInDoubt || status == PaymentHeldForReview
}

// openAmount is what of the order is not yet covered by payments.
func openAmount(o *orderRec, ps []*paymentRec) int64 {
	open := o.Amount.Value
	for _, p := range ps {
		if reserves(p.Status) {
			open -= p.Amount.Value
		}
	}
	return open
}

// checkInvariants verifies DESIGN.md invariant 3 for an order.
func checkInvariants(o *orderRec, ps []*paymentRec) error {
	var authorized, limit int64 = 0, o.Amount.Value
	for _, p := range ps {
		ms := []Money{p.Amount, p.Authorized, p.Captured, p.Refunded}
		if p.Surcharge != nil {
			ms = append(ms, *p.Surcharge)
		}
		for _, m := range ms {
			if m.Currency != o.Amount.Currency {
				return fmt.Errorf("payment %s: amount in %s, order in %s", p.ID, m.Currency, o.Amount.Currency)
			}
		}
		if p.Authorized.Value < 0 || p.Captured.Value < 0 || p.Refunded.Value < 0 {
			return fmt.Errorf("payment %s: negative amount", p.ID)
		}
		if p.Captured.Value+p.PendingCapture > p.Authorized.Value && p.Status != PaymentCancelled {
			return fmt.Errorf("payment %s: captured %d (+%d pending) exceeds authorized %d", p.ID, p.Captured.Value, p.PendingCapture, p.Authorized.Value)
		}
		if p.Refunded.Value+p.PendingRefund > p.Captured.Value {
			return fmt.Errorf("payment %s: refunded %d (+%d pending) exceeds captured %d", p.ID, p.Refunded.Value, p.PendingRefund, p.Captured.Value)
		}
		authorized += p.Authorized.Value
		if p.Surcharge != nil && reserves(p.Status) {
			limit += p.Surcharge.Value
		}
	}
	if authorized > limit {
		return fmt.Errorf("authorized %d exceeds order amount plus surcharges %d", authorized, limit)
	}
	return nil
}

// amountDue is what the order's captures must cover: its amount plus the
// surcharges of the payments that count towards it (the ones openAmount
// subtracts), less what those payments released uncaptured.
func amountDue(o *orderRec, ps []*paymentRec) int64 {
	due := o.Amount.Value
	for _, p := range ps {
		if p.Surcharge != nil && reserves(p.Status) {
			due += p.Surcharge.Value
		}
		if p.Released != nil && reserves(p.Status) {
			due -= p.Released.Value // the merchant gave it up (VersionRelease)
		}
	}
	return due
}

// holdsUncaptured reports whether a payment still holds authorized money
// not yet captured (more may be captured: the order is not over).
func holdsUncaptured(ps []*paymentRec) bool {
	for _, p := range ps {
		switch p.Status {
		case PaymentAuthorized, PaymentCaptured, PaymentPartiallyRefunded:
			if p.Authorized.Value > p.Captured.Value {
				return true
			}
		}
	}
	return false
}

// deriveOrderStatus computes an order's status from its payments; it is a
// pure function of stored state, so every node agrees. moneyRules is
// cluster version VersionMoneyRules (amountDue, holdsUncaptured).
func deriveOrderStatus(o *orderRec, ps []*paymentRec, moneyRules bool) string {
	auth, capt, refd := orderTotals(o, ps)
	due := o.Amount.Value
	if moneyRules {
		due = amountDue(o, ps)
	}
	switch {
	case capt.Value > 0 && refd.Value >= capt.Value && (!moneyRules || !holdsUncaptured(ps)):
		return OrderRefunded
	case refd.Value > 0:
		return OrderPartiallyRefunded
	case capt.Value >= due:
		return OrderPaid
	case capt.Value > 0 || auth.Value > 0:
		return OrderAuthorized
	}
	if o.Status == OrderExpired {
		return OrderExpired // no payment is accepted after expiry
	}
	for _, p := range ps {
		if p.Status == PaymentHeldForReview {
			return OrderHeldForReview
		}
	}
	for _, p := range ps {
		if p.Status == PaymentPending || p.Status == PaymentInDoubt {
			return OrderPending
		}
	}
	if len(ps) == 0 {
		return OrderCreated
	}
	switch ps[len(ps)-1].Status {
	case PaymentCancelled:
		return OrderCancelled
	case PaymentDeclined, PaymentFailed:
		return OrderFailed
	}
	return OrderCreated
}

// ---------------------------------------------------------------------------
// Methods offered, config, watermark, expiry.

func (ac *applyCtx) methodsOffered(c *cmdMethodsOffered) (*ApplyResult, error) {
	o, err := ac.loadOrder(c.OrderID)
	if err != nil {
		return nil, err
	}
	if o == nil {
		return reject(KindNotFound, CodeOrderNotFound, "", "order "+c.OrderID+" not found"), nil
	}
	raw, err := json.Marshal(c.Offer)
	if err != nil {
		return nil, fmt.Errorf("encode offer: %w", err)
	}
	sum := sha256.Sum256(raw)
	hash := hex.EncodeToString(sum[:])
	if hash == o.OfferHash || o.OfferEvents >= MaxOfferEvents {
		return &ApplyResult{}, nil
	}
	o.OfferHash = hash
	o.OfferEvents++
	if err := ac.event(o, c.At, "methods_offered", "", offerMessage(c.Offer), c.Offer); err != nil {
		return nil, err
	}
	if err := ac.putOrder(o); err != nil {
		return nil, err
	}
	return &ApplyResult{}, nil
}

func (ac *applyCtx) configPut(c *cmdConfigPut) (*ApplyResult, error) {
	var prev RoutingConfig
	had, err := getJSON(ac.b, []byte(keyConfig), &prev)
	if err != nil {
		return nil, err
	}
	if had && c.OnlyIfAbsent {
		reply, err := jsonReply(200, prev)
		if err != nil {
			return nil, err
		}
		return &ApplyResult{Reply: reply, Replayed: true}, nil
	}
	cfg := c.Config
	v, err := ac.version()
	if err != nil {
		return nil, err
	}
	if e := configFieldsGate(&cfg, v); e != nil {
		return &ApplyResult{Err: e}, nil
	}
	if e := cfg.Validate(); e != nil {
		return &ApplyResult{Err: e}, nil
	}
	if had {
		// Repeated from PutConfig's check: a payment approved at a
		// dropped provider after it would be stranded. No marks exist
		// below VersionFollowUps.
		e, err := paymentsKeepProviders(ac.b, &cfg)
		if err != nil {
			return nil, err
		}
		if e != nil {
			return &ApplyResult{Err: e}, nil
		}
	}
	cfg.Version = prev.Version + 1
	if err := ac.putJSON([]byte(keyConfig), cfg); err != nil {
		return nil, err
	}
	for _, mc := range cfg.Merchants {
		if err := ac.emitJSON("merchant", mc.ID, "", c.At, map[string]string{"id": mc.ID, "name": mc.Name}); err != nil {
			return nil, err
		}
	}
	reply, err := jsonReply(200, cfg)
	if err != nil {
		return nil, err
	}
	ac.newConfig = &cfg
	return &ApplyResult{Reply: reply}, nil
}

func (ac *applyCtx) readUint(key string) (uint64, error) {
	raw, err := ac.b.Get([]byte(key))
	if errors.Is(err, ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("get %s: %w", key, err)
	}
	v, err := decodeUint64(raw)
	if err != nil {
		return 0, fmt.Errorf("decode %s: %w", key, err)
	}
	return v, nil
}

// watermark records that the exporter shipped every outbox event up to
// c.Seq and trims them. A lower or equal watermark is ignored (a stale
// exporter after a leader change); a watermark past the last event is
// clamped to it.
func (ac *applyCtx) watermark(c *cmdWatermark) (*ApplyResult, error) {
	cur, err := ac.readUint(keyWatermark)
	if err != nil {
		return nil, err
	}
	last, err := ac.outboxSeq()
	if err != nil {
		return nil, err
	}
	seq := min(c.Seq, last)
	if seq <= cur {
		return &ApplyResult{}, nil
	}
	// One range deletion: the exported events are neither read nor
	// deleted one by one (every replica applies this for every exported
	// batch, on the payment path's CPU).
	if err := ac.b.DeleteRange(outboxKey(cur+1), outboxKey(seq+1)); err != nil {
		return nil, fmt.Errorf("trim outbox: %w", err)
	}
	if err := ac.b.Set([]byte(keyWatermark), encodeUint64(seq)); err != nil {
		return nil, fmt.Errorf("set watermark: %w", err)
	}
	return &ApplyResult{}, nil
}

// expireIdem deletes finished idempotency records created before c.Before
// (at most Limit). Records still in progress (a payment in doubt) are kept:
// forgetting them could let a retry execute twice.
// expiryBatch returns, copied, the keys of the time-ordered expiry index
// under prefix that sort before end (what is due) and after after (nil:
// from the oldest), at most limit (0 or above DefaultExpireLimit:
// DefaultExpireLimit).
func (ac *applyCtx) expiryBatch(prefix string, end, after []byte, limit int) ([][]byte, error) {
	if limit <= 0 || limit > DefaultExpireLimit {
		limit = DefaultExpireLimit
	}
	start, _ := prefixRange(prefix)
	if len(after) > 0 && bytes.Compare(after, start) >= 0 {
		start = append(slices.Clip(after), 0) // the next key after it
	}
	var idx [][]byte
	if err := ac.b.Scan(start, end, func(k, _ []byte) bool {
		idx = append(idx, bytes.Clone(k))
		return len(idx) < limit
	}); err != nil {
		return nil, fmt.Errorf("scan expiry index %s: %w", prefix, err)
	}
	return idx, nil
}

func (ac *applyCtx) expireIdem(c *cmdExpireIdem) (*ApplyResult, error) {
	v, err := ac.version()
	if err != nil {
		return nil, err
	}
	cursor := v >= VersionProviderAmount
	after := c.After
	if !cursor {
		after = nil
	}
	idx, err := ac.expiryBatch(prefixIdemExpiry, idemExpiryBefore(c.Before), after, c.Limit)
	if err != nil {
		return nil, err
	}
	deleted := 0
	for _, k := range idx {
		// k = ie/<16 hex>/<merchant>\x00<key>
		rest := string(k[len(prefixIdemExpiry)+17:])
		ik := []byte(prefixIdem + rest)
		rec, err := loadRecord[idemRecord](ac, ik)
		if err != nil {
			return nil, err
		}
		if rec != nil && rec.State == idemInProgress {
			continue
		}
		if rec != nil {
			if err := ac.del(ik); err != nil {
				return nil, err
			}
		}
		if err := ac.del(k); err != nil {
			return nil, err
		}
		deleted++
	}
	out := expiryResult{Deleted: deleted, Scanned: len(idx)}
	if cursor && len(idx) > 0 { // (the reply of earlier versions, unchanged)
		out.Last = idx[len(idx)-1]
	}
	body, _ := json.Marshal(out)
	return &ApplyResult{Reply: Reply{Status: 200, Body: body}}, nil
}
