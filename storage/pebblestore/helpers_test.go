package pebblestore

import (
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap/zaptest"
)

const testDir = "/db"

// openFS opens a DB in testDir on fs and closes it at the end of the test
// unless the test closed it.
func openFS(t testing.TB, fs vfs.FS) *DB {
	t.Helper()
	db, err := Open(testDir, Options{FS: fs, Logger: zaptest.NewLogger(t), CacheSize: 1 << 20, MemTableSize: 1 << 20})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func ent(index, term uint64, data string) *raftpb.Entry {
	return &raftpb.Entry{Index: &index, Term: &term, Type: raftpb.EntryNormal.Enum(), Data: []byte(data)}
}

// ents returns entries lo..hi inclusive at term, with data of size bytes.
func ents(lo, hi, term uint64, size int) []*raftpb.Entry {
	var out []*raftpb.Entry
	for i := lo; i <= hi; i++ {
		d := make([]byte, size)
		for j := range d {
			d[j] = byte(i + uint64(j))
		}
		out = append(out, ent(i, term, string(d)))
	}
	return out
}

func hardState(term, vote, commit uint64) *raftpb.HardState {
	return &raftpb.HardState{Term: &term, Vote: &vote, Commit: &commit}
}

func snapshot(index, term uint64, voters []uint64, data string) *raftpb.Snapshot {
	return &raftpb.Snapshot{
		Data: []byte(data),
		Metadata: &raftpb.SnapshotMetadata{
			Index: &index, Term: &term,
			ConfState: raftpb.EnsureConfState(&raftpb.ConfState{Voters: voters}),
		},
	}
}
