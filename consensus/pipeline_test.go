package consensus

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/txswitch/txswitch/consensus/consensustest"
)

// recordingTransport records what was sent, in order.
type recordingTransport struct{ sent []*raftpb.Message }

func (r *recordingTransport) Send(msgs []*raftpb.Message) { r.sent = append(r.sent, msgs...) }
func (r *recordingTransport) AddPeer(uint64, string)      {}
func (r *recordingTransport) RemovePeer(uint64)           {}

func msg(t raftpb.MessageType) *raftpb.Message {
	return &raftpb.Message{Type: t.Enum(), To: proto.Uint64(2), From: proto.Uint64(1)}
}

func types(ms []*raftpb.Message) []raftpb.MessageType {
	var out []raftpb.MessageType
	for _, m := range ms {
		out = append(out, m.GetType())
	}
	return out
}

func ents(idx ...uint64) []*raftpb.Entry {
	var out []*raftpb.Entry
	for _, i := range idx {
		out = append(out, &raftpb.Entry{Index: proto.Uint64(i), Term: proto.Uint64(1), Type: raftpb.EntryNormal.Enum()})
	}
	return out
}

func appendMsg(hs *raftpb.HardState, e []*raftpb.Entry, resps ...*raftpb.Message) *raftpb.Message {
	m := &raftpb.Message{Type: raftpb.MsgStorageAppend.Enum(), To: proto.Uint64(raft.LocalAppendThread), Entries: e, Responses: resps}
	if hs != nil {
		m.Term, m.Vote, m.Commit = proto.Uint64(hs.GetTerm()), proto.Uint64(hs.GetVote()), proto.Uint64(hs.GetCommit())
	}
	return m
}

func indexes(es []*raftpb.Entry) []uint64 {
	var out []uint64
	for _, e := range es {
		out = append(out, e.GetIndex())
	}
	return out
}

// TestMergeAppends: appends queued together are saved as one, with the
// effect of saving them in order, synced unless only the commit changed.
func TestMergeAppends(t *testing.T) {
	last := hardState(2, 1, 4)
	snapMsg := appendMsg(nil, nil)
	snapMsg.Snapshot = snapshotFor(9, 2, []uint64{1}, []byte("img"))
	for _, tc := range []struct {
		name     string
		batch    []*raftpb.Message
		wantHS   *raftpb.HardState
		wantEnts []uint64
		wantSnap uint64
		wantSync bool
		wantErr  bool
	}{
		{"one append", []*raftpb.Message{appendMsg(hardState(2, 1, 5), ents(5, 6))}, hardState(2, 1, 5), []uint64{5, 6}, 0, true, false},
		{"consecutive runs concatenate, last hard state wins",
			[]*raftpb.Message{appendMsg(hardState(2, 1, 5), ents(5, 6)), appendMsg(nil, ents(7)), appendMsg(hardState(2, 1, 6), nil)},
			hardState(2, 1, 6), []uint64{5, 6, 7}, 0, true, false},
		{"a later run replaces the suffix it overlaps",
			[]*raftpb.Message{appendMsg(nil, ents(5, 6, 7)), appendMsg(nil, ents(6))}, nil, []uint64{5, 6}, 0, true, false},
		{"a later run replaces everything", []*raftpb.Message{appendMsg(nil, ents(5, 6)), appendMsg(nil, ents(4, 5))}, nil, []uint64{4, 5}, 0, true, false},
		{"commit only: no sync", []*raftpb.Message{appendMsg(hardState(2, 1, 5), nil), appendMsg(hardState(2, 1, 6), nil)}, hardState(2, 1, 6), nil, 0, false, false},
		{"a vote syncs", []*raftpb.Message{appendMsg(hardState(3, 2, 4), nil)}, hardState(3, 2, 4), nil, 0, true, false},
		{"a term syncs", []*raftpb.Message{appendMsg(hardState(3, 0, 4), nil)}, hardState(3, 0, 4), nil, 0, true, false},
		{"responses only: nothing to write", []*raftpb.Message{appendMsg(nil, nil, msg(raftpb.MsgAppResp))}, nil, nil, 0, false, false},
		{"a snapshot alone", []*raftpb.Message{snapMsg}, nil, nil, 9, true, false},
		{"a snapshot after other appends is refused", []*raftpb.Message{appendMsg(nil, ents(5)), snapMsg}, nil, nil, 0, false, true},
		{"a gap is refused", []*raftpb.Message{appendMsg(nil, ents(5)), appendMsg(nil, ents(7))}, nil, nil, 0, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var before [][]uint64
			for _, m := range tc.batch {
				before = append(before, indexes(m.GetEntries()))
			}
			hs, es, snap, sync, err := mergeAppends(tc.batch, last)
			if (err != nil) != tc.wantErr {
				t.Fatalf("mergeAppends: %v, want error %t", err, tc.wantErr)
			}
			if tc.wantErr {
				return
			}
			if !proto.Equal(hs, tc.wantHS) || !slices.Equal(indexes(es), tc.wantEnts) ||
				snap.GetMetadata().GetIndex() != tc.wantSnap || sync != tc.wantSync {
				t.Fatalf("got hs %v ents %v snap %d sync %t; want hs %v ents %v snap %d sync %t",
					hs, indexes(es), snap.GetMetadata().GetIndex(), sync, tc.wantHS, tc.wantEnts, tc.wantSnap, tc.wantSync)
			}
			for i, m := range tc.batch {
				if got := indexes(m.GetEntries()); !slices.Equal(got, before[i]) {
					t.Fatalf("raft's entries of append %d changed to %v", i, got)
				}
			}
		})
	}
}

// TestPersistSendsResponsesOnlyAfterSave: what depends on an append leaves
// only once its Save returned, local responses go back to the loop, and a
// failed Save sends and returns nothing.
func TestPersistSendsResponsesOnlyAfterSave(t *testing.T) {
	errDisk := errors.New("disk on fire")
	self := &raftpb.Message{Type: raftpb.MsgStorageAppendResp.Enum(), To: proto.Uint64(1)}
	for _, tc := range []struct {
		name      string
		fail      error
		wantSent  []raftpb.MessageType
		wantLocal int
	}{
		{"saved: responses delivered", nil, []raftpb.MessageType{raftpb.MsgAppResp, raftpb.MsgVoteResp}, 1},
		{"failed: nothing delivered", errDisk, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := NewMemLogStore()
			tr := &savesBeforeSends{store: store}
			n := &Node{cfg: Config{ID: 1}, store: store, tr: tr}
			store.FailWith(tc.fail)
			d, _ := n.persist([]*raftpb.Message{
				appendMsg(hardState(2, 2, 0), ents(1), msg(raftpb.MsgAppResp)),
				appendMsg(nil, ents(2), msg(raftpb.MsgVoteResp), self),
			}, hardState(1, 0, 0))
			if !errors.Is(d.err, tc.fail) || d.count != 2 || len(d.local) != tc.wantLocal {
				t.Fatalf("done %+v, want error %v, 2 appends, %d local", d, tc.fail, tc.wantLocal)
			}
			if got := types(tr.sent); !slices.Equal(got, tc.wantSent) {
				t.Fatalf("sent %v, want %v", got, tc.wantSent)
			}
			if tr.early {
				t.Fatal("a response left before the entries were saved")
			}
			if tc.fail == nil && tr.syncsAtSend != 1 {
				t.Fatalf("%d synced saves before the responses, want 1", tr.syncsAtSend)
			}
		})
	}
}

// savesBeforeSends records what is sent and whether the store already
// held the appended entries at that moment.
type savesBeforeSends struct {
	recordingTransport
	store       *MemLogStore
	early       bool
	syncsAtSend int
}

func (s *savesBeforeSends) Send(msgs []*raftpb.Message) {
	if last, _ := s.store.LastIndex(); last < 2 {
		s.early = true
	}
	s.syncsAtSend = s.store.Syncs()
	s.recordingTransport.Send(msgs)
}

// storeWithLog returns a MemLogStore holding entries 1..last at term 1,
// all committed.
func storeWithLog(t *testing.T, last uint64) *MemLogStore {
	t.Helper()
	store := NewMemLogStore()
	var log []*raftpb.Entry
	for i := uint64(1); i <= last; i++ {
		log = append(log, ents(i)...)
	}
	if err := store.Save(hardState(1, 1, last), log, nil, true); err != nil {
		t.Fatal(err)
	}
	return store
}

// TestFinishSnapshot checks what the loop does with a background build:
// it records (metadata only) and compacts behind a result of the current
// membership epoch newer than the last snapshot and not past the applied
// index, keeps an image for followers only on a leader, and stops on a
// failed build.
func TestFinishSnapshot(t *testing.T) {
	errDisk := errors.New("disk on fire")
	for _, tc := range []struct {
		name      string
		res       snapResult
		leading   bool
		pending   bool   // a received snapshot is being persisted
		wantSnap  uint64 // stored snapshot index after (0: none)
		wantImage uint64 // index of the image kept for followers (0: none)
		wantErr   bool
	}{
		{"recorded and compacted", snapResult{epoch: 3, index: 40}, true, false, 40, 0, false},
		{"image recorded and kept on a leader", snapResult{epoch: 3, index: 40, hasImage: true, image: []byte("img")}, true, false, 40, 40, false},
		{"image recorded but dropped on a follower", snapResult{epoch: 3, index: 40, hasImage: true, image: []byte("img")}, false, false, 40, 0, false},
		{"image not newer than the last record still kept", snapResult{epoch: 3, index: 10, hasImage: true, image: []byte("img")}, true, false, 0, 10, false},
		{"older membership epoch discarded", snapResult{epoch: 2, index: 40, hasImage: true, image: []byte("img")}, true, false, 0, 0, false},
		{"not newer than the last snapshot discarded", snapResult{epoch: 3, index: 10}, true, false, 0, 0, false},
		{"past the applied index is a bug", snapResult{epoch: 3, index: 51}, true, false, 0, 0, true},
		{"build error stops the node", snapResult{epoch: 3, err: errDisk}, true, false, 0, 0, true},
		{"received snapshot pending: discarded", snapResult{epoch: 3, index: 40, hasImage: true, image: []byte("img")}, true, true, 0, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := storeWithLog(t, 60)
			n := &Node{
				cfg:         Config{SnapshotKeep: 5},
				log:         zap.NewNop(),
				store:       store,
				applied:     50,
				snapIndex:   10,
				snapEpoch:   3,
				snapBusy:    true,
				leading:     tc.leading,
				snapPending: tc.pending,
				confState:   &raftpb.ConfState{Voters: []uint64{1}},
			}
			err := n.finishSnapshot(tc.res)
			if (err != nil) != tc.wantErr {
				t.Fatalf("finishSnapshot: %v, want error %t", err, tc.wantErr)
			}
			if n.snapBusy {
				t.Fatal("still marked busy")
			}
			snap, _ := store.Snapshot()
			if got := snap.GetMetadata().GetIndex(); got != tc.wantSnap {
				t.Fatalf("stored snapshot %d, want %d", got, tc.wantSnap)
			}
			if tc.wantSnap != 0 {
				if _, _, hasImage, err := decodeSnapshotData(snap.GetData()); err != nil || hasImage {
					t.Fatalf("stored snapshot has an image (%t) or is corrupt: %v", hasImage, err)
				}
				first, _ := store.FirstIndex()
				if first != tc.wantSnap-n.cfg.SnapshotKeep+1 {
					t.Fatalf("first index %d after compaction, want %d", first, tc.wantSnap-n.cfg.SnapshotKeep+1)
				}
			}
			if got := n.sendSnap.GetMetadata().GetIndex(); got != tc.wantImage {
				t.Fatalf("image for followers at %d, want %d", got, tc.wantImage)
			}
			if tc.wantImage != 0 {
				_, img, hasImage, err := decodeSnapshotData(n.sendSnap.GetData())
				if err != nil || !hasImage || string(img) != "img" || n.sendSnap.GetMetadata().GetTerm() != 1 {
					t.Fatalf("image for followers: %q %t term %d %v", img, hasImage, n.sendSnap.GetMetadata().GetTerm(), err)
				}
			}
		})
	}
}

// TestMaybeSnapshotStarts checks when a background build starts: when due
// or asked for, one at a time, never while a received snapshot is pending.
func TestMaybeSnapshotStarts(t *testing.T) {
	for _, tc := range []struct {
		name                   string
		applied                uint64
		want, busy, pending    bool
		wantBuild, wantPending bool
	}{
		{"not due", 19, false, false, false, false, false},
		{"due", 20, false, false, false, true, false},
		{"asked for an image", 5, true, false, false, true, false},
		{"one at a time", 20, true, true, false, false, true},
		{"not while a received snapshot is pending", 20, true, false, true, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sm := consensustest.NewKV()
			n := &Node{cfg: Config{SnapshotEvery: 20}, sm: sm, applied: tc.applied,
				snapWant: tc.want, snapBusy: tc.busy, snapPending: tc.pending, snapc: make(chan snapResult, 1)}
			n.maybeSnapshot()
			n.snapWG.Wait()
			started := len(n.snapc) == 1
			if started != tc.wantBuild || n.snapWant != tc.wantPending {
				t.Fatalf("build started %t (want %t), image still wanted %t (want %t)", started, tc.wantBuild, n.snapWant, tc.wantPending)
			}
			if started {
				if r := <-n.snapc; r.hasImage != tc.want {
					t.Fatalf("built an image %t, want %t (the KV can sync without one)", r.hasImage, tc.want)
				}
			}
		})
	}
}

// TestSnapshotForFollower checks what raft gets from Storage.Snapshot: the
// image kept for followers while the log continues right after it,
// otherwise ErrSnapshotTemporarilyUnavailable (the only error raft does
// not panic on) and a request for a new build.
func TestSnapshotForFollower(t *testing.T) {
	for _, tc := range []struct {
		name      string
		image     uint64 // index of the kept image (0: none)
		compactTo uint64
		wantImage bool
	}{
		{"none kept", 0, 20, false},
		{"kept and the log follows it", 30, 20, true},
		{"kept right before the first entry", 20, 20, true},
		{"log compacted past it", 15, 20, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := storeWithLog(t, 60)
			if _, err := store.CreateSnapshot(tc.compactTo, &raftpb.ConfState{Voters: []uint64{1}}, nil); err != nil {
				t.Fatal(err)
			}
			if err := store.Compact(tc.compactTo); err != nil {
				t.Fatal(err)
			}
			n := &Node{log: zap.NewNop(), store: store}
			if tc.image != 0 {
				n.sendSnap = snapshotFor(tc.image, 1, []uint64{1}, []byte("img"))
			}
			snap, err := raftStorage{store, n}.Snapshot()
			if tc.wantImage {
				if err != nil || snap.GetMetadata().GetIndex() != tc.image || n.snapWant {
					t.Fatalf("got %v, %v, build requested %t; want the image at %d", snap.GetMetadata(), err, n.snapWant, tc.image)
				}
				return
			}
			if err != raft.ErrSnapshotTemporarilyUnavailable || !n.snapWant || n.sendSnap != nil {
				t.Fatalf("got %v, %v, build requested %t, kept %v; want a build request", snap.GetMetadata(), err, n.snapWant, n.sendSnap.GetMetadata())
			}
		})
	}
}

// TestBackgroundSnapshotsKeepLogBounded runs a group with frequent
// snapshots built off the loop and checks that they are taken, the log is
// compacted behind them, and every replica holds the same state.
func TestBackgroundSnapshotsKeepLogBounded(t *testing.T) {
	c := newCluster(t, 3, 21, func(cfg *Config) {
		cfg.SnapshotEvery = 16
		cfg.SnapshotKeep = 4
	})
	lead := c.leader()
	for i := range 100 {
		c.mustPropose(lead, fmt.Sprintf("b%d", i), "k", fmt.Sprint(i))
	}
	c.assertConverged()
	for _, id := range []uint64{1, 2, 3} {
		m := c.member(id)
		if m.store.Snapshots() == 0 {
			t.Fatalf("node %d took no snapshot", id)
		}
		first, _ := m.store.FirstIndex()
		if first <= 1 {
			t.Fatalf("node %d never compacted its log", id)
		}
	}
}

func ack(to, term, index uint64, reject bool) *raftpb.Message {
	return &raftpb.Message{Type: raftpb.MsgAppResp.Enum(), To: proto.Uint64(to), Term: proto.Uint64(term),
		Index: proto.Uint64(index), Reject: proto.Bool(reject)}
}

// TestCoalesceAcks: of the plain acknowledgements to one peer in one term
// only the last is sent when it covers the earlier ones; rejections and
// everything else are kept, in order.
func TestCoalesceAcks(t *testing.T) {
	vote := msg(raftpb.MsgVoteResp)
	for _, tc := range []struct {
		name string
		in   []*raftpb.Message
		want []int // positions in `in` that are kept
	}{
		{"nothing", nil, nil},
		{"one ack", []*raftpb.Message{ack(2, 3, 10, false)}, []int{0}},
		{"later ack covers earlier ones", []*raftpb.Message{ack(2, 3, 10, false), ack(2, 3, 12, false), ack(2, 3, 15, false)}, []int{2}},
		{"other messages kept in order", []*raftpb.Message{ack(2, 3, 10, false), vote, ack(2, 3, 15, false)}, []int{1, 2}},
		{"rejections kept", []*raftpb.Message{ack(2, 3, 10, true), ack(2, 3, 9, false), ack(2, 3, 15, false)}, []int{0, 2}},
		{"a later ack with a lower index covers nothing", []*raftpb.Message{ack(2, 3, 15, false), ack(2, 3, 12, false)}, []int{0, 1}},
		{"per peer", []*raftpb.Message{ack(2, 3, 10, false), ack(3, 3, 11, false), ack(2, 3, 12, false)}, []int{1, 2}},
		{"per term", []*raftpb.Message{ack(2, 3, 10, false), ack(2, 4, 12, false)}, []int{0, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := coalesceAcks(slices.Clone(tc.in))
			var want []*raftpb.Message
			for _, i := range tc.want {
				want = append(want, tc.in[i])
			}
			if !slices.Equal(got, want) {
				t.Fatalf("kept %v, want %v", got, want)
			}
		})
	}
}
