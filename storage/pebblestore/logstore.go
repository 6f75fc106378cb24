package pebblestore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// ErrCompactBeyondSnapshot is returned by Compact past the last snapshot:
// entries not covered by a durable snapshot are the only copy a lagging
// follower (or this node's state machine after a crash) can catch up from.
var ErrCompactBeyondSnapshot = errors.New("pebblestore: compact beyond the last snapshot")

// LogStore is raft's durable storage for one raft group. It has exactly the
// method set of consensus.LogStore (raft.Storage + Save, CreateSnapshot,
// Compact, SaveMembership, Membership), and behaves like raft.MemoryStorage
// for the raft.Storage part, returning errors where MemoryStorage panics.
//
// The log is modelled like MemoryStorage's: a "truncation point" (offset,
// offsetTerm) is the entry before the first stored one — 0/0 on a fresh log,
// the compaction index after Compact, the snapshot index after a snapshot is
// saved — and entries offset+1..last are stored under their index.
//
// first/last index and term are cached in memory under mu and updated only
// after the pebble batch that changes them committed, so a failed write
// leaves the cache describing what is on disk.
//
// Concurrency: writes are serialised by wmu (taken before mu). Save, the
// hot path, releases mu while its batch commits and syncs, so raft's reads
// (Term, Entries, FirstIndex, LastIndex from the Ready loop) do not wait
// for the fsync of a Save running on consensus' append goroutine: they see
// the log as it was before that Save, which is all raft reads from storage
// (what a Save is writing is still in raft's unstable log). The other
// writes (rare, and called from the loop itself) hold mu throughout, as
// does a Save with a snapshot, so Snapshot and InitialState never see a
// snapshot half written.
type LogStore struct {
	db    *DB
	group uint64

	wmu    sync.Mutex // serialises writers; taken before mu
	mu     sync.Mutex
	loaded bool
	c      logCache
	buf    []byte // marshal scratch of writers (under wmu); pebble copies it

	// stageMu guards staging: the sink that owns each index being staged
	// (staging.go). A newer sink for an index supersedes the older one,
	// which can then neither write nor drop anything of it.
	stageMu sync.Mutex
	staging map[uint64]*ImageSink
}

// logCache is what LogStore keeps in memory; a value type so a write can
// compute the next one and install it only after commit.
type logCache struct {
	offset, offsetTerm uint64 // entry before the first stored one
	last, lastTerm     uint64 // last stored entry (== offset when none)
	snapIndex          uint64 // index of the last snapshot (0 = none)
}

func newLogStore(db *DB, group uint64) *LogStore {
	return &LogStore{db: db, group: group}
}

// loadLocked fills the cache from disk on first use. Loading lazily keeps
// DB.LogStore infallible; every method reports a load error instead.
func (s *LogStore) loadLocked() error {
	if err := s.db.usable(); err != nil {
		return err
	}
	if s.loaded {
		return nil
	}
	var c logCache
	v, ok, err := s.db.get(s.db.pdb, groupKey(s.group, kindTrunc))
	if err != nil {
		return fmt.Errorf("load group %d truncation point: %w", s.group, err)
	}
	if ok {
		if len(v) != 16 {
			return fmt.Errorf("load group %d: corrupt truncation point (%d bytes)", s.group, len(v))
		}
		c.offset, c.offsetTerm = binary.BigEndian.Uint64(v), binary.BigEndian.Uint64(v[8:])
	}
	c.last, c.lastTerm = c.offset, c.offsetTerm
	it, err := s.db.pdb.NewIter(&pebble.IterOptions{
		LowerBound: entryKey(s.group, c.offset+1),
		UpperBound: entriesEnd(s.group),
	})
	if err != nil {
		return fmt.Errorf("load group %d last entry: %w", s.group, err)
	}
	if it.Last() {
		e, err := decodeEntry(it.Value())
		if err != nil {
			_ = it.Close()
			return fmt.Errorf("load group %d last entry: %w", s.group, err)
		}
		c.last, c.lastTerm = entryIndex(it.Key()), e.GetTerm()
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("load group %d last entry: %w", s.group, err)
	}
	md, err := s.snapMetaLocked()
	if err != nil {
		return fmt.Errorf("load group %d: %w", s.group, err)
	}
	c.snapIndex = md.GetIndex()
	s.c, s.loaded = c, true
	return nil
}

// InitialState returns the saved HardState (nil if none, as MemoryStorage)
// and the newest ConfState of the snapshot and SaveMembership.
func (s *LogStore) InitialState() (*raftpb.HardState, *raftpb.ConfState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.loadLocked(); err != nil {
		return nil, nil, err
	}
	var hs *raftpb.HardState
	v, ok, err := s.db.get(s.db.pdb, groupKey(s.group, kindHardState))
	if err != nil {
		return nil, nil, fmt.Errorf("initial state: %w", err)
	}
	if ok {
		hs = &raftpb.HardState{}
		if err := proto.Unmarshal(v, hs); err != nil {
			return nil, nil, fmt.Errorf("initial state: decode hard state: %w", err)
		}
	}
	md, err := s.snapMetaLocked()
	if err != nil {
		return nil, nil, fmt.Errorf("initial state: %w", err)
	}
	cs := md.GetConfState()
	mIndex, mcs, _, err := s.membershipLocked()
	if err != nil {
		return nil, nil, fmt.Errorf("initial state: %w", err)
	}
	if mIndex > md.GetIndex() {
		cs = mcs
	}
	return hs, raftpb.EnsureConfState(cs), nil
}

// Entries returns entries [lo, hi), at least one if any, at most maxSize
// bytes (raft's encoding size) otherwise. Errors as MemoryStorage:
// ErrCompacted if lo <= offset, ErrUnavailable if only the truncation point
// is present; hi past the last index is an error (MemoryStorage panics).
func (s *LogStore) Entries(lo, hi, maxSize uint64) ([]*raftpb.Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.loadLocked(); err != nil {
		return nil, err
	}
	c := s.c
	switch {
	case lo <= c.offset:
		return nil, raft.ErrCompacted
	case hi > c.last+1:
		return nil, fmt.Errorf("entries [%d, %d) past last index %d: %w", lo, hi, c.last, raft.ErrUnavailable)
	case c.last == c.offset:
		return nil, raft.ErrUnavailable
	case lo > hi:
		return nil, fmt.Errorf("entries: invalid range [%d, %d)", lo, hi)
	}
	it, err := s.db.pdb.NewIter(&pebble.IterOptions{
		LowerBound: entryKey(s.group, lo),
		UpperBound: entryKey(s.group, hi),
	})
	if err != nil {
		return nil, fmt.Errorf("entries [%d, %d): %w", lo, hi, err)
	}
	ents := make([]*raftpb.Entry, 0, min(hi-lo, 256))
	var size uint64
	want, limited := lo, false
	for ok := it.First(); ok; ok = it.Next() {
		v := it.Value()
		// len(v) is proto.Size of the entry: what raft's limitSize counts.
		size += uint64(len(v))
		if len(ents) > 0 && size > maxSize {
			limited = true
			break
		}
		if idx := entryIndex(it.Key()); idx != want {
			_ = it.Close()
			return nil, fmt.Errorf("entries: corrupt log: found index %d, want %d", idx, want)
		}
		e, err := decodeEntry(v)
		if err != nil {
			_ = it.Close()
			return nil, fmt.Errorf("entries: index %d: %w", want, err)
		}
		ents = append(ents, e)
		want++
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("entries [%d, %d): %w", lo, hi, err)
	}
	if want < hi && !limited {
		return nil, fmt.Errorf("entries: corrupt log: index %d missing (last %d)", want, c.last)
	}
	return ents, nil
}

// Term returns the term of entry i in [FirstIndex()-1, LastIndex()].
func (s *LogStore) Term(i uint64) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.loadLocked(); err != nil {
		return 0, err
	}
	return s.term(s.c, i)
}

// term returns the term of entry i of the log described by c.
func (s *LogStore) term(c logCache, i uint64) (uint64, error) {
	switch {
	case i < c.offset:
		return 0, raft.ErrCompacted
	case i > c.last:
		return 0, raft.ErrUnavailable
	case i == c.offset:
		return c.offsetTerm, nil
	case i == c.last:
		return c.lastTerm, nil
	}
	v, ok, err := s.db.get(s.db.pdb, entryKey(s.group, i))
	if err != nil {
		return 0, fmt.Errorf("term %d: %w", i, err)
	}
	if !ok {
		return 0, fmt.Errorf("term %d: corrupt log: entry missing in [%d, %d]", i, c.offset+1, c.last)
	}
	e, err := decodeEntry(v)
	if err != nil {
		return 0, fmt.Errorf("term %d: %w", i, err)
	}
	return e.GetTerm(), nil
}

// LastIndex returns the index of the last entry (the truncation point when
// the log is empty).
func (s *LogStore) LastIndex() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.loadLocked(); err != nil {
		return 0, err
	}
	return s.c.last, nil
}

// FirstIndex returns the index of the first entry possibly available.
func (s *LogStore) FirstIndex() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.loadLocked(); err != nil {
		return 0, err
	}
	return s.c.offset + 1, nil
}

// Snapshot returns the last snapshot (an empty one if none). It is always
// available: never ErrSnapshotTemporarilyUnavailable.
func (s *LogStore) Snapshot() (*raftpb.Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.loadLocked(); err != nil {
		return nil, err
	}
	md, err := s.snapMetaLocked()
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	v, ok, err := s.db.get(s.db.pdb, groupKey(s.group, kindSnapData))
	if err != nil {
		return nil, fmt.Errorf("snapshot data: %w", err)
	}
	var data []byte
	if ok {
		// The first byte records whether data was set (proto2 presence:
		// nil and empty differ), so Snapshot returns what was saved.
		if len(v) == 0 {
			return nil, errors.New("snapshot data: corrupt value")
		}
		if v[0] == 1 {
			data = v[1:]
		}
	}
	return &raftpb.Snapshot{Metadata: md, Data: data}, nil
}

// snapMetaLocked reads the last snapshot's metadata (ensured non-nil fields,
// as MemoryStorage returns them).
func (s *LogStore) snapMetaLocked() (*raftpb.SnapshotMetadata, error) {
	v, ok, err := s.db.get(s.db.pdb, groupKey(s.group, kindSnapMeta))
	if err != nil {
		return nil, fmt.Errorf("snapshot metadata: %w", err)
	}
	md := &raftpb.SnapshotMetadata{}
	if ok {
		if err := proto.Unmarshal(v, md); err != nil {
			return nil, fmt.Errorf("decode snapshot metadata: %w", err)
		}
	}
	return raftpb.EnsureSnapshotMetadata(md), nil
}

// Save persists, in ONE pebble batch (atomic in the WAL), synced iff sync:
//  1. snap, if not empty: its metadata and data, every stored entry deleted
//     and the truncation point moved to the snapshot (as
//     MemoryStorage.ApplySnapshot: a log raft had to replace by a snapshot
//     is not trusted past it either); raft.ErrSnapOutOfDate if not newer
//     than the stored snapshot;
//  2. ents, as MemoryStorage.Append: entries already compacted are skipped,
//     a conflicting suffix (stored entries at or after ents[0]) is replaced
//     and stored entries past the new last one are deleted; a gap after the
//     last index is an error;
//  3. hs, if not empty.
//
// On error nothing was acknowledged and the cache is unchanged; a commit
// error fences the DB (ErrFailed) and the node must stop: it must never
// send a message that depends on a write that is not durable.
func (s *LogStore) Save(hs *raftpb.HardState, ents []*raftpb.Entry, snap *raftpb.Snapshot, sync bool) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	if err := s.loadLocked(); err != nil {
		s.mu.Unlock()
		return err
	}
	next := s.c
	withSnap := snap != nil && !raft.IsEmptySnap(snap)
	if withSnap {
		defer s.mu.Unlock() // held through the commit (see LogStore)
	} else {
		// No other writer can run (wmu): next stays what is on disk until
		// this commit, and readers meanwhile see the log before it.
		s.mu.Unlock()
	}
	b := s.db.pdb.NewBatch()
	defer b.Close()
	if withSnap {
		md := snap.GetMetadata()
		if next.snapIndex != 0 && next.snapIndex >= md.GetIndex() {
			return fmt.Errorf("save snapshot %d over snapshot %d: %w", md.GetIndex(), next.snapIndex, raft.ErrSnapOutOfDate)
		}
		if err := s.putSnapshot(b, md, snap.GetData()); err != nil {
			return fmt.Errorf("save snapshot %d: %w", md.GetIndex(), err)
		}
		if err := b.DeleteRange(groupKey(s.group, kindEntry), entriesEnd(s.group), nil); err != nil {
			return fmt.Errorf("save snapshot %d: drop log: %w", md.GetIndex(), err)
		}
		if err := s.putTrunc(b, md.GetIndex(), md.GetTerm()); err != nil {
			return fmt.Errorf("save snapshot %d: %w", md.GetIndex(), err)
		}
		next = logCache{
			offset: md.GetIndex(), offsetTerm: md.GetTerm(),
			last: md.GetIndex(), lastTerm: md.GetTerm(),
			snapIndex: md.GetIndex(),
		}
	}
	if len(ents) > 0 {
		var err error
		if next, err = s.appendLocked(b, next, ents); err != nil {
			return err
		}
	}
	if hs != nil && !raft.IsEmptyHardState(hs) {
		if err := s.putProto(b, groupKey(s.group, kindHardState), hs); err != nil {
			return fmt.Errorf("save hard state: %w", err)
		}
	}
	if b.Empty() {
		return nil
	}
	wo := pebble.NoSync
	if sync {
		wo = pebble.Sync
	}
	if err := s.db.commit(b, wo); err != nil {
		return fmt.Errorf("save group %d (entries %d, sync %t): %w", s.group, len(ents), sync, err)
	}
	s.install(next, withSnap)
	return nil
}

// install makes c the cache after a write committed; locked tells whether
// the writer already holds mu.
func (s *LogStore) install(c logCache, locked bool) {
	if !locked {
		s.mu.Lock()
		defer s.mu.Unlock()
	}
	s.c = c
}

// appendLocked adds ents to b as MemoryStorage.Append does and returns the
// cache after it.
func (s *LogStore) appendLocked(b *pebble.Batch, c logCache, ents []*raftpb.Entry) (logCache, error) {
	first := c.offset + 1
	lastNew := ents[0].GetIndex() + uint64(len(ents)) - 1
	if lastNew < first {
		return c, nil // all compacted already
	}
	if first > ents[0].GetIndex() {
		ents = ents[first-ents[0].GetIndex():]
	}
	start := ents[0].GetIndex()
	if start > c.last+1 {
		return c, fmt.Errorf("append at %d: missing entries after last index %d", start, c.last)
	}
	// Entries start..lastNew are overwritten by Set below; stored entries
	// past lastNew belong to the conflicting suffix and are deleted, in the
	// same batch, so no reader or restart ever sees a mixed log.
	if lastNew < c.last {
		if err := b.DeleteRange(entryKey(s.group, lastNew+1), entryKey(s.group, c.last+1), nil); err != nil {
			return c, fmt.Errorf("truncate log after %d: %w", lastNew, err)
		}
	}
	for i, e := range ents {
		if e.GetIndex() != start+uint64(i) {
			return c, fmt.Errorf("append: entries not contiguous: index %d at position %d after %d", e.GetIndex(), i, start)
		}
		if err := s.putProto(b, entryKey(s.group, e.GetIndex()), e); err != nil {
			return c, fmt.Errorf("append entry %d: %w", e.GetIndex(), err)
		}
	}
	c.last, c.lastTerm = lastNew, ents[len(ents)-1].GetTerm()
	return c, nil
}

// CreateSnapshot records a snapshot at index with data (synced) and returns
// it. cs nil keeps the previous snapshot's ConfState (as MemoryStorage).
// raft.ErrSnapOutOfDate if index is not newer than the stored snapshot.
// The caller must have made the state machine durable up to index (see
// StateStore.SyncState) before calling Compact behind it. Consensus passes
// only small data (membership, no state image), so this is one small write.
func (s *LogStore) CreateSnapshot(index uint64, cs *raftpb.ConfState, data []byte) (*raftpb.Snapshot, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.loadLocked(); err != nil {
		return nil, err
	}
	if index <= s.c.snapIndex {
		return nil, fmt.Errorf("create snapshot %d (have %d): %w", index, s.c.snapIndex, raft.ErrSnapOutOfDate)
	}
	if index > s.c.last {
		return nil, fmt.Errorf("create snapshot %d past last index %d: %w", index, s.c.last, raft.ErrUnavailable)
	}
	term, err := s.term(s.c, index)
	if err != nil {
		return nil, fmt.Errorf("create snapshot %d: %w", index, err)
	}
	md, err := s.snapMetaLocked()
	if err != nil {
		return nil, fmt.Errorf("create snapshot %d: %w", index, err)
	}
	md.Index, md.Term = &index, &term
	if cs != nil {
		md.ConfState = proto.Clone(cs).(*raftpb.ConfState)
	}
	b := s.db.pdb.NewBatch()
	defer b.Close()
	if err := s.putSnapshot(b, md, data); err != nil {
		return nil, fmt.Errorf("create snapshot %d: %w", index, err)
	}
	if err := s.db.commit(b, pebble.Sync); err != nil {
		return nil, fmt.Errorf("create snapshot %d: %w", index, err)
	}
	s.c.snapIndex = index
	return &raftpb.Snapshot{Metadata: proto.Clone(md).(*raftpb.SnapshotMetadata), Data: data}, nil
}

// Compact discards entries up to and including index, keeping index's term
// as the truncation point. ErrCompacted if index <= FirstIndex()-1;
// ErrCompactBeyondSnapshot past the last snapshot. Not synced: losing a
// compaction in a crash only brings entries back.
func (s *LogStore) Compact(index uint64) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.loadLocked(); err != nil {
		return err
	}
	c := s.c
	switch {
	case index <= c.offset:
		return raft.ErrCompacted
	case index > c.last:
		return fmt.Errorf("compact %d past last index %d: %w", index, c.last, raft.ErrUnavailable)
	case index > c.snapIndex:
		return fmt.Errorf("compact %d, last snapshot %d: %w", index, c.snapIndex, ErrCompactBeyondSnapshot)
	}
	term, err := s.term(s.c, index)
	if err != nil {
		return fmt.Errorf("compact %d: %w", index, err)
	}
	b := s.db.pdb.NewBatch()
	defer b.Close()
	if err := b.DeleteRange(entryKey(s.group, c.offset+1), entryKey(s.group, index+1), nil); err != nil {
		return fmt.Errorf("compact %d: %w", index, err)
	}
	if err := s.putTrunc(b, index, term); err != nil {
		return fmt.Errorf("compact %d: %w", index, err)
	}
	if err := s.db.commit(b, pebble.NoSync); err != nil {
		return fmt.Errorf("compact group %d to %d: %w", s.group, index, err)
	}
	s.c.offset, s.c.offsetTerm = index, term
	return nil
}

// SaveMembership durably (synced) records the ConfState in force after the
// conf change at index and consensus' encoding of the members (meta).
func (s *LogStore) SaveMembership(index uint64, cs *raftpb.ConfState, meta []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.loadLocked(); err != nil {
		return err
	}
	v, err := encodeMembership(index, cs, meta)
	if err != nil {
		return fmt.Errorf("save membership at %d: %w", index, err)
	}
	b := s.db.pdb.NewBatch()
	defer b.Close()
	if err := b.Set(groupKey(s.group, kindMembership), v, nil); err != nil {
		return fmt.Errorf("save membership at %d: %w", index, err)
	}
	if err := s.db.commit(b, pebble.Sync); err != nil {
		return fmt.Errorf("save membership of group %d at %d: %w", s.group, index, err)
	}
	return nil
}

// Membership returns what SaveMembership last stored; index 0, an empty
// ConfState and nil meta if never.
func (s *LogStore) Membership() (index uint64, cs *raftpb.ConfState, meta []byte, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.loadLocked(); err != nil {
		return 0, nil, nil, err
	}
	return s.membershipLocked()
}

func (s *LogStore) membershipLocked() (uint64, *raftpb.ConfState, []byte, error) {
	v, ok, err := s.db.get(s.db.pdb, groupKey(s.group, kindMembership))
	if err != nil {
		return 0, nil, nil, fmt.Errorf("membership: %w", err)
	}
	if !ok {
		return 0, raftpb.EnsureConfState(nil), nil, nil
	}
	index, cs, meta, err := decodeMembership(v)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("membership: %w", err)
	}
	return index, cs, meta, nil
}

func (s *LogStore) putSnapshot(b *pebble.Batch, md *raftpb.SnapshotMetadata, data []byte) error {
	if len(data) > s.db.opts.MaxImageBytes {
		return fmt.Errorf("snapshot data of %d bytes, limit %d: %w", len(data), s.db.opts.MaxImageBytes, ErrImageTooLarge)
	}
	if err := s.putProto(b, groupKey(s.group, kindSnapMeta), md); err != nil {
		return fmt.Errorf("snapshot metadata: %w", err)
	}
	present := byte(0)
	if data != nil {
		present = 1
	}
	k := groupKey(s.group, kindSnapData)
	op := b.SetDeferred(len(k), 1+len(data))
	copy(op.Key, k)
	op.Value[0] = present
	copy(op.Value[1:], data)
	if err := op.Finish(); err != nil {
		return fmt.Errorf("snapshot data: %w", err)
	}
	return nil
}

func (s *LogStore) putTrunc(b *pebble.Batch, index, term uint64) error {
	v := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, index), term)
	if err := b.Set(groupKey(s.group, kindTrunc), v, nil); err != nil {
		return fmt.Errorf("truncation point %d: %w", index, err)
	}
	return nil
}

// putProto marshals m into the scratch buffer and sets it (pebble copies).
func (s *LogStore) putProto(b *pebble.Batch, key []byte, m proto.Message) error {
	var err error
	s.buf, err = proto.MarshalOptions{}.MarshalAppend(s.buf[:0], m)
	if err != nil {
		return fmt.Errorf("marshal: %w", err)
	}
	return b.Set(key, s.buf, nil)
}

func decodeEntry(v []byte) (*raftpb.Entry, error) {
	e := &raftpb.Entry{}
	if err := proto.Unmarshal(v, e); err != nil {
		return nil, fmt.Errorf("decode entry: %w", err)
	}
	return e, nil
}

// Membership record: version byte, uvarint index, uvarint length + ConfState
// protobuf, then meta (the rest).
const membershipVersion = 1

func encodeMembership(index uint64, cs *raftpb.ConfState, meta []byte) ([]byte, error) {
	if cs == nil {
		cs = &raftpb.ConfState{}
	}
	csb, err := proto.Marshal(raftpb.EnsureConfState(proto.Clone(cs).(*raftpb.ConfState)))
	if err != nil {
		return nil, fmt.Errorf("marshal conf state: %w", err)
	}
	v := []byte{membershipVersion}
	v = binary.AppendUvarint(v, index)
	v = binary.AppendUvarint(v, uint64(len(csb)))
	v = append(v, csb...)
	return append(v, meta...), nil
}

func decodeMembership(v []byte) (uint64, *raftpb.ConfState, []byte, error) {
	if len(v) == 0 || v[0] != membershipVersion {
		return 0, nil, nil, errors.New("corrupt membership record: bad version")
	}
	v = v[1:]
	index, n := binary.Uvarint(v)
	if n <= 0 {
		return 0, nil, nil, errors.New("corrupt membership record: index")
	}
	v = v[n:]
	l, n := binary.Uvarint(v)
	if n <= 0 || l > uint64(len(v)-n) {
		return 0, nil, nil, errors.New("corrupt membership record: conf state length")
	}
	v = v[n:]
	cs := &raftpb.ConfState{}
	if err := proto.Unmarshal(v[:l], cs); err != nil {
		return 0, nil, nil, fmt.Errorf("corrupt membership record: %w", err)
	}
	var meta []byte
	if rest := v[l:]; len(rest) > 0 {
		meta = append([]byte(nil), rest...)
	}
	return index, raftpb.EnsureConfState(cs), meta, nil
}
