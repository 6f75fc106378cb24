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
)

// recordingTransport records what was sent, in order.
type recordingTransport struct{ sent []*raftpb.Message }

func (r *recordingTransport) Send(msgs []*raftpb.Message) { r.sent = append(r.sent, msgs...) }
func (r *recordingTransport) AddPeer(uint64, string)      {}
func (r *recordingTransport) RemovePeer(uint64)           {}

func msg(t raftpb.MessageType) *raftpb.Message {
	return &raftpb.Message{Type: t.Enum(), To: proto.Uint64(2), From: proto.Uint64(1)}
}

func TestSendEarlyOnlyAppendsAndHeartbeats(t *testing.T) {
	for _, tc := range []struct {
		name        string
		in          []raftpb.MessageType
		early, rest []raftpb.MessageType
	}{
		{"appends and heartbeats leave", []raftpb.MessageType{raftpb.MsgApp, raftpb.MsgHeartbeat, raftpb.MsgApp},
			[]raftpb.MessageType{raftpb.MsgApp, raftpb.MsgHeartbeat, raftpb.MsgApp}, nil},
		// A node that was a follower earlier in the same Ready may still
		// hold acknowledgements and votes: they wait for the Save.
		{"acks and votes wait", []raftpb.MessageType{raftpb.MsgAppResp, raftpb.MsgApp, raftpb.MsgVoteResp, raftpb.MsgPreVoteResp},
			[]raftpb.MessageType{raftpb.MsgApp}, []raftpb.MessageType{raftpb.MsgAppResp, raftpb.MsgVoteResp, raftpb.MsgPreVoteResp}},
		{"everything else waits", []raftpb.MessageType{raftpb.MsgSnap, raftpb.MsgReadIndexResp, raftpb.MsgTimeoutNow, raftpb.MsgVote},
			nil, []raftpb.MessageType{raftpb.MsgSnap, raftpb.MsgReadIndexResp, raftpb.MsgTimeoutNow, raftpb.MsgVote}},
		{"nothing", nil, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := &recordingTransport{}
			n := &Node{tr: tr}
			var in []*raftpb.Message
			for _, ty := range tc.in {
				in = append(in, msg(ty))
			}
			rest := n.sendEarly(in)
			if got := types(tr.sent); !slices.Equal(got, tc.early) {
				t.Errorf("sent early %v, want %v", got, tc.early)
			}
			if got := types(rest); !slices.Equal(got, tc.rest) {
				t.Errorf("kept %v, want %v", got, tc.rest)
			}
		})
	}
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

func TestDurablePrefix(t *testing.T) {
	conf := ents(5, 6, 7)
	conf[1].Type = raftpb.EntryConfChangeV2.Enum()
	for _, tc := range []struct {
		name      string
		committed []*raftpb.Entry
		rd        raft.Ready
		want      int
	}{
		{"no new entries: all durable", ents(5, 6, 7), raft.Ready{}, 3},
		{"committed before the appended ones", ents(5, 6, 7), raft.Ready{Entries: ents(8, 9)}, 3},
		{"committed entries in this very Ready wait", ents(5, 6, 7, 8), raft.Ready{Entries: ents(7, 8, 9)}, 2},
		{"all in this Ready", ents(7, 8), raft.Ready{Entries: ents(7, 8)}, 0},
		{"stops at a conf change", conf, raft.Ready{}, 1},
		{"nothing with a snapshot", ents(5, 6), raft.Ready{Snapshot: snapshotFor(4, 1, []uint64{1}, nil)}, 0},
		{"nothing committed", nil, raft.Ready{Entries: ents(3)}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := durablePrefix(tc.committed, tc.rd); got != tc.want {
				t.Fatalf("durablePrefix = %d, want %d", got, tc.want)
			}
		})
	}
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
		wantSnap  uint64 // stored snapshot index after (0: none)
		wantImage uint64 // index of the image kept for followers (0: none)
		wantErr   bool
	}{
		{"recorded and compacted", snapResult{epoch: 3, index: 40}, true, 40, 0, false},
		{"image recorded and kept on a leader", snapResult{epoch: 3, index: 40, hasImage: true, image: []byte("img")}, true, 40, 40, false},
		{"image recorded but dropped on a follower", snapResult{epoch: 3, index: 40, hasImage: true, image: []byte("img")}, false, 40, 0, false},
		{"image not newer than the last record still kept", snapResult{epoch: 3, index: 10, hasImage: true, image: []byte("img")}, true, 0, 10, false},
		{"older membership epoch discarded", snapResult{epoch: 2, index: 40, hasImage: true, image: []byte("img")}, true, 0, 0, false},
		{"not newer than the last snapshot discarded", snapResult{epoch: 3, index: 10}, true, 0, 0, false},
		{"past the applied index is a bug", snapResult{epoch: 3, index: 51}, true, 0, 0, true},
		{"build error stops the node", snapResult{epoch: 3, err: errDisk}, true, 0, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := NewMemLogStore()
			var log []*raftpb.Entry
			for i := uint64(1); i <= 60; i++ {
				log = append(log, ents(i)...)
			}
			if err := store.Save(hardState(1, 1, 60), log, nil, true); err != nil {
				t.Fatal(err)
			}
			n := &Node{
				cfg:       Config{SnapshotKeep: 5},
				log:       zap.NewNop(),
				store:     store,
				applied:   50,
				snapIndex: 10,
				snapEpoch: 3,
				snapBusy:  true,
				leading:   tc.leading,
				confState: &raftpb.ConfState{Voters: []uint64{1}},
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
			store := NewMemLogStore()
			var log []*raftpb.Entry
			for i := uint64(1); i <= 60; i++ {
				log = append(log, ents(i)...)
			}
			if err := store.Save(hardState(1, 1, 60), log, nil, true); err != nil {
				t.Fatal(err)
			}
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
