package cluster

import (
	"context"
	"time"

	"go.uber.org/zap"
)

// VersionCheckEvery is how often a node retries its version report until
// it lands and how often the leader looks whether the cluster version
// gate can move (a rolling upgrade is done when the last member restarted
// on the new binary; the gate follows within this period).
const VersionCheckEvery = time.Second

// versionCheckSoon is the period while this node's report has not landed
// or the cluster runs an older version than this binary: a new cluster
// (and the last node of an upgrade) reaches its version within a few
// heartbeats instead of a second, so clients see the new formats soon.
const versionCheckSoon = 100 * time.Millisecond

// versionLoop reports this node's binary versions to the replicated state
// (until it lands: at start there may be no leader yet) and, while this
// node leads, moves the cluster version gate once every member supports
// the next version.
func (n *Node) versionLoop(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	reported := false
	for {
		if !reported {
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := n.svc.ReportVersion(rctx, n.cfg.ID)
			cancel()
			if err == nil {
				reported = true
			} else if ctx.Err() == nil {
				n.log.Debug("version report not recorded yet; retrying", zap.Error(err))
			}
		}
		if n.raft.Leadership().IsLeader {
			members := n.raft.Members()
			ids := make([]uint64, 0, len(members))
			for _, m := range members {
				ids = append(ids, m.ID)
			}
			actx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := n.svc.AdvanceClusterVersion(actx, ids)
			cancel()
			if err != nil && ctx.Err() == nil {
				n.log.Warn("cluster version gate", zap.Error(err))
			}
		}
		next := VersionCheckEvery
		if !reported || n.machine.ClusterVersion() < n.versions.Max {
			next = versionCheckSoon
		}
		t.Reset(next)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
