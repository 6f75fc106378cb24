package pebblestore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

func populate(t *testing.T, st *StateStore, index uint64, n int) []kv {
	t.Helper()
	var want []kv
	for i := range n {
		want = append(want, kv{fmt.Sprintf("key/%05d", i), fmt.Sprintf("value-%d-%s", i, bytes.Repeat([]byte{'x'}, i%97))})
	}
	want = append(want, kv{"", "empty key"}, kv{"z", ""})
	slices.SortFunc(want, func(a, b kv) int { return bytes.Compare([]byte(a.k), []byte(b.k)) })
	commitKVs(t, st, index, want...)
	return want
}

func streamed(t *testing.T, st *StateStore) (uint64, []byte) {
	t.Helper()
	im, err := st.OpenImage()
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	var buf bytes.Buffer
	n, err := im.WriteTo(&buf)
	if err != nil || n != int64(buf.Len()) {
		t.Fatalf("write image: %d bytes counted, %d written, %v", n, buf.Len(), err)
	}
	return im.Index(), buf.Bytes()
}

// TestStreamedImageIsTheImage: OpenImage writes exactly SnapshotState's
// bytes, of the state as it was when opened, and RestoreImage restores
// them in batches, whatever the chunking of the stream.
func TestStreamedImageIsTheImage(t *testing.T) {
	src := openFS(t, vfs.NewMem()).StateStore(1)
	want := populate(t, src, 42, 3000)
	_, img := must2(src.SnapshotState())
	im, err := src.OpenImage()
	if err != nil {
		t.Fatal(err)
	}
	// Written after the image was opened: not in it.
	commitKVs(t, src, 43, kv{"later", "not in the image"})
	var buf bytes.Buffer
	if _, err := im.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	if im.Index() != 42 || !bytes.Equal(buf.Bytes(), img) {
		t.Fatalf("streamed image at %d, %d bytes; want SnapshotState's at 42, %d bytes", im.Index(), buf.Len(), len(img))
	}
	// Written again, concurrently: the same bytes.
	done := make(chan []byte, 2)
	for range 2 {
		go func() {
			var b bytes.Buffer
			_, _ = im.WriteTo(&b)
			done <- b.Bytes()
		}()
	}
	for range 2 {
		if got := <-done; !bytes.Equal(got, img) {
			t.Fatal("a concurrent WriteTo wrote other bytes")
		}
	}
	if err := im.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := im.WriteTo(io.Discard); err == nil {
		t.Fatal("WriteTo after Close succeeded")
	}

	dstDB := openFS(t, vfs.NewMem())
	dst := dstDB.StateStore(5)
	commitKVs(t, dst, 7, kv{"stale", "must go"})
	neighbour := dstDB.StateStore(6)
	commitKVs(t, neighbour, 3, kv{"n", "stays"})
	if err := dst.RestoreImage(42, iotestOneByteAtATimeReader(img), int64(len(img))); err != nil {
		t.Fatal(err)
	}
	if got := scanAll(t, dst, "", ""); !slices.Equal(got, want) {
		t.Fatalf("restored %d keys, want %d", len(got), len(want))
	}
	if idx := must(dst.AppliedIndex()); idx != 42 {
		t.Fatalf("applied = %d; want 42", idx)
	}
	if _, ok, err := dst.Restoring(); ok || err != nil {
		t.Fatalf("restore marker left: %t %v", ok, err)
	}
	if v := must(neighbour.Get([]byte("n"))); string(v) != "stays" {
		t.Fatalf("neighbour group = %q", v)
	}
}

// bigState commits two restore batches' worth of 64 KB values at index.
func bigState(t *testing.T, st *StateStore, index uint64) []kv {
	t.Helper()
	big := bytes.Repeat([]byte{'v'}, 64<<10)
	var want []kv
	for i := range 2 * restoreBatchBytes / len(big) {
		want = append(want, kv{fmt.Sprintf("k%04d", i), string(big)})
	}
	commitKVs(t, st, index, want...)
	return want
}

// TestRestoreImageInBatches restores a state larger than restoreBatchBytes
// and checks it took several batches without changing the result.
func TestRestoreImageInBatches(t *testing.T) {
	src := openFS(t, vfs.NewMem()).StateStore(1)
	want := bigState(t, src, 9)
	idx, img := streamed(t, src)
	dst := openFS(t, vfs.NewMem()).StateStore(1)
	if err := dst.RestoreImage(idx, bytes.NewReader(img), int64(len(img))); err != nil {
		t.Fatal(err)
	}
	if got := scanAll(t, dst, "", ""); !slices.Equal(got, want) || must(dst.AppliedIndex()) != 9 {
		t.Fatalf("restored %d keys at %d", len(got), must(dst.AppliedIndex()))
	}
}

// TestRestoreImageInterrupted: a restore that fails (or crashes) in the
// middle leaves the applied index where it was and the marker set; a
// restore after it (streamed or not) makes the state whole again.
func TestRestoreImageInterrupted(t *testing.T) {
	src := openFS(t, vfs.NewMem()).StateStore(1)
	want := bigState(t, src, 30)
	idx, img := streamed(t, src)

	fs := vfs.NewCrashableMem()
	db := openFS(t, fs)
	dst := db.StateStore(1)
	commitKVs(t, dst, 5, kv{"old", "state"})
	if err := db.sync(); err != nil {
		t.Fatal(err)
	}
	failing := io.MultiReader(bytes.NewReader(img[:len(img)*3/4]), iotestErrReader{errors.New("connection lost")})
	if err := dst.RestoreImage(idx, failing, int64(len(img))); err == nil {
		t.Fatal("restore from a broken stream succeeded")
	}
	// As after a crash right now.
	crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	for name, st := range map[string]*StateStore{"live": dst, "after a crash": openFS(t, crashed).StateStore(1)} {
		if at, ok, err := st.Restoring(); !ok || at != 30 || err != nil {
			t.Fatalf("%s: restore marker = %d %t %v; want 30", name, at, ok, err)
		}
		if a := must(st.AppliedIndex()); a != 5 {
			t.Fatalf("%s: applied %d after an interrupted restore; want 5", name, a)
		}
		if err := st.RestoreImage(idx, bytes.NewReader(img), int64(len(img))); err != nil {
			t.Fatalf("%s: restore again: %v", name, err)
		}
		if got := scanAll(t, st, "", ""); !slices.Equal(got, want) || must(st.AppliedIndex()) != 30 {
			t.Fatalf("%s: %d keys at %d after restoring again", name, len(got), must(st.AppliedIndex()))
		}
		if _, ok, _ := st.Restoring(); ok {
			t.Fatalf("%s: marker left", name)
		}
	}
	// The in-memory RestoreState clears a marker too.
	if err := dst.RestoreImage(idx+1, bytes.NewReader(img[:100]), 100); err == nil {
		t.Fatal("restore of a truncated image succeeded")
	}
	_, small := must2(src.SnapshotState())
	if err := dst.RestoreState(30, small); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := dst.Restoring(); ok {
		t.Fatal("RestoreState left the marker of an interrupted streamed restore")
	}
}

// TestImageDecoderRefusesCorruption: every single-byte change of an image
// is refused by the checksum; with the checksum fixed to match, it is
// refused by the framing checks or decodes to records that re-encode to
// exactly those bytes; every truncation is refused. The decoder reads the
// image as a stream, byte lengths and all.
func TestImageDecoderRefusesCorruption(t *testing.T) {
	want := []kv{{"", "e"}, {"a", "1"}, {"abc", string(bytes.Repeat([]byte{'z'}, 300))}, {"b", ""}}
	img := buildImage(t, 7, want...)
	var got []kv
	idx, err := decodeImageStream(iotestOneByteAtATimeReader(img), int64(len(img)), func(k, v []byte) error {
		got = append(got, kv{string(k), string(v)})
		return nil
	})
	if err != nil || idx != 7 || !slices.Equal(got, want) {
		t.Fatalf("valid image: index %d, %v, %v", idx, got, err)
	}
	for i := range img {
		c := bytes.Clone(img)
		c[i] ^= 0x81
		if _, err := decodeImage(c, nil); !errors.Is(err, ErrCorruptImage) {
			t.Fatalf("byte %d flipped: %v", i, err)
		}
		binary.BigEndian.PutUint32(c[len(c)-4:], crc32.Checksum(c[:len(c)-4], castagnoli))
		checkDecode(t, c)
	}
	for i := range len(img) {
		if _, err := decodeImage(img[:i], nil); !errors.Is(err, ErrCorruptImage) {
			t.Fatalf("truncated to %d bytes: %v", i, err)
		}
	}
}

// TestStagedImages: an image staged in pieces reads back whole, survives a
// crash once committed, and a corrupt one is refused and not kept.
func TestStagedImages(t *testing.T) {
	src := openFS(t, vfs.NewMem()).StateStore(1)
	populate(t, src, 12, 40000) // a few MB: several chunks
	idx, img := streamed(t, src)
	if len(img) < 2*stageChunkBytes {
		t.Fatalf("image of %d bytes: the test wants several chunks", len(img))
	}
	fs := vfs.NewCrashableMem()
	ls := openFS(t, fs).LogStore(1)
	if _, _, ok, err := ls.OpenStagedImage(idx); ok || err != nil {
		t.Fatalf("staged image before staging: %t %v", ok, err)
	}
	sink, err := ls.StageImage(idx)
	if err != nil {
		t.Fatal(err)
	}
	for rest := img; len(rest) > 0; {
		n := min(len(rest), 777)
		if _, err := sink.Write(rest[:n]); err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
	}
	if size, err := sink.Commit(); err != nil || size != int64(len(img)) {
		t.Fatalf("commit = %d, %v", size, err)
	}
	if _, err := ls.StageImage(idx); !errors.Is(err, ErrAlreadyStaged) {
		t.Fatalf("staging the same index again: %v", err)
	}
	crashed := openFS(t, fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})).LogStore(1)
	for name, s := range map[string]*LogStore{"live": ls, "after a crash": crashed} {
		r, size, ok, err := s.OpenStagedImage(idx)
		if !ok || err != nil || size != int64(len(img)) {
			t.Fatalf("%s: open staged = %d %t %v", name, size, ok, err)
		}
		if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, img) {
			t.Fatalf("%s: staged image reads back %d bytes (%v), want %d", name, len(got), err, len(img))
		}
	}
	// A corrupt image is refused at Commit and nothing of it stays.
	bad := bytes.Clone(img)
	bad[len(bad)/2] ^= 1
	sink, err = ls.StageImage(idx + 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sink.Write(bad); err != nil {
		t.Fatal(err)
	}
	if _, err := sink.Commit(); !errors.Is(err, ErrCorruptImage) {
		t.Fatalf("commit of a corrupt image: %v", err)
	}
	if _, _, ok, _ := ls.OpenStagedImage(idx + 1); ok {
		t.Fatal("corrupt image kept")
	}
	// An aborted one neither.
	sink, _ = ls.StageImage(idx + 2)
	_, _ = sink.Write(img[:1000])
	sink.Abort()
	if _, _, ok, _ := ls.OpenStagedImage(idx + 2); ok {
		t.Fatal("aborted image kept")
	}
	if err := ls.DropStagedImages(idx); err != nil {
		t.Fatal(err)
	}
	if _, _, ok, _ := ls.OpenStagedImage(idx); ok {
		t.Fatal("dropped image still staged")
	}
}

func must2[A, B any](a A, b B, err error) (A, B) {
	if err != nil {
		panic(err)
	}
	return a, b
}

type iotestErrReader struct{ err error }

func (r iotestErrReader) Read([]byte) (int, error) { return 0, r.err }

// iotestOneByteAtATimeReader returns a reader handing out one byte per Read.
func iotestOneByteAtATimeReader(b []byte) io.Reader { return &oneByte{b} }

type oneByte struct{ b []byte }

func (r *oneByte) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	p[0] = r.b[0]
	r.b = r.b[1:]
	return 1, nil
}

// The same snapshot can be staged again on a new connection while the
// reader of the old one has not yet seen it break. The old, superseded
// sink can then neither write into the new staging nor, on its late
// Abort, delete it (that left a follower whose raft had saved the snapshot
// unable to restore it, at every start).
func TestSupersededStagingLeavesTheNewOneAlone(t *testing.T) {
	src := openFS(t, vfs.NewMem()).StateStore(1)
	populate(t, src, 12, 40000)
	idx, img := streamed(t, src)
	ls := openFS(t, vfs.NewMem()).LogStore(1)
	old, err := ls.StageImage(idx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.Write(img[:stageChunkBytes+100]); err != nil { // a chunk stored, more buffered
		t.Fatal(err)
	}
	fresh, err := ls.StageImage(idx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fresh.Write(img); err != nil {
		t.Fatal(err)
	}
	if _, err := old.Write(img[:stageChunkBytes]); !errors.Is(err, errSuperseded) {
		t.Fatalf("a superseded sink wrote a chunk: %v", err)
	}
	if size, err := fresh.Commit(); err != nil || size != int64(len(img)) {
		t.Fatalf("commit of the new staging = %d, %v", size, err)
	}
	old.Abort()
	if _, err := old.Commit(); err == nil {
		t.Fatal("a superseded sink committed")
	}
	r, size, ok, err := ls.OpenStagedImage(idx)
	if !ok || err != nil || size != int64(len(img)) {
		t.Fatalf("the new staging after the old one's abort: %d %t %v", size, ok, err)
	}
	if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, img) {
		t.Fatalf("staged image reads back %d bytes (%v), want %d", len(got), err, len(img))
	}
}
