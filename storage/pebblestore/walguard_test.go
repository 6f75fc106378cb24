package pebblestore

import (
	"errors"
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"go.uber.org/zap/zaptest"
)

// TestWALCreateFailureFences: a WAL that cannot be created during a
// memtable rotation fences the DB instead of panicking inside pebble
// (rotateWAL panicked, then unlocked a mutex it no longer held), and the
// disk keeps what was durable before.
func TestWALCreateFailureFences(t *testing.T) {
	mem := vfs.NewCrashableMem()
	fault := walCreateFault()
	db := openFS(t, errorfs.Wrap(mem, fault))
	ls, st := db.LogStore(1), db.StateStore(1)
	if err := ls.Save(hardState(2, 1, 10), ents(1, 10, 2, 64), nil, true); err != nil {
		t.Fatal(err)
	}
	commitIndexed(t, st, 7)
	if _, _, err := st.SnapshotState(); err != nil { // syncs applied 7
		t.Fatal(err)
	}

	fault.on.Store(true)
	b := st.NewBatch()
	val := make([]byte, 4<<10)
	for i := range 100 { // 400 KB: more than the young DB's first memtable
		if err := b.Set(fmt.Appendf(nil, "big/%03d", i), val); err != nil {
			t.Fatal(err)
		}
	}
	err := b.Commit(99)
	b.Close()
	if !errors.Is(err, ErrFailed) || !errors.Is(err, errorfs.ErrInjected) {
		t.Fatalf("commit whose rotation could not create a WAL: %v; want ErrFailed wrapping the injected error", err)
	}
	if _, err := st.Get([]byte("big/000")); !errors.Is(err, ErrFailed) {
		t.Fatalf("Get after failure: %v", err)
	}
	if err := ls.Save(hardState(3, 1, 10), nil, nil, true); !errors.Is(err, ErrFailed) {
		t.Fatalf("Save after failure: %v", err)
	}

	db2 := openFS(t, mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0}))
	if last := must(db2.LogStore(1).LastIndex()); last != 10 {
		t.Fatalf("last index after restart = %d; want 10", last)
	}
	if applied := checkStateConsistent(t, db2.StateStore(1)); applied != 7 {
		t.Fatalf("applied after restart = %d; want 7", applied)
	}
}

// TestOpenFailsWhenItsWALFails: opening writes a new WAL; when that fails
// Open says so instead of returning a fenced DB.
func TestOpenFailsWhenItsWALFails(t *testing.T) {
	mem := vfs.NewCrashableMem()
	fault := walCreateFault()
	fs := errorfs.Wrap(mem, fault)
	db := openFS(t, fs)
	if err := db.LogStore(1).Save(hardState(2, 1, 3), ents(1, 3, 2, 64), nil, true); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	fault.on.Store(true)
	_, err := Open(testDir, Options{FS: fs, Logger: zaptest.NewLogger(t), CacheSize: 1 << 20, MemTableSize: 1 << 20})
	if !errors.Is(err, ErrFailed) || !errors.Is(err, errorfs.ErrInjected) {
		t.Fatalf("open with a failing WAL: %v; want ErrFailed wrapping the injected error", err)
	}
	fault.on.Store(false)
	db2 := openFS(t, fs)
	if last := must(db2.LogStore(1).LastIndex()); last != 3 {
		t.Fatalf("last index after a failed open = %d; want 3", last)
	}
}

// TestWALGuardUnwrapsToTheDiskUnderIt: pebble's vfs.Root must reach the FS
// the guard wraps (it asks the root for disk-specific behaviour), not stop
// at the guard because the embedded FS answered Unwrap for it.
func TestWALGuardUnwrapsToTheDiskUnderIt(t *testing.T) {
	for _, under := range []vfs.FS{vfs.Default, vfs.NewMem()} {
		g := &walGuard{FS: under, fence: &fence{}}
		if got := vfs.Root(g); got != under {
			t.Errorf("vfs.Root(guard over %T) = %T, want the FS under the guard", under, got)
		}
	}
}
