package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/txswitch/txswitch/storage/central"
	txswitch "github.com/txswitch/txswitch/switch"
)

// exportSource adapts the node to what the central exporter reads: the
// replicated outbox and watermark, and whether this node leads (only the
// leader exports).
type exportSource struct{ n *Node }

var _ central.Source = exportSource{}

func (s exportSource) ReadOutbox(after uint64, limit int) ([]txswitch.OutboxEvent, error) {
	return s.n.svc.ReadOutbox(after, limit)
}
func (s exportSource) ExportWatermark() (uint64, error) { return s.n.svc.ExportWatermark() }
func (s exportSource) AdvanceExportWatermark(ctx context.Context, seq uint64) error {
	return s.n.svc.AdvanceExportWatermark(ctx, seq)
}
func (s exportSource) IsLeader() bool              { return s.n.raft.Leadership().IsLeader }
func (s exportSource) OutboxHead() (uint64, error) { return s.n.svc.OutboxHead() }

// ExportTuning shortens the exporter's timers. The shipped defaults (a
// breaker open 10 s, backoff up to 30 s, 30 s per batch) suit a database
// that is down for minutes; scenarios that take it down for seconds set
// shorter ones so that the catch-up is measured in seconds too.
type ExportTuning struct {
	BreakerOpen  time.Duration
	BackoffMax   time.Duration
	WriteTimeout time.Duration
	PollInterval time.Duration
	// Batch and BatchMax bound the events per transaction (see
	// central.ExporterConfig; zero: the defaults).
	Batch, BatchMax int
}

// centralDB runs the node's side of the central database: migrations (under
// PostgreSQL's advisory lock, so nodes migrate one at a time), then the
// exporter. Neither ever blocks a payment: a database that is down at start
// only delays the export, retried with a capped backoff.
type centralDB struct {
	pool     *pgxpool.Pool
	exporter *central.Exporter
	migrated atomic.Bool
	log      *zap.Logger
	// migrate is central.Migrate on pool (tests replace it).
	migrate func(ctx context.Context) ([]int, error)
	// observeEvery is how often the backlog is observed while a migration
	// run is under way (default observeWhileMigrating).
	observeEvery time.Duration
}

// observeWhileMigrating: a run can wait long (another node's index build
// holds the migration lock, or a statement runs for minutes), and the
// export lag must stay visible meanwhile.
const observeWhileMigrating = 5 * time.Second

var errMigrating = errors.New("the central database schema is being migrated (or waiting for another node's migration); exporting resumes after it")

// migrateObserved runs one migration run, observing the backlog while it
// lasts.
func (c *centralDB) migrateObserved(ctx context.Context) ([]int, error) {
	every := c.observeEvery
	if every <= 0 {
		every = observeWhileMigrating
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				c.exporter.ObserveBacklog(errMigrating)
			}
		}
	})
	defer wg.Wait()
	defer close(done)
	return c.migrate(ctx)
}

func startCentral(ctx context.Context, n *Node, url string) (*centralDB, error) {
	pool, err := pgxpool.New(ctx, url) // connects lazily: a down database is fine here
	if err != nil {
		return nil, fmt.Errorf("central database %s: %w", redactURL(url), err)
	}
	t := n.cfg.Export
	exp, err := central.NewExporter(ctx, central.ExporterConfig{
		Pool: pool, Source: exportSource{n}, Logger: n.log.Named("central"),
		Registry: n.registry, BacklogAlarm: n.cfg.ExportBacklogAlarm,
		Breaker:    central.BreakerSettings{OpenTimeout: t.BreakerOpen},
		BackoffMax: t.BackoffMax, WriteTimeout: t.WriteTimeout, PollInterval: t.PollInterval,
		Batch: t.Batch, BatchMax: t.BatchMax,
	})
	if err != nil {
		pool.Close()
		return nil, err
	}
	c := &centralDB{pool: pool, exporter: exp, log: n.log.Named("central")}
	c.migrate = func(ctx context.Context) ([]int, error) { return central.Migrate(ctx, pool, c.log) }
	return c, nil
}

// migrateLogEvery repeats a migration failure that did not change in the
// log, so that a node stuck before its first export keeps saying why.
const migrateLogEvery = 5 * time.Minute

// run migrates, then exports until ctx ends. A migration run has no
// deadline of its own: each of its statements is bounded by the server's
// statement_timeout (central.Migrate), and an index built concurrently on
// a big table may take many minutes; a deadline shorter than that made the
// node cancel the build, drop it on the next try and start it over for
// ever. Until the schema is current, the backlog is still observed.
func (c *centralDB) run(ctx context.Context) {
	wait := 200 * time.Millisecond
	var lastErr string
	var lastLog time.Time
	for ctx.Err() == nil {
		applied, err := c.migrateObserved(ctx)
		if err == nil {
			c.migrated.Store(true)
			c.log.Info("central database schema is current", zap.Ints("applied_now", applied))
			break
		}
		if ctx.Err() != nil {
			return
		}
		c.exporter.ObserveBacklog(err)
		if msg := err.Error(); msg != lastErr || time.Since(lastLog) >= migrateLogEvery {
			c.log.Warn("central database not reachable or not migrated yet; payments continue, the outbox grows", zap.Error(err))
			lastErr, lastLog = msg, time.Now()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
	if err := c.exporter.Run(ctx); err != nil {
		c.log.Error("exporter stopped", zap.Error(err))
	}
}

func (c *centralDB) close() {
	c.exporter.Close()
	c.pool.Close()
}

// describe is the one line `txswitch status` shows, as this node sees the
// leadership (ld, and the leader's API address if known). Only the leader
// exports: a follower's own exporter has no lag and a breaker that never
// tried, which read as a healthy export throughout an outage, so a
// follower names the exporting node instead (`txswitch status` asks it).
func (c *centralDB) describe(ld txswitch.Leadership, leaderAPI string) string {
	if !ld.IsLeader {
		var s string
		switch {
		case ld.LeaderID == 0:
			s = "exported by the leader; no leader known now, so nothing is exported"
		case leaderAPI == "":
			s = fmt.Sprintf("exported by the leader, node %d; this node does not export", ld.LeaderID)
		default:
			s = fmt.Sprintf("exported by the leader, node %d (%s); this node does not export", ld.LeaderID, leaderAPI)
		}
		if !c.migrated.Load() {
			// It would migrate before exporting, should it lead.
			s += " (schema not migrated by this node yet)"
		}
		return s
	}
	st := c.exporter.Stats()
	if !st.Leader {
		return "this node leads since a moment; its exporter has not read the outbox yet"
	}
	if !c.migrated.Load() {
		s := fmt.Sprintf("configured, schema not migrated yet (exporting paused), lag %d events / %.1fs", st.LagEvents, st.LagSeconds)
		if st.LastError != "" {
			s += ", last error: " + st.LastError
		}
		return s
	}
	s := fmt.Sprintf("breaker %s, lag %d events / %.1fs", st.BreakerState, st.LagEvents, st.LagSeconds)
	if st.LastError != "" {
		s += ", last error: " + st.LastError
	}
	return s
}

// redactURL hides the password of a database URL in messages.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<unparsable URL>"
	}
	return u.Redacted()
}
