package central

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
	"go.uber.org/zap"

	txswitch "github.com/txswitch/txswitch/switch"
)

// Source is the replicated outbox the exporter drains (implemented by the
// domain side on top of the state machine).
//
// Contract: events are dense in Seq; ReadOutbox(after, limit) returns up to
// limit events with Seq > after in Seq order (fewer, but at least one when
// there is one, to bound their size); the outbox is trimmed only up
// to the export watermark, so every event after the watermark is readable.
// ReadOutbox and OutboxHead may be called from two goroutines at once (the
// exporter prefetches the next batch while writing the current one).
// AdvanceExportWatermark replicates the new watermark through Raft and
// returns once it is committed (or with an error: then nothing is known and
// the exporter simply re-exports, which is idempotent).
type Source interface {
	ReadOutbox(after uint64, limit int) ([]txswitch.OutboxEvent, error)
	ExportWatermark() (uint64, error)
	AdvanceExportWatermark(ctx context.Context, seq uint64) error
	IsLeader() bool
	// OutboxHead is the Seq of the newest committed event (0 when none).
	OutboxHead() (uint64, error)
}

// Clock is the exporter's time source (a fake in tests).
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// BreakerSettings tune the circuit breaker on the database.
type BreakerSettings struct {
	// ConsecutiveFailures opens the breaker (default 3).
	ConsecutiveFailures uint32
	// OpenTimeout is how long it stays open before one probe (default 10s).
	OpenTimeout time.Duration
}

// Bounds and defaults of the exporter.
const (
	DefaultBatch        = 1000
	DefaultBatchMax     = 5000
	MaxBatch            = 10000
	defaultPoll         = time.Second
	defaultFollowerPoll = 500 * time.Millisecond
	defaultBackoffMin   = 100 * time.Millisecond
	defaultBackoffMax   = 30 * time.Second
	defaultWriteTimeout = 30 * time.Second
	defaultObserveEvery = time.Second
)

// ExporterConfig configures an Exporter. Pool or URL is required, and Source.
type ExporterConfig struct {
	Pool   *pgxpool.Pool // used as is and not closed by the exporter
	URL    string        // used when Pool is nil; the exporter owns that pool
	Source Source
	// Batch is the events read per transaction when the exporter keeps up
	// (default 1000, at most MaxBatch). Behind, a batch takes the whole
	// backlog up to BatchMax (default 5000, at least Batch, at most
	// MaxBatch): fewer, larger transactions and watermark proposals, and
	// fewer resource rows written twice because their events straddle two
	// batches (each such row is one more non-HOT update of every index).
	Batch    int
	BatchMax int
	Logger   *zap.Logger
	Clock    Clock
	// Registry receives the txswitch_export_* metrics (optional).
	Registry *prometheus.Registry
	Breaker  BreakerSettings
	// BacklogAlarm: a warning is logged once each time the unexported
	// backlog rises above this many events (0: no alarm).
	BacklogAlarm uint64
	// PollInterval is the wait after a batch that drained the outbox as it
	// was when read, even when events arrived while it was written (Kick
	// wakes the exporter early): the export lag, up to PollInterval plus a
	// write, and what the next batch accumulates meanwhile (default 1s;
	// shorter means more, smaller transactions for the same events, and
	// resource rows written more often). FollowerPoll is the wait while
	// not leader.
	PollInterval time.Duration
	FollowerPoll time.Duration
	// BackoffMin/Max bound the capped exponential backoff (with jitter)
	// after a failed write.
	BackoffMin time.Duration
	BackoffMax time.Duration
	// ObserveEvery is how often the lag figures are read from the outbox
	// while the exporter waits between attempts (default 1s): a backoff
	// or an open breaker lasts up to BackoffMax, and an alert on the lag
	// must not wait for the next attempt to see it grow. Only the outbox
	// is read, never the database.
	ObserveEvery time.Duration
	// WriteTimeout bounds one batch transaction; a slower database counts
	// as a failure for the breaker.
	WriteTimeout time.Duration
}

// ExportStats is what operators see about the export.
type ExportStats struct {
	Leader        bool    `json:"leader"`               // false: this node does not export, and the figures below are not the export's
	Watermark     uint64  `json:"watermark"`            // last event durably in PostgreSQL and acknowledged by Raft
	LastSeq       uint64  `json:"last_seq"`             // outbox head
	LagEvents     uint64  `json:"lag_events"`           // LastSeq - Watermark
	LagSeconds    float64 `json:"lag_seconds"`          // age of the oldest unexported event (0 when none; after a batch that drained the outbox, at most the time since it was read)
	Backlog       uint64  `json:"backlog"`              // events held in the outbox for export (= LagEvents: trimmed exactly behind the watermark)
	BreakerState  string  `json:"breaker_state"`        // closed, half-open, open
	LastError     string  `json:"last_error,omitempty"` // "" after a successful write
	ExportedTotal uint64  `json:"exported_total"`       // events newly applied to PostgreSQL by this exporter
}

// Exporter ships the outbox to PostgreSQL, exactly once (DESIGN invariant 5).
//
// Exactly once, step by step: (1) read the events after the Raft-replicated
// watermark W; (2) in ONE PostgreSQL transaction: lock the export_progress
// row (its last_seq P), upsert the events' rows, record the range of seqs
// new to the database, (max(P, W), last], in exported_ranges and raise P
// to last; COMMIT; (3) advance W through Raft to last.
//
// Invariant: every event <= P, and every event <= W, is applied in
// PostgreSQL. P only rises in the transaction that applies the events up
// to it; W only rises after such a COMMIT. So no event is ever skipped:
// step (1) reads everything after W, and the outbox is trimmed only behind
// W.
//
// A leader change mid-batch: if the old leader died before COMMIT, nothing
// of its batch is there. If it died between (2) and (3), W is behind P and
// the next leader writes events (W, P] again. That changes nothing: resource
// upserts only apply an event newer than the row's last_event_seq (equal is
// not newer), timeline and provider-attempt rows are ON CONFLICT DO NOTHING
// (a batch this exporter believes fresh inserts them plainly, and a unique
// violation sends it again with ON CONFLICT: see writeRows); and the
// recorded range starts above P, so no event is counted twice. A
// deposed leader still finishing a batch and the new leader's first batch
// take turns on the progress row's lock; the second sees the first's P.
// Hence exported_ranges tiles 1..P without overlap: each event once.
//
// (During a rolling upgrade, an exporter of the previous release records
// events in exported_events and does not raise P; then W may pass P and the
// range starts above W instead. exported_event_log reads both ledgers,
// each event once: a range that overlaps the old ledger, when the previous
// release committed a batch but not its watermark, hides those rows, see
// migration 0006; the ExportedTotal figure does count them again.)
type Exporter struct {
	cfg     ExporterConfig
	pool    *pgxpool.Pool
	ownPool bool
	src     Source
	log     *zap.Logger
	clock   Clock
	breaker *gobreaker.CircuitBreaker[int64]
	kick    chan struct{}
	next    chan *prepared // the prefetched batch, if any (Run's goroutine only)
	// progress is export_progress.last_seq as of this exporter's last
	// commit (Run's goroutine only): a hint for writeRows' fresh, never
	// relied on for correctness.
	progress      uint64
	progressKnown bool

	mu       sync.Mutex
	stats    ExportStats
	advanced chan struct{} // closed and replaced whenever the watermark moves
	failing  bool          // a failure has been logged; the next success logs recovery
	alarmed  bool

	mLagEvents, mLagSeconds, mBacklog, mBreaker prometheus.Gauge
	mEvents                                     prometheus.Counter
}

// NewExporter validates cfg and builds an exporter; call Run to start it.
func NewExporter(ctx context.Context, cfg ExporterConfig) (*Exporter, error) {
	if cfg.Source == nil {
		return nil, errors.New("central exporter: Source is required")
	}
	if cfg.Batch <= 0 {
		cfg.Batch = DefaultBatch
	}
	if cfg.Batch > MaxBatch {
		cfg.Batch = MaxBatch
	}
	if cfg.BatchMax <= 0 {
		cfg.BatchMax = DefaultBatchMax
	}
	cfg.BatchMax = min(max(cfg.BatchMax, cfg.Batch), MaxBatch)
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	setDefault(&cfg.PollInterval, defaultPoll)
	setDefault(&cfg.FollowerPoll, defaultFollowerPoll)
	setDefault(&cfg.BackoffMin, defaultBackoffMin)
	setDefault(&cfg.BackoffMax, defaultBackoffMax)
	setDefault(&cfg.ObserveEvery, defaultObserveEvery)
	setDefault(&cfg.WriteTimeout, defaultWriteTimeout)
	setDefault(&cfg.Breaker.OpenTimeout, 10*time.Second)
	if cfg.Breaker.ConsecutiveFailures == 0 {
		cfg.Breaker.ConsecutiveFailures = 3
	}
	e := &Exporter{
		cfg: cfg, pool: cfg.Pool, src: cfg.Source, log: cfg.Logger.Named("export"), clock: cfg.Clock,
		kick: make(chan struct{}, 1), advanced: make(chan struct{}),
	}
	if e.pool == nil {
		if cfg.URL == "" {
			return nil, errors.New("central exporter: Pool or URL is required")
		}
		pool, err := pgxpool.New(ctx, cfg.URL) // connects lazily: a down database is fine here
		if err != nil {
			return nil, fmt.Errorf("central exporter: pool: %w", err)
		}
		e.pool, e.ownPool = pool, true
	}
	e.breaker = gobreaker.NewCircuitBreaker[int64](gobreaker.Settings{
		Name:        "central-db",
		MaxRequests: 1,
		Timeout:     cfg.Breaker.OpenTimeout,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= cfg.Breaker.ConsecutiveFailures },
		IsExcluded:  func(err error) bool { return errors.Is(err, errShutdown) || refusedData(err) },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			// Logged once per change, never per retry.
			if to == gobreaker.StateOpen {
				e.log.Warn("central database breaker opened: export paused, outbox grows", zap.Stringer("from", from))
			} else {
				e.log.Info("central database breaker state", zap.Stringer("from", from), zap.Stringer("to", to))
			}
			e.mBreaker.Set(float64(to))
		},
	})
	e.stats.BreakerState = gobreaker.StateClosed.String()
	if err := e.initMetrics(cfg.Registry); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

func setDefault(d *time.Duration, v time.Duration) {
	if *d <= 0 {
		*d = v
	}
}

func (e *Exporter) initMetrics(reg *prometheus.Registry) error {
	e.mLagEvents = prometheus.NewGauge(prometheus.GaugeOpts{Name: "txswitch_export_lag_events",
		Help: "Committed outbox events not yet exported to PostgreSQL (served by the leader alone, which exports)."})
	e.mLagSeconds = prometheus.NewGauge(prometheus.GaugeOpts{Name: "txswitch_export_lag_seconds",
		Help: "Age of the oldest outbox event not yet exported to PostgreSQL (served by the leader alone, which exports)."})
	e.mBacklog = prometheus.NewGauge(prometheus.GaugeOpts{Name: "txswitch_export_backlog_events",
		Help: "Events held in the outbox waiting for export (served by the leader alone, which exports)."})
	e.mBreaker = prometheus.NewGauge(prometheus.GaugeOpts{Name: "txswitch_export_db_breaker_state",
		Help: "Breaker on the central database: 0 closed, 1 half-open, 2 open (served by the leader alone, which exports)."})
	e.mEvents = prometheus.NewCounter(prometheus.CounterOpts{Name: "txswitch_export_events_total",
		Help: "Events newly written to PostgreSQL by this exporter."})
	if reg == nil {
		return nil
	}
	leading := leaderGauges{e: e, gauges: []prometheus.Collector{e.mLagEvents, e.mLagSeconds, e.mBacklog, e.mBreaker}}
	for _, c := range []prometheus.Collector{leading, e.mEvents} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("central exporter: register metrics: %w", err)
		}
	}
	return nil
}

// leaderGauges serves the lag, backlog and breaker gauges only while this
// exporter leads. A follower does not export: its own figures (no lag, a
// breaker that never tried) would show a healthy export on that node's
// dashboard throughout an outage the leader reports.
type leaderGauges struct {
	e      *Exporter
	gauges []prometheus.Collector
}

func (g leaderGauges) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range g.gauges {
		c.Describe(ch)
	}
}

func (g leaderGauges) Collect(ch chan<- prometheus.Metric) {
	g.e.mu.Lock()
	leader := g.e.stats.Leader
	g.e.mu.Unlock()
	if !leader {
		return
	}
	for _, c := range g.gauges {
		c.Collect(ch)
	}
}

// Close releases the pool if the exporter created it. Call after Run returns.
func (e *Exporter) Close() {
	if e.ownPool {
		e.pool.Close()
	}
}

// Kick wakes an idle exporter (e.g. after new events were applied). It never
// blocks: one pending wake-up is enough, further ones are dropped.
func (e *Exporter) Kick() {
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

// Stats returns a snapshot of the export's state.
func (e *Exporter) Stats() ExportStats {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.stats
	s.BreakerState = e.breaker.State().String()
	return s
}

// WaitExported blocks until the watermark reaches seq or ctx ends.
func (e *Exporter) WaitExported(ctx context.Context, seq uint64) error {
	for {
		e.mu.Lock()
		wm, ch := e.stats.Watermark, e.advanced
		e.mu.Unlock()
		if wm >= seq {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for watermark %d (at %d): %w", seq, wm, ctx.Err())
		case <-ch:
		}
	}
}

// Run exports until ctx ends, then returns nil. It only writes while the
// Source says this node leads. It never blocks the Source beyond its own
// reads: all waiting (backoff, breaker, database) happens in this goroutine.
func (e *Exporter) Run(ctx context.Context) error {
	failures := 0
	for ctx.Err() == nil {
		wait, failed := e.step(ctx, failures)
		if failed {
			failures++
		} else {
			failures = 0
		}
		if wait > 0 {
			e.wait(ctx, wait)
		}
	}
	if e.next != nil {
		<-e.next // the prefetch helper does not outlive Run
		e.next = nil
	}
	return nil
}

// wait waits d, or less if ctx ends or Kick wakes the exporter. The lag
// figures are otherwise only set by an attempt, and a backoff or an open
// breaker spaces attempts up to BackoffMax apart: meanwhile the backlog
// grows and the oldest event ages, so they are read from the outbox every
// ObserveEvery until the wait is over.
func (e *Exporter) wait(ctx context.Context, d time.Duration) {
	end := e.clock.Now().Add(d)
	for {
		left := end.Sub(e.clock.Now())
		if left <= 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-e.kick:
			return
		case <-e.clock.After(min(left, e.cfg.ObserveEvery)):
		}
		if e.clock.Now().Before(end) {
			e.ObserveBacklog(nil)
		}
	}
}

var errShutdown = errors.New("exporter shutting down")

// prepared is a batch read from the source and decoded, ready to write.
type prepared struct {
	after     uint64    // the watermark it was read after
	head      uint64    // the outbox head just before the read
	readAt    time.Time // when head was read
	events    []txswitch.OutboxEvent
	rows      *batchRows
	readErr   error
	decodeErr error
}

// prepare reads and decodes the batch after a watermark. It runs on the
// exporter goroutine or, for the next batch, on one helper goroutine while
// the current batch is being written (so the Source must allow concurrent
// reads), which overlaps JSON decoding with the database round trips.
func (e *Exporter) prepare(after uint64) *prepared {
	p := &prepared{after: after, readAt: e.clock.Now()}
	// The head before the read, not after: a batch that reaches it drained
	// the outbox as it was, whatever was appended while it was read. The
	// limit comes from the same head, or a batch sized for an older one
	// would stop short of this one and count as cut by its limit.
	if p.head, p.readErr = e.src.OutboxHead(); p.readErr != nil {
		p.readErr = fmt.Errorf("read outbox head: %w", p.readErr)
		return p
	}
	p.events, p.readErr = e.src.ReadOutbox(after, e.batchLimit(after, p.head))
	if p.readErr != nil || len(p.events) == 0 {
		return p
	}
	if err := checkDense(after, p.events); err != nil {
		// A gap means the outbox lost events: exporting past it would hide
		// that forever. Stop here and make it loud.
		p.decodeErr = err
		return p
	}
	p.rows, p.decodeErr = decodeBatch(p.events)
	return p
}

// step does one read-write-advance round and says how long to wait before
// the next one and whether it failed.
func (e *Exporter) step(ctx context.Context, failures int) (time.Duration, bool) {
	// At most one batch is prefetched; one that no longer follows the
	// watermark (its predecessor failed) is dropped.
	var p *prepared
	if e.next != nil {
		p = <-e.next
		e.next = nil
	}
	if !e.src.IsLeader() {
		e.notLeader()
		return e.cfg.FollowerPoll, false
	}
	wm, err := e.src.ExportWatermark()
	if err != nil {
		return e.fail(fmt.Errorf("read export watermark: %w", err), failures)
	}
	head, err := e.src.OutboxHead()
	if err != nil {
		return e.fail(fmt.Errorf("read outbox head: %w", err), failures)
	}
	if p == nil || p.after != wm || p.readErr != nil || len(p.events) == 0 {
		p = e.prepare(wm)
	}
	if p.readErr != nil {
		// The lag figures go on following the outbox while it cannot be
		// read, or the backlog alarm could never fire on this stall.
		e.observe(wm, head, nil, false)
		return e.fail(fmt.Errorf("read outbox after %d: %w", wm, p.readErr), failures)
	}
	e.observe(wm, head, p.events, true)
	if len(p.events) == 0 {
		return e.cfg.PollInterval, false
	}
	if p.decodeErr != nil {
		// Not the database's fault: the breaker is not involved.
		return e.fail(p.decodeErr, failures)
	}
	first, last := p.events[0].Seq, p.events[len(p.events)-1].Seq
	// More waiting: the batch stopped at its limit (of events or bytes)
	// before the head it was read at. Not the head now: under steady
	// traffic events arrive while every batch is written, and going on at
	// once would write a batch per round trip, each with the orders and
	// payments whose events straddle the last one again (measured: each
	// order row written 2.6 times, a fifth of the payments/s lost to the
	// export). Waiting PollInterval after a drained batch writes them once.
	full := last < p.head
	if full {
		ch := make(chan *prepared, 1) // buffered: the helper never blocks
		go func() { ch <- e.prepare(last) }()
		e.next = ch
	}
	added, err := e.breaker.Execute(func() (int64, error) { return e.write(ctx, p.rows) })
	if err != nil {
		if ctx.Err() != nil {
			return 0, false
		}
		return e.fail(fmt.Errorf("write events %d..%d: %w", first, last, err), failures)
	}
	// COMMITTED in PostgreSQL. If this node dies before the watermark below
	// is committed by Raft, the next leader re-exports these events; see
	// the Exporter doc for why that is harmless.
	if err := e.src.AdvanceExportWatermark(ctx, last); err != nil {
		if ctx.Err() != nil {
			return 0, false
		}
		return e.fail(fmt.Errorf("advance export watermark to %d: %w", last, err), failures)
	}
	drainedAt := time.Time{} // zero: cut by its limit, the next batch follows at once
	if !full {
		// What arrived while the batch was written waits for the next
		// poll: the lag figures say so until then.
		drainedAt = p.readAt
		if h, err := e.src.OutboxHead(); err == nil {
			head = max(head, h)
		}
	}
	e.succeeded(wm, last, head, drainedAt, uint64(added))
	if full {
		return 0, false // more waiting: go on at once
	}
	return e.cfg.PollInterval, false
}

// batchLimit is how many events to read after wm: the backlog, within
// [Batch, BatchMax].
func (e *Exporter) batchLimit(wm, head uint64) int {
	backlog := uint64(0)
	if head > wm {
		backlog = head - wm
	}
	return int(min(max(backlog, uint64(e.cfg.Batch)), uint64(e.cfg.BatchMax)))
}

func checkDense(wm uint64, events []txswitch.OutboxEvent) error {
	want := wm + 1
	for _, ev := range events {
		if ev.Seq != want {
			return fmt.Errorf("outbox gap: expected seq %d after watermark %d, got %d", want, wm, ev.Seq)
		}
		want++
	}
	return nil
}

// notLeader clears the lag figures: only the leader's exporter reports
// lag; a deposed leader must not keep alarming with stale figures.
func (e *Exporter) notLeader() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stats.Leader {
		e.stats.Leader, e.stats.LastSeq, e.stats.LagSeconds = false, e.stats.Watermark, 0
		e.setLagLocked()
	}
}

// ObserveBacklog updates the lag figures, their gauges and the backlog
// alarm from the replicated outbox alone, without the database. A node
// calls it while it cannot export yet (the schema is not migrated because
// PostgreSQL is down, or a migration fails), so that the export lag is
// visible from the start of an outage and not only once Run runs (Run
// observes by itself while it waits between attempts). Not while Run runs:
// an observation racing with a batch could set the watermark it read
// before the batch moved it. cause, when not nil, is why nothing is
// exported (Stats().LastError).
func (e *Exporter) ObserveBacklog(cause error) {
	if !e.src.IsLeader() {
		e.notLeader()
		return
	}
	wm, err := e.src.ExportWatermark()
	if err != nil {
		return // the next call or Run reports it
	}
	head, err := e.src.OutboxHead()
	if err != nil {
		return
	}
	var oldest []txswitch.OutboxEvent // for the lag in seconds
	readable := true
	if head > wm {
		oldest, err = e.src.ReadOutbox(wm, 1)
		readable = err == nil // else the next call or Run reports it
	}
	e.observe(wm, head, oldest, readable)
	if cause != nil {
		e.mu.Lock()
		e.stats.LastError = cause.Error()
		e.mu.Unlock()
	}
}

// observe updates the lag figures from what the source reports: events
// start with the oldest not exported; when the outbox could not be read
// (readable false) the lag in seconds keeps its last value and the counts
// still follow the head, so the backlog alarm can fire on that stall too.
func (e *Exporter) observe(wm, head uint64, events []txswitch.OutboxEvent, readable bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.stats.Leader = true
	e.stats.Watermark, e.stats.LastSeq = wm, max(head, wm)
	if readable {
		e.stats.LagSeconds = 0
		if len(events) > 0 {
			e.stats.LagSeconds = max(0, e.clock.Now().Sub(events[0].At).Seconds())
		}
	}
	e.setLagLocked()
}

// refusedData reports PostgreSQL refusing the data of a batch (SQLSTATE
// class 22, data exception, or 23, integrity constraint violation) rather
// than failing: the database is up, so the breaker must not count it as
// down. Export stalls on that batch, visibly (LastError, the lag).
func refusedData(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (strings.HasPrefix(pgErr.Code, "22") || strings.HasPrefix(pgErr.Code, "23"))
}

func (e *Exporter) setLagLocked() {
	s := &e.stats
	s.LagEvents = s.LastSeq - s.Watermark
	s.Backlog = s.LagEvents
	e.mLagEvents.Set(float64(s.LagEvents))
	e.mBacklog.Set(float64(s.Backlog))
	e.mLagSeconds.Set(s.LagSeconds)
	if e.cfg.BacklogAlarm == 0 {
		return
	}
	if !e.alarmed && s.Backlog > e.cfg.BacklogAlarm {
		e.alarmed = true
		e.log.Warn("export backlog above alarm threshold", zap.Uint64("backlog", s.Backlog),
			zap.Uint64("alarm", e.cfg.BacklogAlarm), zap.Float64("lag_seconds", s.LagSeconds), zap.String("last_error", s.LastError))
	} else if e.alarmed && s.Backlog <= e.cfg.BacklogAlarm {
		e.alarmed = false
		e.log.Info("export backlog back under alarm threshold", zap.Uint64("backlog", s.Backlog))
	}
}

func (e *Exporter) fail(err error, failures int) (time.Duration, bool) {
	e.mu.Lock()
	e.stats.LastError = err.Error()
	first := !e.failing
	e.failing = true
	e.mu.Unlock()
	if first {
		// Once per outage; the breaker logs its own transitions.
		e.log.Warn("export failing, backing off", zap.Error(err))
	}
	return backoff(e.cfg.BackoffMin, e.cfg.BackoffMax, failures), true
}

// backoff is capped exponential with jitter in [d/2, d).
func backoff(lo, hi time.Duration, failures int) time.Duration {
	d := lo
	for i := 0; i < failures && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	return d/2 + rand.N(d/2+1)
}

// succeeded records a committed batch. After a batch that drained the
// outbox as it was at drainedAt, events past it (head > wm) arrived since,
// so the oldest of them is at most that old: the lag in seconds until the
// next batch reads them. A zero drainedAt (a batch cut by its limit, the
// next one read at once) leaves the lag in seconds to that read.
func (e *Exporter) succeeded(oldWM, wm, head uint64, drainedAt time.Time, added uint64) {
	e.mEvents.Add(float64(added))
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.failing {
		e.failing = false
		e.log.Info("export recovered", zap.Uint64("watermark", wm), zap.String("last_error", e.stats.LastError))
	}
	e.stats.LastError = ""
	e.stats.ExportedTotal += added
	e.stats.Watermark, e.stats.LastSeq = wm, max(head, wm)
	switch {
	case head <= wm:
		e.stats.LagSeconds = 0
	case !drainedAt.IsZero():
		e.stats.LagSeconds = max(0, e.clock.Now().Sub(drainedAt).Seconds())
	}
	if wm > oldWM {
		close(e.advanced)
		e.advanced = make(chan struct{})
	}
	e.setLagLocked()
}

// write stores one decoded batch in one transaction and returns how many
// of its events were new to the database.
func (e *Exporter) write(ctx context.Context, rows *batchRows) (int64, error) {
	wctx, cancel := context.WithTimeout(ctx, e.cfg.WriteTimeout)
	defer cancel()
	fresh := e.progressKnown && rows.first > e.progress
	added, progress, err := writeRows(wctx, e.pool, rows, fresh)
	if err != nil {
		if ctx.Err() != nil {
			return 0, fmt.Errorf("%w: %v", errShutdown, err)
		}
		return 0, err
	}
	e.progress, e.progressKnown = progress, true
	return added, nil
}

// Statements of the export bookkeeping (migration 0004).
const (
	// lockProgressSQL comes first in every batch transaction: the row lock
	// makes two exporters (a deposed leader still finishing a batch, the new
	// one starting) take turns, so the second one's later statements see
	// the first one's commit.
	lockProgressSQL = `SELECT last_seq FROM export_progress WHERE id = 1 FOR UPDATE`
	// recordRangeSQL records what this transaction newly applied (seqs
	// above the progress row, up to the batch's last) and raises the row.
	// The CTEs read the row as locked by lockProgressSQL; the INSERT's
	// RETURNING says how many events were new (no row: none).
	recordRangeSQL = `WITH old AS (SELECT last_seq FROM export_progress WHERE id = 1),
up AS (UPDATE export_progress SET last_seq = $2, updated_at = now() WHERE id = 1 AND last_seq < $2)
INSERT INTO exported_ranges (first_seq, last_seq)
SELECT GREATEST(old.last_seq + 1, $1), $2 FROM old WHERE old.last_seq < $2
RETURNING last_seq - first_seq + 1`
)

// uniqueViolation is PostgreSQL's SQLSTATE unique_violation.
const uniqueViolation = "23505"

// writeRows writes one batch in one transaction (see writeOnce). fresh says
// that, as far as this exporter knows, none of the batch's events is in the
// database yet (they all follow the progress row it last committed): then
// immutable rows are plainly INSERTed. Should one exist after all (another
// exporter got there first), that transaction fails on the unique key and
// the batch is written again with ON CONFLICT DO NOTHING: correctness never
// rests on fresh. It returns how many events were new and the progress row
// after the commit.
func writeRows(ctx context.Context, pool *pgxpool.Pool, rows *batchRows, fresh bool) (added int64, progress uint64, err error) {
	if fresh {
		added, progress, err = writeOnce(ctx, pool, rows, true)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != uniqueViolation {
			return added, progress, err
		}
	}
	return writeOnce(ctx, pool, rows, false)
}

// writeOnce sends the whole batch as one pipelined round trip inside one
// transaction: a batch is all in PostgreSQL or not at all. The commit must
// be durable when it returns (never synchronous_commit = off here): the
// watermark advanced after it lets the outbox forget these events.
func writeOnce(ctx context.Context, pool *pgxpool.Pool, rows *batchRows, fresh bool) (int64, uint64, error) {
	if rows.first == 0 || rows.last < rows.first {
		return 0, 0, fmt.Errorf("write: batch without events (seq %d..%d)", rows.first, rows.last)
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // no-op after Commit
	var b pgx.Batch
	b.Queue(lockProgressSQL)
	var names []string
	for _, rs := range rows.sets {
		if len(rs.rows) == 0 {
			continue
		}
		sql := rs.spec.sql
		if fresh && rs.spec.insertSQL != "" {
			sql = rs.spec.insertSQL
		}
		b.Queue(sql, rs.args()...)
		names = append(names, rs.spec.name)
	}
	b.Queue(recordRangeSQL, int64(rows.first), int64(rows.last))
	br := tx.SendBatch(ctx, &b)
	var progress int64
	if err := br.QueryRow().Scan(&progress); err != nil {
		br.Close()
		if errors.Is(err, pgx.ErrNoRows) {
			return 0, 0, errors.New("lock export progress: the export_progress row is missing (see migration 0004)")
		}
		return 0, 0, fmt.Errorf("lock export progress: %w", err)
	}
	for _, name := range names {
		if _, err := br.Exec(); err != nil {
			br.Close()
			return 0, 0, fmt.Errorf("upsert %s: %w", name, err)
		}
	}
	var added int64
	if err := br.QueryRow().Scan(&added); err != nil && !errors.Is(err, pgx.ErrNoRows) {
		br.Close()
		return 0, 0, fmt.Errorf("record exported range %d..%d after %d: %w", rows.first, rows.last, progress, err)
	}
	if err := br.Close(); err != nil {
		return 0, 0, fmt.Errorf("batch: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, 0, fmt.Errorf("commit: %w", err)
	}
	return added, max(uint64(progress), rows.last), nil
}
