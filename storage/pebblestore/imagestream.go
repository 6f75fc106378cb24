package pebblestore

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
)

// Streamed state images: the same bytes as SnapshotState's image (see
// image.go), written to and read from a stream in bounded memory, so a
// state machine larger than memory (or than one transport frame) can be
// sent to a follower and restored there.

// imageStreamWriter writes an image record by record to w.
type imageStreamWriter struct {
	w   *bufio.Writer
	crc hash.Hash32
	n   uint64
	// written counts the bytes given to w.
	written int64
	scratch [binary.MaxVarintLen64]byte
}

func newImageStreamWriter(w io.Writer, index uint64) (*imageStreamWriter, error) {
	s := &imageStreamWriter{w: bufio.NewWriterSize(w, 256<<10), crc: crc32.New(castagnoli)}
	var hdr [imageHeaderLen]byte
	copy(hdr[:], imageMagic)
	hdr[len(imageMagic)] = imageVersion
	binary.BigEndian.PutUint64(hdr[len(imageMagic)+1:], index)
	return s, s.write(hdr[:])
}

func (s *imageStreamWriter) write(b []byte) error {
	_, _ = s.crc.Write(b) // a hash never fails
	n, err := s.w.Write(b)
	s.written += int64(n)
	return err
}

func (s *imageStreamWriter) add(k, v []byte) error {
	for _, b := range [][]byte{k, v} {
		l := binary.PutUvarint(s.scratch[:], uint64(len(b)))
		if err := s.write(s.scratch[:l]); err != nil {
			return err
		}
		if err := s.write(b); err != nil {
			return err
		}
	}
	s.n++
	return nil
}

// finish writes the trailer and flushes.
func (s *imageStreamWriter) finish() error {
	var cnt [8]byte
	binary.BigEndian.PutUint64(cnt[:], s.n)
	if err := s.write(cnt[:]); err != nil {
		return err
	}
	var sum [4]byte
	binary.BigEndian.PutUint32(sum[:], s.crc.Sum32())
	n, err := s.w.Write(sum[:])
	s.written += int64(n)
	if err != nil {
		return err
	}
	return s.w.Flush()
}

// maxImageRecord bounds one key or value of a streamed image: a length
// past it is corruption, and refusing it keeps a corrupt length from
// allocating gigabytes.
const maxImageRecord = 256 << 20

// decodeImageStream reads an image of size bytes from r and calls fn for
// each record in order (the slices are valid during the call only). It
// checks framing, key order and the record count as it goes and the
// checksum at the end: fn may have seen records of an image that then
// fails, so a caller writing as it goes must treat an error as "what I
// wrote is garbage". fn nil only validates.
func decodeImageStream(r io.Reader, size int64, fn func(k, v []byte) error) (index uint64, err error) {
	if size < int64(imageHeaderLen+imageTrailerLen) {
		return 0, fmt.Errorf("%d bytes, too short: %w", size, ErrCorruptImage)
	}
	crc := crc32.New(castagnoli)
	br := bufio.NewReaderSize(io.LimitReader(r, size), 256<<10)
	var consumed int64
	read := func(b []byte) error {
		if _, err := io.ReadFull(br, b); err != nil {
			return fmt.Errorf("read at byte %d of %d: %w (%w)", consumed, size, ErrCorruptImage, err)
		}
		consumed += int64(len(b))
		_, _ = crc.Write(b)
		return nil
	}
	var hdr [imageHeaderLen]byte
	if err := read(hdr[:]); err != nil {
		return 0, err
	}
	if string(hdr[:len(imageMagic)]) != imageMagic {
		return 0, fmt.Errorf("bad magic %q: %w", hdr[:len(imageMagic)], ErrCorruptImage)
	}
	if v := hdr[len(imageMagic)]; v != imageVersion {
		return 0, fmt.Errorf("unsupported version %d: %w", v, ErrCorruptImage)
	}
	index = binary.BigEndian.Uint64(hdr[len(imageMagic)+1:])
	end := size - imageTrailerLen // where the records stop
	readLen := func() (int, error) {
		var tmp [binary.MaxVarintLen64]byte
		var l uint64
		for i := 0; ; i++ {
			if i == binary.MaxVarintLen64 || consumed >= end {
				return 0, fmt.Errorf("bad length at byte %d: %w", consumed, ErrCorruptImage)
			}
			if err := read(tmp[i : i+1]); err != nil {
				return 0, err
			}
			if tmp[i] < 0x80 {
				var n int
				l, n = binary.Uvarint(tmp[:i+1])
				// Overlong varints are rejected so that an image has
				// one encoding.
				if n <= 0 || n != binary.PutUvarint(tmp[:], l) {
					return 0, fmt.Errorf("bad length at byte %d: %w", consumed, ErrCorruptImage)
				}
				break
			}
		}
		if l > maxImageRecord || int64(l) > end-consumed {
			return 0, fmt.Errorf("length %d at byte %d past the records: %w", l, consumed, ErrCorruptImage)
		}
		return int(l), nil
	}
	// field reads one length-prefixed key or value into dst's memory.
	field := func(dst []byte) ([]byte, error) {
		l, err := readLen()
		if err != nil {
			return dst, err
		}
		dst = grow(dst, l)
		return dst, read(dst)
	}
	var (
		n         uint64
		prev, cur []byte
		val       []byte
	)
	for consumed < end {
		if cur, err = field(cur); err != nil {
			return 0, fmt.Errorf("record %d key: %w", n, err)
		}
		if n > 0 && bytes.Compare(prev, cur) >= 0 {
			return 0, fmt.Errorf("record %d: key %q not after %q: %w", n, cur, prev, ErrCorruptImage)
		}
		if val, err = field(val); err != nil {
			return 0, fmt.Errorf("record %d value: %w", n, err)
		}
		if fn != nil {
			if err := fn(cur, val); err != nil {
				return 0, err
			}
		}
		prev, cur = cur, prev
		n++
	}
	var cnt [8]byte
	if err := read(cnt[:]); err != nil {
		return 0, err
	}
	want := crc.Sum32()
	var sum [4]byte
	if _, err := io.ReadFull(br, sum[:]); err != nil {
		return 0, fmt.Errorf("read checksum: %w (%w)", ErrCorruptImage, err)
	}
	if got := binary.BigEndian.Uint32(sum[:]); got != want {
		return 0, fmt.Errorf("checksum %08x, want %08x: %w", got, want, ErrCorruptImage)
	}
	if c := binary.BigEndian.Uint64(cnt[:]); c != n {
		return 0, fmt.Errorf("%d records, trailer says %d: %w", n, c, ErrCorruptImage)
	}
	return index, nil
}

func grow(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}
