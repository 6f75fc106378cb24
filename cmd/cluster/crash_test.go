package cluster

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/txswitch/txswitch/consensus"
	"github.com/txswitch/txswitch/consensus/memnet"
	"github.com/txswitch/txswitch/storage/pebblestore"
	txswitch "github.com/txswitch/txswitch/switch"
)

var crashSeedFlag = flag.Uint64("cluster.crash.seed", 0, "replay TestCrashAtFailpoints with this seed (or env CRASH_SEED)")

func crashSeed(t *testing.T) uint64 {
	if *crashSeedFlag != 0 {
		return *crashSeedFlag
	}
	if s := os.Getenv("CRASH_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("CRASH_SEED: %v", err)
		}
		return v
	}
	return uint64(time.Now().UnixNano())
}

// crashMember is one node of crashCluster: its crashable filesystem
// outlives the node, as a disk outlives a process.
type crashMember struct {
	id    uint64
	fs    *vfs.MemFS
	db    *pebblestore.DB
	sm    *recordMachine
	node  *consensus.Node
	armed atomic.Pointer[string] // failpoint where the node crashes next
	// crashedAt is the failpoint the node last crashed at; before and
	// after are its applied index just before the crash (unsynced state
	// included) and as recovered from the surviving files.
	crashedAt     string
	before, after uint64
}

// crashCluster is a 3-node group built from consensus.NewNode, Pebble on
// vfs.NewCrashableMem and memnet, with recordMachine as state machine.
// A pump goroutine delivers messages as soon as they are sent; the nodes'
// clocks are wall-clock tickers (fast ones), so the test is timed by
// progress (acknowledged proposals), never by sleeping.
type crashCluster struct {
	t     *testing.T
	rng   *rand.Rand
	net   *memnet.Network
	peers []consensus.Peer

	mu      sync.Mutex
	members []*crashMember

	stopPump chan struct{}
	pumpDone chan struct{}
}

const crashGroup = 9

func newCrashCluster(t *testing.T, seed uint64) *crashCluster {
	c := &crashCluster{
		t: t, rng: rand.New(rand.NewPCG(seed, 0xc4a5)), net: memnet.New(int64(seed)),
		stopPump: make(chan struct{}), pumpDone: make(chan struct{}),
	}
	for i := 1; i <= 3; i++ {
		c.peers = append(c.peers, consensus.Peer{ID: uint64(i), RaftAddr: fmt.Sprintf("n%d:7000", i)})
	}
	for _, p := range c.peers {
		m := &crashMember{id: p.ID, fs: vfs.NewCrashableMem()}
		c.members = append(c.members, m)
		c.start(m)
	}
	go c.pump()
	t.Cleanup(c.close)
	return c
}

func (c *crashCluster) logger() *zap.Logger {
	if testing.Verbose() {
		return zaptest.NewLogger(c.t, zaptest.Level(zap.WarnLevel))
	}
	return zap.NewNop()
}

// start opens the member's journal on its filesystem and starts its node.
func (c *crashCluster) start(m *crashMember) {
	c.t.Helper()
	db, err := pebblestore.Open("data", pebblestore.Options{FS: m.fs, CacheSize: 4 << 20, MemTableSize: 4 << 20})
	if err != nil {
		c.t.Fatalf("node %d: open journal: %v", m.id, err)
	}
	sm := &recordMachine{st: db.StateStore(crashGroup)}
	m.after = sm.AppliedIndex()
	n, err := consensus.NewNode(consensus.Config{
		ID: m.id, Group: crashGroup, LogStore: db.LogStore(crashGroup), StateMachine: sm,
		Transport: c.net.Endpoint(m.id, crashGroup), Peers: c.peers,
		TickInterval: 10 * time.Millisecond, ProposalTimeout: 5 * time.Second,
		// Small batches so one Ready's committed entries span several
		// Apply calls and the mid-apply failpoint has a "middle".
		MaxBatch: 4,
		// Frequent snapshots and compaction, so a restarted node may
		// need a snapshot from the leader (the leader keeps up to 48
		// entries for a member that is behind, so short absences catch
		// up from the log).
		SnapshotEvery: 64, SnapshotKeep: 16, LagRetain: 48,
		Logger: c.logger().Named("node" + strconv.FormatUint(m.id, 10)),
		Failpoint: func(name string) {
			if p := m.armed.Load(); p != nil && *p == name && m.armed.CompareAndSwap(p, nil) {
				panic(consensus.ErrFailpointCrash)
			}
		},
	})
	if err != nil {
		c.t.Fatalf("node %d: start: %v", m.id, err)
	}
	c.net.Attach(m.id, n)
	c.mu.Lock()
	m.db, m.sm, m.node = db, sm, n
	c.mu.Unlock()
}

func (c *crashCluster) pump() {
	defer close(c.pumpDone)
	for {
		select {
		case <-c.stopPump:
			return
		default:
		}
		if c.net.DeliverDue() == 0 {
			time.Sleep(100 * time.Microsecond)
		}
	}
}

func (c *crashCluster) close() {
	close(c.stopPump)
	<-c.pumpDone
	for _, m := range c.members {
		if m.node != nil {
			m.node.Stop()
			_ = m.db.Close()
		}
	}
}

func (c *crashCluster) member(id uint64) *crashMember { return c.members[id-1] }

// nodes returns the running nodes.
func (c *crashCluster) nodes() []*consensus.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*consensus.Node
	for _, m := range c.members {
		if m.node != nil {
			out = append(out, m.node)
		}
	}
	return out
}

// leader waits for a running node that leads.
func (c *crashCluster) leader() *consensus.Node {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for _, n := range c.nodes() {
			if n.Err() == nil && n.Leadership().IsLeader {
				return n
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.t.Fatal("no leader")
	return nil
}

// crashAndRestart waits until member id's loop died at its armed failpoint,
// then simulates the power loss: the filesystem as of the crash, keeping
// only synced data (and, with the seed's dice, some of the unsynced), and a
// restart of the same id on it.
func (c *crashCluster) crashAndRestart(id uint64, failpoint string) {
	c.t.Helper()
	m := c.member(id)
	select {
	case <-m.node.Done():
	case <-time.After(30 * time.Second):
		c.t.Fatalf("node %d never reached failpoint %s", id, failpoint)
	}
	if err := m.node.Err(); !errors.Is(err, consensus.ErrFailpointCrash) {
		c.t.Fatalf("node %d stopped with %v, not a failpoint crash", id, err)
	}
	c.net.Detach(id)
	cfg := vfs.CrashCloneCfg{}
	if c.rng.IntN(2) == 1 {
		cfg = vfs.CrashCloneCfg{UnsyncedDataPercent: 1 + c.rng.IntN(60), RNG: rand.New(rand.NewPCG(c.rng.Uint64(), 1))}
	}
	clone := m.fs.CrashClone(cfg)
	m.before = m.sm.AppliedIndex()
	c.mu.Lock()
	old, oldDB := m.node, m.db
	m.node, m.crashedAt = nil, failpoint
	c.mu.Unlock()
	old.Stop()
	// The old process' files are discarded with its filesystem; closing
	// only releases its memory.
	_ = oldDB.Close()
	m.fs = clone
	c.start(m)
}

// crashLedger records the fate of every proposed command id.
type crashLedger struct {
	mu      sync.Mutex
	acked   map[string]uint64 // id → index the proposer was told
	unknown map[string]bool   // timeout / stopped: may or may not apply
	errs    []error
	ackedN  atomic.Int64
}

func crashCmdID(client, op int) string { return fmt.Sprintf("c%03d-%011d", client, op) }

// TestCrashAtFailpoints crashes one node — the leader or a follower — at
// each named step of the Ready loop while clients propose, loses whatever
// it had not fsynced, restarts it with the same id on the surviving files
// and keeps the traffic going. Afterwards every node has applied every
// acknowledged command exactly once (counted in the durable state itself),
// no command twice, the same sequence (equal hash chains) up to the same
// applied index. The seed (printed on failure; replay with CRASH_SEED=n)
// picks which unsynced blocks survive; goroutine scheduling is not replayed.
func TestCrashAtFailpoints(t *testing.T) {
	seed := crashSeed(t)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("crash test failed: replay with CRASH_SEED=%d", seed)
		}
	})
	cases := []struct{ failpoint, role string }{
		{consensus.FailpointBeforePersist, "leader"},
		{consensus.FailpointBeforePersist, "follower"},
		{consensus.FailpointAfterPersist, "leader"},
		{consensus.FailpointAfterPersist, "follower"},
		{consensus.FailpointAfterSend, "leader"},
		{consensus.FailpointAfterSend, "follower"},
		{consensus.FailpointMidApply, "leader"},
		{consensus.FailpointMidApply, "follower"},
		{consensus.FailpointAfterSnapshot, "leader"},
		{consensus.FailpointAfterSnapshot, "follower"},
	}
	for i, tc := range cases {
		caseSeed := seed + uint64(i)
		t.Run(tc.failpoint+"/"+tc.role, func(t *testing.T) {
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("case seed %d (CRASH_SEED=%d)", caseSeed, seed)
				}
			})
			runCrashCase(t, caseSeed, tc.failpoint, tc.role)
		})
	}
}

func runCrashCase(t *testing.T, seed uint64, failpoint, role string) {
	c := newCrashCluster(t, seed)
	c.leader()
	led := &crashLedger{acked: map[string]uint64{}, unknown: map[string]bool{}}

	const clients = 8
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for cl := range clients {
		wg.Go(func() {
			for op := 0; ; op++ {
				select {
				case <-stop:
					return
				default:
				}
				// Proposals go to any running node: followers forward.
				ns := c.nodes()
				n := ns[(cl+op)%len(ns)]
				id := crashCmdID(cl, op)
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				v, err := n.Propose(ctx, []byte(id))
				cancel()
				led.mu.Lock()
				switch {
				case err == nil:
					r, ok := v.(recordResult)
					if !ok || r.Count != 1 {
						led.errs = append(led.errs, fmt.Errorf("%s acknowledged with %#v: applied more than once", id, v))
					}
					led.acked[id] = r.Index
					led.ackedN.Add(1)
				case errors.Is(err, txswitch.ErrNoLeader), errors.Is(err, txswitch.ErrQueueFull), errors.Is(err, txswitch.ErrDropped):
					// Definite: it never applies (checked below: an id applied
					// must be acknowledged or of unknown outcome).
				default:
					led.unknown[id] = true
				}
				led.mu.Unlock()
				if err != nil {
					time.Sleep(time.Millisecond) // back off while the cluster recovers
				}
			}
		})
	}
	waitAcked := func(n int64) {
		t.Helper()
		target := led.ackedN.Load() + n
		deadline := time.Now().Add(30 * time.Second)
		for led.ackedN.Load() < target {
			if time.Now().After(deadline) {
				t.Fatalf("only %d of %d acknowledgements in time", led.ackedN.Load(), target)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}

	waitAcked(150) // past the first snapshot (SnapshotEvery 64)
	lead := c.leader()
	victim := lead.ID()
	if role == "follower" {
		victim = victim%3 + 1
	}
	fp := failpoint
	c.member(victim).armed.Store(&fp)
	c.crashAndRestart(victim, failpoint)
	waitAcked(150)
	close(stop)
	wg.Wait()

	// A final command through the leader: once every node has applied its
	// index, every node has applied everything before it.
	var final recordResult
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		v, err := c.leader().Propose(ctx, []byte(crashCmdID(999, attempt)))
		cancel()
		if err == nil {
			final = v.(recordResult)
			break
		}
		if attempt > 20 {
			t.Fatalf("final proposal: %v", err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, m := range c.members {
		for m.sm.AppliedIndex() < final.Index {
			if time.Now().After(deadline) {
				t.Fatalf("node %d applied %d, want ≥ %d", m.id, m.sm.AppliedIndex(), final.Index)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	// Stop the nodes so the state is quiet while it is compared.
	for _, m := range c.members {
		m.node.Stop()
	}

	led.mu.Lock()
	defer led.mu.Unlock()
	for _, err := range led.errs {
		t.Error(err)
	}
	if m := c.member(victim); m.crashedAt != failpoint {
		t.Fatalf("node %d crashed at %q, want %q", victim, m.crashedAt, failpoint)
	}
	var ref *recordState
	for _, m := range c.members {
		st := readRecordState(t, m.sm)
		for id, idx := range led.acked {
			if n := st.counts[id]; n != 1 {
				t.Errorf("node %d: acknowledged %s (index %d) applied %d times", m.id, id, idx, n)
			}
		}
		for id, n := range st.counts {
			if n != 1 {
				t.Errorf("node %d: %s applied %d times", m.id, id, n)
			}
			if _, ok := led.acked[id]; !ok && !led.unknown[id] && id[:4] != "c999" {
				t.Errorf("node %d: %s applied but its proposer was told it never would", m.id, id)
			}
		}
		if ref == nil {
			ref = &st
			continue
		}
		if st.applied != ref.applied || !bytes.Equal(st.chain, ref.chain) || len(st.counts) != len(ref.counts) {
			t.Errorf("node %d: applied %d, %d commands, chain %x; node %d: applied %d, %d commands, chain %x",
				m.id, st.applied, len(st.counts), st.chain, c.members[0].id, ref.applied, len(ref.counts), ref.chain)
		}
	}
	vm := c.member(victim)
	t.Logf("victim node %d (%s) crashed at %s with applied index %d, recovered %d; %d acknowledged, %d unknown, final applied index %d",
		victim, role, failpoint, vm.before, vm.after, len(led.acked), len(led.unknown), ref.applied)
}

// recordState is recordMachine's durable state, read back from Pebble.
type recordState struct {
	applied uint64
	chain   []byte
	counts  map[string]uint32
}

func readRecordState(t *testing.T, sm *recordMachine) recordState {
	t.Helper()
	applied, err := sm.st.AppliedIndex()
	if err != nil {
		t.Fatal(err)
	}
	chain, err := sm.st.Get(recordChain)
	if err != nil {
		t.Fatal(err)
	}
	st := recordState{applied: applied, chain: chain, counts: map[string]uint32{}}
	end := append(bytes.Clone(recordPrefix[:len(recordPrefix)-1]), recordPrefix[len(recordPrefix)-1]+1)
	if err := sm.st.Scan(recordPrefix, end, func(k, v []byte) bool {
		st.counts[string(k[len(recordPrefix):])] = binary.BigEndian.Uint32(v)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return st
}
