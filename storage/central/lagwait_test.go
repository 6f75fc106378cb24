package central

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// fakeClock is the exporter's clock stepped by hand: an After fires once
// Advance reaches its deadline, and Afters counts the calls, so a test
// knows when the exporter is back to waiting.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []fakeTimer
	afters int
}

type fakeTimer struct {
	at time.Time
	ch chan time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.afters++
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.timers = append(c.timers, fakeTimer{at: c.now.Add(d), ch: ch})
	return ch
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	pending := c.timers[:0]
	for _, t := range c.timers {
		if t.at.After(c.now) {
			pending = append(pending, t)
			continue
		}
		t.ch <- c.now
	}
	c.timers = pending
}

func (c *fakeClock) Afters() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.afters
}

// While the database is down, attempts are a backoff apart (here at least
// 30 s), yet the lag figures follow the outbox meanwhile: the events as
// they arrive, the age of the oldest unexported one as it ages. Frozen at
// the last attempt, they made the export alert fire late.
func TestLagFollowsTheOutboxBetweenAttempts(t *testing.T) {
	pool, err := pgxpool.New(context.Background(), "postgres://nobody@127.0.0.1:1/none?connect_timeout=1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	src := newFakeSource()
	src.produceMerchants()
	src.produceOrders(3)
	oldest, err := src.ReadOutbox(0, 1)
	if err != nil || len(oldest) != 1 {
		t.Fatalf("oldest event: %v %v", oldest, err)
	}
	clock := &fakeClock{now: src.base.Add(time.Hour)}
	cfg := testConfig(pool, src, zap.NewNop())
	cfg.Clock = clock
	cfg.BackoffMin, cfg.BackoffMax = time.Minute, time.Minute
	cfg.Breaker.ConsecutiveFailures = 1
	e, err := NewExporter(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	runExporter(t, e)
	eventually(t, "the first attempt to fail and the exporter to wait", func() bool {
		return e.Stats().LastError != "" && clock.Afters() == 1
	})
	failure := e.Stats().LastError
	for i := range 3 {
		src.produceOrders(2)
		n := clock.Afters()
		clock.Advance(time.Second)
		eventually(t, "the exporter to wait again", func() bool { return clock.Afters() > n })
		st := e.Stats()
		wantSeconds := clock.Now().Sub(oldest[0].At).Seconds()
		if st.LagEvents != src.Head() || st.LagSeconds != wantSeconds || st.LastError != failure || !st.Leader {
			t.Fatalf("%d s into the backoff: %+v; want lag %d events / %vs and the last error %q", i+1, st, src.Head(), wantSeconds, failure)
		}
		if ev, sec := metricValue(t, e.mLagEvents), metricValue(t, e.mLagSeconds); ev != float64(src.Head()) || sec != wantSeconds {
			t.Fatalf("%d s into the backoff: gauges lag %v events / %vs, want %d / %v", i+1, ev, sec, src.Head(), wantSeconds)
		}
	}
}

// Only the leader serves the lag, backlog and breaker gauges: a follower's
// zero lag and closed, never tried breaker read as a healthy export on its
// dashboard during an outage. What it exported while it led stays.
func TestOnlyTheLeaderServesTheLag(t *testing.T) {
	pool, err := pgxpool.New(context.Background(), "postgres://nobody@127.0.0.1:1/none?connect_timeout=1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	src := newFakeSource()
	src.produceOrders(2)
	reg := prometheus.NewRegistry()
	cfg := testConfig(pool, src, zap.NewNop())
	cfg.Registry = reg
	e, err := NewExporter(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	served := func() []string {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, mf := range mfs {
			names = append(names, mf.GetName())
		}
		return names
	}
	all := []string{"txswitch_export_backlog_events", "txswitch_export_db_breaker_state", "txswitch_export_events_total",
		"txswitch_export_lag_events", "txswitch_export_lag_seconds"}
	e.ObserveBacklog(errors.New("central database down"))
	if got := served(); !slices.Equal(got, all) {
		t.Fatalf("the leader serves %v, want %v", got, all)
	}
	src.leader.Store(false)
	e.ObserveBacklog(nil)
	if got, want := served(), []string{"txswitch_export_events_total"}; !slices.Equal(got, want) {
		t.Fatalf("a follower serves %v, want %v", got, want)
	}
}
