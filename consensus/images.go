package consensus

import (
	"errors"
	"fmt"
	"io"
	"sync"

	"go.etcd.io/raft/v3/raftpb"

	txswitch "github.com/txswitch/txswitch/switch"
)

// Streamed snapshot images.
//
// A classic snapshot carries the state image inside the raft message, so
// the image has to fit in memory three times over and in one transport
// frame: a state machine past tens of MB could no longer catch a follower
// up. With Config.StreamImages on (every member's binary must read
// envelope version 3: the cluster version gate decides), a leader whose
// state machine is an ImageStreamer sends instead:
//
//   - a MsgSnap whose data holds the membership only (envelope version 3),
//   - then, on the same transport, the image as a stream of chunks, written
//     from a pinned view of the state (ImageStreamer.OpenImage) in bounded
//     memory (OpenSnapshotImage).
//
// The follower's transport hands the stream to StageSnapshotImage, which
// stages it in the log store (ImageStager), validated whole and durable,
// and only then steps the MsgSnap into raft. Raft saves the snapshot as
// usual; when that is durable, the state machine restores from the staged
// image (ImageStreamer.RestoreImage, in bounded batches), and the staged
// image is dropped. A crash before the restore completed redoes it at the
// next start from the staged image (recover).

// ImageStreamer is a StateMachine whose image can be streamed
// (txswitch.Machine; see txswitch.Store.OpenImage and RestoreImage).
type ImageStreamer interface {
	OpenImage() (txswitch.StateImage, error)
	RestoreImage(index uint64, r io.Reader, size int64) error
}

// ImageStager is a LogStore that stages received images
// (pebblestore.LogStore).
type ImageStager interface {
	StageImage(index uint64) (txswitch.ImageSink, error)
	OpenStagedImage(index uint64) (r io.Reader, size int64, ok bool, err error)
	DropStagedImages(upTo uint64) error
}

// ImageSender and ImageReceiver are what a Transport asks of its Handler
// (the Node) to stream images; a transport that does not know them sends
// every MsgSnap as it is.
type ImageSender interface {
	// OpenSnapshotImage returns the image a MsgSnap stands for when it is
	// streamed (ok false: m carries its data and is sent as it is). The
	// caller writes it after m and calls release when done.
	OpenSnapshotImage(m *raftpb.Message) (img io.WriterTo, release func(), ok bool, err error)
}

// ImageReceiver: see ImageSender.
type ImageReceiver interface {
	// StageSnapshotImage returns where the streamed image of a received
	// MsgSnap goes (ok false: m carries its data, no stream follows). The
	// caller writes the stream to sink, commits it, and steps m only if
	// that succeeded.
	StageSnapshotImage(m *raftpb.Message) (sink txswitch.ImageSink, ok bool, err error)
}

var (
	_ ImageSender   = (*Node)(nil)
	_ ImageReceiver = (*Node)(nil)
)

// sharedImage is the image behind the leader's sendSnap, shared by the
// transports writing it; it is closed when the node has dropped it and
// the last writer released it.
type sharedImage struct {
	img   txswitch.StateImage
	index uint64
	mu    sync.Mutex
	refs  int
}

func (s *sharedImage) acquire() { s.mu.Lock(); s.refs++; s.mu.Unlock() }

func (s *sharedImage) release() {
	s.mu.Lock()
	s.refs--
	last := s.refs == 0
	s.mu.Unlock()
	if last {
		_ = s.img.Close()
	}
}

// streaming reports whether this node sends images as streams now.
func (n *Node) streaming() bool {
	_, ok := n.sm.(ImageStreamer)
	return ok && n.cfg.StreamImages != nil && n.cfg.StreamImages()
}

// setSendImage makes img the image of sendSnap (nil: none), dropping the
// node's reference to the previous one. Loop only.
func (n *Node) setSendImage(img txswitch.StateImage) {
	var next *sharedImage
	if img != nil {
		next = &sharedImage{img: img, index: img.Index(), refs: 1}
	}
	n.imgMu.Lock()
	prev := n.sendImage
	n.sendImage = next
	n.imgMu.Unlock()
	if prev != nil {
		prev.release()
	}
}

// dropSendSnap forgets the image built for followers. Loop only.
func (n *Node) dropSendSnap() {
	n.sendSnap = nil
	n.setSendImage(nil)
}

// OpenSnapshotImage implements ImageSender (called by transports).
func (n *Node) OpenSnapshotImage(m *raftpb.Message) (io.WriterTo, func(), bool, error) {
	if !snapshotStreamed(m.GetSnapshot().GetData()) {
		return nil, nil, false, nil
	}
	idx := m.GetSnapshot().GetMetadata().GetIndex()
	n.imgMu.Lock()
	s := n.sendImage
	if s != nil && s.index == idx {
		s.acquire()
	}
	n.imgMu.Unlock()
	if s == nil || s.index != idx {
		return nil, nil, true, fmt.Errorf("snapshot image %d is no longer held (a newer one replaced it)", idx)
	}
	return s.img, s.release, true, nil
}

// StageSnapshotImage implements ImageReceiver (called by transports).
func (n *Node) StageSnapshotImage(m *raftpb.Message) (txswitch.ImageSink, bool, error) {
	if !snapshotStreamed(m.GetSnapshot().GetData()) {
		return nil, false, nil
	}
	st, ok := n.cfg.LogStore.(ImageStager)
	if !ok {
		return nil, true, errors.New("log store cannot stage snapshot images")
	}
	idx := m.GetSnapshot().GetMetadata().GetIndex()
	sink, err := st.StageImage(idx)
	if errors.Is(err, txswitch.ErrImageStaged) {
		return discardSink{}, true, nil
	}
	if err != nil {
		return nil, true, fmt.Errorf("stage snapshot image %d: %w", idx, err)
	}
	for cur := n.stagedMax.Load(); idx > cur; cur = n.stagedMax.Load() {
		if n.stagedMax.CompareAndSwap(cur, idx) {
			break
		}
	}
	n.stagings.Add(1)
	return &stagingSink{ImageSink: sink, n: n}, true, nil
}

// stagingSink counts the commit of a staging: what a sweep dropped while
// the image was still streaming may have been written again by then.
type stagingSink struct {
	txswitch.ImageSink
	n *Node
}

func (s *stagingSink) Commit() (int64, error) {
	size, err := s.ImageSink.Commit()
	s.n.stagings.Add(1)
	return size, err
}

// imageSweepTicks is how many ticks apart staged images are swept.
const imageSweepTicks = 50

// sweepStagedImages drops, every imageSweepTicks ticks, the staged images
// at or below the applied index. Raft takes a snapshot only above its
// commit index, so those can never be restored; and restoreStaged drops
// only what it restores, which leaves the images of MsgSnaps raft did not
// take (a stale term, a duplicate that arrived after the restore, a step
// that failed after staging) on disk until the next start otherwise. A
// sweep runs only when a staging began or ended since the last one, or the
// applied index passed more of what was staged. Nothing is swept while a
// received snapshot awaits its restore; its image is above the applied
// index anyway. Runs on the loop.
func (n *Node) sweepStagedImages() error {
	if n.imageSweepIn--; n.imageSweepIn > 0 {
		return nil
	}
	n.imageSweepIn = imageSweepTicks
	if n.snapPending {
		return nil
	}
	// Read before the drop: a staging that ends during it is seen next time.
	stagings := n.stagings.Load()
	upTo := min(n.stagedMax.Load(), n.applied)
	if upTo == 0 || (stagings == n.sweptStagings && upTo <= n.sweptUpTo) {
		return nil
	}
	st, ok := n.cfg.LogStore.(ImageStager)
	if !ok {
		return nil
	}
	if err := st.DropStagedImages(upTo); err != nil {
		return fmt.Errorf("sweep staged images up to %d: %w", upTo, err)
	}
	n.sweptStagings, n.sweptUpTo = stagings, upTo
	n.imageSweeps.Add(1)
	return nil
}

// discardSink takes the stream of an image already staged.
type discardSink struct{}

func (discardSink) Write(p []byte) (int, error) { return len(p), nil }
func (discardSink) Commit() (int64, error)      { return 0, nil }
func (discardSink) Abort()                      {}

// restoreStaged restores the state machine from the image staged for the
// snapshot at idx, then drops every staged image up to idx.
func (n *Node) restoreStaged(idx uint64) error {
	st, ok := n.cfg.LogStore.(ImageStager)
	if !ok {
		return errors.New("log store cannot stage snapshot images")
	}
	sm, ok := n.sm.(ImageStreamer)
	if !ok {
		return errors.New("state machine cannot restore a streamed image")
	}
	r, size, ok, err := st.OpenStagedImage(idx)
	if err != nil {
		return fmt.Errorf("open staged image %d: %w", idx, err)
	}
	if !ok {
		return fmt.Errorf("no staged image for snapshot %d", idx)
	}
	if err := sm.RestoreImage(idx, r, size); err != nil {
		return fmt.Errorf("restore streamed image %d (%d bytes): %w", idx, size, err)
	}
	if err := st.DropStagedImages(idx); err != nil {
		return fmt.Errorf("drop staged images up to %d: %w", idx, err)
	}
	return nil
}
