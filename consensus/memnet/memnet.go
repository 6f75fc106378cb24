package memnet

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"slices"
	"sync"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	txswitch "github.com/txswitch/txswitch/switch"
)

// Handler receives deliveries (consensus.Node implements it; declared here
// so memnet does not import consensus and consensus' tests can use memnet).
type Handler interface {
	Step(ctx context.Context, group uint64, m *raftpb.Message) error
	ReportUnreachable(id uint64)
	ReportSnapshot(id uint64, status raft.SnapshotStatus)
}

// Faults are the faults of one directed link.
type Faults struct {
	// DropRate and DuplicateRate are probabilities in [0, 1].
	DropRate      float64
	DuplicateRate float64
	// Delay is uniform in [MinDelay, MaxDelay] ticks (0 = next DeliverDue).
	MinDelay, MaxDelay uint64
}

// MaxQueue bounds messages in flight; past it new messages are dropped
// (raft retransmits), like a full socket buffer.
const MaxQueue = 1 << 16

type linkKey struct{ from, to uint64 }

type link struct {
	faults Faults
	rng    *rand.Rand
}

type packet struct {
	due, seq uint64
	from, to uint64
	group    uint64
	msg      *raftpb.Message
}

// Stats counts what the network did.
type Stats struct {
	Sent, Delivered, Dropped, Duplicated, Blocked uint64
}

// Network is the in-memory network.
type Network struct {
	mu       sync.Mutex
	seed     uint64
	now      uint64
	seq      uint64
	handlers map[uint64]Handler
	links    map[linkKey]*link
	defaults Faults
	blocked  map[linkKey]bool
	queue    []packet
	stats    Stats
	// lostSnaps are MsgSnaps dropped at send, reported failed to their
	// sender at the next DeliverDue: a transport that loses a MsgSnap must
	// say so, or the leader waits for it forever (raft keeps the peer in
	// StateSnapshot until told). Not reported from send, which runs on
	// the sender's loop, and the report waits for that loop.
	lostSnaps []linkKey
}

// New returns a healthy network whose random choices derive from seed.
func New(seed int64) *Network {
	return &Network{
		seed:     uint64(seed),
		handlers: map[uint64]Handler{},
		links:    map[linkKey]*link{},
		blocked:  map[linkKey]bool{},
	}
}

// Endpoint returns node id's Transport for raft group group.
func (n *Network) Endpoint(id, group uint64) *Endpoint {
	return &Endpoint{net: n, id: id, group: group}
}

// Attach routes deliveries for id to h (replacing a previous handler, e.g.
// after a restart). Detach(id) makes id unreachable (a crashed node).
func (n *Network) Attach(id uint64, h Handler) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.handlers[id] = h
}

// Detach removes id's handler: messages to it are dropped.
func (n *Network) Detach(id uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.handlers, id)
}

func (n *Network) link(from, to uint64) *link {
	k := linkKey{from, to}
	l, ok := n.links[k]
	if !ok {
		l = &link{faults: n.defaults, rng: rand.New(rand.NewPCG(n.seed, from<<32^to))}
		n.links[k] = l
	}
	return l
}

// SetFaults sets the faults of the directed link from → to.
func (n *Network) SetFaults(from, to uint64, f Faults) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.link(from, to).faults = f
}

// SetAllFaults sets the faults of every link, present and future.
func (n *Network) SetAllFaults(f Faults) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.defaults = f
	for _, l := range n.links {
		l.faults = f
	}
}

// Partition splits the listed nodes into sides that cannot talk to each
// other (both directions). Links inside a side are untouched.
func (n *Network) Partition(sides ...[]uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for i, a := range sides {
		for j, b := range sides {
			if i == j {
				continue
			}
			for _, x := range a {
				for _, y := range b {
					n.blocked[linkKey{x, y}] = true
				}
			}
		}
	}
}

// Isolate cuts id off from every node in others, both directions.
func (n *Network) Isolate(id uint64, others []uint64) {
	n.Partition([]uint64{id}, slices.DeleteFunc(slices.Clone(others), func(o uint64) bool { return o == id }))
}

// BlockOneWay drops messages from → to only (asymmetric partition).
func (n *Network) BlockOneWay(from, to uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.blocked[linkKey{from, to}] = true
}

// Heal removes every partition (faults set by SetFaults stay).
func (n *Network) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.blocked)
}

// Tick advances network time by one tick.
func (n *Network) Tick() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.now++
}

// Stats returns the counters.
func (n *Network) Stats() Stats {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.stats
}

// Pending reports messages in flight.
func (n *Network) Pending() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.queue)
}

func (n *Network) send(from, group uint64, msgs []*raftpb.Message) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, m := range msgs {
		to := m.GetTo()
		l := n.link(from, to)
		n.stats.Sent++
		copies := 1
		if l.faults.DropRate > 0 && l.rng.Float64() < l.faults.DropRate {
			copies = 0
		} else if l.faults.DuplicateRate > 0 && l.rng.Float64() < l.faults.DuplicateRate {
			copies = 2
			n.stats.Duplicated++
		}
		if copies == 0 || len(n.queue) >= MaxQueue {
			n.stats.Dropped++
			if m.GetType() == raftpb.MsgSnap {
				n.lostSnaps = append(n.lostSnaps, linkKey{from, to})
			}
			continue
		}
		for range copies {
			delay := l.faults.MinDelay
			if l.faults.MaxDelay > l.faults.MinDelay {
				delay += l.rng.Uint64N(l.faults.MaxDelay - l.faults.MinDelay + 1)
			}
			n.seq++
			// Deep copy: the receiver must not share memory with the sender.
			n.queue = append(n.queue, packet{due: n.now + delay, seq: n.seq, from: from, to: to,
				group: group, msg: proto.Clone(m).(*raftpb.Message)})
		}
	}
}

// DeliverDue delivers every message due by now, in (due time, send order)
// order, and returns how many it handed to a node. A message on a blocked
// link or to a detached node is dropped; its sender is told the peer is
// unreachable and, for a snapshot, that it failed, as is a snapshot the
// link dropped when it was sent. A delivered snapshot is reported finished.
func (n *Network) DeliverDue() int {
	n.mu.Lock()
	var due []packet
	rest := n.queue[:0]
	for _, p := range n.queue {
		if p.due <= n.now {
			due = append(due, p)
		} else {
			rest = append(rest, p)
		}
	}
	clear(n.queue[len(rest):])
	n.queue = rest
	slices.SortFunc(due, func(a, b packet) int {
		if a.due != b.due {
			return cmpU(a.due, b.due)
		}
		return cmpU(a.seq, b.seq)
	})
	type delivery struct {
		p        packet
		to, from Handler
		blocked  bool
	}
	ds := make([]delivery, 0, len(due))
	for _, p := range due {
		ds = append(ds, delivery{p: p, to: n.handlers[p.to], from: n.handlers[p.from], blocked: n.blocked[linkKey{p.from, p.to}]})
	}
	lost := n.lostSnaps
	n.lostSnaps = nil
	senders := make([]Handler, len(lost))
	for i, l := range lost {
		senders[i] = n.handlers[l.from]
	}
	n.mu.Unlock()

	for i, l := range lost {
		if senders[i] != nil {
			senders[i].ReportSnapshot(l.to, raft.SnapshotFailure)
			senders[i].ReportUnreachable(l.to)
		}
	}

	delivered := 0
	for _, d := range ds {
		isSnap := d.p.msg.GetType() == raftpb.MsgSnap
		ok := !d.blocked && d.to != nil
		if ok && isSnap {
			// A streamed image goes with its MsgSnap, staged first.
			ok = streamImage(d.from, d.to, d.p.msg) == nil
		}
		ok = ok && d.to.Step(context.Background(), d.p.group, d.p.msg) == nil
		n.mu.Lock()
		if ok {
			n.stats.Delivered++
		} else if d.blocked {
			n.stats.Blocked++
		} else {
			n.stats.Dropped++
		}
		n.mu.Unlock()
		if ok {
			delivered++
		}
		if d.from == nil {
			continue
		}
		switch {
		case ok && isSnap:
			d.from.ReportSnapshot(d.p.to, raft.SnapshotFinish)
		case !ok && isSnap:
			d.from.ReportSnapshot(d.p.to, raft.SnapshotFailure)
			d.from.ReportUnreachable(d.p.to)
		case !ok:
			d.from.ReportUnreachable(d.p.to)
		}
	}
	return delivered
}

// imageSender and imageReceiver are consensus.ImageSender and
// ImageReceiver (declared here: memnet does not import consensus).
type imageSender interface {
	OpenSnapshotImage(m *raftpb.Message) (img io.WriterTo, release func(), ok bool, err error)
}

type imageReceiver interface {
	StageSnapshotImage(m *raftpb.Message) (sink txswitch.ImageSink, ok bool, err error)
}

// streamImage hands the image a streamed MsgSnap stands for from the
// sender to the receiver's staging, as the TCP transport streams it after
// the message. The receiver says whether a stream must follow (a MsgSnap
// that carries its data needs none); when one must and the sender cannot
// give it (it crashed since it sent the message), the delivery fails, as
// a broken TCP stream would.
func streamImage(from, to Handler, m *raftpb.Message) error {
	r, ok := to.(imageReceiver)
	if !ok {
		return nil
	}
	sink, streamed, err := r.StageSnapshotImage(m)
	if !streamed {
		return nil
	}
	if err != nil {
		return err
	}
	s, ok := from.(imageSender)
	if !ok {
		sink.Abort()
		return errors.New("memnet: the sender of a streamed snapshot is gone")
	}
	img, release, streamed, err := s.OpenSnapshotImage(m)
	if err == nil && !streamed {
		err = errors.New("memnet: the sender has no stream for this snapshot")
	}
	if err != nil {
		sink.Abort()
		return err
	}
	defer release()
	if _, err := img.WriteTo(sink); err != nil {
		sink.Abort()
		return err
	}
	_, err = sink.Commit()
	return err
}

func cmpU(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Endpoint is one node's Transport on the network.
type Endpoint struct {
	net       *Network
	id, group uint64
}

// Send implements consensus.Transport; it never blocks.
func (e *Endpoint) Send(msgs []*raftpb.Message) { e.net.send(e.id, e.group, msgs) }

// AddPeer implements consensus.Transport (routing is by id: nothing to do).
func (e *Endpoint) AddPeer(uint64, string) {}

// RemovePeer implements consensus.Transport.
func (e *Endpoint) RemovePeer(uint64) {}
