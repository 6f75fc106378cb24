package txswitch

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
)

// Decoded-record caching for apply. JSON decoding of stored records was
// the largest single cost of Apply; a payment's commands touch the same
// order, payment, intent and idempotency records again and again.
//
// Three layers, all below the store, which stays the source of truth:
//
//   - per command (applyCtx.loaded): a record loaded twice in one command
//     is the same object, so a handler's changes are seen by saveOrder
//     without re-reading.
//   - per batch (batchState.written): a deep copy of every record written
//     in this Apply, taken when it was encoded, so the next command of the
//     batch starts from exactly the bytes in the batch.
//   - across Apply calls (recordCache): the written copies of committed
//     batches, promoted only after Commit succeeded.
//
// Coherence of recordCache: it holds, for a key, a value whose encoding is
// the committed store value. Every write apply makes to a cached table goes
// through putRecord or del, which record the new value or a tombstone in
// the batch; a successful Commit promotes them; a failed Apply or Commit
// clears the cache; Restore clears it. Only Apply (under applyMu) reads or
// writes it. Cached values are never handed out: loads deep-copy them, so
// no handler can change what the cache holds. Whether a load hits or misses
// changes nothing but its cost, so the cache never affects determinism.

// recordCacheGen bounds one generation of the cache; two generations are
// kept (at most 2×recordCacheGen entries): when the current one fills, it
// becomes the old one and the previous old one is dropped. A record used
// again is moved forward, so hot records stay.
const recordCacheGen = 16384

type recordCache struct {
	cur, old map[string]any // key → *orderRec | *paymentRec | *inDoubtRec | *idemRecord
	limit    int
}

func newRecordCache(limit int) *recordCache {
	return &recordCache{cur: make(map[string]any), limit: limit}
}

func (c *recordCache) get(k string) (any, bool) {
	if v, ok := c.cur[k]; ok {
		return v, true
	}
	v, ok := c.old[k]
	if ok {
		delete(c.old, k)
		c.put(k, v)
	}
	return v, ok
}

func (c *recordCache) put(k string, v any) {
	if len(c.cur) >= c.limit {
		c.old, c.cur = c.cur, make(map[string]any, c.limit)
	}
	c.cur[k] = v
	delete(c.old, k)
}

func (c *recordCache) remove(k string) {
	delete(c.cur, k)
	delete(c.old, k)
}

func (c *recordCache) clear() {
	c.cur, c.old = make(map[string]any), nil
}

// cachedTable reports whether records under k are cached (decoded types).
func cachedTable(k []byte) bool {
	switch {
	case bytes.HasPrefix(k, []byte(prefixOrder)), bytes.HasPrefix(k, []byte(prefixPayment)),
		bytes.HasPrefix(k, []byte(prefixInDoubt)), bytes.HasPrefix(k, []byte(prefixIdem)):
		return true
	}
	return false
}

// batchState is what one Apply call keeps across its commands.
type batchState struct {
	// version is the cluster version as of the command being applied (0:
	// not read yet in this batch); see applyCtx.version.
	version   int
	committed *recordCache
	filter    *keyFilter
	// written: key → deep copy of the value last written in this batch,
	// nil for a deleted key.
	written map[string]any
	// outboxSeq is the last assigned outbox seq (valid when seqLoaded);
	// seqDirty: it must be written before commit.
	outboxSeq           uint64
	seqLoaded, seqDirty bool
	buf                 *scratch
	// marked: providers known to carry their mark in this batch
	// (providermarks.go), so that a batch of approvals reads it once.
	marked map[string]bool
}

// scratch holds buffers for values that only live until Batch.Set, which
// copies them: outbox envelopes, timeline events (until their outbox event
// is encoded) and stored order/payment records. The Machine keeps them
// across Apply calls (under applyMu).
type scratch struct {
	outbox, timeline, record []byte
}

// maxScratch bounds what a scratch buffer keeps between Apply calls, so one
// huge value does not stay allocated.
const maxScratch = 64 << 10

func (s *scratch) trim() {
	for _, b := range []*[]byte{&s.outbox, &s.timeline, &s.record} {
		if cap(*b) > maxScratch {
			*b = nil
		}
	}
}

// promote moves the batch's writes into the committed cache (after a
// successful Commit).
func (bs *batchState) promote() {
	for k, v := range bs.written {
		if v == nil {
			bs.committed.remove(k)
		} else {
			bs.committed.put(k, v)
		}
	}
}

// cloneRecord deep-copies a cached record value.
func cloneRecord(v any) any {
	switch r := v.(type) {
	case *orderRec:
		return cloneOrder(r)
	case *paymentRec:
		return clonePayment(r)
	case *inDoubtRec:
		c := *r
		c.Idem = clonePtr(r.Idem)
		return &c
	case *idemRecord:
		c := *r
		if r.Reply != nil {
			rep := *r.Reply
			rep.Body = bytes.Clone(r.Reply.Body)
			c.Reply = &rep
		}
		return &c
	}
	panic(fmt.Sprintf("cloneRecord: %T", v))
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	c := *p
	return &c
}

func cloneOrder(o *orderRec) *orderRec {
	c := *o
	c.Lines = slices.Clone(o.Lines)
	c.Payments = slices.Clone(o.Payments) // always nil in records
	for i := range c.Payments {
		c.Payments[i] = clonePaymentResource(c.Payments[i])
	}
	c.paymentIDs = slices.Clone(o.paymentIDs)
	if o.ExpiresAt != nil {
		t := *o.ExpiresAt
		c.ExpiresAt = &t
	}
	return &c
}

func clonePaymentResource(p Payment) Payment {
	p.Surcharge = clonePtr(p.Surcharge)
	p.Released = clonePtr(p.Released)
	p.Failure = clonePtr(p.Failure)
	p.Captures = slices.Clone(p.Captures)
	p.Refunds = slices.Clone(p.Refunds)
	for i := range p.Refunds {
		p.Refunds[i].Failure = clonePtr(p.Refunds[i].Failure)
	}
	if p.Cancellation != nil {
		c := *p.Cancellation
		c.Amount = clonePtr(c.Amount)
		c.Failure = clonePtr(c.Failure)
		p.Cancellation = &c
	}
	return p
}

func clonePayment(p *paymentRec) *paymentRec {
	c := *p
	c.Payment = clonePaymentResource(p.Payment)
	c.PaymentData = maps.Clone(p.PaymentData)
	c.Candidates = slices.Clone(p.Candidates)
	c.Open = clonePtr(p.Open)
	c.Idem = clonePtr(p.Idem)
	return &c
}
