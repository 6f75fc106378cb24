package cluster

import (
	"testing"
	"time"

	txswitch "github.com/txswitch/txswitch/switch"
)

// A follower that was down while the leader compacted its log past the
// follower's last entry (LagRetain no larger than SnapshotKeep: the leader
// keeps nothing more for it) can only catch up from a snapshot image of the
// payment state machine (built on demand from Pebble): afterwards it serves
// every order and payment exactly as the leader does.
func TestLaggingNodeCatchesUpFromAPaymentStateSnapshot(t *testing.T) {
	const every, keep = 40, 10
	l, leaderAddr, slot := startStreaming(t, LocalConfig{ResolveEvery: 100 * time.Millisecond, SnapshotEvery: every, SnapshotKeep: keep, LagRetain: keep})
	stoppedAt := l.Node(slot).raft.Status().Applied
	if err := l.StopNode(slot); err != nil {
		t.Fatal(err)
	}
	type paid struct {
		order   string
		payment txswitch.Payment
	}
	var all []paid
	for range 60 {
		o := e2eCreateOrder(t, l, leaderAddr, e2eOrderReq(1250, "EUR", "NL"))
		r, p := e2ePay(t, l, leaderAddr, o.ID, txswitch.CreatePaymentRequest{Method: "card"})
		if r.Status != 201 {
			t.Fatalf("pay: %d %s", r.Status, r.Body)
		}
		all = append(all, paid{o.ID, p})
	}
	var lead *Node
	for _, n := range l.Nodes() {
		if n.raft.Leadership().IsLeader {
			lead = n
		}
	}
	if lead == nil {
		t.Fatal("no leader")
	}
	// The leader compacts to SnapshotIndex-keep: past the stopped node's
	// last entry, the log cannot catch it up.
	waitFor(t, 20*time.Second, "the leader to compact past the stopped follower", func() bool {
		return lead.raft.Status().SnapshotIndex > stoppedAt+keep+1
	})
	if err := l.RestartNode(slot); err != nil {
		t.Fatal(err)
	}
	n := l.Node(slot)
	waitFor(t, 30*time.Second, "the restarted follower to catch up", func() bool {
		st := n.raft.Status()
		return st.Applied >= lead.raft.Status().Commit && st.SnapshotIndex > stoppedAt
	})
	// The cluster runs version 4 (VersionStreamedImages): the image came
	// as a stream, was staged, restored from, and dropped.
	snap, err := n.db.LogStore(n.cfg.Group).Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if d := snap.GetData(); len(d) == 0 || d[0] != 3 {
		t.Fatalf("installed snapshot data starts %x, want envelope 3 (image streamed)", d[:min(len(d), 1)])
	}
	if _, _, ok, err := n.db.LogStore(n.cfg.Group).OpenStagedImage(snap.GetMetadata().GetIndex()); ok || err != nil {
		t.Fatalf("staged image left after the restore (%v)", err)
	}
	for _, pp := range all {
		o := e2eGetOrder(t, l, n.APIAddr(), pp.order)
		if o.Status != txswitch.OrderPaid || len(o.Payments) != 1 || o.Payments[0].ID != pp.payment.ID || o.Captured.Value != pp.payment.Captured.Value {
			t.Fatalf("restarted follower serves order %s as %+v, want paid by %s", pp.order, o, pp.payment.ID)
		}
	}
}
