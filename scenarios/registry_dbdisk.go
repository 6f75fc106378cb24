package scenarios

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/txswitch/txswitch/chaos"
	"github.com/txswitch/txswitch/cmd/cluster"
	"github.com/txswitch/txswitch/storage/central"
)

// Central database and disk faults, their expectations and the always-on
// check of central_db scenarios, added to the closed registries.

// CheckCentralExactlyOnce is always on for central_db scenarios.
const CheckCentralExactlyOnce = "central_exactly_once"

// extChecks are checks outside AlwaysOn that expect_fail may name.
var extChecks = []string{CheckCentralExactlyOnce}

var extExpectNames = []string{"export_drained", "export_lag", "disk_refused", "caught_up"}

func init() {
	knownTags = append(knownTags, "central", "disk")
	expectNames = append(expectNames, extExpectNames...)
	shapes["lull"] = shape{doc: "full rate, then near idle (the 5% floor) for the middle 40%, then full rate again",
		factor: func(f float64) float64 {
			if f >= 0.3 && f < 0.7 {
				return 0
			}
			return 1
		}}
	db := func(build func(*chaos.Database, Fault) chaos.Fault) func(*env, Fault) (chaos.Fault, error) {
		return func(e *env, f Fault) (chaos.Fault, error) {
			if e.ext == nil || e.ext.central == nil {
				return nil, errNoCentral
			}
			return build(e.ext.central.db, f), nil
		}
	}
	down := func(m chaos.DBDownMode) func(*chaos.Database, Fault) chaos.Fault {
		return func(d *chaos.Database, _ Fault) chaos.Fault { return chaos.NewDBDown(d, m) }
	}
	for kind, def := range map[string]faultDef{
		"db_kill":        {doc: "SIGKILL the central PostgreSQL (its own server); restarted after for", build: db(down(chaos.DBKill))},
		"db_stop":        {doc: "shut the central PostgreSQL down cleanly (its own server); restarted after for", build: db(down(chaos.DBStop))},
		"db_unreachable": {doc: "the proxy to PostgreSQL cuts every connection and refuses new ones", build: db(down(chaos.DBUnreachable))},
		"db_latency": {doc: "every answer from PostgreSQL arrives latency late (toxiproxy latency)", params: []string{"latency"},
			build: db(func(d *chaos.Database, f Fault) chaos.Fault { return chaos.DBLatency(d, f.Latency.D()) })},
		"db_reset": {doc: "every connection to PostgreSQL is reset as soon as it carries data (toxiproxy reset_peer)",
			build: db(func(d *chaos.Database, _ Fault) chaos.Fault { return chaos.DBReset(d) })},
		"db_stall": {doc: "connections to PostgreSQL stop carrying data, never closed (toxiproxy timeout 0)",
			build: db(func(d *chaos.Database, _ Fault) chaos.Fault { return chaos.DBStall(d) })},
		"db_flap": {doc: "PostgreSQL unreachable for stall, back for delay, repeatedly", params: []string{"stall", "delay"},
			build: db(func(d *chaos.Database, f Fault) chaos.Fault { return chaos.NewDBFlap(d, f.Stall.D(), f.Delay.D()) })},
		"mutant_export_skip": {doc: "MUTANT: move the export watermark to the outbox head without exporting", mutant: true,
			build: func(e *env, _ Fault) (chaos.Fault, error) { return chaos.NewExportSkip(e.c), nil }},
		"disk_write_error": {doc: "the node's WAL writes fail (EIO); after for it restarts on its synced data", target: targetNode,
			build: disk(chaos.DiskWriteError)},
		"disk_sync_error": {doc: "the node's WAL fsyncs fail (EIO); after for it restarts on its synced data", target: targetNode,
			build: disk(chaos.DiskSyncError)},
		"disk_full": {doc: "the node's WAL writes fail with ENOSPC; after for it restarts on its synced data", target: targetNode,
			build: disk(chaos.DiskFull)},
		"disk_slow_sync": {doc: "the node's WAL fsyncs take latency longer", target: targetNode, params: []string{"latency"},
			build: disk(chaos.DiskSlowSync)},
	} {
		if def.target == targetProvider { // the zero value: these take no target
			def.target = targetNone
		}
		faultKinds[kind] = def
	}
}

func disk(mode chaos.DiskMode) func(*env, Fault) (chaos.Fault, error) {
	return func(e *env, f Fault) (chaos.Fault, error) {
		if e.ext == nil || e.ext.disks == nil {
			return nil, fmt.Errorf("the cluster does not run on chaos disks")
		}
		return chaos.NewDiskFault(e.c, e.ext.disks, f.Target, mode, f.Latency.D()), nil
	}
}

func isDBFault(kind string) bool {
	return strings.HasPrefix(kind, "db_") || kind == "mutant_export_skip"
}
func isDiskFault(kind string) bool { return strings.HasPrefix(kind, "disk_") }

// validateExt checks what the central database and disks need of a
// scenario.
func validateExt(s *Scenario) error {
	disks := false
	for i, f := range s.Faults {
		if isDBFault(f.Kind) && !s.Topology.CentralDB {
			return fmt.Errorf("faults[%d] (%s): needs topology central_db: true", i, f.Kind)
		}
		disks = disks || isDiskFault(f.Kind)
	}
	for i, e := range s.Expect {
		switch {
		case (e.ExportDrained != nil || e.ExportLag != nil) && !s.Topology.CentralDB:
			return fmt.Errorf("expect[%d]: export expectations need topology central_db: true", i)
		case (e.DiskRefused != nil || e.CaughtUp != nil) && !disks:
			return fmt.Errorf("expect[%d]: disk expectations need a disk fault", i)
		}
	}
	return nil
}

// ExpectExportLag: while the central database faults were on, the
// leader's export status showed at least MinEvents waiting, and (Failing)
// the export reported failing: a last error, or its breaker not closed.
type ExpectExportLag struct {
	MinEvents uint64 `yaml:"min_events"`
	Failing   bool   `yaml:"failing"`
}

// ExpectDiskRefused: the node under a disk fault stopped being ready and
// said why: its /readyz answer names the storage failure and Reason. With
// Never, the opposite: the node stayed ready throughout (a slow disk).
type ExpectDiskRefused struct {
	Reason string `yaml:"reason"`
	Never  bool   `yaml:"never"`
}

// validateExt validates an expectation of this file; handled is false for
// the others.
func (e Expect) validateExt(s *Scenario) (handled bool, err error) {
	n := 0
	for _, set := range []bool{e.ExportDrained != nil, e.ExportLag != nil, e.DiskRefused != nil, e.CaughtUp != nil} {
		if set {
			n++
		}
	}
	if n == 0 {
		return false, nil
	}
	rest := e
	rest.ExportDrained, rest.ExportLag, rest.DiskRefused, rest.CaughtUp = nil, nil, nil, nil
	if n > 1 || rest != (Expect{}) {
		return true, fmt.Errorf("want exactly one of %v per entry", expectNames)
	}
	switch {
	case e.ExportDrained != nil && e.ExportDrained.Within <= 0, e.CaughtUp != nil && e.CaughtUp.Within <= 0:
		return true, fmt.Errorf("within is required")
	case e.ExportLag != nil && e.ExportLag.MinEvents == 0 && !e.ExportLag.Failing:
		return true, fmt.Errorf("export_lag: say what must show (min_events, failing)")
	case e.DiskRefused != nil && (e.DiskRefused.Reason == "") == !e.DiskRefused.Never:
		return true, fmt.Errorf("disk_refused: want a reason, or never: true")
	}
	return true, nil
}

// checkExt judges an expectation of this file.
func (e Expect) checkExt(ev *Evidence) (CheckResult, bool) {
	switch {
	case e.ExportDrained != nil:
		return expectExportDrained(ev, *e.ExportDrained), true
	case e.ExportLag != nil:
		return expectExportLag(ev, *e.ExportLag), true
	case e.DiskRefused != nil:
		return expectDiskRefused(ev, *e.DiskRefused), true
	case e.CaughtUp != nil:
		return expectCaughtUp(ev, *e.CaughtUp), true
	}
	return CheckResult{}, false
}

// extAlwaysOn are the checks every scenario of a kind runs.
func extAlwaysOn(sc *Scenario, ev *Evidence) []CheckResult {
	if !sc.Topology.CentralDB {
		return nil
	}
	return []CheckResult{checkCentralExactlyOnce(ev)}
}

// ExtEvidence is what the central database and disk extensions add.
type ExtEvidence struct {
	Central *CentralEvidence `json:"central,omitempty"`
	// Samples are the nodes' raft progress and the leader's export status,
	// taken in process every extSampleEvery during traffic and settle.
	Samples []ExtSample `json:"samples,omitempty"`
}

// ExtSample is one sample.
type ExtSample struct {
	At    time.Time    `json:"at"`
	Nodes []NodeSample `json:"nodes"`
	// Export is the leader's exporter (nil: no leader, or no database).
	Export *central.ExportStats `json:"export,omitempty"`
}

// NodeSample is one running node's raft progress.
type NodeSample struct {
	ID      uint64 `json:"id"`
	Leader  bool   `json:"leader,omitempty"`
	Term    uint64 `json:"term"`
	Commit  uint64 `json:"commit"`
	Applied uint64 `json:"applied"`
	Stopped bool   `json:"stopped,omitempty"`
}

const extSampleEvery = 100 * time.Millisecond

// extEnv is one scenario's central database and disks; nil when it uses
// neither (every method is nil-safe).
type extEnv struct {
	central *centralRun
	disks   *chaos.Disks
	mu      sync.Mutex
	samples []ExtSample
	// The sampler runs past the traffic and settle, through collect's wait
	// for the export to drain (export_drained judges that wait).
	stopSampling chan struct{}
	sampling     sync.WaitGroup
	stopOnce     sync.Once
}

// setupExt prepares the database and disks and adds them to cfg.
func setupExt(ctx context.Context, sc *Scenario, cfg *cluster.LocalConfig) (*extEnv, error) {
	x := &extEnv{}
	for _, f := range sc.Faults {
		if isDiskFault(f.Kind) && x.disks == nil {
			x.disks = chaos.NewDisks()
			cfg.FS = x.disks.FS
		}
	}
	if sc.Topology.CentralDB {
		var err error
		if x.central, err = startCentral(ctx, sc); err != nil {
			return nil, err
		}
		cfg.CentralDB, cfg.Export = x.central.db.ProxyURL, exportTuning
	}
	if x.central == nil && x.disks == nil {
		return nil, nil
	}
	return x, nil
}

func (x *extEnv) close() {
	if x == nil {
		return
	}
	x.stop()
	if x.central != nil {
		x.central.close()
	}
}

func (x *extEnv) stop() {
	x.stopOnce.Do(func() {
		if x.stopSampling != nil {
			close(x.stopSampling)
		}
	})
	x.sampling.Wait()
}

// ready runs after the cluster is up and tuned, before the clock starts.
func (x *extEnv) ready(ctx context.Context, e *env) error {
	if x == nil || x.central == nil {
		return nil
	}
	return x.central.waitMigrated(ctx, e)
}

// observe starts the sampler, which runs until collect (or close) stops
// it; it returns at once.
func (x *extEnv) observe(_ context.Context, e *env) {
	if x == nil {
		return
	}
	x.stopSampling = make(chan struct{})
	x.sampling.Add(1)
	go func() {
		defer x.sampling.Done()
		defer e.recovered("the central database's sampler")
		x.sample(e)
	}()
}

func (x *extEnv) sample(e *env) {
	t := time.NewTicker(extSampleEvery)
	defer t.Stop()
	for {
		s := ExtSample{At: time.Now()}
		if e.c != nil {
			x.sampleInProcess(e, &s)
		} else {
			x.sampleProcesses(e, &s)
		}
		x.mu.Lock()
		x.samples = append(x.samples, s)
		x.mu.Unlock()
		select {
		case <-x.stopSampling:
			return
		case <-t.C:
		}
	}
}

// sampleInProcess reads raft's own view of each node (cheap, and there
// even when a failed disk makes the node's status unreadable).
func (x *extEnv) sampleInProcess(e *env, s *ExtSample) {
	var lead *cluster.Node
	var leadTerm uint64
	for _, n := range e.c.Running() {
		st := n.Raft().Status()
		ns := NodeSample{ID: st.ID, Term: st.Term, Commit: st.Commit, Applied: st.Applied, Stopped: st.Stopped,
			Leader: n.Raft().Leadership().IsLeader}
		s.Nodes = append(s.Nodes, ns)
		if ns.Leader && !ns.Stopped && st.Term >= leadTerm {
			lead, leadTerm = n, st.Term
		}
	}
	if lead != nil && x.central != nil {
		if st, err := lead.NodeStatus(); err == nil && st.Export != nil {
			s.Export = st.Export
		}
	}
}

// sampleProcesses reads the statuses the process tier polls.
func (x *extEnv) sampleProcesses(e *env, s *ExtSample) {
	var lead *cluster.Status
	for _, st := range e.t.statuses() {
		if st == nil {
			continue
		}
		r := st.Raft
		ns := NodeSample{ID: r.ID, Term: r.Term, Commit: r.Commit, Applied: r.Applied, Stopped: r.Stopped,
			Leader: r.Leader == r.ID && r.ID != 0}
		s.Nodes = append(s.Nodes, ns)
		if ns.Leader && !ns.Stopped && (lead == nil || r.Term >= lead.Raft.Term) {
			lead = st
		}
	}
	if lead != nil && x.central != nil && lead.Export != nil {
		s.Export = lead.Export
	}
}

// samplesSoFar copies the samples taken so far (nil without an extension).
func (x *extEnv) samplesSoFar() []ExtSample {
	if x == nil {
		return nil
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	return append([]ExtSample(nil), x.samples...)
}

// collect gathers the extension's evidence at the end.
func (x *extEnv) collect(ctx context.Context, e *env, _ *Evidence) *ExtEvidence {
	if x == nil {
		return nil
	}
	out := &ExtEvidence{}
	if x.central != nil {
		out.Central = x.central.collect(ctx, e)
	}
	x.stop()
	x.mu.Lock()
	out.Samples = append([]ExtSample(nil), x.samples...)
	x.mu.Unlock()
	return out
}
