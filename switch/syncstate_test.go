package txswitch_test

import (
	"errors"
	"testing"

	txswitch "github.com/txswitch/txswitch/switch"
	"github.com/txswitch/txswitch/switch/memory"
)

// syncingStore is a memory store that counts SyncState calls, as
// pebblestore.StateStore would sync its WAL.
type syncingStore struct {
	*memory.Store
	syncs int
	err   error
}

func (s *syncingStore) SyncState() (uint64, error) {
	s.syncs++
	idx, err := s.AppliedIndex()
	if err != nil {
		return 0, err
	}
	return idx, s.err
}

func TestMachineSyncStateDelegatesToTheStore(t *testing.T) {
	h := newHarness(t)
	h.createOrder(1000)
	applied, err := h.store.AppliedIndex()
	if err != nil {
		t.Fatal(err)
	}
	// A store without SyncState: the machine answers with its image's index.
	if idx, err := h.m.SyncState(); err != nil || idx != applied {
		t.Fatalf("memory store: %d %v, want %d", idx, err, applied)
	}
	st := &syncingStore{Store: h.store}
	m, err := txswitch.NewMachine(st)
	if err != nil {
		t.Fatal(err)
	}
	if idx, err := m.SyncState(); err != nil || idx != applied || st.syncs != 1 {
		t.Fatalf("syncing store: %d %v after %d syncs", idx, err, st.syncs)
	}
	st.err = errors.New("disk gone")
	if _, err := m.SyncState(); err == nil {
		t.Fatal("a failed sync was reported as durable")
	}
}
