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

// versionLoop reports this node's binary versions to the replicated state
// (until it lands: at start there may be no leader yet) and, while this
// node leads, moves the cluster version gate once every member supports
// the next version.
func (n *Node) versionLoop(ctx context.Context) {
	t := time.NewTicker(VersionCheckEvery)
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
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
