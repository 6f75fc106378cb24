package scenarios

import (
	"context"
	"testing"
	"time"

	"github.com/txswitch/txswitch/chaos"
)

func TestWatchDeadline(t *testing.T) {
	run := func(kind, target string, inject, undo int) FaultRun {
		return FaultRun{Spec: Fault{Kind: kind, Target: target}, Events: []chaos.Event{
			{Action: "inject", At: at(inject)}, {Action: "undo", At: at(undo)}}}
	}
	within := func(ms int) Duration { return Duration(time.Duration(ms) * time.Millisecond) }
	leaderStop := run("node_stop", "leader", 1000, 2000)
	pspDown := run("provider_unavailable", "psp_b", 2000, 5000)
	dbDown := run("db_unreachable", "central", 1000, 3000)
	diskFull := run("disk_full", "n2", 1500, 2500)
	for _, c := range []struct {
		name   string
		expect []Expect
		runs   []FaultRun
		want   time.Time
	}{
		{"no timed expectation", []Expect{{MinAcked: &ExpectCount{Min: 1}}}, []FaultRun{leaderStop}, time.Time{}},
		{"leader change: from the injection", []Expect{{LeaderChange: &ExpectWithin{Within: within(4000)}}}, []FaultRun{leaderStop}, at(5000)},
		{"breaker: from the first fault on its provider", []Expect{{BreakerOpen: &ExpectBreaker{Provider: "psp_b", Within: within(2000)}}},
			[]FaultRun{leaderStop, pspDown}, at(4000)},
		{"export drained: from the database's return", []Expect{{ExportDrained: &ExpectWithin{Within: within(2000)}}}, []FaultRun{dbDown}, at(5000)},
		{"caught up: from the disk fault's undo", []Expect{{CaughtUp: &ExpectWithin{Within: within(1000)}}}, []FaultRun{diskFull}, at(3500)},
		{"the latest of several", []Expect{{LeaderChange: &ExpectWithin{Within: within(1000)}},
			{BreakerOpen: &ExpectBreaker{Provider: "psp_b", Within: within(2000)}}}, []FaultRun{leaderStop, pspDown}, at(4000)},
		{"a fault never injected gives no window", []Expect{{LeaderChange: &ExpectWithin{Within: within(4000)}}}, nil, time.Time{}},
	} {
		sc := &Scenario{Expect: c.expect}
		if got := watchDeadline(sc, c.runs); !got.Equal(c.want) {
			t.Errorf("%s: watchDeadline = %v, want %v", c.name, got.Sub(t0), c.want.Sub(t0))
		}
	}
}

func TestWatchStopsOnceTheTimedExpectationsPass(t *testing.T) {
	now := time.Now()
	stop := FaultRun{Spec: Fault{Kind: "node_stop", Target: "leader"}, Events: []chaos.Event{{Action: "inject", At: now.Add(-time.Second)}}}
	before := Observation{At: now.Add(-2 * time.Second), Leader: 1, Term: 2}
	after := Observation{At: now.Add(-500 * time.Millisecond), Leader: 2, Term: 3}

	// The new leader is on record: no need to watch the rest of the 10 s.
	sc := &Scenario{Expect: []Expect{{LeaderChange: &ExpectWithin{Within: Duration(10 * time.Second)}}}}
	calls := 0
	start := time.Now()
	watch(context.Background(), sc, time.Minute, func() *Evidence {
		calls++
		return &Evidence{Faults: []FaultRun{stop}, Observations: []Observation{before, after}}
	})
	if calls != 1 || time.Since(start) > 5*time.Second {
		t.Fatalf("watched %v (%d looks) although the new leader was on record", time.Since(start), calls)
	}

	// None yet: it looks again until the window (fault + 1.3 s) passed.
	sc.Expect[0].LeaderChange.Within = Duration(1300 * time.Millisecond)
	calls = 0
	watch(context.Background(), sc, time.Minute, func() *Evidence {
		calls++
		return &Evidence{Faults: []FaultRun{stop}, Observations: []Observation{before}}
	})
	if end := now.Add(300 * time.Millisecond); time.Now().Before(end) || calls < 2 {
		t.Fatalf("stopped watching %v before the window ended (%d looks)", end.Sub(time.Now()), calls)
	}

	// A scenario without timed expectations is not watched at all.
	calls = 0
	watch(context.Background(), &Scenario{Expect: []Expect{{MinAcked: &ExpectCount{Min: 1}}}}, time.Minute, func() *Evidence {
		calls++
		return &Evidence{Faults: []FaultRun{stop}}
	})
	if calls != 1 {
		t.Fatalf("%d looks for a scenario without timed expectations", calls)
	}

	// A window an hour long is watched for the limit only.
	sc.Expect[0].LeaderChange.Within = Duration(time.Hour)
	start = time.Now()
	watch(context.Background(), sc, 200*time.Millisecond, func() *Evidence {
		return &Evidence{Faults: []FaultRun{stop}, Observations: []Observation{before}}
	})
	if took := time.Since(start); took < 200*time.Millisecond || took > 30*time.Second {
		t.Fatalf("watched %v with a limit of 200ms", took)
	}
}
