package pebblestore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/cockroachdb/pebble/v2"
	txswitch "github.com/txswitch/txswitch/switch"
)

// Staged state images: a follower receives the state image of a snapshot
// as a stream, next to the raft message, and keeps it here, in chunks,
// until its state machine has restored it (RestoreImage). A staged image
// survives a restart, so a restore a crash interrupted is redone from it.

// stageChunkBytes is the size of one staged chunk (one pebble batch).
const stageChunkBytes = 1 << 20

// ErrAlreadyStaged (txswitch.ErrImageStaged): an image for that index is
// already staged whole (the same snapshot sent twice); the new copy is not
// needed.
var ErrAlreadyStaged = txswitch.ErrImageStaged

// ImageSink receives a state image being staged.
var _ txswitch.ImageSink = (*ImageSink)(nil)

// ImageSink receives a state image being staged (txswitch.ImageSink).
type ImageSink struct {
	s     *LogStore
	index uint64
	buf   []byte
	seq   uint64
	size  int64
	done  bool
}

func imageChunkKey(group, index, seq uint64) []byte {
	k := groupKey(group, kindImage)
	k = binary.BigEndian.AppendUint64(k, index)
	return binary.BigEndian.AppendUint64(k, seq)
}

func imageDoneKey(group, index uint64) []byte {
	return binary.BigEndian.AppendUint64(groupKey(group, kindImageDone), index)
}

// errSuperseded: a newer staging of the same index took over this sink's.
var errSuperseded = errors.New("pebblestore: image staging superseded by a newer one of the same index")

// StageImage starts staging the image of the snapshot at index. Whatever
// an earlier, unfinished staging of the same index left is discarded, and
// that staging's sink, if still open, is superseded: the same snapshot can
// arrive again on a new connection while the reader of the old one has
// not yet seen it break, and that stale sink's Abort must not delete what
// the new one staged.
func (s *LogStore) StageImage(index uint64) (txswitch.ImageSink, error) {
	if err := s.db.usable(); err != nil {
		return nil, err
	}
	s.stageMu.Lock()
	defer s.stageMu.Unlock()
	if _, ok, err := s.db.get(s.db.pdb, imageDoneKey(s.group, index)); err != nil {
		return nil, fmt.Errorf("stage image %d: %w", index, err)
	} else if ok {
		return nil, ErrAlreadyStaged
	}
	if err := s.dropImages(index, index); err != nil {
		return nil, fmt.Errorf("stage image %d: %w", index, err)
	}
	w := &ImageSink{s: s, index: index, buf: make([]byte, 0, stageChunkBytes)}
	if s.staging == nil {
		s.staging = map[uint64]*ImageSink{}
	}
	s.staging[index] = w
	return w, nil
}

// ownsLocked reports whether w is still the staging of its index (stageMu
// held).
func (w *ImageSink) ownsLocked() bool { return w.s.staging[w.index] == w }

// releaseLocked ends w's ownership of its index (stageMu held).
func (w *ImageSink) releaseLocked() {
	if w.ownsLocked() {
		delete(w.s.staging, w.index)
	}
}

// Write buffers p and stores full chunks (unsynced).
func (w *ImageSink) Write(p []byte) (int, error) {
	if w.done {
		return 0, errors.New("pebblestore: image sink already committed or aborted")
	}
	n := len(p)
	for len(p) > 0 {
		k := min(len(p), stageChunkBytes-len(w.buf))
		w.buf = append(w.buf, p[:k]...)
		p = p[k:]
		if len(w.buf) == stageChunkBytes {
			if err := w.flush(); err != nil {
				return n - len(p), err
			}
		}
	}
	return n, nil
}

func (w *ImageSink) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	w.s.stageMu.Lock()
	defer w.s.stageMu.Unlock()
	if !w.ownsLocked() {
		return errSuperseded
	}
	b := w.s.db.pdb.NewBatch()
	defer b.Close()
	if err := b.Set(imageChunkKey(w.s.group, w.index, w.seq), w.buf, nil); err != nil {
		return err
	}
	if err := w.s.db.commit(b, pebble.NoSync); err != nil {
		return fmt.Errorf("stage image %d chunk %d: %w", w.index, w.seq, err)
	}
	w.seq++
	w.size += int64(len(w.buf))
	w.buf = w.buf[:0]
	return nil
}

// Commit stores the rest, validates the whole image as staged (framing,
// order, count, checksum: ErrCorruptImage, and the staging is discarded)
// and marks it complete, synced. It returns the image's size. The restore
// reads and checks it again, but a bad image must be refused here, before
// raft saves its snapshot: past that point the node could only stop, at
// every start.
func (w *ImageSink) Commit() (int64, error) {
	if w.done {
		return 0, errors.New("pebblestore: image sink already committed or aborted")
	}
	if err := w.flush(); err != nil {
		w.Abort()
		return 0, err
	}
	w.done = true
	w.s.stageMu.Lock()
	defer w.s.stageMu.Unlock()
	if !w.ownsLocked() {
		return 0, fmt.Errorf("stage image %d: %w", w.index, errSuperseded)
	}
	defer w.releaseLocked()
	r, err := w.s.openChunks(w.index, w.size)
	if err == nil {
		var idx uint64
		idx, err = decodeImageStream(r, w.size, nil)
		if err == nil && idx != w.index {
			err = fmt.Errorf("image is at %d, not %d: %w", idx, w.index, ErrCorruptImage)
		}
	}
	if err != nil {
		_ = w.s.dropImages(w.index, w.index)
		return 0, fmt.Errorf("stage image %d: %w", w.index, err)
	}
	b := w.s.db.pdb.NewBatch()
	defer b.Close()
	if err := b.Set(imageDoneKey(w.s.group, w.index), binary.BigEndian.AppendUint64(nil, uint64(w.size)), nil); err != nil {
		return 0, err
	}
	if err := w.s.db.commit(b, pebble.Sync); err != nil {
		return 0, fmt.Errorf("stage image %d: %w", w.index, err)
	}
	return w.size, nil
}

// Abort discards what was staged, unless a newer staging of the index
// superseded this one (then it is that one's).
func (w *ImageSink) Abort() {
	if w.done {
		return
	}
	w.done = true
	w.s.stageMu.Lock()
	defer w.s.stageMu.Unlock()
	if !w.ownsLocked() {
		return
	}
	w.releaseLocked()
	_ = w.s.dropImages(w.index, w.index)
}

// OpenStagedImage returns a reader over the image staged whole for index
// and its size; ok is false when there is none.
func (s *LogStore) OpenStagedImage(index uint64) (r io.Reader, size int64, ok bool, err error) {
	v, ok, err := s.db.get(s.db.pdb, imageDoneKey(s.group, index))
	if err != nil || !ok {
		return nil, 0, false, err
	}
	if len(v) != 8 {
		return nil, 0, false, fmt.Errorf("staged image %d: corrupt size of %d bytes", index, len(v))
	}
	size = int64(binary.BigEndian.Uint64(v))
	r, err = s.openChunks(index, size)
	if err != nil {
		return nil, 0, false, err
	}
	return r, size, true, nil
}

// DropStagedImages discards every staged image up to and including index
// (whole or not).
func (s *LogStore) DropStagedImages(upTo uint64) error {
	return s.dropImages(0, upTo)
}

func (s *LogStore) dropImages(lo, hi uint64) error {
	if err := s.db.usable(); err != nil {
		return err
	}
	b := s.db.pdb.NewBatch()
	defer b.Close()
	end := func(kind byte) []byte {
		if hi == math.MaxUint64 {
			return groupKey(s.group, kind+1)
		}
		return binary.BigEndian.AppendUint64(groupKey(s.group, kind), hi+1)
	}
	if err := b.DeleteRange(binary.BigEndian.AppendUint64(groupKey(s.group, kindImage), lo), end(kindImage), nil); err != nil {
		return err
	}
	if err := b.DeleteRange(imageDoneKey(s.group, lo), end(kindImageDone), nil); err != nil {
		return err
	}
	if err := s.db.commit(b, pebble.NoSync); err != nil {
		return fmt.Errorf("drop staged images %d-%d: %w", lo, hi, err)
	}
	return nil
}

// openChunks reads the chunks of index in order, one at a time.
func (s *LogStore) openChunks(index uint64, size int64) (io.Reader, error) {
	if err := s.db.usable(); err != nil {
		return nil, err
	}
	return &chunkReader{s: s, index: index, left: size}, nil
}

type chunkReader struct {
	s     *LogStore
	index uint64
	seq   uint64
	cur   []byte
	left  int64
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.cur) == 0 {
		if r.left <= 0 {
			return 0, io.EOF
		}
		v, ok, err := r.s.db.get(r.s.db.pdb, imageChunkKey(r.s.group, r.index, r.seq))
		if err != nil {
			return 0, err
		}
		if !ok || len(v) == 0 {
			return 0, fmt.Errorf("staged image %d: chunk %d missing: %w", r.index, r.seq, ErrCorruptImage)
		}
		r.seq++
		r.cur = v
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	r.left -= int64(n)
	return n, nil
}
