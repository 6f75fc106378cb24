package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"

	tcptransport "github.com/txswitch/txswitch/consensus/transport/tcp"
)

// MessageLoss drops a share of every node's outgoing raft messages, as a
// lossy network would (raft must retransmit and keep committing), through
// the transport filter hook like Partition. The drop decisions come from a
// seeded source, so an in-process run replays its loss pattern as closely
// as the scheduler allows.
type MessageLoss struct {
	record
	c     *Cluster
	rate  float64
	mu    sync.Mutex
	rng   *rand.Rand
	addrs []string
	base  uint64
}

// NewMessageLoss drops rate (0 < rate < 1) of raft messages on every link.
func NewMessageLoss(c *Cluster, rate float64, seed uint64) *MessageLoss {
	return &MessageLoss{record: record{kind: "message_loss", target: fmt.Sprintf("all links, %.0f%%", rate*100)},
		c: c, rate: rate, rng: rand.New(rand.NewPCG(seed, 0x6c6f7373))}
}

func (l *MessageLoss) drop(uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rng.Float64() < l.rate
}

// Inject installs the lossy filter on every running node's transport.
func (l *MessageLoss) Inject(context.Context) error {
	err := l.inject()
	l.add("inject", false, "", err)
	return err
}

func (l *MessageLoss) inject() error {
	if !(l.rate > 0 && l.rate < 1) {
		return fmt.Errorf("message_loss rate %v: want 0 < rate < 1", l.rate)
	}
	for _, n := range l.c.Running() {
		tr, ok := tcptransport.Lookup(n.RaftAddr())
		if !ok {
			return fmt.Errorf("no transport listening on %s (node %d)", n.RaftAddr(), n.ID())
		}
		l.addrs = append(l.addrs, n.RaftAddr())
		l.base += tr.Stats().Dropped
		tr.SetFilter(l.drop)
	}
	return nil
}

// Undo lifts the filters and records how many messages were dropped.
func (l *MessageLoss) Undo(context.Context) error {
	if l.addrs == nil {
		return nil
	}
	var after uint64
	for _, a := range l.addrs {
		if tr, ok := tcptransport.Lookup(a); ok {
			after += tr.Stats().Dropped
			tr.SetFilter(nil)
		}
	}
	l.add("undo", false, "", nil)
	l.add("effect", after > l.base, fmt.Sprintf("%d raft messages dropped", int64(after)-int64(l.base)), nil)
	l.addrs = nil
	return nil
}
