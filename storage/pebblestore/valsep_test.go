package pebblestore

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap/zaptest"
)

// TestValueSeparation: with value separation on (the default), values of
// at least the minimum size land in blob files once flushed, and every
// value reads back whole after a compaction and a reopen; with it off no
// blob file is written. (Pebble ignores the policy silently when the
// format is too old, hence the check on the files themselves.)
func TestValueSeparation(t *testing.T) {
	tests := []struct {
		name     string
		min      int
		wantBlob bool
	}{
		{"default", 0, true},
		{"off", -1, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs := vfs.NewMem()
			opts := Options{FS: fs, Logger: zaptest.NewLogger(t), CacheSize: 1 << 20, MemTableSize: 1 << 20, ValueSeparationMinSize: tc.min}
			db, err := Open(testDir, opts)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string][]byte{}
			b := db.StateStore(1).NewBatch()
			for i := range 200 {
				size := DefaultValueSeparationMinSize + i // at and over the minimum
				if i%2 == 1 {
					size = i % DefaultValueSeparationMinSize // under it
				}
				k, v := fmt.Sprintf("rec/%03d", i), bytes.Repeat([]byte{byte(i)}, size)
				want[k] = v
				if err := b.Set([]byte(k), v); err != nil {
					t.Fatal(err)
				}
			}
			if err := b.Commit(1); err != nil {
				t.Fatal(err)
			}
			b.Close()
			if err := db.pdb.Flush(); err != nil {
				t.Fatal(err)
			}
			if err := db.pdb.Compact(context.Background(), []byte{0}, []byte{0xff}, false); err != nil {
				t.Fatal(err)
			}
			names, err := fs.List(testDir)
			if err != nil {
				t.Fatal(err)
			}
			blobs := 0
			for _, n := range names {
				if strings.HasSuffix(n, ".blob") {
					blobs++
				}
			}
			if got := blobs > 0; got != tc.wantBlob {
				t.Fatalf("%d blob files in %v; want some: %v", blobs, names, tc.wantBlob)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}

			db, err = Open(testDir, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			for k, v := range want {
				got, err := db.StateStore(1).Get([]byte(k))
				if err != nil || !bytes.Equal(got, v) {
					t.Fatalf("%s after reopen: %d bytes, %v; want %d bytes", k, len(got), err, len(v))
				}
			}
		})
	}
}
