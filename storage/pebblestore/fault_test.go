package pebblestore

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"google.golang.org/protobuf/proto"
)

// walFault injects errorfs.ErrInjected into the given operations on WAL
// files while on.
type walFault struct {
	on    atomic.Bool
	name  string
	kinds []errorfs.OpKind
}

// walWriteFault fails writes and syncs of WAL files.
func walWriteFault() *walFault {
	return &walFault{name: "wal write/sync fault", kinds: []errorfs.OpKind{
		errorfs.OpFileWrite, errorfs.OpFileWriteAt, errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo}}
}

// walCreateFault fails the creation (or recycling) of WAL files.
func walCreateFault() *walFault {
	return &walFault{name: "wal create fault", kinds: []errorfs.OpKind{errorfs.OpCreate, errorfs.OpReuseForWrite}}
}

func (f *walFault) String() string { return f.name }

func (f *walFault) MaybeError(op errorfs.Op) error {
	if f.on.Load() && strings.HasSuffix(op.Path, ".log") && slices.Contains(f.kinds, op.Kind) {
		return errorfs.ErrInjected
	}
	return nil
}

// TestDiskFaultFailsSaveAndFences: a WAL write/sync error makes the synced
// Save fail with ErrFailed, the DB refuses further use (pebble already shows
// the failed batch in memory), and after a restart only what was durable
// before the fault is there.
func TestDiskFaultFailsSaveAndFences(t *testing.T) {
	tests := []struct {
		name  string
		write func(db *DB) error
	}{
		{"synced Save", func(db *DB) error {
			return db.LogStore(1).Save(hardState(3, 1, 12), ents(11, 20, 3, 64), nil, true)
		}},
		{"state commit then SnapshotState", func(db *DB) error {
			b := db.StateStore(1).NewBatch()
			defer b.Close()
			if err := b.Set([]byte("acct/a"), []byte("lost")); err != nil {
				return err
			}
			if err := b.Commit(99); err != nil {
				return err
			}
			_, _, err := db.StateStore(1).SnapshotState()
			return err
		}},
		{"SaveMembership", func(db *DB) error {
			return db.LogStore(1).SaveMembership(50, nil, []byte("m"))
		}},
		// The batch does not fit in the young DB's first memtable (256 KB),
		// so pebble rotates the memtable and closes the WAL, whose final
		// write fails: before the WAL guard, rotateWAL's panic killed the
		// process ("sync: unlock of unlocked mutex"). Unsynced: the failure
		// must still be reported, since the guard fenced the DB first.
		{"state commit that rotates the WAL", func(db *DB) error {
			b := db.StateStore(1).NewBatch()
			defer b.Close()
			val := make([]byte, 4<<10)
			for i := range 100 {
				if err := b.Set(fmt.Appendf(nil, "big/%03d", i), val); err != nil {
					return err
				}
			}
			return b.Commit(99)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mem := vfs.NewCrashableMem()
			fault := walWriteFault()
			db := openFS(t, errorfs.Wrap(mem, fault))
			ls, st := db.LogStore(1), db.StateStore(1)
			if err := ls.Save(hardState(2, 1, 10), ents(1, 10, 2, 64), nil, true); err != nil {
				t.Fatal(err)
			}
			commitIndexed(t, st, 7)
			if err := ls.Save(nil, nil, nil, true); err != nil { // no-op
				t.Fatal(err)
			}
			if _, _, err := st.SnapshotState(); err != nil { // syncs applied 7
				t.Fatal(err)
			}

			fault.on.Store(true)
			err := tc.write(db)
			if !errors.Is(err, ErrFailed) {
				t.Fatalf("write under a disk fault: error = %v; want ErrFailed", err)
			}
			// Fenced: reads and writes fail rather than show non-durable data.
			if _, err := ls.LastIndex(); err == nil {
				t.Fatal("LastIndex succeeded after a storage failure")
			}
			if _, err := st.Get([]byte("acct/a")); !errors.Is(err, ErrFailed) {
				t.Fatalf("Get after failure: %v", err)
			}
			if err := ls.Save(hardState(9, 9, 9), nil, nil, true); !errors.Is(err, ErrFailed) {
				t.Fatalf("Save after failure: %v", err)
			}
			if err := db.Close(); !errors.Is(err, ErrFailed) {
				t.Fatalf("Close after failure: %v", err)
			}

			// Restart on what the disk holds: the pre-fault state, whole.
			db2 := openFS(t, mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0}))
			ls2, st2 := db2.LogStore(1), db2.StateStore(1)
			hs, _, err := ls2.InitialState()
			if err != nil || !proto.Equal(hs, hardState(2, 1, 10)) {
				t.Fatalf("hard state after restart = %v, %v", hs, err)
			}
			if last := must(ls2.LastIndex()); last != 10 {
				t.Fatalf("last index after restart = %d; want 10", last)
			}
			if n := len(must(ls2.Entries(1, 11, math.MaxUint64))); n != 10 {
				t.Fatalf("%d entries after restart; want 10", n)
			}
			if applied := checkStateConsistent(t, st2); applied != 7 {
				t.Fatalf("applied after restart = %d; want 7", applied)
			}
			if idx, _, _, err := ls2.Membership(); err != nil || idx != 0 {
				t.Fatalf("membership after restart = %d, %v", idx, err)
			}
		})
	}
}
