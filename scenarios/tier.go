package scenarios

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/txswitch/txswitch/chaos"
	"github.com/txswitch/txswitch/cmd/cluster"
	"github.com/txswitch/txswitch/providers"
	"github.com/txswitch/txswitch/providers/sim"
	txswitch "github.com/txswitch/txswitch/switch"
)

// The tiers a scenario's topology may name.
const (
	tierInProcess = "in_process"
	// tierProcess runs real `txswitch node` processes on loopback, with
	// toxiproxy links between them (chaos.ProcCluster).
	tierProcess = "process"
)

// tierCluster is what the runner needs from a running cluster, in either
// tier: where to send requests, who leads, the PSPs, and the nodes' own
// view for the observations.
type tierCluster interface {
	// apiNodes lists the nodes a client may talk to, with whether each
	// leads.
	apiNodes() []apiNode
	// runningAddrs is every running node's API address, answering or
	// not (the final reads must not skip a node that stopped answering).
	runningAddrs() []string
	// leaderAddr is the leader's API address ("" when none is known).
	leaderAddr() string
	apiKey() string
	adminToken() string
	sims() map[string]*sim.Server
	// configApplied reports whether every running node applied routing
	// configuration version v and the cluster version gate as far as its
	// binary goes (a new cluster moves it within seconds of its start), so
	// the traffic meets the formats this binary writes.
	configApplied(v uint64) bool
	// sample fills o's leader, term, members and open breakers.
	sample(o *Observation)
	waitReady(ctx context.Context, d time.Duration) error
	// members is the leader's member count (0 without a leader).
	members() int
	// crashes lists nodes that died without a fault telling them to.
	crashes() []string
	// statuses is every running node's status (in process: taken now;
	// in processes: the last one polled, nil when not fresh).
	statuses() []*cluster.Status
	// outboxMarks is the leader's export watermark and outbox head.
	outboxMarks() (watermark, head uint64, ok bool)
	close()
}

type apiNode struct {
	addr   string
	leader bool
}

// inProc is the in-process tier: a chaos.Cluster read through Go calls.
type inProc struct{ c *chaos.Cluster }

func (t inProc) apiNodes() []apiNode {
	var out []apiNode
	for _, n := range t.c.Running() {
		out = append(out, apiNode{addr: n.APIAddr(), leader: n.Raft().Leadership().IsLeader})
	}
	return out
}

func (t inProc) runningAddrs() []string {
	var out []string
	for _, n := range t.c.Running() {
		out = append(out, n.APIAddr())
	}
	return out
}

func (t inProc) leaderAddr() string {
	if n := t.c.LeaderNode(); n != nil {
		return n.APIAddr()
	}
	return ""
}

func (t inProc) apiKey() string                                     { return t.c.APIKey }
func (t inProc) adminToken() string                                 { return t.c.AdminToken }
func (t inProc) sims() map[string]*sim.Server                       { return t.c.Sims }
func (t inProc) waitReady(_ context.Context, d time.Duration) error { return t.c.WaitReady(d) }
func (t inProc) close()                                             { t.c.Close() }

// crashes: in-process nodes share the runner's process; a node whose
// raft stopped shows in its reads.
func (t inProc) crashes() []string { return nil }

func (t inProc) statuses() []*cluster.Status {
	var out []*cluster.Status
	for _, n := range t.c.Running() {
		st, err := n.NodeStatus()
		if err != nil {
			out = append(out, nil)
			continue
		}
		out = append(out, &st)
	}
	return out
}

func (t inProc) outboxMarks() (uint64, uint64, bool) {
	lead := t.c.LeaderNode()
	if lead == nil {
		return 0, 0, false
	}
	w, err1 := lead.Service().ExportWatermark()
	h, err2 := lead.Service().OutboxHead()
	return w, h, err1 == nil && err2 == nil
}

func (t inProc) configApplied(v uint64) bool {
	for _, n := range t.c.Running() {
		st, err := n.NodeStatus()
		if err != nil || st.ConfigVersion < v || st.Versions.Cluster < st.Versions.Binary.Max {
			return false
		}
	}
	return true
}

func (t inProc) sample(o *Observation) {
	var statuses []nodeSample
	for _, n := range t.c.Running() {
		s := nodeSample{breakers: n.Providers().Views(), counted: true}
		if n.Raft().Leadership().IsLeader {
			st := n.Raft().Status()
			s.leader, s.id, s.term, s.members = true, st.ID, st.Term, len(st.Members)
		}
		statuses = append(statuses, s)
	}
	fillObservation(o, statuses)
}

func (t inProc) members() int {
	if lead := t.c.LeaderNode(); lead != nil {
		return len(lead.Raft().Status().Members)
	}
	return 0
}

// nodeSample is one node's view for an observation.
type nodeSample struct {
	leader   bool
	id, term uint64
	members  int
	breakers map[string]map[string]providers.BreakerView
	counted  bool // breakers carry transition counts
}

func fillObservation(o *Observation, nodes []nodeSample) {
	seen := map[string]bool{}
	for _, n := range nodes {
		// Two nodes may both believe they lead for a moment (the old one
		// has not heard of the new term): the higher term is the real
		// leader.
		if n.leader && n.term >= o.Term {
			o.Leader, o.Term, o.Members = n.id, n.term, n.members
			o.LeaderOpen = nil
			if n.counted {
				o.LeaderOpen = map[string]OpenMark{}
				for prov, methods := range n.breakers {
					for m, v := range methods {
						if v.State == txswitch.BreakerOpen {
							o.LeaderOpen[prov+"/"+m] = OpenMark{Changes: v.Changes, Since: v.Since}
						}
					}
				}
			}
		}
		for prov, methods := range n.breakers {
			for m, v := range methods {
				if v.State == txswitch.BreakerOpen && !seen[prov+"/"+m] {
					seen[prov+"/"+m] = true
					o.Open = append(o.Open, prov+"/"+m)
				}
			}
		}
	}
}

// procTier is the process tier: node processes read over HTTP (their
// statuses are polled in the background by chaos.ProcCluster).
type procTier struct{ p *chaos.ProcCluster }

// apiNodes are the nodes that answered their status lately, as a load
// balancer with health checks would route: a paused or dead node drops
// out, a restarted one comes back once it answers.
func (t procTier) apiNodes() []apiNode {
	var out []apiNode
	for _, p := range t.p.Running() {
		if st, fresh := p.Status(); fresh && !p.Paused() {
			out = append(out, apiNode{addr: p.APIAddr, leader: st.Raft.State == "StateLeader"})
		}
	}
	return out
}

func (t procTier) runningAddrs() []string {
	var out []string
	for _, p := range t.p.Running() {
		out = append(out, p.APIAddr)
	}
	return out
}

func (t procTier) leaderAddr() string {
	if p := t.p.Leader(); p != nil {
		return p.APIAddr
	}
	return ""
}

func (t procTier) apiKey() string               { return t.p.APIKey }
func (t procTier) adminToken() string           { return t.p.AdminToken }
func (t procTier) sims() map[string]*sim.Server { return t.p.Sims }
func (t procTier) waitReady(ctx context.Context, d time.Duration) error {
	return t.p.WaitReady(ctx, d)
}
func (t procTier) close()            { t.p.Close() }
func (t procTier) crashes() []string { return t.p.Crashes() }

func (t procTier) statuses() []*cluster.Status {
	var out []*cluster.Status
	for _, p := range t.p.Running() {
		st, fresh := p.Status()
		if !fresh || p.Paused() {
			st = nil
		}
		out = append(out, st)
	}
	return out
}

// outboxMarks reads the leader's last polled status: the backlog is the
// head minus the watermark (the outbox is trimmed exactly behind it).
func (t procTier) outboxMarks() (uint64, uint64, bool) {
	lead := t.p.Leader()
	if lead == nil {
		return 0, 0, false
	}
	st, fresh := lead.Status()
	if !fresh {
		return 0, 0, false
	}
	return st.Outbox.Watermark, st.Outbox.Watermark + st.Outbox.Backlog, true
}

func (t procTier) configApplied(v uint64) bool {
	for _, p := range t.p.Running() {
		if st, fresh := p.Status(); !fresh || st.ConfigVersion < v || st.Versions.Cluster < st.Versions.Binary.Max {
			return false
		}
	}
	return true
}

func (t procTier) sample(o *Observation) {
	var statuses []nodeSample
	for _, p := range t.p.Running() {
		st, fresh := p.Status()
		if !fresh || p.Paused() {
			continue
		}
		statuses = append(statuses, statusSample(st))
	}
	fillObservation(o, statuses)
}

func statusSample(st *cluster.Status) nodeSample {
	s := nodeSample{leader: st.Raft.State == "StateLeader", id: st.Raft.ID, term: st.Raft.Term,
		members: len(st.Raft.Members), breakers: st.BreakerViews, counted: st.BreakerViews != nil}
	if !s.counted {
		// A release before breaker views reports states alone.
		s.breakers = map[string]map[string]providers.BreakerView{}
		for prov, methods := range st.Breakers {
			s.breakers[prov] = map[string]providers.BreakerView{}
			for m, state := range methods {
				s.breakers[prov][m] = providers.BreakerView{State: state}
			}
		}
	}
	return s
}

func (t procTier) members() int {
	if p := t.p.Leader(); p != nil {
		if st, _ := p.Status(); st != nil {
			return len(st.Raft.Members)
		}
	}
	return 0
}

// ProcessBinary returns the txswitch executable the process tier starts.
// The CLI sets it to its own executable; by default it is $TXSWITCH_BIN,
// else cmd/txswitch built once per process (go build, so the current
// directory must be inside the module: true under go test).
var ProcessBinary = builtBinary

var (
	binOnce sync.Once
	binPath string
	binDir  string
	binErr  error
)

func builtBinary() (string, error) {
	if p := os.Getenv("TXSWITCH_BIN"); p != "" {
		return p, nil
	}
	binOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "txswitch-scenarios-bin-"); binErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		binPath, binErr = chaos.BuildBinary(ctx, binDir)
	})
	return binPath, binErr
}

// removeBuiltBinary deletes the binary builtBinary made, if any.
func removeBuiltBinary() {
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
}

// startTier starts the scenario's cluster in its tier.
// prep adjusts the cluster's configuration once before it starts (the
// central database and disks); the process tier takes the central
// database from it (it has no disk faults).
func startTier(ctx context.Context, sc *Scenario, seed uint64, log *zap.Logger, prep func(*cluster.LocalConfig) error) (tierCluster, *chaos.Cluster, *chaos.ProcCluster, error) {
	if sc.Topology.Tier == tierProcess {
		bin, err := ProcessBinary()
		if err != nil {
			return nil, nil, nil, fmt.Errorf("the txswitch binary for the process tier: %w", err)
		}
		var ext cluster.LocalConfig
		if prep != nil {
			if err := prep(&ext); err != nil {
				return nil, nil, nil, err
			}
		}
		var p *chaos.ProcCluster
		// $TXSWITCH_PROC_KEEP keeps each scenario's data dirs and node
		// logs there for a post-mortem (default: a temp dir, removed).
		keep := os.Getenv("TXSWITCH_PROC_KEEP")
		// Ports are picked free a moment before the nodes bind them; a
		// parallel scenario may take one first. Retry.
		for attempt := 0; attempt < 3; attempt++ {
			dir := ""
			if keep != "" {
				dir = filepath.Join(keep, strings.ReplaceAll(sc.Name, "/", "_"))
				if err := os.RemoveAll(dir); err != nil {
					return nil, nil, nil, fmt.Errorf("clear %s: %w", dir, err)
				}
				if err := os.MkdirAll(dir, 0o755); err != nil {
					return nil, nil, nil, fmt.Errorf("keep dir: %w", err)
				}
			}
			p, err = chaos.StartProcs(ctx, chaos.ProcConfig{Binary: bin, Nodes: sc.Topology.Nodes, Seed: seed, Dir: dir,
				TickInterval: sc.Config.TickInterval.D(), Logger: log.Named(sc.Name), CentralDB: ext.CentralDB})
			if err == nil || !strings.Contains(err.Error(), "address already in use") {
				break
			}
		}
		if err != nil {
			return nil, nil, nil, fmt.Errorf("start the process cluster: %w", err)
		}
		return procTier{p}, nil, p, nil
	}
	lcfg := cluster.LocalConfig{Nodes: sc.Topology.Nodes, Seed: seed,
		TickInterval: sc.Config.TickInterval.D(), ResolveEvery: sc.Config.ResolveEvery.D(), Logger: log.Named(sc.Name)}
	if prep != nil {
		if err := prep(&lcfg); err != nil {
			return nil, nil, nil, err
		}
	}
	var l *cluster.Local
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		l, err = cluster.StartLocal(lcfg)
		if err == nil || !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("start the cluster: %w", err)
	}
	c := chaos.NewCluster(l, chaos.ClusterOptions{TickInterval: sc.Config.TickInterval.D(), ResolveEvery: sc.Config.ResolveEvery.D(), Logger: log.Named(sc.Name)})
	return inProc{c}, c, nil, nil
}
