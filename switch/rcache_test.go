package txswitch_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"testing"

	txswitch "github.com/txswitch/txswitch/switch"
	"github.com/txswitch/txswitch/switch/memory"
)

func goldenEntries(t *testing.T) []txswitch.Command {
	t.Helper()
	raw, err := os.ReadFile(goldenLog)
	if err != nil {
		t.Fatal(err)
	}
	var entries []txswitch.Command
	if err := json.Unmarshal(raw, &entries); err != nil {
		t.Fatal(err)
	}
	return entries
}

// TestRecordCacheCoherent applies the golden log in uneven batches and
// checks after every Apply that each cached record is exactly the
// committed store value.
func TestRecordCacheCoherent(t *testing.T) {
	entries := goldenEntries(t)
	m, err := txswitch.NewMachine(memory.NewStore())
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for i := 0; i < len(entries); {
		n := min(1+i%4, len(entries)-i)
		if _, err := m.Apply(entries[i : i+n]); err != nil {
			t.Fatal(err)
		}
		i += n
		c, err := txswitch.CheckRecordCache(m)
		if err != nil {
			t.Fatalf("after entry %d: %v", entries[i-1].Index, err)
		}
		checked += c
	}
	if checked < 1000 || txswitch.RecordCacheLen(m) == 0 {
		t.Fatalf("checked only %d cached records", checked)
	}
}

// TestRecordCacheAcrossRestoreAndFailure: a machine whose cache saw other
// states (a state later replaced by Restore, a batch whose commit failed)
// still ends byte-identical to a straight replay.
func TestRecordCacheAcrossRestoreAndFailure(t *testing.T) {
	entries := goldenEntries(t)
	half := len(entries) / 2

	// Reference: a straight replay.
	ref := memory.NewStore()
	mref, _ := txswitch.NewMachine(ref)
	if _, err := mref.Apply(entries); err != nil {
		t.Fatal(err)
	}
	// Snapshot of the first half, from another machine.
	s1 := memory.NewStore()
	m1, _ := txswitch.NewMachine(s1)
	if _, err := m1.Apply(entries[:half]); err != nil {
		t.Fatal(err)
	}
	idx, img, err := m1.Snapshot()
	if err != nil {
		t.Fatal(err)
	}

	for _, failCommit := range []bool{false, true} {
		// The machine under test runs ahead (filling its cache with states
		// the snapshot does not have), is restored to the snapshot,
		// possibly has a commit fail, and then applies the rest.
		s := memory.NewStore()
		m, _ := txswitch.NewMachine(s)
		if _, err := m.Apply(entries); err != nil {
			t.Fatal(err)
		}
		if txswitch.RecordCacheLen(m) == 0 {
			t.Fatal("nothing cached")
		}
		if err := m.Restore(idx, img); err != nil {
			t.Fatal(err)
		}
		if failCommit {
			s.FailNextCommit(errors.New("disk full"))
			if _, err := m.Apply(entries[half : half+5]); err == nil {
				t.Fatal("commit failure not reported")
			}
		}
		replayRest(t, m, entries, half)
		if !bytes.Equal(s.Dump(), ref.Dump()) {
			t.Fatalf("failCommit=%v: state after restore differs:\n%s", failCommit, firstDiff(s.Dump(), ref.Dump()))
		}
	}
}

func replayRest(t *testing.T, m *txswitch.Machine, entries []txswitch.Command, from int) {
	t.Helper()
	for i := from; i < len(entries); i += 3 {
		if _, err := m.Apply(entries[i:min(i+3, len(entries))]); err != nil {
			t.Fatal(err)
		}
		if _, err := txswitch.CheckRecordCache(m); err != nil {
			t.Fatalf("after entry %d: %v", i, err)
		}
	}

}
