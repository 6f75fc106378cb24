package consensus

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/txswitch/txswitch/consensus/consensustest"
	"github.com/txswitch/txswitch/consensus/memnet"
	txswitch "github.com/txswitch/txswitch/switch"
)

// cluster runs nodes over memnet. A driver goroutine moves the world in
// rounds: deliver every due message and wait until each node has handled
// everything (node.sync), repeat until quiet, then tick every node and the
// network once. Time is logical: nothing depends on wall-clock speed.
type cluster struct {
	t     testing.TB
	net   *memnet.Network
	group uint64
	opts  func(*Config)

	mu      sync.Mutex
	members map[uint64]*member

	stopDriver chan struct{}
	driverDone chan struct{}
	// tickPause is the wall-clock pause between logical ticks.
	tickPause time.Duration
}

type member struct {
	id     uint64
	store  *MemLogStore
	sm     *consensustest.KV
	ticker *ManualTicker
	node   *Node // nil while down
	addr   string
}

func addrOf(id uint64) string { return fmt.Sprintf("node%d:7000", id) }
func apiOf(id uint64) string  { return fmt.Sprintf("node%d:8080", id) }

func newCluster(t testing.TB, size int, seed int64, opts func(*Config)) *cluster {
	t.Helper()
	c := &cluster{
		t: t, net: memnet.New(seed), group: 7, opts: opts,
		members:    map[uint64]*member{},
		stopDriver: make(chan struct{}), driverDone: make(chan struct{}),
		tickPause: 200 * time.Microsecond,
	}
	var peers []Peer
	for i := 1; i <= size; i++ {
		peers = append(peers, Peer{ID: uint64(i), RaftAddr: addrOf(uint64(i)), APIAddr: apiOf(uint64(i))})
	}
	for _, p := range peers {
		m := &member{id: p.ID, store: NewMemLogStore(), sm: consensustest.NewKV(), addr: p.RaftAddr}
		c.members[p.ID] = m
		c.start(m, peers, false)
	}
	go c.drive()
	t.Cleanup(c.close)
	return c
}

func (c *cluster) logger() *zap.Logger {
	if testing.Verbose() {
		return zaptest.NewLogger(c.t, zaptest.Level(zap.WarnLevel))
	}
	return zap.NewNop()
}

func (c *cluster) start(m *member, peers []Peer, join bool) {
	c.t.Helper()
	m.ticker = NewManualTicker()
	cfg := Config{
		ID: m.id, Group: c.group, LogStore: m.store, StateMachine: m.sm,
		Transport: c.net.Endpoint(m.id, c.group), Ticker: m.ticker,
		Peers: peers, Join: join, Logger: c.logger(),
		ProposalTimeout: 10 * time.Second,
	}
	if c.opts != nil {
		c.opts(&cfg)
	}
	n, err := NewNode(cfg)
	if err != nil {
		c.t.Fatalf("start node %d: %v", m.id, err)
	}
	c.net.Attach(m.id, n)
	c.mu.Lock()
	m.node = n
	c.members[m.id] = m
	c.mu.Unlock()
}

// crash stops node id as a kill would: it keeps its store and state.
func (c *cluster) crash(id uint64) {
	c.mu.Lock()
	m := c.members[id]
	n := m.node
	m.node = nil
	c.mu.Unlock()
	c.net.Detach(id)
	if n != nil {
		n.Stop()
	}
}

func (c *cluster) restart(id uint64) {
	c.mu.Lock()
	m := c.members[id]
	c.mu.Unlock()
	c.start(m, nil, false)
}

// join starts a new node with the id AddMember returned.
func (c *cluster) join(id uint64) *member {
	m := &member{id: id, store: NewMemLogStore(), sm: consensustest.NewKV(), addr: addrOf(id)}
	var peers []Peer
	for _, n := range c.live() {
		peers = append(peers, Peer{ID: n.ID(), RaftAddr: addrOf(n.ID())})
	}
	c.start(m, peers, true)
	return m
}

func (c *cluster) node(id uint64) *Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m := c.members[id]; m != nil {
		return m.node
	}
	return nil
}

func (c *cluster) member(id uint64) *member {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.members[id]
}

func (c *cluster) live() []*Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ns []*Node
	for _, id := range slices.Sorted(maps.Keys(c.members)) {
		if n := c.members[id].node; n != nil {
			select {
			case <-n.Done():
			default:
				ns = append(ns, n)
			}
		}
	}
	return ns
}

func (c *cluster) liveIDs() []uint64 {
	var ids []uint64
	for _, n := range c.live() {
		ids = append(ids, n.ID())
	}
	return ids
}

func (c *cluster) tickers() []*member {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ms []*member
	for _, m := range c.members {
		if m.node != nil {
			ms = append(ms, &member{id: m.id, ticker: m.ticker, node: m.node})
		}
	}
	return ms
}

func (c *cluster) drive() {
	defer close(c.driverDone)
	for {
		select {
		case <-c.stopDriver:
			return
		default:
		}
		c.settle()
		for _, m := range c.tickers() {
			m.ticker.Tick(m.node.Done())
		}
		c.net.Tick()
		// Yield the CPU between ticks (2 cores shared by many): logical
		// time only moves here, so the pause changes speed, not outcome.
		time.Sleep(c.tickPause)
	}
}

// settle delivers until the network has nothing due and every node is idle.
func (c *cluster) settle() {
	for range 1000 {
		d := c.net.DeliverDue()
		for _, n := range c.live() {
			n.sync()
		}
		if d == 0 {
			return
		}
	}
}

func (c *cluster) close() {
	select {
	case <-c.stopDriver:
		return
	default:
	}
	close(c.stopDriver)
	<-c.driverDone
	for _, n := range c.live() {
		n.Stop()
	}
}

// waitFor polls cond (logical time advances meanwhile) up to a generous
// wall-clock bound that only guards against a hung test.
func (c *cluster) waitFor(what string, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			c.t.Fatalf("gave up waiting for %s; cluster:\n%s", what, c.describe())
		}
		time.Sleep(time.Millisecond)
	}
}

// describe is every member's state for a failure message: where a wait
// got stuck is what a replay cannot show (scheduling is not replayed).
func (c *cluster) describe() string {
	var b strings.Builder
	c.mu.Lock()
	ids := slices.Sorted(maps.Keys(c.members))
	c.mu.Unlock()
	for _, id := range ids {
		c.mu.Lock()
		n, sm := c.members[id].node, c.members[id].sm
		c.mu.Unlock()
		if n == nil {
			fmt.Fprintf(&b, "  node %d: down, state machine applied %d\n", id, sm.AppliedIndex())
			continue
		}
		st := n.Status()
		fmt.Fprintf(&b, "  node %d: %s term %d leader %d commit %d applied %d snapshot %d stopped %v (err %v), state machine applied %d, progress %+v\n",
			id, st.State, st.Term, st.Leader, st.Commit, st.Applied, st.SnapshotIndex, st.Stopped, n.Err(), sm.AppliedIndex(), st.Progress)
	}
	fmt.Fprintf(&b, "  network %+v", c.net.Stats())
	return b.String()
}

// leader waits for a leader that every live node in ids agrees on.
func (c *cluster) leader(ids ...uint64) *Node {
	c.t.Helper()
	if len(ids) == 0 {
		ids = c.liveIDs()
	}
	var lead uint64
	c.waitFor("a leader", func() bool {
		lead = 0
		for _, id := range ids {
			n := c.node(id)
			if n == nil {
				return false
			}
			l := n.Leadership()
			if l.LeaderID == 0 || (lead != 0 && l.LeaderID != lead) {
				return false
			}
			lead = l.LeaderID
		}
		n := c.node(lead)
		return n != nil && n.Leadership().IsLeader && slices.Contains(ids, lead)
	})
	return c.node(lead)
}

func (c *cluster) follower(lead uint64) *Node {
	for _, n := range c.live() {
		if n.ID() != lead {
			return n
		}
	}
	c.t.Fatal("no follower")
	return nil
}

func put(id, k, v string) []byte { return consensustest.Put{ID: id, Key: k, Value: v}.Encode() }

func (c *cluster) mustPropose(n *Node, id, k, v string) consensustest.Result {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for attempt := 0; ; attempt++ {
		res, err := n.Propose(ctx, put(id, k, v))
		if err == nil {
			r, ok := res.(consensustest.Result)
			if !ok {
				c.t.Fatalf("propose %s: result %T", id, res)
			}
			return r
		}
		// Only definite "nothing happened" errors may be retried blindly.
		if !errors.Is(err, txswitch.ErrNoLeader) && !errors.Is(err, txswitch.ErrDropped) || attempt > 200 {
			c.t.Fatalf("propose %s on %d: %v", id, n.ID(), err)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waitApplied waits until every live node applied at least index.
func (c *cluster) waitApplied(index uint64) {
	c.t.Helper()
	c.waitFor(fmt.Sprintf("all nodes to apply %d", index), func() bool {
		for _, n := range c.live() {
			if c.member(n.ID()).sm.AppliedIndex() < index {
				return false
			}
		}
		return true
	})
}

// assertConverged checks every live node's state machine is identical.
func (c *cluster) assertConverged() {
	c.t.Helper()
	ns := c.live()
	var maxApplied uint64
	for _, n := range ns {
		maxApplied = max(maxApplied, c.member(n.ID()).sm.AppliedIndex())
	}
	c.waitApplied(maxApplied)
	// Applied indexes can differ by trailing empty entries; compare the
	// data once everybody reached the same point.
	c.waitFor("equal applied indexes", func() bool {
		var a uint64
		for i, n := range ns {
			ai := c.member(n.ID()).sm.AppliedIndex()
			if i > 0 && ai != a {
				return false
			}
			a = ai
		}
		return true
	})
	_, d0, c0 := c.member(ns[0].ID()).sm.State()
	for _, n := range ns[1:] {
		_, d, cnt := c.member(n.ID()).sm.State()
		if !maps.Equal(d0, d) || !maps.Equal(c0, cnt) {
			c.t.Fatalf("state of node %d differs from node %d", n.ID(), ns[0].ID())
		}
	}
}

// memnet declares its own Handler so that this package's tests can import
// it; both sides must keep matching.
var (
	_ memnet.Handler = (*Node)(nil)
	_ Transport      = (*memnet.Endpoint)(nil)
)
