package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	tcptransport "github.com/txswitch/txswitch/consensus/transport/tcp"
)

// MessageShaping delays and/or duplicates a seeded share of every node's
// outgoing raft messages (a slow, reordering or retransmitting network)
// through the transport's shaper hook. Raft must tolerate late, reordered
// and repeated messages without losing or re-applying anything.
type MessageShaping struct {
	record
	c         *Cluster
	duplicate float64       // share of messages sent twice
	delay     time.Duration // upper bound of the uniform delay of a delayed message
	delayRate float64       // share of messages delayed
	mu        sync.Mutex
	rng       *rand.Rand
	addrs     []string
	base      uint64
}

// NewMessageDelay delays rate of raft messages by up to delay.
func NewMessageDelay(c *Cluster, rate float64, delay time.Duration, seed uint64) *MessageShaping {
	return &MessageShaping{record: record{kind: "message_delay", target: fmt.Sprintf("all links, %.0f%% up to %s", rate*100, delay)},
		c: c, delay: delay, delayRate: rate, rng: rand.New(rand.NewPCG(seed, 0x64656c61))}
}

// NewMessageDuplicate sends rate of raft messages twice.
func NewMessageDuplicate(c *Cluster, rate float64, seed uint64) *MessageShaping {
	return &MessageShaping{record: record{kind: "message_duplicate", target: fmt.Sprintf("all links, %.0f%%", rate*100)},
		c: c, duplicate: rate, rng: rand.New(rand.NewPCG(seed, 0x64757020))}
}

func (s *MessageShaping) shape(uint64) (bool, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	dup := s.duplicate > 0 && s.rng.Float64() < s.duplicate
	var d time.Duration
	if s.delayRate > 0 && s.rng.Float64() < s.delayRate {
		d = time.Duration(s.rng.Int64N(int64(s.delay))) + time.Millisecond
	}
	return dup, d
}

// count is this fault's own effect in a transport's counters. One shaper
// per transport: two shaping faults must not overlap (the scenario loader
// does not combine them either).
func (s *MessageShaping) count(st tcptransport.Stats) uint64 {
	if s.delayRate > 0 {
		return st.Delayed
	}
	return st.Duplicated
}

// Inject installs the shaper on every running node's transport.
func (s *MessageShaping) Inject(context.Context) error {
	err := s.inject()
	s.add("inject", false, "", err)
	return err
}

func (s *MessageShaping) inject() error {
	if !(s.duplicate >= 0 && s.duplicate < 1 && s.delayRate >= 0 && s.delayRate < 1) || s.duplicate+s.delayRate == 0 {
		return fmt.Errorf("%s: rates must be in (0, 1)", s.kind)
	}
	if s.delayRate > 0 && s.delay <= 0 {
		return fmt.Errorf("%s: a delay is needed", s.kind)
	}
	for _, n := range s.c.Running() {
		tr, ok := tcptransport.Lookup(n.RaftAddr())
		if !ok {
			return fmt.Errorf("no transport listening on %s (node %d)", n.RaftAddr(), n.ID())
		}
		s.addrs = append(s.addrs, n.RaftAddr())
		s.base += s.count(tr.Stats())
		tr.SetShaper(s.shape)
	}
	return nil
}

// Undo lifts the shapers and records how many messages were shaped.
func (s *MessageShaping) Undo(context.Context) error {
	if s.addrs == nil {
		return nil
	}
	var after uint64
	for _, a := range s.addrs {
		if tr, ok := tcptransport.Lookup(a); ok {
			after += s.count(tr.Stats())
			tr.SetShaper(nil)
		}
	}
	s.add("undo", false, "", nil)
	what := "duplicated"
	if s.delayRate > 0 {
		what = "delayed"
	}
	s.add("effect", after > s.base, fmt.Sprintf("%d raft messages %s", int64(after)-int64(s.base), what), nil)
	s.addrs = nil
	return nil
}
