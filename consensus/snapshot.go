package consensus

import (
	"errors"
	"fmt"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	txswitch "github.com/txswitch/txswitch/switch"
)

// Snapshots, as etcd and CockroachDB take them: a snapshot this node takes
// itself is only a record (index, term, ConfState, membership; no state
// image) that lets the log be compacted behind it, and the state machine
// image is built only when a follower actually needs one.
//
//   - Every SnapshotEvery applied entries, a goroutine makes the state
//     machine's applied state durable (StateSyncer.SyncState, or
//     StateMachine.Snapshot for a state machine without it) and hands the
//     index back on snapc; the loop then records the snapshot there
//     (LogStore.CreateSnapshot with metadata only, synced) and only then
//     compacts the log to SnapshotKeep entries behind it (a leader keeps
//     the entries a member that is behind still needs, up to LagRetain,
//     so that a restarted node catches up from the log, not an image). The loop never
//     copies or writes the state: recording is one small synced write.
//   - When raft needs to send a snapshot (a follower is behind the log's
//     first index), Storage.Snapshot (raftStorage) returns the last image
//     built for that purpose if it is still usable, else asks for a build
//     and answers raft.ErrSnapshotTemporarilyUnavailable; raft tries again
//     at a later heartbeat response. The build (StateMachine.Snapshot, off
//     the loop) also makes the state durable, so it is recorded as above.
//
// At most one build runs at a time. Its result is used only if nothing it
// depends on changed meanwhile (see finishSnapshot).

// StateSyncer is implemented by a state machine that can make its applied
// state durable without building an image (pebblestore.StateStore.SyncState).
// SyncState returns an index i such that the state at i, or at a later
// index, survives a crash: after it returns, AppliedIndex never reports less
// than i again. Consensus calls it from a background goroutine, concurrently
// with Apply. A state machine without it is asked for a full image
// (StateMachine.Snapshot) instead, which costs a copy of the state.
type StateSyncer interface {
	SyncState() (index uint64, err error)
}

// snapResult is what a background snapshot builder hands back to the loop.
type snapResult struct {
	epoch    uint64
	index    uint64
	image    []byte
	hasImage bool
	// img is the image pinned for streaming (images.go), instead of image.
	img txswitch.StateImage
	err error
}

// raftStorage is what raft reads: the cached log store, with Snapshot
// served by the node (images are built on demand). Raft panics on a read
// error other than ErrCompacted and ErrUnavailable; such an error is kept
// first (Node.readFailure) so that the loop stops the node on that panic
// instead of crashing the process.
type raftStorage struct {
	LogStore
	n *Node
}

func (s raftStorage) failed(err error) error {
	if err != nil && !errors.Is(err, raft.ErrCompacted) && !errors.Is(err, raft.ErrUnavailable) {
		s.n.readFailure.CompareAndSwap(nil, &err)
	}
	return err
}

// InitialState implements raft.Storage.
func (s raftStorage) InitialState() (*raftpb.HardState, *raftpb.ConfState, error) {
	hs, cs, err := s.LogStore.InitialState()
	return hs, cs, s.failed(err)
}

// Entries implements raft.Storage.
func (s raftStorage) Entries(lo, hi, maxSize uint64) ([]*raftpb.Entry, error) {
	ents, err := s.LogStore.Entries(lo, hi, maxSize)
	return ents, s.failed(err)
}

// Term implements raft.Storage.
func (s raftStorage) Term(i uint64) (uint64, error) {
	t, err := s.LogStore.Term(i)
	return t, s.failed(err)
}

// LastIndex implements raft.Storage.
func (s raftStorage) LastIndex() (uint64, error) {
	i, err := s.LogStore.LastIndex()
	return i, s.failed(err)
}

// FirstIndex implements raft.Storage.
func (s raftStorage) FirstIndex() (uint64, error) {
	i, err := s.LogStore.FirstIndex()
	return i, s.failed(err)
}

// Snapshot implements raft.Storage. Raft calls it (on the loop) only to send
// a snapshot to a follower. Raft panics on any error other than
// ErrSnapshotTemporarilyUnavailable, so that is the only one returned.
func (s raftStorage) Snapshot() (*raftpb.Snapshot, error) {
	return s.n.snapshotForFollower()
}

// snapshotForFollower returns the image built for followers if it can
// still catch one up: the log must continue right after it. Otherwise it
// asks the loop for a new build.
func (n *Node) snapshotForFollower() (*raftpb.Snapshot, error) {
	if n.sendSnap != nil {
		first, err := n.store.FirstIndex()
		if err == nil && n.sendSnap.GetMetadata().GetIndex()+1 >= first {
			return n.sendSnap, nil
		}
		n.dropSendSnap() // the log was compacted past it
	}
	n.snapWant = true
	return nil, raft.ErrSnapshotTemporarilyUnavailable
}

// maybeSnapshot starts a background build when one is due: an image raft
// asked for, or a snapshot record every SnapshotEvery applied entries. It
// runs on the loop.
func (n *Node) maybeSnapshot() {
	if n.snapBusy || n.snapPending {
		return
	}
	image := n.snapWant
	if !image && n.applied < n.snapIndex+n.cfg.SnapshotEvery {
		return
	}
	n.snapWant = false
	syncer, canSync := n.sm.(StateSyncer)
	if !canSync {
		image = true
	}
	stream := image && n.streaming()
	n.snapBusy = true
	epoch := n.snapEpoch
	n.snapWG.Go(func() {
		r := snapResult{epoch: epoch, hasImage: image}
		switch {
		case stream:
			if r.img, r.err = n.sm.(ImageStreamer).OpenImage(); r.err == nil {
				r.index = r.img.Index()
			}
		case image:
			r.index, r.image, r.err = n.sm.Snapshot()
		default:
			r.index, r.err = syncer.SyncState()
		}
		// Never blocks: snapc has room for the one build in flight.
		n.snapc <- r
	})
}

// finishSnapshot runs on the loop with a background build's result. It is
// used only if nothing it depends on changed meanwhile:
//   - no conf change was applied and no snapshot received or restored
//     since the build started (same epoch), so the membership and ConfState the loop holds
//     now are those in force at the result's index (which is at least the
//     applied index when the build started, and at most the one now: Apply
//     on the loop returned before the loop took this result);
//
// then the snapshot is recorded if it is newer than the last one, and an
// image is kept for followers. A discarded result costs only the work:
// the next one is started when due (or when raft asks again).
func (n *Node) finishSnapshot(r snapResult) error {
	n.snapBusy = false
	if r.img != nil {
		// Kept below only as the image of sendSnap.
		defer func() {
			if r.img != nil {
				_ = r.img.Close()
			}
		}()
	}
	if r.err != nil {
		return fmt.Errorf("state machine snapshot (applied %d): %w", n.applied, r.err)
	}
	if r.epoch != n.snapEpoch || n.snapPending {
		n.log.Debug("discarded snapshot of an older membership", zap.Uint64("index", r.index))
		return nil
	}
	if r.index > n.applied {
		return fmt.Errorf("state machine snapshot at %d, but only %d is applied", r.index, n.applied)
	}
	if r.index > n.snapIndex {
		if err := n.recordSnapshot(r.index); err != nil {
			return err
		}
	}
	if r.hasImage && n.leading {
		term, err := n.store.Term(r.index)
		if err != nil {
			// Compacted past it meanwhile (cannot happen: compaction only
			// follows a record, and this result is the newest): rebuild.
			n.log.Warn("snapshot image unusable", zap.Uint64("index", r.index), zap.Error(err))
			return nil
		}
		n.sendSnap = &raftpb.Snapshot{
			Metadata: &raftpb.SnapshotMetadata{
				Index: new(r.index), Term: new(term),
				ConfState: proto.Clone(n.confState).(*raftpb.ConfState),
			},
		}
		if r.img != nil {
			n.sendSnap.Data = encodeSnapshotStreamed(&n.mem)
			n.setSendImage(r.img)
			r.img = nil // the node's now
			n.log.Info("pinned snapshot image for followers (streamed)", zap.Uint64("index", r.index))
		} else {
			n.sendSnap.Data = encodeSnapshotData(&n.mem, r.image)
			n.setSendImage(nil)
			n.log.Info("built snapshot image for followers", zap.Uint64("index", r.index), zap.Int("bytes", len(r.image)))
		}
	}
	return nil
}

// recordSnapshot records the snapshot at idx (metadata only) and compacts
// the log behind it. Order: the state machine's state at idx is already
// durable (the build synced it), CreateSnapshot makes the record durable,
// and only then are entries behind it discarded. A crash between any two
// steps leaves a log that still holds everything after the durable state.
func (n *Node) recordSnapshot(idx uint64) error {
	if _, err := n.store.CreateSnapshot(idx, n.confState, encodeSnapshotMeta(&n.mem)); err != nil {
		return fmt.Errorf("create snapshot at %d: %w", idx, err)
	}
	n.snapIndex = idx
	n.failpoint(FailpointAfterSnapshot)
	if idx > n.cfg.SnapshotKeep {
		first, err := n.store.FirstIndex()
		if err != nil {
			return fmt.Errorf("first index: %w", err)
		}
		if c := n.compactTo(idx); c >= first {
			if err := n.store.Compact(c); err != nil && !errors.Is(err, raft.ErrCompacted) {
				return fmt.Errorf("compact to %d: %w", c, err)
			}
		}
	}
	n.log.Info("recorded snapshot", zap.Uint64("index", idx))
	return nil
}

// compactTo is how far the log may be compacted after a snapshot at idx
// (idx > SnapshotKeep): SnapshotKeep entries behind it, and on a leader
// not past the match index of a member that is behind, down to LagRetain
// entries behind it. A member beyond that gets a snapshot.
func (n *Node) compactTo(idx uint64) uint64 {
	c := idx - n.cfg.SnapshotKeep
	if !n.leading || n.cfg.LagRetain <= n.cfg.SnapshotKeep {
		return c
	}
	var floor uint64
	if idx > n.cfg.LagRetain {
		floor = idx - n.cfg.LagRetain
	}
	var lagging []uint64
	for id, pr := range n.rn.Status().Progress {
		if id == n.cfg.ID || pr.Match >= c {
			continue
		}
		lagging = append(lagging, id)
		c = max(floor, pr.Match)
	}
	if len(lagging) > 0 {
		n.log.Info("keeping the log for members that are behind", zap.Uint64s("members", lagging),
			zap.Uint64("snapshot", idx), zap.Uint64("compact_to", c))
	}
	return c
}

// restoreSnapshot replaces the state machine with a snapshot raft received
// and Save already made durable. Waiters of entries the snapshot covers
// cannot learn their result: they get an outcome-unknown error.
func (n *Node) restoreSnapshot(snap *raftpb.Snapshot) error {
	idx := snap.GetMetadata().GetIndex()
	mem, image, hasImage, err := decodeSnapshotData(snap.GetData())
	if err != nil {
		return fmt.Errorf("snapshot %d: %w", idx, err)
	}
	switch {
	case snapshotStreamed(snap.GetData()):
		if err := n.restoreStaged(idx); err != nil {
			return fmt.Errorf("restore state machine from snapshot %d: %w", idx, err)
		}
	case !hasImage:
		return fmt.Errorf("received snapshot %d carries no state image", idx)
	default:
		if err := n.sm.Restore(idx, image); err != nil {
			return fmt.Errorf("restore state machine from snapshot %d: %w", idx, err)
		}
	}
	old := n.mem
	n.mem = mem
	n.mem.Version = 1
	n.applied, n.snapIndex = idx, idx
	n.snapEpoch++ // a build started before may predate this state
	n.dropSendSnap()
	n.confState = proto.Clone(raftpb.EnsureConfState(snap.GetMetadata().GetConfState())).(*raftpb.ConfState)
	for _, p := range old.Members {
		if _, ok := n.mem.get(p.ID); !ok && p.ID != n.cfg.ID {
			n.tr.RemovePeer(p.ID)
		}
	}
	n.seedTransport(n.mem.Members)
	n.removed.Store(n.mem.removed(n.cfg.ID))
	n.publishMembers()
	for i, keys := range n.byIndex {
		if i > idx {
			continue
		}
		delete(n.byIndex, i)
		for _, k := range keys {
			n.deliver(k, result{err: fmt.Errorf("%w: entry %d was installed by snapshot %d, its result is unknown", txswitch.ErrTimeout, i, idx)})
		}
	}
	n.log.Info("restored snapshot", zap.Uint64("index", idx), zap.Int("members", len(n.mem.Members)))
	return nil
}
