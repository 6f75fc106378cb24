package tcptransport

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/txswitch/txswitch/consensus"
	"github.com/txswitch/txswitch/consensus/consensustest"
	txswitch "github.com/txswitch/txswitch/switch"
)

// recorder is a Handler that records what it gets.
type recorder struct {
	mu          sync.Mutex
	msgs        []*raftpb.Message
	groups      []uint64
	unreachable map[uint64]int
	snaps       map[raft.SnapshotStatus]int
	got         chan struct{}
}

func newRecorder() *recorder {
	return &recorder{unreachable: map[uint64]int{}, snaps: map[raft.SnapshotStatus]int{}, got: make(chan struct{}, 1<<16)}
}

func (r *recorder) Step(_ context.Context, group uint64, m *raftpb.Message) error {
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.groups = append(r.groups, group)
	r.mu.Unlock()
	r.got <- struct{}{}
	return nil
}

func (r *recorder) ReportUnreachable(id uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.unreachable[id]++
}

func (r *recorder) ReportSnapshot(_ uint64, s raft.SnapshotStatus) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.snaps[s]++
}

func (r *recorder) snapCount(s raft.SnapshotStatus) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.snaps[s]
}

// waitSnaps waits until rec was told of a snapshot with status.
func waitSnaps(t *testing.T, rec interface {
	snapCount(raft.SnapshotStatus) int
}, status raft.SnapshotStatus, what string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for rec.snapCount(status) == 0 {
		if time.Now().After(deadline) {
			t.Fatal(what)
		}
		time.Sleep(time.Millisecond)
	}
}

func msg(typ raftpb.MessageType, from, to, index uint64) *raftpb.Message {
	return &raftpb.Message{Type: typ.Enum(), From: new(from), To: new(to), Index: new(index)}
}

func newT(t *testing.T, id uint64, mod func(*Config)) (*Transport, *recorder) {
	t.Helper()
	rec := newRecorder()
	return startT(t, id, rec, mod), rec
}

// startT starts a transport for id delivering to h.
func startT(t *testing.T, id uint64, h consensus.Handler, mod func(*Config)) *Transport {
	t.Helper()
	cfg := Config{ID: id, Group: 9, ListenAddr: "127.0.0.1:0", BackoffMin: 5 * time.Millisecond, BackoffMax: 20 * time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	tr, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tr.Start(h)
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

func waitN(t *testing.T, r *recorder, n int) {
	t.Helper()
	for range n {
		select {
		case <-r.got:
		case <-time.After(20 * time.Second):
			t.Fatalf("timed out waiting for %d messages", n)
		}
	}
}

func TestSendDeliversInOrderWithGroup(t *testing.T) {
	a, arec := newT(t, 1, nil)
	b, brec := newT(t, 2, nil)
	a.AddPeer(2, b.Addr().String())
	snap := msg(raftpb.MsgSnap, 1, 2, 7)
	snap.Snapshot = &raftpb.Snapshot{Data: bytes.Repeat([]byte("s"), 100_000), Metadata: &raftpb.SnapshotMetadata{Index: new(uint64(7)), Term: new(uint64(1))}}
	var batch []*raftpb.Message
	for i := range 100 {
		batch = append(batch, msg(raftpb.MsgApp, 1, 2, uint64(i)))
	}
	batch = append(batch, snap)
	a.Send(batch)
	waitN(t, brec, 101)
	brec.mu.Lock()
	for i, m := range brec.msgs[:100] {
		if m.GetIndex() != uint64(i) || brec.groups[i] != 9 {
			t.Fatalf("message %d: index %d group %d", i, m.GetIndex(), brec.groups[i])
		}
	}
	if got := len(brec.msgs[100].GetSnapshot().GetData()); got != 100_000 {
		t.Fatalf("snapshot data %d bytes", got)
	}
	brec.mu.Unlock()
	waitSnaps(t, arec, raft.SnapshotFinish, "snapshot success not reported")
}

func TestFullQueueDropsAndReportsSnapshotFailure(t *testing.T) {
	// A peer nobody listens on: the peer goroutine is stuck failing, so
	// the queue fills and Send must drop instead of blocking.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	_ = ln.Close()
	a, arec := newT(t, 1, func(c *Config) { c.QueueSize = 2; c.BackoffMin = time.Second; c.BackoffMax = time.Second })
	a.AddPeer(2, dead)
	var batch []*raftpb.Message
	for i := range 50 {
		batch = append(batch, msg(raftpb.MsgApp, 1, 2, uint64(i)))
	}
	a.Send(batch)
	a.Send([]*raftpb.Message{msg(raftpb.MsgSnap, 1, 2, 1)})
	if d := a.Stats().Dropped; d < 40 {
		t.Fatalf("dropped %d of 51 queued to a dead peer with queue 2", d)
	}
	waitSnaps(t, arec, raft.SnapshotFailure, "dropped snapshot not reported as failed")
	// Unknown peers are dropped too.
	before := a.Stats().Dropped
	a.Send([]*raftpb.Message{msg(raftpb.MsgApp, 1, 99, 1)})
	if a.Stats().Dropped != before+1 {
		t.Fatal("message to unknown peer not counted as dropped")
	}
}

func TestReconnectAfterPeerRestart(t *testing.T) {
	a, arec := newT(t, 1, nil)
	b, brec := newT(t, 2, nil)
	addr := b.Addr().String()
	a.AddPeer(2, addr)
	a.Send([]*raftpb.Message{msg(raftpb.MsgHeartbeat, 1, 2, 1)})
	waitN(t, brec, 1)
	_ = b.Close()

	// Messages while b is down are lost (raft retransmits) and reported.
	deadline := time.Now().Add(20 * time.Second)
	for {
		a.Send([]*raftpb.Message{msg(raftpb.MsgHeartbeat, 1, 2, 2)})
		arec.mu.Lock()
		u := arec.unreachable[2]
		arec.mu.Unlock()
		if u > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("peer never reported unreachable")
		}
		time.Sleep(5 * time.Millisecond)
	}
	b2, b2rec := newT(t, 2, func(c *Config) { c.ListenAddr = addr })
	_ = b2
	deadline = time.Now().Add(20 * time.Second)
	for {
		a.Send([]*raftpb.Message{msg(raftpb.MsgHeartbeat, 1, 2, 3)})
		select {
		case <-b2rec.got:
			return
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("no reconnect")
		}
	}
}

// TestOversizedSnapshotFailsAlone: a snapshot too large for a frame is
// dropped and reported failed, never as delivered, and the messages around
// it still go out on the same connection.
func TestOversizedSnapshotFailsAlone(t *testing.T) {
	a, arec := newT(t, 1, func(c *Config) { c.MaxFrameSize = 4096 })
	b, brec := newT(t, 2, nil)
	a.AddPeer(2, b.Addr().String())
	snap := msg(raftpb.MsgSnap, 1, 2, 7)
	snap.Snapshot = &raftpb.Snapshot{Data: make([]byte, 10_000), Metadata: &raftpb.SnapshotMetadata{Index: new(uint64(7)), Term: new(uint64(1))}}
	a.Send([]*raftpb.Message{msg(raftpb.MsgApp, 1, 2, 1), snap})
	waitN(t, brec, 1)
	waitSnaps(t, arec, raft.SnapshotFailure, "oversized snapshot not reported failed")
	a.Send([]*raftpb.Message{msg(raftpb.MsgApp, 1, 2, 2)})
	waitN(t, brec, 1)
	if n := arec.snapCount(raft.SnapshotFinish); n != 0 {
		t.Fatalf("oversized snapshot reported delivered %d times", n)
	}
	arec.mu.Lock()
	unreachable := arec.unreachable[2]
	arec.mu.Unlock()
	if unreachable != 0 {
		t.Fatalf("peer reported unreachable %d times: the connection was dropped over one oversized message", unreachable)
	}
	// The sender counts a write after its flush, which may be after the
	// receiver has the message.
	deadline := time.Now().Add(20 * time.Second)
	for st := a.Stats(); st.Sent != 2 || st.Dropped != 1; st = a.Stats() {
		if time.Now().After(deadline) || st.Sent > 2 {
			t.Fatalf("stats %+v, want 2 sent and 1 dropped", st)
		}
		time.Sleep(time.Millisecond)
	}
}

// A snapshot dropped alone is reported failed once, also when a later
// message of its batch then fails the connection (the batch's failure
// report must not cover it again: a second report could abort the next
// snapshot to that peer).
func TestSnapshotDroppedAloneIsReportedOnce(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// A peer that accepts and never reads: a write larger than the socket
	// buffers runs into the write deadline.
	var heldMu sync.Mutex
	var held []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			heldMu.Lock()
			held = append(held, c)
			heldMu.Unlock()
		}
	}()
	defer func() {
		heldMu.Lock()
		defer heldMu.Unlock()
		for _, c := range held {
			c.Close()
		}
	}()
	a, arec := newT(t, 1, func(c *Config) { c.MaxFrameSize = 24 << 20; c.WriteTimeout = 300 * time.Millisecond })
	a.AddPeer(2, ln.Addr().String())
	snap := msg(raftpb.MsgSnap, 1, 2, 7)
	snap.Snapshot = &raftpb.Snapshot{Data: make([]byte, 25<<20), Metadata: &raftpb.SnapshotMetadata{Index: new(uint64(7)), Term: new(uint64(1))}}
	big := msg(raftpb.MsgApp, 1, 2, 8)
	big.Entries = []*raftpb.Entry{{Index: new(uint64(8)), Term: new(uint64(1)), Data: make([]byte, 20<<20)}}
	// One Send: both usually go out as one batch (the sender's goroutine
	// wakes after they are queued), which is the case this test is for;
	// split in two batches, each message is reported once all the same.
	a.Send([]*raftpb.Message{snap, big})
	deadline := time.Now().Add(20 * time.Second)
	for {
		arec.mu.Lock()
		unreachable := arec.unreachable[2]
		arec.mu.Unlock()
		if unreachable > 0 {
			break // the big write failed and its batch was reported
		}
		if time.Now().After(deadline) {
			t.Fatalf("the write to a peer that does not read never failed: unreachable %v, snaps %v, stats %+v", arec.unreachable, arec.snaps, a.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	waitSnaps(t, arec, raft.SnapshotFailure, "the dropped snapshot was not reported failed")
	time.Sleep(50 * time.Millisecond) // room for a second report, were there one
	if n := arec.snapCount(raft.SnapshotFailure); n != 1 {
		t.Fatalf("the dropped snapshot was reported failed %d times", n)
	}
}

func TestFrameLimits(t *testing.T) {
	big := msg(raftpb.MsgApp, 1, 2, 1)
	big.Entries = []*raftpb.Entry{{Data: make([]byte, 2000)}}
	if _, err := appendFrame(nil, 1, big, 1000); err == nil {
		t.Fatal("oversized frame encoded")
	}
	for _, tc := range []struct {
		name string
		raw  []byte
	}{
		{"too long", []byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 1}},
		{"too short", []byte{0, 0, 0, 4, 0, 0, 0, 1}},
		{"truncated", []byte{0, 0, 0, 20, 0, 0, 0, 0, 0, 0, 0, 1, 8}},
		{"garbage message", append([]byte{0, 0, 0, 10, 0, 0, 0, 0, 0, 0, 0, 1}, 0xff, 0xff)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, _, err := readFrame(bufio.NewReader(bytes.NewReader(tc.raw)), nil, 1<<20); err == nil {
				t.Fatal("bad frame accepted")
			}
		})
	}
	ok, err := appendFrame(nil, 42, big, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	g, m, _, err := readFrame(bufio.NewReader(bytes.NewReader(ok)), nil, 1<<20)
	if err != nil || g != 42 || len(m.GetEntries()[0].GetData()) != 2000 {
		t.Fatalf("round trip: group %d, err %v", g, err)
	}
}

func FuzzReadFrame(f *testing.F) {
	good, _ := appendFrame(nil, 3, msg(raftpb.MsgApp, 1, 2, 5), 1<<20)
	f.Add(good)
	f.Add([]byte{0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, raw []byte) {
		g, m, _, err := readFrame(bufio.NewReader(bytes.NewReader(raw)), nil, 1<<16)
		if err != nil {
			return
		}
		// Whatever decodes must re-encode to a frame that decodes the same.
		again, err := appendFrame(nil, g, m, 1<<17)
		if err != nil {
			t.Fatal(err)
		}
		g2, m2, _, err := readFrame(bufio.NewReader(bytes.NewReader(again)), nil, 1<<17)
		if err != nil || g2 != g || m2.GetType() != m.GetType() || m2.GetIndex() != m.GetIndex() {
			t.Fatalf("re-encoded frame differs: %v", err)
		}
	})
}

// A real 3-node group over TCP with wall-clock ticks.
func TestClusterOverTCP(t *testing.T) {
	const size = 3
	trs := make([]*Transport, size)
	var peers []consensus.Peer
	for i := range size {
		tr, err := New(Config{ID: uint64(i + 1), Group: 1, ListenAddr: "127.0.0.1:0", BackoffMin: 5 * time.Millisecond, BackoffMax: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = tr.Close() })
		trs[i] = tr
		peers = append(peers, consensus.Peer{ID: uint64(i + 1), RaftAddr: tr.Addr().String()})
	}
	nodes := make([]*consensus.Node, size)
	for i := range size {
		n, err := consensus.NewNode(consensus.Config{
			ID: uint64(i + 1), Group: 1, LogStore: consensus.NewMemLogStore(), StateMachine: consensustest.NewKV(),
			Transport: trs[i], Peers: peers, TickInterval: 10 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(n.Stop)
		trs[i].Start(n)
		nodes[i] = n
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i, n := range nodes {
		id := fmt.Sprintf("tcp%d", i)
		for {
			res, err := n.Propose(ctx, consensustest.Put{ID: id, Key: "k", Value: id}.Encode())
			if err == nil {
				if r := res.(consensustest.Result); r.ID != id {
					t.Fatalf("node %d got result for %s", i+1, r.ID)
				}
				break
			}
			if !errors.Is(err, txswitch.ErrNoLeader) && !errors.Is(err, txswitch.ErrDropped) {
				t.Fatalf("propose on %d: %v", i+1, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if err := nodes[0].ReadBarrier(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestFilterDropsChosenPeersAndLookupFindsLiveTransports(t *testing.T) {
	a, _ := newT(t, 1, nil)
	b, brec := newT(t, 2, nil)
	c, crec := newT(t, 3, nil)
	a.AddPeer(2, b.Addr().String())
	a.AddPeer(3, c.Addr().String())
	got, ok := Lookup(a.Addr().String())
	if !ok || got != a {
		t.Fatalf("Lookup(%s) = %p, %v; want %p", a.Addr(), got, ok, a)
	}
	got.SetFilter(func(to uint64) bool { return to == 2 })
	a.Send([]*raftpb.Message{msg(raftpb.MsgApp, 1, 2, 1), msg(raftpb.MsgApp, 1, 3, 1)})
	waitN(t, crec, 1)
	if st := a.Stats(); st.Dropped != 1 {
		t.Fatalf("dropped %d messages, want 1 (the one to the filtered peer)", st.Dropped)
	}
	// Lifting the filter lets later messages through; the dropped one is
	// gone for good (raft would retransmit).
	a.SetFilter(nil)
	a.Send([]*raftpb.Message{msg(raftpb.MsgApp, 1, 2, 2)})
	waitN(t, brec, 1)
	brec.mu.Lock()
	if len(brec.msgs) != 1 || brec.msgs[0].GetIndex() != 2 {
		t.Fatalf("peer 2 got %v, want only index 2", brec.msgs)
	}
	brec.mu.Unlock()
	addr := a.Addr().String()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := Lookup(addr); ok {
		t.Fatal("a closed transport is still found by Lookup")
	}
}

// The shaper duplicates and delays chosen messages: a duplicated one
// arrives twice, a delayed one arrives after the undelayed one sent after
// it (reordered), and lifting the shaper restores plain delivery.
func TestShaperDuplicatesAndDelays(t *testing.T) {
	a, _ := newT(t, 1, nil)
	b, brec := newT(t, 2, nil)
	a.AddPeer(2, b.Addr().String())
	a.SetShaper(func(uint64) (bool, time.Duration) { return true, 0 })
	a.Send([]*raftpb.Message{msg(raftpb.MsgApp, 1, 2, 1)})
	waitN(t, brec, 2)
	var slow atomic.Bool
	slow.Store(true)
	a.SetShaper(func(uint64) (bool, time.Duration) {
		if slow.CompareAndSwap(true, false) {
			return false, 200 * time.Millisecond
		}
		return false, 0
	})
	a.Send([]*raftpb.Message{msg(raftpb.MsgApp, 1, 2, 2)}) // delayed
	a.Send([]*raftpb.Message{msg(raftpb.MsgApp, 1, 2, 3)}) // overtakes it
	waitN(t, brec, 2)
	a.SetShaper(nil)
	a.Send([]*raftpb.Message{msg(raftpb.MsgApp, 1, 2, 4)})
	waitN(t, brec, 1)
	brec.mu.Lock()
	var got []uint64
	for _, m := range brec.msgs {
		got = append(got, m.GetIndex())
	}
	brec.mu.Unlock()
	if want := []uint64{1, 1, 3, 2, 4}; !slices.Equal(got, want) {
		t.Fatalf("peer 2 got indexes %v, want %v", got, want)
	}
	if st := a.Stats(); st.Duplicated != 1 || st.Delayed != 1 || st.Dropped != 0 {
		t.Fatalf("stats = %+v", st)
	}
}

// imageHandler is a recorder that streams images (consensus.ImageSender
// and ImageReceiver) as a node does: every MsgSnap whose data is "streamed"
// stands for image (or fails to write it after failAfter bytes).
type imageHandler struct {
	*recorder
	image     []byte
	failAfter int // > 0: the image breaks after that many bytes

	mu       sync.Mutex
	staged   [][]byte
	stagedAt []int // len(msgs) when each image was staged
	aborted  int
}

func streamedSnap(from, to, index uint64) *raftpb.Message {
	m := msg(raftpb.MsgSnap, from, to, index)
	m.Snapshot = &raftpb.Snapshot{Data: []byte("streamed"), Metadata: &raftpb.SnapshotMetadata{Index: new(index), Term: new(uint64(1))}}
	return m
}

func (h *imageHandler) OpenSnapshotImage(m *raftpb.Message) (io.WriterTo, func(), bool, error) {
	if string(m.GetSnapshot().GetData()) != "streamed" {
		return nil, nil, false, nil
	}
	return imageWriter{h.image, h.failAfter}, func() {}, true, nil
}

type imageWriter struct {
	data      []byte
	failAfter int
}

func (w imageWriter) WriteTo(dst io.Writer) (int64, error) {
	data := w.data
	if w.failAfter > 0 {
		data = data[:w.failAfter]
	}
	var n int64
	for len(data) > 0 {
		k := min(len(data), 100_000)
		if _, err := dst.Write(data[:k]); err != nil {
			return n, err
		}
		n += int64(k)
		data = data[k:]
	}
	if w.failAfter > 0 {
		return n, errors.New("image source failed")
	}
	return n, nil
}

func (h *imageHandler) StageSnapshotImage(m *raftpb.Message) (txswitch.ImageSink, bool, error) {
	if string(m.GetSnapshot().GetData()) != "streamed" {
		return nil, false, nil
	}
	return &testSink{h: h}, true, nil
}

type testSink struct {
	h   *imageHandler
	buf bytes.Buffer
}

func (s *testSink) Write(p []byte) (int, error) { return s.buf.Write(p) }

func (s *testSink) Commit() (int64, error) {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	s.h.recorder.mu.Lock()
	s.h.stagedAt = append(s.h.stagedAt, len(s.h.recorder.msgs))
	s.h.recorder.mu.Unlock()
	s.h.staged = append(s.h.staged, bytes.Clone(s.buf.Bytes()))
	return int64(s.buf.Len()), nil
}

func (s *testSink) Abort() {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	s.h.aborted++
}

func newImageT(t *testing.T, id uint64, h *imageHandler, mod func(*Config)) *Transport {
	t.Helper()
	h.recorder = newRecorder()
	return startT(t, id, h, mod)
}

// TestStreamedSnapshotImage: a streamed snapshot's image follows its
// MsgSnap in chunks, whatever the frame limit; the receiver stages it whole
// before the MsgSnap reaches raft, and the connection goes on after it. An
// image whose source fails midway is discarded in good order.
func TestStreamedSnapshotImage(t *testing.T) {
	image := make([]byte, 3*imageChunk+12345)
	for i := range image {
		image[i] = byte(i * 7)
	}
	src := &imageHandler{image: image}
	dst := &imageHandler{}
	// Frames of 4 KB: the image is 3 MB and goes anyway.
	a := newImageT(t, 1, src, func(c *Config) { c.MaxFrameSize = 4096 })
	b := newImageT(t, 2, dst, nil)
	a.AddPeer(2, b.Addr().String())
	a.Send([]*raftpb.Message{msg(raftpb.MsgApp, 1, 2, 1), streamedSnap(1, 2, 7), msg(raftpb.MsgApp, 1, 2, 2)})
	waitN(t, dst.recorder, 3)
	dst.mu.Lock()
	if len(dst.staged) != 1 || !bytes.Equal(dst.staged[0], image) || dst.stagedAt[0] != 1 {
		t.Fatalf("staged %d images (first %d bytes, staged after %v messages), want the %d-byte image staged after 1", len(dst.staged), len(dst.staged[0]), dst.stagedAt, len(image))
	}
	dst.mu.Unlock()
	waitSnaps(t, src, raft.SnapshotFinish, "streamed snapshot not reported delivered")

	// The source breaks after 1.5 chunks: the receiver aborts, raft never
	// sees the MsgSnap, the sender reports it failed, and the next message
	// arrives on the same connection.
	src.failAfter = imageChunk + imageChunk/2
	a.Send([]*raftpb.Message{streamedSnap(1, 2, 8), msg(raftpb.MsgApp, 1, 2, 3)})
	waitN(t, dst.recorder, 1)
	dst.recorder.mu.Lock()
	last := dst.recorder.msgs[len(dst.recorder.msgs)-1]
	n := len(dst.recorder.msgs)
	dst.recorder.mu.Unlock()
	if last.GetType() != raftpb.MsgApp || last.GetIndex() != 3 || n != 4 {
		t.Fatalf("after an aborted image got %d messages, last %v %d", n, last.GetType(), last.GetIndex())
	}
	dst.mu.Lock()
	aborted, staged := dst.aborted, len(dst.staged)
	dst.mu.Unlock()
	if aborted != 1 || staged != 1 {
		t.Fatalf("aborted %d, staged %d; want 1 and 1", aborted, staged)
	}
	waitSnaps(t, src, raft.SnapshotFailure, "aborted snapshot not reported failed")
	src.recorder.mu.Lock()
	unreachable := src.recorder.unreachable[2]
	src.recorder.mu.Unlock()
	if unreachable != 0 {
		t.Fatalf("peer reported unreachable %d times", unreachable)
	}
}
