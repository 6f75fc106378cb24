package chaos

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/txswitch/txswitch/cmd/cluster"
	txswitch "github.com/txswitch/txswitch/switch"
)

// RollingUpgrade restarts every node of an in-process cluster in turn,
// followers first and the leader last, each on a "new binary" that runs
// one cluster version more than the old one (cluster.Config.Versions),
// and watches the cluster version gate: it must stay where it was while
// any member runs the old binary and move on every member once the last
// one is upgraded; each upgraded node leads for a while before the next
// (an old leader could not move the gate anyway, so only that tests it).
// The effect is that move, at the right time; a gate
// that moved early (old and new formats mixed) or never is no effect, and
// fails the scenario's fault_fired check with what was seen.
type RollingUpgrade struct {
	record
	c        *Cluster
	from, to txswitch.VersionRange
	steps    []string
	early    string
	upgraded int
	rollErr  error
}

// NewRollingUpgrade returns the fault; the cluster must run the binary's
// own versions (txswitch.BinaryVersions), the "old binary" here.
func NewRollingUpgrade(c *Cluster) *RollingUpgrade {
	from := txswitch.BinaryVersions
	return &RollingUpgrade{record: record{kind: "rolling_upgrade", target: "all"}, c: c,
		from: from, to: txswitch.VersionRange{Min: from.Min, Max: from.Max + 1}}
}

// upgradeWait bounds each node's restart and catch-up, and the gate's move.
const upgradeWait = 15 * time.Second

// Inject runs the whole upgrade; it returns when the last node is back.
func (f *RollingUpgrade) Inject(ctx context.Context) error {
	start := time.Now()
	err := f.roll(ctx)
	f.rollErr = err
	f.addAt(start, "inject", false, fmt.Sprintf("%d of %d nodes upgraded to versions %d..%d", f.upgraded, f.c.Local.Size(), f.to.Min, f.to.Max), err)
	return err
}

func (f *RollingUpgrade) roll(ctx context.Context) error {
	lead := f.c.Local.LeaderIndex()
	if lead < 0 {
		return errors.New("no leader")
	}
	var order []int
	for i := 0; i < f.c.Local.Size(); i++ {
		if i != lead && f.c.Local.Node(i) != nil {
			order = append(order, i)
		}
	}
	order = append(order, lead)
	for k, slot := range order {
		if _, err := f.c.Local.ShutdownNode(slot); err != nil {
			return fmt.Errorf("stop n%d: %w", slot+1, err)
		}
		f.c.Local.SetNodeVersions(slot, f.to)
		if err := f.c.Local.RestartNode(slot); err != nil {
			return fmt.Errorf("restart n%d on the new binary: %w", slot+1, err)
		}
		if err := f.c.Local.WaitReady(upgradeWait); err != nil {
			return fmt.Errorf("after upgrading n%d: %w", slot+1, err)
		}
		f.upgraded++
		if k < len(order)-1 {
			if err := f.leadAndWait(ctx, slot); err != nil {
				return err
			}
		}
		v, moved := f.versions()
		f.steps = append(f.steps, fmt.Sprintf("n%d upgraded: versions %s", slot+1, v))
		if k < len(order)-1 && f.early == "" && moved > 0 {
			f.early = fmt.Sprintf("the gate moved to %d after %d of %d upgrades (%s): old members would diverge", f.to.Max, k+1, len(order), v)
		}
	}
	return nil
}

// leadAndWait gives leadership to the node just upgraded (the only kind
// of member that could move the gate) and lets it see its own report and
// run its gate check a few times: the gate must still not move, since
// other members run the old binary.
func (f *RollingUpgrade) leadAndWait(ctx context.Context, slot int) error {
	n := f.c.Local.Node(slot)
	lead := f.c.LeaderNode()
	if n == nil || lead == nil {
		return fmt.Errorf("after upgrading n%d: no leader or the node is gone", slot+1)
	}
	tctx, cancel := context.WithTimeout(ctx, upgradeWait)
	defer cancel()
	// Raft hands over only to a member that has the whole log, and aborts
	// after an election timeout otherwise: wait for the restarted node to
	// catch up, and try again while traffic keeps it a little behind.
	for {
		if lead = f.c.LeaderNode(); lead != nil && lead.ID() == n.ID() {
			break
		}
		if lead != nil && n.Raft().Status().Applied >= lead.Raft().Status().Commit {
			actx, acancel := context.WithTimeout(tctx, 2*time.Second)
			err := lead.Raft().TransferLeadership(actx, n.ID())
			acancel()
			if err == nil {
				break
			}
		}
		select {
		case <-tctx.Done():
			return fmt.Errorf("hand leadership to the upgraded n%d: %w", slot+1, tctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	for {
		if vs, err := n.Service().Versions(); err == nil && vs.Members[n.ID()] == f.to {
			break
		}
		select {
		case <-tctx.Done():
			return fmt.Errorf("the upgraded n%d's version report never applied: %w", slot+1, tctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(2 * cluster.VersionCheckEvery):
	}
	return nil
}

// versions lists each running node's applied cluster version ("id:v")
// and counts the nodes at the new version.
func (f *RollingUpgrade) versions() (string, int) {
	var parts []string
	moved := 0
	for _, n := range f.c.Running() {
		vs, err := n.Service().Versions()
		if err != nil {
			parts = append(parts, fmt.Sprintf("%d:?", n.ID()))
			continue
		}
		if vs.Cluster == f.to.Max {
			moved++
		}
		parts = append(parts, fmt.Sprintf("%d:%d", n.ID(), vs.Cluster))
	}
	return strings.Join(parts, " "), moved
}

// Undo waits for the gate to move on every member and records the effect.
// (There is no going back: a node that applied the move refuses the old
// binary.)
func (f *RollingUpgrade) Undo(ctx context.Context) error {
	moved := false
	for deadline := time.Now().Add(upgradeWait); ctx.Err() == nil && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if f.upgraded < f.c.Local.Size() {
			break
		}
		if _, n := f.versions(); n == len(f.c.Running()) {
			moved = true
			break
		}
	}
	detail := strings.Join(f.steps, "; ")
	switch {
	case f.early != "":
		f.add("effect", false, f.early, nil)
	case f.rollErr != nil:
		f.add("effect", false, fmt.Sprintf("the upgrade stopped: %v (%s)", f.rollErr, detail), nil)
	case !moved:
		now, _ := f.versions()
		f.add("effect", false, fmt.Sprintf("the gate did not move to %d after every node was upgraded (%s; now %s)", f.to.Max, detail, now), nil)
	default:
		f.add("effect", true, fmt.Sprintf("%s; then cluster version %d on every member", detail, f.to.Max), nil)
	}
	return nil
}
