package consensus

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	txswitch "github.com/txswitch/txswitch/switch"
)

// Node is one member of one raft group. It implements txswitch.Log.
//
// Concurrency: a single goroutine (run) owns the RawNode, the
// StateMachine's Apply and the LogStore's writes other than Save. Two
// bounded helpers run beside it: the append goroutine (append.go), which
// owns LogStore.Save and sends what must wait for it, and at most one
// snapshot build (snapshot.go). Other goroutines talk to the loop through
// bounded channels: proposals (propc), inbound messages (recvc), control
// requests (ctrlc, closures run on the loop), the append goroutine's
// completions (localc) and the snapshot builder's result (snapc).
type Node struct {
	cfg         Config
	log         *zap.Logger
	store       LogStore
	sm          txswitch.StateMachine
	tr          Transport
	ticker      Ticker
	incarnation uint64
	seq         atomic.Uint64

	propc    chan *proposal
	recvc    chan *raftpb.Message
	ctrlc    chan func()
	stopc    chan struct{}
	donec    chan struct{}
	stopOnce sync.Once

	// mu guards the waiter tables and what other goroutines read.
	mu       sync.Mutex
	waiters  map[propKey]*waiter
	reads    map[string]*readWaiter
	stopErr  error
	lead     txswitch.Leadership
	leaderCh chan struct{}
	pubMem   membership
	cached   Status

	// Owned by the loop goroutine.
	rn           *raft.RawNode
	applied      uint64
	snapIndex    uint64
	confState    *raftpb.ConfState
	mem          membership
	byIndex      map[uint64][]propKey
	readsApplied []*readWaiter
	// pendingReads are reads taken and not yet asked for; readBatches the
	// ones asked for, by the request context of their ReadIndex.
	pendingReads     []*readWaiter
	readBatches      map[string][]*readWaiter
	readIndexes      atomic.Uint64 // ReadIndex requests made (tests)
	idle             []chan struct{}
	queued           []*proposal // taken from propc, not yet given to raft
	leaderStartIndex uint64
	lastConfIndex    uint64
	recent           *recentKeys
	// ticks counts the ticks; heard is, per member, the tick at which this
	// node as leader last had an answer from it, or was elected
	// (startTransfer), and transfers the leader transfers under way
	// (checkTransfers).
	ticks     uint64
	heard     map[uint64]uint64
	transfers []*transfer
	// leading mirrors the last SoftState: whether this node is the leader
	// (decides which messages may leave before the local Save).
	leading bool
	// Snapshots (see snapshot.go): at most one build runs off the loop;
	// snapBusy is set while it does, snapEpoch changes whenever the
	// membership or the whole state changes (conf change applied, snapshot
	// restored) so that a build started before is discarded, and snapWG
	// lets shutdown wait for the builder. sendSnap is the last image built
	// for a follower (nil when none is usable); snapWant says raft asked
	// for one that is not there yet.
	snapc     chan snapResult
	snapBusy  bool
	snapEpoch uint64
	snapWG    sync.WaitGroup
	sendSnap  *raftpb.Snapshot
	snapWant  bool
	// sendImage is the streamed image of sendSnap, if it is streamed
	// (images.go); transports take references to it under imgMu.
	imgMu     sync.Mutex
	sendImage *sharedImage
	// snapPending: a snapshot received from the leader is being persisted
	// and not yet restored into the state machine.
	snapPending bool
	// Staged images (images.go: sweepStagedImages): stagedMax is the
	// highest index ever staged, stagings counts stagings begun and
	// committed; loop-owned, imageSweepIn counts the ticks to the next
	// sweep and sweptStagings, sweptUpTo are what the last one saw.
	stagedMax     atomic.Uint64
	stagings      atomic.Uint64
	imageSweeps   atomic.Uint64 // sweeps that dropped (tests)
	imageSweepIn  int
	sweptStagings uint64
	sweptUpTo     uint64
	// The append goroutine (append.go): appendc carries raft's appends to
	// it, localc its completions back, appendStop stops it and appendWG
	// lets shutdown wait for it; appendsInFlight (loop-owned) counts the
	// appends handed over and not yet completed.
	appendc         chan *raftpb.Message
	localc          chan appendDone
	appendStop      chan struct{}
	appendWG        sync.WaitGroup
	appendsInFlight int
	droppedInbound  atomic.Uint64
	// readFailure is the first error of a log store read that raft cannot
	// handle (raftStorage); raft panics on it, and the loop then stops.
	readFailure atomic.Pointer[error]
	// removed: this node applied the conf change that removed it (or
	// restarted after it). Raft keeps such a node a follower of the leader
	// it last knew, for ever (it is not promotable, and the leader sends it
	// nothing more), so without this flag it would go on looking healthy;
	// with it, proposals and reads fail at once with txswitch.ErrRemoved
	// and the node says so (Removed, Status).
	removed atomic.Bool
}

var (
	_ txswitch.Log = (*Node)(nil)
	_ Handler      = (*Node)(nil)
)

type result struct {
	val any
	err error
}

type waiter struct{ ch chan result }

type proposal struct {
	ctx  context.Context
	key  propKey
	data []byte
}

type readWaiter struct {
	key    string
	ch     chan error
	issued bool   // ReadIndex was called (loop-owned)
	index  uint64 // read index once the ReadState arrived (loop-owned)
}

// NewNode opens the group on cfg.LogStore and starts the Ready loop.
//
// Restart contract: if the LogStore holds a snapshot newer than the state
// machine (a crash between persisting a snapshot and restoring it), the
// state machine is restored from it first; raft then resumes at
// StateMachine.AppliedIndex() and re-delivers only entries after it.
func NewNode(cfg Config) (*Node, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	n := &Node{
		cfg:         cfg,
		log:         cfg.Logger.With(zap.Uint64("raft_id", cfg.ID), zap.Uint64("group", cfg.Group)),
		store:       newCachedLogStore(cfg.LogStore, logCacheBytes),
		sm:          cfg.StateMachine,
		tr:          cfg.Transport,
		ticker:      cfg.Ticker,
		propc:       make(chan *proposal, cfg.MaxProposalQueue),
		recvc:       make(chan *raftpb.Message, inboxSize),
		ctrlc:       make(chan func(), ctrlSize),
		snapc:       make(chan snapResult, 1),
		appendc:     make(chan *raftpb.Message, appendQueue),
		localc:      make(chan appendDone, appendQueue),
		appendStop:  make(chan struct{}),
		stopc:       make(chan struct{}),
		donec:       make(chan struct{}),
		waiters:     make(map[propKey]*waiter),
		reads:       make(map[string]*readWaiter),
		leaderCh:    make(chan struct{}),
		byIndex:     make(map[uint64][]propKey),
		readBatches: make(map[string][]*readWaiter),
		recent:      newRecentKeys(dedupWindow),
		heard:       make(map[uint64]uint64),
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("incarnation: %w", err)
	}
	n.incarnation = binary.LittleEndian.Uint64(b[:]) | 1

	fresh, err := n.recover()
	if err != nil {
		return nil, err
	}
	if err := n.loadRecentKeys(); err != nil {
		return nil, err
	}
	rcfg := &raft.Config{
		ID:                        cfg.ID,
		ElectionTick:              cfg.ElectionTick,
		HeartbeatTick:             cfg.HeartbeatTick,
		Storage:                   raftStorage{n.store, n},
		Applied:                   n.applied,
		MaxSizePerMsg:             cfg.MaxSizePerMsg,
		MaxCommittedSizePerReady:  cfg.MaxSizePerMsg * 4,
		MaxUncommittedEntriesSize: cfg.MaxUncommittedSize,
		MaxInflightMsgs:           cfg.MaxInflightMsgs,
		CheckQuorum:               true,
		PreVote:                   true,
		StepDownOnRemoval:         true,
		ReadOnlyOption:            raft.ReadOnlySafe,
		// Appends are persisted by the append goroutine and acknowledged
		// through the responses raft attaches to them (handleReady).
		AsyncStorageWrites: true,
		Logger:             &raftLogger{s: n.log.Named("raft").Sugar()},
	}
	rn, err := raft.NewRawNode(rcfg)
	if err != nil {
		return nil, fmt.Errorf("new raw node: %w", err)
	}
	n.rn = rn
	switch {
	case fresh && !cfg.Join:
		if !slices.ContainsFunc(cfg.Peers, func(p Peer) bool { return p.ID == cfg.ID }) {
			return nil, fmt.Errorf("bootstrap: empty LogStore and Peers do not include this node %d (set Join to join an existing group)", cfg.ID)
		}
		peers := make([]raft.Peer, len(cfg.Peers))
		for i, p := range cfg.Peers {
			ctx, err := jsonConfContext(confContext{Peer: p})
			if err != nil {
				return nil, err
			}
			peers[i] = raft.Peer{ID: p.ID, Context: ctx}
		}
		if err := rn.Bootstrap(peers); err != nil {
			return nil, fmt.Errorf("bootstrap: %w", err)
		}
		n.seedTransport(cfg.Peers)
	case fresh:
		n.seedTransport(cfg.Peers)
	default:
		n.seedTransport(n.mem.Members)
	}
	if n.ticker == nil {
		n.ticker = NewTimeTicker(cfg.TickInterval)
	}
	n.publishMembers()
	n.updateCached()
	hs, _, err := n.store.InitialState()
	if err != nil {
		return nil, fmt.Errorf("load hard state: %w", err)
	}
	n.appendWG.Add(1)
	go func() {
		defer n.appendWG.Done()
		n.appendLoop(hs)
	}()
	n.log.Info("raft node started", zap.Bool("fresh", fresh), zap.Bool("join", cfg.Join),
		zap.Uint64("applied", n.applied), zap.Uint64("snapshot", n.snapIndex), zap.Int("members", len(n.mem.Members)))
	go n.run()
	return n, nil
}

// recover loads the membership and brings the state machine up to the
// stored snapshot. It reports whether the LogStore is empty.
func (n *Node) recover() (fresh bool, err error) {
	snap, err := n.store.Snapshot()
	if err != nil {
		return false, fmt.Errorf("load snapshot: %w", err)
	}
	hs, cs, err := n.store.InitialState()
	if err != nil {
		return false, fmt.Errorf("load initial state: %w", err)
	}
	last, err := n.store.LastIndex()
	if err != nil {
		return false, fmt.Errorf("load last index: %w", err)
	}
	fresh = last == 0 && raft.IsEmptySnap(snap) && raft.IsEmptyHardState(hs)
	n.confState = proto.Clone(raftpb.EnsureConfState(cs)).(*raftpb.ConfState)
	n.snapIndex = snap.GetMetadata().GetIndex()

	var snapMem membership
	var image []byte
	hasImage := false
	if !raft.IsEmptySnap(snap) {
		if snapMem, image, hasImage, err = decodeSnapshotData(snap.GetData()); err != nil {
			return false, fmt.Errorf("stored snapshot %d: %w", n.snapIndex, err)
		}
	}
	memIdx, _, meta, err := n.store.Membership()
	if err != nil {
		return false, fmt.Errorf("load membership: %w", err)
	}
	if memIdx > n.snapIndex {
		if n.mem, err = decodeMembership(meta); err != nil {
			return false, fmt.Errorf("stored membership %d: %w", memIdx, err)
		}
	} else {
		n.mem = snapMem
	}
	n.mem.Version = 1
	n.removed.Store(n.mem.removed(n.cfg.ID))

	// A crash between persisting a received snapshot and restoring the
	// state machine leaves the state machine behind the log's first index:
	// finish the restore now, or raft could not resume.
	if applied := n.sm.AppliedIndex(); !raft.IsEmptySnap(snap) && n.snapIndex > applied {
		if snapshotStreamed(snap.GetData()) {
			n.log.Info("restoring state machine from the staged image of the stored snapshot",
				zap.Uint64("snapshot", n.snapIndex), zap.Uint64("applied", applied))
			if err := n.restoreStaged(n.snapIndex); err != nil {
				return false, fmt.Errorf("restore state machine from snapshot %d: %w", n.snapIndex, err)
			}
		} else if !hasImage {
			// A snapshot without image is recorded only once the state
			// machine durably holds its index (see maybeSnapshot).
			return false, fmt.Errorf("state machine applied %d is behind this node's own snapshot %d: state lost", applied, n.snapIndex)
		} else {
			n.log.Info("restoring state machine from stored snapshot",
				zap.Uint64("snapshot", n.snapIndex), zap.Uint64("applied", applied))
			if err := n.sm.Restore(n.snapIndex, image); err != nil {
				return false, fmt.Errorf("restore state machine from snapshot %d: %w", n.snapIndex, err)
			}
		}
	}
	// Staged images are used by now (above) or stale: a received snapshot
	// raft did not take, or one restored before a crash that left its
	// image behind.
	if st, ok := n.cfg.LogStore.(ImageStager); ok {
		if err := st.DropStagedImages(math.MaxUint64); err != nil {
			return false, fmt.Errorf("drop staged images: %w", err)
		}
	}
	n.applied = n.sm.AppliedIndex()
	// Commit-only HardState updates are saved without sync, so after a
	// crash the state machine (which applied only committed entries) may be
	// ahead of the stored commit index. Those entries were committed: make
	// the HardState say so, or raft refuses Applied > Commit.
	if n.applied > hs.GetCommit() {
		if n.applied > last {
			return false, fmt.Errorf("state machine applied %d beyond the log's last index %d: log lost", n.applied, last)
		}
		fixed := &raftpb.HardState{Term: new(hs.GetTerm()), Vote: new(hs.GetVote()), Commit: new(n.applied)}
		if err := n.store.Save(fixed, nil, nil, true); err != nil {
			return false, fmt.Errorf("raise stored commit to applied %d: %w", n.applied, err)
		}
	}
	return fresh, nil
}

func jsonConfContext(c confContext) ([]byte, error) {
	b, err := jsonMarshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode conf change context: %w", err)
	}
	return b, nil
}

func (n *Node) seedTransport(peers []Peer) {
	for _, p := range peers {
		if p.ID != n.cfg.ID {
			n.tr.AddPeer(p.ID, p.RaftAddr)
		}
	}
}

// Stop ends the loop and waits for it; every waiter fails with
// txswitch.ErrStopped. It is safe to call more than once.
func (n *Node) Stop() {
	n.stopOnce.Do(func() { close(n.stopc) })
	<-n.donec
}

// Done is closed when the loop has exited (Stop, storage failure, crash).
func (n *Node) Done() <-chan struct{} { return n.donec }

// Err reports why the loop exited (nil while running).
func (n *Node) Err() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.stopErr
}

// ID returns this node's raft id.
func (n *Node) ID() uint64 { return n.cfg.ID }

// ---------------------------------------------------------------------------
// The Ready loop.

func (n *Node) run() {
	stopErr := txswitch.ErrStopped
	defer func() {
		if r := recover(); r != nil {
			err, _ := r.(error)
			switch failed := n.readFailure.Load(); {
			case err != nil && errors.Is(err, ErrFailpointCrash):
				n.log.Warn("raft loop crashed at failpoint")
				stopErr = fmt.Errorf("%w: %w", txswitch.ErrStopped, ErrFailpointCrash)
			case failed != nil:
				// Raft panics on a read error of its storage (it has no
				// other way to report one); the store failed, so this node
				// stops, as on a write error, instead of the process.
				n.log.Error("raft node stopping: its log store failed a read", zap.Error(*failed), zap.Any("panic", r))
				stopErr = fmt.Errorf("%w: %w", txswitch.ErrStopped, *failed)
			default:
				panic(r)
			}
		}
		n.shutdown(stopErr)
	}()
	tickC := n.ticker.C()
	for {
		select {
		case <-n.stopc:
			return
		case <-tickC:
			n.ticks++
			n.rn.Tick()
			n.sweepReadBatches()
			if err := n.sweepStagedImages(); err != nil {
				n.log.Error("raft node stopping on storage failure", zap.Error(err))
				stopErr = fmt.Errorf("%w: %w", txswitch.ErrStopped, err)
				return
			}
		case m := <-n.recvc:
			n.step(m)
		case p := <-n.propc:
			n.propose(p)
			// Proposers come in waves (the last apply woke the waiters of
			// a whole batch, and most propose again at once) but reach
			// propc one by one. Yielding once lets those already runnable
			// queue theirs before drain cuts the batch, so the wave shares
			// one MsgProp, one MsgApp per follower, one Ready and one
			// append instead of a round of raft messages per proposal or
			// two. It costs nothing when nothing else is runnable. On the
			// raft bench it cut the leader's messages from ~10,000/s to
			// ~650/s and CPU per proposal by about a fifth, which the
			// latency tail gains on a loaded 2-core machine.
			runtime.Gosched()
		case f := <-n.ctrlc:
			f()
		case r := <-n.snapc:
			if err := n.finishSnapshot(r); err != nil {
				n.log.Error("raft node stopping on snapshot failure", zap.Error(err))
				stopErr = fmt.Errorf("%w: %w", txswitch.ErrStopped, err)
				return
			}
		case d := <-n.localc:
			if err := n.appendCompleted(d); err != nil {
				stopErr = n.appendStopErr(err)
				return
			}
		}
		// (a) Take whatever else is queued, bounded, so that many concurrent
		// proposals and messages share one Ready and hence one append, and
		// the reads taken share one ReadIndex.
		if err := n.drain(); err != nil {
			stopErr = n.appendStopErr(err)
			return
		}
		n.issueReads()
		for n.rn.HasReady() {
			if err := n.handleReady(); err != nil {
				// Never acknowledge what is not durable or not applied:
				// stop here, and fail every waiter with the cause.
				n.log.Error("raft node stopping on storage failure", zap.Error(err))
				stopErr = fmt.Errorf("%w: %w", txswitch.ErrStopped, err)
				return
			}
		}
		if len(n.transfers) > 0 {
			n.checkTransfers()
		}
		// Also outside a Ready: raft may have asked for a snapshot image
		// while stepping a message that produced nothing else.
		n.maybeSnapshot()
		if n.appendsInFlight == 0 {
			for _, c := range n.idle {
				close(c)
			}
			n.idle = n.idle[:0]
		}
	}
}

// appendStopErr logs why the append goroutine stopped the node and returns
// the node's stop error.
func (n *Node) appendStopErr(err error) error {
	if errors.Is(err, ErrFailpointCrash) {
		n.log.Warn("raft append crashed at failpoint")
	} else {
		n.log.Error("raft node stopping on storage failure", zap.Error(err))
	}
	return fmt.Errorf("%w: %w", txswitch.ErrStopped, err)
}

func (n *Node) drain() error {
	for range appendQueue {
		select {
		case d := <-n.localc:
			if err := n.appendCompleted(d); err != nil {
				return err
			}
			continue
		default:
		}
		break
	}
	for range n.cfg.MaxBatch {
		select {
		case m := <-n.recvc:
			n.step(m)
			continue
		default:
		}
		break
	}
	for range n.cfg.MaxBatch {
		select {
		case p := <-n.propc:
			n.propose(p)
			continue
		default:
		}
		break
	}
	n.proposeQueued()
	// Control requests too (reads among them: see issueReads).
	for range n.cfg.MaxBatch {
		select {
		case f := <-n.ctrlc:
			f()
			continue
		default:
		}
		break
	}
	return nil
}

func (n *Node) step(m *raftpb.Message) {
	switch m.GetType() {
	case raftpb.MsgProp:
		if m = n.dedupForwarded(m); m == nil {
			return
		}
	case raftpb.MsgAppResp, raftpb.MsgHeartbeatResp:
		// The answers raft's Progress.RecentActive counts: the member
		// takes this leader's messages and answers them.
		n.heard[m.GetFrom()] = n.ticks
	}
	if err := n.rn.Step(m); err != nil {
		// Messages from removed peers or stale local types: raft ignores
		// them, and so do we (per-message logs would flood).
		n.droppedInbound.Add(1)
	}
}

// propose queues p for the next proposeQueued.
func (n *Node) propose(p *proposal) {
	if p.ctx.Err() != nil {
		return // the proposer gave up before we proposed: nothing happened
	}
	if n.removed.Load() {
		// Raft would forward it to the leader it last knew, which would
		// commit it, but this node would never hear the outcome.
		n.deliver(p.key, result{err: txswitch.ErrRemoved})
		return
	}
	n.queued = append(n.queued, p)
}

// proposeQueued hands the queued proposals to raft as ONE MsgProp (as
// RawNode.Propose does for one): raft appends them together and replicates
// them in one MsgApp per follower, instead of one message each way per
// proposal. Raft accepts or drops a MsgProp whole; a drop fails every one.
func (n *Node) proposeQueued() {
	if len(n.queued) == 0 {
		return
	}
	ents := make([]*raftpb.Entry, len(n.queued))
	for i, p := range n.queued {
		ents[i] = &raftpb.Entry{Data: p.data}
	}
	if err := n.rn.Step(&raftpb.Message{Type: raftpb.MsgProp.Enum(), From: new(n.cfg.ID), Entries: ents}); err != nil {
		err = n.dropError(err)
		for _, p := range n.queued {
			n.deliver(p.key, result{err: err})
		}
	}
	clear(n.queued)
	n.queued = n.queued[:0]
}

func (n *Node) dropError(err error) error {
	if errors.Is(err, raft.ErrProposalDropped) {
		if n.rn.BasicStatus().Lead == raft.None {
			return txswitch.ErrNoLeader
		}
		return fmt.Errorf("%w: %w", txswitch.ErrDropped, err)
	}
	return fmt.Errorf("propose: %w", err)
}

func (n *Node) failpoint(name string) {
	if n.cfg.Failpoint != nil {
		n.cfg.Failpoint(name)
	}
}

// handleReady processes one Ready. The RawNode runs with AsyncStorageWrites:
// raft itself routes what depends on durability, and the loop never waits
// for a disk write. The order is the correctness argument; do not reorder
// ((a), taking queued proposals, happened in run before this Ready):
//
//	(b) hand the Ready's append (HardState, entries, snapshot: ONE
//	    MsgStorageAppend) to the append goroutine (appendLoop), which
//	    persists it in ONE Save, synced when it changes term, vote,
//	    entries or snapshot, and only THEN delivers the messages raft
//	    attached to it as responses: MsgAppResp, MsgVoteResp,
//	    MsgPreVoteResp, and this node's own acknowledgement
//	    (MsgStorageAppendResp, and on a leader its own MsgAppResp, so an
//	    entry counts this node toward a quorum only once durable here);
//	(c) send the Ready's other messages at once: raft puts there only
//	    what does not depend on this node's unsynced state (a leader's
//	    MsgApp and heartbeats may leave before its own append is durable,
//	    Raft thesis §10.2.1; followers' acknowledgements never do);
//	(d) apply committed entries in order (MsgStorageApply): raft hands
//	    out only entries that are committed AND durable in this node's log
//	    (an async RawNode never applies unstable entries); conf changes
//	    through ApplyConfChange followed by SaveMembership before the
//	    state machine's applied index passes them;
//	(e) answer proposers and readers, after their entry is applied;
//	(f) step the apply acknowledgement (MsgStorageApplyResp) into raft.
//
// A snapshot raft received is restored into the state machine when its
// append comes back durable, before raft hears of it (appendCompleted), and raft
// hands out no committed entry past it before that.
func (n *Node) handleReady() error {
	rd := n.rn.Ready()
	n.observeLeadership(rd)
	if rd.SoftState != nil {
		n.leading = rd.SoftState.RaftState == raft.StateLeader
		if !n.leading {
			n.dropSendSnap() // only a leader sends snapshots: free the image
			n.recent.unindex()
		}
	}
	n.handleReadStates(rd.ReadStates)
	// A new leader may have inherited unapplied conf changes; raft refuses
	// new ones until it has applied its whole log as of now, which ends
	// with the entry it appends on election (or what the store holds).
	if rd.SoftState != nil && rd.SoftState.RaftState == raft.StateLeader {
		last, err := n.store.LastIndex()
		if err != nil {
			return fmt.Errorf("last index: %w", err)
		}
		n.leaderStartIndex = last
		// A leader just elected has not had the time to hear from the
		// members: each gets an election timeout, as CheckQuorum gives.
		for _, id := range n.confState.GetVoters() {
			n.heard[id] = n.ticks
		}
	}
	var remote, applies []*raftpb.Message
	for _, m := range rd.Messages {
		switch m.GetTo() {
		case raft.LocalAppendThread:
			n.failpoint(FailpointBeforePersist)
			if ents := m.GetEntries(); len(ents) > 0 {
				n.trackAppended(ents)
				if rd.SoftState != nil && rd.SoftState.RaftState == raft.StateLeader {
					n.leaderStartIndex = max(n.leaderStartIndex, ents[len(ents)-1].GetIndex())
				}
			}
			if !raft.IsEmptySnap(m.GetSnapshot()) {
				// Until it is restored (appendCompleted), no build may
				// start or be recorded: it would be of the state the
				// snapshot replaces, and older than the stored snapshot.
				n.snapEpoch++
				n.snapPending = true
			}
			if err := n.toAppender(m); err != nil {
				return err
			}
		case raft.LocalApplyThread:
			applies = append(applies, m)
		default:
			remote = append(remote, m)
		}
	}

	// (c) send.
	if len(remote) > 0 {
		n.tr.Send(remote)
	}

	// (d) apply + (e) notify + (f) acknowledge.
	for _, m := range applies {
		if err := n.apply(m.GetEntries()); err != nil {
			return err
		}
		n.releaseReads()
		for _, r := range m.GetResponses() {
			n.stepLocalMsg(r)
		}
	}
	n.releaseReads() // also readers whose index was already applied
	n.updateCached()
	return nil
}

// trackAppended remembers at which index each of this node's own proposals
// sits in the local log, so that when a different entry is applied at that
// index (the proposal was overwritten after a leader change) its waiter gets
// a definite ErrDropped instead of waiting for its deadline.
func (n *Node) trackAppended(ents []*raftpb.Entry) {
	for _, e := range ents {
		var k propKey
		switch e.GetType() {
		case raftpb.EntryNormal:
			if len(e.GetData()) == 0 {
				continue
			}
			var err error
			if k, _, err = decodeEnvelope(e.GetData()); err != nil {
				continue // apply reports it
			}
			n.recent.add(k)
		case raftpb.EntryConfChange, raftpb.EntryConfChangeV2:
			n.lastConfIndex = max(n.lastConfIndex, e.GetIndex())
			cc, err := decodeConfChange(e)
			if err != nil {
				continue
			}
			c, err := decodeConfContext(cc.AsV2().GetContext())
			if err != nil {
				continue
			}
			k = c.key()
		}
		if n.mine(k) {
			n.byIndex[e.GetIndex()] = append(n.byIndex[e.GetIndex()], k)
		}
	}
}

func (n *Node) mine(k propKey) bool {
	return k.node == n.cfg.ID && k.incarnation == n.incarnation && k.seq != 0
}

func decodeConfChange(e *raftpb.Entry) (raftpb.ConfChangeI, error) {
	if e.GetType() == raftpb.EntryConfChange {
		var cc raftpb.ConfChange
		if err := proto.Unmarshal(e.GetData(), &cc); err != nil {
			return nil, fmt.Errorf("decode conf change at %d: %w", e.GetIndex(), err)
		}
		return &cc, nil
	}
	var cc raftpb.ConfChangeV2
	if err := proto.Unmarshal(e.GetData(), &cc); err != nil {
		return nil, fmt.Errorf("decode conf change v2 at %d: %w", e.GetIndex(), err)
	}
	return &cc, nil
}

// settleIndex fails the waiters of this node's proposals that were appended
// at index but lost it to a different entry (k is what was applied there).
func (n *Node) settleIndex(index uint64, k propKey) {
	keys, ok := n.byIndex[index]
	if !ok {
		return
	}
	delete(n.byIndex, index)
	for _, kk := range keys {
		if kk != k {
			n.deliver(kk, result{err: fmt.Errorf("%w: index %d was taken by another entry after a leader change", txswitch.ErrDropped, index)})
		}
	}
}

// apply hands committed entries to the state machine: one Apply per
// contiguous run of normal entries (bounded by MaxBatch), a conf change
// between runs. Results go to the proposers only after Apply returned, i.e.
// after the state machine made them durable.
func (n *Node) apply(ents []*raftpb.Entry) error {
	if len(ents) == 0 {
		return nil
	}
	// Sized once: a run is at most MaxBatch commands. (Not reused across
	// calls: the state machine may keep what it is given.)
	size := min(len(ents), n.cfg.MaxBatch)
	var (
		cmds   = make([]txswitch.Command, 0, size)
		keys   = make([]propKey, 0, size)
		values = make([]any, 0, size) // non-nil overrides Apply's value (conf changes)
	)
	flush := func() error {
		if len(cmds) == 0 {
			return nil
		}
		res, err := n.sm.Apply(cmds)
		if err != nil {
			return fmt.Errorf("apply entries %d-%d: %w", cmds[0].Index, cmds[len(cmds)-1].Index, err)
		}
		if len(res) != len(cmds) {
			return fmt.Errorf("apply entries %d-%d: %d results for %d commands",
				cmds[0].Index, cmds[len(cmds)-1].Index, len(res), len(cmds))
		}
		n.applied = cmds[len(cmds)-1].Index
		for i, k := range keys {
			if !n.mine(k) {
				continue
			}
			v := res[i]
			if values[i] != nil {
				v = values[i]
			}
			n.deliver(k, result{val: v})
		}
		cmds, keys, values = cmds[:0], keys[:0], values[:0]
		return nil
	}
	for i, e := range ents {
		idx := e.GetIndex()
		if idx <= n.applied {
			continue // already in the state machine (restored snapshot)
		}
		if i > 0 && len(cmds) == 0 {
			n.failpoint(FailpointMidApply)
		}
		switch e.GetType() {
		case raftpb.EntryNormal:
			var k propKey
			var payload []byte
			if len(e.GetData()) > 0 {
				var err error
				if k, payload, err = decodeEnvelope(e.GetData()); err != nil {
					return fmt.Errorf("entry %d: %w", idx, err)
				}
			}
			n.settleIndex(idx, k)
			cmds = append(cmds, txswitch.Command{Index: idx, Term: e.GetTerm(), Data: payload})
			keys = append(keys, k)
			values = append(values, nil)
			if len(cmds) >= n.cfg.MaxBatch {
				if err := flush(); err != nil {
					return err
				}
			}
		case raftpb.EntryConfChange, raftpb.EntryConfChangeV2:
			if err := flush(); err != nil {
				return err
			}
			k, cs, err := n.applyConfChange(e)
			if err != nil {
				return err
			}
			n.settleIndex(idx, k)
			// The conf change entry reaches the state machine as an empty
			// command so its applied index advances past it.
			cmds = append(cmds, txswitch.Command{Index: idx, Term: e.GetTerm()})
			keys = append(keys, k)
			values = append(values, cs)
		default:
			return fmt.Errorf("entry %d: unknown type %v", idx, e.GetType())
		}
	}
	return flush()
}

// applyConfChange applies the conf change at e and durably records the
// resulting membership BEFORE the state machine's applied index passes e:
// a restart with Applied >= e.Index never replays e, so the record is the
// only place the change survives. (A crash between the two replays e, which
// is idempotent.)
func (n *Node) applyConfChange(e *raftpb.Entry) (propKey, *raftpb.ConfState, error) {
	idx := e.GetIndex()
	cci, err := decodeConfChange(e)
	if err != nil {
		return propKey{}, nil, err
	}
	cc := cci.AsV2()
	cctx, err := decodeConfContext(cc.GetContext())
	if err != nil {
		return propKey{}, nil, fmt.Errorf("entry %d: %w", idx, err)
	}
	cs := n.rn.ApplyConfChange(cci)
	// A snapshot built or being built may predate this membership; a
	// member just added needs one whose ConfState includes it (raft
	// rejects one that does not), which the next build provides.
	n.snapEpoch++
	n.dropSendSnap()
	n.confState = proto.Clone(cs).(*raftpb.ConfState)
	for _, ch := range cc.GetChanges() {
		id := ch.GetNodeId()
		switch ch.GetType() {
		case raftpb.ConfChangeAddNode, raftpb.ConfChangeAddLearnerNode, raftpb.ConfChangeUpdateNode:
			p := cctx.Peer
			p.ID = id
			n.mem.upsert(p)
			if id != n.cfg.ID {
				n.tr.AddPeer(id, p.RaftAddr)
			} else {
				// A restart in the middle of the bootstrap entries may have
				// found this node not yet a member (membership.removed).
				n.removed.Store(false)
			}
		case raftpb.ConfChangeRemoveNode:
			n.mem.remove(id)
			delete(n.heard, id)
			if id != n.cfg.ID {
				n.tr.RemovePeer(id)
			} else {
				n.log.Warn("this node was removed from the group: it serves nothing more; stop it, or wipe its data dir and join it as a new member",
					zap.Uint64("index", idx))
				n.removed.Store(true)
				// Reads waiting for the leader's answer would wait out their
				// deadline: the leader no longer sends this node anything.
				n.failAllReads(txswitch.ErrRemoved)
			}
		}
	}
	if err := n.store.SaveMembership(idx, n.confState, n.mem.encode()); err != nil {
		return propKey{}, nil, fmt.Errorf("save membership at %d: %w", idx, err)
	}
	n.publishMembers()
	n.log.Info("membership changed", zap.Uint64("index", idx),
		zap.String("change", raft.DescribeConfChange(cci)), zap.Uint64s("voters", n.confState.GetVoters()))
	return cctx.key(), proto.Clone(cs).(*raftpb.ConfState), nil
}

// deliver hands r to the waiter of k, if it still waits.
func (n *Node) deliver(k propKey, r result) {
	n.mu.Lock()
	w := n.waiters[k]
	delete(n.waiters, k)
	n.mu.Unlock()
	if w != nil {
		w.ch <- r
	}
}

func (n *Node) observeLeadership(rd raft.Ready) {
	if rd.SoftState == nil && rd.HardState == nil {
		return
	}
	bs := n.rn.BasicStatus()
	l := txswitch.Leadership{
		IsLeader: bs.RaftState == raft.StateLeader,
		LeaderID: bs.Lead,
		Term:     bs.HardState.GetTerm(),
	}
	n.mu.Lock()
	changed := l != n.lead
	leaderChanged := l.LeaderID != n.lead.LeaderID || l.Term != n.lead.Term
	if changed {
		n.lead = l
		close(n.leaderCh)
		n.leaderCh = make(chan struct{})
	}
	n.mu.Unlock()
	if leaderChanged {
		n.log.Info("leadership changed", zap.Uint64("leader", l.LeaderID), zap.Uint64("term", l.Term), zap.Bool("is_leader", l.IsLeader))
		// Read requests already handed to raft that have no ReadState yet
		// may be lost with the old leader: fail them so clients retry now.
		// Reads have no effect, so failing them is always safe.
		n.failIssuedReads(fmt.Errorf("%w: leader changed before the read index was confirmed", txswitch.ErrDropped))
	}
}

func (n *Node) shutdown(err error) {
	n.ticker.Stop()
	// The owner closes the stores once Done is closed: a snapshot still
	// being built must finish first (its result is dropped), and the
	// images pinned for followers are released (a transport still writing
	// one holds it until its write ends).
	n.snapWG.Wait()
	select {
	case r := <-n.snapc:
		if r.img != nil {
			_ = r.img.Close()
		}
	default:
	}
	n.setSendImage(nil)
	close(n.appendStop)
	n.appendWG.Wait()
	n.mu.Lock()
	n.stopErr = err
	// A stopped node leads nothing and knows no leader: a leader whose disk
	// failed must not go on claiming leadership (to routing, status and
	// chaos) while the others elect a new one.
	if n.lead.IsLeader || n.lead.LeaderID != 0 {
		n.lead = txswitch.Leadership{Term: n.lead.Term}
		close(n.leaderCh)
		n.leaderCh = make(chan struct{})
	}
	ws := n.waiters
	rs := n.reads
	n.waiters = make(map[propKey]*waiter)
	n.reads = make(map[string]*readWaiter)
	n.mu.Unlock()
	for _, w := range ws {
		w.ch <- result{err: err}
	}
	for _, r := range rs {
		r.ch <- err
	}
	for _, c := range n.idle {
		close(c)
	}
	n.idle = nil
	close(n.donec)
	n.log.Info("raft node stopped", zap.Error(err))
}

// do runs f on the loop goroutine. It fails when the node is stopped or
// ctx ends before the loop takes f.
func (n *Node) do(ctx context.Context, f func()) error {
	select {
	case n.ctrlc <- f:
		return nil
	case <-n.donec:
		return n.stoppedErr()
	case <-ctx.Done():
		return ctxErr(ctx)
	}
}

func (n *Node) stoppedErr() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stopErr != nil {
		return n.stopErr
	}
	return txswitch.ErrStopped
}

func ctxErr(ctx context.Context) error {
	return fmt.Errorf("%w: %w", txswitch.ErrTimeout, ctx.Err())
}

func (n *Node) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		// Already bounded: no derived context (it would cost allocations
		// and a registration with the parent on every proposal).
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, n.cfg.ProposalTimeout)
}

func (n *Node) publishMembers() {
	m := n.mem.clone()
	n.mu.Lock()
	n.pubMem = m
	n.mu.Unlock()
}

// ---------------------------------------------------------------------------
// Inbound (Handler).

// Step hands an inbound raft message to the loop; messages of another group
// are dropped. It blocks while the inbox (bounded) is full, until ctx ends.
func (n *Node) Step(ctx context.Context, group uint64, m *raftpb.Message) error {
	if group != n.cfg.Group {
		n.droppedInbound.Add(1)
		return fmt.Errorf("message for group %d delivered to group %d", group, n.cfg.Group)
	}
	if to := m.GetTo(); to != n.cfg.ID {
		// Raft steps a message as its own whatever its To: one sent to
		// another member's address (a member added at an address this
		// node has) would move this node's term and votes.
		n.droppedInbound.Add(1)
		return fmt.Errorf("message for member %d delivered to member %d", to, n.cfg.ID)
	}
	select {
	case n.recvc <- m:
		return nil
	case <-n.donec:
		return n.stoppedErr()
	case <-ctx.Done():
		return ctxErr(ctx)
	}
}

// ReportUnreachable implements Handler. It never blocks: the report is
// advisory (raft only pauses replication to id sooner), so it is dropped
// when the control queue is full.
func (n *Node) ReportUnreachable(id uint64) {
	select {
	case n.ctrlc <- func() { n.rn.ReportUnreachable(id) }:
	default:
	}
}

// ReportSnapshot implements Handler. It blocks until the loop takes the
// report (or stops): a lost failure report would leave the follower waiting
// for a snapshot that never comes. Never call it from the loop itself
// (i.e. from Transport.Send): report from another goroutine.
func (n *Node) ReportSnapshot(id uint64, status raft.SnapshotStatus) {
	_ = n.do(context.Background(), func() { n.rn.ReportSnapshot(id, status) })
}

// DroppedInbound counts inbound messages raft or the group check refused.
func (n *Node) DroppedInbound() uint64 { return n.droppedInbound.Load() }
