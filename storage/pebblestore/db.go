package pebblestore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap"
)

// Defaults for Options fields left zero.
const (
	DefaultCacheSize     = 64 << 20  // block cache shared by all groups
	DefaultMemTableSize  = 32 << 20  // one memtable; pebble keeps a few in flight
	DefaultMaxImageBytes = 256 << 20 // one state image / raft snapshot blob
	DefaultMaxBatchBytes = 64 << 20  // one state machine batch (one Apply)
	// DefaultValueSeparationMinSize: values of at least this many bytes are
	// kept in blob files (see Options.ValueSeparationMinSize). The state's
	// records (orders, payments, timeline events, idempotency records) are
	// 150-600 bytes, an outbox reference about 130.
	DefaultValueSeparationMinSize = 128
	// DefaultL0CompactionThreshold: see Options.L0CompactionThreshold.
	DefaultL0CompactionThreshold = 8
)

// Options configures Open. The zero value is usable.
type Options struct {
	// FS is the filesystem; nil means the OS filesystem (vfs.Default). Tests
	// pass vfs.NewMem() or vfs.NewCrashableMem(); chaos wraps it with
	// pebble's vfs/errorfs to inject disk faults.
	FS vfs.FS
	// Logger receives pebble's own log lines and ours; nil means zap.NewNop().
	Logger *zap.Logger
	// CacheSize is the block cache in bytes (default DefaultCacheSize).
	CacheSize int64
	// MemTableSize is the memtable size in bytes (default DefaultMemTableSize).
	MemTableSize uint64
	// MaxImageBytes bounds a state image built in memory (SnapshotState)
	// and a raft snapshot's data (CreateSnapshot, Save): the images of a
	// cluster below version 4, which travel inside the MsgSnap. Past it,
	// they fail loudly instead of exhausting memory (default
	// DefaultMaxImageBytes; pebble's hard limit for a batch is 4 GiB).
	// Streamed images (OpenImage, StageImage, RestoreImage: cluster
	// version 4) are bounded by neither.
	MaxImageBytes int
	// MaxBatchBytes bounds one state batch (default DefaultMaxBatchBytes);
	// Set/Delete past it return ErrBatchTooLarge.
	MaxBatchBytes int
	// ValueSeparationMinSize: pebble keeps values of at least this many
	// bytes in blob files outside its LSM tree, written once at flush, so
	// that compactions move a reference instead of rewriting the value at
	// every level (default DefaultValueSeparationMinSize; negative: off).
	// Compactions were a fifth of a node's CPU under load, and they take a
	// core from the raft loop whenever they run.
	ValueSeparationMinSize int
	// L0CompactionThreshold sets when overlapping L0 sublevels (one per
	// flush, about) are compacted into the level below: pebble starts at
	// half of it (its score is 2 x sublevels / threshold), so pebble's
	// default of 4 compacts at 2 sublevels and ours (default
	// DefaultL0CompactionThreshold, 8) at 4; writes stall at three times
	// the threshold. Each such compaction rewrites the part of the level
	// below that the L0 tables overlap, which under this write load (every
	// flush spans the whole key range: random ids, the raft log's tail) is
	// most of it; doing that half as often cut what compactions wrote by
	// 40-60 % in 30 s raft bench runs. The price is more tables to look in
	// for a read that misses the memtable, each behind a bloom filter.
	L0CompactionThreshold int
	// EventListener, when set, receives pebble's events (flushes,
	// compactions, write stalls, WAL files): the benchmark and operators
	// use it to tell storage stalls from other latency. Its functions run
	// synchronously inside pebble and must not block.
	EventListener *pebble.EventListener
}

func (o Options) withDefaults() Options {
	if o.FS == nil {
		o.FS = vfs.Default
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.CacheSize <= 0 {
		o.CacheSize = DefaultCacheSize
	}
	if o.MemTableSize == 0 {
		o.MemTableSize = DefaultMemTableSize
	}
	if o.MaxImageBytes <= 0 {
		o.MaxImageBytes = DefaultMaxImageBytes
	}
	if o.MaxBatchBytes <= 0 {
		o.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if o.ValueSeparationMinSize == 0 {
		o.ValueSeparationMinSize = DefaultValueSeparationMinSize
	}
	if o.L0CompactionThreshold <= 0 {
		o.L0CompactionThreshold = DefaultL0CompactionThreshold
	}
	return o
}

// Errors callers may test with errors.Is.
var (
	// ErrFailed: a write to pebble failed (disk fault). The database refuses
	// every further read and write: pebble may already show the failed write
	// in memory although it is not durable, so nothing read from it can be
	// trusted. The node must stop and restart from disk.
	ErrFailed = errors.New("pebblestore: storage failed; node must stop")
	// ErrClosed: the DB was closed.
	ErrClosed = errors.New("pebblestore: closed")
	// ErrBatchTooLarge: a state batch exceeded Options.MaxBatchBytes.
	ErrBatchTooLarge = errors.New("pebblestore: batch too large")
	// ErrImageTooLarge: a state image or snapshot exceeded Options.MaxImageBytes.
	ErrImageTooLarge = errors.New("pebblestore: image too large")
	// ErrNodeIDMismatch: SetNodeID with an id other than the one bound to the
	// data dir.
	ErrNodeIDMismatch = errors.New("pebblestore: data dir belongs to another node id")
)

// DB is one node's Pebble database: raft logs and state machines of every
// raft group on the node, plus the node's identity. Safe for concurrent use.
//
// Durability contract: there is ONE pebble WAL for everything. Unsynced
// writes (state machine commits, log compactions, unsynced Saves) become
// durable no later than the next synced write of ANY group, because a WAL sync
// covers every record before it. Consensus relies on this: the synced Save of
// the next Ready makes the previous Ready's state machine batch durable, so
// state machine commits never need their own fsync.
type DB struct {
	pdb  *pebble.DB
	opts Options

	// fence holds the first write error; once set, every operation fails
	// (see ErrFailed). The WAL guard under pebble sets it too.
	fence  *fence
	closed atomic.Bool

	mu     sync.Mutex // guards logs, states and SetNodeID's check-then-write
	logs   map[uint64]*LogStore
	states map[uint64]*StateStore
}

// Open opens (creating if needed) the database in dir, replaying pebble's
// WAL: what a crash left unsynced may be gone, never half-applied (see DB).
func Open(dir string, opts Options) (_ *DB, err error) {
	defer func() {
		// A disk fault during recovery reaches pebble's Fatalf (see commit).
		if r := recover(); r != nil {
			fp, ok := r.(fatalPanic)
			if !ok {
				panic(r)
			}
			err = fmt.Errorf("open pebble in %q: %w: %w", dir, ErrFailed, fp)
		}
	}()
	opts = opts.withDefaults()
	fnc := &fence{}
	cache := pebble.NewCache(opts.CacheSize)
	// The DB takes its own reference; ours is released when Open returns.
	defer cache.Unref()
	popts := &pebble.Options{
		FS:                 &walGuard{FS: opts.FS, fence: fnc, log: opts.Logger.Named("pebble")},
		Cache:              cache,
		MemTableSize:       opts.MemTableSize,
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             pebbleLogger{opts.Logger.Named("pebble").Sugar()},
		EventListener:      opts.EventListener,

		L0CompactionThreshold: opts.L0CompactionThreshold,
		L0StopWritesThreshold: 3 * opts.L0CompactionThreshold,
	}
	// Bloom filters on every level (pebble has none by default): the state
	// machine looks up many keys that do not exist (new ids, idempotency
	// keys), and without a filter each such Get reads and decompresses a
	// data block of every table whose range covers the key.
	for i := range popts.Levels {
		popts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	if min := opts.ValueSeparationMinSize; min > 0 {
		// Needs FormatValueSeparation (FormatNewest includes it). A blob
		// file is rewritten once a fifth of it is garbage and it is five
		// minutes old; an sstable may reference at most 10 overlapping
		// blob files before a compaction rewrites their values.
		popts.Experimental.ValueSeparationPolicy = func() pebble.ValueSeparationPolicy {
			return pebble.ValueSeparationPolicy{Enabled: true, MinimumSize: min,
				MaxBlobReferenceDepth: 10, RewriteMinimumAge: 5 * time.Minute, TargetGarbageRatio: 0.2}
		}
	}
	pdb, err := pebble.Open(dir, popts)
	if err != nil {
		return nil, fmt.Errorf("open pebble in %q: %w", dir, err)
	}
	// Opening writes a WAL (the replayed one's tail, a new one); the guard
	// keeps a failure there from pebble, so it is read back here.
	if err := fnc.failure(); err != nil {
		return nil, fmt.Errorf("open pebble in %q: %w", dir, errors.Join(err, pdb.Close()))
	}
	return &DB{
		pdb:    pdb,
		fence:  fnc,
		opts:   opts,
		logs:   make(map[uint64]*LogStore),
		states: make(map[uint64]*StateStore),
	}, nil
}

// Close closes the database. After a failure (ErrFailed) pebble's commit
// pipeline may be wedged, so Close then skips pebble's own Close and returns
// the failure: the process is expected to exit. Outstanding state batches
// must be closed first.
func (db *DB) Close() error {
	if db.closed.Swap(true) {
		return nil
	}
	if err := db.failure(); err != nil {
		return err
	}
	if err := db.pdb.Close(); err != nil {
		return fmt.Errorf("close pebble: %w", err)
	}
	return nil
}

// LogStore returns raft's log storage for group. It has the method set of
// consensus.LogStore. The same *LogStore is returned for the same group, so
// its in-memory index cache is never duplicated.
func (db *DB) LogStore(group uint64) *LogStore {
	db.mu.Lock()
	defer db.mu.Unlock()
	s, ok := db.logs[group]
	if !ok {
		s = newLogStore(db, group)
		db.logs[group] = s
	}
	return s
}

// StateStore returns the state machine key space of group.
func (db *DB) StateStore(group uint64) *StateStore {
	db.mu.Lock()
	defer db.mu.Unlock()
	s, ok := db.states[group]
	if !ok {
		s = newStateStore(db, group)
		db.states[group] = s
	}
	return s
}

// NodeID returns the node id bound to this data dir; ok is false on a fresh
// (or wiped) dir, whose node must join the cluster as a new member: reusing
// an old id with an empty log would let it vote twice in a term.
func (db *DB) NodeID() (id uint64, ok bool, err error) {
	v, found, err := db.get(db.pdb, nodeIDKey)
	if err != nil || !found {
		return 0, false, err
	}
	if len(v) != 8 {
		return 0, false, fmt.Errorf("node id: corrupt value of %d bytes", len(v))
	}
	return binary.BigEndian.Uint64(v), true, nil
}

// SetNodeID binds id to this data dir (synced). Binding the id already bound
// is a no-op; another id returns ErrNodeIDMismatch.
func (db *DB) SetNodeID(id uint64) error {
	if id == 0 {
		return errors.New("set node id: 0 is not a valid raft id")
	}
	// Held across read-check-write so two callers cannot bind two ids.
	db.mu.Lock()
	defer db.mu.Unlock()
	cur, ok, err := db.NodeID()
	if err != nil {
		return err
	}
	if ok {
		if cur != id {
			return fmt.Errorf("set node id %d: bound to %d: %w", id, cur, ErrNodeIDMismatch)
		}
		return nil
	}
	b := db.pdb.NewBatch()
	defer b.Close()
	if err := b.Set(nodeIDKey, binary.BigEndian.AppendUint64(nil, id), nil); err != nil {
		return fmt.Errorf("set node id: %w", err)
	}
	if err := db.commit(b, pebble.Sync); err != nil {
		return fmt.Errorf("set node id %d: %w", id, err)
	}
	return nil
}

// usable returns an error when the DB must not be used.
func (db *DB) usable() error {
	if err := db.failure(); err != nil {
		return err
	}
	if db.closed.Load() {
		return ErrClosed
	}
	return nil
}

func (db *DB) failure() error { return db.fence.failure() }

// fail records the first write failure; later ones add nothing. Not logged
// here: pebble's Fatalf or the WAL guard logged it, and the caller returns
// the error.
func (db *DB) fail(err error) error { return db.fence.fail(err) }

// commit applies b. A WAL write or sync error stops at the WAL guard, which
// fences the DB before pebble's call returns (see walGuard), so the fence
// is checked again once pebble returns: a commit whose write or fsync was
// dropped reports ErrFailed. Any other commit failure pebble reports by
// calling Logger.Fatalf after the batch is already visible in its
// memtable; our logger turns that into a fatalPanic, recovered here into
// ErrFailed, which fences the DB too. A failed commit is therefore never
// acknowledged, and its (non-durable) effect is never read back.
func (db *DB) commit(b *pebble.Batch, opts *pebble.WriteOptions) (err error) {
	if err := db.usable(); err != nil {
		return err
	}
	defer func() {
		if r := recover(); r != nil {
			fp, ok := r.(fatalPanic)
			if !ok {
				panic(r)
			}
			err = db.fail(fp)
		}
	}()
	if err := b.Commit(opts); err != nil {
		return db.fail(err)
	}
	return db.failure()
}

// sync makes every write committed so far durable: syncing a WAL record
// (here an empty LogData one, which touches no key) fsyncs the WAL through
// every record before it.
func (db *DB) sync() error {
	b := db.pdb.NewBatch()
	defer b.Close()
	if err := b.LogData(nil, nil); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	if err := db.commit(b, pebble.Sync); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	return nil
}

// get returns a copy of key's value in r; found is false when absent.
func (db *DB) get(r pebble.Reader, key []byte) (val []byte, found bool, err error) {
	if err := db.usable(); err != nil {
		return nil, false, err
	}
	v, closer, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("get %x: %w", key, err)
	}
	val = append([]byte(nil), v...)
	if err := closer.Close(); err != nil {
		return nil, false, fmt.Errorf("get %x: close: %w", key, err)
	}
	return val, true, nil
}

// fatalPanic carries a pebble Fatalf out of the commit path (see commit).
type fatalPanic string

func (f fatalPanic) Error() string { return "pebble fatal: " + string(f) }

// pebbleLogger adapts zap to pebble.Logger. Fatalf panics instead of exiting:
// in the commit path the panic is recovered into ErrFailed (so the node stops
// through its normal error path, saying why); anywhere else (background
// flush/compaction/MANIFEST failure) it crashes the process, which is the
// crash-stop the design wants on a disk fault.
type pebbleLogger struct{ s *zap.SugaredLogger }

func (l pebbleLogger) Infof(format string, args ...any)  { l.s.Infof(format, args...) }
func (l pebbleLogger) Errorf(format string, args ...any) { l.s.Errorf(format, args...) }
func (l pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.s.Error(msg)
	panic(fatalPanic(msg))
}
