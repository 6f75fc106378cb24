package scenarios

import (
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// Custom test flags (not go build tags):
//
//	go test ./scenarios/ -run TestScenarios -args -tags=smoke
var (
	flagTags     = flag.String("tags", "", "run the scenarios carrying all these tags (comma separated)")
	flagName     = flag.String("name", "", "run the scenarios whose name matches this glob (or prefix)")
	flagSeed     = flag.Uint64("seed", 1, "run seed; each scenario's seed is hash(seed, name)")
	flagParallel = flag.Int("parallel", 0, "scenarios at once (0: by CPU count)")
	flagEvidence = flag.String("evidence", "", "write the full evidence of each failed scenario as JSON into this directory")
)

// TestScenarios runs the selected scenarios, one subtest each. Without
// -tags or -name it runs nothing (the suite is opt-in: go test ./... stays
// fast).
func TestScenarios(t *testing.T) {
	if *flagTags == "" && *flagName == "" {
		t.Skip("select scenarios with -args -tags=smoke (or -name=GLOB)")
	}
	all, err := LoadDefault()
	if err != nil {
		t.Fatal(err)
	}
	sel, err := Select(all, *flagTags, *flagName)
	if err != nil {
		t.Fatal(err)
	}
	if len(sel) == 0 {
		t.Fatalf("no scenario matches tags %q name %q", *flagTags, *flagName)
	}
	par := *flagParallel
	if par <= 0 {
		par = max(2, runtime.NumCPU()+1)
	}
	sem := make(chan struct{}, par)
	t.Run("group", func(t *testing.T) {
		for _, sc := range sel {
			t.Run(sc.Name, func(t *testing.T) {
				t.Parallel()
				sem <- struct{}{}
				defer func() { <-sem }()
				opts := Options{Seed: *flagSeed}
				if *flagEvidence != "" {
					opts.Evidence = func(r Result, ev *Evidence) { writeEvidence(t, *flagEvidence, r, ev) }
				}
				r := Run(context.Background(), sc, opts)
				if !r.Passed {
					t.Error(FailureReport(r, *flagSeed))
				} else {
					t.Logf("passed in %v: %d flows, %d acked payments", r.Duration.Round(1e6), r.Stats.Flows, r.Stats.AckedPayments)
				}
			})
		}
	})
}

func writeEvidence(t *testing.T, dir string, r Result, ev *Evidence) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Log(err)
		return
	}
	b, err := json.MarshalIndent(ev, "", " ")
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, strings.ReplaceAll(r.Name, "/", "_")+".json"), b, 0o644)
	}
	if err != nil {
		t.Logf("write evidence: %v", err)
	}
}
