package cluster

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/txswitch/txswitch/storage/central"
	txswitch "github.com/txswitch/txswitch/switch"
)

// backlogSource is a leader's outbox of five events never exported.
type backlogSource struct{ at time.Time }

func (s backlogSource) ReadOutbox(after uint64, limit int) ([]txswitch.OutboxEvent, error) {
	var out []txswitch.OutboxEvent
	for seq := after + 1; seq <= 5 && len(out) < limit; seq++ {
		out = append(out, txswitch.OutboxEvent{Seq: seq, At: s.at})
	}
	return out, nil
}
func (backlogSource) ExportWatermark() (uint64, error)                     { return 0, nil }
func (backlogSource) AdvanceExportWatermark(context.Context, uint64) error { return nil }
func (backlogSource) IsLeader() bool                                       { return true }
func (backlogSource) OutboxHead() (uint64, error)                          { return 5, nil }

// waitingCentral is a node's central database part in front of a
// database that is not there, exporting backlogSource; tests set migrate.
func waitingCentral(t *testing.T, log *zap.Logger) *centralDB {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), "postgres://nobody@127.0.0.1:1/none?connect_timeout=1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	exp, err := central.NewExporter(context.Background(), central.ExporterConfig{Pool: pool,
		Source: backlogSource{at: time.Now().Add(-time.Minute)}, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	return &centralDB{pool: pool, exporter: exp, log: log}
}

// A node that cannot migrate its central database yet keeps retrying with
// no deadline of its own (a long index build must be able to finish), says
// why in the log whenever the reason changes (not once for ever, not at
// every retry), and shows its export lag before its first export.
func TestCentralWaitsToMigrateVisibly(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	c := waitingCentral(t, zap.New(core))
	// Refused twice, then a failing migration twice, then current.
	errs := []error{errors.New("connection refused"), errors.New("connection refused"),
		errors.New("migration 3: check constraint violated"), errors.New("migration 3: check constraint violated"), nil}
	calls := 0
	var described string
	c.migrate = func(ctx context.Context) ([]int, error) {
		if _, ok := ctx.Deadline(); ok {
			t.Error("a migration run has a deadline: a long index build would be cancelled and started over")
		}
		if calls == 4 {
			described = c.describe(txswitch.Leadership{IsLeader: true, LeaderID: 1}, "")
		}
		err := errs[calls]
		calls++
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for !c.migrated.Load() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if !c.migrated.Load() || calls != len(errs) {
		t.Fatalf("migrated %v after %d runs", c.migrated.Load(), calls)
	}
	if !strings.Contains(described, "not migrated") || !strings.Contains(described, "lag 5 events") ||
		!strings.Contains(described, "last error: migration 3: check constraint violated") {
		t.Fatalf("describe while waiting = %q", described)
	}
	var said []string
	for _, e := range logs.FilterMessageSnippet("not reachable or not migrated").All() {
		said = append(said, e.ContextMap()["error"].(string))
	}
	if want := []string{"connection refused", "migration 3: check constraint violated"}; !slices.Equal(said, want) {
		t.Fatalf("warnings %q, want one per distinct error %q", said, want)
	}
}

// A migration run can wait long (another node holds the lock through an
// index build); the export lag stays visible meanwhile.
func TestCentralObservesTheBacklogDuringALongMigration(t *testing.T) {
	c := waitingCentral(t, zap.NewNop())
	c.observeEvery = 10 * time.Millisecond
	release := make(chan struct{})
	c.migrate = func(ctx context.Context) ([]int, error) {
		<-release // a long index build
		return nil, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.run(ctx) }()
	waitFor(t, 10*time.Second, "the backlog observed during the migration", func() bool {
		d := c.describe(txswitch.Leadership{IsLeader: true, LeaderID: 1}, "")
		return strings.Contains(d, "lag 5 events") && strings.Contains(d, "being migrated")
	})
	close(release)
	waitFor(t, 10*time.Second, "migrated", c.migrated.Load)
	cancel()
	<-done
}

// A follower does not speak for the export: its exporter never tried the
// database (a closed breaker) and measures no lag, which read as a healthy
// export while the leader reported the database down. It names the leader.
func TestCentralDescribeOnAFollower(t *testing.T) {
	c := waitingCentral(t, zap.NewNop())
	c.migrated.Store(true)
	for _, tc := range []struct {
		ld   txswitch.Leadership
		api  string
		want string
	}{
		{txswitch.Leadership{LeaderID: 2, Term: 3}, "10.0.0.2:8100", "exported by the leader, node 2 (10.0.0.2:8100); this node does not export"},
		{txswitch.Leadership{LeaderID: 2, Term: 3}, "", "exported by the leader, node 2; this node does not export"},
		{txswitch.Leadership{Term: 3}, "", "exported by the leader; no leader known now, so nothing is exported"},
	} {
		if got := c.describe(tc.ld, tc.api); got != tc.want {
			t.Errorf("follower (%+v): %q, want %q", tc.ld, got, tc.want)
		}
	}
	c.migrated.Store(false)
	if got, want := c.describe(txswitch.Leadership{LeaderID: 2, Term: 3}, ""), "exported by the leader, node 2; this node does not export (schema not migrated by this node yet)"; got != want {
		t.Errorf("follower before its migration: %q, want %q", got, want)
	}
	c.migrated.Store(true)
	leader := txswitch.Leadership{IsLeader: true, LeaderID: 1, Term: 3}
	if got := c.describe(leader, ""); strings.Contains(got, "lag") {
		t.Errorf("a new leader whose exporter has not read the outbox shows a lag: %q", got)
	}
	c.exporter.ObserveBacklog(errors.New("dial tcp 127.0.0.1:1: connect: connection refused"))
	if got := c.describe(leader, ""); !strings.HasPrefix(got, "breaker closed, lag 5 events / ") ||
		!strings.HasSuffix(got, "last error: dial tcp 127.0.0.1:1: connect: connection refused") {
		t.Errorf("leader: %q", got)
	}
}
