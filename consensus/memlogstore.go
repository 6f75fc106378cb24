package consensus

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	txswitch "github.com/txswitch/txswitch/switch"
)

// MemLogStore is an in-memory LogStore (raft.MemoryStorage plus the
// membership record) for tests. "Durable" means "in this struct": a node
// restarted on the same MemLogStore sees everything Save returned for. It can
// be told to fail, to test that a storage error stops the node.
type MemLogStore struct {
	*raft.MemoryStorage

	wmu       sync.Mutex // serialises writes (LogStore's contract)
	mu        sync.Mutex
	failErr   error
	syncs     int
	memIndex  uint64
	memCS     *raftpb.ConfState
	memMeta   []byte
	snapshots int
	staged    map[uint64][]byte // state images staged whole (ImageStager)
	// readErr, when set, fails every read of the log too, as a store that
	// failed a write refuses everything after (pebblestore.ErrFailed).
	readErr atomic.Pointer[error]
}

var (
	_ LogStore    = (*MemLogStore)(nil)
	_ ImageStager = (*MemLogStore)(nil)
)

// StageImage implements ImageStager (no validation: the KV's images are
// its own JSON).
func (s *MemLogStore) StageImage(index uint64) (txswitch.ImageSink, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failErr != nil {
		return nil, s.failErr
	}
	if _, ok := s.staged[index]; ok {
		return nil, txswitch.ErrImageStaged
	}
	return &memSink{s: s, index: index}, nil
}

// OpenStagedImage implements ImageStager.
func (s *MemLogStore) OpenStagedImage(index uint64) (io.Reader, int64, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.staged[index]
	if !ok {
		return nil, 0, false, nil
	}
	return bytes.NewReader(b), int64(len(b)), true, nil
}

// DropStagedImages implements ImageStager.
func (s *MemLogStore) DropStagedImages(upTo uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.staged {
		if i <= upTo {
			delete(s.staged, i)
		}
	}
	return nil
}

// Staged reports the indexes of the images staged whole.
func (s *MemLogStore) Staged() []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.staged))
}

type memSink struct {
	s     *MemLogStore
	index uint64
	buf   bytes.Buffer
}

func (w *memSink) Write(p []byte) (int, error) { return w.buf.Write(p) }

func (w *memSink) Commit() (int64, error) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	if w.s.failErr != nil {
		return 0, w.s.failErr
	}
	if w.s.staged == nil {
		w.s.staged = map[uint64][]byte{}
	}
	w.s.staged[w.index] = bytes.Clone(w.buf.Bytes())
	return int64(w.buf.Len()), nil
}

func (w *memSink) Abort() {}

// NewMemLogStore returns an empty in-memory LogStore.
func NewMemLogStore() *MemLogStore {
	return &MemLogStore{MemoryStorage: raft.NewMemoryStorage()}
}

// FailWith makes every later write return err (nil heals).
func (s *MemLogStore) FailWith(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failErr = err
}

// FailReadsWith makes every read of the log (FirstIndex, LastIndex,
// Entries, Term) fail with err from now on, besides FailWith's writes.
func (s *MemLogStore) FailReadsWith(err error) { s.readErr.Store(&err) }

func (s *MemLogStore) readFailure() error {
	if p := s.readErr.Load(); p != nil {
		return *p
	}
	return nil
}

// FirstIndex implements raft.Storage.
func (s *MemLogStore) FirstIndex() (uint64, error) {
	if err := s.readFailure(); err != nil {
		return 0, err
	}
	return s.MemoryStorage.FirstIndex()
}

// LastIndex implements raft.Storage.
func (s *MemLogStore) LastIndex() (uint64, error) {
	if err := s.readFailure(); err != nil {
		return 0, err
	}
	return s.MemoryStorage.LastIndex()
}

// Entries implements raft.Storage.
func (s *MemLogStore) Entries(lo, hi, maxSize uint64) ([]*raftpb.Entry, error) {
	if err := s.readFailure(); err != nil {
		return nil, err
	}
	return s.MemoryStorage.Entries(lo, hi, maxSize)
}

// Term implements raft.Storage.
func (s *MemLogStore) Term(i uint64) (uint64, error) {
	if err := s.readFailure(); err != nil {
		return 0, err
	}
	return s.MemoryStorage.Term(i)
}

// Syncs reports how many synced Saves happened (one per fsync on disk).
func (s *MemLogStore) Syncs() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.syncs
}

// Snapshots reports how many snapshots were created locally.
func (s *MemLogStore) Snapshots() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snapshots
}

func (s *MemLogStore) failure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failErr
}

// Save implements LogStore. The three parts are applied under wmu, which
// excludes every other write: the in-memory equivalent of one atomic batch
// (raft reads meanwhile only what the Save does not change).
func (s *MemLogStore) Save(hs *raftpb.HardState, ents []*raftpb.Entry, snap *raftpb.Snapshot, sync bool) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.failure(); err != nil {
		return fmt.Errorf("mem log store save: %w", err)
	}
	if snap != nil && !raft.IsEmptySnap(snap) {
		if err := s.ApplySnapshot(snap); err != nil && !errors.Is(err, raft.ErrSnapOutOfDate) {
			return fmt.Errorf("mem log store apply snapshot %d: %w", snap.GetMetadata().GetIndex(), err)
		}
	}
	if err := s.Append(ents); err != nil {
		return fmt.Errorf("mem log store append: %w", err)
	}
	if hs != nil && !raft.IsEmptyHardState(hs) {
		if err := s.SetHardState(proto.Clone(hs).(*raftpb.HardState)); err != nil {
			return fmt.Errorf("mem log store hard state: %w", err)
		}
	}
	if sync {
		s.mu.Lock()
		s.syncs++
		s.mu.Unlock()
	}
	return nil
}

// CreateSnapshot implements LogStore.
func (s *MemLogStore) CreateSnapshot(index uint64, cs *raftpb.ConfState, data []byte) (*raftpb.Snapshot, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.failure(); err != nil {
		return nil, fmt.Errorf("mem log store create snapshot: %w", err)
	}
	snap, err := s.MemoryStorage.CreateSnapshot(index, cs, data)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.snapshots++
	s.mu.Unlock()
	return snap, nil
}

// Compact implements LogStore.
func (s *MemLogStore) Compact(index uint64) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.failure(); err != nil {
		return fmt.Errorf("mem log store compact: %w", err)
	}
	return s.MemoryStorage.Compact(index)
}

// SaveMembership implements LogStore.
func (s *MemLogStore) SaveMembership(index uint64, cs *raftpb.ConfState, meta []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.failure(); err != nil {
		return fmt.Errorf("mem log store save membership: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.memIndex = index
	s.memCS = proto.Clone(cs).(*raftpb.ConfState)
	s.memMeta = slices.Clone(meta)
	return nil
}

// Membership implements LogStore.
func (s *MemLogStore) Membership() (uint64, *raftpb.ConfState, []byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.memCS == nil {
		return 0, nil, nil, nil
	}
	return s.memIndex, proto.Clone(s.memCS).(*raftpb.ConfState), slices.Clone(s.memMeta), nil
}

// InitialState implements raft.Storage: the newest of the snapshot's
// ConfState and the one SaveMembership recorded.
func (s *MemLogStore) InitialState() (*raftpb.HardState, *raftpb.ConfState, error) {
	hs, cs, err := s.MemoryStorage.InitialState()
	if err != nil {
		return nil, nil, err
	}
	snap, err := s.MemoryStorage.Snapshot()
	if err != nil {
		return nil, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.memCS != nil && s.memIndex > snap.GetMetadata().GetIndex() {
		cs = proto.Clone(s.memCS).(*raftpb.ConfState)
	}
	if hs == nil {
		hs = &raftpb.HardState{}
	}
	return hs, cs, nil
}
