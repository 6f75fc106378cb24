package consensus

import (
	"context"

	"go.etcd.io/raft/v3/raftpb"
)

func snapshotFor(index, term uint64, voters []uint64, data []byte) *raftpb.Snapshot {
	return &raftpb.Snapshot{
		Data: data,
		Metadata: &raftpb.SnapshotMetadata{
			Index:     new(index),
			Term:      new(term),
			ConfState: raftpb.EnsureConfState(&raftpb.ConfState{Voters: voters}),
		},
	}
}

func hardState(term, vote, commit uint64) *raftpb.HardState {
	return &raftpb.HardState{Term: new(term), Vote: new(vote), Commit: new(commit)}
}

// sync returns once the loop has handled everything queued before it and
// has no Ready pending (tests drive the cluster with it).
func (n *Node) sync() {
	c := make(chan struct{})
	if n.do(context.Background(), func() { n.idle = append(n.idle, c) }) != nil {
		return
	}
	select {
	case <-c:
	case <-n.donec:
	}
}

// silentFor is how many ticks ago n, as leader, last had an answer from
// member id (-1: never).
func (n *Node) silentFor(id uint64) int64 {
	c := make(chan int64, 1)
	if n.do(context.Background(), func() {
		heard, ok := n.heard[id]
		if !ok {
			c <- -1
			return
		}
		c <- int64(n.ticks - heard)
	}) != nil {
		return -1
	}
	return <-c
}
