package scenarios

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"path"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/txswitch/txswitch/chaos"
	"github.com/txswitch/txswitch/cmd/cluster"
	"github.com/txswitch/txswitch/providers/sim"
	txswitch "github.com/txswitch/txswitch/switch"
)

// Options configure a run.
type Options struct {
	// Seed is the run seed; each scenario's seed is Seed(Seed, name).
	Seed     uint64
	Parallel int // default 1
	Logger   *zap.Logger
	// OnStart and OnDone are called around each scenario (from the
	// worker goroutines; the caller serializes its own output).
	OnStart func(Scenario)
	OnDone  func(Result)
	// Evidence, when set, receives the full evidence of every failed
	// scenario (the client's calls, ledgers, final state, faults,
	// observations) for a post-mortem.
	Evidence func(Result, *Evidence)
}

// Result is one scenario's verdict.
type Result struct {
	Name string `json:"name"`
	File string `json:"file"`
	// Dir is the directory the definition was loaded from ("" built in).
	Dir    string   `json:"dir,omitempty"`
	Tags   []string `json:"tags"`
	Seed   uint64   `json:"seed"`
	Passed bool     `json:"passed"`
	// ExpectFail lists the checks this (mutant) scenario needs to fail.
	ExpectFail []string      `json:"expect_fail,omitempty"`
	Duration   time.Duration `json:"duration_ns"`
	// Error is set when the scenario could not run to its checks (the
	// cluster did not start, the timeout hit...).
	Error  string        `json:"error,omitempty"`
	Checks []CheckResult `json:"checks"`
	Stats  RunStats      `json:"stats"`
	// Phases is how long each step took (start, tune, traffic, settle,
	// collect), to see where a slow scenario spends its time.
	Phases []Phase `json:"phases"`
}

// Phase is one timed step of a run.
type Phase struct {
	Name string        `json:"name"`
	Took time.Duration `json:"took_ns"`
}

// RunStats summarize the traffic.
type RunStats struct {
	Flows          int `json:"flows"`
	Calls          int `json:"calls"`
	AckedPayments  int `json:"acked_payments"`
	DroppedArrival int `json:"dropped_arrivals"`
	Orders         int `json:"orders"`
}

// Failed returns the checks that decided against the scenario: failed
// ones, and for a mutant scenario also the expect_fail checks that passed
// (the mutant went uncaught).
func (r Result) Failed() []CheckResult {
	var out []CheckResult
	for _, c := range r.Checks {
		if c.Passed == slices.Contains(r.ExpectFail, c.Name) {
			out = append(out, c)
		}
	}
	return out
}

// Select returns the scenarios carrying every tag in tags (comma
// separated; "" selects all) whose name matches the glob (path.Match
// syntax, "" matches all). A glob without wildcards is an exact name when
// a scenario has that name (so a repro command selects exactly one), and
// otherwise a prefix ("provider/" selects the whole family).
func Select(all []Scenario, tags, glob string) ([]Scenario, error) {
	var want []string
	for _, t := range strings.Split(tags, ",") {
		if t = strings.TrimSpace(t); t != "" {
			if !slices.Contains(knownTags, t) {
				return nil, fmt.Errorf("unknown tag %q (known: %v)", t, knownTags)
			}
			want = append(want, t)
		}
	}
	if glob != "" {
		if _, err := path.Match(glob, ""); err != nil {
			return nil, fmt.Errorf("name glob %q: %w", glob, err)
		}
	}
	exact := false
	for _, s := range all {
		exact = exact || s.Name == glob
	}
	var out []Scenario
	for _, s := range all {
		ok := true
		for _, t := range want {
			ok = ok && slices.Contains(s.Tags, t)
		}
		if glob != "" {
			m, _ := path.Match(glob, s.Name)
			prefix := !exact && !strings.ContainsAny(glob, "*?[") && strings.HasPrefix(s.Name, glob)
			ok = ok && (m || prefix)
		}
		if ok {
			out = append(out, s)
		}
	}
	return out, nil
}

// RunAll runs scenarios, Parallel at a time, and returns the results in
// the scenarios' order.
func RunAll(ctx context.Context, scs []Scenario, opts Options) []Result {
	if opts.Parallel < 1 {
		opts.Parallel = 1
	}
	results := make([]Result, len(scs))
	sem := make(chan struct{}, opts.Parallel)
	var wg sync.WaitGroup
	for i := range scs {
		notRun := func() {
			results[i] = Result{Name: scs[i].Name, File: scs[i].File, Dir: scs[i].Dir, Tags: scs[i].Tags,
				Seed: Seed(opts.Seed, scs[i].Name), ExpectFail: scs[i].ExpectFail,
				Error: fmt.Sprintf("not run: the run was interrupted (%v)", context.Cause(ctx))}
		}
		// A select between a free slot and ctx.Done picks either when
		// both are ready: look first, so no cluster starts after an
		// interrupt.
		if ctx.Err() != nil {
			notRun()
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			notRun()
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if opts.OnStart != nil {
				opts.OnStart(scs[i])
			}
			results[i] = Run(ctx, scs[i], opts)
			if opts.OnDone != nil {
				opts.OnDone(results[i])
			}
		})
	}
	wg.Wait()
	ShutdownCentral()
	return results
}

// Run runs one scenario: start a cluster, drive traffic with the fault
// schedule, settle, collect the evidence and judge it.
func Run(ctx context.Context, sc Scenario, opts Options) (res Result) {
	seed := Seed(opts.Seed, sc.Name)
	res = Result{Name: sc.Name, File: sc.File, Dir: sc.Dir, Tags: sc.Tags, Seed: seed, ExpectFail: sc.ExpectFail}
	start := time.Now()
	defer func() { res.Duration = time.Since(start) }()
	// A panic of the runner itself (a check reading evidence it did not
	// expect) fails this scenario; the others still run and the reports
	// are still written. execute's deferred cleanups have run by then.
	defer func() {
		if p := recover(); p != nil {
			res.Passed, res.Checks = false, nil
			res.Error = fmt.Sprintf("runner bug: panic: %v\n%s", p, stack())
		}
	}()
	ctx, cancel := context.WithTimeoutCause(ctx, sc.Timeout.D(), &timeoutError{sc.Timeout.D()})
	defer cancel()
	ev, err := execute(ctx, &sc, seed, opts, &res.Phases)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	res.Checks = judge(&sc, ev)
	res.Passed = verdict(&sc, res.Checks)
	if !res.Passed && opts.Evidence != nil {
		opts.Evidence(res, ev)
	}
	res.Stats = RunStats{Flows: len(ev.Runs), Calls: len(ev.Calls), DroppedArrival: ev.Dropped, Orders: len(ev.view())}
	for _, a := range ev.ackedPayments() {
		if a.call.Op == "create_payment" {
			res.Stats.AckedPayments++
		}
	}
	return res
}

// timeoutError is the cause of a scenario's own timeout (Scenario.Timeout).
type timeoutError struct{ d time.Duration }

func (e *timeoutError) Error() string { return fmt.Sprintf("scenario timeout (%v)", e.d) }

// halted says why a run stopped before its checks, and in which phase:
// the scenario's timeout, or the caller's cancellation (txswitch
// scenarios run on SIGINT or SIGTERM). What was gathered by then is not
// judged: reads cut short would show acknowledged writes as lost and PSP
// charges as unknown to the switch.
func halted(ctx context.Context, phase string) error {
	cause := context.Cause(ctx)
	var te *timeoutError
	if errors.As(cause, &te) {
		return fmt.Errorf("%v during %s", te, phase)
	}
	return fmt.Errorf("interrupted during %s (%v): the checks were not judged", phase, cause)
}

// judge runs the always-on checks and the scenario's expectations.
func judge(sc *Scenario, ev *Evidence) []CheckResult {
	var out []CheckResult
	ev.ServedFloor = servedFloor(sc)
	for _, name := range AlwaysOn {
		out = append(out, alwaysOn[name](ev))
	}
	for _, e := range sc.Expect {
		if r, ok := e.checkExt(ev); ok {
			out = append(out, r)
			continue
		}
		out = append(out, e.check(ev))
	}
	return append(out, extAlwaysOn(sc, ev)...)
}

// verdict: every check passes, except that a scenario with expect_fail
// passes exactly when those checks fail and all others pass.
func verdict(sc *Scenario, checks []CheckResult) bool {
	for _, c := range checks {
		mustFail := slices.Contains(sc.ExpectFail, c.Name)
		if c.Passed == mustFail {
			return false
		}
	}
	for _, name := range sc.ExpectFail {
		found := false
		for _, c := range checks {
			found = found || c.Name == name
		}
		if !found {
			return false
		}
	}
	return true
}

func execute(ctx context.Context, sc *Scenario, seed uint64, opts Options, phases *[]Phase) (*Evidence, error) {
	mark := time.Now()
	phase := func(name string) {
		now := time.Now()
		*phases = append(*phases, Phase{Name: name, Took: now.Sub(mark)})
		mark = now
	}
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	// The central database and disks are prepared in the in-process
	// cluster's configuration before it starts; ext is closed after the
	// cluster has stopped (defers run last-in first-out).
	var ext *extEnv
	t, c, p, err := startTier(ctx, sc, seed, log, func(lcfg *cluster.LocalConfig) error {
		var err error
		ext, err = setupExt(ctx, sc, lcfg)
		return err
	})
	defer ext.close()
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w: %v", halted(ctx, "start"), err)
		}
		return nil, err
	}
	phase("start")
	defer t.close()
	e := &env{sc: sc, seed: seed, t: t, c: c, p: p, hist: &History{}, baseBehaviour: baseBehaviour(sc.Config), admin: &http.Client{Timeout: 10 * time.Second}, ext: ext}
	// Idle keep-alive connections would hold each node's graceful API
	// shutdown for its full drain timeout: close them first (defers run
	// last-in first-out).
	defer e.admin.CloseIdleConnections()
	err = e.tune(ctx)
	if err == nil {
		err = ext.ready(ctx, e)
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w: %v", halted(ctx, "tune"), err)
		}
		return nil, err
	}
	for name, s := range t.sims() {
		if err := s.SetBehaviour(e.baseBehaviour); err != nil {
			return nil, fmt.Errorf("base behaviour of %s: %w", name, err)
		}
	}

	phase("tune")
	// Build every injector before the clock starts, so a bad fault fails
	// the scenario instead of silently not firing.
	faults := make([]chaos.Fault, len(sc.Faults))
	for i, f := range sc.Faults {
		if faults[i], err = faultKinds[f.Kind].build(e, f); err != nil {
			return nil, fmt.Errorf("fault %d (%s): %w", i, f.Kind, err)
		}
	}

	var obs []Observation
	var obsMu sync.Mutex
	octx, ostop := context.WithCancel(ctx)
	var owg sync.WaitGroup
	owg.Go(func() {
		defer e.recovered("the observer")
		observe(octx, e, &obs, &obsMu)
	})
	owg.Go(func() {
		defer e.recovered("the central database's observer")
		ext.observe(octx, e)
	})

	cl := newClient(e, *sc.Traffic.Retries, shapes[sc.Traffic.Shape].concurrentRetries)
	defer cl.close()
	sched := arrivals(sc.Traffic, seed)
	e.start = time.Now()
	end := e.start.Add(sc.Traffic.Duration.D())

	var fwg sync.WaitGroup
	var undoMu sync.Mutex
	undone := make([]bool, len(faults))
	// A fault that could not be undone (a node that does not come back)
	// fails the scenario: otherwise the checks would judge the survivors
	// alone and pass.
	var undoErrs []string
	undo := func(i int) {
		undoMu.Lock()
		defer undoMu.Unlock()
		if undone[i] {
			return
		}
		undone[i] = true
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := faults[i].Undo(uctx); err != nil {
			log.Warn("undo fault", zap.String("scenario", sc.Name), zap.String("kind", sc.Faults[i].Kind), zap.Error(err))
			undoErrs = append(undoErrs, fmt.Sprintf("undo of fault %s (%s) failed: %v", sc.Faults[i].Kind, sc.Faults[i].Target, err))
		}
	}
	for i, f := range sc.Faults {
		fwg.Go(func() {
			defer e.recovered(fmt.Sprintf("fault %d (%s)", i, f.Kind))
			if !sleepUntil(ctx, e.start.Add(f.At.D())) {
				return
			}
			if err := faults[i].Inject(ctx); err != nil {
				log.Warn("inject fault", zap.String("scenario", sc.Name), zap.String("kind", f.Kind), zap.Error(err))
			}
			stop := end
			if f.For > 0 {
				stop = e.start.Add(f.At.D() + f.For.D())
			}
			sleepUntil(ctx, stop)
			undo(i)
		})
	}
	drive(ctx, e, cl, sched, sc.Traffic.Concurrency)
	fwg.Wait()
	for i := len(faults) - 1; i >= 0; i-- {
		undo(i)
	}
	if err := e.panicked(); err != nil {
		ostop()
		owg.Wait()
		return nil, err
	}
	if ctx.Err() != nil {
		ostop()
		owg.Wait()
		return nil, halted(ctx, "traffic")
	}

	phase("traffic")
	if err := t.waitReady(ctx, 20*time.Second); err != nil {
		log.Warn("cluster not ready after the faults", zap.Error(err))
	}
	calls, runs, claims, truncated, dropped := e.hist.snapshot()
	ids := orderIDs(calls)
	settle(ctx, e, ids, sc.Settle.D())
	watch(ctx, sc, maxWatch, func() *Evidence {
		ev := &Evidence{Start: e.start, Ext: &ExtEvidence{Samples: ext.samplesSoFar()}}
		for i, f := range faults {
			ev.Faults = append(ev.Faults, FaultRun{Spec: sc.Faults[i], Events: f.Fired()})
		}
		obsMu.Lock()
		ev.Observations = append([]Observation(nil), obs...)
		obsMu.Unlock()
		return ev
	})
	ostop()
	owg.Wait()
	// One last sample after the cluster was ready and settled: a loaded
	// machine can starve the observer's ticks, and the leader waitReady
	// saw would otherwise go unrecorded (a leader_change judged on the
	// samples before it).
	last := Observation{At: time.Now()}
	e.t.sample(&last)
	obs = append(obs, last)
	if ctx.Err() != nil {
		return nil, halted(ctx, "settle")
	}
	phase("settle")

	ev := &Evidence{Start: e.start, Calls: calls, Runs: runs, Claims: claims, Truncated: truncated, Dropped: dropped,
		Ledgers: map[string][]sim.LedgerEntry{}, Observations: obs}
	for name, s := range t.sims() {
		ev.Ledgers[name] = s.Ledger()
	}
	for i, f := range faults {
		ev.Faults = append(ev.Faults, FaultRun{Spec: sc.Faults[i], Events: f.Fired()})
	}
	ev.Final, ev.FinalTimelines, ev.ReadErrors = readFinal(ctx, e, ids)
	ev.ReadErrors = append(ev.ReadErrors, t.crashes()...)
	ev.ReadErrors = append(ev.ReadErrors, undoErrs...)
	ev.Timelines = timelinesFor(e, sc, ev)
	ev.Members = t.members()
	ev.Ext = ext.collect(ctx, e, ev)
	if ctx.Err() != nil {
		return nil, halted(ctx, "collect")
	}
	if err := e.panicked(); err != nil {
		return nil, err
	}
	phase("collect")
	return ev, nil
}

func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

// get reads one resource from one node, retrying a 503 or no answer a
// few times (the node may still be catching up after a restart).
func (e *env) get(ctx context.Context, node, p string, out any) (int, error) {
	var lastErr error
	// A node restarted by a fault may not know its leader yet: up to 3 s
	// (0.2, 0.4, 0.8 and 1.6 s apart) before a 503 counts. 0.8 s in all
	// was too short for a loaded machine running three scenarios at once.
	wait := 200 * time.Millisecond
	for attempt := 0; attempt < 5; attempt++ {
		if attempt > 0 {
			if !sleepUntil(ctx, time.Now().Add(wait)) {
				break
			}
			wait *= 2
		}
		hr, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+node+p, nil)
		if err != nil {
			return 0, err
		}
		hr.Header.Set("Authorization", "Bearer "+e.t.apiKey())
		resp, err := e.admin.Do(hr)
		if err != nil {
			lastErr = err
			continue
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable {
			lastErr = fmt.Errorf("503 %s", clip(b))
			continue
		}
		if resp.StatusCode == http.StatusOK && out != nil {
			if err := json.Unmarshal(b, out); err != nil {
				return resp.StatusCode, fmt.Errorf("decode %s: %w", p, err)
			}
		}
		return resp.StatusCode, nil
	}
	if lastErr == nil {
		lastErr = errors.New("no answer")
	}
	return 0, lastErr
}

// maxWatch bounds how long the runner observes past the settle for
// expectations whose windows run later; watchEvery is how often it looks
// whether they are met already.
const (
	maxWatch   = 30 * time.Second
	watchEvery = 100 * time.Millisecond
)

// watch keeps the observers running until every timed expectation (see
// watchDeadline) passed on the evidence so far or its window has passed,
// for at most limit. A pass is final: each of these checks judges the
// first sample in its window that shows the event, and later samples
// cannot change which one that is.
func watch(ctx context.Context, sc *Scenario, limit time.Duration, sofar func() *Evidence) {
	stop := time.Now().Add(limit)
	for {
		ev := sofar()
		until := watchDeadline(sc, ev.Faults)
		if until.IsZero() || timedMet(sc, ev) {
			return
		}
		until = minTime(until, stop)
		if !time.Now().Before(until) || !sleepUntil(ctx, minTime(until, time.Now().Add(watchEvery))) {
			return
		}
	}
}

// timedMet reports whether every timed expectation of sc passes on ev.
func timedMet(sc *Scenario, ev *Evidence) bool {
	for _, x := range sc.Expect {
		var r CheckResult
		switch {
		case x.LeaderChange != nil:
			r = expectLeaderChange(ev, *x.LeaderChange)
		case x.BreakerOpen != nil:
			r = expectBreakerOpen(ev, *x.BreakerOpen)
		case x.ExportDrained != nil:
			r = expectExportDrained(ev, *x.ExportDrained)
		case x.CaughtUp != nil:
			r = expectCaughtUp(ev, *x.CaughtUp)
		default:
			continue
		}
		if !r.Passed {
			return false
		}
	}
	return true
}

// watchDeadline is when the runner may stop observing the cluster: once
// every expectation that looks for an event within some time of a fault (a
// new leader or an open breaker after its injection, a drained export or a
// restarted node caught up after its undo) has had all of that time. The
// traffic often ends first (a leader stop at 1 s, judged within 4 s, in 4 s
// of traffic), and a sample that was never taken cannot show an event.
// Zero when no expectation needs it.
func watchDeadline(sc *Scenario, runs []FaultRun) time.Time {
	ev := &Evidence{Faults: runs}
	var until time.Time
	later := func(t time.Time, ok bool, within Duration) {
		if ok && t.Add(within.D()).After(until) {
			until = t.Add(within.D())
		}
	}
	for _, x := range sc.Expect {
		switch {
		case x.LeaderChange != nil:
			t, ok := ev.faultStart("leader")
			later(t, ok, x.LeaderChange.Within)
		case x.BreakerOpen != nil:
			t, ok := ev.faultStart(x.BreakerOpen.Provider)
			later(t, ok, x.BreakerOpen.Within)
		case x.ExportDrained != nil:
			_, back, ok := ev.faultWindow(isDBFault)
			later(back, ok, x.ExportDrained.Within)
		case x.CaughtUp != nil:
			_, back, ok := ev.faultWindow(isDiskFault)
			later(back, ok, x.CaughtUp.Within)
		}
	}
	return until
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// settle waits (bounded) until no known payment is in doubt or pending:
// the resolver and the simulated banks finish what the faults left open.
func settle(ctx context.Context, e *env, ids []string, limit time.Duration) {
	deadline := time.Now().Add(limit)
	open := ids
	for len(open) > 0 && time.Now().Before(deadline) {
		var still []string
		for _, id := range open {
			lead := e.t.leaderAddr()
			if lead == "" {
				still = append(still, id)
				continue
			}
			var o txswitch.Order
			code, err := e.get(ctx, lead, "/v1/orders/"+id, &o)
			if err != nil || code != http.StatusOK {
				if code != http.StatusNotFound {
					still = append(still, id)
				}
				continue
			}
			for i := range o.Payments {
				if unsettled(&o.Payments[i]) {
					still = append(still, id)
					break
				}
			}
		}
		open = still
		if len(open) > 0 && !sleepUntil(ctx, time.Now().Add(200*time.Millisecond)) {
			return
		}
	}
}

// finalRereads bounds how often readFinal reads again the orders the nodes
// disagree on, finalRereadGap apart.
const (
	finalRereads   = 3
	finalRereadGap = 300 * time.Millisecond
)

// readFinal reads every known order, and its timeline, from every running
// node (the timeline is replicated state too: a node that applied an entry
// twice shows it there first). Reads go
// through each node's read barrier, so two nodes can only disagree if a
// write committed between their reads (work the settle did not wait for)
// or if their states really diverged. The orders that differ are read
// again a few times: a commit in between shows the same on every node the
// second time, a divergence stays and replicas_agree reports it.
func readFinal(ctx context.Context, e *env, ids []string) (map[string]map[string]*txswitch.Order, map[string]map[string][]txswitch.TimelineEvent, []string) {
	addrs := e.t.runningAddrs()
	out, tls, errs := readOrders(ctx, e, addrs, ids)
	for range finalRereads {
		diff := differing(out, tls, ids)
		if len(diff) == 0 || !sleepUntil(ctx, time.Now().Add(finalRereadGap)) {
			break
		}
		again, tls2, errs2 := readOrders(ctx, e, addrs, diff)
		for addr, byID := range again {
			maps.Copy(out[addr], byID)
		}
		for addr, byID := range tls2 {
			for _, id := range diff {
				delete(tls[addr], id)
			}
			maps.Copy(tls[addr], byID)
		}
		errs = append(errs, errs2...)
	}
	sort.Strings(errs)
	return out, tls, errs
}

// differing returns the ids whose order or timeline is not the same on
// every node.
func differing(final map[string]map[string]*txswitch.Order, timelines map[string]map[string][]txswitch.TimelineEvent, ids []string) []string {
	var out []string
	for _, id := range ids {
		var ref []byte
		for addr, byID := range final {
			b, _ := json.Marshal(byID[id])
			t, _ := json.Marshal(timelines[addr][id])
			b = append(b, t...)
			if ref == nil {
				ref = b
			} else if !bytes.Equal(b, ref) {
				out = append(out, id)
				break
			}
		}
	}
	return out
}

func readOrders(ctx context.Context, e *env, addrs, ids []string) (map[string]map[string]*txswitch.Order, map[string]map[string][]txswitch.TimelineEvent, []string) {
	out := map[string]map[string]*txswitch.Order{}
	tls := map[string]map[string][]txswitch.TimelineEvent{}
	var errs []string
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, addr := range addrs {
		byID := map[string]*txswitch.Order{}
		tlByID := map[string][]txswitch.TimelineEvent{}
		out[addr], tls[addr] = byID, tlByID
		for _, id := range ids {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				defer e.recovered("reading order " + id + " back")
				var o txswitch.Order
				code, err := e.get(ctx, addr, "/v1/orders/"+id, &o)
				var tl txswitch.TimelineResponse
				tlCode := 0
				var tlErr error
				if err == nil && code == http.StatusOK {
					tlCode, tlErr = e.get(ctx, addr, "/v1/orders/"+id+"/timeline", &tl)
				}
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err != nil:
					errs = append(errs, fmt.Sprintf("read order %s from node %s: %v", id, addr, err))
				case code == http.StatusOK:
					byID[id] = &o
				case code == http.StatusNotFound:
					byID[id] = nil
				default:
					errs = append(errs, fmt.Sprintf("read order %s from node %s: status %d", id, addr, code))
				}
				switch {
				case tlErr != nil:
					errs = append(errs, fmt.Sprintf("read the timeline of order %s from node %s: %v", id, addr, tlErr))
				case tlCode == http.StatusOK:
					tlByID[id] = tl.Events
				case tlCode != 0:
					errs = append(errs, fmt.Sprintf("read the timeline of order %s from node %s: status %d", id, addr, tlCode))
				}
			})
		}
	}
	wg.Wait()
	return out, tls, errs
}

// timelinesFor picks, for the orders the expectations judge by their
// timeline, the timeline readFinal already read: the leader's, or any
// node's when the leader has none (replicas_agree compares them).
func timelinesFor(e *env, sc *Scenario, ev *Evidence) map[string][]txswitch.TimelineEvent {
	out := map[string][]txswitch.TimelineEvent{}
	lead := e.t.leaderAddr()
	for _, x := range sc.Expect {
		if x.TimelineEvent == nil {
			continue
		}
		for _, id := range timelineOrders(ev, *x.TimelineEvent) {
			if tl, ok := ev.FinalTimelines[lead][id]; ok {
				out[id] = tl
				continue
			}
			for _, n := range ev.nodes() {
				if tl, ok := ev.FinalTimelines[n][id]; ok {
					out[id] = tl
					break
				}
			}
		}
	}
	return out
}
