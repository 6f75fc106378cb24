package txswitch

import (
	"bytes"
	"fmt"
	"hash/maphash"
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
// Bound: past maxFilterKeys keys (about 80 MB of filter; some 6 million
// payments, each adding about five keys) the filter retires: it frees its
// parts, answers "maybe" to everything and apply reads the store as it did
// without it. A restart or Restore starts a new one.
type keyFilter struct {
	seed    maphash.Seed
	parts   []*bloomPart
	keys    int
	retired bool
	// scan is the next key of the catch-up scan; table indexes
	// filterTables. done: the scan has passed every table.
	scanTable int
	scanFrom  []byte
	done      bool
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
	bits     []uint64
	n, limit int
}

func newKeyFilter() *keyFilter {
	return &keyFilter{seed: maphash.MakeSeed()}
}

func (f *keyFilter) probes(key []byte) (h1, h2 uint64) {
	h := maphash.Bytes(f.seed, key)
	return h, h>>32 | 1
}

// add records key as possibly present.
func (f *keyFilter) add(key []byte) {
	if f.retired {
		return
	}
	if f.keys++; f.keys > maxFilterKeys {
		f.retired, f.parts = true, nil
		return
	}
	if len(f.parts) == 0 || f.parts[len(f.parts)-1].n >= f.parts[len(f.parts)-1].limit {
		limit := filterFirstPart
		if len(f.parts) > 0 {
			limit = 2 * f.parts[len(f.parts)-1].limit
		}
		f.parts = append(f.parts, &bloomPart{bits: make([]uint64, limit*bloomBitsPerKey/64), limit: limit})
	}
	p := f.parts[len(f.parts)-1]
	m := uint64(len(p.bits) * 64)
	h1, h2 := f.probes(key)
	for i := range uint64(bloomProbes) {
		b := (h1 + i*h2) % m
		p.bits[b/64] |= 1 << (b % 64)
	}
	p.n++
}

// absent reports whether key is certainly not in the store.
func (f *keyFilter) absent(key []byte) bool {
	if !f.done || f.retired {
		return false
	}
	h1, h2 := f.probes(key)
	for _, p := range f.parts {
		m := uint64(len(p.bits) * 64)
		in := true
		for i := range uint64(bloomProbes) {
			b := (h1 + i*h2) % m
			if p.bits[b/64]&(1<<(b%64)) == 0 {
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
	for !f.done && !f.retired && budget > 0 {
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
		f.done = f.scanTable == len(filterTables)
	}
	return nil
}
