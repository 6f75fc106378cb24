package txswitch

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
)

// sliceReader is a Reader over sorted keys (values unused).
type sliceReader struct{ keys [][]byte }

func (r sliceReader) Get([]byte) ([]byte, error) { return nil, ErrNotFound }

func (r sliceReader) Scan(start, end []byte, fn func(k, v []byte) bool) error {
	for _, k := range r.keys {
		if bytes.Compare(k, start) >= 0 && (end == nil || bytes.Compare(k, end) < 0) && !fn(k, nil) {
			return nil
		}
	}
	return nil
}

func TestKeyFilterNoFalseNegatives(t *testing.T) {
	f := newKeyFilter()
	if err := f.advance(sliceReader{}); err != nil || !f.done.Load() {
		t.Fatalf("empty store: done %v, %v", f.done.Load(), err)
	}
	const n = 5 * filterFirstPart // several parts
	for i := range n {
		f.add(fmt.Appendf(nil, "o/ord_%d", i))
	}
	if len(*f.parts.Load()) < 3 {
		t.Fatalf("%d parts for %d keys", len(*f.parts.Load()), n)
	}
	for i := range n {
		if k := fmt.Appendf(nil, "o/ord_%d", i); f.absent(k) {
			t.Fatalf("added key %s reported absent", k)
		}
	}
	fp := 0
	for i := range n {
		if !f.absent(fmt.Appendf(nil, "o/other_%d", i)) {
			fp++
		}
	}
	// Each part errs about 1 % of the time; the filter errs if any does.
	if rate := float64(fp) / n; rate > 0.01*float64(len(*f.parts.Load()))+0.01 {
		t.Fatalf("false positive rate %.3f with %d parts", rate, len(*f.parts.Load()))
	}
}

// TestKeyFilterCatchUp: until the scan has passed every cached table the
// filter says nothing is absent; after, every key of a cached table in the
// store is known, whatever the chunk size, and keys of other tables are
// not scanned.
func TestKeyFilterCatchUp(t *testing.T) {
	var keys [][]byte
	for _, p := range []string{prefixIdem, prefixIdemExpiry, prefixInDoubt, prefixOrder, prefixOrderPayments, prefixPayment, prefixTimeline, prefixOutbox} {
		for i := range 10 {
			keys = append(keys, fmt.Appendf(nil, "%s%03d", p, i))
		}
	}
	slices.SortFunc(keys, bytes.Compare)
	r := sliceReader{keys}
	for _, chunk := range []int{1, 3, 10, 39, 40, 41, 1000} {
		t.Run(fmt.Sprint("chunk ", chunk), func(t *testing.T) {
			defer func(prev int) { filterScanChunk = prev }(filterScanChunk)
			filterScanChunk = chunk
			f := newKeyFilter()
			calls := 0
			for !f.done.Load() {
				if f.absent([]byte("o/never")) {
					t.Fatal("absent before the scan finished")
				}
				if err := f.advance(r); err != nil {
					t.Fatal(err)
				}
				if calls++; calls > 100 {
					t.Fatal("scan does not finish")
				}
			}
			if want := (40 + chunk - 1) / chunk; calls > want+len(filterTables) {
				t.Fatalf("%d calls for 40 keys in chunks of %d", calls, chunk)
			}
			added := 0
			for _, p := range *f.parts.Load() {
				added += p.n
			}
			if added != 40 {
				t.Fatalf("scan added %d keys; want the 40 of the cached tables", added)
			}
			for _, k := range keys {
				if cachedTable(k) && f.absent(k) {
					t.Fatalf("%s reported absent", k)
				}
			}
		})
	}
}

// TestKeyFilterRetires: past maxFilterKeys the filter frees its parts and
// says nothing is absent, whatever it held.
func TestKeyFilterRetires(t *testing.T) {
	f := newKeyFilter()
	if err := f.advance(sliceReader{}); err != nil {
		t.Fatal(err)
	}
	f.add([]byte("o/a"))
	if !f.absent([]byte("o/b")) {
		t.Fatal("o/b not absent before retiring (test broken)")
	}
	f.keys = maxFilterKeys // as if it held that many
	f.add([]byte("o/c"))
	if !f.retired.Load() || f.parts.Load() != nil {
		t.Fatalf("not retired past %d keys (retired %v)", maxFilterKeys, f.retired.Load())
	}
	for _, k := range []string{"o/a", "o/b", "o/c"} {
		if f.absent([]byte(k)) {
			t.Fatalf("retired filter says %s is absent", k)
		}
	}
}

// TestKeyFilterConcurrentReaders: the service asks the filter outside
// applyMu while apply adds keys and grows parts. A key added before a
// reader looks (here: published after its add, as a batch commits after
// putRecord) is never reported absent; run with -race it also checks the
// filter's memory accesses.
func TestKeyFilterConcurrentReaders(t *testing.T) {
	f := newKeyFilter()
	if err := f.advance(sliceReader{}); err != nil {
		t.Fatal(err)
	}
	const n = 3 * filterFirstPart // the parts grow while readers read
	key := func(i int) []byte { return fmt.Appendf(nil, "i/m\x00key-%d", i) }
	var committed atomic.Int64
	committed.Store(-1)
	var wg sync.WaitGroup
	errs := make(chan string, 4)
	for r := range 4 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(r), 1))
			for {
				c := committed.Load()
				if c >= 0 {
					if j := rng.IntN(int(c) + 1); f.absent(key(j)) {
						errs <- fmt.Sprintf("key %d reported absent after its add (committed up to %d)", j, c)
						return
					}
				}
				if c == n-1 {
					return
				}
			}
		})
	}
	for i := range n {
		f.add(key(i))
		committed.Store(int64(i))
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
	if parts := len(*f.parts.Load()); parts < 2 {
		t.Fatalf("%d parts: the test meant to grow them", parts)
	}
}
