package scenarios

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/txswitch/txswitch/chaos"
)

// cancelLater is a fault whose injection arranges for the run's context to
// be cancelled a moment after the traffic ends, as a Ctrl-C or a CI job's
// SIGTERM arriving while the runner settles and collects.
type cancelLater struct {
	e      *env
	after  time.Duration
	cancel context.CancelCauseFunc
	at     time.Time
}

func (f *cancelLater) Kind() string   { return "test_cancel_after_traffic" }
func (f *cancelLater) Target() string { return "" }
func (f *cancelLater) Inject(context.Context) error {
	f.at = time.Now()
	end := f.e.start.Add(f.e.sc.Traffic.Duration.D() + f.after)
	time.AfterFunc(time.Until(end), func() { f.cancel(errors.New("interrupt signal received")) })
	return nil
}
func (f *cancelLater) Undo(context.Context) error { return nil }
func (f *cancelLater) Fired() []chaos.Event {
	return []chaos.Event{{At: f.at, Kind: f.Kind(), Action: "inject"}}
}

// A run interrupted after its traffic (while it waits for a timed
// expectation, reads the nodes back) reports the interruption and judges
// nothing: its reads cut short made no_lost_writes report every
// acknowledged order as missing and money_adds_up every PSP charge as
// unknown to the switch, and the error said "scenario timeout".
func TestInterruptedAfterTrafficIsNotJudged(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	faultKinds["test_cancel_after_traffic"] = faultDef{doc: "test: cancels the run after the traffic", target: targetNone,
		build: func(e *env, _ Fault) (chaos.Fault, error) {
			return &cancelLater{e: e, after: 500 * time.Millisecond, cancel: cancel}, nil
		}}
	defer delete(faultKinds, "test_cancel_after_traffic")
	// leader_change within 20s keeps the runner observing long after the
	// traffic: the cancellation lands there.
	scs, err := Parse("halt_test.yaml", []byte(`name: test/interrupted_after_traffic
tags: [regression]
traffic: {rate: 10, duration: 1s, mix: {card_pay: 1}}
faults:
  - {kind: test_cancel_after_traffic, at: 100ms}
expect:
  - leader_change: {within: 20s}
`))
	if err != nil {
		t.Fatal(err)
	}
	r := Run(ctx, scs[0], Options{Seed: 1})
	if r.Passed {
		t.Fatal("an interrupted scenario passed")
	}
	if !strings.Contains(r.Error, "interrupted during") || !strings.Contains(r.Error, "interrupt signal received") {
		t.Errorf("error %q does not say the run was interrupted", r.Error)
	}
	if len(r.Checks) != 0 {
		t.Errorf("an interrupted run judged its partial evidence: %s", FailureReport(r, 1))
	}
	if r.Duration > 15*time.Second {
		t.Errorf("the interrupted run took %v to return", r.Duration)
	}
}

// The scenario's own timeout is named as such, with the phase it hit.
func TestHaltedNamesTimeoutOrInterrupt(t *testing.T) {
	ctx, cancel := context.WithTimeoutCause(context.Background(), time.Nanosecond, &timeoutError{66 * time.Second})
	defer cancel()
	<-ctx.Done()
	if got := halted(ctx, "settle").Error(); got != "scenario timeout (1m6s) during settle" {
		t.Errorf("timeout: %q", got)
	}
	parent, stop := context.WithCancelCause(context.Background())
	ctx2, cancel2 := context.WithTimeoutCause(parent, time.Hour, &timeoutError{time.Hour})
	defer cancel2()
	stop(errors.New("terminated signal received"))
	if got := halted(ctx2, "traffic").Error(); !strings.HasPrefix(got, "interrupted during traffic (terminated signal received)") {
		t.Errorf("interrupt: %q", got)
	}
}

// Scenarios an interrupted run never started still carry their seed and
// tags (the JSON report and its reproduce commands need them).
func TestNotRunKeepsSeedAndTags(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	sc := Scenario{Name: "test/not_run", Tags: []string{"regression"}}
	rs := RunAll(ctx, []Scenario{sc}, Options{Seed: 9})
	if len(rs) != 1 || rs[0].Seed != Seed(9, sc.Name) || len(rs[0].Tags) != 1 || !strings.HasPrefix(rs[0].Error, "not run: the run was interrupted") {
		t.Fatalf("%+v", rs)
	}
}
