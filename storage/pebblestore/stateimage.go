package pebblestore

import (
	"encoding/binary"
	"fmt"
	"io"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	txswitch "github.com/txswitch/txswitch/switch"
)

// restoreBatchBytes bounds one batch of RestoreImage: the state is written
// in batches of this size, so restoring takes bounded memory.
const restoreBatchBytes = 4 << 20

// stateImage is a StateStore's state pinned by a pebble snapshot.
type stateImage struct {
	s     *StateStore
	snap  *pebble.Snapshot
	index uint64

	mu     sync.Mutex
	closed bool
}

var _ txswitch.StateImage = (*stateImage)(nil)

// OpenImage pins the group's state with a pebble snapshot and returns it
// as an image at its applied index, durable when OpenImage returns.
//
// Ordering as in SnapshotState: the pebble snapshot is taken first and the
// WAL synced after, so everything the image holds is durable. The image
// holds the snapshot's sstables and memtables until Close: pebble cannot
// reclaim what was overwritten or deleted since.
func (s *StateStore) OpenImage() (txswitch.StateImage, error) {
	if err := s.db.usable(); err != nil {
		return nil, err
	}
	snap := s.db.pdb.NewSnapshot()
	if err := s.db.sync(); err != nil {
		_ = snap.Close()
		return nil, fmt.Errorf("open state image of group %d: %w", s.group, err)
	}
	index, err := s.readApplied(snap)
	if err != nil {
		_ = snap.Close()
		return nil, fmt.Errorf("open state image of group %d: %w", s.group, err)
	}
	return &stateImage{s: s, snap: snap, index: index}, nil
}

func (im *stateImage) Index() uint64 { return im.index }

// WriteTo writes the image (the format of image.go) to w.
func (im *stateImage) WriteTo(w io.Writer) (int64, error) {
	im.mu.Lock()
	closed := im.closed
	im.mu.Unlock()
	if closed {
		return 0, fmt.Errorf("state image of group %d at %d: closed", im.s.group, im.index)
	}
	sw, err := newImageStreamWriter(w, im.index)
	if err != nil {
		return sw.written, err
	}
	var werr error
	if err := im.s.scan(im.snap, nil, nil, func(k, v []byte) bool {
		werr = sw.add(k, v)
		return werr == nil
	}); err != nil {
		return sw.written, fmt.Errorf("state image of group %d at %d: %w", im.s.group, im.index, err)
	}
	if werr != nil {
		return sw.written, werr
	}
	if err := sw.finish(); err != nil {
		return sw.written, err
	}
	return sw.written, nil
}

// Close releases the pebble snapshot. Writers still running fail.
func (im *stateImage) Close() error {
	im.mu.Lock()
	defer im.mu.Unlock()
	if im.closed {
		return nil
	}
	im.closed = true
	return im.snap.Close()
}

// RestoreImage replaces the group's state with an image of size bytes read
// from r, in batches of restoreBatchBytes:
//
//  1. a restore marker with index, synced;
//  2. the state range deleted and the records written, batch by batch;
//  3. the applied index set to index and the marker removed, synced.
//
// The applied index moves only in the last step, so a crash before it
// leaves AppliedIndex below index (consensus then restores again from the
// snapshot it saved before restoring) and the marker tells the state is
// partial. A corrupt image is detected by the end of the stream at the
// latest and returns ErrCorruptImage with the marker still set: consensus
// validates a received image when it stages it, so this means the disk
// lost it since.
func (s *StateStore) RestoreImage(index uint64, r io.Reader, size int64) error {
	if err := s.db.usable(); err != nil {
		return err
	}
	s.appliedMu.Lock()
	defer s.appliedMu.Unlock()
	cur, err := s.appliedLocked()
	if err != nil {
		return fmt.Errorf("restore state image of group %d: %w", s.group, err)
	}
	if index < cur {
		return fmt.Errorf("restore state image of group %d at %d: behind applied index %d", s.group, index, cur)
	}
	marker := groupKey(s.group, kindRestoring)
	if err := s.commitOne(func(b *pebble.Batch) error {
		return b.Set(marker, binary.BigEndian.AppendUint64(nil, index), nil)
	}, pebble.Sync); err != nil {
		return fmt.Errorf("restore state image of group %d at %d: mark: %w", s.group, index, err)
	}
	b := s.db.pdb.NewBatch()
	defer func() { _ = b.Close() }()
	if err := b.DeleteRange(s.lo, s.hi, nil); err != nil {
		return fmt.Errorf("restore state image of group %d: clear: %w", s.group, err)
	}
	var kbuf []byte
	imgIndex, err := decodeImageStream(r, size, func(k, v []byte) error {
		kbuf = s.key(kbuf, k)
		if err := b.Set(kbuf, v, nil); err != nil {
			return err
		}
		if b.Len() < restoreBatchBytes {
			return nil
		}
		if err := s.db.commit(b, pebble.NoSync); err != nil {
			return err
		}
		_ = b.Close()
		b = s.db.pdb.NewBatch()
		return nil
	})
	if err == nil && imgIndex != index {
		err = fmt.Errorf("image is at %d: %w", imgIndex, ErrCorruptImage)
	}
	if err != nil {
		return fmt.Errorf("restore state image of group %d at %d: %w", s.group, index, err)
	}
	if err := b.Set(s.appliedKey, binary.BigEndian.AppendUint64(nil, index), nil); err != nil {
		return fmt.Errorf("restore state image of group %d: %w", s.group, err)
	}
	if err := b.Delete(marker, nil); err != nil {
		return fmt.Errorf("restore state image of group %d: %w", s.group, err)
	}
	if err := s.db.commit(b, pebble.Sync); err != nil {
		s.appliedKnown = false
		return fmt.Errorf("restore state image of group %d at %d: %w", s.group, index, err)
	}
	s.applied = index
	return nil
}

// Restoring reports the index of a RestoreImage that did not finish (a
// crash in the middle): the state is then partial until a restore at that
// index or later completes.
func (s *StateStore) Restoring() (index uint64, ok bool, err error) {
	v, ok, err := s.db.get(s.db.pdb, groupKey(s.group, kindRestoring))
	if err != nil || !ok {
		return 0, false, err
	}
	if len(v) != 8 {
		return 0, false, fmt.Errorf("restore marker of group %d: corrupt value of %d bytes", s.group, len(v))
	}
	return binary.BigEndian.Uint64(v), true, nil
}

func (s *StateStore) commitOne(fill func(b *pebble.Batch) error, wo *pebble.WriteOptions) error {
	b := s.db.pdb.NewBatch()
	defer b.Close()
	if err := fill(b); err != nil {
		return err
	}
	return s.db.commit(b, wo)
}
