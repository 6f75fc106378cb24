package consensus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"

	txswitch "github.com/txswitch/txswitch/switch"
)

// Peer is a member of the group and where to reach it.
type Peer struct {
	ID       uint64 `json:"id"`
	RaftAddr string `json:"raft_addr"`
	APIAddr  string `json:"api_addr"`
}

// Ticker drives raft's logical clock. Production uses a time.Ticker
// (NewTimeTicker); tests use ManualTicker to tick deterministically.
type Ticker interface {
	C() <-chan time.Time
	Stop()
}

// Transport carries raft messages to the other members of the group.
//
// Send must not block: a transport that cannot take a message drops it
// (raft retransmits) and, for a MsgSnap, reports SnapshotFailure to its
// Handler. Send is called from the Ready loop and from the append goroutine
// (append.go), which sends the messages that had to wait for an append to
// be durable (acknowledgements, votes): it must be safe for concurrent use.
type Transport interface {
	Send(msgs []*raftpb.Message)
	AddPeer(id uint64, addr string)
	RemovePeer(id uint64)
}

// Handler receives what a Transport delivers. Node implements it.
type Handler interface {
	// Step hands an inbound message of raft group group to the node.
	Step(ctx context.Context, group uint64, m *raftpb.Message) error
	// ReportUnreachable tells raft that the last send to id failed.
	ReportUnreachable(id uint64)
	// ReportSnapshot tells raft whether a MsgSnap to id was delivered.
	ReportSnapshot(id uint64, status raft.SnapshotStatus)
}

// Failpoint names, called as Config.Failpoint(name) from the Ready loop so
// tests can crash the node at each step of the ordering contract.
const (
	FailpointBeforePersist = "before-persist"
	FailpointAfterPersist  = "after-persist"
	FailpointAfterSend     = "after-send"
	FailpointMidApply      = "mid-apply"
	// FailpointAfterSnapshot is between recording a snapshot and
	// compacting the log behind it.
	FailpointAfterSnapshot = "after-snapshot"
)

// ErrFailpointCrash, when a Failpoint panics with it, makes the Ready loop
// stop dead where it is, as if the process had been killed: no further I/O,
// every waiter fails with ErrStopped. Any other panic propagates.
var ErrFailpointCrash = errors.New("consensus: failpoint crash")

// ErrNotLeader is returned by membership changes called on a follower. It
// wraps txswitch.ErrNoLeader so callers treating "go to the leader" alike
// need one check.
var ErrNotLeader = fmt.Errorf("not the leader: %w", txswitch.ErrNoLeader)

// ErrConfChangeInProgress is returned when a membership change is requested
// while another one (or one of a previous leader) is not yet applied.
var ErrConfChangeInProgress = errors.New("a membership change is already in progress")

// ErrMemberInactive refuses a leader transfer to a member the leader has
// not heard from within an election timeout (stopped, cut off): raft would
// take no proposals until it gave the transfer up an election timeout
// later.
var ErrMemberInactive = errors.New("the leader has not heard from the member within an election timeout")

// ErrTransferAborted is a leader transfer that did not happen: raft gave it
// up (the member did not take over within an election timeout, or another
// transfer replaced it) or another member was elected. Proposals are taken
// again; retrying is safe.
var ErrTransferAborted = errors.New("leader transfer aborted")

// Defaults.
const (
	DefaultTickInterval     = 100 * time.Millisecond
	DefaultElectionTick     = 10
	DefaultHeartbeatTick    = 1
	DefaultMaxProposalQueue = 4096
	DefaultMaxBatch         = 1024
	// DefaultSnapshotEvery: a snapshot record is cheap (a sync of the
	// state machine and one small write: the image is built only for a
	// follower that needs it), and each one lets the log be compacted. At
	// 10,000 entries the compacted entries are mostly still in the
	// memtable, so pebble's flush drops them instead of writing them to an
	// sstable and compacting them away later; at 100,000 (etcd's
	// --snapshot-count before 3.6) every entry went through a flush and a
	// compaction, which on the 2-core bench cost a tenth of the throughput
	// and a quarter of the p99 (txswitch bench --what raft --snapshot-every).
	DefaultSnapshotEvery = 10000
	DefaultSnapshotKeep  = 5000
	// DefaultLagRetain: a leader keeps up to this many entries behind its
	// snapshot for a member that is behind (down, restarting, slow, or
	// just added), so that it catches up from the log. At 100 payments/s
	// (about 300 entries/s) that is 11 minutes of a node being away; an
	// entry of a payment is 0.3 to 3 KB, so at most a few hundred MB of
	// log on the leader's disk, and only while a member lags.
	DefaultLagRetain       = 200_000
	DefaultProposalTimeout = 5 * time.Second
	// DefaultMaxSizePerMsg bounds one MsgApp (and one Ready's committed
	// entries) so a lagging follower is caught up in bounded steps.
	DefaultMaxSizePerMsg = 1 << 20
	// DefaultMaxInflightMsgs bounds unacknowledged MsgApps per follower.
	DefaultMaxInflightMsgs = 256
	// DefaultMaxUncommittedSize bounds the leader's uncommitted tail; past
	// it raft drops proposals (ErrDropped) instead of growing memory.
	DefaultMaxUncommittedSize = 64 << 20
	// inboxSize bounds inbound raft messages waiting for the loop; Step
	// blocks (honoring its ctx) when it is full.
	inboxSize = 4096
	// ctrlSize bounds control requests (reads, reports, status).
	ctrlSize = 1024
)

// Config configures one Node (one raft group on this process).
type Config struct {
	// ID is this node's raft id (non-zero, never reused in the group).
	ID uint64
	// Group is the raft group id, carried in every transport message.
	Group uint64

	LogStore     LogStore
	StateMachine txswitch.StateMachine
	Transport    Transport

	// Ticker drives raft's clock; nil means a time.Ticker at TickInterval.
	Ticker       Ticker
	TickInterval time.Duration
	// ElectionTick and HeartbeatTick are in ticks (defaults 10 and 1).
	ElectionTick  int
	HeartbeatTick int

	// Peers bootstraps a new group when the LogStore is empty and Join is
	// false: every initial member must be started with the same list in the
	// same order. With Join (a node added by AddMember), Peers only seeds
	// the transport with the existing members' addresses. On restart (a
	// non-empty LogStore) it is ignored.
	Peers []Peer
	Join  bool

	// MaxProposalQueue bounds proposals waiting for the loop; when full,
	// Propose fails at once with txswitch.ErrQueueFull.
	MaxProposalQueue int
	// MaxBatch bounds the proposals (and the inbound messages) the loop takes
	// before handling one Ready, so concurrent proposals share one raft
	// message (MsgProp, then one MsgApp per follower) and one fsync, and the
	// commands handed to one StateMachine.Apply call.
	MaxBatch int
	// SnapshotEvery is the number of applied entries between snapshots;
	// SnapshotKeep the entries kept behind a snapshot for slow followers.
	SnapshotEvery uint64
	SnapshotKeep  uint64
	// LagRetain: while this node leads, it compacts its log no further
	// than the match index of a member that is behind, keeping at most
	// LagRetain entries behind the snapshot for it (default
	// DefaultLagRetain; at or below SnapshotKeep, nothing more than
	// SnapshotKeep is kept). Catching up from the log costs the leader
	// reads of its log; from a snapshot it costs a state image built,
	// sent in one message and restored, which is slower and bounded in
	// size (tcp.DefaultMaxFrameSize), so a restarted node should need one
	// only after a long absence. A follower compacts by SnapshotKeep
	// alone: it does not know the others' progress.
	LagRetain uint64
	// StreamImages, when it returns true, makes this node send state
	// images as streams next to the MsgSnap instead of inside it (see
	// images.go), if its state machine is an ImageStreamer. Every member
	// must then read them: wire it to the cluster version gate. nil: never.
	StreamImages func() bool
	// ProposalTimeout bounds Propose, ReadBarrier and membership calls whose
	// ctx has no deadline.
	ProposalTimeout time.Duration

	MaxSizePerMsg      uint64
	MaxInflightMsgs    int
	MaxUncommittedSize uint64

	Logger *zap.Logger
	// Failpoint, when set (tests only), is called at each named step of the
	// Ready loop (Failpoint* constants).
	Failpoint func(name string)
}

func (c *Config) setDefaults() error {
	if c.ID == 0 {
		return errors.New("config: ID must be non-zero")
	}
	if c.LogStore == nil || c.StateMachine == nil || c.Transport == nil {
		return errors.New("config: LogStore, StateMachine and Transport are required")
	}
	if c.TickInterval <= 0 {
		c.TickInterval = DefaultTickInterval
	}
	if c.ElectionTick <= 0 {
		c.ElectionTick = DefaultElectionTick
	}
	if c.HeartbeatTick <= 0 {
		c.HeartbeatTick = DefaultHeartbeatTick
	}
	if c.ElectionTick <= c.HeartbeatTick {
		return fmt.Errorf("config: ElectionTick %d must exceed HeartbeatTick %d", c.ElectionTick, c.HeartbeatTick)
	}
	if c.MaxProposalQueue <= 0 {
		c.MaxProposalQueue = DefaultMaxProposalQueue
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = DefaultMaxBatch
	}
	if c.SnapshotEvery == 0 {
		c.SnapshotEvery = DefaultSnapshotEvery
	}
	if c.SnapshotKeep == 0 {
		c.SnapshotKeep = DefaultSnapshotKeep
	}
	if c.LagRetain == 0 {
		c.LagRetain = DefaultLagRetain
	}
	if c.ProposalTimeout <= 0 {
		c.ProposalTimeout = DefaultProposalTimeout
	}
	if c.MaxSizePerMsg == 0 {
		c.MaxSizePerMsg = DefaultMaxSizePerMsg
	}
	if c.MaxInflightMsgs <= 0 {
		c.MaxInflightMsgs = DefaultMaxInflightMsgs
	}
	if c.MaxUncommittedSize == 0 {
		c.MaxUncommittedSize = DefaultMaxUncommittedSize
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	for _, p := range c.Peers {
		if p.ID == 0 {
			return errors.New("config: peer with id 0")
		}
	}
	return nil
}

// timeTicker adapts time.Ticker to Ticker.
type timeTicker struct{ t *time.Ticker }

// NewTimeTicker returns a wall-clock Ticker firing every d.
func NewTimeTicker(d time.Duration) Ticker { return timeTicker{time.NewTicker(d)} }

func (t timeTicker) C() <-chan time.Time { return t.t.C }
func (t timeTicker) Stop()               { t.t.Stop() }

// ManualTicker is a Ticker that ticks only when told (tests).
type ManualTicker struct {
	c    chan time.Time
	done chan struct{}
}

// NewManualTicker returns a ticker driven by Tick.
func NewManualTicker() *ManualTicker {
	return &ManualTicker{c: make(chan time.Time), done: make(chan struct{})}
}

// C implements Ticker.
func (t *ManualTicker) C() <-chan time.Time { return t.c }

// Stop implements Ticker; a stopped ticker's Tick returns at once.
func (t *ManualTicker) Stop() {
	select {
	case <-t.done:
	default:
		close(t.done)
	}
}

// Tick delivers one tick and returns once the node's loop has taken it (so
// whatever the driver does next happens after the tick), or when the ticker
// is stopped, or when abort is closed.
func (t *ManualTicker) Tick(abort <-chan struct{}) {
	select {
	case t.c <- time.Time{}:
	case <-t.done:
	case <-abort:
	}
}
