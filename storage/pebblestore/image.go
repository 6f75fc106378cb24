package pebblestore

import (
	"bytes"
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

// boundedBuffer collects an image in memory, refusing to grow past max
// bytes (Options.MaxImageBytes).
type boundedBuffer struct {
	b   []byte
	max int
}

func (w *boundedBuffer) Write(p []byte) (int, error) {
	if len(w.b)+len(p) > w.max {
		return 0, fmt.Errorf("state image past %d bytes: %w", w.max, ErrImageTooLarge)
	}
	w.b = append(w.b, p...)
	return len(p), nil
}

// decodeImage validates an image held in memory and calls fn for each
// record in order (see decodeImageStream: a caller writing as it goes
// must discard its work when it returns an error).
func decodeImage(data []byte, fn func(k, v []byte) error) (index uint64, err error) {
	return decodeImageStream(bytes.NewReader(data), int64(len(data)), fn)
}
