package consensus

import (
	"context"
	"errors"
	"fmt"
	"go.uber.org/zap"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/txswitch/txswitch/consensus/consensustest"
	"github.com/txswitch/txswitch/consensus/memnet"
	txswitch "github.com/txswitch/txswitch/switch"
)

func TestElectionAndProposeOnEveryNode(t *testing.T) {
	for _, size := range []int{3, 5} {
		t.Run(fmt.Sprintf("%d-nodes", size), func(t *testing.T) {
			c := newCluster(t, size, 1, nil)
			lead := c.leader()
			st := lead.Status()
			if st.State != "StateLeader" || len(st.Progress) != size || len(st.Members) != size {
				t.Fatalf("leader status = %+v", st)
			}
			for _, m := range st.Members {
				if m.RaftAddr != addrOf(m.ID) || m.APIAddr != apiOf(m.ID) {
					t.Fatalf("member %+v has wrong addresses", m)
				}
			}
			if addr, ok := c.follower(lead.ID()).LeaderAPIAddr(); !ok || addr != apiOf(lead.ID()) {
				t.Fatalf("follower's LeaderAPIAddr = %q, %v", addr, ok)
			}
			// Every node, followers included, gets the result of its own entry.
			for _, n := range c.live() {
				id := fmt.Sprintf("p%d", n.ID())
				r := c.mustPropose(n, id, "k", id)
				if r.ID != id || r.Index == 0 {
					t.Fatalf("node %d got result %+v for %s", n.ID(), r, id)
				}
			}
			c.assertConverged()
			for _, n := range c.live() {
				for i := 1; i <= size; i++ {
					if got := c.member(n.ID()).sm.Count(fmt.Sprintf("p%d", i)); got != 1 {
						t.Fatalf("node %d applied p%d %d times", n.ID(), i, got)
					}
				}
			}
		})
	}
}

func TestConcurrentProposalsShareSyncs(t *testing.T) {
	c := newCluster(t, 3, 2, nil)
	lead := c.leader()
	before := c.member(lead.ID()).store.Syncs()
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			_, err := lead.Propose(context.Background(), put(fmt.Sprintf("c%d", i), "k", "v"))
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if syncs := c.member(lead.ID()).store.Syncs() - before; syncs >= n {
		t.Fatalf("%d proposals took %d synced saves: no batching", n, syncs)
	}
}

func TestMinorityRefusesMajorityContinues(t *testing.T) {
	c := newCluster(t, 5, 3, nil)
	lead := c.leader()
	ids := c.liveIDs()
	minority := []uint64{lead.ID(), c.follower(lead.ID()).ID()}
	var majority []uint64
	for _, id := range ids {
		if !slices.Contains(minority, id) {
			majority = append(majority, id)
		}
	}
	c.net.Partition(minority, majority)

	// The minority must answer with a definite error within the deadline
	// (no leader, dropped, or unknown outcome after the deadline).
	var wg sync.WaitGroup
	minorityOps := map[uint64]error{}
	var mu sync.Mutex
	for _, id := range minority {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_, err := c.node(id).Propose(ctx, put(fmt.Sprintf("minority-%d", id), "k", "m"))
			mu.Lock()
			minorityOps[id] = err
			mu.Unlock()
		})
	}
	newLead := c.leader(majority...)
	for i := range 5 {
		c.mustPropose(c.node(majority[i%len(majority)]), fmt.Sprintf("maj%d", i), "k", "v")
	}
	wg.Wait()
	for id, err := range minorityOps {
		if err == nil {
			t.Fatalf("minority node %d committed a proposal", id)
		}
		if !errors.Is(err, txswitch.ErrNoLeader) && !errors.Is(err, txswitch.ErrTimeout) && !errors.Is(err, txswitch.ErrDropped) {
			t.Fatalf("minority node %d: unexpected error %v", id, err)
		}
	}
	if err := c.node(minority[0]).ReadBarrier(ctxT(t, time.Second)); err == nil {
		t.Fatal("read barrier succeeded on the minority")
	}

	c.net.Heal()
	c.leader()
	c.mustPropose(newLead, "after-heal", "k", "h")
	c.assertConverged()
	for _, n := range c.live() {
		sm := c.member(n.ID()).sm
		for id := range minorityOps {
			if got := sm.Count(fmt.Sprintf("minority-%d", id)); got != 0 {
				t.Fatalf("node %d applied a minority proposal %d times", n.ID(), got)
			}
		}
		if got := sm.Get("k"); got != "h" {
			t.Fatalf("node %d: k = %q", n.ID(), got)
		}
	}
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// An entry the isolated old leader appended is overwritten by the new
// leader's log: its proposer must get ErrDropped, not silence.
func TestOverwrittenProposalIsDropped(t *testing.T) {
	c := newCluster(t, 3, 4, nil)
	old := c.leader()
	others := slices.DeleteFunc(c.liveIDs(), func(id uint64) bool { return id == old.ID() })
	c.net.Isolate(old.ID(), c.liveIDs())
	errc := make(chan error, 1)
	go func() {
		_, err := old.Propose(ctxT(t, 30*time.Second), put("lost", "k", "lost"))
		errc <- err
	}()
	c.waitFor("the old leader to append the proposal", func() bool {
		li, _ := c.member(old.ID()).store.LastIndex()
		return li > c.member(old.ID()).sm.AppliedIndex()
	})
	nl := c.leader(others...)
	for i := range 3 {
		c.mustPropose(nl, fmt.Sprintf("new%d", i), "k", "new")
	}
	c.net.Heal()
	err := <-errc
	if !errors.Is(err, txswitch.ErrDropped) {
		t.Fatalf("overwritten proposal: err = %v, want ErrDropped", err)
	}
	c.assertConverged()
	if got := c.member(old.ID()).sm.Count("lost"); got != 0 {
		t.Fatalf("dropped proposal applied %d times", got)
	}
}

func TestMembershipRemoveReaddReplace(t *testing.T) {
	c := newCluster(t, 3, 5, nil)
	lead := c.leader()
	victim := c.follower(lead.ID()).ID()
	ctx := ctxT(t, 20*time.Second)

	if err := c.follower(lead.ID()).RemoveMember(ctx, lead.ID()); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("membership change on a follower: %v", err)
	}
	if err := settled(ctx, func() error { return lead.RemoveMember(ctx, victim) }); err != nil {
		t.Fatal(err)
	}
	c.crash(victim)
	c.waitFor("members without the victim", func() bool {
		for _, n := range c.live() {
			if slices.ContainsFunc(n.Members(), func(p Peer) bool { return p.ID == victim }) {
				return false
			}
		}
		return true
	})
	c.mustPropose(lead, "after-remove", "k", "1")

	// Re-adding the same machine gives a NEW id, never the removed one.
	var newID uint64
	err := settled(ctx, func() (err error) { newID, err = lead.AddMember(ctx, addrOf(victim)+"-again", "api-again"); return err })
	if err != nil {
		t.Fatal(err)
	}
	if newID <= 3 {
		t.Fatalf("re-added member got id %d, want a never-used id > 3", newID)
	}
	c.join(newID)
	c.mustPropose(lead, "after-readd", "k", "2")
	c.waitApplied(c.member(lead.ID()).sm.AppliedIndex())

	// Replace another follower.
	var old uint64
	for _, id := range c.liveIDs() {
		if id != lead.ID() && id != newID {
			old = id
		}
	}
	var replID uint64
	err = settled(ctx, func() (err error) { replID, err = lead.ReplaceMember(ctx, old, addrOf(100), apiOf(100)); return err })
	if err != nil {
		t.Fatal(err)
	}
	if replID <= newID {
		t.Fatalf("replacement got id %d, want > %d", replID, newID)
	}
	c.crash(old)
	c.join(replID)
	c.mustPropose(lead, "after-replace", "k", "3")
	c.assertConverged()
	st := lead.Status()
	var ids []uint64
	for _, m := range st.Members {
		ids = append(ids, m.ID)
	}
	want := []uint64{lead.ID(), newID, replID}
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Fatalf("members = %v, want %v", ids, want)
	}
	if m, _ := (&membership{Members: st.Members}).get(replID); m.APIAddr != apiOf(100) {
		t.Fatalf("replacement's address = %+v", m)
	}
}

// A member may not be added at a raft or API address a current member has:
// it would be a voter no node runs (the auditor's phantom member 6 at
// member 1's own addresses made one real failure cost the quorum). Once
// the member holding the address is removed, or when ReplaceMember takes
// over that member's addresses, the address is free.
func TestAddMemberRefusesAnAddressInUse(t *testing.T) {
	c := newCluster(t, 3, 22, nil)
	lead := c.leader()
	ctx := ctxT(t, 20*time.Second)
	for _, tc := range []struct {
		name              string
		raftAddr, apiAddr string
		member            uint64
		api               bool // the API address is the one in use
	}{
		{"the leader's own addresses", addrOf(lead.ID()), apiOf(lead.ID()), lead.ID(), false},
		{"a follower's raft address", addrOf(c.follower(lead.ID()).ID()), "fresh:8080", c.follower(lead.ID()).ID(), false},
		{"a follower's API address, spelt in capitals", "fresh:7000", strings.ToUpper(apiOf(c.follower(lead.ID()).ID())), c.follower(lead.ID()).ID(), true},
	} {
		err := settled(ctx, func() error { _, err := lead.AddMember(ctx, tc.raftAddr, tc.apiAddr); return err })
		var ae *AddressInUseError
		if !errors.As(err, &ae) || ae.Member != tc.member || ae.API != tc.api {
			t.Fatalf("%s: err = %v, want the address of member %d in use (API %t)", tc.name, err, tc.member, tc.api)
		}
	}
	if got := lead.Members(); len(got) != 3 {
		t.Fatalf("members after refused adds: %+v", got)
	}
	if st := lead.Status(); len(st.Progress) != 3 {
		t.Fatalf("raft's voters after refused adds: %+v", st.Progress)
	}

	// Remove a member, then join a new one on the same addresses (the
	// runbook's replacement of a node): the removed member holds none.
	victim := c.follower(lead.ID()).ID()
	if err := settled(ctx, func() error { return lead.RemoveMember(ctx, victim) }); err != nil {
		t.Fatal(err)
	}
	c.crash(victim)
	var readded uint64
	if err := settled(ctx, func() (err error) { readded, err = lead.AddMember(ctx, addrOf(victim), apiOf(victim)); return err }); err != nil {
		t.Fatalf("re-add on the removed member's addresses: %v", err)
	}
	c.join(readded)
	c.mustPropose(lead, "after-readd", "k", "1")

	// ReplaceMember may give the new member the old one's addresses.
	var old uint64
	for _, id := range c.liveIDs() {
		if id != lead.ID() && id != readded {
			old = id
		}
	}
	var repl uint64
	if err := settled(ctx, func() (err error) { repl, err = lead.ReplaceMember(ctx, old, addrOf(old), apiOf(old)); return err }); err != nil {
		t.Fatalf("replace in place: %v", err)
	}
	c.crash(old)
	c.join(repl)
	c.mustPropose(lead, "after-replace", "k", "2")
	c.assertConverged()
	if m, ok := (&membership{Members: lead.Members()}).get(repl); !ok || m.RaftAddr != addrOf(old) || m.APIAddr != apiOf(old) {
		t.Fatalf("replacement %d = %+v, want the addresses of %d", repl, m, old)
	}
}

// settled calls change until it is not refused with ErrConfChangeInProgress
// (a leader just elected refuses membership changes until it has applied
// its log: "retry shortly") or ctx ends.
func settled(ctx context.Context, change func() error) error {
	for {
		err := change()
		if !errors.Is(err, ErrConfChangeInProgress) || ctx.Err() != nil {
			return err
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRemoveLeaderStepsDown(t *testing.T) {
	c := newCluster(t, 3, 6, nil)
	lead := c.leader()
	ctx := ctxT(t, 20*time.Second)
	if err := settled(ctx, func() error { return lead.RemoveMember(ctx, lead.ID()) }); err != nil {
		t.Fatal(err)
	}
	rest := slices.DeleteFunc(c.liveIDs(), func(id uint64) bool { return id == lead.ID() })
	nl := c.leader(rest...)
	if nl.ID() == lead.ID() {
		t.Fatal("removed leader still leads")
	}
	c.mustPropose(c.node(rest[0]), "after-leader-removal", "k", "v")
	c.crash(lead.ID())
	c.assertConverged()
}

// A member removed while it runs applies its own removal, after which raft
// keeps it a follower of the leader it knew, for ever: it is no longer
// promotable, and the leader sends it nothing more. It must know, and
// refuse at once what it can no longer do: a proposal (raft would forward
// it to the leader, which would commit it out of this node's sight) and a
// read (the leader's answer would not reach it). It still knows after a
// restart. The members that stay are not removed.
func TestRemovedMemberKnowsAndRefuses(t *testing.T) {
	c := newCluster(t, 3, 7, nil)
	lead := c.leader()
	victim := c.follower(lead.ID())
	ctx := ctxT(t, 20*time.Second)
	if err := settled(ctx, func() error { return lead.RemoveMember(ctx, victim.ID()) }); err != nil {
		t.Fatal(err)
	}
	c.waitFor("the removed member to apply its removal", victim.Removed)
	if st := victim.Status(); !st.Removed || st.State != "StateFollower" || st.Leader != lead.ID() {
		t.Fatalf("removed member's status: %+v", st)
	}
	for _, n := range c.live() {
		if n != victim && (n.Removed() || n.Status().Removed) {
			t.Fatalf("member %d says it was removed", n.ID())
		}
	}
	// Bounded only so that a regression fails instead of hanging: the
	// refusals are immediate.
	short, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := victim.Propose(short, put("from-removed", "k", "x")); !errors.Is(err, txswitch.ErrRemoved) {
		t.Fatalf("proposal on the removed member: %v, want ErrRemoved", err)
	}
	if err := victim.ReadBarrier(short); !errors.Is(err, txswitch.ErrRemoved) {
		t.Fatalf("read barrier on the removed member: %v, want ErrRemoved", err)
	}
	if _, err := victim.AddMember(short, addrOf(9), apiOf(9)); !errors.Is(err, txswitch.ErrRemoved) {
		t.Fatalf("membership change on the removed member: %v, want ErrRemoved", err)
	}
	c.mustPropose(lead, "after-removal", "k", "y")
	if got := c.member(lead.ID()).sm.Count("from-removed"); got != 0 {
		t.Fatalf("the removed member's proposal applied %d times", got)
	}

	c.crash(victim.ID())
	c.restart(victim.ID())
	if n := c.node(victim.ID()); !n.Removed() || !n.Status().Removed {
		t.Fatal("the removed member forgot its removal on restart")
	}
	if err := c.node(victim.ID()).ReadBarrier(short); !errors.Is(err, txswitch.ErrRemoved) {
		t.Fatalf("read barrier on the restarted removed member: %v, want ErrRemoved", err)
	}
}

// A node that fell behind the leader's compacted log catches up through a
// snapshot image built only when it is needed; the snapshots the nodes
// record for themselves carry no image. With a state machine that cannot
// sync without an image (ImageOnly), every record costs an image, but only
// the leader keeps one.
func TestLaggingNodeCatchesUpFromSnapshot(t *testing.T) {
	for _, tc := range []struct {
		name      string
		imageOnly bool
		streamed  bool
	}{
		{"state syncer", false, false},
		{"image only", true, false},
		{"streamed image", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, 3, 7, func(cfg *Config) {
				cfg.SnapshotEvery = 20
				cfg.SnapshotKeep = 5
				cfg.LagRetain = 5 // nothing kept for the lagging node
				if tc.imageOnly {
					cfg.StateMachine = consensustest.ImageOnly{SM: cfg.StateMachine}
				}
				if tc.streamed {
					cfg.StreamImages = func() bool { return true }
				}
			})
			lead := c.leader()
			lag := c.follower(lead.ID()).ID()
			c.crash(lag)
			for i := range 80 {
				c.mustPropose(lead, fmt.Sprintf("s%d", i), fmt.Sprintf("k%d", i%7), fmt.Sprint(i))
			}
			first, _ := c.member(lead.ID()).store.FirstIndex()
			if first <= c.member(lag).sm.AppliedIndex()+1 {
				t.Fatalf("leader's log not compacted past the lagging node (first %d)", first)
			}
			for _, id := range []uint64{1, 2, 3} {
				if id == lag {
					continue
				}
				snap, err := c.member(id).store.Snapshot()
				if err != nil || raft.IsEmptySnap(snap) {
					t.Fatalf("node %d: no snapshot recorded (%v)", id, err)
				}
				if _, _, hasImage, err := decodeSnapshotData(snap.GetData()); err != nil || hasImage {
					t.Fatalf("node %d: recorded snapshot has an image (%t) or is corrupt: %v", id, hasImage, err)
				}
			}
			c.restart(lag)
			c.assertConverged()
			if c.member(lag).sm.Restores() == 0 {
				t.Fatal("lagging node caught up without a snapshot")
			}
			// The snapshot it installed says how its image came.
			snap, err := c.member(lag).store.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			if got := snapshotStreamed(snap.GetData()); got != tc.streamed {
				t.Fatalf("installed snapshot streamed = %t, want %t", got, tc.streamed)
			}
			if staged := c.member(lag).store.Staged(); len(staged) != 0 {
				t.Fatalf("staged images left after the restore: %v", staged)
			}
			// The restored node knows everybody's address from the snapshot.
			if got := len(c.node(lag).Members()); got != 3 {
				t.Fatalf("restored node knows %d members", got)
			}
			// And it keeps working after a restart on its own snapshot.
			c.crash(lag)
			c.restart(lag)
			c.mustPropose(c.node(lag), "after-restart", "k", "x")
			c.assertConverged()
		})
	}
}

// TestLeaderKeepsTheLogForALaggingMember: while a follower is down, the
// leader's snapshots compact the log no further than the follower's match
// index, up to LagRetain entries behind the snapshot; the follower then
// catches up from the log, without a state image. Past LagRetain it needs
// one.
func TestLeaderKeepsTheLogForALaggingMember(t *testing.T) {
	for _, tc := range []struct {
		name      string
		lagRetain uint64
		proposals int
		snapshot  bool // the follower must be caught up by a snapshot
	}{
		{"absence within LagRetain: caught up from the log", 1000, 120, false},
		{"absence past LagRetain: caught up from a snapshot", 40, 120, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, 3, 11, func(cfg *Config) {
				cfg.SnapshotEvery = 20
				cfg.SnapshotKeep = 5
				cfg.LagRetain = tc.lagRetain
			})
			lead := c.leader()
			lag := c.follower(lead.ID()).ID()
			c.crash(lag)
			// What it needs next is what follows its durable log (which
			// may hold entries its state machine had not applied yet).
			lagLast, err := c.member(lag).store.LastIndex()
			if err != nil {
				t.Fatal(err)
			}
			for i := range tc.proposals {
				c.mustPropose(lead, fmt.Sprintf("r%d", i), fmt.Sprintf("k%d", i%5), fmt.Sprint(i))
			}
			st := lead.Status()
			if st.SnapshotIndex < lagLast+20 {
				t.Fatalf("leader's snapshot at %d, want one well past the lagging node's %d", st.SnapshotIndex, lagLast)
			}
			first, _ := c.member(lead.ID()).store.FirstIndex()
			kept := first <= lagLast+1
			if kept == tc.snapshot {
				t.Fatalf("leader's first index %d, lagging node's last entry %d, snapshot %d: log kept for it = %t", first, lagLast, st.SnapshotIndex, kept)
			}
			// The other follower is not behind: its own log is compacted
			// by SnapshotKeep alone, whatever the leader keeps.
			other := c.follower(lead.ID()) // the lagging node is down: not live
			if f, _ := c.member(other.ID()).store.FirstIndex(); f <= lagLast+1 {
				t.Fatalf("follower %d kept its log from %d: only a leader keeps it for others", other.ID(), f)
			}
			c.restart(lag)
			c.assertConverged()
			if got := c.member(lag).sm.Restores() > 0; got != tc.snapshot {
				t.Fatalf("lagging node restored a snapshot: %t, want %t", got, tc.snapshot)
			}
			// Once nobody is behind, the next snapshots compact again.
			for i := range 40 {
				c.mustPropose(lead, fmt.Sprintf("s%d", i), "k", fmt.Sprint(i))
			}
			if f, _ := c.member(lead.ID()).store.FirstIndex(); f <= lagLast+1 {
				t.Fatalf("leader still keeps its log from %d after the member caught up", f)
			}
		})
	}
}

func TestLeaderTransfer(t *testing.T) {
	c := newCluster(t, 3, 8, nil)
	lead := c.leader()
	to := c.follower(lead.ID()).ID()
	if err := lead.TransferLeadership(ctxT(t, 20*time.Second), to); err != nil {
		t.Fatal(err)
	}
	if nl := c.leader(); nl.ID() != to {
		t.Fatalf("leader = %d, want %d", nl.ID(), to)
	}
	c.mustPropose(c.node(to), "after-transfer", "k", "v")
}

// A transfer to a member the leader has not heard from within an election
// timeout (a stopped process) is refused at once, and nothing else
// changes: raft would have taken no proposals for an election timeout,
// and the call would have waited for its deadline. A transfer asked of a
// follower is refused too: only the leader knows whom it hears from.
func TestLeaderTransferRefusesAnInactiveMember(t *testing.T) {
	c := newCluster(t, 3, 23, nil)
	lead := c.leader()
	before := lead.Leadership()
	to := c.follower(lead.ID()).ID()
	other := slices.DeleteFunc(c.liveIDs(), func(id uint64) bool { return id == lead.ID() || id == to })[0]
	if err := c.node(other).TransferLeadership(ctxT(t, 10*time.Second), other); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("transfer asked of a follower: %v, want ErrNotLeader", err)
	}
	c.crash(to)
	c.waitFor("an election timeout without an answer from the stopped member", func() bool {
		return lead.silentFor(to) > int64(DefaultElectionTick)
	})
	if err := lead.TransferLeadership(ctxT(t, 10*time.Second), to); !errors.Is(err, ErrMemberInactive) {
		t.Fatalf("transfer to a stopped member: %v, want ErrMemberInactive", err)
	}
	// One attempt, not mustPropose's retries: raft drops proposals while
	// a transfer is under way, and none may have started.
	if _, err := lead.Propose(ctxT(t, 10*time.Second), put("after-refusal", "k", "v")); err != nil {
		t.Fatalf("propose after the refused transfer: %v", err)
	}
	if now := lead.Leadership(); now != before {
		t.Fatalf("leadership %+v after the refused transfer, was %+v", now, before)
	}
}

// A member that stops answering after the leader last heard from it (a
// process stopped just then) passes that check: raft gives the transfer up
// after an election timeout, and the call says so then, instead of at its
// deadline; the leader leads on and takes proposals again.
func TestLeaderTransferAbortedByRaft(t *testing.T) {
	// A longer election timeout leaves more time between the stop and the
	// call for the leader to still count the member as heard from; when
	// it does not, the member is started again and the test retries.
	c := newCluster(t, 3, 24, func(cfg *Config) { cfg.ElectionTick = 50 })
	lead := c.leader()
	before := lead.Leadership()
	to := c.follower(lead.ID()).ID()
	for attempt := 1; ; attempt++ {
		c.waitFor("an answer from the member", func() bool { s := lead.silentFor(to); return s >= 0 && s <= 1 })
		c.crash(to)
		err := lead.TransferLeadership(ctxT(t, 30*time.Second), to)
		if errors.Is(err, ErrTransferAborted) {
			break
		}
		if !errors.Is(err, ErrMemberInactive) || attempt == 10 {
			t.Fatalf("attempt %d: transfer to a member stopped after it answered: %v, want ErrTransferAborted", attempt, err)
		}
		c.restart(to)
	}
	if now := lead.Leadership(); now != before {
		t.Fatalf("leadership %+v after the aborted transfer, was %+v", now, before)
	}
	if _, err := lead.Propose(ctxT(t, 10*time.Second), put("after-abort", "k", "v")); err != nil {
		t.Fatalf("propose after the aborted transfer: %v", err)
	}
}

func TestReadBarrierSeesCommittedWrites(t *testing.T) {
	c := newCluster(t, 3, 9, nil)
	lead := c.leader()
	f := c.follower(lead.ID())
	// Delay the leader → follower link so the follower's applied index lags
	// behind the leader's: the barrier must wait for the follower to apply.
	c.net.SetFaults(lead.ID(), f.ID(), memnet.Faults{MinDelay: 1, MaxDelay: 3})
	for i := range 20 {
		v := fmt.Sprint(i)
		c.mustPropose(lead, "w"+v, "reg", v)
		if err := f.ReadBarrier(ctxT(t, 10*time.Second)); err != nil {
			t.Fatal(err)
		}
		if got := c.member(f.ID()).sm.Get("reg"); got != v {
			t.Fatalf("read after barrier = %q, want %q", got, v)
		}
	}
}

// TestConcurrentReadsShareOneReadIndex: reads the loop takes together are
// confirmed by one ReadIndex (one heartbeat round on the leader), and each
// still sees every write committed before it began.
func TestConcurrentReadsShareOneReadIndex(t *testing.T) {
	c := newCluster(t, 3, 9, nil)
	for _, n := range []*Node{c.leader(), c.follower(c.leader().ID())} {
		c.mustPropose(c.leader(), fmt.Sprintf("before-%d", n.ID()), "reg", fmt.Sprint(n.ID()))
		// Hold the loop while 64 readers queue up behind it.
		gate, held := make(chan struct{}), make(chan struct{})
		if err := n.do(ctxT(t, 10*time.Second), func() { close(held); <-gate }); err != nil {
			t.Fatal(err)
		}
		<-held
		before := n.readIndexes.Load()
		errs := make(chan error, 64)
		for range 64 {
			go func() { errs <- n.ReadBarrier(ctxT(t, 10*time.Second)) }()
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			n.mu.Lock()
			registered := len(n.reads)
			n.mu.Unlock()
			if registered == 64 && len(n.ctrlc) >= 64 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %d: %d readers registered, %d requests queued", n.ID(), registered, len(n.ctrlc))
			}
			time.Sleep(time.Millisecond)
		}
		close(gate)
		for range 64 {
			if err := <-errs; err != nil {
				t.Fatalf("node %d: read: %v", n.ID(), err)
			}
		}
		// One, or a few when another request of the loop (a status) was
		// among the 64 queued and a reader came just after the loop took
		// them; one per read without the batching.
		if got := n.readIndexes.Load() - before; got < 1 || got > 4 {
			t.Fatalf("node %d: 64 reads queued together made %d ReadIndex requests, want 1 (at most 4)", n.ID(), got)
		}
		if got := c.member(n.ID()).sm.Get("reg"); got != fmt.Sprint(n.ID()) {
			t.Fatalf("node %d: read after the barrier = %q", n.ID(), got)
		}
	}
}

func TestQueueFullAndStopFailWaiters(t *testing.T) {
	gate := make(chan struct{})
	var armed sync.Once
	var block sync.Mutex
	blocking := false
	c := newCluster(t, 1, 10, func(cfg *Config) {
		cfg.MaxProposalQueue = 4
		cfg.MaxBatch = 1
		cfg.Failpoint = func(name string) {
			block.Lock()
			b := blocking
			block.Unlock()
			if b && name == FailpointBeforePersist {
				<-gate
			}
		}
	})
	n := c.leader()
	block.Lock()
	blocking = true
	block.Unlock()
	// The first proposal parks the loop at before-persist; then fill the
	// queue until it refuses.
	results := make(chan error, 64)
	var wg sync.WaitGroup
	var full bool
	for i := 0; i < 64 && !full; i++ {
		wg.Go(func() {
			_, err := n.Propose(context.Background(), put(fmt.Sprintf("q%d", i), "k", "v"))
			results <- err
		})
		time.Sleep(time.Millisecond)
		select {
		case err := <-results:
			if !errors.Is(err, txswitch.ErrQueueFull) {
				t.Fatalf("proposal while parked: %v", err)
			}
			full = true
		default:
		}
	}
	if !full {
		t.Fatal("queue never reported full")
	}
	// Stop while proposals wait: each fails with ErrStopped.
	stopped := make(chan struct{})
	go func() { n.Stop(); close(stopped) }()
	armed.Do(func() { close(gate) })
	<-stopped
	wg.Wait()
	close(results)
	for err := range results {
		if err != nil && !errors.Is(err, txswitch.ErrStopped) && !errors.Is(err, txswitch.ErrQueueFull) {
			t.Fatalf("waiter after stop: %v", err)
		}
	}
	if _, err := n.Propose(context.Background(), put("late", "k", "v")); !errors.Is(err, txswitch.ErrStopped) {
		t.Fatalf("propose after stop: %v", err)
	}
}

func TestStorageErrorsStopTheNode(t *testing.T) {
	boom := errors.New("disk on fire")
	for _, tc := range []struct {
		name   string
		inject func(m *member)
	}{
		{"save", func(m *member) { m.store.FailWith(boom) }},
		{"apply", func(m *member) { m.sm.FailWith(boom) }},
		// A failed store refuses reads too; raft panics on a read error
		// (here while sending the proposal to the followers), and the node
		// must stop on it, not take the process down.
		{"read", func(m *member) { m.store.FailWith(boom); m.store.FailReadsWith(boom) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, 3, 11, nil)
			lead := c.leader()
			m := c.member(lead.ID())
			tc.inject(m)
			_, err := lead.Propose(ctxT(t, 10*time.Second), put("doomed", "k", "v"))
			if !errors.Is(err, txswitch.ErrStopped) || !errors.Is(err, boom) {
				t.Fatalf("propose on failing node: %v", err)
			}
			<-lead.Done()
			if !errors.Is(lead.Err(), boom) {
				t.Fatalf("node error = %v", lead.Err())
			}
			if m.sm.Count("doomed") != 0 && tc.name == "save" {
				t.Fatal("applied an entry that was never persisted")
			}
			// The rest of the group carries on under a new leader.
			rest := slices.DeleteFunc(c.liveIDs(), func(id uint64) bool { return id == lead.ID() })
			c.mustPropose(c.leader(rest...), "after", "k", "w")
		})
	}
}

// snapshotSource is the image of a KV at index 2 whose register k holds v,
// and the membership of a 3-node group.
func snapshotSource(t *testing.T, v string) (uint64, []byte, membership) {
	t.Helper()
	src := consensustest.NewKV()
	if _, err := src.Apply([]txswitch.Command{{Index: 1, Term: 1, Data: put("a", "k", v)}, {Index: 2, Term: 1}}); err != nil {
		t.Fatal(err)
	}
	idx, img, err := src.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	return idx, img, membership{Version: 1, MaxID: 3, Members: []Peer{{ID: 1, RaftAddr: "a"}, {ID: 2, RaftAddr: "b"}, {ID: 3, RaftAddr: "c"}}}
}

// A crash between persisting a received snapshot and restoring the state
// machine is finished at restart: from the image inside the snapshot, or
// from the staged image of a streamed one, which is then dropped (with any
// stale one).
func TestRestartRestoresStoredSnapshot(t *testing.T) {
	for _, tc := range []struct {
		name     string
		streamed bool
	}{{"image inside the snapshot", false}, {"streamed image, staged", true}} {
		t.Run(tc.name, func(t *testing.T) {
			idx, img, mem := snapshotSource(t, tc.name)
			store := NewMemLogStore()
			data := encodeSnapshotData(&mem, img)
			if tc.streamed {
				data = encodeSnapshotStreamed(&mem)
				stage(t, store, idx, img)
				stage(t, store, idx+100, []byte("stale: of a snapshot raft never took"))
			}
			snap := snapshotFor(idx, 1, []uint64{1, 2, 3}, data)
			if err := store.Save(hardState(1, 0, idx), nil, snap, true); err != nil {
				t.Fatal(err)
			}
			sm := consensustest.NewKV()
			c := newCluster(t, 0, 12, nil)
			c.start(&member{id: 2, store: store, sm: sm}, nil, false)
			if sm.AppliedIndex() != idx || sm.Get("k") != tc.name {
				t.Fatalf("state machine not restored: applied %d, k=%q", sm.AppliedIndex(), sm.Get("k"))
			}
			if got := len(c.node(2).Members()); got != 3 {
				t.Fatalf("members after restore = %d", got)
			}
			if staged := store.Staged(); len(staged) != 0 {
				t.Fatalf("staged images left after start: %v", staged)
			}
		})
	}
}

func stage(t *testing.T, store *MemLogStore, idx uint64, img []byte) {
	t.Helper()
	sink, err := store.StageImage(idx)
	if err == nil {
		_, err = sink.Write(img)
	}
	if err == nil {
		_, err = sink.Commit()
	}
	if err != nil {
		t.Fatal(err)
	}
}

// A streamed snapshot whose staged image is missing cannot be installed:
// the node refuses to start rather than run on a state it does not have.
func TestRestartRefusesAStreamedSnapshotWithoutItsImage(t *testing.T) {
	idx, _, mem := snapshotSource(t, "v")
	snap := snapshotFor(idx, 1, []uint64{1, 2, 3}, encodeSnapshotStreamed(&mem))
	c := newCluster(t, 0, 12, nil)
	bare := NewMemLogStore()
	if err := bare.Save(hardState(1, 0, idx), nil, snap, true); err != nil {
		t.Fatal(err)
	}
	_, err := NewNode(Config{ID: 2, LogStore: bare, StateMachine: consensustest.NewKV(), Transport: c.net.Endpoint(2, c.group), Logger: zap.NewNop()})
	if err == nil || !strings.Contains(err.Error(), "no staged image") {
		t.Fatalf("start without the staged image: %v", err)
	}
}

// Crashing a follower at every failpoint and restarting it never loses or
// double-applies an entry.
func TestCrashAtFailpoints(t *testing.T) {
	for _, fp := range []string{FailpointBeforePersist, FailpointAfterPersist, FailpointAfterSend, FailpointMidApply} {
		t.Run(fp, func(t *testing.T) {
			var mu sync.Mutex
			armed := map[uint64]bool{}
			c := newCluster(t, 3, 13, func(cfg *Config) {
				id := cfg.ID
				cfg.MaxBatch = 2 // several apply batches per Ready, for mid-apply
				cfg.Failpoint = func(name string) {
					mu.Lock()
					hit := armed[id] && name == fp
					if hit {
						armed[id] = false
					}
					mu.Unlock()
					if hit {
						panic(ErrFailpointCrash)
					}
				}
			})
			lead := c.leader()
			victim := c.follower(lead.ID()).ID()
			mu.Lock()
			armed[victim] = true
			mu.Unlock()
			var wg sync.WaitGroup
			for i := range 30 {
				wg.Go(func() { c.mustPropose(lead, fmt.Sprintf("f%d", i), "k", fmt.Sprint(i)) })
			}
			wg.Wait()
			c.waitFor("the victim to crash", func() bool {
				select {
				case <-c.node(victim).Done():
					return true
				default:
					return false
				}
			})
			c.crash(victim)
			c.restart(victim)
			c.assertConverged()
			for i := range 30 {
				if got := c.member(victim).sm.Count(fmt.Sprintf("f%d", i)); got != 1 {
					t.Fatalf("f%d applied %d times on the crashed node", i, got)
				}
			}
		})
	}
}

func TestRefusalsWithoutLeaderAndForeignGroups(t *testing.T) {
	c := newCluster(t, 3, 14, nil)
	lead := c.leader()
	f := c.follower(lead.ID())
	if err := f.Step(context.Background(), c.group+1, &raftpb.Message{}); err == nil {
		t.Fatal("message of another group accepted")
	}
	// A message for another member (sent to an address this node has) is
	// not stepped as this node's own: a vote request of a higher term
	// would otherwise move its term.
	term := f.Status().Term
	dropped := f.DroppedInbound()
	vote := &raftpb.Message{Type: raftpb.MsgVote.Enum(), To: new(lead.ID() + 100), From: new(lead.ID()), Term: new(term + 5)}
	if err := f.Step(context.Background(), c.group, vote); err == nil || f.DroppedInbound() != dropped+1 {
		t.Fatalf("message for member %d accepted by member %d: %v", lead.ID()+100, f.ID(), err)
	}
	if got := f.Status().Term; got != term {
		t.Fatalf("a misaddressed vote request moved the term from %d to %d", term, got)
	}
	if err := lead.TransferLeadership(ctxT(t, 5*time.Second), 42); err == nil {
		t.Fatal("transfer to a non-member accepted")
	}
	// Alone, a node soon knows no leader: proposals and reads say so
	// instead of waiting for their deadline.
	c.net.Isolate(f.ID(), c.liveIDs())
	c.waitFor("the isolated follower to forget the leader", func() bool { return f.Leadership().LeaderID == 0 })
	if _, err := f.Propose(ctxT(t, 30*time.Second), put("x", "k", "v")); !errors.Is(err, txswitch.ErrNoLeader) {
		t.Fatalf("propose without leader: %v", err)
	}
	if err := f.ReadBarrier(ctxT(t, 30*time.Second)); !errors.Is(err, txswitch.ErrNoLeader) {
		t.Fatalf("read without leader: %v", err)
	}
	if _, ok := f.LeaderAPIAddr(); ok {
		t.Fatal("leader address known without a leader")
	}
}

// A node added after compaction starts from the leader's snapshot and
// learns every member's address from it.
func TestJoinFromSnapshot(t *testing.T) {
	c := newCluster(t, 3, 15, func(cfg *Config) {
		cfg.SnapshotEvery = 10
		cfg.SnapshotKeep = 2
	})
	lead := c.leader()
	for i := range 40 {
		c.mustPropose(lead, fmt.Sprintf("j%d", i), "k", fmt.Sprint(i))
	}
	ctx := ctxT(t, 20*time.Second)
	var id uint64
	err := settled(ctx, func() (err error) { id, err = lead.AddMember(ctx, addrOf(9), apiOf(9)); return err })
	if err != nil {
		t.Fatal(err)
	}
	m := c.join(id)
	c.mustPropose(lead, "after-join", "k", "j")
	c.assertConverged()
	if m.sm.Restores() == 0 {
		t.Fatal("joined node did not start from a snapshot")
	}
	// The state machine is restored a moment before the membership is
	// published (both on the joined node's loop), so converged state does
	// not yet mean published members.
	var got []Peer
	c.waitFor("the joined node to know 4 members", func() bool { got = c.node(id).Members(); return len(got) == 4 })
	for _, p := range got {
		want := apiOf(p.ID)
		if p.ID == id {
			want = apiOf(9)
		}
		if p.APIAddr != want {
			t.Fatalf("joined node has %+v", p)
		}
	}
	if _, err := NewNode(Config{ID: 50, LogStore: NewMemLogStore(), StateMachine: consensustest.NewKV(),
		Transport: c.net.Endpoint(50, c.group), Peers: []Peer{{ID: 1}}, Ticker: NewManualTicker()}); err == nil {
		t.Fatal("bootstrapped a node that is not among its Peers")
	}
}

// A network that delivers every forwarded proposal twice must not make
// the entry apply twice.
func TestDuplicatedForwardedProposalAppliesOnce(t *testing.T) {
	c := newCluster(t, 3, 16, nil)
	lead := c.leader()
	f := c.follower(lead.ID())
	c.net.SetFaults(f.ID(), lead.ID(), memnet.Faults{DuplicateRate: 1})
	for i := range 20 {
		c.mustPropose(f, fmt.Sprintf("d%d", i), "k", fmt.Sprint(i))
	}
	c.assertConverged()
	for i := range 20 {
		if got := c.member(lead.ID()).sm.Count(fmt.Sprintf("d%d", i)); got != 1 {
			t.Fatalf("d%d applied %d times", i, got)
		}
	}
	if c.net.Stats().Duplicated == 0 {
		t.Fatal("nothing was duplicated")
	}
}

// A follower's ReadIndex goes to the leader once; when it is lost, its
// readers time out, and their batch must not stay behind (it did until the
// next leader change: a slow leak under a stable leader).
func TestLostFollowerReadIsForgotten(t *testing.T) {
	c := newCluster(t, 3, 13, nil)
	lead := c.leader()
	f := c.follower(lead.ID())
	c.mustPropose(lead, "a", "k", "v")
	c.net.BlockOneWay(f.ID(), lead.ID()) // the MsgReadIndex is lost
	for range 3 {
		if err := f.ReadBarrier(ctxT(t, 50*time.Millisecond)); err == nil {
			t.Fatal("a read succeeded with its ReadIndex lost")
		}
	}
	c.net.Heal()
	batches := func() int {
		got := make(chan int, 1)
		if err := f.do(ctxT(t, 10*time.Second), func() { got <- len(f.readBatches) }); err != nil {
			t.Fatal(err)
		}
		return <-got
	}
	c.waitFor("the lost reads' batches forgotten", func() bool { return batches() == 0 })
	if c.leader().ID() != lead.ID() {
		t.Fatal("the leader changed: the batches may have gone with it, not with the sweep")
	}
	if err := f.ReadBarrier(ctxT(t, 10*time.Second)); err != nil {
		t.Fatalf("read after healing: %v", err)
	}
}

// Images staged for MsgSnaps raft never took (a duplicate that arrived
// after the restore, a step that failed after staging) are swept once the
// applied index passes them, not kept on disk until the next start.
func TestStagedImagesRaftDidNotTakeAreSwept(t *testing.T) {
	c := newCluster(t, 3, 21, nil)
	lead := c.leader()
	for i := range 3 {
		c.mustPropose(lead, fmt.Sprintf("before-%d", i), "k", "v")
	}
	f := c.follower(lead.ID())
	store := c.member(f.ID()).store
	applied := c.member(f.ID()).sm.AppliedIndex()
	mem := membership{Version: 1, MaxID: 3, Members: []Peer{{ID: 1, RaftAddr: addrOf(1)}, {ID: 2, RaftAddr: addrOf(2)}, {ID: 3, RaftAddr: addrOf(3)}}}
	begin := func(idx uint64) txswitch.ImageSink {
		t.Helper()
		m := &raftpb.Message{Type: raftpb.MsgSnap.Enum(), From: new(lead.ID()), To: new(f.ID()),
			Snapshot: snapshotFor(idx, 1, []uint64{1, 2, 3}, encodeSnapshotStreamed(&mem))}
		sink, streamed, err := f.StageSnapshotImage(m)
		if err != nil || !streamed {
			t.Fatalf("stage image %d: streamed %v, %v", idx, streamed, err)
		}
		if _, err := sink.Write([]byte("an image raft will not take")); err != nil {
			t.Fatal(err)
		}
		return sink
	}
	commit := func(sink txswitch.ImageSink) {
		t.Helper()
		if _, err := sink.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	below, above := applied-1, applied+3
	// A sweep runs while the duplicate still streams; its commit comes
	// after, and a later sweep must still see it.
	streaming := begin(below)
	sweeps := f.imageSweeps.Load()
	c.waitFor("a sweep during the stream", func() bool { return f.imageSweeps.Load() > sweeps })
	commit(streaming)
	commit(begin(above))
	c.waitFor("the image below the applied index swept", func() bool {
		return slices.Equal(store.Staged(), []uint64{above})
	})
	for i := range 4 {
		c.mustPropose(lead, fmt.Sprintf("after-%d", i), "k", "v")
	}
	c.waitFor("the image the applied index passed swept", func() bool { return len(store.Staged()) == 0 })
}
