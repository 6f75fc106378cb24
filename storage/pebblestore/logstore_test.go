package pebblestore

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// logOp is one call on the log storage, applied to both raft.MemoryStorage
// (the reference) and LogStore.
type logOp struct {
	// Save (when hs, ents or snap is set)
	hs   *raftpb.HardState
	ents []*raftpb.Entry
	snap *raftpb.Snapshot
	// CreateSnapshot at create (> 0) with cs and data
	create uint64
	cs     *raftpb.ConfState
	data   string
	// Compact at compact (> 0)
	compact uint64
	// reopen closes and reopens the DB (restart) before comparing.
	reopen bool
}

func (o logOp) String() string {
	switch {
	case o.create > 0:
		return fmt.Sprintf("CreateSnapshot(%d)", o.create)
	case o.compact > 0:
		return fmt.Sprintf("Compact(%d)", o.compact)
	case o.reopen:
		return "reopen"
	}
	s := "Save("
	if len(o.ents) > 0 {
		s += fmt.Sprintf("ents %d..%d@%d ", o.ents[0].GetIndex(), o.ents[len(o.ents)-1].GetIndex(), o.ents[0].GetTerm())
	}
	if o.snap != nil {
		s += fmt.Sprintf("snap %d@%d ", o.snap.GetMetadata().GetIndex(), o.snap.GetMetadata().GetTerm())
	}
	if o.hs != nil {
		s += fmt.Sprintf("hs %v", o.hs)
	}
	return s + ")"
}

// applyMem applies o to MemoryStorage the way a Ready loop does: snapshot,
// then entries, then HardState.
func applyMem(ms *raft.MemoryStorage, o logOp) error {
	switch {
	case o.create > 0:
		_, err := ms.CreateSnapshot(o.create, o.cs, []byte(o.data))
		return err
	case o.compact > 0:
		return ms.Compact(o.compact)
	case o.reopen:
		return nil
	}
	if o.snap != nil && !raft.IsEmptySnap(o.snap) {
		if err := ms.ApplySnapshot(o.snap); err != nil {
			return err
		}
	}
	if err := ms.Append(o.ents); err != nil {
		return err
	}
	if o.hs != nil {
		return ms.SetHardState(o.hs)
	}
	return nil
}

func applyOurs(ls *LogStore, o logOp) error {
	switch {
	case o.create > 0:
		_, err := ls.CreateSnapshot(o.create, o.cs, []byte(o.data))
		return err
	case o.compact > 0:
		return ls.Compact(o.compact)
	case o.reopen:
		return nil
	}
	return ls.Save(o.hs, o.ents, o.snap, true)
}

// sameErr: both nil, or ours wraps the reference error.
func sameErr(ref, ours error) bool {
	if ref == nil || ours == nil {
		return ref == nil && ours == nil
	}
	return errors.Is(ours, ref)
}

// compareStorage checks every raft.Storage observation of ls against ms.
func compareStorage(t *testing.T, step string, ms *raft.MemoryStorage, ls *LogStore) {
	t.Helper()
	mf, _ := ms.FirstIndex()
	ml, _ := ms.LastIndex()
	of, err := ls.FirstIndex()
	if err != nil || of != mf {
		t.Fatalf("%s: FirstIndex = %d, %v; want %d", step, of, err, mf)
	}
	ol, err := ls.LastIndex()
	if err != nil || ol != ml {
		t.Fatalf("%s: LastIndex = %d, %v; want %d", step, ol, err, ml)
	}
	for i := mf - min(mf, 2); i <= ml+1; i++ {
		mt, merr := ms.Term(i)
		ot, oerr := ls.Term(i)
		if !sameErr(merr, oerr) || ot != mt {
			t.Fatalf("%s: Term(%d) = %d, %v; want %d, %v", step, i, ot, oerr, mt, merr)
		}
	}
	// Entries at the edges of the log and in its middle, with ranges and size
	// limits that stop at one entry, a few, and none.
	los := []uint64{mf - min(mf, 1), mf, mf + 1, (mf + ml) / 2, ml, ml + 1}
	for _, lo := range los {
		for _, hi := range []uint64{lo, lo + 1, lo + 3, ml + 1} {
			if hi < lo || hi > ml+1 {
				continue
			}
			for _, maxSize := range []uint64{0, 150, 1000, math.MaxUint64} {
				me, merr := ms.Entries(lo, hi, maxSize)
				oe, oerr := ls.Entries(lo, hi, maxSize)
				if !sameErr(merr, oerr) {
					t.Fatalf("%s: Entries(%d, %d, %d) error %v; want %v", step, lo, hi, maxSize, oerr, merr)
				}
				if len(me) != len(oe) {
					t.Fatalf("%s: Entries(%d, %d, %d) = %d entries; want %d", step, lo, hi, maxSize, len(oe), len(me))
				}
				for k := range me {
					if !proto.Equal(me[k], oe[k]) {
						t.Fatalf("%s: Entries(%d, %d, %d)[%d] = %v; want %v", step, lo, hi, maxSize, k, oe[k], me[k])
					}
				}
			}
		}
	}
	msnap, _ := ms.Snapshot()
	osnap, err := ls.Snapshot()
	if err != nil || !proto.Equal(msnap, osnap) {
		t.Fatalf("%s: Snapshot = %v, %v; want %v", step, osnap, err, msnap)
	}
	mhs, mcs, _ := ms.InitialState()
	ohs, ocs, err := ls.InitialState()
	if err != nil || !proto.Equal(mhs, ohs) || !proto.Equal(mcs, ocs) {
		t.Fatalf("%s: InitialState = %v, %v, %v; want %v, %v", step, ohs, ocs, err, mhs, mcs)
	}
}

// runConformance applies ops to both storages, comparing results and every
// observation after each op.
func runConformance(t *testing.T, ops []logOp) {
	t.Helper()
	fs := vfs.NewMem()
	db := openFS(t, fs)
	ls := db.LogStore(1)
	ms := raft.NewMemoryStorage()
	compareStorage(t, "initial", ms, ls)
	for i, o := range ops {
		step := fmt.Sprintf("op %d %v", i, o)
		merr := applyMem(ms, o)
		oerr := applyOurs(ls, o)
		if !sameErr(merr, oerr) {
			t.Fatalf("%s: error %v; want %v", step, oerr, merr)
		}
		if o.reopen {
			if err := db.Close(); err != nil {
				t.Fatalf("%s: close: %v", step, err)
			}
			db = openFS(t, fs)
			ls = db.LogStore(1)
		}
		compareStorage(t, step, ms, ls)
	}
}

func TestLogStoreConformance(t *testing.T) {
	voters := &raftpb.ConfState{Voters: []uint64{1, 2, 3}}
	tests := []struct {
		name string
		ops  []logOp
	}{
		{"append and read", []logOp{
			{hs: hardState(1, 1, 0), ents: ents(1, 10, 1, 40)},
			{hs: hardState(1, 1, 10)},
			{reopen: true},
		}},
		{"truncate conflicting suffix", []logOp{
			{ents: ents(1, 10, 1, 40)},
			{ents: ents(6, 8, 2, 40), hs: hardState(2, 2, 5)},
			{reopen: true},
			{ents: ents(9, 9, 2, 10)},
		}},
		{"overwrite with a longer suffix", []logOp{
			{ents: ents(1, 5, 1, 40)},
			{ents: ents(3, 9, 2, 40)},
			{reopen: true},
		}},
		{"gap-free append at last+1", []logOp{
			{ents: ents(1, 3, 1, 5)},
			{ents: ents(4, 6, 1, 5)},
		}},
		{"create snapshot then compact", []logOp{
			{ents: ents(1, 10, 1, 40)},
			{create: 6, cs: voters, data: "state@6"},
			{compact: 4},
			{compact: 4}, // ErrCompacted
			{compact: 3}, // ErrCompacted
			{compact: 6},
			{reopen: true},
			{create: 6, data: "again"}, // ErrSnapOutOfDate
			{create: 8},                // nil cs keeps the previous ConfState
		}},
		{"append over compacted prefix", []logOp{
			{ents: ents(1, 8, 1, 40)},
			{create: 5, cs: voters, data: "s"},
			{compact: 5},
			{ents: ents(3, 9, 1, 40)}, // 3..5 skipped, 6..9 replace
			{ents: ents(1, 4, 1, 40)}, // entirely compacted: no-op
		}},
		{"snapshot via Save drops the log", []logOp{
			{ents: ents(1, 5, 1, 40), hs: hardState(1, 0, 3)},
			{snap: snapshot(10, 3, []uint64{1, 2}, "image"), hs: hardState(3, 0, 10)},
			{reopen: true},
			{ents: ents(11, 12, 3, 40)},
		}},
		{"snapshot and entries in one Save", []logOp{
			{ents: ents(1, 20, 1, 40)},
			{snap: snapshot(7, 2, []uint64{1}, "img"), ents: ents(8, 9, 2, 40), hs: hardState(2, 1, 9)},
			{reopen: true},
		}},
		{"stale snapshot refused", []logOp{
			{snap: snapshot(10, 3, []uint64{1}, "a")},
			{snap: snapshot(8, 3, []uint64{1}, "b"), ents: ents(9, 11, 3, 4)}, // ErrSnapOutOfDate, nothing applied
			{snap: snapshot(10, 3, []uint64{1}, "c")},                         // equal: ErrSnapOutOfDate
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { runConformance(t, tc.ops) })
	}
}

// TestLogStoreConformanceRandom drives both storages with random valid op
// sequences (including restarts) and compares after each op.
func TestLogStoreConformanceRandom(t *testing.T) {
	for seed := uint64(1); seed <= 10; seed++ {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			runConformance(t, randomLogOps(rand.New(rand.NewPCG(seed, seed)), 30))
		})
	}
}

// randomLogOps generates ops valid for MemoryStorage (which panics on some
// invalid ones), tracking the log shape as MemoryStorage would.
func randomLogOps(r *rand.Rand, n int) []logOp {
	var offset, last, snapIndex, term uint64 = 0, 0, 0, 1
	var ops []logOp
	for len(ops) < n {
		switch k := r.IntN(10); {
		case k < 5: // append, sometimes overwriting a suffix with a higher term
			start := last + 1
			if last > offset && r.IntN(3) == 0 {
				start = offset + 1 + r.Uint64N(last-offset)
				term++
			}
			cnt := 1 + r.Uint64N(6)
			ops = append(ops, logOp{ents: ents(start, start+cnt-1, term, r.IntN(120)), hs: hardState(term, 1, start-1)})
			last = start + cnt - 1
		case k < 7 && last > snapIndex: // create snapshot
			i := snapIndex + 1 + r.Uint64N(last-snapIndex)
			var cs *raftpb.ConfState
			if r.IntN(2) == 0 {
				cs = &raftpb.ConfState{Voters: []uint64{1, 2, r.Uint64N(5) + 3}}
			}
			ops = append(ops, logOp{create: i, cs: cs, data: fmt.Sprint("state@", i)})
			snapIndex = i
		case k < 8 && min(last, snapIndex) > offset: // compact behind the snapshot
			i := offset + 1 + r.Uint64N(min(last, snapIndex)-offset)
			ops = append(ops, logOp{compact: i})
			offset = i
		case k < 9: // a snapshot from the leader, maybe with entries after it
			i := max(snapIndex, last) + 1 + r.Uint64N(4)
			term++
			o := logOp{snap: snapshot(i, term, []uint64{1, 2, 3}, fmt.Sprint("leader@", i)), hs: hardState(term, 0, i)}
			last, offset, snapIndex = i, i, i
			if r.IntN(2) == 0 {
				o.ents = ents(i+1, i+2, term, 30)
				last = i + 2
			}
			ops = append(ops, o)
		default:
			ops = append(ops, logOp{reopen: true})
		}
	}
	return ops
}

func TestLogStoreErrors(t *testing.T) {
	tests := []struct {
		name string
		run  func(ls *LogStore) error
		want error // errors.Is target; nil means "any non-nil error"
	}{
		{"compact beyond snapshot", func(ls *LogStore) error { return ls.Compact(5) }, ErrCompactBeyondSnapshot},
		{"compact past last", func(ls *LogStore) error { return ls.Compact(11) }, raft.ErrUnavailable},
		{"entries past last", func(ls *LogStore) error { _, err := ls.Entries(2, 12, math.MaxUint64); return err }, raft.ErrUnavailable},
		{"create snapshot past last", func(ls *LogStore) error { _, err := ls.CreateSnapshot(11, nil, nil); return err }, raft.ErrUnavailable},
		{"append leaving a gap", func(ls *LogStore) error { return ls.Save(nil, ents(12, 13, 1, 1), nil, true) }, nil},
		{"non-contiguous entries", func(ls *LogStore) error {
			return ls.Save(nil, []*raftpb.Entry{ent(11, 1, ""), ent(13, 1, "")}, nil, true)
		}, nil},
		{"snapshot data too large", func(ls *LogStore) error {
			_, err := ls.CreateSnapshot(3, nil, make([]byte, DefaultMaxImageBytes+1))
			return err
		}, ErrImageTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ls := openFS(t, vfs.NewMem()).LogStore(7)
			if err := ls.Save(hardState(1, 1, 5), ents(1, 10, 1, 8), nil, true); err != nil {
				t.Fatal(err)
			}
			err := tc.run(ls)
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("error = %v; want %v", err, tc.want)
			}
			// A refused op changes nothing.
			if f, l := must(ls.FirstIndex()), must(ls.LastIndex()); f != 1 || l != 10 {
				t.Fatalf("after refused op: first, last = %d, %d; want 1, 10", f, l)
			}
		})
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestLogStoreRestart: everything the log store persists survives a close and
// reopen of the same filesystem, and groups do not see each other's data.
func TestLogStoreRestart(t *testing.T) {
	fs := vfs.NewMem()
	db := openFS(t, fs)
	ls := db.LogStore(1)
	other := db.LogStore(2)
	if err := ls.Save(hardState(4, 2, 30), ents(1, 40, 4, 64), nil, true); err != nil {
		t.Fatal(err)
	}
	if err := other.Save(hardState(9, 9, 1), ents(1, 2, 9, 8), nil, true); err != nil {
		t.Fatal(err)
	}
	cs := &raftpb.ConfState{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}}
	if _, err := ls.CreateSnapshot(20, cs, []byte("image@20")); err != nil {
		t.Fatal(err)
	}
	if err := ls.Compact(15); err != nil {
		t.Fatal(err)
	}
	mcs := &raftpb.ConfState{Voters: []uint64{1, 2, 3, 4}}
	if err := ls.SaveMembership(25, mcs, []byte(`{"4":"10.0.0.4:7000"}`)); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	ls = openFS(t, fs).LogStore(1)
	hs, ics, err := ls.InitialState()
	if err != nil || !proto.Equal(hs, hardState(4, 2, 30)) {
		t.Fatalf("hard state = %v, %v", hs, err)
	}
	// Membership at 25 is newer than the snapshot at 20.
	if !proto.Equal(ics, raftpb.EnsureConfState(mcs)) {
		t.Fatalf("initial conf state = %v; want %v", ics, mcs)
	}
	if f, l := must(ls.FirstIndex()), must(ls.LastIndex()); f != 16 || l != 40 {
		t.Fatalf("first, last = %d, %d; want 16, 40", f, l)
	}
	if term := must(ls.Term(15)); term != 4 {
		t.Fatalf("term at truncation point = %d; want 4", term)
	}
	got := must(ls.Entries(16, 41, math.MaxUint64))
	want := ents(16, 40, 4, 64)
	for i := range want {
		if !proto.Equal(got[i], want[i]) {
			t.Fatalf("entry %d = %v; want %v", i+16, got[i], want[i])
		}
	}
	snap := must(ls.Snapshot())
	if snap.GetMetadata().GetIndex() != 20 || string(snap.GetData()) != "image@20" ||
		!proto.Equal(snap.GetMetadata().GetConfState(), raftpb.EnsureConfState(cs)) {
		t.Fatalf("snapshot = %v", snap)
	}
	idx, gcs, meta, err := ls.Membership()
	if err != nil || idx != 25 || !proto.Equal(gcs, raftpb.EnsureConfState(mcs)) || string(meta) != `{"4":"10.0.0.4:7000"}` {
		t.Fatalf("membership = %d, %v, %q, %v", idx, gcs, meta, err)
	}
}

func TestMembershipFresh(t *testing.T) {
	ls := openFS(t, vfs.NewMem()).LogStore(1)
	idx, cs, meta, err := ls.Membership()
	if err != nil || idx != 0 || cs == nil || len(cs.GetVoters()) != 0 || meta != nil {
		t.Fatalf("fresh membership = %d, %v, %q, %v", idx, cs, meta, err)
	}
}

// walSyncGate parks WAL syncs while armed, signalling each one on parked.
type walSyncGate struct {
	armed   atomic.Bool
	parked  chan struct{}
	release chan struct{}
}

func (g *walSyncGate) String() string { return "wal sync gate" }

func (g *walSyncGate) MaybeError(op errorfs.Op) error {
	if !g.armed.Load() || !strings.HasSuffix(op.Path, ".log") {
		return nil
	}
	switch op.Kind {
	case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
		g.parked <- struct{}{}
		<-g.release
	}
	return nil
}

// TestReadsDoNotWaitForSaveSync: while a Save waits for its WAL sync (on
// consensus' append goroutine), raft's reads from the Ready loop answer at
// once, with the log as it was before that Save; once the Save returned
// they see it.
func TestReadsDoNotWaitForSaveSync(t *testing.T) {
	gate := &walSyncGate{parked: make(chan struct{}), release: make(chan struct{})}
	db := openFS(t, errorfs.Wrap(vfs.NewMem(), gate))
	ls := db.LogStore(1)
	if err := ls.Save(hardState(1, 1, 5), ents(1, 5, 1, 32), nil, true); err != nil {
		t.Fatal(err)
	}
	gate.armed.Store(true)
	saved := make(chan error, 1)
	go func() { saved <- ls.Save(hardState(2, 1, 5), ents(6, 8, 2, 32), nil, true) }()
	select {
	case <-gate.parked:
	case <-time.After(30 * time.Second):
		t.Fatal("the Save never reached its sync")
	}
	read := make(chan string, 1)
	go func() {
		last, _ := ls.LastIndex()
		first, _ := ls.FirstIndex()
		term, _ := ls.Term(3)
		es, err := ls.Entries(2, 5, math.MaxUint64)
		read <- fmt.Sprintf("last %d first %d term(3) %d entries %d %v", last, first, term, len(es), err)
	}()
	select {
	case got := <-read:
		if want := "last 5 first 1 term(3) 1 entries 3 <nil>"; got != want {
			t.Errorf("reads during the Save's sync: %s, want %s", got, want)
		}
	case <-time.After(30 * time.Second):
		t.Error("reads waited for the Save's sync")
	}
	gate.armed.Store(false)
	close(gate.release)
	if err := <-saved; err != nil {
		t.Fatal(err)
	}
	if last, _ := ls.LastIndex(); last != 8 {
		t.Fatalf("last index after the Save = %d, want 8", last)
	}
}
