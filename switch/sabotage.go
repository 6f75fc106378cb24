package txswitch

import (
	"sync/atomic"
	"time"
)

// Sabotage breaks this node's switch on purpose, one flaw at a time, so
// the deploy gate can prove that each of its checkers catches the flaw it
// claims to (the scenario suite's mutant scenarios must FAIL the named
// checks). A check that silently stopped checking then turns the build red.
//
// Nothing a running binary reads turns a flaw on: there is no flag,
// configuration key, environment variable or endpoint for it. Only code in
// the same process (the chaos package's in-process mutant faults) reaches
// it, through Svc.Sabotage. The zero value is the honest switch, and every
// hook costs one atomic load when off.
type Sabotage struct {
	chargeTwiceOnRetry atomic.Bool
	ackBeforeCommit    atomic.Bool
	applyTwice         atomic.Bool
	slowAnswer         atomic.Bool
	// fired counts, per flaw, the times it actually broke something, so a
	// mutant scenario can tell a flaw that never got its chance (vacuous).
	firedRetry, firedAck, firedApply, firedSlow atomic.Int64
}

// Flaws a Sabotage can switch on.
const (
	// FlawChargeTwiceOnRetry: a payment call that ends in doubt (timeout,
	// reset) is sent again at once under a NEW idempotency key, instead of
	// being settled by a status inquiry with the original key. A PSP that
	// charged the first request charges again (DESIGN invariant 2).
	FlawChargeTwiceOnRetry = "charge_twice_on_retry"
	// FlawAckBeforeCommit: an order is answered 201 as soon as its command
	// is built, and proposed only afterwards, in the background; a read
	// right after the answer, or the leader's crash, misses it (DESIGN
	// invariants 1 and 6).
	FlawAckBeforeCommit = "ack_before_commit"
	// FlawApplyTwice: every committed command is applied twice to this
	// node's state, as a node that lost its applied index (not written
	// atomically with the state) would re-apply entries after a restart.
	FlawApplyTwice = "apply_twice"
	// FlawSlowAnswer: every payment is answered SlowAnswerDelay after its
	// result is known, as a release that serialises or stalls somewhere
	// on the request path would answer. Nothing is lost or wrong, only
	// slow: what the deploy gate's latency expectation is there to catch.
	FlawSlowAnswer = "slow_answer"
)

// SlowAnswerDelay is how long FlawSlowAnswer holds a payment's answer.
const SlowAnswerDelay = time.Second

// AckBeforeCommitDelay is how long an order answered under
// FlawAckBeforeCommit waits before it is proposed: long enough that the
// client's next request overtakes it.
const AckBeforeCommitDelay = 300 * time.Millisecond

// Set switches flaw on or off; it reports false for an unknown flaw.
func (s *Sabotage) Set(flaw string, on bool) bool {
	switch flaw {
	case FlawChargeTwiceOnRetry:
		s.chargeTwiceOnRetry.Store(on)
	case FlawAckBeforeCommit:
		s.ackBeforeCommit.Store(on)
	case FlawApplyTwice:
		s.applyTwice.Store(on)
	case FlawSlowAnswer:
		s.slowAnswer.Store(on)
	default:
		return false
	}
	return true
}

// Fired reports how many times flaw broke something on this node.
func (s *Sabotage) Fired(flaw string) int64 {
	switch flaw {
	case FlawChargeTwiceOnRetry:
		return s.firedRetry.Load()
	case FlawAckBeforeCommit:
		return s.firedAck.Load()
	case FlawApplyTwice:
		return s.firedApply.Load()
	case FlawSlowAnswer:
		return s.firedSlow.Load()
	}
	return 0
}

// Sabotage returns this node's sabotage switch (see Sabotage).
func (s *Svc) Sabotage() *Sabotage { return &s.m.sabotage }
