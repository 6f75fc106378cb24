package consensus

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"

	txswitch "github.com/txswitch/txswitch/switch"
)

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

func (n *Node) newKey() propKey {
	return propKey{node: n.cfg.ID, incarnation: n.incarnation, seq: n.seq.Add(1)}
}

// register adds a waiter for k, unless the node has stopped.
func (n *Node) register(k propKey) (*waiter, error) {
	w := &waiter{ch: make(chan result, 1)}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stopErr != nil {
		return nil, n.stopErr
	}
	n.waiters[k] = w
	return w, nil
}

// unregister removes k's waiter; false means a result is already on its way.
func (n *Node) unregister(k propKey) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.waiters[k]; !ok {
		return false
	}
	delete(n.waiters, k)
	return true
}

func (n *Node) wait(ctx context.Context, k propKey, w *waiter) (any, error) {
	select {
	case r := <-w.ch:
		return r.val, r.err
	case <-ctx.Done():
		if n.unregister(k) {
			return nil, ctxErr(ctx)
		}
		r := <-w.ch
		return r.val, r.err
	}
}

// Propose implements txswitch.Log: it returns the value StateMachine.Apply
// returned for data once data is committed and applied on this node, or a
// definite error. It works on followers (raft forwards to the leader).
// Errors: txswitch.ErrQueueFull (queue full, nothing proposed),
// ErrNoLeader (no leader known, nothing proposed), ErrDropped (raft refused
// it, or another entry took its place after a leader change: it will never
// apply), ErrRemoved (this node was removed from the group, nothing
// proposed), ErrTimeout (ctx ended: outcome unknown), ErrStopped (node
// stopped: outcome unknown).
func (n *Node) Propose(ctx context.Context, data []byte) (any, error) {
	if n.removed.Load() {
		return nil, txswitch.ErrRemoved
	}
	ctx, cancel := n.withTimeout(ctx)
	defer cancel()
	k := n.newKey()
	w, err := n.register(k)
	if err != nil {
		return nil, err
	}
	p := &proposal{ctx: ctx, key: k, data: encodeEnvelope(k, data)}
	select {
	case n.propc <- p:
	default:
		if n.unregister(k) {
			return nil, txswitch.ErrQueueFull
		}
		r := <-w.ch // stopped concurrently
		return r.val, r.err
	}
	return n.wait(ctx, k, w)
}

// ReadBarrier implements txswitch.Log with raft ReadIndex: it waits for a
// ReadState (from the leader, which confirms its leadership with a quorum)
// asked for after the call began, then until the state machine has applied
// the read index. The reads the loop takes together share one ReadIndex
// with a fresh request context (issueReads): on the leader every ReadIndex
// is a heartbeat round to the followers, so one per read would cost a
// round of messages per GET (or per request with an unknown API key).
// On a node removed from the group it fails at once with ErrRemoved: the
// leader would confirm the read but its answer would not reach this node.
func (n *Node) ReadBarrier(ctx context.Context) error {
	if n.removed.Load() {
		return txswitch.ErrRemoved
	}
	ctx, cancel := n.withTimeout(ctx)
	defer cancel()
	// The key only finds the reader on this node: the context raft sees
	// is its batch's (issueReads).
	rw := &readWaiter{key: string(binary.AppendUvarint(nil, n.seq.Add(1))), ch: make(chan error, 1)}
	n.mu.Lock()
	if n.stopErr != nil {
		err := n.stopErr
		n.mu.Unlock()
		return err
	}
	n.reads[rw.key] = rw
	n.mu.Unlock()
	err := n.do(ctx, func() {
		if n.removed.Load() {
			n.finishRead(rw.key, txswitch.ErrRemoved)
			return
		}
		if n.rn.BasicStatus().Lead == raft.None {
			n.finishRead(rw.key, txswitch.ErrNoLeader)
			return
		}
		n.pendingReads = append(n.pendingReads, rw)
	})
	if err != nil {
		if n.dropRead(rw.key) {
			return err
		}
		return <-rw.ch
	}
	select {
	case err := <-rw.ch:
		return err
	case <-ctx.Done():
		if n.dropRead(rw.key) {
			return ctxErr(ctx)
		}
		return <-rw.ch
	}
}

func (n *Node) dropRead(key string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.reads[key]; !ok {
		return false
	}
	delete(n.reads, key)
	return true
}

func (n *Node) finishRead(key string, err error) {
	n.mu.Lock()
	rw := n.reads[key]
	delete(n.reads, key)
	n.mu.Unlock()
	if rw != nil {
		rw.ch <- err
	}
}

// issueReads asks raft for one read index for every read taken since the
// last call, under a request context of its own. Loop only.
func (n *Node) issueReads() {
	if len(n.pendingReads) == 0 {
		return
	}
	if n.rn.BasicStatus().Lead == raft.None {
		// Raft would drop the request silently: the leader was lost
		// while the reads were being taken.
		for _, rw := range n.pendingReads {
			n.finishRead(rw.key, txswitch.ErrNoLeader)
		}
		clear(n.pendingReads)
		n.pendingReads = n.pendingReads[:0]
		return
	}
	// Unique across the group: the leader tracks the requests of every
	// node by their context.
	k := n.newKey()
	rctx := make([]byte, 0, 3*binary.MaxVarintLen64)
	rctx = binary.AppendUvarint(rctx, k.node)
	rctx = binary.AppendUvarint(rctx, k.incarnation)
	rctx = binary.AppendUvarint(rctx, k.seq)
	batch := n.pendingReads
	n.pendingReads = nil
	n.mu.Lock()
	for _, rw := range batch {
		rw.issued = true
	}
	n.mu.Unlock()
	n.readBatches[string(rctx)] = batch
	n.readIndexes.Add(1)
	n.rn.ReadIndex(rctx)
}

// handleReadStates matches ReadStates to their batches of readers; a
// reader is released once applied >= its read index (maybe later, in
// releaseReads).
func (n *Node) handleReadStates(rss []raft.ReadState) {
	for _, rs := range rss {
		batch := n.readBatches[string(rs.RequestCtx)]
		delete(n.readBatches, string(rs.RequestCtx))
		for _, rw := range batch {
			n.mu.Lock()
			live := n.reads[rw.key] == rw
			n.mu.Unlock()
			if !live {
				continue // the reader gave up
			}
			rw.index = rs.Index
			n.readsApplied = append(n.readsApplied, rw)
		}
	}
}

func (n *Node) releaseReads() {
	kept := n.readsApplied[:0]
	for _, rw := range n.readsApplied {
		if rw.index <= n.applied {
			n.finishRead(rw.key, nil)
		} else {
			kept = append(kept, rw)
		}
	}
	clear(n.readsApplied[len(kept):])
	n.readsApplied = kept
}

// sweepReadBatches forgets the batches whose readers have all given up.
// A follower forwards its ReadIndex to the leader once and raft never
// retries it, so when that message or its answer is lost the batch would
// otherwise stay until the next leader change. Loop only, on ticks.
func (n *Node) sweepReadBatches() {
	if len(n.readBatches) == 0 {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for rctx, batch := range n.readBatches {
		if !slices.ContainsFunc(batch, func(rw *readWaiter) bool { return n.reads[rw.key] == rw }) {
			delete(n.readBatches, rctx)
		}
	}
}

// failAllReads fails every read this node is waiting for, whatever its
// stage. Loop only.
func (n *Node) failAllReads(err error) {
	clear(n.readBatches)
	clear(n.pendingReads)
	n.pendingReads = n.pendingReads[:0]
	clear(n.readsApplied)
	n.readsApplied = n.readsApplied[:0]
	n.mu.Lock()
	rs := n.reads
	n.reads = make(map[string]*readWaiter)
	n.mu.Unlock()
	for _, rw := range rs {
		rw.ch <- err
	}
}

func (n *Node) failIssuedReads(err error) {
	// Their ReadStates may never come: forget the batches (a ReadState
	// that still comes finds none, and its readers are failed below).
	clear(n.readBatches)
	n.mu.Lock()
	var fail []*readWaiter
	for key, rw := range n.reads {
		if rw.issued && rw.index == 0 {
			delete(n.reads, key)
			fail = append(fail, rw)
		}
	}
	n.mu.Unlock()
	for _, rw := range fail {
		rw.ch <- err
	}
}

// Removed reports whether this node was removed from the group: it
// applied the conf change removing it, or restarted after it. Such a node
// takes part in nothing more (Propose and ReadBarrier fail with
// txswitch.ErrRemoved); its process may keep running, so that an operator
// sees why it serves nothing. A node removed while it was down or cut off
// never learns it: it loses its leader instead (no leader known).
func (n *Node) Removed() bool { return n.removed.Load() }

// Leadership implements txswitch.Log.
func (n *Node) Leadership() txswitch.Leadership {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.lead
}

// LeadershipWatch is Leadership and a channel closed when it next changes.
func (n *Node) LeadershipWatch() (txswitch.Leadership, <-chan struct{}) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.lead, n.leaderCh
}

// Members returns the members and their addresses as of the last applied
// membership change.
func (n *Node) Members() []Peer {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.pubMem.Members)
}

// LeaderAPIAddr returns the API address of the leader this node knows of.
func (n *Node) LeaderAPIAddr() (string, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.lead.LeaderID == 0 {
		return "", false
	}
	p, ok := n.pubMem.get(n.lead.LeaderID)
	if !ok || p.APIAddr == "" {
		return "", false
	}
	return p.APIAddr, true
}

// Status is a node's view of its group.
type Status struct {
	ID            uint64 `json:"id"`
	Group         uint64 `json:"group"`
	State         string `json:"state"`
	Leader        uint64 `json:"leader"`
	Term          uint64 `json:"term"`
	Commit        uint64 `json:"commit"`
	Applied       uint64 `json:"applied"`
	SnapshotIndex uint64 `json:"snapshot_index"`
	Members       []Peer `json:"members"`
	// Progress is the leader's view of each member (empty on followers).
	Progress map[uint64]PeerProgress `json:"progress,omitempty"`
	Stopped  bool                    `json:"stopped,omitempty"`
	// Removed: this node was removed from the group (Node.Removed). State
	// and Leader are then raft's last view, which no longer changes.
	Removed bool `json:"removed,omitempty"`
}

// PeerProgress is the leader's replication state for one member.
type PeerProgress struct {
	Match        uint64 `json:"match"`
	Next         uint64 `json:"next"`
	State        string `json:"state"`
	RecentActive bool   `json:"recent_active"`
	Learner      bool   `json:"learner,omitempty"`
}

// updateCached records the status for readers that cannot reach the loop
// (a stopped node).
func (n *Node) updateCached() {
	// BasicStatus does not allocate the progress map: this runs per Ready.
	bs := n.rn.BasicStatus()
	s := Status{
		ID: n.cfg.ID, Group: n.cfg.Group, State: bs.RaftState.String(), Leader: bs.Lead,
		Term: bs.HardState.GetTerm(), Commit: bs.HardState.GetCommit(),
		Applied: n.applied, SnapshotIndex: n.snapIndex, Removed: n.removed.Load(),
	}
	n.mu.Lock()
	s.Members = n.pubMem.Members
	n.cached = s
	n.mu.Unlock()
}

func (n *Node) statusNow() Status {
	rs := n.rn.Status()
	s := Status{
		ID:            n.cfg.ID,
		Group:         n.cfg.Group,
		State:         rs.RaftState.String(),
		Leader:        rs.Lead,
		Term:          rs.HardState.GetTerm(),
		Commit:        rs.HardState.GetCommit(),
		Applied:       n.applied,
		SnapshotIndex: n.snapIndex,
		Members:       slices.Clone(n.mem.Members),
		Removed:       n.removed.Load(),
	}
	if len(rs.Progress) > 0 {
		s.Progress = make(map[uint64]PeerProgress, len(rs.Progress))
		for id, pr := range rs.Progress {
			s.Progress[id] = PeerProgress{Match: pr.Match, Next: pr.Next, State: pr.State.String(),
				RecentActive: pr.RecentActive, Learner: pr.IsLearner}
		}
	}
	return s
}

// Status returns the node's current view (the last one, if stopped).
func (n *Node) Status() Status {
	c := make(chan Status, 1)
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.ProposalTimeout)
	defer cancel()
	if n.do(ctx, func() { c <- n.statusNow() }) == nil {
		select {
		case s := <-c:
			return s
		case <-n.donec:
		case <-ctx.Done():
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	s := n.cached
	s.Members = slices.Clone(s.Members)
	s.Stopped = n.stopErr != nil
	return s
}

// TransferLeadership hands leadership to member to and waits until this
// node sees to lead. Call on the leader (else ErrNotLeader). Raft takes no
// proposals while a transfer is under way and gives it up only after an
// election timeout, so a member the leader has not heard from within one
// is refused up front (ErrMemberInactive), and a transfer raft gave up, or
// that another leader overtook, returns ErrTransferAborted at once: either
// way leadership did not move to to.
func (n *Node) TransferLeadership(ctx context.Context, to uint64) error {
	ctx, cancel := n.withTimeout(ctx)
	defer cancel()
	tr := &transfer{to: to, aborted: make(chan error, 1)}
	errc := make(chan error, 1)
	if err := n.do(ctx, func() { errc <- n.startTransfer(tr) }); err != nil {
		return fmt.Errorf("transfer leadership to %d: %w", to, err)
	}
	select {
	case err := <-errc:
		if err != nil {
			return fmt.Errorf("transfer leadership to %d: %w", to, err)
		}
	case <-n.donec:
		return n.stoppedErr()
	}
	for {
		l, ch := n.LeadershipWatch()
		switch {
		case l.LeaderID == to:
			return nil
		case l.LeaderID != 0 && l.Term > tr.term:
			return fmt.Errorf("transfer leadership to %d: %w: member %d leads at term %d", to, ErrTransferAborted, l.LeaderID, l.Term)
		}
		select {
		case <-ch:
		case err := <-tr.aborted:
			return fmt.Errorf("transfer leadership to %d: %w", to, err)
		case <-n.donec:
			return n.stoppedErr()
		case <-ctx.Done():
			return fmt.Errorf("transfer leadership to %d: %w", to, ctxErr(ctx))
		}
	}
}

// transfer is a leader transfer this node started as leader at term;
// aborted hears when raft gave it up (checkTransfers).
type transfer struct {
	to, term uint64
	aborted  chan error
}

// startTransfer runs on the loop.
func (n *Node) startTransfer(tr *transfer) error {
	bs := n.rn.BasicStatus()
	if bs.RaftState != raft.StateLeader {
		return fmt.Errorf("%w (leader %d)", ErrNotLeader, bs.Lead)
	}
	tr.term = bs.HardState.GetTerm()
	if tr.to == n.cfg.ID {
		return nil // leads already
	}
	if !slices.Contains(n.confState.GetVoters(), tr.to) {
		return fmt.Errorf("%d is not a voter", tr.to)
	}
	// Not raft's Progress.RecentActive: CheckQuorum clears it for every
	// member once per election timeout, and until the next heartbeat
	// answers come back a healthy member would look inactive.
	if heard, ok := n.heard[tr.to]; !ok || n.ticks-heard > uint64(n.cfg.ElectionTick) {
		return fmt.Errorf("%w: member %d", ErrMemberInactive, tr.to)
	}
	n.rn.TransferLeader(tr.to)
	n.transfers = append(n.transfers, tr)
	return nil
}

// checkTransfers tells the transfers raft gave up: this node still leads
// at the term it started them in, and raft no longer transfers to their
// member (it aborts a transfer an election timeout after it began, or
// when another one starts). A transfer whose leader stepped down is left
// to its caller, which watches the leadership. Loop only.
func (n *Node) checkTransfers() {
	bs := n.rn.BasicStatus()
	kept := n.transfers[:0]
	for _, tr := range n.transfers {
		switch {
		case bs.RaftState != raft.StateLeader || bs.HardState.GetTerm() != tr.term:
		case bs.LeadTransferee == tr.to:
			kept = append(kept, tr)
		default:
			tr.aborted <- fmt.Errorf("%w: member %d did not take over within an election timeout", ErrTransferAborted, tr.to)
		}
	}
	clear(n.transfers[len(kept):])
	n.transfers = kept
}

// AddMember adds a voter at raftAddr/apiAddr and returns its new id, which
// the new node must be started with (Join, Peers = current members). Ids
// are allocated by the leader past the highest id the group ever had, so a
// removed id is never reused. Call on the leader (else ErrNotLeader); while
// an earlier change, or the log the leader inherited at its election, is not
// yet applied it returns ErrConfChangeInProgress: retry shortly. An address
// a current member has is refused (*AddressInUseError): remove that member
// first, or use ReplaceMember.
func (n *Node) AddMember(ctx context.Context, raftAddr, apiAddr string) (uint64, error) {
	id, err := n.addMember(ctx, raftAddr, apiAddr, 0)
	if err != nil {
		return 0, fmt.Errorf("add member %s: %w", raftAddr, err)
	}
	return id, nil
}

// AddressInUseError refuses a new member whose raft or API address a
// current member has. Such a member would be a voter no node runs, which
// never answers: one more failure would then cost the quorum.
type AddressInUseError struct {
	Member uint64 // the current member with the address
	API    bool   // the API address (else the raft address)
	Addr   string
}

func (e *AddressInUseError) Error() string {
	kind := "raft"
	if e.API {
		kind = "API"
	}
	return fmt.Sprintf("%s address %s is member %d's", kind, e.Addr, e.Member)
}

// addMember adds a voter; replacing is the member that may keep its
// addresses while the new one joins (ReplaceMember; 0: none).
func (n *Node) addMember(ctx context.Context, raftAddr, apiAddr string, replacing uint64) (uint64, error) {
	var newID uint64
	_, err := n.changeMembership(ctx, func() (*raftpb.ConfChangeV2, confContext, error) {
		// Checked on the leader's loop against the membership it has
		// applied (proposeConfChange refuses while a change is pending),
		// so two adds of one address cannot both pass.
		if err := n.mem.addressInUse(raftAddr, apiAddr, replacing); err != nil {
			return nil, confContext{}, err
		}
		newID = n.mem.MaxID
		for _, ids := range [][]uint64{n.confState.GetVoters(), n.confState.GetLearners(),
			n.confState.GetVotersOutgoing(), n.confState.GetLearnersNext()} {
			for _, id := range ids {
				newID = max(newID, id)
			}
		}
		newID++
		cc := &raftpb.ConfChangeV2{Changes: []*raftpb.ConfChangeSingle{{
			Type: raftpb.ConfChangeAddNode.Enum(), NodeId: new(newID)}}}
		return cc, confContext{Peer: Peer{ID: newID, RaftAddr: raftAddr, APIAddr: apiAddr}}, nil
	})
	if err != nil {
		return 0, err
	}
	return newID, nil
}

// RemoveMember removes member id. Removing the leader itself works: it
// steps down once the change applies (StepDownOnRemoval).
func (n *Node) RemoveMember(ctx context.Context, id uint64) error {
	_, err := n.changeMembership(ctx, func() (*raftpb.ConfChangeV2, confContext, error) {
		voters := n.confState.GetVoters()
		if !slices.Contains(voters, id) && !slices.Contains(n.confState.GetLearners(), id) {
			return nil, confContext{}, fmt.Errorf("%d is not a member", id)
		}
		if len(voters) == 1 && voters[0] == id {
			return nil, confContext{}, errors.New("cannot remove the last voter")
		}
		cc := &raftpb.ConfChangeV2{Changes: []*raftpb.ConfChangeSingle{{
			Type: raftpb.ConfChangeRemoveNode.Enum(), NodeId: new(id)}}}
		return cc, confContext{Peer: Peer{ID: id}}, nil
	})
	if err != nil {
		return fmt.Errorf("remove member %d: %w", id, err)
	}
	return nil
}

// ReplaceMember adds a new member at raftAddr/apiAddr, then removes oldID.
// The new member may take oldID's addresses (a machine rebuilt in place):
// oldID is removed next. If the removal fails the new member stays (the
// group is never smaller than before); the error says so.
func (n *Node) ReplaceMember(ctx context.Context, oldID uint64, raftAddr, apiAddr string) (uint64, error) {
	newID, err := n.addMember(ctx, raftAddr, apiAddr, oldID)
	if err != nil {
		return 0, fmt.Errorf("replace member %d: %w", oldID, err)
	}
	if err := n.RemoveMember(ctx, oldID); err != nil {
		return newID, fmt.Errorf("replace member %d: added %d but: %w", oldID, newID, err)
	}
	return newID, nil
}

// changeMembership proposes the conf change build returns (built on the
// loop, so it sees the current membership) and waits until it is applied.
func (n *Node) changeMembership(ctx context.Context, build func() (*raftpb.ConfChangeV2, confContext, error)) (*raftpb.ConfState, error) {
	ctx, cancel := n.withTimeout(ctx)
	defer cancel()
	k := n.newKey()
	w, err := n.register(k)
	if err != nil {
		return nil, err
	}
	errc := make(chan error, 1)
	err = n.do(ctx, func() {
		errc <- n.proposeConfChange(k, build)
	})
	if err == nil {
		select {
		case err = <-errc:
		case <-n.donec:
			err = n.stoppedErr()
		}
	}
	if err != nil {
		n.unregister(k)
		return nil, err
	}
	v, err := n.wait(ctx, k, w)
	if err != nil {
		return nil, err
	}
	cs, _ := v.(*raftpb.ConfState)
	return cs, nil
}

// proposeConfChange runs on the loop. Only a leader that has applied its
// whole log as of its election and every conf change it has seen proposes,
// which mirrors raft's one-change-at-a-time rule (raft would otherwise turn
// the change into an empty entry) and makes id allocation safe.
func (n *Node) proposeConfChange(k propKey, build func() (*raftpb.ConfChangeV2, confContext, error)) error {
	if n.removed.Load() {
		return txswitch.ErrRemoved
	}
	bs := n.rn.BasicStatus()
	if bs.RaftState != raft.StateLeader {
		return fmt.Errorf("%w (leader %d)", ErrNotLeader, bs.Lead)
	}
	if n.applied < n.leaderStartIndex || n.applied < n.lastConfIndex {
		return ErrConfChangeInProgress
	}
	cc, cctx, err := build()
	if err != nil {
		return err
	}
	cctx.Node, cctx.Incarnation, cctx.Seq = k.node, k.incarnation, k.seq
	if cc.Context, err = jsonConfContext(cctx); err != nil {
		return err
	}
	if err := n.rn.ProposeConfChange(cc); err != nil {
		return n.dropError(err)
	}
	n.log.Info("proposed membership change", zap.String("change", raft.DescribeConfChange(cc)))
	return nil
}

// raftLogger routes raft's logs to zap.
type raftLogger struct{ s *zap.SugaredLogger }

func (l *raftLogger) Debug(v ...any)                   { l.s.Debug(v...) }
func (l *raftLogger) Debugf(format string, v ...any)   { l.s.Debugf(format, v...) }
func (l *raftLogger) Error(v ...any)                   { l.s.Error(v...) }
func (l *raftLogger) Errorf(format string, v ...any)   { l.s.Errorf(format, v...) }
func (l *raftLogger) Info(v ...any)                    { l.s.Info(v...) }
func (l *raftLogger) Infof(format string, v ...any)    { l.s.Infof(format, v...) }
func (l *raftLogger) Warning(v ...any)                 { l.s.Warn(v...) }
func (l *raftLogger) Warningf(format string, v ...any) { l.s.Warnf(format, v...) }
func (l *raftLogger) Fatal(v ...any)                   { l.s.Fatal(v...) }
func (l *raftLogger) Fatalf(format string, v ...any)   { l.s.Fatalf(format, v...) }
func (l *raftLogger) Panic(v ...any)                   { l.s.Panic(v...) }
func (l *raftLogger) Panicf(format string, v ...any)   { l.s.Panicf(format, v...) }
