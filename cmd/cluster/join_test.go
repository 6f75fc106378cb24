package cluster

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/txswitch/txswitch/consensus"
	txswitch "github.com/txswitch/txswitch/switch"
)

func hasMember(ms []consensus.Peer, id uint64) bool {
	for _, m := range ms {
		if m.ID == id {
			return true
		}
	}
	return false
}

// A node whose disk was wiped must not come back under its old id (it
// would have forgotten its vote and its log): it refuses to start without
// --join, and with --join it becomes a NEW member that catches up.
func TestWipedNodeRejoinsAsANewMember(t *testing.T) {
	l, err := StartLocal(LocalConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var o txswitch.Order
	if code := call(t, l, l.Node(e2eLeaderIndex(t, l)).APIAddr(), "POST", "/v1/orders", "before-wipe", txswitch.CreateOrderRequest{
		Reference: "before", Amount: txswitch.Money{Value: 1000, Currency: "EUR"}, Customer: txswitch.Customer{Country: "NL"}, Channel: "online",
	}, &o); code != 201 {
		t.Fatalf("create order: %d", code)
	}

	victim := (e2eLeaderIndex(t, l) + 1) % l.Size()
	cfg := l.configs[victim]
	oldID := cfg.ID
	if err := l.StopNode(victim); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(cfg.DataDir); err != nil {
		t.Fatal(err)
	}

	// Restarting the wiped dir is refused: without bootstrap settings the
	// dir has no identity; with its usual ones (as an operator's unchanged
	// command would), the others know the id ran before.
	restart := cfg
	restart.Bootstrap = nil
	if _, err := Start(restart); err == nil || !strings.Contains(err.Error(), "no node identity") {
		t.Fatalf("wiped node restarted without joining: %v", err)
	}
	if err := os.RemoveAll(cfg.DataDir); err != nil {
		t.Fatal(err)
	}
	if _, err := Start(cfg); err == nil || !strings.Contains(err.Error(), "--join") {
		t.Fatalf("wiped node bootstrapped again under its old id %d: %v", oldID, err)
	}
	if err := os.RemoveAll(cfg.DataDir); err != nil {
		t.Fatal(err)
	}

	leader := l.Node(e2eLeaderIndex(t, l))
	if err := leader.Raft().RemoveMember(t.Context(), oldID); err != nil {
		t.Fatalf("remove the wiped member: %v", err)
	}
	joiner := cfg
	joiner.ID = 0
	joiner.Bootstrap = nil
	joiner.Join = leader.APIAddr()
	joiner.DataDir = filepath.Join(l.Dir(), "rejoined")
	n, err := Start(joiner)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Stop()
	if n.ID() == oldID || n.ID() == 0 {
		t.Fatalf("rejoined with id %d; old id was %d", n.ID(), oldID)
	}
	waitFor(t, 10*time.Second, "the new member in the leader's membership", func() bool {
		ms := leader.Raft().Members()
		return hasMember(ms, n.ID()) && !hasMember(ms, oldID)
	})
	// The new member catches up and serves the order written before it
	// existed (a linearizable read through ReadIndex).
	var got txswitch.Order
	waitFor(t, 10*time.Second, "the rejoined node to serve reads", func() bool {
		return call(t, l, n.APIAddr(), "GET", "/v1/orders/"+o.ID, "", nil, &got) == 200 && got.ID == o.ID
	})
	// Its identity is bound to the new dir: a restart keeps the new id.
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	again := joiner
	n2, err := Start(again)
	if err != nil {
		t.Fatal(err)
	}
	defer n2.Stop()
	if n2.ID() != n.ID() {
		t.Fatalf("restart changed the id from %d to %d", n.ID(), n2.ID())
	}
}
