package txswitch

import (
	"bytes"
	"fmt"
	"hash/maphash"
	"slices"
	"sync/atomic"
)

// keyFilter lets apply skip store reads of cached-table records that are
// certainly absent. Most such reads are of keys that do not exist yet — a
// new order's or payment's id, a new idempotency key — and a miss is the
// dearest read there is: pebble seeks every memtable and consults every
// level's filter (a tenth of the payments benchmark's CPU went to them).
//
// It is a Bloom filter over every key of the cached tables (o/, p/, d/, i/)
// in the store: "no" is certain, "maybe" means read the store. Like the
// record cache it only decides whether apply reads the store, never what
// apply sees, so it cannot affect determinism. Soundness needs every
// existing key in it:
//
//   - keys written by apply are added when written (putRecord), before
//     their batch commits; a batch that then fails leaves extra keys,
//     which only cost a read;
//   - keys already in the store are added by a scan that advances a
//     bounded chunk per Apply call (no goroutine, no long pause at
//     start), all under applyMu. Until the scan has passed every cached
//     table, the filter answers "maybe" to everything. A key the scan has
//     not reached yet is found by it later (it is in the store); one it
//     has passed was either there (added) or written since (added);
//   - Restore and any apply failure start a new, empty filter and scan.
//
// Deleted keys stay in the filter: another read, never a wrong answer.
//
// The service asks it too, outside applyMu (Machine.keyMayExist): a new
// request's idempotency key is a miss that cost each payment two pebble
// reads on the leader. add and advance still run only under applyMu;
// absent may run concurrently with them, so the parts, their bits and the
// flags are atomics, and a part is published before its bits are set.
// A key is added before its batch commits, so a reader that can see the
// key in the store sees it in the filter too. The service's answer is a
// fast path only: apply checks the idempotency record again, so even a
// reader that held a filter a Restore replaced would only propose what
// apply then answers as a duplicate.
//
// Bound: past maxFilterKeys keys (about 80 MB of filter; some 6 million
// payments, each adding about five keys) the filter retires: it frees its
// parts, answers "maybe" to everything and apply reads the store as it did
// without it. A restart or Restore starts a new one.
type keyFilter struct {
	seed maphash.Seed
	// parts is published whole (copy on append); nil once retired.
	parts   atomic.Pointer[[]*bloomPart]
	keys    int // under applyMu
	retired atomic.Bool
	// scan is the next key of the catch-up scan; table indexes
	// filterTables (both under applyMu). done: the scan has passed every
	// table.
	scanTable int
	scanFrom  []byte
	done      atomic.Bool
}

// filterTables are the cached tables' key prefixes (see cachedTable).
var filterTables = []string{prefixOrder, prefixPayment, prefixInDoubt, prefixIdem}

// filterScanChunk bounds the keys the catch-up scan reads per Apply call.
var filterScanChunk = 4096

// Bloom filter parameters: 10 bits and 7 probes per key give about 1 %
// false positives per part. The first part holds filterFirstPart keys;
// each further one twice as many as the one before, so a filter over n
// keys has about log2(n/filterFirstPart) parts.
const (
	maxFilterKeys   = 1 << 25
	bloomBitsPerKey = 10
	bloomProbes     = 7
	filterFirstPart = 1 << 16
)

type bloomPart struct {
	bits     []atomic.Uint64
	n, limit int // under applyMu
}

func newKeyFilter() *keyFilter {
	f := &keyFilter{seed: maphash.MakeSeed()}
	f.parts.Store(&[]*bloomPart{})
	return f
}

func (f *keyFilter) probes(key []byte) (h1, h2 uint64) {
	h := maphash.Bytes(f.seed, key)
	return h, h>>32 | 1
}

// add records key as possibly present (applyMu held).
func (f *keyFilter) add(key []byte) {
	if f.retired.Load() {
		return
	}
	if f.keys++; f.keys > maxFilterKeys {
		f.retired.Store(true)
		f.parts.Store(nil)
		return
	}
	parts := *f.parts.Load()
	if len(parts) == 0 || parts[len(parts)-1].n >= parts[len(parts)-1].limit {
		limit := filterFirstPart
		if len(parts) > 0 {
			limit = 2 * parts[len(parts)-1].limit
		}
		parts = append(slices.Clip(parts), &bloomPart{bits: make([]atomic.Uint64, limit*bloomBitsPerKey/64), limit: limit})
		f.parts.Store(&parts)
	}
	p := parts[len(parts)-1]
	m := uint64(len(p.bits) * 64)
	h1, h2 := f.probes(key)
	for i := range uint64(bloomProbes) {
		b := (h1 + i*h2) % m
		p.bits[b/64].Or(1 << (b % 64))
	}
	p.n++
}

// absent reports whether key is certainly not in the store. It may run
// concurrently with add and advance.
func (f *keyFilter) absent(key []byte) bool {
	// The flags before the parts: a filter retired meanwhile has nil parts.
	if !f.done.Load() || f.retired.Load() {
		return false
	}
	ps := f.parts.Load()
	if ps == nil {
		return false
	}
	h1, h2 := f.probes(key)
	for _, p := range *ps {
		m := uint64(len(p.bits) * 64)
		in := true
		for i := range uint64(bloomProbes) {
			b := (h1 + i*h2) % m
			if p.bits[b/64].Load()&(1<<(b%64)) == 0 {
				in = false
				break
			}
		}
		if in {
			return false
		}
	}
	return true
}

// advance continues the catch-up scan over r by at most filterScanChunk
// keys.
func (f *keyFilter) advance(r Reader) error {
	budget := filterScanChunk
	for !f.done.Load() && !f.retired.Load() && budget > 0 {
		start, end := prefixRange(filterTables[f.scanTable])
		if f.scanFrom != nil {
			start = f.scanFrom
		}
		var last []byte
		n := 0
		if err := r.Scan(start, end, func(k, _ []byte) bool {
			f.add(k)
			n++
			if n == budget {
				last = bytes.Clone(k)
				return false
			}
			return true
		}); err != nil {
			return fmt.Errorf("key filter scan of %s: %w", filterTables[f.scanTable], err)
		}
		budget -= n
		if last != nil {
			f.scanFrom = append(last, 0) // the next key after last
			continue
		}
		f.scanTable, f.scanFrom = f.scanTable+1, nil
		f.done.Store(f.scanTable == len(filterTables))
	}
	return nil
}
