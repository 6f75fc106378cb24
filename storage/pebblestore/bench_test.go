package pebblestore

import (
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap"
)

// BenchmarkSaveSynced: one Ready's worth of log (64 entries of 256 bytes)
// appended with fsync, on the real filesystem. Bytes counted: entry payloads.
func BenchmarkSaveSynced(b *testing.B) {
	db, err := Open(b.TempDir(), Options{FS: vfs.Default, Logger: zap.NewNop()})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	ls := db.LogStore(1)
	const n, size = 64, 256
	batch := ents(1, n, 1, size)
	b.SetBytes(n * size)
	b.ReportAllocs()
	var next uint64 = 1
	for b.Loop() {
		for i, e := range batch {
			idx := next + uint64(i)
			e.Index = &idx
		}
		commit := next + n - 1
		if err := ls.Save(hardState(1, 1, commit), batch, nil, true); err != nil {
			b.Fatal(err)
		}
		next += n
	}
}

// BenchmarkStateCommit: one applied command's writes (4 keys of 200 bytes)
// committed with its applied index, unsynced, on the real filesystem.
func BenchmarkStateCommit(b *testing.B) {
	db, err := Open(b.TempDir(), Options{FS: vfs.Default, Logger: zap.NewNop()})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	st := db.StateStore(1)
	val := make([]byte, 200)
	b.SetBytes(4 * int64(len(val)))
	b.ReportAllocs()
	var index uint64
	for b.Loop() {
		index++
		batch := st.NewBatch()
		for k := range 4 {
			if err := batch.Set(fmt.Appendf(nil, "payment/%08d/%d", index%10000, k), val); err != nil {
				b.Fatal(err)
			}
		}
		if err := batch.Commit(index); err != nil {
			b.Fatal(err)
		}
		_ = batch.Close()
	}
}
