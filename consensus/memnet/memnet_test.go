package memnet

import (
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"sync"
	"testing"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	txswitch "github.com/txswitch/txswitch/switch"
)

type sink struct {
	mu          sync.Mutex
	got         []uint64 // message indexes in delivery order
	groups      []uint64
	unreachable int
	snaps       map[raft.SnapshotStatus]int
	refuse      bool
}

func (s *sink) Step(_ context.Context, group uint64, m *raftpb.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refuse {
		return errors.New("stopped")
	}
	s.got = append(s.got, m.GetIndex())
	s.groups = append(s.groups, group)
	return nil
}
func (s *sink) ReportUnreachable(uint64) { s.mu.Lock(); s.unreachable++; s.mu.Unlock() }
func (s *sink) ReportSnapshot(_ uint64, st raft.SnapshotStatus) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.snaps == nil {
		s.snaps = map[raft.SnapshotStatus]int{}
	}
	s.snaps[st]++
}

func msgs(from, to uint64, n int) []*raftpb.Message {
	var ms []*raftpb.Message
	for i := range n {
		ms = append(ms, &raftpb.Message{Type: raftpb.MsgApp.Enum(), From: new(from), To: new(to), Index: new(uint64(i))})
	}
	return ms
}

func setup(seed int64) (*Network, map[uint64]*sink) {
	n := New(seed)
	s := map[uint64]*sink{}
	for id := uint64(1); id <= 3; id++ {
		s[id] = &sink{}
		n.Attach(id, s[id])
	}
	return n, s
}

func TestPartitions(t *testing.T) {
	for _, tc := range []struct {
		name      string
		apply     func(n *Network)
		delivered map[[2]uint64]bool // (from,to) → delivered?
	}{
		{"healthy", func(*Network) {}, map[[2]uint64]bool{{1, 2}: true, {2, 1}: true, {2, 3}: true}},
		{"majority/minority", func(n *Network) { n.Partition([]uint64{1}, []uint64{2, 3}) },
			map[[2]uint64]bool{{1, 2}: false, {2, 1}: false, {2, 3}: true, {3, 2}: true}},
		{"isolate", func(n *Network) { n.Isolate(3, []uint64{1, 2, 3}) },
			map[[2]uint64]bool{{3, 1}: false, {1, 3}: false, {1, 2}: true}},
		{"one way", func(n *Network) { n.BlockOneWay(1, 2) },
			map[[2]uint64]bool{{1, 2}: false, {2, 1}: true}},
		{"healed", func(n *Network) { n.Partition([]uint64{1}, []uint64{2, 3}); n.Heal() },
			map[[2]uint64]bool{{1, 2}: true, {2, 1}: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, s := setup(1)
			tc.apply(n)
			for link, want := range tc.delivered {
				before := len(s[link[1]].got)
				n.Endpoint(link[0], 5).Send(msgs(link[0], link[1], 1))
				n.DeliverDue()
				if got := len(s[link[1]].got) > before; got != want {
					t.Fatalf("link %v delivered = %v, want %v", link, got, want)
				}
				if !want && s[link[0]].unreachable == 0 {
					t.Fatalf("sender of blocked link %v not told", link)
				}
			}
		})
	}
}

func TestDelayOrderAndGroup(t *testing.T) {
	n, s := setup(1)
	n.SetFaults(1, 2, Faults{MinDelay: 2, MaxDelay: 2})
	n.Endpoint(1, 5).Send(msgs(1, 2, 3))
	if n.DeliverDue() != 0 {
		t.Fatal("delayed message delivered early")
	}
	n.Tick()
	n.Tick()
	if got := n.DeliverDue(); got != 3 {
		t.Fatalf("delivered %d after the delay", got)
	}
	if !slices.Equal(s[2].got, []uint64{0, 1, 2}) || s[2].groups[0] != 5 {
		t.Fatalf("order %v groups %v", s[2].got, s[2].groups)
	}
}

// Same seed, same sends → same drops and duplicates.
func TestFaultsAreDeterministicPerSeed(t *testing.T) {
	run := func(seed int64) []uint64 {
		n, s := setup(seed)
		n.SetAllFaults(Faults{DropRate: 0.3, DuplicateRate: 0.2, MaxDelay: 3})
		for range 10 {
			n.Endpoint(1, 1).Send(msgs(1, 2, 20))
			n.Tick()
			n.DeliverDue()
		}
		for range 5 {
			n.Tick()
			n.DeliverDue()
		}
		return s[2].got
	}
	a, b, c := run(7), run(7), run(8)
	if !slices.Equal(a, b) {
		t.Fatal("same seed gave different deliveries")
	}
	if slices.Equal(a, c) {
		t.Fatal("different seeds gave identical deliveries")
	}
	if len(a) == 200 {
		t.Fatal("no fault was injected")
	}
}

func TestSnapshotReports(t *testing.T) {
	n, s := setup(1)
	snap := &raftpb.Message{Type: raftpb.MsgSnap.Enum(), From: new(uint64(1)), To: new(uint64(2))}
	n.Endpoint(1, 1).Send([]*raftpb.Message{snap})
	n.DeliverDue()
	s[2].refuse = true
	n.Endpoint(1, 1).Send([]*raftpb.Message{snap})
	n.DeliverDue()
	if s[1].snaps[raft.SnapshotFinish] != 1 || s[1].snaps[raft.SnapshotFailure] != 1 {
		t.Fatalf("snapshot reports = %v", s[1].snaps)
	}
	// Lost on the way (the link drops everything): reported failed too,
	// or the leader would wait for it forever.
	n.SetFaults(1, 3, Faults{DropRate: 1})
	n.Endpoint(1, 1).Send([]*raftpb.Message{{Type: raftpb.MsgSnap.Enum(), From: new(uint64(1)), To: new(uint64(3))}})
	if got := s[1].snaps[raft.SnapshotFailure]; got != 1 {
		t.Fatalf("reported during the send, from the sender's own loop: %d failures", got)
	}
	n.DeliverDue()
	if s[1].snaps[raft.SnapshotFailure] != 2 || s[3].got != nil {
		t.Fatalf("a dropped snapshot: reports %v, delivered %v", s[1].snaps, s[3].got)
	}
}

// imageSink is a sink that streams images: every MsgSnap it sends or
// receives stands for image, staged by the receiver before the message.
type imageSink struct {
	sink
	image   []byte
	staged  [][]byte
	aborted int
}

func (s *imageSink) OpenSnapshotImage(*raftpb.Message) (io.WriterTo, func(), bool, error) {
	return bytes.NewReader(s.image), func() {}, true, nil
}

func (s *imageSink) StageSnapshotImage(*raftpb.Message) (txswitch.ImageSink, bool, error) {
	return &stagingBuf{s: s}, true, nil
}

type stagingBuf struct {
	s *imageSink
	bytes.Buffer
}

func (b *stagingBuf) Commit() (int64, error) {
	b.s.staged = append(b.s.staged, bytes.Clone(b.Bytes()))
	return int64(b.Len()), nil
}
func (b *stagingBuf) Abort() { b.s.aborted++ }

// TestStreamedSnapshots: a streamed snapshot's image is staged by the
// receiver before the MsgSnap reaches it; when the sender is gone by the
// time the message is delivered (a leader removed and stopped right after
// sending), the delivery fails: the receiver never gets a MsgSnap without
// its image.
func TestStreamedSnapshots(t *testing.T) {
	n := New(1)
	a, b := &imageSink{image: []byte("the state")}, &imageSink{}
	n.Attach(1, a)
	n.Attach(2, b)
	snap := &raftpb.Message{Type: raftpb.MsgSnap.Enum(), From: new(uint64(1)), To: new(uint64(2)), Index: new(uint64(7))}
	n.Endpoint(1, 1).Send([]*raftpb.Message{snap})
	n.DeliverDue()
	if len(b.staged) != 1 || string(b.staged[0]) != "the state" || !slices.Equal(b.got, []uint64{7}) {
		t.Fatalf("staged %q, stepped %v", b.staged, b.got)
	}
	n.Endpoint(1, 1).Send([]*raftpb.Message{snap})
	n.Detach(1)
	n.DeliverDue()
	if len(b.got) != 1 || b.aborted != 1 || len(b.staged) != 1 {
		t.Fatalf("sender gone: stepped %v, aborted %d, staged %d", b.got, b.aborted, len(b.staged))
	}
}
