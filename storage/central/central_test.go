package central

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/sony/gobreaker/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/txswitch/txswitch/storage/central/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func newPool(t testing.TB, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatalf("pool: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// migratedDB is a fresh database with every embedded migration applied.
func migratedDB(t testing.TB) *pgxpool.Pool {
	t.Helper()
	pool := newPool(t, pgtest.Start(t))
	if _, err := Migrate(context.Background(), pool, zap.NewNop()); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return pool
}

// testConfig has short backoffs so outage tests stay quick.
func testConfig(pool *pgxpool.Pool, src Source, log *zap.Logger) ExporterConfig {
	return ExporterConfig{Pool: pool, Source: src, Batch: 500, Logger: log, PollInterval: 20 * time.Millisecond,
		FollowerPoll: 20 * time.Millisecond, BackoffMin: 10 * time.Millisecond, BackoffMax: 150 * time.Millisecond,
		WriteTimeout: 5 * time.Second, Breaker: BreakerSettings{ConsecutiveFailures: 3, OpenTimeout: 300 * time.Millisecond}}
}

// runExporter starts e.Run and stops it at cleanup (or when stop is called).
func runExporter(t testing.TB, e *Exporter) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := e.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

func waitExported(t testing.TB, e *Exporter, seq uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := e.WaitExported(ctx, seq); err != nil {
		t.Fatalf("%v; stats %+v", err, e.Stats())
	}
}

// eventually polls cond until it holds; it bounds a wait, asserts no timing.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// verifyDatabase checks invariant 5 and the content against the source's
// truth: every event once, no gaps, rows equal to the latest resources,
// sums per merchant.
func verifyDatabase(t testing.TB, pool *pgxpool.Pool, src *fakeSource) {
	t.Helper()
	head := src.Head()
	var n, distinct, lo, hi, progress int64
	if err := pool.QueryRow(context.Background(), `SELECT count(*), count(DISTINCT seq), coalesce(min(seq),0), coalesce(max(seq),0),
		(SELECT last_seq FROM export_progress) FROM exported_event_log`).
		Scan(&n, &distinct, &lo, &hi, &progress); err != nil {
		t.Fatal(err)
	}
	if n != int64(head) || distinct != n || lo != 1 || hi != int64(head) || progress != int64(head) {
		t.Fatalf("exported_event_log: %d rows (%d distinct), seq %d..%d, progress %d; want exactly 1..%d", n, distinct, lo, hi, progress, head)
	}
	verifyRows(t, pool, src)
}

// verifyRows checks the tables' content against the source's truth: rows
// equal to the latest resources, sums per merchant.
func verifyRows(t testing.TB, pool *pgxpool.Pool, src *fakeSource) {
	t.Helper()
	ctx := context.Background()
	orders, payments, orderSeq := src.truth()

	rows, err := pool.Query(ctx, `SELECT id, status, captured_minor, refunded_minor, last_event_seq FROM orders`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close() // a Fatal mid-iteration must not leak the connection
	got := 0
	for rows.Next() {
		var id, status string
		var captured, refunded, seq int64
		if err := rows.Scan(&id, &status, &captured, &refunded, &seq); err != nil {
			t.Fatal(err)
		}
		got++
		want, ok := orders[id]
		if !ok {
			t.Fatalf("unexpected order %s", id)
		}
		if status != want.Status || captured != want.Captured.Value || refunded != want.Refunded.Value || uint64(seq) != orderSeq[id] {
			t.Fatalf("order %s: got %s/%d/%d seq %d, want %s/%d/%d seq %d", id, status, captured, refunded, seq,
				want.Status, want.Captured.Value, want.Refunded.Value, orderSeq[id])
		}
	}
	if rows.Err() != nil || got != len(orders) {
		t.Fatalf("orders: %d rows, want %d (%v)", got, len(orders), rows.Err())
	}

	type sums struct{ captured, refunded, count int64 }
	want := map[string]sums{}
	for _, p := range payments {
		s := want[p.MerchantID]
		s.captured += p.Captured.Value
		s.refunded += p.Refunded.Value
		s.count++
		want[p.MerchantID] = s
	}
	rows, err = pool.Query(ctx, `SELECT merchant_id, sum(captured_minor), sum(refunded_minor), count(*) FROM payments GROUP BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	have := map[string]sums{}
	for rows.Next() {
		var m string
		var s sums
		if err := rows.Scan(&m, &s.captured, &s.refunded, &s.count); err != nil {
			t.Fatal(err)
		}
		have[m] = s
	}
	if len(have) != len(want) {
		t.Fatalf("payment sums per merchant: got %v, want %v", have, want)
	}
	for m, w := range want {
		if have[m] != w {
			t.Fatalf("merchant %s: got %+v, want %+v", m, have[m], w)
		}
	}

	var timeline, attempts, refunds, captures int
	if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM timeline_events), (SELECT count(*) FROM provider_attempts),
		(SELECT count(*) FROM refunds), (SELECT count(*) FROM captures)`).Scan(&timeline, &attempts, &refunds, &captures); err != nil {
		t.Fatal(err)
	}
	src.mu.Lock()
	wantTL, wantOrders := src.nTimeline, src.nOrders
	src.mu.Unlock()
	wantRefunds, wantCaptures := 0, 0
	for _, p := range payments {
		wantRefunds += len(p.Refunds)
		wantCaptures += len(p.Captures)
	}
	if timeline != wantTL || attempts != wantOrders || refunds != wantRefunds || captures != wantCaptures {
		t.Fatalf("timeline %d/%d, provider_attempts %d/%d, refunds %d/%d, captures %d/%d (got/want)",
			timeline, wantTL, attempts, wantOrders, refunds, wantRefunds, captures, wantCaptures)
	}
}

func TestMigrations(t *testing.T) {
	ctx := context.Background()
	all, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) < 3 || all[0].Version != 1 || all[0].NoTx || !all[1].NoTx {
		t.Fatalf("embedded migrations: %+v", all)
	}
	var versions []int
	for _, m := range all {
		versions = append(versions, m.Version)
	}

	t.Run("apply once then no-op", func(t *testing.T) {
		pool := newPool(t, pgtest.Start(t))
		applied, err := Migrate(ctx, pool, zap.NewNop())
		if err != nil || !equalInts(applied, versions) {
			t.Fatalf("first run applied %v (%v), want %v", applied, err, versions)
		}
		applied, err = Migrate(ctx, pool, zap.NewNop())
		if err != nil || len(applied) != 0 {
			t.Fatalf("second run applied %v (%v), want none", applied, err)
		}
		// The online steps really happened: indexes valid, checks validated.
		var invalid, checks int
		if err := pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE NOT indisvalid) FROM pg_index`).Scan(&invalid); err != nil || invalid != 0 {
			t.Fatalf("invalid indexes: %d (%v)", invalid, err)
		}
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_constraint WHERE conname IN ('orders_money_ck','payments_money_ck') AND convalidated`).Scan(&checks); err != nil || checks != 2 {
			t.Fatalf("validated money checks: %d (%v)", checks, err)
		}
		var idx int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_indexes WHERE indexname = 'orders_merchant_created_idx'`).Scan(&idx); err != nil || idx != 1 {
			t.Fatalf("reader index missing: %d (%v)", idx, err)
		}
	})

	t.Run("money checks", func(t *testing.T) {
		pool := migratedDB(t)
		tests := []struct {
			name                           string
			status                         string
			authorized, captured, refunded int64
			ok                             bool
		}{
			{"captured within authorization", "captured", 100, 100, 40, true},
			{"cancelled keeps its partial capture", "cancelled", 0, 60, 0, true},
			{"captured beyond authorization", "captured", 100, 101, 0, false},
			{"refunded beyond captured", "refunded", 100, 50, 60, false},
		}
		for i, tc := range tests {
			_, err := pool.Exec(ctx, `INSERT INTO payments (id, order_id, merchant_id, status, method, currency, amount_minor,
				authorized_minor, captured_minor, refunded_minor, created_at, updated_at, last_event_seq)
				VALUES ($1, 'ord_1', 'mer_1', $2, 'card', 'EUR', 100, $3, $4, $5, now(), now(), 1)`,
				fmt.Sprintf("pay_%d", i), tc.status, tc.authorized, tc.captured, tc.refunded)
			var pgErr *pgconn.PgError
			if tc.ok != (err == nil) || (err != nil && (!errors.As(err, &pgErr) || pgErr.Code != "23514")) {
				t.Errorf("%s: err %v, want ok=%v (or check_violation)", tc.name, err, tc.ok)
			}
		}
	})

	t.Run("concurrent nodes apply each once", func(t *testing.T) {
		pool := newPool(t, pgtest.Start(t))
		var wg sync.WaitGroup
		results := make([][]int, 3)
		errs := make([]error, 3)
		for i := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i], errs[i] = Migrate(ctx, pool, zap.NewNop())
			}()
		}
		wg.Wait()
		count := map[int]int{}
		for i := range 3 {
			if errs[i] != nil {
				t.Fatalf("node %d: %v", i, errs[i])
			}
			for _, v := range results[i] {
				count[v]++
			}
		}
		for _, v := range versions {
			if count[v] != 1 {
				t.Fatalf("version %d applied %d times (%v)", v, count[v], results)
			}
		}
		var rows int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&rows); err != nil || rows != len(versions) {
			t.Fatalf("schema_migrations rows %d (%v)", rows, err)
		}
	})

	t.Run("edited applied migration is rejected", func(t *testing.T) {
		pool := newPool(t, pgtest.Start(t))
		if _, err := MigrateWith(ctx, pool, nil, all[:1], MigrateOptions{}); err != nil {
			t.Fatal(err)
		}
		edited := append([]Migration{NewMigration(1, all[0].Name, all[0].SQL+"\n-- edited\n")}, all[1:]...)
		applied, err := MigrateWith(ctx, pool, nil, edited, MigrateOptions{})
		if !errors.Is(err, ErrChecksumMismatch) || len(applied) != 0 {
			t.Fatalf("got applied %v, err %v; want ErrChecksumMismatch and nothing applied", applied, err)
		}
	})

	t.Run("older node tolerates newer migrations", func(t *testing.T) {
		pool := newPool(t, pgtest.Start(t))
		if _, err := Migrate(ctx, pool, nil); err != nil {
			t.Fatal(err)
		}
		applied, err := MigrateWith(ctx, pool, nil, all[:1], MigrateOptions{})
		if err != nil || len(applied) != 0 {
			t.Fatalf("older node: applied %v, err %v", applied, err)
		}
	})
}

func metricValue(t testing.TB, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestSplitStatements(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"-- c\nCREATE INDEX a ON t (x);\n\nDROP INDEX b;\n", []string{"CREATE INDEX a ON t (x);", "DROP INDEX b;"}},
		{"ALTER TABLE t\n  ADD CONSTRAINT c CHECK (x > 0) NOT VALID;\nSELECT 1", []string{"ALTER TABLE t\n  ADD CONSTRAINT c CHECK (x > 0) NOT VALID;", "SELECT 1"}},
		{"-- only comments\n", nil},
	}
	for _, tc := range tests {
		got := splitStatements(tc.in)
		if len(got) != len(tc.want) {
			t.Fatalf("split %q: %q, want %q", tc.in, got, tc.want)
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Fatalf("split %q: %q, want %q", tc.in, got, tc.want)
			}
		}
	}
}

func TestExportAllEventsOnce(t *testing.T) {
	pool := migratedDB(t)
	src := newFakeSource()
	src.produceMerchants()
	src.produceOrders(300)
	reg := prometheus.NewRegistry()
	cfg := testConfig(pool, src, zap.NewNop())
	cfg.Registry = reg
	e, err := NewExporter(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	runExporter(t, e)
	waitExported(t, e, src.Head())
	verifyDatabase(t, pool, src)

	// More traffic after catch-up is picked up too.
	src.produceOrders(50)
	e.Kick()
	waitExported(t, e, src.Head())
	verifyDatabase(t, pool, src)

	st := e.Stats()
	if st.LagEvents != 0 || st.ExportedTotal != src.Head() || st.LastError != "" || st.BreakerState != "closed" {
		t.Fatalf("stats after catch-up: %+v (head %d)", st, src.Head())
	}
	if got := metricValue(t, e.mEvents); got != float64(src.Head()) {
		t.Fatalf("txswitch_export_events_total = %v, want %d", got, src.Head())
	}
	if !e.progressKnown || e.progress != src.Head() {
		t.Fatalf("progress hint %d (known %v) after exporting to %d: later batches would not insert fresh", e.progress, e.progressKnown, src.Head())
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range families {
		names[f.GetName()] = true
	}
	for _, n := range []string{"txswitch_export_lag_events", "txswitch_export_lag_seconds",
		"txswitch_export_backlog_events", "txswitch_export_db_breaker_state", "txswitch_export_events_total"} {
		if !names[n] {
			t.Fatalf("metric %s not registered (have %v)", n, names)
		}
	}
}

// TestBatchGrowsWithTheBacklog: behind, a batch takes the backlog up to
// BatchMax; keeping up, Batch. Read off the ledger: one exported_ranges row
// per transaction.
func TestBatchGrowsWithTheBacklog(t *testing.T) {
	for _, c := range []struct {
		name            string
		batch, batchMax int
		backlog         uint64 // events before the exporter starts (about)
		wantMaxRange    int64  // largest transaction
	}{
		{"backlog above BatchMax", 200, 700, 2000, 700},
		{"BatchMax at Batch", 200, 200, 2000, 200},
		{"backlog below Batch", 5000, 8000, 2000, 0}, // one transaction: the whole backlog
	} {
		t.Run(c.name, func(t *testing.T) {
			pool := migratedDB(t)
			src := newFakeSource()
			src.produceMerchants()
			for src.Head() < c.backlog {
				src.produceOrders(10)
			}
			cfg := testConfig(pool, src, zap.NewNop())
			cfg.Batch, cfg.BatchMax = c.batch, c.batchMax
			e, err := NewExporter(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			for wm, _ := src.ExportWatermark(); wm < src.Head(); wm, _ = src.ExportWatermark() {
				if _, failed := e.step(context.Background(), 0); failed {
					t.Fatalf("step: %+v", e.Stats())
				}
			}
			var n, largest int64
			if err := pool.QueryRow(context.Background(), `SELECT count(*), max(last_seq - first_seq + 1) FROM exported_ranges`).Scan(&n, &largest); err != nil {
				t.Fatal(err)
			}
			want := c.wantMaxRange
			if want == 0 {
				want = int64(src.Head())
			}
			if largest != want || n != (int64(src.Head())+want-1)/want {
				t.Fatalf("%d transactions, the largest %d events; want %d of at most %d for %d events", n, largest, (int64(src.Head())+want-1)/want, want, src.Head())
			}
			verifyDatabase(t, pool, src)
		})
	}
}

// TestDrainedBatchWaitsForThePoll: a batch that read the outbox up to the
// head it saw waits PollInterval before the next, even when events arrived
// while it was written (as they always do under traffic); only a batch cut
// short by its limit goes on at once. Going on at once after every batch
// wrote a transaction per round trip and each order row 2.6 times in
// BenchmarkPaymentsCentral. The lag figures then count what arrived.
func TestDrainedBatchWaitsForThePoll(t *testing.T) {
	for _, c := range []struct {
		name            string
		batch, batchMax int
		want            []time.Duration // waits after each batch
	}{
		// 201-215 events at the start, 100 a batch: two batches stop at
		// their limit, the third reads the rest of what was there.
		{"cut by the limit", 100, 100, []time.Duration{0, 0, time.Hour}},
		// The backlog within [Batch, BatchMax]: one batch takes it all.
		{"the whole backlog", 50, 400, []time.Duration{time.Hour}},
	} {
		t.Run(c.name, func(t *testing.T) {
			pool := migratedDB(t)
			src := newFakeSource()
			src.produceMerchants()
			for src.Head() <= 200 {
				src.produceOrders(1) // about 10 events each
			}
			start := src.Head()
			cfg := testConfig(pool, src, zap.NewNop())
			cfg.Batch, cfg.BatchMax = c.batch, c.batchMax
			cfg.PollInterval = time.Hour // never elapses here: step is driven by hand
			e, err := NewExporter(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			// Traffic: every batch's write is followed by new events.
			src.advanceHook = func(uint64) error { src.produceOrders(1); return nil }
			var waits []time.Duration
			for i := 0; i < 10; i++ {
				wait, failed := e.step(context.Background(), 0)
				if failed {
					t.Fatalf("step %d: %+v", i, e.Stats())
				}
				waits = append(waits, wait)
				if wait > 0 {
					break
				}
			}
			if fmt.Sprint(waits) != fmt.Sprint(c.want) {
				t.Fatalf("waits after each batch %v, want %v", waits, c.want)
			}
			wm, _ := src.ExportWatermark()
			head := src.Head()
			if wm < start || wm >= head {
				t.Fatalf("watermark %d after the batches, head %d: want the events there at the start exported (%d), those of the last write's traffic waiting", wm, head, start)
			}
			st := e.Stats()
			if st.LastSeq != head || st.LagEvents != head-wm || st.LagSeconds <= 0 {
				t.Fatalf("stats %+v: want last_seq %d, lag_events %d and a lag in seconds for the events waiting", st, head, head-wm)
			}
		})
	}
}

// TestPreviousReleaseLedger: during a rolling upgrade a previous-release
// exporter (one exported_events row per event, export_progress untouched)
// may lead and advance the Raft watermark past the progress row. The new
// exporter then records its range from the watermark: exported_event_log
// still holds every event exactly once. Simulated here by moving the first
// part of the export from the new ledger to exported_events.
func TestPreviousReleaseLedger(t *testing.T) {
	pool := migratedDB(t)
	ctx := context.Background()
	src := newFakeSource()
	src.produceMerchants()
	src.produceOrders(60)
	cfg := testConfig(pool, src, zap.NewNop())
	e1, err := NewExporter(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for wm, _ := src.ExportWatermark(); wm < src.Head(); wm, _ = src.ExportWatermark() {
		if _, failed := e1.step(ctx, 0); failed {
			t.Fatalf("step: %+v", e1.Stats())
		}
	}
	old := src.Head()
	// What the previous release would have left: its ledger, no progress.
	toPreviousReleaseLedger(t, pool)

	src.produceOrders(40)
	e2, err := NewExporter(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	runExporter(t, e2)
	waitExported(t, e2, src.Head())
	verifyDatabase(t, pool, src)
	if got := e2.Stats().ExportedTotal; got != src.Head()-old {
		t.Fatalf("the new exporter counted %d events new, want %d (after the previous release's %d)", got, src.Head()-old, old)
	}
}

// toPreviousReleaseLedger rewrites what the exporter recorded as the
// release before migration 0004 would have left it: one exported_events
// row per event, no ranges, no progress.
func toPreviousReleaseLedger(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	var moved int64
	if err := pool.QueryRow(context.Background(), `WITH moved AS (INSERT INTO exported_events (event_id, seq, kind)
		SELECT 'evt_' || s, s, 'order' FROM exported_ranges r, generate_series(r.first_seq, r.last_seq) s RETURNING seq)
		SELECT count(*) FROM moved`).Scan(&moved); err != nil || moved == 0 {
		t.Fatalf("previous-release ledger: %d rows, %v", moved, err)
	}
	if _, err := pool.Exec(context.Background(), `DELETE FROM exported_ranges; UPDATE export_progress SET last_seq = 0`); err != nil {
		t.Fatal(err)
	}
}

// A previous-release exporter recorded a batch in exported_events and lost
// leadership before the watermark moved; the new exporter then exports
// from the watermark again, and its range overlaps that ledger. Each event
// is still in exported_event_log once (migration 0006).
func TestPreviousReleaseLedgerOverlap(t *testing.T) {
	pool := migratedDB(t)
	ctx := context.Background()
	src := newFakeSource()
	src.produceMerchants()
	src.produceOrders(20)
	src.mu.Lock()
	src.advanceHook = func(uint64) error { return errors.New("leader died before the watermark moved") }
	src.mu.Unlock()
	e1, err := NewExporter(ctx, testConfig(pool, src, zap.NewNop()))
	if err != nil {
		t.Fatal(err)
	}
	if _, failed := e1.step(ctx, 0); !failed {
		t.Fatal("the watermark moved")
	}
	// What the previous release would have left: the batch in its ledger,
	// no progress, the watermark where it was.
	toPreviousReleaseLedger(t, pool)
	if wm, _ := src.ExportWatermark(); wm != 0 {
		t.Fatalf("watermark %d", wm)
	}
	src.mu.Lock()
	src.advanceHook = nil
	src.mu.Unlock()
	e2, err := NewExporter(ctx, testConfig(pool, src, zap.NewNop()))
	if err != nil {
		t.Fatal(err)
	}
	runExporter(t, e2)
	waitExported(t, e2, src.Head())
	verifyDatabase(t, pool, src)
}

// TestReplayIsIdempotent covers the crash window of exactly-once: the
// leader commits a batch to PostgreSQL and dies before the watermark
// advances; the next leader exports the same events again.
func TestReplayIsIdempotent(t *testing.T) {
	pool := migratedDB(t)
	src := newFakeSource()
	src.produceMerchants()
	src.produceOrders(100)

	// Leader 1 commits every batch but never gets its watermark through.
	var commits sync.WaitGroup
	commits.Add(1)
	var once sync.Once
	src.advanceHook = func(uint64) error {
		once.Do(commits.Done)
		return errLeaderDied
	}
	e1, err := NewExporter(context.Background(), testConfig(pool, src, zap.NewNop()))
	if err != nil {
		t.Fatal(err)
	}
	stop1 := runExporter(t, e1)
	commits.Wait()
	stop1()
	var inPG int
	if err := pool.QueryRow(context.Background(), `SELECT last_seq FROM export_progress`).Scan(&inPG); err != nil || inPG == 0 {
		t.Fatalf("leader 1 committed nothing: %d (%v)", inPG, err)
	}
	if wm, _ := src.ExportWatermark(); wm != 0 {
		t.Fatalf("watermark moved to %d despite the failure", wm)
	}

	// Leader 2 starts from the old watermark and re-exports.
	src.mu.Lock()
	src.advanceHook = nil
	src.mu.Unlock()
	e2, err := NewExporter(context.Background(), testConfig(pool, src, zap.NewNop()))
	if err != nil {
		t.Fatal(err)
	}
	runExporter(t, e2)
	waitExported(t, e2, src.Head())
	verifyDatabase(t, pool, src)
	if got := e2.Stats().ExportedTotal; got != src.Head()-uint64(inPG) {
		t.Fatalf("leader 2 newly exported %d events, want %d (head %d - %d already there)", got, src.Head()-uint64(inPG), src.Head(), inPG)
	}
}

// TestOutOfOrderBatchesNeverGoBackwards writes batches directly, newest
// first, then replays older ones: the rows end at the newest state. (The
// exporter never starts a batch above an unapplied event, which writeRows
// relies on for its ledger; this test does, so it judges the rows and
// that only the first write counted as new.) With fresh, the replays'
// plain INSERTs of immutable rows hit the unique keys and writeRows falls
// back to ON CONFLICT DO NOTHING.
func TestOutOfOrderBatchesNeverGoBackwards(t *testing.T) {
	for _, fresh := range []bool{false, true} {
		t.Run(fmt.Sprintf("fresh=%v", fresh), func(t *testing.T) {
			pool := migratedDB(t)
			src := newFakeSource()
			src.produceOrders(40)
			all, err := src.ReadOutbox(0, MaxBatch)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			half := len(all) / 2
			for i, batch := range [][]int{{half, len(all)}, {0, half}, {0, len(all)}, {10, 20}} {
				rows, err := decodeBatch(all[batch[0]:batch[1]])
				if err != nil {
					t.Fatal(err)
				}
				added, progress, err := writeRows(ctx, pool, rows, fresh)
				if err != nil {
					t.Fatalf("write %v: %v", batch, err)
				}
				if want := map[bool]int64{true: int64(len(all) - half)}[i == 0]; added != want || progress != uint64(len(all)) {
					t.Fatalf("write %v: %d events new, progress %d; want %d, %d", batch, added, progress, want, len(all))
				}
			}
			verifyRows(t, pool, src)
		})
	}
}

func TestFollowerDoesNotExport(t *testing.T) {
	pool := migratedDB(t)
	src := newFakeSource()
	src.produceOrders(5)
	src.leader.Store(false)
	e, err := NewExporter(context.Background(), testConfig(pool, src, zap.NewNop()))
	if err != nil {
		t.Fatal(err)
	}
	if wait, failed := e.step(context.Background(), 0); failed || wait != e.cfg.FollowerPoll {
		t.Fatalf("follower step: wait %v failed %v", wait, failed)
	}
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM exported_event_log`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("follower exported %d events (%v)", n, err)
	}
	src.leader.Store(true)
	if _, failed := e.step(context.Background(), 0); failed {
		t.Fatalf("leader step failed: %+v", e.Stats())
	}
	if wm, _ := src.ExportWatermark(); wm != src.Head() {
		t.Fatalf("leader step: watermark %d, head %d", wm, src.Head())
	}
}

func TestBadEventStopsExportWithoutTrippingBreaker(t *testing.T) {
	pool := migratedDB(t)
	src := newFakeSource()
	src.produceOrders(2)
	src.mu.Lock()
	src.events[3].Resource = []byte(`{"id": 42, "seq": "x"}`)
	src.mu.Unlock()
	e, err := NewExporter(context.Background(), testConfig(pool, src, zap.NewNop()))
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, failed := e.step(context.Background(), 0); !failed {
			t.Fatal("a batch with an undecodable event was accepted")
		}
	}
	st := e.Stats()
	if st.BreakerState != "closed" || st.Watermark != 0 || st.LastError == "" {
		t.Fatalf("stats: %+v", st)
	}
}

// PostgreSQL's text and jsonb cannot hold NUL. An event carrying one (a
// PSP's message, a string an older release accepted) is exported without
// the NULs instead of stopping the export of everything after it.
func TestEventsWithNULAreExported(t *testing.T) {
	pool := migratedDB(t)
	src := newFakeSource()
	src.produceOrders(3)
	orderID := src.editFirstOrder(t, func(doc map[string]any) { doc["reference"] = "shop\x00-1" })
	if !src.editEvent(t, KindTimeline, func(doc map[string]any) {
		doc["message"] = "declined\x00"
		doc["data"] = map[string]any{"psp_message": "card\x00 blocked", "k\x00": 1}
	}) {
		t.Fatal("no timeline event to put a NUL in")
	}
	e, err := NewExporter(context.Background(), testConfig(pool, src, zap.NewNop()))
	if err != nil {
		t.Fatal(err)
	}
	if _, failed := e.step(context.Background(), 0); failed {
		t.Fatalf("export stopped on a NUL: %+v", e.Stats())
	}
	if wm, _ := src.ExportWatermark(); wm != src.Head() {
		t.Fatalf("watermark %d, head %d", wm, src.Head())
	}
	var ref string
	if err := pool.QueryRow(context.Background(), `SELECT reference FROM orders WHERE id = $1`, orderID).Scan(&ref); err != nil {
		t.Fatal(err)
	}
	if ref != "shop-1" {
		t.Fatalf("reference %q", ref)
	}
	var n int
	if err := pool.QueryRow(context.Background(),
		`SELECT count(*) FROM timeline_events WHERE message = 'declined' AND data->>'psp_message' = 'card blocked' AND data ? 'k'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("timeline events without their NULs: %d, %v", n, err)
	}
}

// A refused batch (a data or constraint error) is the data's problem, not
// the database being down: the breaker stays closed, and the export stops
// at that batch with the reason in LastError.
func TestRefusedDataIsNotAnOutage(t *testing.T) {
	pool := migratedDB(t)
	src := newFakeSource()
	src.produceOrders(2)
	src.editFirstOrder(t, func(doc map[string]any) {
		doc["refunded"] = map[string]any{"value": 999_999, "currency": "EUR"} // more than captured
	})
	cfg := testConfig(pool, src, zap.NewNop())
	e, err := NewExporter(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 * cfg.Breaker.ConsecutiveFailures {
		if _, failed := e.step(context.Background(), 0); !failed {
			t.Fatal("a batch the database refuses was exported")
		}
	}
	if st := e.Stats(); st.BreakerState != "closed" || st.Watermark != 0 || !strings.Contains(st.LastError, "23514") {
		t.Fatalf("stats: %+v", st)
	}
}

func TestRefusedDataClassification(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&pgconn.PgError{Code: "22021"}, true}, // invalid byte sequence
		{&pgconn.PgError{Code: "23514"}, true}, // check violation
		{fmt.Errorf("write: %w", &pgconn.PgError{Code: "23502"}), true},
		{&pgconn.PgError{Code: "08006"}, false}, // connection failure
		{&pgconn.PgError{Code: "57P01"}, false}, // admin shutdown
		{errors.New("dial tcp: connection refused"), false},
	} {
		if got := refusedData(tc.err); got != tc.want {
			t.Errorf("refusedData(%v) = %v", tc.err, got)
		}
	}
}

// While the outbox cannot be read, the lag figures still follow its head,
// so the backlog alarm can fire on that stall too.
func TestLagFollowsTheOutboxItCannotRead(t *testing.T) {
	pool := migratedDB(t)
	src := newFakeSource()
	src.produceOrders(2)
	cfg := testConfig(pool, src, zap.NewNop())
	e, err := NewExporter(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, failed := e.step(context.Background(), 0); failed {
		t.Fatalf("first export: %+v", e.Stats())
	}
	src.mu.Lock()
	src.readErr = errors.New("journal read failed")
	src.mu.Unlock()
	src.produceOrders(3)
	if _, failed := e.step(context.Background(), 0); !failed {
		t.Fatal("a step that cannot read the outbox succeeded")
	}
	wm, _ := src.ExportWatermark()
	if st := e.Stats(); st.LagEvents != src.Head()-wm || st.LagEvents == 0 || metricValue(t, e.mBacklog) != float64(st.LagEvents) {
		t.Fatalf("lag while the outbox cannot be read: %+v (head %d, watermark %d)", st, src.Head(), wm)
	}
	e.ObserveBacklog(nil)
	if st := e.Stats(); st.LagEvents != src.Head()-wm {
		t.Fatalf("ObserveBacklog while the outbox cannot be read: %+v", st)
	}
}

// TestDatabaseOutage kills PostgreSQL while the source keeps producing:
// the exporter backs off behind an open breaker, the source is never
// blocked, and after the restart the backlog drains exactly once.
func TestDatabaseOutage(t *testing.T) {
	srv := pgtest.NewServer(t)
	pool := newPool(t, srv.NewDatabase(t))
	ctx := context.Background()
	if _, err := Migrate(ctx, pool, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.InfoLevel)
	src := newFakeSource()
	src.produceMerchants()
	src.produceOrders(50)
	cfg := testConfig(pool, src, zap.New(core))
	cfg.BacklogAlarm = 1000
	e, err := NewExporter(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	runExporter(t, e)
	waitExported(t, e, src.Head())

	srv.Kill()
	// Traffic continues while the database is down; the producer (the
	// payment path) never waits for the exporter.
	for range 20 {
		src.produceOrders(10)
		e.Kick()
	}
	eventually(t, "breaker open", func() bool { return e.Stats().BreakerState == "open" })
	st := e.Stats()
	if st.LagEvents == 0 || st.LastError == "" || st.LagEvents > src.Head() {
		t.Fatalf("during outage: %+v", st)
	}
	eventually(t, "backlog alarm", func() bool { return e.Stats().Backlog > cfg.BacklogAlarm })
	if got := metricValue(t, e.mBreaker); got != 2 {
		t.Fatalf("breaker gauge %v during outage, want 2 (open)", got)
	}

	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	src.produceOrders(20)
	waitExported(t, e, src.Head())
	verifyDatabase(t, pool, src)
	if st := e.Stats(); st.LastError != "" || st.LagEvents != 0 {
		t.Fatalf("after recovery: %+v", st)
	}

	// Logs: state changes once each, not one line per retry. Every failed
	// half-open probe logs half-open -> open again, and how many probes
	// fail depends on how long PostgreSQL takes to restart; the outage
	// itself is one closed -> open transition.
	opened := logs.FilterMessage("central database breaker opened: export paused, outbox grows")
	if opened.Len() < 1 {
		t.Fatal("breaker-open never logged")
	}
	if n := opened.FilterField(zap.Stringer("from", gobreaker.StateClosed)).Len(); n != 1 {
		t.Fatalf("breaker opened from closed %d times, want once per outage", n)
	}
	if n := logs.FilterMessage("export failing, backing off").Len(); n != 1 {
		t.Fatalf("failure logged %d times, want once per outage", n)
	}
	if n := logs.FilterMessage("export backlog above alarm threshold").Len(); n != 1 {
		t.Fatalf("backlog alarm logged %d times, want 1", n)
	}
	if n := logs.FilterMessage("export recovered").Len(); n != 1 {
		t.Fatalf("recovery logged %d times, want 1", n)
	}
}

// TestMigrationWhileExporting applies the index, check and an expand
// migration while the exporter writes: no failed batch, no lost row.
func TestMigrationWhileExporting(t *testing.T) {
	pool := newPool(t, pgtest.Start(t))
	ctx := context.Background()
	all, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	// The tables, columns and bookkeeping this exporter writes (0001,
	// 0004, 0005) first; the index and check migrations (0002, 0003) run
	// under load.
	var first []Migration
	for _, m := range all {
		if m.Version == 1 || m.Version == 4 || m.Version == 5 {
			first = append(first, m)
		}
	}
	if _, err := MigrateWith(ctx, pool, nil, first, MigrateOptions{}); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.WarnLevel)
	src := newFakeSource()
	src.produceMerchants()
	src.produceOrders(100)
	e, err := NewExporter(ctx, testConfig(pool, src, zap.New(core)))
	if err != nil {
		t.Fatal(err)
	}
	runExporter(t, e)

	producing := make(chan struct{})
	go func() {
		defer close(producing)
		for range 30 {
			src.produceOrders(10)
			e.Kick()
			time.Sleep(5 * time.Millisecond) // spread writes across the migration
		}
	}()
	expand := NewMigration(100, "expand_orders_support_note", "ALTER TABLE orders ADD COLUMN IF NOT EXISTS support_note text;")
	applied, err := MigrateWith(ctx, pool, zap.NewNop(), append(append([]Migration(nil), all...), expand), MigrateOptions{})
	if err != nil {
		t.Fatalf("migrate under load: %v", err)
	}
	if len(applied) != len(all)+1-len(first) {
		t.Fatalf("applied %v under load", applied)
	}
	<-producing
	waitExported(t, e, src.Head())
	verifyDatabase(t, pool, src)
	if logs.Len() != 0 {
		t.Fatalf("exporter warned during migration: %v", logs.All()[0].Message+" "+logs.All()[0].ContextMap()["error"].(string))
	}
}

// Before its first export (the schema cannot be migrated: PostgreSQL is
// down from the start) a node still shows its export lag and raises the
// backlog alarm, from the replicated outbox alone; a follower shows none.
func TestObserveBacklogWithoutTheDatabase(t *testing.T) {
	pool, err := pgxpool.New(context.Background(), "postgres://nobody@127.0.0.1:1/none?connect_timeout=1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	core, logs := observer.New(zapcore.InfoLevel)
	src := newFakeSource()
	src.produceMerchants()
	src.produceOrders(30)
	cfg := testConfig(pool, src, zap.New(core))
	cfg.BacklogAlarm = 10
	e, err := NewExporter(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.ObserveBacklog(errors.New("central database down"))
	st := e.Stats()
	if st.LagEvents != src.Head() || st.LagEvents == 0 || st.LastError != "central database down" || !st.Leader {
		t.Fatalf("stats before the first export: %+v (head %d)", st, src.Head())
	}
	if got := metricValue(t, e.mBacklog); got != float64(src.Head()) {
		t.Fatalf("backlog gauge %v, want %d", got, src.Head())
	}
	if logs.FilterMessage("export backlog above alarm threshold").Len() != 1 {
		t.Fatalf("no backlog alarm: %v", logs.All())
	}
	src.leader.Store(false)
	e.ObserveBacklog(nil)
	if st := e.Stats(); st.LagEvents != 0 || st.Leader || metricValue(t, e.mBacklog) != 0 {
		t.Fatalf("a follower reports lag: %+v", st)
	}
}

// An event of a kind this exporter does not know stops the export like an
// undecodable one: recording it as exported would let the outbox forget
// it with nothing in PostgreSQL.
func TestUnknownKindStopsExport(t *testing.T) {
	pool := migratedDB(t)
	src := newFakeSource()
	src.produceOrders(2)
	src.mu.Lock()
	src.events[2].Kind = "voucher"
	src.mu.Unlock()
	e, err := NewExporter(context.Background(), testConfig(pool, src, zap.NewNop()))
	if err != nil {
		t.Fatal(err)
	}
	if _, failed := e.step(context.Background(), 0); !failed {
		t.Fatal("a batch with an unknown kind was exported")
	}
	if st := e.Stats(); st.Watermark != 0 || !strings.Contains(st.LastError, `unknown kind "voucher"`) || st.BreakerState != "closed" {
		t.Fatalf("stats: %+v", st)
	}
}
