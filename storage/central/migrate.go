package central

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"
)

//go:embed migrations/*.sql
var embedded embed.FS

// migrationLockKey is the pg_advisory_lock key every node takes before
// migrating, so that during a rolling upgrade nodes migrate one at a time.
// ("txswitch" in ASCII.)
const migrationLockKey int64 = 0x7478737769746368

// noTxMarker on a line of its own marks a migration that must run outside a
// transaction (CREATE INDEX CONCURRENTLY, ADD NOT VALID then VALIDATE).
const noTxMarker = "-- txswitch:no-transaction"

// Bounds of a migration run.
const (
	defaultLockTimeout      = 2 * time.Second
	defaultStatementTimeout = 15 * time.Minute // index builds on a big table
	lockRetries             = 5                // attempts when lock_timeout fires
	lockRetryBase           = 200 * time.Millisecond
	lockPoll                = 100 * time.Millisecond // advisory lock polling
)

var migrationName = regexp.MustCompile(`^(\d{4})_([a-z0-9_]+)\.sql$`)

// Migration is one versioned schema change.
type Migration struct {
	Version  int
	Name     string
	SQL      string
	Checksum string // hex SHA-256 of SQL
	NoTx     bool
}

// MigrateOptions bound a migration run; zero values take the defaults.
type MigrateOptions struct {
	// LockTimeout is SET lock_timeout for every migration: a migration that
	// would queue behind a long transaction gives up (and is retried)
	// instead of blocking the exporter's writes queued behind it.
	LockTimeout      time.Duration
	StatementTimeout time.Duration
}

// Migrations returns the embedded migrations in version order.
func Migrations() ([]Migration, error) {
	sub, err := fs.Sub(embedded, "migrations")
	if err != nil {
		return nil, err
	}
	return LoadMigrations(sub)
}

// LoadMigrations reads NNNN_name.sql files from the root of fsys.
func LoadMigrations(fsys fs.FS) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var ms []Migration
	for _, e := range entries {
		m := migrationName.FindStringSubmatch(e.Name())
		if e.IsDir() || m == nil {
			continue
		}
		b, err := fs.ReadFile(fsys, e.Name())
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", e.Name(), err)
		}
		v, _ := strconv.Atoi(m[1])
		ms = append(ms, NewMigration(v, m[2], string(b)))
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	for i := 1; i < len(ms); i++ {
		if ms[i].Version == ms[i-1].Version {
			return nil, fmt.Errorf("migration version %d defined twice", ms[i].Version)
		}
	}
	return ms, nil
}

// NewMigration builds a migration from its SQL text.
func NewMigration(version int, name, sql string) Migration {
	sum := sha256.Sum256([]byte(sql))
	noTx := false
	for _, line := range strings.Split(sql, "\n") {
		if strings.TrimSpace(line) == noTxMarker {
			noTx = true
		}
	}
	return Migration{Version: version, Name: name, SQL: sql, Checksum: hex.EncodeToString(sum[:]), NoTx: noTx}
}

// ErrChecksumMismatch means an applied migration's file was edited. Applied
// migrations are immutable: write a new one instead.
var ErrChecksumMismatch = errors.New("checksum of an applied migration changed")

// Migrate applies the embedded migrations that are not applied yet.
func Migrate(ctx context.Context, pool *pgxpool.Pool, logger *zap.Logger) (applied []int, err error) {
	ms, err := Migrations()
	if err != nil {
		return nil, err
	}
	return MigrateWith(ctx, pool, logger, ms, MigrateOptions{})
}

// MigrateWith applies ms in version order under a cluster-wide advisory
// lock, recording each in schema_migrations. It returns the versions it
// applied (none when the schema is current). Versions recorded in the
// database but unknown to ms are accepted: a node running the previous
// release meets migrations a newer node already applied (expand phase).
func MigrateWith(ctx context.Context, pool *pgxpool.Pool, logger *zap.Logger, ms []Migration, opts MigrateOptions) (applied []int, err error) {
	if logger == nil {
		logger = zap.NewNop()
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = defaultLockTimeout
	}
	if opts.StatementTimeout <= 0 {
		opts.StatementTimeout = defaultStatementTimeout
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate: acquire connection: %w", err)
	}
	defer conn.Release()

	if err := lockMigrations(ctx, conn, logger); err != nil {
		return nil, err
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, uerr := conn.Exec(uctx, "RESET lock_timeout; RESET statement_timeout; SELECT pg_advisory_unlock_all()"); uerr != nil {
			// Closing the session is what releases the lock then.
			_ = conn.Hijack().Close(uctx)
		}
	}()

	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    int PRIMARY KEY,
		name       text NOT NULL,
		checksum   text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return nil, fmt.Errorf("migrate: create schema_migrations: %w", err)
	}
	done := map[int]string{}
	rows, err := conn.Query(ctx, "SELECT version, checksum FROM schema_migrations")
	if err != nil {
		return nil, fmt.Errorf("migrate: read schema_migrations: %w", err)
	}
	for rows.Next() {
		var v int
		var sum string
		if err := rows.Scan(&v, &sum); err != nil {
			rows.Close()
			return nil, fmt.Errorf("migrate: scan schema_migrations: %w", err)
		}
		done[v] = sum
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("migrate: read schema_migrations: %w", err)
	}
	for _, m := range ms {
		if sum, ok := done[m.Version]; ok && sum != m.Checksum {
			return nil, fmt.Errorf("migration %04d_%s: %w (database %s, file %s)", m.Version, m.Name, ErrChecksumMismatch, sum[:12], m.Checksum[:12])
		}
	}

	for _, m := range ms {
		if _, ok := done[m.Version]; ok {
			continue
		}
		start := time.Now()
		if err := applyWithRetry(ctx, conn, m, opts, logger); err != nil {
			return applied, err
		}
		applied = append(applied, m.Version)
		logger.Info("applied migration", zap.Int("version", m.Version), zap.String("name", m.Name),
			zap.Bool("no_transaction", m.NoTx), zap.Duration("took", time.Since(start)))
	}
	return applied, nil
}

// lockMigrations takes the session-level advisory lock by polling
// pg_try_advisory_lock rather than blocking in pg_advisory_lock: a session
// blocked in pg_advisory_lock is an open transaction, and CREATE INDEX
// CONCURRENTLY in the lock holder's migration waits for every open
// transaction to end — a deadlock. Waiting is bounded by ctx.
//
// While it waits it says so, naming the session that holds the lock, at
// once and then every lockWaitLogEvery: a `txswitch migrate up` run
// while a node builds an index (or behind a migrate killed with -9, whose
// server session goes on with its statement) printed nothing at all until
// the other one ended, which can be many minutes.
func lockMigrations(ctx context.Context, conn *pgxpool.Conn, logger *zap.Logger) error {
	var lastLog time.Time
	for {
		var ok bool
		if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", migrationLockKey).Scan(&ok); err != nil {
			return fmt.Errorf("migrate: advisory lock: %w", err)
		}
		if ok {
			if !lastLog.IsZero() {
				logger.Info("took the migration lock")
			}
			return nil
		}
		if time.Since(lastLog) >= lockWaitLogEvery {
			lastLog = time.Now()
			logger.Info("waiting for the migration lock: another node or `txswitch migrate` is migrating",
				zap.String("holder", migrationLockHolder(ctx, conn)))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("migrate: waiting for another node's migration (%s): %w", migrationLockHolder(context.Background(), conn), ctx.Err())
		case <-time.After(lockPoll):
		}
	}
}

// lockWaitLogEvery repeats the wait for the migration lock in the log.
const lockWaitLogEvery = 30 * time.Second

// migrationLockHolder describes the session holding the migration lock:
// its server pid, client, application, state and statement.
func migrationLockHolder(ctx context.Context, conn *pgxpool.Conn) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var pid int
	var client, app, state, query string
	var since *time.Time
	err := conn.QueryRow(ctx, `SELECT a.pid, coalesce(host(a.client_addr), 'local'), a.application_name, coalesce(a.state, ''),
		left(coalesce(a.query, ''), 200), a.query_start
		FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
		  AND ((l.classid::bigint << 32) | l.objid::bigint) = $1
		LIMIT 1`, migrationLockKey).Scan(&pid, &client, &app, &state, &query, &since)
	if err != nil {
		return "holder not known: " + err.Error()
	}
	s := fmt.Sprintf("server pid %d from %s", pid, client)
	if app != "" {
		s += fmt.Sprintf(" (%s)", app)
	}
	s += ", " + state
	if query != "" {
		s += ": " + strings.Join(strings.Fields(query), " ")
	}
	if since != nil {
		s += fmt.Sprintf(" (for %s)", time.Since(*since).Round(time.Second))
	}
	return s
}

// applyWithRetry retries a migration whose lock wait hit lock_timeout: the
// migration backs off so the application's writes queued behind its lock
// request can proceed, then tries again. Migrations must be re-runnable
// from the start after such a failure (transactional ones roll back;
// no-transaction ones are written idempotently: IF EXISTS / IF NOT EXISTS).
func applyWithRetry(ctx context.Context, conn *pgxpool.Conn, m Migration, opts MigrateOptions, logger *zap.Logger) error {
	var err error
	for attempt := 0; attempt < lockRetries; attempt++ {
		if attempt > 0 {
			logger.Warn("migration hit lock_timeout, retrying", zap.Int("version", m.Version), zap.Int("attempt", attempt), zap.Error(err))
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(lockRetryBase << attempt):
			}
		}
		err = applyOne(ctx, conn, m, opts)
		var pgErr *pgconn.PgError
		if err == nil || !errors.As(err, &pgErr) || pgErr.Code != "55P03" { // lock_not_available
			return err
		}
	}
	return err
}

func applyOne(ctx context.Context, conn *pgxpool.Conn, m Migration, opts MigrateOptions) error {
	timeouts := fmt.Sprintf("SET lock_timeout = %d; SET statement_timeout = %d",
		opts.LockTimeout.Milliseconds(), opts.StatementTimeout.Milliseconds())
	record := "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)"
	if m.NoTx {
		if _, err := conn.Exec(ctx, timeouts); err != nil {
			return fmt.Errorf("migration %04d_%s: set timeouts: %w", m.Version, m.Name, err)
		}
		for i, stmt := range splitStatements(m.SQL) {
			if err := execStatement(ctx, conn, stmt, opts); err != nil {
				return fmt.Errorf("migration %04d_%s statement %d: %w", m.Version, m.Name, i+1, err)
			}
		}
		if _, err := conn.Exec(ctx, record, m.Version, m.Name, m.Checksum); err != nil {
			return fmt.Errorf("migration %04d_%s: record: %w", m.Version, m.Name, err)
		}
		return nil
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("migration %04d_%s: begin: %w", m.Version, m.Name, err)
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // no-op after Commit
	if _, err := tx.Exec(ctx, strings.ReplaceAll(timeouts, "SET ", "SET LOCAL ")); err != nil {
		return fmt.Errorf("migration %04d_%s: set timeouts: %w", m.Version, m.Name, err)
	}
	if _, err := tx.Exec(ctx, m.SQL); err != nil {
		return fmt.Errorf("migration %04d_%s: %w", m.Version, m.Name, err)
	}
	if _, err := tx.Exec(ctx, record, m.Version, m.Name, m.Checksum); err != nil {
		return fmt.Errorf("migration %04d_%s: record: %w", m.Version, m.Name, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("migration %04d_%s: commit: %w", m.Version, m.Name, err)
	}
	return nil
}

// concurrentIndex matches the statements that build or drop an index
// CONCURRENTLY.
var concurrentIndex = regexp.MustCompile(`(?is)^\s*(create\s+(unique\s+)?index\s+concurrently|drop\s+index\s+concurrently|reindex\s+[^;]*\bconcurrently)\b`)

// concurrentIndexStatement reports whether stmt builds, rebuilds or drops
// an index CONCURRENTLY.
func concurrentIndexStatement(stmt string) bool { return concurrentIndex.MatchString(stmt) }

// execStatement runs one statement of a no-transaction migration. An
// index built or dropped CONCURRENTLY runs without lock_timeout: it holds
// SHARE UPDATE EXCLUSIVE, which no insert, update or delete waits for, and
// then waits for every transaction older than its snapshot (a reporting
// query, a pg_dump) to end. Under lock_timeout that wait failed after the
// whole build, the retry dropped the INVALID index and built it again, and
// on a database that always has a transaction longer than the timeout the
// migration never finished (nor did the export behind it). It stays
// bounded by statement_timeout.
func execStatement(ctx context.Context, conn *pgxpool.Conn, stmt string, opts MigrateOptions) error {
	if !concurrentIndexStatement(stmt) {
		_, err := conn.Exec(ctx, stmt)
		return err
	}
	if _, err := conn.Exec(ctx, "SET lock_timeout = 0"); err != nil {
		return fmt.Errorf("lift lock_timeout: %w", err)
	}
	_, err := conn.Exec(ctx, stmt)
	if _, rerr := conn.Exec(ctx, fmt.Sprintf("SET lock_timeout = %d", opts.LockTimeout.Milliseconds())); rerr != nil && err == nil {
		err = fmt.Errorf("restore lock_timeout: %w", rerr)
	}
	return err
}

// splitStatements splits a no-transaction migration into statements, each
// sent alone (a multi-statement query string is one implicit transaction).
// The rule is deliberately simple: a statement ends with ';' at the end of a
// line; comment lines are dropped. No dollar-quoted bodies in such files.
func splitStatements(sql string) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(sql, "\n") {
		t := strings.TrimSpace(line)
		if t == "" || strings.HasPrefix(t, "--") {
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
		if strings.HasSuffix(t, ";") {
			out = append(out, strings.TrimSpace(cur.String()))
			cur.Reset()
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		out = append(out, s)
	}
	return out
}

// MigrationState is one migration as the database and this binary see it.
type MigrationState struct {
	Version int    `json:"version"`
	Name    string `json:"name"`
	// Applied is when the database recorded it (nil: pending).
	Applied *time.Time `json:"applied_at,omitempty"`
	// Known: this binary embeds it; a version applied by a newer release
	// is not known here (expand phase of a rolling upgrade).
	Known bool `json:"known"`
	// ChecksumOK is false when the applied file differs from this
	// binary's (someone edited an applied migration).
	ChecksumOK bool `json:"checksum_ok"`
}

// MigrationStatus lists the embedded migrations and the ones recorded in
// the database, in version order, without changing anything. A database
// never migrated has every migration pending.
func MigrationStatus(ctx context.Context, pool *pgxpool.Pool) ([]MigrationState, error) {
	ms, err := Migrations()
	if err != nil {
		return nil, err
	}
	type rec struct {
		name, sum string
		at        time.Time
	}
	done := map[int]rec{}
	var exists bool
	if err := pool.QueryRow(ctx, "SELECT to_regclass('schema_migrations') IS NOT NULL").Scan(&exists); err != nil {
		return nil, fmt.Errorf("migration status: %w", err)
	}
	if exists {
		rows, err := pool.Query(ctx, "SELECT version, name, checksum, applied_at FROM schema_migrations")
		if err != nil {
			return nil, fmt.Errorf("migration status: read schema_migrations: %w", err)
		}
		for rows.Next() {
			var v int
			var r rec
			if err := rows.Scan(&v, &r.name, &r.sum, &r.at); err != nil {
				rows.Close()
				return nil, fmt.Errorf("migration status: scan: %w", err)
			}
			done[v] = r
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("migration status: read schema_migrations: %w", err)
		}
	}
	var out []MigrationState
	for _, m := range ms {
		st := MigrationState{Version: m.Version, Name: m.Name, Known: true, ChecksumOK: true}
		if r, ok := done[m.Version]; ok {
			at := r.at
			st.Applied, st.ChecksumOK = &at, r.sum == m.Checksum
			delete(done, m.Version)
		}
		out = append(out, st)
	}
	for v, r := range done {
		at := r.at
		out = append(out, MigrationState{Version: v, Name: r.name, Applied: &at, ChecksumOK: true})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}
