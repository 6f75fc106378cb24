package tcptransport

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/txswitch/txswitch/consensus"
)

// Defaults.
const (
	DefaultQueueSize    = 4096
	DefaultMaxFrameSize = 64 << 20 // a snapshot travels in one frame
	DefaultDialTimeout  = 2 * time.Second
	DefaultWriteTimeout = 10 * time.Second
	DefaultBackoffMin   = 50 * time.Millisecond
	DefaultBackoffMax   = 2 * time.Second
	// DefaultStepTimeout bounds how long a connection waits for the node's
	// inbox before dropping a message (raft retransmits).
	DefaultStepTimeout = 5 * time.Second
	// maxWriteBatch bounds the messages written before one flush.
	maxWriteBatch = 256
)

// headerSize is the frame header: uint32 length (of group + message) and
// uint64 raft group id.
const headerSize = 4 + 8

// Config configures a Transport.
type Config struct {
	// ID is this node's raft id (for logs).
	ID uint64
	// Group is the raft group id written in every frame this transport sends.
	Group uint64
	// ListenAddr is where to accept peers ("host:port", ":0" for tests).
	ListenAddr string
	// QueueSize bounds each peer's outbound queue; when full the message
	// is dropped and counted (raft retransmits; a MsgSnap is reported
	// failed).
	QueueSize    int
	MaxFrameSize int
	DialTimeout  time.Duration
	WriteTimeout time.Duration
	BackoffMin   time.Duration
	BackoffMax   time.Duration
	StepTimeout  time.Duration
	Logger       *zap.Logger
}

func (c *Config) setDefaults() {
	if c.QueueSize <= 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.MaxFrameSize <= 0 {
		c.MaxFrameSize = DefaultMaxFrameSize
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.BackoffMin <= 0 {
		c.BackoffMin = DefaultBackoffMin
	}
	if c.BackoffMax < c.BackoffMin {
		c.BackoffMax = max(DefaultBackoffMax, c.BackoffMin)
	}
	if c.StepTimeout <= 0 {
		c.StepTimeout = DefaultStepTimeout
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
}

// Stats counts messages.
type Stats struct {
	Sent, Dropped, Received, ReceiveDropped uint64
	// Delayed and Duplicated count what SetShaper did.
	Delayed, Duplicated uint64
}

// Transport is a consensus.Transport over TCP: one listener for inbound
// frames, and per peer one goroutine that owns one outbound connection and
// a bounded queue.
type Transport struct {
	cfg     Config
	log     *zap.Logger
	ln      net.Listener
	handler atomic.Pointer[handlerBox]

	mu     sync.Mutex
	peers  map[uint64]*peer
	conns  map[net.Conn]struct{}
	closed bool

	wg       sync.WaitGroup
	done     chan struct{}
	sent     atomic.Uint64
	dropped  atomic.Uint64
	received atomic.Uint64
	rdropped atomic.Uint64
	// filter is the fault-injection hook of SetFilter (nil: none).
	filter atomic.Pointer[func(to uint64) bool]
	// shaper is the fault-injection hook of SetShaper (nil: none).
	shaper     atomic.Pointer[Shaper]
	delayed    atomic.Uint64
	duplicated atomic.Uint64
}

// Shaper decides, per message to a peer, whether to send it twice and how
// long to hold it first (a fault-injection hook, see SetShaper).
type Shaper func(to uint64) (duplicate bool, delay time.Duration)

type handlerBox struct{ h consensus.Handler }

var _ consensus.Transport = (*Transport)(nil)

// New listens on cfg.ListenAddr. Inbound frames are read once Start has
// given the handler (the node), so a Transport can be passed to
// consensus.NewNode before the node exists.
func New(cfg Config) (*Transport, error) {
	cfg.setDefaults()
	ln, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("raft transport listen %s: %w", cfg.ListenAddr, err)
	}
	t := &Transport{
		cfg:   cfg,
		log:   cfg.Logger.With(zap.Uint64("raft_id", cfg.ID), zap.Uint64("group", cfg.Group)),
		ln:    ln,
		peers: map[uint64]*peer{},
		conns: map[net.Conn]struct{}{},
		done:  make(chan struct{}),
	}
	live.Store(ln.Addr().String(), t)
	return t, nil
}

// live maps the listen address of every open Transport of this process to
// it, so fault injection can reach the transports of an in-process cluster
// through the addresses it already knows. Close removes the entry.
var live sync.Map

// Lookup returns the open Transport of this process listening on addr (as
// Addr().String() spells it). It exists for fault injection (chaos).
func Lookup(addr string) (*Transport, bool) {
	v, ok := live.Load(addr)
	if !ok {
		return nil, false
	}
	return v.(*Transport), true
}

// SetFilter installs a fault-injection hook: Send drops (and counts as
// dropped) every message to a peer for which drop returns true, as a lossy
// or partitioned network would; raft retransmits once the filter is lifted.
// nil removes it. drop runs on the raft loop: it must be fast and must not
// block. Production code never sets a filter.
func (t *Transport) SetFilter(drop func(to uint64) bool) {
	if drop == nil {
		t.filter.Store(nil)
		return
	}
	t.filter.Store(&drop)
}

// SetShaper installs a fault-injection hook that delays and duplicates
// messages as a slow or retransmitting network would (raft must tolerate
// late, reordered and repeated messages); nil removes it. A delayed
// message waits in a timer, not in the loop, and is queued (or dropped
// when the queue is full or the peer is gone) when it fires. shape runs on
// the raft loop: it must be fast and must not block. Production code never
// sets a shaper.
func (t *Transport) SetShaper(shape Shaper) {
	if shape == nil {
		t.shaper.Store(nil)
		return
	}
	t.shaper.Store(&shape)
}

// Addr is the listening address.
func (t *Transport) Addr() net.Addr { return t.ln.Addr() }

// Start sets the handler inbound messages and reports go to and starts
// accepting connections.
func (t *Transport) Start(h consensus.Handler) {
	t.handler.Store(&handlerBox{h})
	t.wg.Go(t.acceptLoop)
}

func (t *Transport) h() consensus.Handler {
	if b := t.handler.Load(); b != nil {
		return b.h
	}
	return nil
}

// Stats returns the counters.
func (t *Transport) Stats() Stats {
	return Stats{Sent: t.sent.Load(), Dropped: t.dropped.Load(), Received: t.received.Load(), ReceiveDropped: t.rdropped.Load(),
		Delayed: t.delayed.Load(), Duplicated: t.duplicated.Load()}
}

// Close stops every goroutine and closes every connection.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	live.CompareAndDelete(t.ln.Addr().String(), t)
	close(t.done)
	for _, p := range t.peers {
		p.stop()
	}
	for c := range t.conns {
		_ = c.Close()
	}
	t.mu.Unlock()
	err := t.ln.Close()
	t.wg.Wait()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("close raft listener: %w", err)
	}
	return nil
}

// AddPeer implements consensus.Transport; a known peer gets its new
// address on the next (re)connect.
func (t *Transport) AddPeer(id uint64, addr string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed || id == t.cfg.ID {
		return
	}
	if p, ok := t.peers[id]; ok {
		p.setAddr(addr)
		return
	}
	p := &peer{t: t, id: id, addr: addr, q: make(chan *raftpb.Message, t.cfg.QueueSize), stopc: make(chan struct{})}
	t.peers[id] = p
	t.wg.Go(p.run)
}

// RemovePeer implements consensus.Transport.
func (t *Transport) RemovePeer(id uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p, ok := t.peers[id]; ok {
		p.stop()
		delete(t.peers, id)
	}
}

// Send implements consensus.Transport. It never blocks; see Config.QueueSize.
func (t *Transport) Send(msgs []*raftpb.Message) {
	var filter func(uint64) bool
	if f := t.filter.Load(); f != nil {
		filter = *f
	}
	var shape Shaper
	if s := t.shaper.Load(); s != nil {
		shape = *s
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, m := range msgs {
		p := t.peers[m.GetTo()]
		if p == nil || t.closed || (filter != nil && filter(m.GetTo())) {
			t.drop(m)
			continue
		}
		copies := 1
		if shape != nil {
			dup, delay := shape(m.GetTo())
			if dup {
				copies = 2
				t.duplicated.Add(1)
			}
			if delay > 0 {
				t.delayed.Add(1)
				time.AfterFunc(delay, func() { t.enqueueLate(p, m, copies) })
				continue
			}
		}
		for range copies {
			t.enqueueLocked(p, m)
		}
	}
}

// enqueueLocked queues m for p without blocking (t.mu held).
func (t *Transport) enqueueLocked(p *peer, m *raftpb.Message) {
	select {
	case p.q <- m:
	default:
		t.drop(m)
	}
}

// enqueueLate queues a message a shaper delayed, unless its peer is gone.
func (t *Transport) enqueueLate(p *peer, m *raftpb.Message, copies int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed || t.peers[m.GetTo()] != p {
		t.drop(m)
		return
	}
	for range copies {
		t.enqueueLocked(p, m)
	}
}

// drop counts a message that will not be sent and tells raft when it
// matters. Reports go from a new goroutine: Send runs on the node's loop,
// which must not wait on itself.
func (t *Transport) drop(m *raftpb.Message) {
	t.dropped.Add(1)
	if m.GetType() == raftpb.MsgSnap {
		if h := t.h(); h != nil {
			to := m.GetTo()
			go h.ReportSnapshot(to, raft.SnapshotFailure)
		}
	}
}

// ---------------------------------------------------------------------------
// Outbound.

type peer struct {
	t     *Transport
	id    uint64
	mu    sync.Mutex
	addr  string
	q     chan *raftpb.Message
	stopc chan struct{}
	once  sync.Once
}

func (p *peer) stop() { p.once.Do(func() { close(p.stopc) }) }

func (p *peer) setAddr(a string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.addr = a
}

func (p *peer) getAddr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addr
}

// run owns the connection to the peer: take a message, (re)connect if
// needed, write it and whatever else is queued, flush. On failure: drop the
// batch, report, back off (exponential with jitter), retry with later
// messages — never resend a message, so the peer never sees one twice.
func (p *peer) run() {
	log := p.t.log.With(zap.Uint64("peer", p.id))
	var (
		conn    net.Conn
		w       *bufio.Writer
		backoff = p.t.cfg.BackoffMin
		failing bool
		batch   []*raftpb.Message
		written []*raftpb.Message // the part of batch that went out
		buf     []byte
	)
	defer func() {
		if conn != nil {
			_ = conn.Close()
		}
	}()
	for {
		var m *raftpb.Message
		select {
		case <-p.stopc:
			return
		case m = <-p.q:
		}
		batch = append(batch[:0], m)
		for len(batch) < maxWriteBatch {
			select {
			case m := <-p.q:
				batch = append(batch, m)
				continue
			default:
			}
			break
		}
		if conn == nil {
			addr := p.getAddr()
			c, err := net.DialTimeout("tcp", addr, p.t.cfg.DialTimeout)
			if err != nil {
				if !failing {
					log.Warn("raft peer unreachable", zap.String("addr", addr), zap.Error(err))
					failing = true
				}
				p.fail(batch)
				if !p.sleep(jitter(backoff)) {
					return
				}
				backoff = min(2*backoff, p.t.cfg.BackoffMax)
				continue
			}
			conn, w = c, bufio.NewWriterSize(c, 64<<10)
			backoff = p.t.cfg.BackoffMin
			failing = false
			log.Info("raft peer connected", zap.String("addr", addr))
		}
		var err error
		_ = conn.SetWriteDeadline(time.Now().Add(p.t.cfg.WriteTimeout))
		// What could not be framed is dropped (and reported) alone; the
		// rest of the batch, written, is what the code below reports.
		clear(written)
		written = written[:0]
		var unsent []*raftpb.Message // from the message a write failed on
		for i, m := range batch {
			img, release, ierr := p.openImage(m)
			if ierr != nil {
				log.Warn("raft snapshot not sent: its image is gone", zap.Error(ierr))
				p.t.drop(m)
				continue
			}
			var ferr error
			if buf, ferr = appendFrame(buf[:0], p.t.cfg.Group, m, p.t.cfg.MaxFrameSize); ferr != nil {
				// Too large to ever send: drop it alone.
				log.Error("raft message not sent", zap.Error(ferr))
				if release != nil {
					release()
				}
				p.t.drop(m)
				continue
			}
			aborted := false
			if _, err = w.Write(buf); err == nil && img != nil {
				var whole bool
				whole, err = p.t.writeImage(conn, w, img)
				// Aborted in good order (not whole, no error): the peer
				// discards the image and the connection goes on.
				aborted = err == nil && !whole
			}
			if release != nil {
				release()
			}
			if err != nil {
				unsent = batch[i:]
				break
			}
			if aborted {
				p.t.drop(m)
				continue
			}
			written = append(written, m)
		}
		if err == nil {
			err = w.Flush()
		}
		if err != nil {
			log.Warn("raft peer connection lost", zap.Error(err))
			_ = conn.Close()
			conn, w = nil, nil
			failing = true
			// Each message is reported once: those dropped alone above
			// were already.
			p.fail(append(written, unsent...))
			continue
		}
		p.t.sent.Add(uint64(len(written)))
		if h := p.t.h(); h != nil {
			for _, m := range written {
				if m.GetType() == raftpb.MsgSnap {
					h.ReportSnapshot(p.id, raft.SnapshotFinish)
				}
			}
		}
	}
}

// openImage returns the image to stream after m, if m is a streamed
// MsgSnap (see consensus.ImageSender); release must then be called.
func (p *peer) openImage(m *raftpb.Message) (io.WriterTo, func(), error) {
	if m.GetType() != raftpb.MsgSnap {
		return nil, nil, nil
	}
	s, ok := p.t.h().(consensus.ImageSender)
	if !ok {
		return nil, nil, nil
	}
	img, release, streamed, err := s.OpenSnapshotImage(m)
	if !streamed {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	return img, release, nil
}

// fail reports a batch that may not have reached the peer.
func (p *peer) fail(batch []*raftpb.Message) {
	p.t.dropped.Add(uint64(len(batch)))
	h := p.t.h()
	if h == nil {
		return
	}
	h.ReportUnreachable(p.id)
	for _, m := range batch {
		if m.GetType() == raftpb.MsgSnap {
			h.ReportSnapshot(p.id, raft.SnapshotFailure)
		}
	}
}

func (p *peer) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-p.stopc:
		return false
	}
}

// jitter spreads reconnects over [d/2, d).
func jitter(d time.Duration) time.Duration {
	half := d / 2
	return half + rand.N(half+1)
}

// appendFrame encodes one frame: length | group | protobuf message.
func appendFrame(buf []byte, group uint64, m *raftpb.Message, maxFrame int) ([]byte, error) {
	size := proto.Size(m)
	if 8+size > maxFrame {
		return buf, fmt.Errorf("raft %v to %d: frame of %d bytes exceeds %d", m.GetType(), m.GetTo(), 8+size, maxFrame)
	}
	buf = binary.BigEndian.AppendUint32(buf, uint32(8+size))
	buf = binary.BigEndian.AppendUint64(buf, group)
	// The size was just computed: do not walk the message again for it.
	return proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(buf, m)
}

// readFrame reads one frame; an oversized or short frame is an error (the
// connection is then closed: its framing can no longer be trusted).
func readFrame(r *bufio.Reader, buf []byte, maxFrame int) (uint64, *raftpb.Message, []byte, error) {
	var hdr [headerSize]byte
	if _, err := io.ReadFull(r, hdr[:4]); err != nil {
		return 0, nil, buf, err
	}
	n := int(binary.BigEndian.Uint32(hdr[:4]))
	if n < 8 || n > maxFrame {
		return 0, nil, buf, fmt.Errorf("frame length %d outside [8, %d]", n, maxFrame)
	}
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		return 0, nil, buf, fmt.Errorf("read frame body: %w", err)
	}
	group := binary.BigEndian.Uint64(buf[:8])
	m := &raftpb.Message{}
	if err := proto.Unmarshal(buf[8:], m); err != nil {
		return 0, nil, buf, fmt.Errorf("decode raft message: %w", err)
	}
	return group, m, buf, nil
}

// ---------------------------------------------------------------------------
// Inbound.

func (t *Transport) acceptLoop() {
	for {
		c, err := t.ln.Accept()
		if err != nil {
			select {
			case <-t.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			t.log.Warn("raft accept failed", zap.Error(err))
			select {
			case <-time.After(t.cfg.BackoffMin):
			case <-t.done:
				return
			}
			continue
		}
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			_ = c.Close()
			return
		}
		t.conns[c] = struct{}{}
		t.mu.Unlock()
		t.wg.Go(func() { t.serve(c) })
	}
}

// stepDeadline bounds the Steps of one connection. One context serves
// many messages (a timer per message is a measurable share of the CPU under
// load); it is renewed so that every Step may still wait at least 3/4 of
// the timeout.
type stepDeadline struct {
	timeout time.Duration
	c       context.Context
	cancel  context.CancelFunc
	renew   time.Time
}

func (d *stepDeadline) ctx() context.Context {
	if now := time.Now(); d.c == nil || now.After(d.renew) {
		d.stop()
		d.c, d.cancel = context.WithTimeout(context.Background(), d.timeout)
		d.renew = now.Add(d.timeout / 4)
	}
	return d.c
}

func (d *stepDeadline) stop() {
	if d.cancel != nil {
		d.cancel()
	}
}

func (t *Transport) serve(c net.Conn) {
	defer func() {
		t.mu.Lock()
		delete(t.conns, c)
		t.mu.Unlock()
		_ = c.Close()
	}()
	r := bufio.NewReaderSize(c, 64<<10)
	var buf []byte
	dl := stepDeadline{timeout: t.cfg.StepTimeout}
	defer dl.stop()
	for {
		group, m, b, err := readFrame(r, buf, t.cfg.MaxFrameSize)
		buf = b
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				t.log.Warn("raft inbound connection closed", zap.String("remote", c.RemoteAddr().String()), zap.Error(err))
			}
			return
		}
		t.received.Add(1)
		h := t.h()
		if m.GetType() == raftpb.MsgSnap {
			var step bool
			if step, buf, err = t.receiveImage(h, r, buf, m); err != nil {
				t.log.Warn("raft inbound connection closed", zap.String("remote", c.RemoteAddr().String()), zap.Error(err))
				return
			}
			if !step {
				t.rdropped.Add(1)
				continue
			}
		}
		if h == nil {
			t.rdropped.Add(1)
			continue
		}
		if err := h.Step(dl.ctx(), group, m); err != nil {
			t.rdropped.Add(1)
		}
		// A buffer that held a snapshot is not kept for small messages.
		if cap(buf) > 1<<20 {
			buf = nil
		}
	}
}

// Streamed snapshot images (consensus/images.go). A MsgSnap whose image is
// streamed is followed, on its connection, by the image in chunks:
//
//	uint32 length n (1..maxImageChunk) | n bytes   (repeated)
//	uint32 0                                      (end of the image)
//	uint32 0xFFFFFFFF                             (aborted: discard it)
//
// The reader stages the chunks through its handler and steps the MsgSnap
// only once the whole image is staged. The image is written in bounded
// memory on both sides, whatever its size; it holds the connection (and
// the messages queued behind it) for as long as it takes.
const (
	imageChunk      = 1 << 20
	maxImageChunk   = 4 << 20
	imageChunkEnd   = 0
	imageChunkAbort = 0xFFFFFFFF
)

// writeImage writes img as chunks to w, renewing the write deadline per
// chunk. ok is false when the image could not be produced (the peer was
// told to discard it); err is a write error (the connection is lost).
func (t *Transport) writeImage(conn net.Conn, w *bufio.Writer, img io.WriterTo) (ok bool, err error) {
	cw := &chunkWriter{conn: conn, w: w, timeout: t.cfg.WriteTimeout}
	if _, werr := img.WriteTo(cw); werr != nil {
		if cw.err != nil {
			return false, cw.err // the connection failed
		}
		t.log.Warn("raft snapshot image aborted", zap.Error(werr))
		return false, cw.mark(imageChunkAbort)
	}
	return true, cw.mark(imageChunkEnd)
}

type chunkWriter struct {
	conn    net.Conn
	w       *bufio.Writer
	timeout time.Duration
	err     error // the first write error: the connection is lost
	hdr     [4]byte
}

func (c *chunkWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(len(p), imageChunk)
		binary.BigEndian.PutUint32(c.hdr[:], uint32(k))
		_ = c.conn.SetWriteDeadline(time.Now().Add(c.timeout))
		if _, err := c.w.Write(c.hdr[:]); err != nil {
			c.err = err
			return n, err
		}
		if _, err := c.w.Write(p[:k]); err != nil {
			c.err = err
			return n, err
		}
		n += k
		p = p[k:]
	}
	return n, nil
}

func (c *chunkWriter) mark(v uint32) error {
	binary.BigEndian.PutUint32(c.hdr[:], v)
	_ = c.conn.SetWriteDeadline(time.Now().Add(c.timeout))
	_, err := c.w.Write(c.hdr[:])
	return err
}

// readImage reads the chunks following a streamed MsgSnap into sink. It
// returns whether the image arrived whole (false: the sender aborted it,
// the connection stays usable) or an error (the connection is not).
func readImage(r *bufio.Reader, buf []byte, sink io.Writer) (whole bool, _ []byte, err error) {
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return false, buf, fmt.Errorf("read image chunk header: %w", err)
		}
		n := binary.BigEndian.Uint32(hdr[:])
		switch {
		case n == imageChunkEnd:
			_, failed := sink.(failedSink)
			return !failed, buf, nil
		case n == imageChunkAbort:
			return false, buf, nil
		case n > maxImageChunk:
			return false, buf, fmt.Errorf("image chunk of %d bytes, limit %d", n, maxImageChunk)
		}
		buf = grow(buf, int(n))
		if _, err := io.ReadFull(r, buf); err != nil {
			return false, buf, fmt.Errorf("read image chunk: %w", err)
		}
		if _, err := sink.Write(buf); err != nil {
			// Keep reading: the framing is intact, only this image is
			// lost.
			sink = failedSink{err}
		}
	}
}

// receiveImage stages the image that follows a streamed MsgSnap m (see
// consensus.ImageReceiver); step says whether m may go to raft now (its
// data inline, or its image staged whole). err means the connection's
// framing is lost.
func (t *Transport) receiveImage(h consensus.Handler, r *bufio.Reader, buf []byte, m *raftpb.Message) (step bool, _ []byte, err error) {
	rcv, ok := h.(consensus.ImageReceiver)
	if !ok {
		return true, buf, nil
	}
	sink, streamed, serr := rcv.StageSnapshotImage(m)
	if !streamed {
		return true, buf, nil
	}
	var w io.Writer = failedSink{serr}
	if serr == nil {
		w = sink
	}
	whole, buf, err := readImage(r, buf, w)
	if serr != nil {
		t.log.Warn("raft snapshot image not staged", zap.Error(serr))
		return false, buf, err
	}
	if err != nil || !whole {
		sink.Abort()
		return false, buf, err
	}
	size, cerr := sink.Commit()
	if cerr != nil {
		t.log.Warn("raft snapshot image refused", zap.Uint64("index", m.GetSnapshot().GetMetadata().GetIndex()), zap.Error(cerr))
		return false, buf, nil
	}
	t.log.Info("raft snapshot image staged", zap.Uint64("index", m.GetSnapshot().GetMetadata().GetIndex()), zap.Int64("bytes", size))
	return true, buf, nil
}

// failedSink swallows the rest of an image whose staging failed.
type failedSink struct{ err error }

func (f failedSink) Write(p []byte) (int, error) { return len(p), nil }

func grow(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}
