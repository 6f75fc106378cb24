package chaos

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
)

// Process faults: signals to real node processes, each undone by the
// matching recovery (restart, SIGCONT, a rejoin as a new member).

// ProcSignal is kill -9 (Undo restarts on the same dir), SIGTERM (a
// graceful stop; Undo restarts) or SIGSTOP (Undo sends SIGCONT).
type ProcSignal struct {
	record
	c    *ProcCluster
	spec string
	mode string // kill9 | sigterm | sigstop
	p    *Proc
	pid  int
	// wasLeader and term are the target's view when the fault hit.
	wasLeader bool
	term      uint64
	signalled time.Time
}

// ProcKill9 returns a kill -9 fault for target ("leader", "follower", "n1"...).
func ProcKill9(c *ProcCluster, target string) *ProcSignal {
	return &ProcSignal{record: record{kind: "proc_kill9", target: target}, c: c, spec: target, mode: "kill9"}
}

// ProcTerm returns a graceful-stop (SIGTERM) fault.
func ProcTerm(c *ProcCluster, target string) *ProcSignal {
	return &ProcSignal{record: record{kind: "proc_sigterm", target: target}, c: c, spec: target, mode: "sigterm"}
}

// ProcPause returns a SIGSTOP fault; Undo continues the process.
func ProcPause(c *ProcCluster, target string) *ProcSignal {
	return &ProcSignal{record: record{kind: "proc_sigstop", target: target}, c: c, spec: target, mode: "sigstop"}
}

// Inject resolves the target and signals it.
func (f *ProcSignal) Inject(ctx context.Context) error {
	f.signalled = time.Now()
	err := f.inject(ctx)
	f.addAt(f.signalled, "inject", false, fmt.Sprintf("was %s, pid %d", f.spec, f.pid), err)
	return err
}

func (f *ProcSignal) inject(ctx context.Context) error {
	p, err := f.c.Resolve(ctx, f.spec)
	if err != nil {
		return err
	}
	if !p.Running() || p.Paused() {
		return fmt.Errorf("n%d is not running", p.Slot+1)
	}
	f.p, f.pid = p, p.Pid()
	f.setTarget("n" + strconv.Itoa(p.Slot+1))
	if st, _ := p.Status(); st != nil {
		f.wasLeader, f.term = st.Raft.State == "StateLeader", st.Raft.Term
	}
	// The fault takes effect now, not when the wait for a leader to aim
	// at began (expectations time elections from here).
	f.signalled = time.Now()
	switch f.mode {
	case "kill9":
		return f.c.Kill(p)
	case "sigterm":
		return f.c.Terminate(p)
	default:
		return f.c.Pause(p)
	}
}

// Undo restarts (kill9, sigterm) or continues (sigstop) the process and
// records what it found: a restarted node got a new pid; a continued
// leader that was paused past an election must have stepped down.
func (f *ProcSignal) Undo(ctx context.Context) error {
	if f.p == nil {
		return nil
	}
	start := time.Now()
	var err error
	if f.mode == "sigstop" {
		paused := time.Since(f.signalled)
		err = f.c.Resume(f.p)
		f.addAt(start, "undo", false, "SIGCONT after "+paused.Round(time.Millisecond).String(), err)
		if err == nil {
			// A leader paused past any election timeout (more than 30
			// ticks: raft's randomized timeout is 10-20) must have been
			// replaced and step down when it hears the new term; one
			// that still leads at its old term tested nothing (or found
			// a bug). A shorter pause makes no such claim.
			mustStep := f.wasLeader && paused >= 30*f.c.tick()
			stepped, detail := f.afterPause(ctx, mustStep)
			f.add("effect", stepped || !mustStep, detail, nil)
		}
		return err
	}
	if f.p.Running() {
		// Inject failed half-way, or the slot came back some other way.
		f.add("effect", false, fmt.Sprintf("pid %d still running at undo", f.pid), nil)
		return nil
	}
	err = f.c.Restart(f.p)
	f.addAt(start, "undo", false, "restarted", err)
	if err == nil {
		f.add("effect", f.p.Pid() != f.pid, fmt.Sprintf("pid %d gone, restarted as pid %d", f.pid, f.p.Pid()), nil)
	}
	return err
}

// afterPause waits (bounded) until the continued node answers its status
// (and, with mustStep, no longer leads at the term it was paused in) and
// says what it saw.
func (f *ProcSignal) afterPause(ctx context.Context, mustStep bool) (stepped bool, detail string) {
	deadline := time.Now().Add(5 * time.Second)
	detail = "the resumed node did not answer its status within 5s"
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if st, err := f.c.ReadStatus(ctx, f.p.APIAddr); err == nil {
			was := "follower"
			if f.wasLeader {
				was = "leader"
			}
			detail = fmt.Sprintf("paused %s (term %d) resumed as %s at term %d", was, f.term, st.Raft.State, st.Raft.Term)
			if st.Raft.State != "StateLeader" || st.Raft.Term > f.term {
				return true, detail
			}
			if !mustStep {
				return false, detail
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false, detail
}

// ProcWipeRejoin kills a node, deletes its data dir and removes its member
// id (Inject); Undo starts a fresh node that joins as a NEW member.
type ProcWipeRejoin struct {
	record
	c      *ProcCluster
	spec   string
	p      *Proc
	oldID  uint64
	joined *Proc
	killed time.Time
}

// ProcWipe returns a wipe-and-rejoin fault for target.
func ProcWipe(c *ProcCluster, target string) *ProcWipeRejoin {
	return &ProcWipeRejoin{record: record{kind: "proc_wipe_rejoin", target: target}, c: c, spec: target}
}

// Inject kills the node, wipes its dir and removes the old member.
func (f *ProcWipeRejoin) Inject(ctx context.Context) error {
	f.killed = time.Now()
	err := f.inject(ctx)
	f.addAt(f.killed, "inject", false, "was "+f.spec, err)
	return err
}

func (f *ProcWipeRejoin) inject(ctx context.Context) error {
	p, err := f.c.Resolve(ctx, f.spec)
	if err != nil {
		return err
	}
	if !p.Running() {
		return fmt.Errorf("n%d is not running", p.Slot+1)
	}
	f.p, f.oldID = p, p.ID()
	f.setTarget("n" + strconv.Itoa(p.Slot+1))
	f.killed = time.Now()
	if err := f.c.Kill(p); err != nil {
		return err
	}
	p.mu.Lock()
	p.retired = true
	p.mu.Unlock()
	if err := os.RemoveAll(p.dir); err != nil {
		return fmt.Errorf("wipe n%d: %w", p.Slot+1, err)
	}
	return removeMember(ctx, f.c.admin, f.oldID)
}

// Undo starts the replacement node.
func (f *ProcWipeRejoin) Undo(ctx context.Context) error {
	if f.p == nil || f.joined != nil {
		return nil
	}
	p, err := f.c.joinNew(ctx)
	if err != nil {
		err = fmt.Errorf("rejoin n%d as a new member: %w", f.p.Slot+1, err)
		f.add("undo", false, "", err)
		return err
	}
	f.joined = p
	f.add("undo", false, fmt.Sprintf("rejoined as n%d, member %d (was %d)", p.Slot+1, p.ID(), f.oldID), nil)
	f.add("effect", p.ID() != f.oldID, fmt.Sprintf("new member id %d, old %d", p.ID(), f.oldID), nil)
	return nil
}

// RollingRestart stops every node gracefully (SIGTERM) and restarts it,
// one at a time, followers first and the leader last, waiting for each to
// be back and caught up before the next: the shape of a rolling upgrade
// (with the same binary).
type RollingRestart struct {
	record
	c         *ProcCluster
	restarted int
}

// NewRollingRestart returns the rolling restart fault.
func NewRollingRestart(c *ProcCluster) *RollingRestart {
	return &RollingRestart{record: record{kind: "proc_rolling_restart", target: "all"}, c: c}
}

// Inject runs the whole roll; it returns when the last node is back.
func (f *RollingRestart) Inject(ctx context.Context) error {
	start := time.Now()
	err := f.roll(ctx)
	f.addAt(start, "inject", false, fmt.Sprintf("%d of %d nodes restarted", f.restarted, f.c.Size()), err)
	return err
}

func (f *RollingRestart) roll(ctx context.Context) error {
	lead := f.c.waitLeader(ctx, resolveWait)
	if lead == nil {
		return errors.New("no leader")
	}
	var order []*Proc
	for _, p := range f.c.Running() {
		if p != lead {
			order = append(order, p)
		}
	}
	order = append(order, lead)
	for _, p := range order {
		if err := f.c.Terminate(p); err != nil {
			return err
		}
		if err := f.c.Restart(p); err != nil {
			return err
		}
		if err := f.c.waitCaughtUp(ctx, p, 15*time.Second); err != nil {
			return err
		}
		f.restarted++
	}
	return nil
}

// Undo records the effect: every node went down and came back.
func (f *RollingRestart) Undo(context.Context) error {
	f.add("effect", f.restarted == f.c.Size(), fmt.Sprintf("%d of %d nodes restarted", f.restarted, f.c.Size()), nil)
	return nil
}

// waitCaughtUp waits until p answers its status and has applied what the
// leader had committed when the wait began.
func (c *ProcCluster) waitCaughtUp(ctx context.Context, p *Proc, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	var target uint64
	for time.Now().Before(deadline) {
		if target == 0 {
			if lead := c.Leader(); lead != nil && lead != p {
				if st, fresh := lead.Status(); fresh {
					target = st.Raft.Commit
				}
			}
		}
		if st, fresh := p.Status(); fresh && target > 0 && st.Raft.Applied >= target && st.ConfigVersion > 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("n%d not caught up within %v", p.Slot+1, limit)
}

// NetFault puts a toxiproxy toxic on the raft links of one node: what it
// sends (out), what it receives (in) or both.
type NetFault struct {
	record
	c         *ProcCluster
	spec      string
	out, in   bool
	typ       string
	attrs     string
	links     [][2]int
	before    int64
	installed bool
}

// NetSpec describes a network fault; the constructors fill it.
type NetSpec struct {
	Kind    string
	Target  string
	Out, In bool
	// Toxic is toxiproxy's type and its JSON attributes.
	Toxic, Attributes string
}

// NewNetFault builds a network fault.
func NewNetFault(c *ProcCluster, s NetSpec) *NetFault {
	return &NetFault{record: record{kind: s.Kind, target: s.Target}, c: c, spec: s.Target, out: s.Out, in: s.In,
		typ: s.Toxic, attrs: s.Attributes}
}

// NetCut drops every raft message to and from target (a full partition
// of one node): toxiproxy's timeout toxic with no timeout swallows the
// bytes and keeps the connections open, as a dead link would.
func NetCut(c *ProcCluster, target string) *NetFault {
	return NewNetFault(c, NetSpec{Kind: "net_cut", Target: target, Out: true, In: true, Toxic: "timeout", Attributes: `{"timeout":0}`})
}

// NetOneWay drops what target sends; it still receives.
func NetOneWay(c *ProcCluster, target string) *NetFault {
	return NewNetFault(c, NetSpec{Kind: "net_one_way", Target: target, Out: true, Toxic: "timeout", Attributes: `{"timeout":0}`})
}

// NetInbound drops what target receives; it still sends.
func NetInbound(c *ProcCluster, target string) *NetFault {
	return NewNetFault(c, NetSpec{Kind: "net_inbound_cut", Target: target, In: true, Toxic: "timeout", Attributes: `{"timeout":0}`})
}

// NetLatency delays every raft message to and from target by d.
func NetLatency(c *ProcCluster, target string, d time.Duration) *NetFault {
	return NewNetFault(c, NetSpec{Kind: "net_latency", Target: target, Out: true, In: true, Toxic: "latency",
		Attributes: fmt.Sprintf(`{"latency":%d}`, d.Milliseconds())})
}

// NetReset resets (TCP RST) every raft connection to and from target as
// soon as data flows: the transport sees write errors and reconnects with
// backoff, unlike a silent cut.
func NetReset(c *ProcCluster, target string) *NetFault {
	return NewNetFault(c, NetSpec{Kind: "net_reset", Target: target, Out: true, In: true, Toxic: "reset_peer", Attributes: `{"timeout":0}`})
}

// NetBandwidth limits every raft link to and from target to kbps KB/s.
func NetBandwidth(c *ProcCluster, target string, kbps int) *NetFault {
	return NewNetFault(c, NetSpec{Kind: "net_bandwidth", Target: target, Out: true, In: true, Toxic: "bandwidth",
		Attributes: fmt.Sprintf(`{"rate":%d}`, kbps)})
}

const netToxicName = "fault"

// Inject installs the toxic on the target's links.
func (f *NetFault) Inject(ctx context.Context) error {
	err := f.inject(ctx)
	f.add("inject", false, fmt.Sprintf("%s on %d links", f.typ, len(f.links)), err)
	return err
}

func (f *NetFault) inject(ctx context.Context) error {
	p, err := f.c.Resolve(ctx, f.spec)
	if err != nil {
		return err
	}
	f.setTarget("n" + strconv.Itoa(p.Slot+1))
	f.links = f.c.Net.Links(p.Slot, f.out, f.in)
	if len(f.links) == 0 {
		return fmt.Errorf("n%d has no proxied links (a node that joined later is not behind the proxies)", p.Slot+1)
	}
	f.before = f.c.Net.Bytes(f.links)
	if err := f.c.Net.AddToxic(f.links, netToxicName, f.typ, f.attrs); err != nil {
		f.c.Net.RemoveToxic(f.links, netToxicName)
		return err
	}
	f.installed = true
	return nil
}

// Undo removes the toxic and records how much raft traffic met it.
func (f *NetFault) Undo(context.Context) error {
	if !f.installed {
		return nil
	}
	f.c.Net.RemoveToxic(f.links, netToxicName)
	f.installed = false
	n := f.c.Net.Bytes(f.links) - f.before
	f.add("undo", false, "", nil)
	f.add("effect", n > 0, fmt.Sprintf("%d bytes of raft traffic offered to the faulted links", n), nil)
	return nil
}
