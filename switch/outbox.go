package txswitch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// The outbox records every committed change (orders, payments, refunds,
// timeline events, merchants) under a dense sequence for the central
// database exporter: a copy of the resource, or from VersionOutboxRefs a
// reference that ReadOutbox reads. It is trimmed only by the replicated export
// watermark, so while PostgreSQL is down it grows, bounded by disk alone;
// OutboxBacklog makes that growth visible.

// MaxOutboxRead bounds the events of one ReadOutbox call, and
// MaxOutboxReadBytes the size of their resources: an order carries all its
// lines, so a count alone would let a backlog of large orders take
// hundreds of MB per batch (and the exporter holds two batches).
const (
	MaxOutboxRead      = 10_000
	MaxOutboxReadBytes = 16 << 20
)

// outboxRecord is an outbox event as stored: with its resource, or (from
// VersionOutboxRefs, for orders, payments and timeline events) with Ref
// naming it, which ReadOutbox resolves: the payment id, the order id, or
// the timeline event's seq on its order.
type outboxRecord struct {
	OutboxEvent
	Ref string `json:"ref,omitempty"`
}

// ReadOutbox returns up to limit events with seq > after, in seq order, and
// fewer once their resources hold MaxOutboxReadBytes (at least one,
// whatever its size). It reads one consistent view of the state: an event
// that names its resource gets the resource as it is in that view, never
// older than the event (one apply batch wrote both) and possibly newer,
// with AsOf the view's outbox head, so a row the exporter writes from it
// is versioned by the state it shows (OutboxEvent.RowVersion) and never
// overwritten by an older copy (a refund event written before the payment
// was read) or by a view a lagging node reads after a leader change.
func (s *Svc) ReadOutbox(after uint64, limit int) ([]OutboxEvent, error) {
	if limit <= 0 || limit > MaxOutboxRead {
		limit = MaxOutboxRead
	}
	view, err := s.m.store.View()
	if err != nil {
		return nil, fmt.Errorf("outbox view: %w", err)
	}
	defer view.Close()
	head, err := readUint(view, keyOutboxSeq)
	if err != nil {
		return nil, err
	}
	var recs []outboxRecord
	var readErr error
	size := 0
	_, end := prefixRange(prefixOutbox)
	if err := view.Scan(outboxKey(after+1), end, func(k, v []byte) bool {
		rec, ok := decodeOutboxEvent(v)
		if !ok {
			rec = outboxRecord{}
			if err := json.Unmarshal(v, &rec); err != nil {
				readErr = fmt.Errorf("decode %q: %w", k, err)
				return false
			}
		}
		recs = append(recs, rec)
		size += len(v)
		return len(recs) < limit && size < MaxOutboxReadBytes
	}); err != nil {
		return nil, fmt.Errorf("scan outbox: %w", err)
	}
	// References are resolved once the scan is over: a store may hold a
	// read lock for the scan that a Get inside it would take again.
	out := make([]OutboxEvent, 0, len(recs))
	// One read per order or payment per call: a payment's events name its
	// order and itself several times over.
	current := map[string][]byte{}
	size = 0
	for i := range recs {
		rec := &recs[i]
		if rec.Ref != "" {
			res, err := resolveOutboxRef(view, rec, current)
			if err != nil {
				return out, fmt.Errorf("outbox event %d: %w", rec.Seq, err)
			}
			rec.Resource, rec.AsOf = res, max(head, rec.Seq)
		}
		out = append(out, rec.OutboxEvent)
		if size += len(rec.Resource); size >= MaxOutboxReadBytes {
			return out, nil
		}
	}
	return out, readErr
}

// resolveOutboxRef reads the resource rec names from r. Orders, payments
// and timeline events are never deleted, so one that is missing is a bug.
func resolveOutboxRef(r Reader, rec *outboxRecord, current map[string][]byte) (json.RawMessage, error) {
	switch rec.Kind {
	case "timeline":
		tseq, err := strconv.ParseUint(rec.Ref, 10, 64)
		if err != nil || rec.OrderID == "" {
			return nil, fmt.Errorf("timeline reference %q of order %q: %w", rec.Ref, rec.OrderID, errBadOutboxRef)
		}
		raw, err := r.Get(timelineKey(rec.OrderID, tseq))
		if err != nil {
			return nil, fmt.Errorf("timeline event %d of order %s: %w", tseq, rec.OrderID, err)
		}
		return raw, nil
	case "order", "payment":
		ck := rec.Kind + "/" + rec.Ref
		if res, ok := current[ck]; ok {
			return res, nil
		}
		var key []byte
		fields := func(d *canonDec) bool { return d.paymentFields().ID == rec.Ref }
		if key = paymentKey(rec.Ref); rec.Kind == "order" {
			key = orderKey(rec.Ref)
			// An order resource carries no payments (apply emits it so).
			fields = func(d *canonDec) bool { o := d.orderFields(); return o.ID == rec.Ref && o.Payments == nil }
		}
		raw, err := r.Get(key)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", rec.Kind, rec.Ref, err)
		}
		res, ok := resourcePrefix(raw, fields)
		if !ok {
			if res, err = decodeResource(rec.Kind, raw); err != nil {
				return nil, fmt.Errorf("%s %s: %w", rec.Kind, rec.Ref, err)
			}
		}
		current[ck] = res
		return res, nil
	}
	return nil, fmt.Errorf("reference %q in a %q event: %w", rec.Ref, rec.Kind, errBadOutboxRef)
}

// decodeResource is the resource of a stored order or payment record
// resourcePrefix could not cut out: decoded by encoding/json, encoded as
// apply encodes it.
func decodeResource(kind string, raw []byte) ([]byte, error) {
	if kind == "order" {
		var o orderRec
		if err := json.Unmarshal(raw, &o); err != nil {
			return nil, fmt.Errorf("decode: %w", err)
		}
		r := o.Order
		r.Payments = nil // the order resource, as apply emits it
		return encodeOrder(&r)
	}
	var p paymentRec
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	return encodePayment(&p.Payment)
}

// errBadOutboxRef: a stored reference that names nothing this binary reads.
var errBadOutboxRef = errors.New("malformed outbox reference")

func readUint(r Reader, key string) (uint64, error) {
	raw, err := r.Get([]byte(key))
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

// ExportWatermark is the highest seq the exporter has confirmed.
func (s *Svc) ExportWatermark() (uint64, error) { return readUint(s.store, keyWatermark) }

// OutboxHead is the seq of the newest committed event (0 when none).
func (s *Svc) OutboxHead() (uint64, error) { return readUint(s.store, keyOutboxSeq) }

// OutboxBacklog is the number of events not yet exported.
func (s *Svc) OutboxBacklog() (uint64, error) {
	last, err := readUint(s.store, keyOutboxSeq)
	if err != nil {
		return 0, err
	}
	wm, err := readUint(s.store, keyWatermark)
	if err != nil {
		return 0, err
	}
	return last - min(wm, last), nil
}

// AdvanceExportWatermark replicates that every event up to seq is in the
// central database; those events are then deleted. A watermark at or
// below the current one changes nothing.
func (s *Svc) AdvanceExportWatermark(ctx context.Context, seq uint64) error {
	_, err := s.propose(ctx, cmdTypeWatermark, &cmdWatermark{Seq: seq})
	return err
}
