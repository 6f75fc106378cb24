package scenarios

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/txswitch/txswitch/chaos"
	"github.com/txswitch/txswitch/cmd/cluster"
	"github.com/txswitch/txswitch/storage/central/pgserver"
)

// The central database of the in-process tier (topology.central_db).
//
// One private PostgreSQL serves every scenario of the process (started on
// first use from a template cluster that was initdb'd once), with one
// database per scenario, dropped afterwards. A scenario whose faults kill
// or stop the server gets a server of its own, copied from the same
// template (a copy and a start take a fraction of initdb's seconds). With
// TXSWITCH_TEST_PG_URL set, the shared databases live in that server
// instead; own servers still need the binaries. Without binaries and
// without the URL, a central_db scenario fails with the reason: it is
// never skipped silently.
//
// The nodes reach their database through a toxiproxy proxy of the
// scenario's own (chaos.Database), which the connection faults act on.

// EnvPGURL names an external server's URL (as pgtest's).
const EnvPGURL = "TXSWITCH_TEST_PG_URL"

// exportTuning: short exporter timers, so that a database back after a
// few seconds is caught up with in a few seconds too (the shipped defaults
// back off up to 30 s).
var exportTuning = cluster.ExportTuning{BreakerOpen: time.Second, BackoffMax: time.Second,
	WriteTimeout: 2 * time.Second, PollInterval: 100 * time.Millisecond}

// pgPool is the process's PostgreSQL servers.
var pgPool struct {
	mu       sync.Mutex
	root     string // 0711 dir holding the template and every server's dir
	template string // an initdb'd cluster, shut down cleanly
	shared   *pgserver.Server
	baseURL  string // the shared server's (or TXSWITCH_TEST_PG_URL's) admin URL
	own      map[*pgserver.Server]bool
	copies   int
}

// pgTemplateLocked initdb's the template once per process.
func pgTemplateLocked() (string, error) {
	if pgPool.template != "" {
		return pgPool.template, nil
	}
	if _, err := pgserver.BinDir(); err != nil {
		return "", fmt.Errorf("central_db scenarios need PostgreSQL server binaries or %s: %w", EnvPGURL, err)
	}
	root, err := os.MkdirTemp("", "txswitch-scenario-pg-")
	if err != nil {
		return "", fmt.Errorf("central_db: %w", err)
	}
	// The postgres user (servers run as it when we are root) must reach
	// the servers' dirs through this one.
	if err := os.Chmod(root, 0o711); err != nil {
		return "", fmt.Errorf("central_db: %w", err)
	}
	tmpl := filepath.Join(root, "template")
	s, err := pgserver.Start(pgserver.Options{Dir: tmpl})
	if err != nil {
		os.RemoveAll(root)
		return "", fmt.Errorf("central_db: initdb the template: %w", err)
	}
	s.Stop()
	pgPool.root, pgPool.template = root, tmpl
	return tmpl, nil
}

// pgStartCopyLocked starts a server on a copy of the template.
func pgStartCopyLocked() (*pgserver.Server, error) {
	tmpl, err := pgTemplateLocked()
	if err != nil {
		return nil, err
	}
	pgPool.copies++
	dir := filepath.Join(pgPool.root, fmt.Sprintf("pg%d", pgPool.copies))
	// cp -a keeps the postgres user's ownership and the 0700 data dir.
	if out, err := exec.Command("cp", "-a", tmpl, dir).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("central_db: copy the template: %w: %s", err, out)
	}
	s, err := pgserver.Start(pgserver.Options{Dir: dir})
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("central_db: start a server: %w", err)
	}
	return s, nil
}

// sharedBaseURL is the admin URL scenarios create their databases in.
func sharedBaseURL() (string, error) {
	pgPool.mu.Lock()
	defer pgPool.mu.Unlock()
	if pgPool.baseURL != "" {
		return pgPool.baseURL, nil
	}
	if u := os.Getenv(EnvPGURL); u != "" {
		pgPool.baseURL = u
		return u, nil
	}
	s, err := pgStartCopyLocked()
	if err != nil {
		return "", err
	}
	pgPool.shared, pgPool.baseURL = s, s.URL("postgres")
	return pgPool.baseURL, nil
}

// ownServer starts a server for one scenario (released by releaseServer).
func ownServer() (*pgserver.Server, error) {
	pgPool.mu.Lock()
	defer pgPool.mu.Unlock()
	s, err := pgStartCopyLocked()
	if err != nil {
		return nil, err
	}
	if pgPool.own == nil {
		pgPool.own = map[*pgserver.Server]bool{}
	}
	pgPool.own[s] = true
	return s, nil
}

func releaseServer(s *pgserver.Server) {
	s.Kill()
	os.RemoveAll(s.Dir())
	pgPool.mu.Lock()
	delete(pgPool.own, s)
	pgPool.mu.Unlock()
}

// ShutdownCentral stops every PostgreSQL server the scenarios started and
// removes their files. RunAll calls it when done; a test binary running
// scenarios one by one calls it at exit.
func ShutdownCentral() {
	pgPool.mu.Lock()
	defer pgPool.mu.Unlock()
	if pgPool.shared != nil {
		pgPool.shared.Kill()
	}
	for s := range pgPool.own {
		s.Kill()
	}
	if pgPool.root != "" {
		os.RemoveAll(pgPool.root)
	}
	pgPool.shared, pgPool.own, pgPool.root, pgPool.template, pgPool.copies = nil, nil, "", "", 0
	if os.Getenv(EnvPGURL) == "" {
		pgPool.baseURL = ""
	}
}

// createDatabase creates a fresh database on the server of base and
// returns its URL and a drop function.
func createDatabase(ctx context.Context, base string) (string, func(), error) {
	cfg, err := pgx.ParseConfig(base)
	if err != nil {
		return "", nil, fmt.Errorf("central_db: parse %s: %w", EnvPGURL, err)
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(cctx, cfg)
	if err != nil {
		return "", nil, fmt.Errorf("central_db: connect to create a database: %w", err)
	}
	defer conn.Close(context.Background())
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "txswitch_sc_" + hex.EncodeToString(b[:])
	if _, err := conn.Exec(cctx, "CREATE DATABASE "+name); err != nil {
		return "", nil, fmt.Errorf("central_db: create database: %w", err)
	}
	drop := func() {
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.ConnectConfig(dctx, cfg)
		if err != nil {
			return // the server went away with its scenario
		}
		defer c.Close(context.Background())
		_, _ = c.Exec(dctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	}
	u, err := url.Parse(base)
	if err != nil {
		drop()
		return "", nil, fmt.Errorf("central_db: %s is not a URL: %w", EnvPGURL, err)
	}
	u.Path = "/" + name
	return u.String(), drop, nil
}

// centralRun is one scenario's database.
type centralRun struct {
	db   *chaos.Database
	own  *pgserver.Server
	drop func()
}

// needsOwnServer: faults that take the server process down.
var needsOwnServer = map[string]bool{"db_kill": true, "db_stop": true}

func startCentral(ctx context.Context, sc *Scenario) (*centralRun, error) {
	r := &centralRun{}
	own := false
	for _, f := range sc.Faults {
		own = own || needsOwnServer[f.Kind]
	}
	var base string
	var err error
	if own {
		if r.own, err = ownServer(); err != nil {
			return nil, err
		}
		base = r.own.URL("postgres")
	} else if base, err = sharedBaseURL(); err != nil {
		return nil, err
	}
	dbURL, drop, err := createDatabase(ctx, base)
	if err != nil {
		r.close()
		return nil, err
	}
	r.drop = drop
	if r.db, err = chaos.NewDatabase(r.own, dbURL); err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}

func (r *centralRun) close() {
	if r.db != nil {
		r.db.Close()
	}
	if r.own != nil {
		releaseServer(r.own) // its databases go with it
		return
	}
	if r.drop != nil {
		r.drop()
	}
}

// waitMigrated waits until every node has migrated the schema, so that
// the scenario's clock starts with the export running (a node that cannot
// reach the database at start backs off its migration for up to 30 s).
func (r *centralRun) waitMigrated(ctx context.Context, e *env) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		pending := ""
		for i, st := range e.t.statuses() {
			switch {
			case st == nil:
				pending = fmt.Sprintf("node #%d: no status yet", i+1)
			case strings.Contains(st.CentralDB, "not migrated"):
				pending = fmt.Sprintf("node %d: %s", st.Raft.ID, st.CentralDB)
			}
			if pending != "" {
				break
			}
		}
		if pending == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("central_db: schema not migrated on every node after 60s (%s)", pending)
		}
		if !sleepUntil(ctx, time.Now().Add(50*time.Millisecond)) {
			return ctx.Err()
		}
	}
}

// CentralEvidence is what PostgreSQL holds at the end, read directly.
type CentralEvidence struct {
	// Head is the leader's outbox head when the tables were read.
	Head uint64 `json:"head"`
	// DrainedAt is when PostgreSQL first held Head events (zero: not
	// within the drain bound).
	DrainedAt time.Time `json:"drained_at"`
	Events    pgEvents  `json:"events"`
	// Gaps are the first missing event seqs in 1..max(seq).
	Gaps     []int64              `json:"gaps,omitempty"`
	Orders   map[string]pgOrder   `json:"orders"`
	Payments map[string]pgPayment `json:"payments"`
	Refunds  map[string]pgRefund  `json:"refunds"`
	// Err is why the tables could not be read (the check fails on it).
	Err string `json:"err,omitempty"`
}

type pgEvents struct {
	Count, DistinctIDs, DistinctSeqs, Min, Max int64
}

type pgOrder struct {
	Status                     string
	Amount, Captured, Refunded int64
}

type pgPayment struct {
	Order, Status              string
	Amount, Captured, Refunded int64
}

type pgRefund struct {
	Payment, Status string
	Amount          int64
}

// drainLimit bounds the wait, after the settle, for PostgreSQL to hold
// every event; export_drained judges the time it took.
const drainLimit = 45 * time.Second

// collect waits for the export to drain and reads PostgreSQL's tables.
func (r *centralRun) collect(ctx context.Context, e *env) *CentralEvidence {
	out := &CentralEvidence{}
	conn, err := pgx.Connect(ctx, r.db.URL)
	if err != nil {
		out.Err = "connect: " + err.Error()
		return out
	}
	defer conn.Close(context.Background())
	// Done when PostgreSQL holds as many events as the outbox, or when the
	// exporter has claimed everything (its watermark at the head) for a
	// second without PostgreSQL holding them: then waiting longer shows
	// nothing new, and central_exactly_once says what is missing.
	deadline := time.Now().Add(drainLimit)
	var claimedSince time.Time
	for {
		head, ok := leaderHead(e)
		var n int64
		qerr := conn.QueryRow(ctx, `SELECT last_seq FROM export_progress`).Scan(&n)
		if ok && qerr == nil && head > 0 && uint64(n) >= head {
			out.DrainedAt = time.Now()
			waitWatermark(ctx, e, head)
			break
		}
		switch wm, wok := leaderWatermark(e); {
		case !ok || !wok || wm < head:
			claimedSince = time.Time{}
		case claimedSince.IsZero():
			claimedSince = time.Now()
		case time.Since(claimedSince) > time.Second:
			return r.read(ctx, conn, e, out)
		}
		if time.Now().After(deadline) || !sleepUntil(ctx, time.Now().Add(100*time.Millisecond)) {
			break
		}
	}
	return r.read(ctx, conn, e, out)
}

// waitWatermark waits (bounded) until the leader's Raft watermark reaches
// head, plus two sampling periods: PostgreSQL holds a batch at its COMMIT,
// but the watermark that export_drained reads from the samples moves only
// after the exporter's proposal applies, and the sampler stops when the
// tables have been read.
func waitWatermark(ctx context.Context, e *env, head uint64) {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if wm, ok := leaderWatermark(e); ok && wm >= head {
			break
		}
		if !sleepUntil(ctx, time.Now().Add(20*time.Millisecond)) {
			return
		}
	}
	sleepUntil(ctx, time.Now().Add(2*extSampleEvery))
}

func (r *centralRun) read(ctx context.Context, conn *pgx.Conn, e *env, out *CentralEvidence) *CentralEvidence {
	// Read until the head did not move while reading (bounded).
	for attempt := 0; attempt < 3; attempt++ {
		before, _ := leaderHead(e)
		if err := readTables(ctx, conn, out); err != nil {
			out.Err = err.Error()
			return out
		}
		after, _ := leaderHead(e)
		out.Head = after
		if before == after {
			break
		}
	}
	return out
}

func leaderWatermark(e *env) (uint64, bool) {
	w, _, ok := e.t.outboxMarks()
	return w, ok
}

func leaderHead(e *env) (uint64, bool) {
	_, h, ok := e.t.outboxMarks()
	return h, ok
}

func readTables(ctx context.Context, conn *pgx.Conn, out *CentralEvidence) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ev := &out.Events
	if err := conn.QueryRow(ctx, `SELECT count(*), count(DISTINCT event_id), count(DISTINCT seq), coalesce(min(seq),0), coalesce(max(seq),0) FROM exported_event_log`).
		Scan(&ev.Count, &ev.DistinctIDs, &ev.DistinctSeqs, &ev.Min, &ev.Max); err != nil {
		return fmt.Errorf("read exported_event_log: %w", err)
	}
	out.Gaps = nil
	rows, err := conn.Query(ctx, `SELECT s FROM generate_series(1, $1::bigint) s WHERE NOT EXISTS (SELECT 1 FROM exported_event_log WHERE seq = s) ORDER BY s LIMIT 20`, ev.Max)
	if err != nil {
		return fmt.Errorf("read gaps: %w", err)
	}
	gaps, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return fmt.Errorf("read gaps: %w", err)
	}
	out.Gaps = gaps
	out.Orders, out.Payments, out.Refunds = map[string]pgOrder{}, map[string]pgPayment{}, map[string]pgRefund{}
	if err := scanRows(ctx, conn, `SELECT id, status, amount_minor, captured_minor, refunded_minor FROM orders`, func(r pgx.Rows) error {
		var id string
		var o pgOrder
		err := r.Scan(&id, &o.Status, &o.Amount, &o.Captured, &o.Refunded)
		out.Orders[id] = o
		return err
	}); err != nil {
		return err
	}
	if err := scanRows(ctx, conn, `SELECT id, order_id, status, amount_minor, captured_minor, refunded_minor FROM payments`, func(r pgx.Rows) error {
		var id string
		var p pgPayment
		err := r.Scan(&id, &p.Order, &p.Status, &p.Amount, &p.Captured, &p.Refunded)
		out.Payments[id] = p
		return err
	}); err != nil {
		return err
	}
	return scanRows(ctx, conn, `SELECT id, payment_id, status, amount_minor FROM refunds`, func(r pgx.Rows) error {
		var id string
		var f pgRefund
		err := r.Scan(&id, &f.Payment, &f.Status, &f.Amount)
		out.Refunds[id] = f
		return err
	})
}

func scanRows(ctx context.Context, conn *pgx.Conn, q string, scan func(pgx.Rows) error) error {
	rows, err := conn.Query(ctx, q)
	if err != nil {
		return fmt.Errorf("%s: %w", q, err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("%s: %w", q, err)
	}
	return nil
}

var errNoCentral = errors.New("the scenario has no central database (topology central_db: true)")
