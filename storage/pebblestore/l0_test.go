package pebblestore

import (
	"fmt"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap/zaptest"
)

// TestL0CompactionThreshold: overlapping flushes pile up in L0 until half
// the threshold, and from there pebble compacts them down. Three flushes
// stay three sublevels under the default (8, compacting at 4), and are
// compacted under pebble's own default of 4 (at 2), which shows the option
// reaches pebble.
func TestL0CompactionThreshold(t *testing.T) {
	tests := []struct {
		name      string
		threshold int
		compacted bool
	}{
		{"default", 0, false},
		{"pebble default", 4, true},
	}
	const flushes = 3
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := Options{FS: vfs.NewMem(), Logger: zaptest.NewLogger(t), CacheSize: 1 << 20, MemTableSize: 1 << 20, L0CompactionThreshold: tc.threshold}
			db, err := Open(testDir, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			st := db.StateStore(1)
			for f := range flushes {
				b := st.NewBatch()
				for i := range 50 { // the same keys each time: every table overlaps the others
					if err := b.Set([]byte(fmt.Sprintf("rec/%03d", i)), []byte(fmt.Sprintf("v%d", f))); err != nil {
						t.Fatal(err)
					}
				}
				if err := b.Commit(uint64(f + 1)); err != nil {
					t.Fatal(err)
				}
				b.Close()
				if err := db.pdb.Flush(); err != nil {
					t.Fatal(err)
				}
			}
			sublevels := func() int32 { return db.pdb.Metrics().Levels[0].Sublevels }
			if tc.compacted {
				deadline := time.Now().Add(10 * time.Second)
				for sublevels() >= flushes && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond)
				}
				if got := sublevels(); got >= flushes {
					t.Fatalf("L0 has %d sublevels after %d flushes over a threshold of %d: never compacted", got, flushes, tc.threshold)
				}
				return
			}
			time.Sleep(200 * time.Millisecond) // room for a compaction that should not start
			if got := sublevels(); got != flushes {
				t.Fatalf("L0 has %d sublevels after %d flushes, want %d: compacted under the threshold", got, flushes, flushes)
			}
		})
	}
}
