package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"

	"github.com/txswitch/txswitch/consensus"
	tcptransport "github.com/txswitch/txswitch/consensus/transport/tcp"
	"github.com/txswitch/txswitch/providers/sim"
	"github.com/txswitch/txswitch/storage/pebblestore"
	txswitch "github.com/txswitch/txswitch/switch"
)

// BenchResult is one benchmark run's outcome.
type BenchResult struct {
	Name string
	// Settings are what the run was configured with (fsync, nodes,
	// proposers or clients, payload, provider latency, target).
	Settings map[string]string
	// Ops counts successful operations (applied proposals, captured
	// payments); Errors counts the others by cause.
	Ops      int
	Errors   map[string]int
	Duration time.Duration
	// OpsPerSec is Ops / Duration.
	OpsPerSec float64
	// Latency of the successful operations (for payments: create + pay).
	P50, P90, P99, Max time.Duration
	// CPUPerOp is the process CPU time of the measured period divided by
	// Ops (0 without ops).
	CPUPerOp time.Duration
	// DBCPUPerOp is the central database server's CPU time of the measured
	// period divided by Ops (0 when not measured).
	DBCPUPerOp time.Duration
	// Extra holds further measurements (fsyncs/s, pay-call percentiles).
	Extra map[string]string
}

// String renders a readable report.
func (r BenchResult) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n", r.Name)
	for _, k := range slices.Sorted(maps.Keys(r.Settings)) {
		fmt.Fprintf(&b, "  %-20s %s\n", k+":", r.Settings[k])
	}
	fmt.Fprintf(&b, "  %-20s %d in %v\n", "ops:", r.Ops, r.Duration.Round(time.Millisecond))
	fmt.Fprintf(&b, "  %-20s %.0f\n", "ops/s:", r.OpsPerSec)
	fmt.Fprintf(&b, "  %-20s p50 %v  p90 %v  p99 %v  max %v\n", "latency:",
		r.P50.Round(time.Microsecond), r.P90.Round(time.Microsecond), r.P99.Round(time.Microsecond), r.Max.Round(time.Microsecond))
	for _, k := range slices.Sorted(maps.Keys(r.Extra)) {
		fmt.Fprintf(&b, "  %-20s %s\n", k+":", r.Extra[k])
	}
	if len(r.Errors) == 0 {
		fmt.Fprintf(&b, "  %-20s none\n", "errors:")
	} else {
		for _, k := range slices.Sorted(maps.Keys(r.Errors)) {
			fmt.Fprintf(&b, "  %-20s %s=%d\n", "errors:", k, r.Errors[k])
		}
	}
	return b.String()
}

// maxSamples bounds the latency samples kept per run (8 bytes each); past
// it each worker keeps its first samples only, so percentiles cover the
// beginning of a very long run.
const maxSamples = 4 << 20

// recorder collects latencies and errors of one worker; merged at the end
// so workers never contend on a lock.
type recorder struct {
	slowest  []stageEvent
	slowOver time.Duration // slow keeps operations from this latency on
	lat      []time.Duration
	cap      int
	ops      int
	errors   map[string]int
}

func newRecorder(capacity int) *recorder {
	return &recorder{cap: capacity, errors: map[string]int{}}
}

func (r *recorder) ok(d time.Duration) {
	r.ops++
	if len(r.lat) < r.cap {
		r.lat = append(r.lat, d)
	}
}

func (r *recorder) fail(cause string) { r.errors[cause]++ }

// slow keeps the slow operations (bounded) with their start, for
// RaftBenchConfig.TraceSlow.
func (r *recorder) slow(start time.Time, d time.Duration) {
	if d < r.slowOver || len(r.slowest) >= maxSlowPerWorker {
		return
	}
	r.slowest = append(r.slowest, stageEvent{start, d})
}

const (
	// DefaultSlowOver is RaftBenchConfig.SlowOver's default.
	DefaultSlowOver = 50 * time.Millisecond
	// maxSlowPerWorker bounds the slow proposals each worker keeps.
	maxSlowPerWorker = 1024
)

// percentiles sorts samples (in place) and returns p50, p90, p99, max.
func percentiles(samples []time.Duration) (p50, p90, p99, mx time.Duration) {
	if len(samples) == 0 {
		return
	}
	slices.Sort(samples)
	at := func(q float64) time.Duration {
		i := int(q * float64(len(samples)-1))
		return samples[i]
	}
	return at(0.50), at(0.90), at(0.99), samples[len(samples)-1]
}

func mergeRecorders(name string, settings map[string]string, rs []*recorder, elapsed time.Duration) (BenchResult, []time.Duration) {
	res := BenchResult{Name: name, Settings: settings, Errors: map[string]int{}, Duration: elapsed, Extra: map[string]string{}}
	var all []time.Duration
	for _, r := range rs {
		res.Ops += r.ops
		all = append(all, r.lat...)
		for k, v := range r.errors {
			res.Errors[k] += v
		}
	}
	if elapsed > 0 {
		res.OpsPerSec = float64(res.Ops) / elapsed.Seconds()
	}
	res.P50, res.P90, res.P99, res.Max = percentiles(all)
	return res, all
}

// ---------------------------------------------------------------------------
// A minimal state machine over the Pebble StateStore.

// recordIDLen is the length of a recorded command's id: its first bytes.
const recordIDLen = 16

// Keys of recordMachine in the state store.
var (
	recordPrefix = []byte("c/")
	recordChain  = []byte("m/chain")
)

// recordMachine is a txswitch.StateMachine that writes every command to the
// Pebble StateStore: under c/<id> (the command's first recordIDLen bytes) it
// keeps how many times that id was applied and the rest of the payload, and
// under m/chain a hash of every applied (index, command) in order. A
// command applied twice is thus visible in the durable state itself, and
// two replicas applied the same sequence iff their chains are equal. The
// benchmark uses it as a cheap but real apply; the crash tests use it to
// detect double and missing applications.
type recordMachine struct {
	st *pebblestore.StateStore
	// blind skips reading the previous count (Count is then reported 0
	// and stored as 1): a pure write per command, for the benchmark.
	blind bool
}

var (
	_ txswitch.StateMachine = (*recordMachine)(nil)
	_ consensus.StateSyncer = (*recordMachine)(nil)
	_ consensus.StateSyncer = (*applyTimer)(nil)
)

// recordResult is what Apply returns for one command.
type recordResult struct {
	Index uint64
	Count uint32 // applications of this id so far, this one included
}

func recordID(data []byte) []byte {
	if len(data) > recordIDLen {
		return data[:recordIDLen]
	}
	return data
}

func recordKey(id []byte) []byte { return append(slices.Clip(recordPrefix), id...) }

// Apply implements txswitch.StateMachine: one batch, committed with the
// last command's index.
func (m *recordMachine) Apply(cmds []txswitch.Command) ([]any, error) {
	if len(cmds) == 0 {
		return nil, nil
	}
	b := m.st.NewBatch()
	defer b.Close()
	chain, err := b.Get(recordChain)
	if err != nil && !errors.Is(err, txswitch.ErrNotFound) {
		return nil, fmt.Errorf("read chain: %w", err)
	}
	// The chain advances per command, so it does not depend on how the
	// commands were batched into Apply calls.
	h := sha256.New()
	res := make([]any, len(cmds))
	var ib [8]byte
	for i, c := range cmds {
		binary.BigEndian.PutUint64(ib[:], c.Index)
		h.Reset()
		h.Write(chain)
		h.Write(ib[:])
		h.Write(c.Data)
		chain = h.Sum(chain[:0])
		if len(c.Data) == 0 {
			continue // leader's empty entry or a conf change
		}
		key := recordKey(recordID(c.Data))
		var count uint32 // applications before this one
		if !m.blind {
			switch v, err := b.Get(key); {
			case err == nil && len(v) >= 4:
				count = binary.BigEndian.Uint32(v)
			case err == nil:
				return nil, fmt.Errorf("command %d: corrupt record %q", c.Index, key)
			case !errors.Is(err, txswitch.ErrNotFound):
				return nil, fmt.Errorf("command %d: %w", c.Index, err)
			}
		}
		val := binary.BigEndian.AppendUint32(nil, count+1)
		if len(c.Data) > recordIDLen {
			val = append(val, c.Data[recordIDLen:]...)
		}
		if err := b.Set(key, val); err != nil {
			return nil, fmt.Errorf("command %d: %w", c.Index, err)
		}
		if m.blind {
			res[i] = recordResult{Index: c.Index}
		} else {
			res[i] = recordResult{Index: c.Index, Count: count + 1}
		}
	}
	if err := b.Set(recordChain, chain); err != nil {
		return nil, fmt.Errorf("write chain: %w", err)
	}
	if err := b.Commit(cmds[len(cmds)-1].Index); err != nil {
		return nil, fmt.Errorf("commit commands %d-%d: %w", cmds[0].Index, cmds[len(cmds)-1].Index, err)
	}
	return res, nil
}

// AppliedIndex implements txswitch.StateMachine. A read failure reports 0,
// which makes raft re-deliver entries the store then refuses loudly
// (Commit never goes backwards).
func (m *recordMachine) AppliedIndex() uint64 {
	i, _ := m.st.AppliedIndex()
	return i
}

// Snapshot implements txswitch.StateMachine.
func (m *recordMachine) Snapshot() (uint64, []byte, error) { return m.st.SnapshotState() }

// SyncState implements consensus.StateSyncer.
func (m *recordMachine) SyncState() (uint64, error) { return m.st.SyncState() }

// Restore implements txswitch.StateMachine.
func (m *recordMachine) Restore(index uint64, data []byte) error {
	return m.st.RestoreState(index, data)
}

// syncCounter wraps a LogStore to count synced Saves (fsyncs of the log)
// and time each of them.
type syncCounter struct {
	consensus.LogStore
	saves stage
	// records times the snapshot records and log compactions, which the
	// Ready loop itself writes.
	records stage
}

func (s *syncCounter) CreateSnapshot(index uint64, cs *raftpb.ConfState, data []byte) (*raftpb.Snapshot, error) {
	start := time.Now()
	defer s.records.record(start)
	return s.LogStore.CreateSnapshot(index, cs, data)
}

func (s *syncCounter) Compact(index uint64) error {
	start := time.Now()
	defer s.records.record(start)
	return s.LogStore.Compact(index)
}

func (s *syncCounter) Save(hs *raftpb.HardState, ents []*raftpb.Entry, snap *raftpb.Snapshot, sync bool) error {
	if !sync {
		return s.LogStore.Save(hs, ents, snap, sync)
	}
	start := time.Now()
	err := s.LogStore.Save(hs, ents, snap, sync)
	s.saves.record(start)
	return err
}

// applyTimer wraps the benchmark's state machine to time its Apply calls
// and snapshots.
type applyTimer struct {
	*recordMachine
	applies stage
	syncs   stage // SyncState: what consensus' own snapshots cost
	images  stage // Snapshot: state images, built only for followers
}

func (a *applyTimer) Apply(cmds []txswitch.Command) ([]any, error) {
	start := time.Now()
	res, err := a.recordMachine.Apply(cmds)
	a.applies.record(start)
	return res, err
}

// SyncState forwards to the wrapped state machine: consensus snapshots a
// StateSyncer with a sync and a record, and anything else with a full
// state image, so hiding it would make the benchmark copy the whole state
// every SnapshotEvery entries, which production does not do.
func (a *applyTimer) SyncState() (uint64, error) {
	start := time.Now()
	defer a.syncs.record(start)
	return a.recordMachine.SyncState()
}

// Snapshot times the state image builds (off the Ready loop, but they
// compete for the CPU and the disk).
func (a *applyTimer) Snapshot() (uint64, []byte, error) {
	start := time.Now()
	defer a.images.record(start)
	return a.recordMachine.Snapshot()
}

// ---------------------------------------------------------------------------
// Raft benchmark.

// RaftBenchConfig configures BenchRaft.
type RaftBenchConfig struct {
	// Dir holds the nodes' data dirs (default: a temp dir, removed after).
	Dir          string
	Nodes        int // default 3
	Proposers    int // default 256
	PayloadBytes int // default 256 (at least recordIDLen)
	Duration     time.Duration
	// Warmup runs traffic before measuring (default 1s, negative: none).
	Warmup time.Duration
	// SnapshotEvery is passed to consensus (0: its default). A snapshot
	// is a record plus a log compaction (no state image unless a follower
	// needs one); a huge value measures the log path alone.
	SnapshotEvery uint64
	// Rate, when > 0, paces the proposers to Rate proposals/s in total
	// (open loop, each proposer on a fixed schedule of Proposers/Rate
	// seconds) instead of a closed loop. Latency is then counted from the
	// scheduled send time, not the actual one, so a stall that delays the
	// following sends shows up in their latency too (no coordinated
	// omission). A closed loop measures latency at saturation, where it is
	// Proposers/throughput by Little's law; a paced run measures it at a
	// given load.
	Rate   float64
	Logger *zap.Logger
	// TraceSlow, when set, receives for the slowest proposals what every
	// node's stages (Save, Apply, snapshot, pebble flush, compaction, write
	// stall) did while they waited: a debugging aid for the latency tail.
	TraceSlow io.Writer
	// SlowOver is the latency from which TraceSlow looks at a proposal
	// (default DefaultSlowOver).
	SlowOver time.Duration
	// Midway, when set, is called once halfway through the measured
	// period, with the cluster under load (a heap profile, say). Its cost
	// counts in the results.
	Midway func()
}

type raftBenchNode struct {
	db     *pebblestore.DB
	tr     *tcptransport.Transport
	node   *consensus.Node
	logs   *syncCounter
	apply  *applyTimer
	pebble *pebbleStages
}

// stages lists the node's timed stages in report order.
func (n *raftBenchNode) stages() []namedStage {
	return []namedStage{
		{"synced Save", &n.logs.saves}, {"Apply", &n.apply.applies}, {"snapshot state sync", &n.apply.syncs}, {"snapshot record+compact (loop)", &n.logs.records},
		{"snapshot state image", &n.apply.images},
		{"pebble flush", &n.pebble.flush}, {"pebble compaction", &n.pebble.compaction},
		{"pebble write stall", &n.pebble.stall}, {"pebble WAL created", &n.pebble.walCreated},
	}
}

// BenchRaft measures committed-and-applied proposals per second of a raft
// group over the real TCP transport on loopback and Pebble on disk with
// synced Saves: Proposers goroutines each propose PayloadBytes commands to
// the leader in a closed loop (or paced to Rate) for Duration.
func BenchRaft(ctx context.Context, cfg RaftBenchConfig) (_ BenchResult, err error) {
	if cfg.Nodes <= 0 {
		cfg.Nodes = 3
	}
	if cfg.Proposers <= 0 {
		cfg.Proposers = 256
	}
	if cfg.PayloadBytes <= 0 {
		cfg.PayloadBytes = 256
	}
	cfg.PayloadBytes = max(cfg.PayloadBytes, recordIDLen)
	if cfg.Duration <= 0 {
		cfg.Duration = 10 * time.Second
	}
	if cfg.Warmup == 0 {
		cfg.Warmup = time.Second
	}
	if cfg.SlowOver <= 0 {
		cfg.SlowOver = DefaultSlowOver
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Dir == "" {
		if cfg.Dir, err = os.MkdirTemp("", "txswitch-bench-raft-"); err != nil {
			return BenchResult{}, err
		}
		defer os.RemoveAll(cfg.Dir)
	}

	nodes := make([]*raftBenchNode, cfg.Nodes)
	defer func() {
		for _, n := range nodes {
			if n == nil {
				continue
			}
			if n.node != nil {
				n.node.Stop()
			}
			_ = n.tr.Close()
			_ = n.db.Close()
		}
	}()
	peers := make([]consensus.Peer, cfg.Nodes)
	for i := range nodes {
		id := uint64(i + 1)
		ps := newPebbleStages()
		db, err := pebblestore.Open(filepath.Join(cfg.Dir, "node"+strconv.Itoa(i+1)), pebblestore.Options{Logger: cfg.Logger.Named("pebble"), EventListener: ps.listener()})
		if err != nil {
			return BenchResult{}, err
		}
		tr, err := tcptransport.New(tcptransport.Config{ID: id, Group: DefaultGroup, ListenAddr: "127.0.0.1:0", Logger: cfg.Logger.Named("transport")})
		if err != nil {
			_ = db.Close()
			return BenchResult{}, err
		}
		nodes[i] = &raftBenchNode{db: db, tr: tr, logs: &syncCounter{LogStore: db.LogStore(DefaultGroup)},
			apply: &applyTimer{recordMachine: &recordMachine{st: db.StateStore(DefaultGroup), blind: true}}, pebble: ps}
		peers[i] = consensus.Peer{ID: id, RaftAddr: tr.Addr().String()}
	}
	for i, n := range nodes {
		n.node, err = consensus.NewNode(consensus.Config{
			ID: uint64(i + 1), Group: DefaultGroup, LogStore: n.logs,
			StateMachine: n.apply,
			Transport:    n.tr, Peers: peers, SnapshotEvery: cfg.SnapshotEvery, Logger: cfg.Logger.Named("raft"),
		})
		if err != nil {
			return BenchResult{}, fmt.Errorf("start node %d: %w", i+1, err)
		}
		n.tr.Start(n.node)
	}
	leader, err := waitRaftLeader(ctx, nodes, 30*time.Second)
	if err != nil {
		return BenchResult{}, err
	}

	snapEvery := cfg.SnapshotEvery
	if snapEvery == 0 {
		snapEvery = consensus.DefaultSnapshotEvery
	}
	proposersDesc := strconv.Itoa(cfg.Proposers) + " closed-loop, each proposal bounded by a >= 4s deadline"
	var interval time.Duration // between one proposer's scheduled sends (paced)
	if cfg.Rate > 0 {
		interval = time.Duration(float64(cfg.Proposers) / cfg.Rate * float64(time.Second))
		proposersDesc = fmt.Sprintf("%d paced to %.0f proposals/s in total (one every %v each; latency from the scheduled send), each proposal bounded by a >= 4s deadline", cfg.Proposers, cfg.Rate, interval)
	}
	settings := map[string]string{
		"nodes": strconv.Itoa(cfg.Nodes) + " in this process", "proposers": proposersDesc,
		"payload": fmt.Sprintf("%d bytes", cfg.PayloadBytes), "fsync": "on (synced Save per Ready)",
		"transport": "TCP on loopback", "storage": "pebble on disk (" + cfg.Dir + "), one DB per node, default pebblestore options",
		"state machine": "one pebble write per command (blind: no read), applied index in the same batch",
		"target":        "leader (node " + strconv.FormatUint(leader.node.ID(), 10) + ")",
		"duration":      cfg.Duration.String(), "warmup": max(cfg.Warmup, 0).String(),
		"snapshot every": fmt.Sprintf("%d entries (record + compaction; images only for followers that need one)", snapEvery),
		"raft":           fmt.Sprintf("consensus defaults: MaxBatch %d, MaxSizePerMsg %d, MaxInflightMsgs %d", consensus.DefaultMaxBatch, consensus.DefaultMaxSizePerMsg, consensus.DefaultMaxInflightMsgs),
		"cpus":           fmt.Sprintf("%d (GOMAXPROCS %d)", runtime.NumCPU(), runtime.GOMAXPROCS(0)),
	}
	if l := loadAvg(); l != "" {
		settings["load average"] = l + " (at start; the machine may be shared)"
	}

	// measuring flips on after the warmup; only then are results recorded.
	var measuring atomic.Bool
	stop := make(chan struct{})
	recs := make([]*recorder, cfg.Proposers)
	var wg sync.WaitGroup
	for p := range cfg.Proposers {
		recs[p] = newRecorder(maxSamples / cfg.Proposers)
		recs[p].slowOver = cfg.SlowOver
		wg.Go(func() {
			rec := recs[p]
			payload := make([]byte, cfg.PayloadBytes)
			binary.BigEndian.PutUint64(payload, uint64(p))
			for i := range payload[recordIDLen:] {
				payload[recordIDLen+i] = byte(i)
			}
			// One deadline context serves many proposals (a timer per
			// proposal costs the 2-core machine more than some of what is
			// measured); it is renewed so each proposal has 4 to 5 s.
			dl := renewingDeadline{parent: ctx}
			defer dl.stop()
			// Paced: proposer p's sends are scheduled every interval,
			// the proposers staggered across it.
			next := time.Now().Add(interval * time.Duration(p) / time.Duration(cfg.Proposers))
			for seq := uint64(1); ; seq++ {
				if interval > 0 {
					if wait := time.Until(next); wait > 0 {
						select {
						case <-stop:
							return
						case <-ctx.Done():
							return
						case <-time.After(wait):
						}
					}
				}
				select {
				case <-stop:
					return
				case <-ctx.Done():
					return
				default:
				}
				binary.BigEndian.PutUint64(payload[8:], seq)
				start := time.Now()
				if interval > 0 {
					start = next // behind schedule: the lag is latency too
					next = next.Add(interval)
				}
				v, err := leader.node.Propose(dl.get(time.Now()), payload)
				d := time.Since(start)
				if !measuring.Load() {
					continue
				}
				if err != nil {
					rec.fail(proposeCause(err))
					if errors.Is(err, txswitch.ErrQueueFull) {
						time.Sleep(time.Millisecond) // let the loop drain
					}
					continue
				}
				if _, ok := v.(recordResult); !ok {
					rec.fail("unexpected_result")
					continue
				}
				rec.ok(d)
				rec.slow(start, d)
			}
		})
	}
	if cfg.Warmup > 0 {
		if err := sleepCtx(ctx, cfg.Warmup); err != nil {
			close(stop)
			wg.Wait()
			return BenchResult{}, err
		}
	}
	sentBy := func() []uint64 {
		out := make([]uint64, len(nodes))
		for i, n := range nodes {
			out[i] = n.tr.Stats().Sent
		}
		return out
	}
	sent0 := sentBy()
	for _, n := range nodes {
		for _, st := range n.stages() {
			st.start()
		}
	}
	var sched stage
	sched.start()
	schedStop := make(chan struct{})
	go schedSampler(&sched, 20*time.Millisecond, 20*time.Millisecond, schedStop)
	sched0, gc0 := runtimeHist("/sched/latencies:seconds"), runtimeHist("/sched/pauses/total/gc:seconds")
	measuring.Store(true)
	start, cpu0 := time.Now(), processCPU()
	sleepErr := measure(ctx, cfg.Duration, cfg.Midway)
	measuring.Store(false)
	elapsed, cpu := time.Since(start), processCPU().sub(cpu0)
	sched1, gc1 := runtimeHist("/sched/latencies:seconds"), runtimeHist("/sched/pauses/total/gc:seconds")
	sent1 := sentBy()
	close(schedStop)
	sched.stop()
	for _, n := range nodes {
		for _, st := range n.stages() {
			st.stop()
		}
	}
	close(stop)
	wg.Wait()
	if sleepErr != nil {
		return BenchResult{}, sleepErr
	}
	res, _ := mergeRecorders("raft propose→commit→apply", settings, recs, elapsed)
	reportCPU(&res, cpu, elapsed, "proposal")
	var fsyncs, sent []string
	for i, n := range nodes {
		syncs := n.logs.saves.n()
		sent = append(sent, fmt.Sprintf("node%d %.0f", i+1, float64(sent1[i]-sent0[i])/elapsed.Seconds()))
		fsyncs = append(fsyncs, fmt.Sprintf("node%d %.0f", i+1, float64(syncs)/elapsed.Seconds()))
		if uint64(i+1) == leader.node.ID() && syncs > 0 {
			res.Extra["proposals/fsync"] = fmt.Sprintf("%.1f (leader)", float64(res.Ops)/float64(syncs))
		}
	}
	res.Extra["fsyncs/s"] = strings.Join(fsyncs, ", ")
	res.Extra["raft messages sent/s"] = strings.Join(sent, ", ")
	reportStages(&res, nodes)
	res.Extra["goroutine run-queue wait"] = histDelta(sched0, sched1)
	res.Extra["gc stop-the-world pauses"] = histDelta(gc0, gc1)
	if cfg.TraceSlow != nil {
		traceSlow(cfg.TraceSlow, cfg.SlowOver, recs, nodes, slices.Index(nodes, leader), &sched, start, start.Add(elapsed))
	}
	return res, nil
}

// renewingDeadline hands out a context whose deadline is 4 to 5 s away,
// creating a new one at most once a second.
type renewingDeadline struct {
	parent context.Context
	ctx    context.Context
	cancel context.CancelFunc
	renew  time.Time
}

func (d *renewingDeadline) get(now time.Time) context.Context {
	if d.ctx == nil || now.After(d.renew) {
		d.stop()
		d.ctx, d.cancel = context.WithTimeout(d.parent, 5*time.Second)
		d.renew = now.Add(time.Second)
	}
	return d.ctx
}

func (d *renewingDeadline) stop() {
	if d.cancel != nil {
		d.cancel()
	}
}

// loadAvg returns the 1, 5 and 15 minute load averages (Linux), or "".
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// processCPU is the CPU time (user + system) this process has used. The
// benchmarks run every node, PSP and client in one process, so CPU per
// operation is the whole system's cost of one operation; unlike ops/s it
// hardly depends on what else the machine is running.
func processCPU() cpuTimes {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return cpuTimes{}
	}
	s := []metrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}}
	metrics.Read(s)
	var gc time.Duration
	if s[0].Value.Kind() == metrics.KindFloat64 {
		gc = time.Duration(s[0].Value.Float64() * float64(time.Second))
	}
	return cpuTimes{total: time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), gc: gc}
}

// cpuTimes is the process CPU time so far, and the part of it the Go
// runtime estimates was garbage collection.
type cpuTimes struct{ total, gc time.Duration }

func (c cpuTimes) sub(d cpuTimes) cpuTimes { return cpuTimes{c.total - d.total, c.gc - d.gc} }

// reportCPU adds the process CPU used during the measured period, in
// cores and per successful operation.
func reportCPU(res *BenchResult, cpu cpuTimes, elapsed time.Duration, op string) {
	if elapsed > 0 {
		res.Extra["cpu used"] = fmt.Sprintf("%.2f cores", cpu.total.Seconds()/elapsed.Seconds())
	}
	if res.Ops > 0 {
		res.CPUPerOp = cpu.total / time.Duration(res.Ops)
		res.Extra["cpu/"+op] = fmt.Sprintf("%v (gc %v)", res.CPUPerOp.Round(time.Microsecond),
			(cpu.gc / time.Duration(res.Ops)).Round(time.Microsecond))
	}
}

func avg(ns int64, n uint64) time.Duration {
	if n == 0 {
		return 0
	}
	return (time.Duration(ns) / time.Duration(n)).Round(time.Microsecond)
}

func waitRaftLeader(ctx context.Context, nodes []*raftBenchNode, timeout time.Duration) (*raftBenchNode, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, n := range nodes {
			if n.node.Leadership().IsLeader {
				return n, nil
			}
		}
		if err := sleepCtx(ctx, 10*time.Millisecond); err != nil {
			return nil, err
		}
	}
	return nil, errors.New("bench: no raft leader in time")
}

func proposeCause(err error) string {
	switch {
	case errors.Is(err, txswitch.ErrQueueFull):
		return "queue_full"
	case errors.Is(err, txswitch.ErrNoLeader):
		return "no_leader"
	case errors.Is(err, txswitch.ErrDropped):
		return "dropped"
	case errors.Is(err, txswitch.ErrTimeout):
		return "timeout"
	case errors.Is(err, txswitch.ErrStopped):
		return "stopped"
	}
	return "other"
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// measure waits out the measured period d, calling midway (when set)
// halfway through it.
func measure(ctx context.Context, d time.Duration, midway func()) error {
	if midway == nil {
		return sleepCtx(ctx, d)
	}
	start := time.Now()
	if err := sleepCtx(ctx, d/2); err != nil {
		return err
	}
	midway()
	return sleepCtx(ctx, d-time.Since(start))
}

// ---------------------------------------------------------------------------
// Payments benchmark.

// Payment benchmark targets.
const (
	TargetLeader = "leader" // every request to the leader's API
	TargetAll    = "all"    // requests spread over every node (followers forward)
)

// PaymentsBenchConfig configures BenchPayments.
type PaymentsBenchConfig struct {
	// DBCPU, when set, reads the central database server's CPU time so far
	// (it shares the machine's cores): the result then has DBCPUPerOp.
	DBCPU func() time.Duration

	// Dir holds the nodes' data dirs (default: a temp dir, removed after).
	Dir     string
	Clients int // default 512
	// Duration is the measured period, after Warmup (default 1s).
	Duration time.Duration
	Warmup   time.Duration
	// ProviderLatency is every simulated PSP's fixed latency per call.
	ProviderLatency time.Duration
	// Target is TargetLeader (default) or TargetAll.
	Target string
	// CentralDB is a PostgreSQL URL the cluster exports to (empty: none),
	// to measure what the export costs the payments.
	CentralDB string
	Logger    *zap.Logger
	// Midway is as RaftBenchConfig.Midway.
	Midway func()
}

// BenchPayments runs a local 3-node cluster (fsync on) with simulated PSPs
// answering after ProviderLatency and never declining, and Clients HTTP
// clients each creating an order and paying it by card (automatic capture)
// in a closed loop. Ops counts captured payments; latencies are of the
// whole create + pay, with the pay call's alone in Extra.
func BenchPayments(ctx context.Context, cfg PaymentsBenchConfig) (_ BenchResult, err error) {
	if cfg.Clients <= 0 {
		cfg.Clients = 512
	}
	if cfg.Duration <= 0 {
		cfg.Duration = 10 * time.Second
	}
	if cfg.Warmup == 0 {
		cfg.Warmup = time.Second
	}
	if cfg.Target == "" {
		cfg.Target = TargetLeader
	}
	if cfg.Target != TargetLeader && cfg.Target != TargetAll {
		return BenchResult{}, fmt.Errorf("bench: target %q: want %q or %q", cfg.Target, TargetLeader, TargetAll)
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	l, err := StartLocal(LocalConfig{Dir: cfg.Dir, Logger: cfg.Logger, CentralDB: cfg.CentralDB})
	if err != nil {
		return BenchResult{}, err
	}
	defer l.Close()
	beh := sim.Behaviour{DisableBuiltinDeclines: true}
	if cfg.ProviderLatency > 0 {
		beh.Methods = map[string]sim.MethodBehaviour{sim.AnyMethod: {Latency: sim.Latency{FixedMillis: cfg.ProviderLatency.Milliseconds()}}}
	}
	for name, s := range l.Sims {
		if err := s.SetBehaviour(beh); err != nil {
			return BenchResult{}, fmt.Errorf("set behaviour of %s: %w", name, err)
		}
	}
	lead := l.Leader()
	if lead == nil {
		return BenchResult{}, errors.New("bench: no leader")
	}
	targets := []string{lead.APIAddr()}
	if cfg.Target == TargetAll {
		targets = nil
		for _, n := range l.Nodes() {
			targets = append(targets, n.APIAddr())
		}
	}
	// The clients are fasthttp's, as a load generator's would be: they share
	// the 2 cores with the nodes and the simulated PSPs, and net/http's
	// client cost about twice the CPU per request, which the bench then
	// counted against the switch.
	hosts := map[string]*fasthttp.HostClient{}
	for _, addr := range targets {
		hosts[addr] = &fasthttp.HostClient{
			Addr: addr, MaxConns: cfg.Clients, MaxIdleConnDuration: time.Minute,
			MaxResponseBodySize: 1 << 20, ReadTimeout: benchRequestTimeout, WriteTimeout: benchRequestTimeout,
		}
	}
	defer func() {
		for _, hc := range hosts {
			hc.CloseIdleConnections()
		}
	}()

	settings := map[string]string{
		"nodes": strconv.Itoa(l.Size()), "clients": strconv.Itoa(cfg.Clients),
		"fsync": "on", "provider latency": cfg.ProviderLatency.String(),
		"target": cfg.Target, "api": "HTTP/1.1 keep-alive, fasthttp client, a connection per client",
		"flow":     "POST /v1/orders + POST /v1/orders/{id}/payments (card, automatic capture)",
		"duration": cfg.Duration.String(), "warmup": max(cfg.Warmup, 0).String(),
		"central db": "none",
	}
	if cfg.CentralDB != "" {
		settings["central db"] = "exporting (leader)"
	}

	var measuring atomic.Bool
	stop := make(chan struct{})
	recs := make([]*recorder, cfg.Clients)
	payRecs := make([]*recorder, cfg.Clients)
	var wg sync.WaitGroup
	for c := range cfg.Clients {
		recs[c] = newRecorder(maxSamples / cfg.Clients)
		payRecs[c] = newRecorder(maxSamples / cfg.Clients)
		wg.Go(func() {
			addr := targets[c%len(targets)]
			bc := benchClient{hc: hosts[addr], apiKey: l.APIKey, addr: addr}
			for op := 0; ; op++ {
				select {
				case <-stop:
					return
				case <-ctx.Done():
					return
				default:
				}
				m := measuring.Load()
				start := time.Now()
				var o txswitch.Order
				code, err := bc.post(ctx, "/v1/orders", fmt.Sprintf("bo-%d-%d", c, op), txswitch.CreateOrderRequest{
					Reference: fmt.Sprintf("bench-%d-%d", c, op),
					Amount:    txswitch.Money{Value: 1000 + int64(op%500), Currency: "EUR"},
					Customer:  txswitch.Customer{Country: "NL", ID: fmt.Sprintf("cust-%d-%d", c, op)},
					Channel:   "online",
				}, &o)
				if err != nil || code != http.StatusCreated {
					if m {
						recs[c].fail(httpCause("create", code, err))
					}
					continue
				}
				payStart := time.Now()
				var p txswitch.Payment
				code, err = bc.post(ctx, "/v1/orders/"+o.ID+"/payments", fmt.Sprintf("bp-%d-%d", c, op),
					txswitch.CreatePaymentRequest{Method: "card", Capture: "automatic"}, &p)
				end := time.Now()
				if !m || !measuring.Load() {
					continue
				}
				switch {
				case err != nil || code/100 != 2:
					recs[c].fail(httpCause("pay", code, err))
				case p.Status != txswitch.PaymentCaptured && p.Failure != nil:
					recs[c].fail("pay_" + p.Status + "_" + p.Failure.Code)
				case p.Status != txswitch.PaymentCaptured:
					recs[c].fail("pay_" + p.Status)
				default:
					recs[c].ok(end.Sub(start))
					payRecs[c].ok(end.Sub(payStart))
				}
			}
		})
	}
	if cfg.Warmup > 0 {
		if err := sleepCtx(ctx, cfg.Warmup); err != nil {
			close(stop)
			wg.Wait()
			return BenchResult{}, err
		}
	}
	dbCPU := func() time.Duration { return 0 }
	if cfg.DBCPU != nil {
		dbCPU = cfg.DBCPU
	}
	measuring.Store(true)
	start, cpu0, db0 := time.Now(), processCPU(), dbCPU()
	sleepErr := measure(ctx, cfg.Duration, cfg.Midway)
	measuring.Store(false)
	elapsed, cpu, db := time.Since(start), processCPU().sub(cpu0), dbCPU()-db0
	close(stop)
	wg.Wait()
	if sleepErr != nil {
		return BenchResult{}, sleepErr
	}
	res, _ := mergeRecorders("payments create+pay", settings, recs, elapsed)
	reportCPU(&res, cpu, elapsed, "payment")
	if cfg.DBCPU != nil && res.Ops > 0 {
		res.DBCPUPerOp = db / time.Duration(res.Ops)
		res.Extra["central db cpu/payment"] = fmt.Sprintf("%v (%.2f cores)", res.DBCPUPerOp.Round(time.Microsecond), db.Seconds()/elapsed.Seconds())
	}
	payRes, _ := mergeRecorders("", nil, payRecs, elapsed)
	res.Extra["pay call latency"] = fmt.Sprintf("p50 %v  p90 %v  p99 %v  max %v",
		payRes.P50.Round(time.Microsecond), payRes.P90.Round(time.Microsecond), payRes.P99.Round(time.Microsecond), payRes.Max.Round(time.Microsecond))
	if n := l.Leader(); n != nil && cfg.CentralDB != "" {
		if st, err := n.NodeStatus(); err == nil && st.Export != nil {
			res.Extra["export at the end"] = fmt.Sprintf("watermark %d of %d, backlog %d events, lag %.1fs, breaker %s",
				st.Export.Watermark, st.Export.LastSeq, st.Export.Backlog, st.Export.LagSeconds, st.Export.BreakerState)
		}
	}
	return res, nil
}

// benchRequestTimeout bounds one bench request, as net/http's client
// Timeout did: a request still waiting at the end of the run ends with it.
const benchRequestTimeout = 30 * time.Second

type benchClient struct {
	hc     *fasthttp.HostClient
	apiKey string
	addr   string
}

func (c benchClient) post(ctx context.Context, path, idemKey string, body, out any) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	b, err := json.Marshal(body)
	if err != nil {
		return 0, err
	}
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + c.addr + path)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.Set("Authorization", "Bearer "+c.apiKey)
	req.Header.SetContentType("application/json")
	req.Header.Set("Idempotency-Key", idemKey)
	req.SetBodyRaw(b)
	if err := c.hc.DoTimeout(req, resp, benchRequestTimeout); err != nil {
		return 0, err
	}
	code := resp.StatusCode()
	if code/100 == 2 && out != nil {
		if err := json.Unmarshal(resp.Body(), out); err != nil {
			return code, fmt.Errorf("decode %s: %w", path, err)
		}
	}
	return code, nil
}

func httpCause(call string, code int, err error) string {
	if err != nil {
		return call + "_transport_error"
	}
	return call + "_" + strconv.Itoa(code)
}
