package pebblestore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	txswitch "github.com/txswitch/txswitch/switch"
)

var (
	_ txswitch.Store = (*StateStore)(nil)
	_ txswitch.Batch = (*stateBatch)(nil)
)

// StateStore is the state machine key space of one raft group plus its
// applied index (txswitch.Store). Keys are stored under the group's state
// prefix; callers see their own keys only.
//
// Durability: Commit does not sync. A commit becomes durable with the next
// synced write to the DB (any group's Save): one WAL orders them. After a
// crash the applied index and the state are always consistent with each
// other (one batch), possibly older than before the crash; consensus
// re-applies from the raft log past AppliedIndex.
type StateStore struct {
	db         *DB
	group      uint64
	lo, hi     []byte // the group's state key range [lo, hi)
	appliedKey []byte

	// appliedMu serialises the writers of appliedKey (Commit and
	// RestoreState, the only ones) and guards applied: the index they
	// last wrote, when appliedKnown. Commit checks against it instead of
	// reading the key back from pebble on every batch. Unknown at first
	// and after a failed write, when it is read from pebble again.
	appliedMu    sync.Mutex
	applied      uint64
	appliedKnown bool
}

func newStateStore(db *DB, group uint64) *StateStore {
	lo := statePrefix(group)
	return &StateStore{db: db, group: group, lo: lo, hi: prefixEnd(lo), appliedKey: groupKey(group, kindApplied)}
}

func (s *StateStore) key(dst, user []byte) []byte {
	return append(append(dst[:0], s.lo...), user...)
}

// Get returns a copy of key's value, or txswitch.ErrNotFound.
func (s *StateStore) Get(key []byte) ([]byte, error) {
	return s.get(s.db.pdb, key)
}

// Scan calls fn for each key in [start, end) in order until fn returns false.
// A nil (or empty) start or end means the beginning or end of the key space.
func (s *StateStore) Scan(start, end []byte, fn func(key, value []byte) bool) error {
	return s.scan(s.db.pdb, start, end, fn)
}

// View implements txswitch.Store with a pebble snapshot: batches commit
// atomically, so it holds whole batches only.
func (s *StateStore) View() (txswitch.View, error) {
	if err := s.db.usable(); err != nil {
		return nil, err
	}
	return &stateView{s: s, snap: s.db.pdb.NewSnapshot()}, nil
}

// stateView is a StateStore's read-only snapshot (txswitch.View).
type stateView struct {
	s    *StateStore
	snap *pebble.Snapshot
}

func (v *stateView) Get(key []byte) ([]byte, error) { return v.s.get(v.snap, key) }

func (v *stateView) Scan(start, end []byte, fn func(key, value []byte) bool) error {
	return v.s.scan(v.snap, start, end, fn)
}

func (v *stateView) Close() error {
	if err := v.snap.Close(); err != nil {
		return fmt.Errorf("close state view: %w", err)
	}
	return nil
}

// AppliedIndex returns the applied index of the last committed batch (0 on a
// fresh store).
func (s *StateStore) AppliedIndex() (uint64, error) {
	s.appliedMu.Lock()
	defer s.appliedMu.Unlock()
	return s.appliedLocked()
}

// appliedLocked is the committed applied index (appliedMu held).
func (s *StateStore) appliedLocked() (uint64, error) {
	if err := s.db.usable(); err != nil {
		return 0, err
	}
	if !s.appliedKnown {
		i, err := s.readApplied(s.db.pdb)
		if err != nil {
			return 0, err
		}
		s.applied, s.appliedKnown = i, true
	}
	return s.applied, nil
}

// NewBatch starts an atomic write that reads its own writes (an indexed
// pebble batch). The caller must Close it, committed or not.
func (s *StateStore) NewBatch() txswitch.Batch {
	return &stateBatch{s: s, b: s.db.pdb.NewIndexedBatch()}
}

// SnapshotState returns a consistent image of every state key of the group
// and its applied index, durable when it returns: OpenImage's image, written
// into memory and refused past Options.MaxImageBytes (ErrImageTooLarge).
func (s *StateStore) SnapshotState() (uint64, []byte, error) {
	im, err := s.OpenImage()
	if err != nil {
		return 0, nil, err
	}
	defer im.Close()
	buf := &boundedBuffer{max: s.db.opts.MaxImageBytes}
	if _, err := im.WriteTo(buf); err != nil {
		return 0, nil, fmt.Errorf("snapshot state of group %d: %w", s.group, err)
	}
	return im.Index(), buf.b, nil
}

// SyncState makes the applied state durable without copying it and returns
// its applied index (consensus.StateSyncer): consensus records its own
// snapshots with metadata only and compacts the log behind that index.
//
// Ordering: the applied index is read FIRST and the WAL synced AFTER, so the
// batch that wrote that index (state and index are one batch) is before the
// sync in the WAL and durable when SyncState returns.
func (s *StateStore) SyncState() (uint64, error) {
	index, err := s.AppliedIndex()
	if err != nil {
		return 0, fmt.Errorf("sync state of group %d: %w", s.group, err)
	}
	if err := s.db.sync(); err != nil {
		return 0, fmt.Errorf("sync state of group %d: %w", s.group, err)
	}
	return index, nil
}

// RestoreState replaces the group's whole state with image data taken at
// index: it validates the whole image first, so an invalid image
// (ErrCorruptImage), an index that differs from the image's, or one behind
// the applied index changes nothing, then restores it as RestoreImage does
// (a crash meanwhile leaves the applied index below index: consensus
// restores again from the snapshot it saved).
func (s *StateStore) RestoreState(index uint64, data []byte) error {
	if err := s.db.usable(); err != nil {
		return err
	}
	if len(data) > s.db.opts.MaxImageBytes {
		return fmt.Errorf("restore state of group %d: image of %d bytes, limit %d: %w", s.group, len(data), s.db.opts.MaxImageBytes, ErrImageTooLarge)
	}
	imgIndex, err := decodeImage(data, nil)
	if err != nil {
		return fmt.Errorf("restore state of group %d: %w", s.group, err)
	}
	if imgIndex != index {
		return fmt.Errorf("restore state of group %d at %d: image is at %d: %w", s.group, index, imgIndex, ErrCorruptImage)
	}
	return s.RestoreImage(index, bytes.NewReader(data), int64(len(data)))
}

func (s *StateStore) get(r pebble.Reader, key []byte) ([]byte, error) {
	v, ok, err := s.db.get(r, s.key(nil, key))
	if err != nil {
		return nil, fmt.Errorf("state get: %w", err)
	}
	if !ok {
		return nil, txswitch.ErrNotFound
	}
	return v, nil
}

func (s *StateStore) scan(r pebble.Reader, start, end []byte, fn func(k, v []byte) bool) error {
	if err := s.db.usable(); err != nil {
		return err
	}
	opts := &pebble.IterOptions{LowerBound: s.key(nil, start), UpperBound: s.hi}
	if len(end) > 0 {
		if bytes.Compare(start, end) >= 0 {
			return nil // empty range; pebble rejects inverted bounds
		}
		opts.UpperBound = s.key(nil, end)
	}
	it, err := r.NewIter(opts)
	if err != nil {
		return fmt.Errorf("state scan: %w", err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			_ = it.Close()
			return fmt.Errorf("state scan at %q: %w", it.Key()[len(s.lo):], err)
		}
		if !fn(it.Key()[len(s.lo):], v) {
			break
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("state scan: %w", err)
	}
	return nil
}

func (s *StateStore) readApplied(r pebble.Reader) (uint64, error) {
	v, ok, err := s.db.get(r, s.appliedKey)
	if err != nil || !ok {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("applied index: corrupt value of %d bytes", len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// stateBatch is a txswitch.Batch on an indexed pebble batch: Get and Scan
// see the batch's own writes over the committed state.
type stateBatch struct {
	s      *StateStore
	b      *pebble.Batch
	kbuf   []byte
	done   bool // committed or closed
	closed bool
}

var errBatchDone = errors.New("pebblestore: batch already committed or closed")

func (b *stateBatch) Get(key []byte) ([]byte, error) {
	if b.done {
		return nil, errBatchDone
	}
	return b.s.get(b.b, key)
}

func (b *stateBatch) Scan(start, end []byte, fn func(key, value []byte) bool) error {
	if b.done {
		return errBatchDone
	}
	return b.s.scan(b.b, start, end, fn)
}

func (b *stateBatch) Set(key, value []byte) error {
	if err := b.check(len(key) + len(value)); err != nil {
		return fmt.Errorf("state set %q: %w", key, err)
	}
	b.kbuf = b.s.key(b.kbuf, key)
	if err := b.b.Set(b.kbuf, value, nil); err != nil {
		return fmt.Errorf("state set %q: %w", key, err)
	}
	return nil
}

func (b *stateBatch) Delete(key []byte) error {
	if err := b.check(len(key)); err != nil {
		return fmt.Errorf("state delete %q: %w", key, err)
	}
	b.kbuf = b.s.key(b.kbuf, key)
	if err := b.b.Delete(b.kbuf, nil); err != nil {
		return fmt.Errorf("state delete %q: %w", key, err)
	}
	return nil
}

// DeleteRange writes one range tombstone over [start, end); reads through
// the batch see the range deleted at once.
func (b *stateBatch) DeleteRange(start, end []byte) error {
	if err := b.check(len(start) + len(end)); err != nil {
		return fmt.Errorf("state delete range [%q, %q): %w", start, end, err)
	}
	if bytes.Compare(start, end) >= 0 {
		return fmt.Errorf("state delete range [%q, %q): empty or inverted range", start, end)
	}
	if err := b.b.DeleteRange(b.s.key(nil, start), b.s.key(nil, end), nil); err != nil {
		return fmt.Errorf("state delete range [%q, %q): %w", start, end, err)
	}
	return nil
}

func (b *stateBatch) check(add int) error {
	if b.done {
		return errBatchDone
	}
	if b.b.Len()+add > b.s.db.opts.MaxBatchBytes {
		return fmt.Errorf("batch of %d bytes, limit %d: %w", b.b.Len()+add, b.s.db.opts.MaxBatchBytes, ErrBatchTooLarge)
	}
	return nil
}

// Commit writes the batch and appliedIndex atomically, without sync (see
// StateStore). An applied index behind the stored one is refused: it would
// mean a command applied twice.
func (b *stateBatch) Commit(appliedIndex uint64) error {
	if b.done {
		return errBatchDone
	}
	s := b.s
	s.appliedMu.Lock()
	defer s.appliedMu.Unlock()
	cur, err := s.appliedLocked()
	if err != nil {
		return fmt.Errorf("commit at %d: %w", appliedIndex, err)
	}
	if appliedIndex < cur {
		return fmt.Errorf("commit at %d: behind applied index %d", appliedIndex, cur)
	}
	if err := b.b.Set(s.appliedKey, binary.BigEndian.AppendUint64(nil, appliedIndex), nil); err != nil {
		return fmt.Errorf("commit at %d: %w", appliedIndex, err)
	}
	b.done = true
	if err := s.db.commit(b.b, pebble.NoSync); err != nil {
		s.appliedKnown = false
		return fmt.Errorf("commit state of group %d at %d: %w", s.group, appliedIndex, err)
	}
	s.applied = appliedIndex
	return nil
}

// Close releases the batch; idempotent.
func (b *stateBatch) Close() error {
	if b.closed {
		return nil
	}
	b.closed, b.done = true, true
	if err := b.b.Close(); err != nil {
		return fmt.Errorf("close state batch: %w", err)
	}
	return nil
}
