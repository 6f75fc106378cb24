package pebblestore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// State image format (SnapshotState / RestoreState), all integers big-endian
// unless uvarint:
//
//	magic "TXSI" | version (1 byte) | applied index (8)
//	records, keys strictly increasing: uvarint len | key | uvarint len | value
//	record count (8) | CRC-32C of every byte before it (4)
//
// The image holds user keys (without the group prefix), so it restores into
// any group. A reader accepts version imageVersion only; a new version must
// keep decoding the previous one (DESIGN: nodes read N-1 and N).
const (
	imageMagic      = "TXSI"
	imageVersion    = 1
	imageHeaderLen  = len(imageMagic) + 1 + 8
	imageTrailerLen = 8 + 4
)

// ErrCorruptImage: a state image failed validation (checksum, framing,
// ordering, version); nothing was restored.
var ErrCorruptImage = errors.New("pebblestore: corrupt state image")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// imageWriter builds an image, refusing to grow past max bytes.
type imageWriter struct {
	buf []byte
	n   uint64
	max int
}

func newImageWriter(index uint64, max int) *imageWriter {
	buf := make([]byte, 0, 4096)
	buf = append(buf, imageMagic...)
	buf = append(buf, imageVersion)
	buf = binary.BigEndian.AppendUint64(buf, index)
	return &imageWriter{buf: buf, max: max}
}

func (w *imageWriter) add(k, v []byte) error {
	if len(w.buf)+len(k)+len(v)+2*binary.MaxVarintLen64+imageTrailerLen > w.max {
		return fmt.Errorf("state image past %d bytes at record %d: %w", w.max, w.n, ErrImageTooLarge)
	}
	w.buf = binary.AppendUvarint(w.buf, uint64(len(k)))
	w.buf = append(w.buf, k...)
	w.buf = binary.AppendUvarint(w.buf, uint64(len(v)))
	w.buf = append(w.buf, v...)
	w.n++
	return nil
}

func (w *imageWriter) finish() []byte {
	w.buf = binary.BigEndian.AppendUint64(w.buf, w.n)
	return binary.BigEndian.AppendUint32(w.buf, crc32.Checksum(w.buf, castagnoli))
}

// decodeImage validates data and calls fn for each record in order; the
// slices alias data. It checks the checksum before parsing anything, so fn
// only ever sees records of an intact image — but a caller writing as it goes
// must still discard its work when decodeImage returns an error (framing can
// only be checked to the end).
func decodeImage(data []byte, fn func(k, v []byte) error) (index uint64, err error) {
	if len(data) < imageHeaderLen+imageTrailerLen {
		return 0, fmt.Errorf("%d bytes, too short: %w", len(data), ErrCorruptImage)
	}
	body, sum := data[:len(data)-4], binary.BigEndian.Uint32(data[len(data)-4:])
	if got := crc32.Checksum(body, castagnoli); got != sum {
		return 0, fmt.Errorf("checksum %08x, want %08x: %w", got, sum, ErrCorruptImage)
	}
	if string(data[:len(imageMagic)]) != imageMagic {
		return 0, fmt.Errorf("bad magic %q: %w", data[:len(imageMagic)], ErrCorruptImage)
	}
	if v := data[len(imageMagic)]; v != imageVersion {
		return 0, fmt.Errorf("unsupported version %d: %w", v, ErrCorruptImage)
	}
	index = binary.BigEndian.Uint64(data[len(imageMagic)+1:])
	count := binary.BigEndian.Uint64(data[len(data)-imageTrailerLen:])
	recs := data[imageHeaderLen : len(data)-imageTrailerLen]
	var n uint64
	var prev []byte
	for len(recs) > 0 {
		var k, v []byte
		if k, recs, err = readChunk(recs); err != nil {
			return 0, fmt.Errorf("record %d key: %w", n, err)
		}
		if v, recs, err = readChunk(recs); err != nil {
			return 0, fmt.Errorf("record %d value: %w", n, err)
		}
		if n > 0 && bytes.Compare(prev, k) >= 0 {
			return 0, fmt.Errorf("record %d: key %q not after %q: %w", n, k, prev, ErrCorruptImage)
		}
		if err := fn(k, v); err != nil {
			return 0, err
		}
		prev = k
		n++
	}
	if n != count {
		return 0, fmt.Errorf("%d records, trailer says %d: %w", n, count, ErrCorruptImage)
	}
	return index, nil
}

// readChunk reads a uvarint length and that many bytes.
func readChunk(b []byte) (chunk, rest []byte, err error) {
	var tmp [binary.MaxVarintLen64]byte
	l, n := binary.Uvarint(b)
	// Overlong varints are rejected so that an image has one encoding.
	if n <= 0 || n != binary.PutUvarint(tmp[:], l) || l > uint64(len(b)-n) {
		return nil, nil, fmt.Errorf("bad length: %w", ErrCorruptImage)
	}
	b = b[n:]
	return b[:l:l], b[l:], nil
}
