package pebblestore

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	txswitch "github.com/txswitch/txswitch/switch"
)

type kv struct{ k, v string }

func scanAll(t *testing.T, r txswitch.Reader, start, end string) []kv {
	t.Helper()
	var out []kv
	var s, e []byte
	if start != "" {
		s = []byte(start)
	}
	if end != "" {
		e = []byte(end)
	}
	if err := r.Scan(s, e, func(k, v []byte) bool {
		out = append(out, kv{string(k), string(v)})
		return true
	}); err != nil {
		t.Fatalf("scan [%q, %q): %v", start, end, err)
	}
	return out
}

func commitKVs(t *testing.T, st *StateStore, index uint64, kvs ...kv) {
	t.Helper()
	b := st.NewBatch()
	defer b.Close()
	for _, p := range kvs {
		if err := b.Set([]byte(p.k), []byte(p.v)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Commit(index); err != nil {
		t.Fatalf("commit %d: %v", index, err)
	}
}

func TestStateStoreReadsAndBatch(t *testing.T) {
	db := openFS(t, vfs.NewMem())
	st := db.StateStore(1)
	commitKVs(t, st, 3, kv{"a", "1"}, kv{"b", "2"}, kv{"c", "3"}, kv{"d", "4"})
	// Another group's keys, including one sorting right after group 1's
	// range, must never show up.
	commitKVs(t, db.StateStore(2), 9, kv{"a", "other"}, kv{"", "empty-key"})

	b := st.NewBatch()
	defer b.Close()
	if err := b.Set([]byte("bb"), []byte("new")); err != nil {
		t.Fatal(err)
	}
	if err := b.Delete([]byte("c")); err != nil {
		t.Fatal(err)
	}
	if err := b.Set([]byte("a"), []byte("1'")); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name       string
		r          txswitch.Reader
		start, end string
		want       []kv
	}{
		{"store all", st, "", "", []kv{{"a", "1"}, {"b", "2"}, {"c", "3"}, {"d", "4"}}},
		{"store range", st, "b", "d", []kv{{"b", "2"}, {"c", "3"}}},
		{"store open end", st, "c", "", []kv{{"c", "3"}, {"d", "4"}}},
		{"batch sees own writes", b, "", "", []kv{{"a", "1'"}, {"b", "2"}, {"bb", "new"}, {"d", "4"}}},
		{"batch range", b, "b", "c", []kv{{"b", "2"}, {"bb", "new"}}},
		{"empty range", st, "x", "y", nil},
		{"inverted range", st, "d", "b", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := scanAll(t, tc.r, tc.start, tc.end); !slices.Equal(got, tc.want) {
				t.Fatalf("scan = %v; want %v", got, tc.want)
			}
		})
	}

	gets := []struct {
		name    string
		r       txswitch.Reader
		key     string
		want    string
		wantErr error
	}{
		{"store hit", st, "a", "1", nil},
		{"store miss", st, "bb", "", txswitch.ErrNotFound},
		{"batch overwrite", b, "a", "1'", nil},
		{"batch insert", b, "bb", "new", nil},
		{"batch delete", b, "c", "", txswitch.ErrNotFound},
	}
	for _, tc := range gets {
		t.Run(tc.name, func(t *testing.T) {
			v, err := tc.r.Get([]byte(tc.key))
			if !errors.Is(err, tc.wantErr) || string(v) != tc.want {
				t.Fatalf("Get(%q) = %q, %v; want %q, %v", tc.key, v, err, tc.want, tc.wantErr)
			}
		})
	}

	// Scan stops when fn returns false.
	var n int
	if err := st.Scan(nil, nil, func(k, v []byte) bool { n++; return n < 2 }); err != nil || n != 2 {
		t.Fatalf("early stop: %d calls, %v", n, err)
	}

	if err := b.Commit(4); err != nil {
		t.Fatal(err)
	}
	if got := scanAll(t, st, "", ""); !slices.Equal(got, []kv{{"a", "1'"}, {"b", "2"}, {"bb", "new"}, {"d", "4"}}) {
		t.Fatalf("after commit: %v", got)
	}
	if idx := must(st.AppliedIndex()); idx != 4 {
		t.Fatalf("applied = %d; want 4", idx)
	}
	if err := b.Set([]byte("z"), nil); err == nil {
		t.Fatal("Set after Commit succeeded")
	}
}

func TestStateBatchCommitRules(t *testing.T) {
	tests := []struct {
		name    string
		run     func(st *StateStore) error
		wantErr error // nil: any error
	}{
		{"applied index going back", func(st *StateStore) error {
			b := st.NewBatch()
			defer b.Close()
			_ = b.Set([]byte("k"), []byte("v"))
			return b.Commit(9)
		}, nil},
		{"batch too large", func(st *StateStore) error {
			b := st.NewBatch()
			defer b.Close()
			return b.Set([]byte("k"), make([]byte, DefaultMaxBatchBytes))
		}, ErrBatchTooLarge},
		{"commit twice", func(st *StateStore) error {
			b := st.NewBatch()
			defer b.Close()
			if err := b.Commit(11); err != nil {
				return fmt.Errorf("first commit: %w", errors.ErrUnsupported)
			}
			return b.Commit(12)
		}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := openFS(t, vfs.NewMem()).StateStore(1)
			commitKVs(t, st, 10, kv{"k", "10"})
			err := tc.run(st)
			if err == nil || errors.Is(err, errors.ErrUnsupported) || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) {
				t.Fatalf("error = %v; want %v", err, tc.wantErr)
			}
			if v := must(st.Get([]byte("k"))); string(v) != "10" {
				t.Fatalf("k = %q after refused batch", v)
			}
		})
	}
}

// TestSnapshotRestoreRoundTrip moves a group's state between two DBs through
// the image, and checks that restore replaces (not merges) the target state.
func TestSnapshotRestoreRoundTrip(t *testing.T) {
	src := openFS(t, vfs.NewMem()).StateStore(1)
	var want []kv
	for i := range 500 {
		p := kv{fmt.Sprintf("key/%04d", i), fmt.Sprintf("value-%d-%s", i, bytes.Repeat([]byte{'x'}, i%37))}
		want = append(want, p)
	}
	want = append(want, kv{"", "empty key"}, kv{"z", ""})
	slices.SortFunc(want, func(a, b kv) int { return bytes.Compare([]byte(a.k), []byte(b.k)) })
	commitKVs(t, src, 42, want...)

	index, img, err := src.SnapshotState()
	if err != nil || index != 42 {
		t.Fatalf("snapshot = %d, %v", index, err)
	}

	dstDB := openFS(t, vfs.NewMem())
	dst := dstDB.StateStore(5) // another group id: images are group-independent
	commitKVs(t, dst, 7, kv{"stale", "must go"}, kv{"key/0001", "old"})
	neighbour := dstDB.StateStore(6)
	commitKVs(t, neighbour, 3, kv{"n", "stays"})

	if err := dst.RestoreState(index, img); err != nil {
		t.Fatal(err)
	}
	if got := scanAll(t, dst, "", ""); !slices.Equal(got, want) {
		t.Fatalf("restored %d keys, want %d; first diff in %v", len(got), len(want), got[:min(3, len(got))])
	}
	if idx := must(dst.AppliedIndex()); idx != 42 {
		t.Fatalf("applied = %d; want 42", idx)
	}
	if v := must(neighbour.Get([]byte("n"))); string(v) != "stays" {
		t.Fatalf("neighbour group = %q", v)
	}
	// The image of the restored store is byte-identical: the format is canonical.
	_, img2, err := dst.SnapshotState()
	if err != nil || !bytes.Equal(img, img2) {
		t.Fatalf("re-snapshot differs (%v)", err)
	}
}

func TestRestoreRejectsBadImages(t *testing.T) {
	src := openFS(t, vfs.NewMem()).StateStore(1)
	commitKVs(t, src, 20, kv{"a", "1"}, kv{"b", "2"})
	_, img, err := src.SnapshotState()
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte {
		c := bytes.Clone(img)
		c[i] ^= 0x40
		return c
	}
	tests := []struct {
		name  string
		index uint64
		data  []byte
		want  error // nil: any error
	}{
		{"bit flip in a value", 20, flip(len(img) - 14), ErrCorruptImage},
		{"bit flip in the header", 20, flip(2), ErrCorruptImage},
		{"truncated", 20, img[:len(img)-1], ErrCorruptImage},
		{"empty", 20, nil, ErrCorruptImage},
		{"index differs from the image's", 21, img, ErrCorruptImage},
		{"behind the applied index", 2, img, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dst := openFS(t, vfs.NewMem()).StateStore(1)
			commitKVs(t, dst, 5, kv{"keep", "me"})
			err := dst.RestoreState(tc.index, tc.data)
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("restore error = %v; want %v", err, tc.want)
			}
			if got := scanAll(t, dst, "", ""); !slices.Equal(got, []kv{{"keep", "me"}}) || must(dst.AppliedIndex()) != 5 {
				t.Fatalf("state changed by a refused restore: %v", got)
			}
		})
	}
	// "behind the applied index" is refused only because dst is ahead.
	if tests[len(tests)-1].index >= 5 {
		t.Fatal("test table broken")
	}
}

func TestNodeID(t *testing.T) {
	fs := vfs.NewMem()
	db := openFS(t, fs)
	if _, ok, err := db.NodeID(); ok || err != nil {
		t.Fatalf("fresh dir has id (%v, %v)", ok, err)
	}
	if err := db.SetNodeID(0); err == nil {
		t.Fatal("id 0 accepted")
	}
	if err := db.SetNodeID(3); err != nil {
		t.Fatal(err)
	}
	if err := db.SetNodeID(3); err != nil {
		t.Fatalf("rebinding the same id: %v", err)
	}
	if err := db.SetNodeID(4); !errors.Is(err, ErrNodeIDMismatch) {
		t.Fatalf("rebinding another id: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	id, ok, err := openFS(t, fs).NodeID()
	if err != nil || !ok || id != 3 {
		t.Fatalf("after restart NodeID = %d, %v, %v", id, ok, err)
	}
}

// TestAppliedIndexFollowsEveryWriter checks the applied index Commit guards
// with after each way it can change: a commit, a restore (forward), and a
// reopen, where it comes from disk again.
func TestAppliedIndexFollowsEveryWriter(t *testing.T) {
	src := openFS(t, vfs.NewMem()).StateStore(1)
	commitKVs(t, src, 50, kv{"k", "50"})
	_, img, err := src.SnapshotState()
	if err != nil {
		t.Fatal(err)
	}

	fs := vfs.NewMem()
	db := openFS(t, fs)
	st := db.StateStore(1)
	commitKVs(t, st, 10, kv{"k", "10"})
	if err := st.RestoreState(50, img); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name  string
		index uint64
		ok    bool
	}{
		{"behind the restored index", 49, false},
		{"at the restored index", 50, true},
		{"past it", 60, true},
		{"behind the last commit", 59, false},
	}
	for _, s := range steps {
		b := st.NewBatch()
		_ = b.Set([]byte("k"), []byte(s.name))
		err := b.Commit(s.index)
		_ = b.Close()
		if (err == nil) != s.ok {
			t.Fatalf("%s: commit at %d: error %v, want ok=%v", s.name, s.index, err, s.ok)
		}
	}
	if i := must(st.AppliedIndex()); i != 60 {
		t.Fatalf("applied = %d; want 60", i)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	st = openFS(t, fs).StateStore(1)
	if i := must(st.AppliedIndex()); i != 60 {
		t.Fatalf("applied after reopen = %d; want 60", i)
	}
	b := st.NewBatch()
	defer b.Close()
	if err := b.Commit(59); err == nil {
		t.Fatal("commit behind the applied index accepted after reopen")
	}
}

// TestStateBatchDeleteRange: a range deletion hides committed keys and the
// batch's own earlier writes in range, not later writes or keys outside it,
// both through the batch and once committed; other groups are untouched.
func TestStateBatchDeleteRange(t *testing.T) {
	db := openFS(t, vfs.NewMem())
	st, other := db.StateStore(1), db.StateStore(2)
	commitKVs(t, st, 1, kv{"x/1", "1"}, kv{"x/2", "2"}, kv{"x/3", "3"}, kv{"x/4", "4"}, kv{"y", "y"})
	commitKVs(t, other, 1, kv{"x/2", "other"})

	b := st.NewBatch()
	defer b.Close()
	if err := b.Set([]byte("x/25"), []byte("before")); err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteRange([]byte("x/2"), []byte("x/4")); err != nil {
		t.Fatal(err)
	}
	if err := b.Set([]byte("x/3"), []byte("after")); err != nil {
		t.Fatal(err)
	}
	want := []kv{{"x/1", "1"}, {"x/3", "after"}, {"x/4", "4"}, {"y", "y"}}
	if got := scanAll(t, b, "", ""); !slices.Equal(got, want) {
		t.Fatalf("through the batch: %v; want %v", got, want)
	}
	if _, err := b.Get([]byte("x/2")); !errors.Is(err, txswitch.ErrNotFound) {
		t.Fatalf("get x/2 through the batch: %v; want not found", err)
	}
	for _, bad := range [][2]string{{"x/4", "x/2"}, {"x/2", "x/2"}} {
		if err := b.DeleteRange([]byte(bad[0]), []byte(bad[1])); err == nil {
			t.Fatalf("delete range [%s, %s) accepted", bad[0], bad[1])
		}
	}
	if err := b.Commit(2); err != nil {
		t.Fatal(err)
	}
	if got := scanAll(t, st, "", ""); !slices.Equal(got, want) {
		t.Fatalf("committed: %v; want %v", got, want)
	}
	if got := scanAll(t, other, "", ""); !slices.Equal(got, []kv{{"x/2", "other"}}) {
		t.Fatalf("other group: %v", got)
	}
}

// TestStateStoreView: a view keeps showing the state it was taken at
// (its group's keys only) while later batches commit, until Close.
func TestStateStoreView(t *testing.T) {
	db := openFS(t, vfs.NewMem())
	st := db.StateStore(1)
	commitKVs(t, st, 3, kv{"a", "1"}, kv{"b", "2"})
	commitKVs(t, db.StateStore(2), 4, kv{"a", "other"})
	v, err := st.View()
	if err != nil {
		t.Fatal(err)
	}
	commitKVs(t, st, 5, kv{"a", "1'"}, kv{"c", "3"})
	if got, err := v.Get([]byte("a")); err != nil || string(got) != "1" {
		t.Fatalf("view Get(a) = %q, %v; want the value it was taken with", got, err)
	}
	if _, err := v.Get([]byte("c")); !errors.Is(err, txswitch.ErrNotFound) {
		t.Fatalf("view Get(c) = %v: a key committed after the view", err)
	}
	var keys []string
	if err := v.Scan(nil, nil, func(k, val []byte) bool { keys = append(keys, string(k)+"="+string(val)); return true }); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(keys) != "[a=1 b=2]" {
		t.Fatalf("view Scan = %v", keys)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	if got, err := st.Get([]byte("a")); err != nil || string(got) != "1'" {
		t.Fatalf("store Get(a) = %q, %v", got, err)
	}
}
