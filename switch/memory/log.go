package memory

import (
	"context"
	"fmt"
	"sync"

	txswitch "github.com/txswitch/txswitch/switch"
)

// Log is a single-node txswitch.Log: Propose applies the command through
// the state machine synchronously, in order, under a mutex, so tests are
// deterministic. It records every committed entry, so a test can replay
// the same log into another machine.
type Log struct {
	mu      sync.Mutex
	sm      txswitch.StateMachine
	index   uint64
	entries []txswitch.Command
	lead    txswitch.Leadership
	faults  []fault
	after   func(data []byte)
	// barrierErr makes ReadBarrier fail (a node cut off from the quorum).
	barrierErr error
}

type fault struct {
	match func(data []byte) bool
	err   error
	apply bool
}

var _ txswitch.Log = (*Log)(nil)

// NewLog returns a log that leads (term 1) and applies into sm. Its index
// continues from sm's applied index.
func NewLog(sm txswitch.StateMachine) *Log {
	return &Log{sm: sm, index: sm.AppliedIndex(), lead: txswitch.Leadership{IsLeader: true, LeaderID: 1, Term: 1}}
}

// Fail makes the next proposal whose data matches (nil: any) return err; if
// apply is true the command is still committed and applied first (as with
// txswitch.ErrTimeout after commit), else it is dropped.
func (l *Log) Fail(match func(data []byte) bool, err error, apply bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.faults = append(l.faults, fault{match: match, err: err, apply: apply})
}

// AfterCommit sets fn to run after each proposal is applied, before
// Propose returns: a test's way to stall the proposer at that point (e.g.
// advance a fake clock between an intent and its provider call) or to
// move leadership there. fn runs outside the log's lock.
func (l *Log) AfterCommit(fn func(data []byte)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.after = fn
}

// SetLeadership changes what Leadership reports (a test's leader change).
func (l *Log) SetLeadership(ld txswitch.Leadership) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lead = ld
}

// Propose commits and applies data, returning the machine's result.
func (l *Log) Propose(ctx context.Context, data []byte) (any, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("propose: %w", txswitch.ErrTimeout)
	}
	res, err, after := l.propose(data)
	if err == nil && after != nil {
		// Outside the lock: the hook may change leadership.
		after(data)
	}
	return res, err
}

func (l *Log) propose(data []byte) (any, error, func([]byte)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.lead.IsLeader && l.lead.LeaderID == 0 {
		return nil, txswitch.ErrNoLeader, nil
	}
	// A follower that knows a leader forwards the proposal to it, as raft
	// does; with one machine behind the log, that is the same commit.
	for i, f := range l.faults {
		if f.match != nil && !f.match(data) {
			continue
		}
		l.faults = append(l.faults[:i:i], l.faults[i+1:]...)
		if f.apply {
			if _, err := l.applyLocked(data); err != nil {
				return nil, err, nil
			}
		}
		return nil, f.err, nil
	}
	res, err := l.applyLocked(data)
	return res, err, l.after
}

func (l *Log) applyLocked(data []byte) (any, error) {
	l.index++
	cmd := txswitch.Command{Index: l.index, Term: l.lead.Term, Data: append([]byte(nil), data...)}
	res, err := l.sm.Apply([]txswitch.Command{cmd})
	if err != nil {
		return nil, fmt.Errorf("apply entry %d: %w", cmd.Index, err)
	}
	l.entries = append(l.entries, cmd)
	return res[0], nil
}

// FailBarrier makes every ReadBarrier return err (nil: succeed again), as
// on a node that cannot reach a quorum.
func (l *Log) FailBarrier(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.barrierErr = err
}

// ReadBarrier returns at once: the single node's machine is always current
// (unless FailBarrier says otherwise).
func (l *Log) ReadBarrier(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("read barrier: %w", txswitch.ErrTimeout)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.barrierErr
}

// Leadership reports the configured view.
func (l *Log) Leadership() txswitch.Leadership {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lead
}

// Entries returns a copy of every committed command.
func (l *Log) Entries() []txswitch.Command {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]txswitch.Command(nil), l.entries...)
}
