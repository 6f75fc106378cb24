package txswitch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// The outbox holds every committed change (orders, payments, refunds,
// timeline events, merchants) under a dense sequence for the central
// database exporter. It is trimmed only by the replicated export
// watermark, so while PostgreSQL is down it grows, bounded by disk alone;
// OutboxBacklog makes that growth visible.

// MaxOutboxRead bounds the events of one ReadOutbox call, and
// MaxOutboxReadBytes their stored size: an order event carries all its
// lines, so a count alone would let a backlog of large orders take
// hundreds of MB per batch (and the exporter holds two batches).
const (
	MaxOutboxRead      = 10_000
	MaxOutboxReadBytes = 16 << 20
)

// ReadOutbox returns up to limit events with seq > after, in seq order, and
// fewer once they hold MaxOutboxReadBytes (at least one, whatever its size).
func (s *Svc) ReadOutbox(after uint64, limit int) ([]OutboxEvent, error) {
	if limit <= 0 || limit > MaxOutboxRead {
		limit = MaxOutboxRead
	}
	var out []OutboxEvent
	var decodeErr error
	size := 0
	_, end := prefixRange(prefixOutbox)
	if err := s.store.Scan(outboxKey(after+1), end, func(k, v []byte) bool {
		ev, ok := decodeOutboxEvent(v)
		if !ok {
			ev = OutboxEvent{}
			if err := json.Unmarshal(v, &ev); err != nil {
				decodeErr = fmt.Errorf("decode %q: %w", k, err)
				return false
			}
		}
		out = append(out, ev)
		size += len(v)
		return len(out) < limit && size < MaxOutboxReadBytes
	}); err != nil {
		return nil, fmt.Errorf("scan outbox: %w", err)
	}
	return out, decodeErr
}

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
