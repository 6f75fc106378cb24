package memory

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	txswitch "github.com/txswitch/txswitch/switch"
)

// Store is an in-memory txswitch.Store: keys kept sorted, batches that read
// their own writes, snapshots as a JSON image.
type Store struct {
	mu      sync.RWMutex
	keys    []string // sorted
	vals    map[string][]byte
	applied uint64
	// failCommit, when set, makes the next Commit fail with it (once).
	failCommit error
}

var _ txswitch.Store = (*Store)(nil)

// NewStore returns an empty store.
func NewStore() *Store { return &Store{vals: map[string][]byte{}} }

// FailNextCommit makes the next batch Commit return err.
func (s *Store) FailNextCommit(err error) {
	s.mu.Lock()
	s.failCommit = err
	s.mu.Unlock()
}

// Get returns a copy of key's value or txswitch.ErrNotFound.
func (s *Store) Get(key []byte) ([]byte, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, ok := s.vals[string(key)]
	if !ok {
		return nil, txswitch.ErrNotFound
	}
	return bytes.Clone(v), nil
}

// Scan visits [start, end) in key order. fn must not write to the store.
func (s *Store) Scan(start, end []byte, fn func(key, value []byte) bool) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.scanLocked(start, end, fn)
}

func (s *Store) scanLocked(start, end []byte, fn func(key, value []byte) bool) error {
	i, _ := slices.BinarySearch(s.keys, string(start))
	for ; i < len(s.keys); i++ {
		k := s.keys[i]
		if end != nil && k >= string(end) {
			break
		}
		if !fn([]byte(k), s.vals[k]) {
			break
		}
	}
	return nil
}

// View implements txswitch.Store with a copy of the state (this store
// holds test-sized states).
func (s *Store) View() (txswitch.View, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v := &view{Store: Store{keys: slices.Clone(s.keys), vals: make(map[string][]byte, len(s.vals)), applied: s.applied}}
	for k, val := range s.vals {
		v.vals[k] = val // values are never modified in place, only replaced
	}
	return v, nil
}

// view is a Store's frozen copy; only its reads are used.
type view struct{ Store }

func (v *view) Close() error { return nil }

// AppliedIndex is the index of the last committed batch.
func (s *Store) AppliedIndex() (uint64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.applied, nil
}

// NewBatch starts a batch.
func (s *Store) NewBatch() txswitch.Batch {
	return &batch{s: s, writes: map[string][]byte{}}
}

func (s *Store) setLocked(k string, v []byte) {
	if _, ok := s.vals[k]; !ok {
		i, _ := slices.BinarySearch(s.keys, k)
		s.keys = slices.Insert(s.keys, i, k)
	}
	s.vals[k] = v
}

func (s *Store) deleteLocked(k string) {
	if _, ok := s.vals[k]; !ok {
		return
	}
	delete(s.vals, k)
	i, _ := slices.BinarySearch(s.keys, k)
	s.keys = slices.Delete(s.keys, i, i+1)
}

type image struct {
	Index uint64      `json:"index"`
	KV    [][2][]byte `json:"kv"`
}

// SnapshotState returns every key and the applied index.
func (s *Store) SnapshotState() (uint64, []byte, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	img := image{Index: s.applied, KV: make([][2][]byte, 0, len(s.keys))}
	for _, k := range s.keys {
		img.KV = append(img.KV, [2][]byte{[]byte(k), s.vals[k]})
	}
	data, err := json.Marshal(img)
	if err != nil {
		return 0, nil, fmt.Errorf("encode snapshot: %w", err)
	}
	return s.applied, data, nil
}

// RestoreState replaces everything with an image from SnapshotState.
func (s *Store) RestoreState(index uint64, data []byte) error {
	var img image
	if err := json.Unmarshal(data, &img); err != nil {
		return fmt.Errorf("decode snapshot: %w", err)
	}
	if img.Index != index {
		return fmt.Errorf("snapshot image is at %d, not %d", img.Index, index)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = s.keys[:0]
	s.vals = make(map[string][]byte, len(img.KV))
	for _, kv := range img.KV {
		s.setLocked(string(kv[0]), kv[1])
	}
	s.applied = index
	return nil
}

// OpenImage implements txswitch.Store: the image is taken at once (the
// store is in memory anyway).
func (s *Store) OpenImage() (txswitch.StateImage, error) {
	index, data, err := s.SnapshotState()
	if err != nil {
		return nil, err
	}
	return &memImage{index: index, data: data}, nil
}

// RestoreImage implements txswitch.Store by reading the whole image.
func (s *Store) RestoreImage(index uint64, r io.Reader, size int64) error {
	data, err := io.ReadAll(io.LimitReader(r, size))
	if err != nil {
		return fmt.Errorf("read snapshot image: %w", err)
	}
	if int64(len(data)) != size {
		return fmt.Errorf("snapshot image of %d bytes, %d announced", len(data), size)
	}
	return s.RestoreState(index, data)
}

type memImage struct {
	index uint64
	data  []byte
}

func (m *memImage) Index() uint64 { return m.index }

func (m *memImage) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(m.data)
	return int64(n), err
}

func (m *memImage) Close() error { return nil }

// Dump renders the whole key space and applied index deterministically,
// for comparing two stores in tests.
func (s *Store) Dump() []byte {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var b bytes.Buffer
	fmt.Fprintf(&b, "applied=%d\n", s.applied)
	for _, k := range s.keys {
		fmt.Fprintf(&b, "%q=%s\n", k, s.vals[k])
	}
	return b.Bytes()
}

// Len is the number of keys.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.keys)
}

// batch buffers writes (nil value = delete) over the store, with its keys
// kept sorted so a scan merges two sorted runs.
type batch struct {
	s      *Store
	writes map[string][]byte
	keys   []string // sorted keys of writes
	closed bool
}

var errClosed = errors.New("batch is closed")

func (b *batch) Get(key []byte) ([]byte, error) {
	if v, ok := b.writes[string(key)]; ok {
		if v == nil {
			return nil, txswitch.ErrNotFound
		}
		return bytes.Clone(v), nil
	}
	return b.s.Get(key)
}

// Scan merges the batch's writes over the store's keys in [start, end).
func (b *batch) Scan(start, end []byte, fn func(key, value []byte) bool) error {
	type kv struct {
		k string
		v []byte
	}
	var base []kv
	b.s.mu.RLock()
	_ = b.s.scanLocked(start, end, func(k, v []byte) bool {
		base = append(base, kv{string(k), v})
		return true
	})
	b.s.mu.RUnlock()
	i, _ := slices.BinarySearch(b.keys, string(start))
	j := 0
	for {
		var bk string
		haveB := i < len(b.keys) && (end == nil || b.keys[i] < string(end))
		if haveB {
			bk = b.keys[i]
		}
		haveS := j < len(base)
		var k string
		var v []byte
		switch {
		case !haveB && !haveS:
			return nil
		case haveB && (!haveS || bk <= base[j].k):
			if haveS && bk == base[j].k {
				j++ // the batch's write shadows the store's value
			}
			k, v = bk, b.writes[bk]
			i++
			if v == nil {
				continue // deleted in the batch
			}
		default:
			k, v = base[j].k, base[j].v
			j++
		}
		if !fn([]byte(k), v) {
			return nil
		}
	}
}

func (b *batch) put(key []byte, value []byte) error {
	if b.closed {
		return errClosed
	}
	k := string(key)
	if _, ok := b.writes[k]; !ok {
		i, _ := slices.BinarySearch(b.keys, k)
		b.keys = slices.Insert(b.keys, i, k)
	}
	b.writes[k] = value
	return nil
}

func (b *batch) Set(key, value []byte) error {
	if value == nil {
		value = []byte{}
	}
	return b.put(key, bytes.Clone(value))
}

func (b *batch) Delete(key []byte) error { return b.put(key, nil) }

func (b *batch) DeleteRange(start, end []byte) error {
	if b.closed {
		return errClosed
	}
	if bytes.Compare(start, end) >= 0 {
		return fmt.Errorf("delete range [%q, %q): empty or inverted range", start, end)
	}
	var keys [][]byte
	if err := b.Scan(start, end, func(k, _ []byte) bool {
		keys = append(keys, k)
		return true
	}); err != nil {
		return err
	}
	for _, k := range keys {
		if err := b.put(k, nil); err != nil {
			return err
		}
	}
	return nil
}

func (b *batch) Commit(appliedIndex uint64) error {
	if b.closed {
		return errClosed
	}
	b.s.mu.Lock()
	defer b.s.mu.Unlock()
	if err := b.s.failCommit; err != nil {
		b.s.failCommit = nil
		return err
	}
	for _, k := range b.keys {
		if v := b.writes[k]; v == nil {
			b.s.deleteLocked(k)
		} else {
			b.s.setLocked(k, v)
		}
	}
	b.s.applied = appliedIndex
	b.closed = true
	return nil
}

func (b *batch) Close() error {
	b.closed = true
	b.writes, b.keys = nil, nil
	return nil
}
