package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/txswitch/txswitch/scenarios"
)

func init() {
	register("scenarios", "list and run the scenario suite (in-process or real-process clusters with faults)", runScenarios)
}

func runScenarios(args []string) error {
	if len(args) == 0 || (args[0] != "run" && args[0] != "list") {
		fmt.Fprint(os.Stderr, "Usage: txswitch scenarios run|list [flags]\n\n"+
			"  run   run the selected scenarios and judge them (exit 1 on any failure)\n"+
			"  list  show what a filter selects (-v: also the registries of shapes, flows, faults and checks)\n")
		return errUsage
	}
	sub := args[0]
	fs := newFlags("scenarios "+sub, "[flags]")
	tags := fs.String("tags", "", "select scenarios carrying all these tags (comma separated: smoke, chaos, regression...)")
	name := fs.String("name", "", "select scenarios whose name matches this glob (a plain string matches as a prefix)")
	dir := fs.String("dir", "", "load scenario files from this directory instead of the built-in ones")
	verbose := fs.Bool("v", false, "list: print the registries; run: print every check's note")
	seed := fs.Uint64("seed", 1, "run seed: each scenario's seed is hash(seed, name)")
	parallel := fs.Int("parallel", 2, "scenarios run at once")
	junit := fs.String("junit", "", "write a JUnit XML report to this file")
	jsonOut := fs.String("json", "", "write the full results (checks, evidence notes) as JSON to this file")
	logLevel := fs.String("log-level", "", "log the clusters at this level to stderr (default: silent)")
	evidenceDir := fs.String("evidence", "", "write the full evidence of each failed scenario as JSON into this directory")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	// 0 or less ran one at a time without a word (go test's -parallel 0
	// means "by CPU count"); more than maxParallel clusters at once
	// starve each other into timeouts on any machine this runs on.
	if *parallel < 1 || *parallel > maxParallel {
		fmt.Fprintf(fs.Output(), "--parallel %d: want 1..%d\n", *parallel, maxParallel)
		return errUsage
	}
	var all []scenarios.Scenario
	var err error
	if *dir != "" {
		all, err = scenarios.Load(os.DirFS(*dir), ".")
	} else {
		all, err = scenarios.LoadDefault()
	}
	if err != nil {
		return err
	}
	sel, err := scenarios.Select(all, *tags, *name)
	if err != nil {
		return err
	}
	if sub == "list" {
		for _, s := range sel {
			fmt.Printf("%-60s %v n=%d %v\n", s.Name, s.Tags, s.Topology.Nodes, s.Traffic.Duration.D())
		}
		fmt.Printf("%d of %d scenarios selected\n", len(sel), len(all))
		if *verbose {
			fmt.Print("\n" + scenarios.Registry())
		}
		return nil
	}
	if len(sel) == 0 {
		return fmt.Errorf("no scenario matches tags %q name %q", *tags, *name)
	}
	// The reports are written before the run, with every scenario not
	// finished, and again as each one ends: a path that cannot be written
	// fails now, not after the whole suite ran; a report left from an
	// earlier run cannot pass for this one's; and a runner killed (SIGKILL
	// after a CI timeout's grace, the OOM killer) or crashed leaves the
	// results so far, with the rest saying they did not finish.
	progress := make([]scenarios.Result, len(sel))
	seen := make(map[string]int, len(sel))
	for i, s := range sel {
		progress[i] = scenarios.Result{Name: s.Name, File: s.File, Dir: s.Dir, Tags: s.Tags, Seed: scenarios.Seed(*seed, s.Name),
			ExpectFail: s.ExpectFail, Error: "not finished: the runner stopped before this scenario ended (killed or crashed)"}
		seen[s.Name] = i
	}
	writeReports := func(results []scenarios.Result) error {
		var errs []error
		if *junit != "" {
			errs = append(errs, writeAtomic(*junit, func(w io.Writer) error { return scenarios.WriteJUnit(w, results, *seed) }))
		}
		if *jsonOut != "" {
			errs = append(errs, writeAtomic(*jsonOut, func(w io.Writer) error { return scenarios.WriteJSON(w, results) }))
		}
		return errors.Join(errs...)
	}
	if err := writeReports(progress); err != nil {
		return err
	}
	opts := scenarios.Options{Seed: *seed, Parallel: *parallel}
	// The process tier runs this very binary as `txswitch node`.
	scenarios.ProcessBinary = os.Executable
	if *logLevel != "" {
		if opts.Logger, err = newLogger(*logLevel, true); err != nil {
			return err
		}
	}
	if *evidenceDir != "" {
		if err := os.MkdirAll(*evidenceDir, 0o755); err != nil {
			return fmt.Errorf("evidence dir: %w", err)
		}
		opts.Evidence = func(r scenarios.Result, ev *scenarios.Evidence) {
			path := filepath.Join(*evidenceDir, strings.ReplaceAll(r.Name, "/", "_")+".json")
			if err := writeFile(path, func(f *os.File) error {
				enc := json.NewEncoder(f)
				enc.SetIndent("", " ")
				return enc.Encode(ev)
			}); err != nil {
				fmt.Fprintf(os.Stderr, "evidence of %s: %v\n", r.Name, err)
			}
		}
	}
	var mu sync.Mutex
	total := len(sel)
	doneN := 0
	opts.OnDone = func(r scenarios.Result) {
		mu.Lock()
		defer mu.Unlock()
		if i, ok := seen[r.Name]; ok {
			progress[i] = r
			if err := writeReports(progress); err != nil {
				fmt.Fprintf(os.Stderr, "reports after %s: %v\n", r.Name, err)
			}
		}
		doneN++
		st := "pass"
		if !r.Passed {
			st = "FAIL"
		}
		fmt.Printf("[%d/%d] %s %-60s %6.1fs seed=%d flows=%d paid=%d\n", doneN, total, st, r.Name, r.Duration.Seconds(), r.Seed, r.Stats.Flows, r.Stats.AckedPayments)
		if *verbose {
			fmt.Printf("      phases: %v\n", r.Phases)
			for _, c := range r.Checks {
				fmt.Printf("      %-5v %-20s %s\n", c.Passed, c.Name, c.Note)
			}
		}
		if !r.Passed {
			fmt.Print(scenarios.FailureReport(r, *seed))
		}
	}
	// SIGINT (Ctrl-C) and SIGTERM (what CI runners, docker stop and
	// timeout(1) send to cancel a job) stop the running scenarios, whose
	// clusters, processes and databases are cleaned up, and the reports
	// are still written. A second signal quits at once.
	ctx, stop := signal.NotifyContext(context.Background(), stopSignals...)
	defer stop()
	go func() {
		<-ctx.Done()
		stop()
		if context.Cause(ctx) != context.Canceled {
			fmt.Fprintf(os.Stderr, "\n%v: stopping the running scenarios and writing the reports (signal again to quit at once)\n", context.Cause(ctx))
		}
	}()
	start := time.Now()
	results := scenarios.RunAll(ctx, sel, opts)
	fmt.Println()
	_, failed := scenarios.Summary(os.Stdout, results)
	fmt.Printf("total time %v, run seed %d\n", time.Since(start).Round(time.Millisecond), *seed)
	mu.Lock()
	err = writeReports(results)
	mu.Unlock()
	if err != nil {
		return err
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%v: %d scenario(s) failed or not run", context.Cause(ctx), failed)
	}
	if failed > 0 {
		return errors.New(fmt.Sprint(failed, " scenario(s) failed"))
	}
	return nil
}

// maxParallel bounds --parallel.
const maxParallel = 64

// stopSignals interrupt a scenario run.
var stopSignals = []os.Signal{os.Interrupt, syscall.SIGTERM}

// writeAtomic writes path through a temporary file in its directory,
// renamed over it: a reader (or a runner killed meanwhile) sees the old
// report or the new one, never half of one.
func writeAtomic(path string, write func(io.Writer) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	err = f.Chmod(0o644)
	if err == nil {
		err = write(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func writeFile(path string, write func(*os.File) error) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}
