package txswitch

import "fmt"

// stateSyncer is a Store that can make its applied state durable without
// copying it (pebblestore.StateStore).
type stateSyncer interface {
	SyncState() (uint64, error)
}

// SyncState makes the applied state durable and returns an index whose
// state (or a later one) survives a crash; consensus then records its own
// snapshots as metadata only and builds an image only for a follower that
// needs one (consensus.StateSyncer). It does not take applyMu: the store's
// SyncState is safe concurrently with Apply, and holding the lock would
// stall apply for the length of a sync. A store without SyncState holds
// its state in memory: there is nothing to sync, and its applied index is
// the answer.
func (m *Machine) SyncState() (uint64, error) {
	if s, ok := m.store.(stateSyncer); ok {
		idx, err := s.SyncState()
		if err != nil {
			return 0, fmt.Errorf("sync state: %w", err)
		}
		return idx, nil
	}
	return m.AppliedIndex(), nil
}
