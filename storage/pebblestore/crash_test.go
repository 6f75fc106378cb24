package pebblestore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	txswitch "github.com/txswitch/txswitch/switch"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

var crashSeed = flag.Uint64("crash.seed", 0, "seed of TestCrashRandom (0: time based)")

// stateKeys are written by every state commit with the commit's index as
// value, so after a crash each must decode to the recovered applied index.
var stateKeys = []string{"acct/a", "acct/b", "outbox/x"}

func commitIndexed(t *testing.T, st *StateStore, index uint64) {
	t.Helper()
	commitPadded(t, st, index, 0)
}

// commitPadded is commitIndexed with pad bytes after each value, so that
// WAL records straddle the crash model's 4 KiB blocks.
func commitPadded(t *testing.T, st *StateStore, index uint64, pad int) {
	t.Helper()
	var kvs []kv
	for _, k := range stateKeys {
		v := binary.BigEndian.AppendUint64(nil, index)
		kvs = append(kvs, kv{k, string(append(v, make([]byte, pad)...))})
	}
	commitKVs(t, st, index, kvs...)
}

// checkStateConsistent asserts that the state and the applied index agree
// and returns the applied index.
func checkStateConsistent(t *testing.T, st *StateStore) uint64 {
	t.Helper()
	applied, err := st.AppliedIndex()
	if err != nil {
		t.Fatalf("applied index: %v", err)
	}
	for _, k := range stateKeys {
		v, err := st.Get([]byte(k))
		if applied == 0 {
			if !errors.Is(err, txswitch.ErrNotFound) {
				t.Fatalf("applied 0 but %s = %x, %v", k, v, err)
			}
			continue
		}
		if err != nil || len(v) < 8 || binary.BigEndian.Uint64(v) != applied {
			t.Fatalf("applied index %d but %s = %x, %v", applied, k, v, err)
		}
	}
	return applied
}

// TestCrashKeepsSyncedWrites: with no unsynced data surviving, a synced Save
// survives entirely, the unsynced state commits before it survive with it
// (one WAL), and those after it vanish — consistently with the applied index.
func TestCrashKeepsSyncedWrites(t *testing.T) {
	mem := vfs.NewCrashableMem()
	db := openFS(t, mem)
	ls, st := db.LogStore(1), db.StateStore(1)

	commitIndexed(t, st, 1) // unsynced, made durable by the next synced Save
	if err := ls.Save(hardState(2, 1, 3), ents(1, 5, 2, 100), nil, true); err != nil {
		t.Fatal(err)
	}
	commitIndexed(t, st, 2) // unsynced, nothing syncs it
	if err := ls.Save(hardState(2, 1, 5), ents(6, 8, 2, 100), nil, false); err != nil {
		t.Fatal(err)
	}

	crashed := mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	db2 := openFS(t, crashed)
	ls2, st2 := db2.LogStore(1), db2.StateStore(1)
	if applied := checkStateConsistent(t, st2); applied != 1 {
		t.Fatalf("applied after crash = %d; want 1 (synced by the Save)", applied)
	}
	hs, _, err := ls2.InitialState()
	if err != nil || !proto.Equal(hs, hardState(2, 1, 3)) {
		t.Fatalf("hard state after crash = %v, %v", hs, err)
	}
	if last := must(ls2.LastIndex()); last != 5 {
		t.Fatalf("last index after crash = %d; want 5", last)
	}
	got := must(ls2.Entries(1, 6, math.MaxUint64))
	for i, e := range ents(1, 5, 2, 100) {
		if !proto.Equal(got[i], e) {
			t.Fatalf("entry %d after crash = %v", i+1, got[i])
		}
	}

	// SnapshotState and SyncState sync: the index they returned survives a
	// crash.
	for i, tc := range []struct {
		name string
		sync func(*StateStore) (uint64, error)
	}{
		{"SnapshotState", func(st *StateStore) (uint64, error) {
			idx, _, err := st.SnapshotState()
			return idx, err
		}},
		{"SyncState", (*StateStore).SyncState},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := uint64(3 + i)
			db := openFS(t, crashed.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0}))
			st := db.StateStore(1)
			for idx := uint64(2); idx <= want; idx++ {
				commitIndexed(t, st, idx)
			}
			if idx, err := tc.sync(st); err != nil || idx != want {
				t.Fatalf("%s = %d, %v; want %d", tc.name, idx, err, want)
			}
			commitIndexed(t, st, want+1) // unsynced: lost
			db3 := openFS(t, db.opts.FS.(*vfs.MemFS).CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0}))
			if applied := checkStateConsistent(t, db3.StateStore(1)); applied != want {
				t.Fatalf("applied after %s + crash = %d; want %d", tc.name, applied, want)
			}
		})
	}
}

// crashModel is what the test expects on disk after each operation.
type crashModel struct {
	last, lastTerm, commit uint64
	applied                uint64
}

// TestCrashRandom interleaves synced and unsynced raft Saves (with suffix
// truncations), state commits, snapshots and compactions, then crashes with
// a random share of unsynced data surviving. Pebble's WAL replays a prefix
// of the writes, so the recovered store must equal the model after some
// operation at or after the last synced one, with state and applied index
// consistent.
func TestCrashRandom(t *testing.T) {
	seed := *crashSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (rerun: go test -run TestCrashRandom -crash.seed=%d)", seed, seed)
	r := rand.New(rand.NewPCG(seed, 0))
	for round := range 30 {
		t.Run(fmt.Sprint("round=", round), func(t *testing.T) {
			crashRound(t, r, fmt.Sprintf("seed %d round %d", seed, round))
		})
	}
}

func crashRound(t *testing.T, r *rand.Rand, label string) {
	mem := vfs.NewCrashableMem()
	db := openFS(t, mem)
	ls, st := db.LogStore(1), db.StateStore(1)
	var m crashModel
	var snapIndex, offset uint64
	history := []crashModel{m}
	synced := 0 // history index of the last synced op
	var syncedWAL string
	var syncedLen int // length of syncedWAL at the last synced op
	for range 40 {
		sync := false
		switch k := r.IntN(10); {
		case k < 4: // raft Save, sometimes replacing a suffix
			start := m.last + 1
			term := m.lastTerm + 1
			if m.last > offset && r.IntN(3) == 0 {
				start = max(offset+1, m.commit+1, m.last-r.Uint64N(3))
				term++
			}
			if start > m.last+1 {
				start = m.last + 1
			}
			end := start + r.Uint64N(8)
			sync = r.IntN(2) == 0
			commit := min(end, m.commit+r.Uint64N(5))
			if err := ls.Save(hardState(term, 1, commit), ents(start, end, term, r.IntN(300)), nil, sync); err != nil {
				t.Fatalf("%s: save: %v", label, err)
			}
			m.last, m.lastTerm, m.commit = end, term, commit
		case k < 8 && m.applied < m.commit: // apply one committed entry
			m.applied++
			commitPadded(t, st, m.applied, r.IntN(6000))
		case k < 9 && m.applied > snapIndex: // snapshot + compact
			idx, img, err := st.SnapshotState()
			if err != nil || idx != m.applied {
				t.Fatalf("%s: snapshot state = %d, %v; want %d", label, idx, err, m.applied)
			}
			if _, err := ls.CreateSnapshot(idx, &raftpb.ConfState{Voters: []uint64{1}}, img); err != nil {
				t.Fatalf("%s: create snapshot %d: %v", label, idx, err)
			}
			snapIndex, sync = idx, true
			if c := idx - r.Uint64N(idx-offset); c > offset {
				if err := ls.Compact(c); err != nil {
					t.Fatalf("%s: compact %d: %v", label, c, err)
				}
				offset = c
			}
		default:
			continue
		}
		history = append(history, m)
		if sync {
			synced = len(history) - 1
			syncedWAL = currentWAL(t, mem)
			syncedLen = len(readFile(t, mem.CrashClone(vfs.CrashCloneCfg{}), syncedWAL))
		}
	}

	// Crash either as the memory FS models it (unsynced 4 KiB blocks kept at
	// random — but pebble only writes full 32 KiB WAL blocks before a sync,
	// so little unsynced data ever reaches it), or by syncing everything and
	// tearing the WAL at a random byte past the last real sync.
	var crashed vfs.FS
	if err := db.sync(); err == nil && syncedWAL != "" && currentWAL(t, mem) == syncedWAL && r.IntN(2) == 0 {
		full := mem.CrashClone(vfs.CrashCloneCfg{})
		data := readFile(t, full, syncedWAL)
		cut := syncedLen + r.IntN(len(data)-syncedLen+1)
		crashed = tornWAL(t, full, syncedWAL, data[:cut])
		label = fmt.Sprintf("%s WAL torn at %d (synced %d, written %d)", label, cut, syncedLen, len(data))
	} else {
		pct := r.IntN(101)
		crashed = mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: pct, RNG: rand.New(rand.NewPCG(r.Uint64(), 0))})
		label = fmt.Sprintf("%s UnsyncedDataPercent %d", label, pct)
	}
	db2 := openFS(t, crashed)
	ls2, st2 := db2.LogStore(1), db2.StateStore(1)
	applied := checkStateConsistent(t, st2)
	hs, _, err := ls2.InitialState()
	if err != nil {
		t.Fatalf("%s: initial state: %v", label, err)
	}
	last := must(ls2.LastIndex())
	lastTerm := must(ls2.Term(last))
	got := crashModel{last: last, lastTerm: lastTerm, commit: hs.GetCommit(), applied: applied}
	found := false
	for _, h := range history[synced:] {
		found = found || h == got
	}
	if !found {
		t.Fatalf("%s: recovered %+v matches no state at or after the last synced one %+v (history %v)",
			label, got, history[synced], history)
	}
	// The recovered log is readable end to end.
	first := must(ls2.FirstIndex())
	if last >= first {
		if _, err := ls2.Entries(first, last+1, math.MaxUint64); err != nil {
			t.Fatalf("%s: entries [%d, %d]: %v", label, first, last, err)
		}
	}
}

// TestCrashAtEveryWALOffset tears the WAL at many byte offsets between two
// syncs (a torn sequential write) and checks that every recovery shows a
// state consistent with its applied index, never behind the first sync, and
// never going back as the cut moves forward.
func TestCrashAtEveryWALOffset(t *testing.T) {
	mem := vfs.NewCrashableMem()
	db := openFS(t, mem)
	ls, st := db.LogStore(1), db.StateStore(1)
	if err := ls.Save(hardState(1, 1, 30), ents(1, 30, 1, 16), nil, true); err != nil {
		t.Fatal(err)
	}
	commitIndexed(t, st, 1)
	if _, _, err := st.SnapshotState(); err != nil { // sync: applied 1 is durable
		t.Fatal(err)
	}
	// Pebble writes the WAL asynchronously, so the file is only known
	// exactly at syncs: take its length now, write the tail, sync again, and
	// tear the tail from the second image.
	wal := currentWAL(t, mem)
	from := len(readFile(t, mem.CrashClone(vfs.CrashCloneCfg{}), wal))
	const last = 16
	for i := uint64(2); i <= last; i++ {
		commitPadded(t, st, i, int(i*7))
	}
	if err := ls.Save(hardState(1, 1, 30), nil, nil, true); err != nil {
		t.Fatal(err)
	}
	full := mem.CrashClone(vfs.CrashCloneCfg{})
	data := readFile(t, full, wal)
	if len(data) <= from {
		t.Fatalf("no WAL tail (%d <= %d)", len(data), from)
	}
	r := rand.New(rand.NewPCG(uint64(len(data)), 7))
	cuts := []int{from, len(data)}
	for range 120 {
		cuts = append(cuts, from+1+r.IntN(len(data)-from))
	}
	slices.Sort(cuts)
	prev := uint64(1)
	for _, cut := range cuts {
		db := openFS(t, tornWAL(t, full, wal, data[:cut]))
		applied := checkStateConsistent(t, db.StateStore(1))
		if applied < prev {
			t.Fatalf("cut at %d: applied %d, a shorter WAL gave %d", cut, applied, prev)
		}
		prev = applied
		_ = db.Close()
	}
	if prev != last {
		t.Fatalf("whole WAL recovered applied %d; want %d", prev, last)
	}
}

// tornWAL copies fs with the WAL's content replaced by data.
func tornWAL(t *testing.T, fs vfs.FS, wal string, data []byte) vfs.FS {
	t.Helper()
	out := vfs.NewMem()
	if _, err := vfs.Clone(fs, out, testDir, testDir); err != nil {
		t.Fatal(err)
	}
	f, err := out.Create(wal, vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// A copy: under -race pebble's MemFS scrambles the written buffer to
	// catch callers reusing it.
	if _, err := f.Write(bytes.Clone(data)); err != nil {
		t.Fatal(err)
	}
	return out
}

func currentWAL(t *testing.T, fs vfs.FS) string {
	t.Helper()
	names, err := fs.List(testDir)
	if err != nil {
		t.Fatal(err)
	}
	var wal string
	for _, n := range names {
		if strings.HasSuffix(n, ".log") && n > wal {
			wal = n
		}
	}
	if wal == "" {
		t.Fatalf("no WAL in %v", names)
	}
	return fs.PathJoin(testDir, wal)
}

func readFile(t *testing.T, fs vfs.FS, name string) []byte {
	t.Helper()
	f, err := fs.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
