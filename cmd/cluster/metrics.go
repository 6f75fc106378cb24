package cluster

import (
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	txswitch "github.com/txswitch/txswitch/switch"
)

// nodeCollector serves the node's state as Prometheus metrics, read at
// scrape time from what `txswitch status` shows (raft, outbox, versions)
// and from the state's open intents, so an alert needs no polling of the
// admin API: no leader, a follower falling behind, a cluster stuck between
// versions, payments in doubt for too long, an export backlog.
// docs/operations.md lists them with the alerts they are for.
type nodeCollector struct {
	n      *Node
	errors atomic.Uint64
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	mTerm      = desc("txswitch_raft_term", "Raft term this node is at.")
	mCommit    = desc("txswitch_raft_commit_index", "Highest log index this node knows committed.")
	mApplied   = desc("txswitch_raft_applied_index", "Highest log index this node applied to its state.")
	mSnapshot  = desc("txswitch_raft_snapshot_index", "Log index of this node's latest snapshot (the log before it is compacted).")
	mIsLeader  = desc("txswitch_raft_is_leader", "1 if this node leads; the sum over the members is 1 in a healthy cluster.")
	mHasLeader = desc("txswitch_raft_has_leader", "1 if this node knows a leader; 0 on every member means the cluster takes no writes. 0 on a node removed from the cluster.")
	mRemoved   = desc("txswitch_raft_removed", "1 if this node was removed from the cluster while it ran: it serves nothing (503 removed_from_cluster); stop it.")
	mMembers   = desc("txswitch_raft_members", "Voting members in this node's view of the configuration.")
	mLag       = desc("txswitch_raft_follower_lag_entries", "On the leader: committed entries a member has not acknowledged (its match index behind the commit index).", "member")
	mActive    = desc("txswitch_raft_follower_active", "On the leader: 1 if the member answered within the last election timeout.", "member")
	mBacklog   = desc("txswitch_outbox_backlog_events", "Outbox events after the export watermark: not yet exported (about a second of traffic waits for the exporter's next batch; grows while the central database is down or absent: the journal keeps them).")
	mConfig    = desc("txswitch_routing_config_version", "Version of the routing configuration this node applied (0: none).")
	mClusterV  = desc("txswitch_cluster_version", "Cluster version in force: the journal and command formats every member can apply.")
	mBinaryV   = desc("txswitch_binary_version_max", "Highest cluster version this node's binary runs; above txswitch_cluster_version while a release rolls out.")
	mIntents   = desc("txswitch_intents", "Money-moving provider calls without a committed final result, by state: in_flight (the call is out), in_doubt (no definite answer; the resolver asks the provider), pending (a redirect waiting for the shopper), amount_mismatch (the provider approved another amount: an operator must settle it).", "state")
	mOldest    = desc("txswitch_intent_oldest_age_seconds", "Age of the oldest open intent in each state (absent when there is none).", "state")
	mErrors    = desc("txswitch_node_metrics_errors_total", "Scrapes that could not read part of the node's state (those metrics were left out).")
)

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{mTerm, mCommit, mApplied, mSnapshot, mIsLeader, mHasLeader, mRemoved, mMembers, mLag, mActive,
		mBacklog, mConfig, mClusterV, mBinaryV, mIntents, mOldest, mErrors} {
		ch <- d
	}
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	st, err := c.n.NodeStatus()
	r := st.Raft // filled even when a later part of the status failed
	gauge(mTerm, float64(r.Term))
	gauge(mCommit, float64(r.Commit))
	gauge(mApplied, float64(r.Applied))
	gauge(mSnapshot, float64(r.SnapshotIndex))
	gauge(mIsLeader, boolValue(r.State == "StateLeader"))
	// A removed node's raft keeps its last view of the leader, which no
	// longer leads it: it has none.
	gauge(mHasLeader, boolValue(r.Leader != 0 && !r.Removed))
	gauge(mRemoved, boolValue(r.Removed))
	gauge(mMembers, float64(len(r.Members)))
	for id, p := range r.Progress {
		if id == r.ID {
			continue
		}
		member := strconv.FormatUint(id, 10)
		gauge(mLag, float64(r.Commit-min(p.Match, r.Commit)), member)
		gauge(mActive, boolValue(p.RecentActive), member)
	}
	if err == nil {
		gauge(mBacklog, float64(st.Outbox.Backlog))
		gauge(mConfig, float64(st.ConfigVersion))
		gauge(mClusterV, float64(st.Versions.Cluster))
		gauge(mBinaryV, float64(st.Versions.Binary.Max))
		now := time.Now()
		for _, s := range txswitch.IntentStates {
			gauge(mIntents, float64(st.Intents.Count[s]), s)
			if at, ok := st.Intents.Oldest[s]; ok {
				gauge(mOldest, max(now.Sub(at).Seconds(), 0), s)
			}
		}
	} else {
		c.errors.Add(1)
	}
	ch <- prometheus.MustNewConstMetric(mErrors, prometheus.CounterValue, float64(c.errors.Load()))
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
