package chaos

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/txswitch/txswitch/cmd/cluster"
)

// NodeStop crashes a node (its data dir kept: Local.CrashNode, raft stops
// before the API drains) and Undo restarts it on the same dir and
// addresses. See the package doc for what this tier's crash is.
type NodeStop struct {
	record
	c    *Cluster
	spec string
	slot int
}

// StopNode returns a fault stopping the node target names ("leader",
// "follower", "n1"...), resolved at Inject.
func StopNode(c *Cluster, target string) *NodeStop {
	return &NodeStop{record: record{kind: "node_stop", target: target}, c: c, spec: target, slot: -1}
}

// Inject stops the node.
func (f *NodeStop) Inject(context.Context) error {
	start := time.Now()
	slot, err := f.c.resolveSlot(f.spec)
	if err == nil {
		f.slot = slot
		f.setTarget("n" + strconv.Itoa(slot+1))
		if f.c.Local.Node(slot) == nil {
			err = fmt.Errorf("node n%d is not running", slot+1)
		} else {
			err = f.c.Local.CrashNode(slot)
		}
	}
	f.addAt(start, "inject", false, "was "+f.spec, err)
	return err
}

// Undo restarts the node on its data dir.
func (f *NodeStop) Undo(context.Context) error {
	if f.slot < 0 || f.c.Local.Node(f.slot) != nil {
		return nil
	}
	start := time.Now()
	err := f.c.Local.RestartNode(f.slot)
	f.addAt(start, "undo", false, "restarted", err)
	return err
}

// WipeRejoin stops a node and deletes its data dir (Inject); Undo starts
// a node on a fresh dir that joins through a running member and is given
// a NEW member id, after the old id was removed from the membership: a
// node whose log is gone must never come back under its old id (it could
// vote for, and acknowledge, entries it no longer has).
//
// The rejoined node is not a Local slot (Local's slots bootstrap with
// their original ids); Cluster.Running includes it and Cluster.Close
// stops it. It has no provider notification secrets (Local keeps them
// private), so notifications it receives as leader are rejected and
// in-doubt redirect payments it proposes are resolved by status inquiry.
type WipeRejoin struct {
	record
	c      *Cluster
	spec   string
	slot   int
	oldID  uint64
	joined *cluster.Node
}

// WipeAndRejoin returns a wipe-and-rejoin fault for target.
func WipeAndRejoin(c *Cluster, target string) *WipeRejoin {
	return &WipeRejoin{record: record{kind: "node_wipe_rejoin", target: target}, c: c, spec: target, slot: -1}
}

// Inject stops the node, removes it from the membership and wipes its dir.
func (f *WipeRejoin) Inject(ctx context.Context) error {
	start := time.Now()
	err := f.inject(ctx)
	f.addAt(start, "inject", false, "was "+f.spec, err)
	return err
}

func (f *WipeRejoin) inject(ctx context.Context) error {
	slot, n, err := f.c.runningSlot(f.spec)
	if err != nil {
		return err
	}
	f.slot, f.oldID = slot, n.ID()
	f.setTarget("n" + strconv.Itoa(slot+1))
	if err := f.c.Local.CrashNode(slot); err != nil {
		return fmt.Errorf("stop n%d: %w", slot+1, err)
	}
	f.c.mu.Lock()
	f.c.wiped[slot] = true
	f.c.mu.Unlock()
	if err := os.RemoveAll(slotDir(f.c, slot)); err != nil {
		return fmt.Errorf("wipe n%d: %w", slot+1, err)
	}
	return removeMember(ctx, f.c.admin, f.oldID)
}

// removeMember removes member id through a cluster's admin call (which
// retries while a membership change is in flight).
func removeMember(ctx context.Context, admin func(ctx context.Context, method, path string) (int, []byte, error), id uint64) error {
	code, body, err := admin(ctx, "DELETE", "/v1/admin/members/"+strconv.FormatUint(id, 10))
	if err != nil {
		return fmt.Errorf("remove member %d: %w", id, err)
	}
	if code/100 != 2 {
		return fmt.Errorf("remove member %d: %d %s", id, code, body)
	}
	return nil
}

// Undo starts a fresh node that joins as a new member.
func (f *WipeRejoin) Undo(ctx context.Context) error {
	if f.slot < 0 || f.joined != nil {
		return nil
	}
	running := f.c.Running()
	if len(running) == 0 {
		err := fmt.Errorf("rejoin n%d: no running member to join through", f.slot+1)
		f.add("undo", false, "", err)
		return err
	}
	f.c.mu.Lock()
	f.c.rejoins++
	dir := filepath.Join(f.c.Local.Dir(), fmt.Sprintf("rejoin%d", f.c.rejoins))
	f.c.mu.Unlock()
	n, err := cluster.Start(cluster.Config{
		DataDir: dir, Join: running[0].APIAddr(),
		RaftListen: "127.0.0.1:0", APIListen: "127.0.0.1:0",
		AdminToken: f.c.Local.AdminToken, TickInterval: f.c.opts.TickInterval, ResolveEvery: f.c.opts.ResolveEvery,
		Logger: f.c.opts.Logger.Named("rejoined"),
	})
	if err != nil {
		err = fmt.Errorf("rejoin n%d as a new member: %w", f.slot+1, err)
		f.add("undo", false, "", err)
		return err
	}
	f.joined = n
	f.c.mu.Lock()
	f.c.extra = append(f.c.extra, n)
	f.c.mu.Unlock()
	f.add("undo", false, fmt.Sprintf("rejoined as member %d (was %d)", n.ID(), f.oldID), nil)
	f.add("effect", n.ID() != f.oldID, fmt.Sprintf("new member id %d, old %d", n.ID(), f.oldID), nil)
	return nil
}

// Joined is the node that rejoined (nil before Undo).
func (f *WipeRejoin) Joined() *cluster.Node { return f.joined }

// OldID is the member id the wiped node had.
func (f *WipeRejoin) OldID() uint64 { return f.oldID }

// slotDir is a Local slot's data dir: cluster.StartLocal lays them out as
// <Dir>/node<i+1>.
func slotDir(c *Cluster, slot int) string {
	return filepath.Join(c.Local.Dir(), "node"+strconv.Itoa(slot+1))
}
