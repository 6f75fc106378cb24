package central

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/txswitch/txswitch/storage/central/pgtest"
)

// TestConcurrentIndexOutwaitsAReportingQuery: CREATE INDEX CONCURRENTLY
// waits, after building, for every transaction whose snapshot is older
// than the index, a wait that blocks no writer. Under lock_timeout that
// wait failed after 2 s: the build was thrown away (an INVALID index),
// dropped and redone, five times, then `migrate up` failed and a node
// retried for ever, so on a database with reporting queries or a pg_dump
// longer than the lock timeout a migration with an index never finished
// and the node never exported. The build now waits such transactions out
// (bounded by statement_timeout).
func TestConcurrentIndexOutwaitsAReportingQuery(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t, pgtest.Start(t))
	all, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := MigrateWith(ctx, pool, nil, all[:1], MigrateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO orders (id, merchant_id, reference, status, amount_minor, currency,
		created_at, updated_at, last_event_seq) SELECT 'ord_' || g, 'mer_1', 'r', 'paid', 100, 'EUR', now(), now(), g
		FROM generate_series(1, 1000) g`); err != nil {
		t.Fatal(err)
	}

	// The reporting query: a repeatable-read transaction holding its
	// snapshot for many lock timeouts.
	report, err := pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	if err != nil {
		t.Fatal(err)
	}
	defer report.Rollback(ctx) //nolint:errcheck // committed below
	var n int
	if err := report.QueryRow(ctx, "SELECT count(*) FROM orders").Scan(&n); err != nil || n != 1000 {
		t.Fatalf("report: %d (%v)", n, err)
	}

	idx := NewMigration(2, "status_index", noTxMarker+`
DROP INDEX CONCURRENTLY IF EXISTS orders_status_test_idx;
CREATE INDEX CONCURRENTLY orders_status_test_idx ON orders (status);
`)
	core, logs := observer.New(zapcore.WarnLevel)
	const lockTimeout = 50 * time.Millisecond
	done := make(chan error, 1)
	go func() {
		_, err := MigrateWith(ctx, pool, zap.New(core), []Migration{all[0], idx}, MigrateOptions{LockTimeout: lockTimeout})
		done <- err
	}()

	// 20 lock timeouts: before, the build had failed and been retried by now.
	select {
	case err := <-done:
		t.Fatalf("the migration ended while the report still held its snapshot: %v (%d retries logged)", err, logs.Len())
	case <-time.After(20 * lockTimeout):
	}
	if logs.Len() != 0 {
		t.Fatalf("the index build was retried while it waited for the report: %v", logs.All()[0].ContextMap())
	}
	if err := report.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("migration: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the migration did not finish after the report ended")
	}
	if logs.Len() != 0 {
		t.Fatalf("the index build was retried: %v", logs.All()[0].ContextMap())
	}
	var valid bool
	if err := pool.QueryRow(ctx, `SELECT indisvalid FROM pg_index WHERE indexrelid = 'orders_status_test_idx'::regclass`).Scan(&valid); err != nil || !valid {
		t.Fatalf("index valid %v (%v)", valid, err)
	}
}

// TestConcurrentIndexStatement: which statements wait without lock_timeout.
func TestConcurrentIndexStatement(t *testing.T) {
	for stmt, want := range map[string]bool{
		"CREATE INDEX CONCURRENTLY x ON orders (status);":                  true,
		"create unique index concurrently if not exists x on t (a);":       true,
		"DROP INDEX CONCURRENTLY IF EXISTS x;":                             true,
		"REINDEX INDEX CONCURRENTLY x;":                                    true,
		"CREATE INDEX x ON orders (status);":                               false,
		"ALTER TABLE orders VALIDATE CONSTRAINT c;":                        false,
		"ALTER TABLE orders ADD CONSTRAINT c CHECK (a > 0) NOT VALID;":     false,
		"CREATE TABLE concurrently_named (id int);":                        false,
		"COMMENT ON INDEX x IS 'built CREATE INDEX CONCURRENTLY earlier';": false,
	} {
		if got := concurrentIndexStatement(stmt); got != want {
			t.Errorf("%q: %v, want %v", stmt, got, want)
		}
	}
}

// TestMigrationLockWaitSaysWho: a run that waits for the migration lock
// says so at once, naming the session that holds it (it printed nothing
// until the other run ended: `txswitch migrate up` looked hung for as
// long as a node's index build, or the server session of a migrate
// killed with -9, took).
func TestMigrationLockWaitSaysWho(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t, pgtest.Start(t))
	holder, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Release()
	var pid int
	if err := holder.QueryRow(ctx, "SELECT pg_backend_pid() FROM (SELECT pg_advisory_lock($1)) l", migrationLockKey).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.InfoLevel)
	wctx, cancel := context.WithTimeout(ctx, 700*time.Millisecond)
	defer cancel()
	_, err = Migrate(wctx, pool, zap.New(core))
	want := fmt.Sprintf("server pid %d", pid)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("a run behind a held lock: %v, want an error naming %q", err, want)
	}
	waits := logs.FilterMessageSnippet("waiting for the migration lock").All()
	if len(waits) != 1 || !strings.Contains(waits[0].ContextMap()["holder"].(string), want) {
		t.Fatalf("logged %v, want one wait naming %q", logs.All(), want)
	}
	if _, err := holder.Exec(ctx, "SELECT pg_advisory_unlock_all()"); err != nil {
		t.Fatal(err)
	}
	if _, err := Migrate(ctx, pool, zap.New(core)); err != nil {
		t.Fatalf("after the holder let go: %v", err)
	}
}
