package main

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// longScenario is a scenario file whose traffic lasts far longer than the
// tests below wait.
const longScenario = `name: test/long
tags: [regression]
traffic: {rate: 2, duration: 60s, mix: {card_pay: 1}}
`

func scenarioDir(t *testing.T) string {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "long.yaml"), []byte(longScenario), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// SIGTERM, what a CI runner sends to cancel a job, stops the run as
// Ctrl-C does: the scenario is stopped and cleaned up and the JUnit report
// says it was interrupted. Before, the runner died at once: no report, and
// its clusters' and PostgreSQL's temp dirs were left behind.
func TestScenariosRunStopsOnSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	dir := scenarioDir(t)
	out := filepath.Join(t.TempDir(), "out.xml")
	timer := time.AfterFunc(3*time.Second, func() { _ = syscall.Kill(os.Getpid(), syscall.SIGTERM) })
	defer timer.Stop()
	start := time.Now()
	err := runScenarios([]string{"run", "--dir", dir, "--junit", out})
	if err == nil || !strings.Contains(err.Error(), "terminated") {
		t.Fatalf("err %v: want the run to fail naming the signal", err)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("the interrupted run took %v", took)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Suites []struct {
			Failures int `xml:"failures,attr"`
			Cases    []struct {
				Name    string `xml:"name,attr"`
				Failure *struct {
					Message string `xml:"message,attr"`
				} `xml:"failure"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(b, &rep); err != nil {
		t.Fatalf("junit: %v\n%s", err, b)
	}
	if len(rep.Suites) != 1 || len(rep.Suites[0].Cases) != 1 || rep.Suites[0].Failures != 1 ||
		rep.Suites[0].Cases[0].Failure == nil || !strings.Contains(rep.Suites[0].Cases[0].Failure.Message, "interrupted") {
		t.Fatalf("junit does not report the interrupted scenario:\n%s", b)
	}
}

// A report path that cannot be written fails the run before any scenario
// starts, not after the whole suite ran (and its results were lost).
func TestScenariosRunChecksReportPathsFirst(t *testing.T) {
	dir := scenarioDir(t)
	bad := filepath.Join(t.TempDir(), "missing", "out")
	for _, flag := range []string{"--junit", "--json"} {
		start := time.Now()
		err := runScenarios([]string{"run", "--dir", dir, flag, bad})
		if err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("%s %s: err %v, want one naming the path", flag, bad, err)
		}
		if took := time.Since(start); took > 10*time.Second {
			t.Errorf("%s %s: the run went on for %v before the path was checked", flag, bad, took)
		}
	}
}

// --parallel outside 1..maxParallel is a usage error (0 and below ran
// one scenario at a time without a word).
func TestScenariosParallelBounds(t *testing.T) {
	dir := scenarioDir(t)
	for _, p := range []string{"0", "-3", "65"} {
		if err := runScenarios([]string{"list", "--dir", dir, "--parallel", p}); !errors.Is(err, errUsage) {
			t.Errorf("--parallel %s: err %v, want a usage error", p, err)
		}
	}
	if err := runScenarios([]string{"list", "--dir", dir, "--parallel", "4"}); err != nil {
		t.Errorf("--parallel 4: %v", err)
	}
}

// TestScenariosHelperRun is the child of TestScenariosReportsSurviveAKill:
// a scenario run in a process of its own, which the parent kills.
func TestScenariosHelperRun(t *testing.T) {
	args := os.Getenv("TXSWITCH_TEST_SCENARIOS_ARGS")
	if args == "" {
		t.Skip("run by TestScenariosReportsSurviveAKill")
	}
	_ = runScenarios(strings.Split(args, "\n"))
}

// A runner killed outright (SIGKILL after a CI timeout's grace, the OOM
// killer) leaves reports with the scenarios that ended and the others
// marked not finished. Before, the reports were written only at the end:
// nothing was left (or an earlier run's report, or an empty file).
func TestScenariosReportsSurviveAKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	dir := scenarioDir(t)
	short := "name: test/short\ntags: [regression]\ntraffic: {rate: 5, duration: 1s, mix: {card_pay: 1}}\n"
	if err := os.WriteFile(filepath.Join(dir, "short.yaml"), []byte(short), 0o644); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	junit, js := filepath.Join(out, "out.xml"), filepath.Join(out, "out.json")
	cmd := exec.Command(os.Args[0], "-test.run=^TestScenariosHelperRun$")
	cmd.Env = append(os.Environ(), "TMPDIR="+t.TempDir(), "TXSWITCH_TEST_SCENARIOS_ARGS="+strings.Join(
		[]string{"run", "--dir", dir, "--parallel", "2", "--junit", junit, "--json", js}, "\n"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	type report struct {
		Suites []struct {
			Cases []struct {
				Name    string `xml:"name,attr"`
				Failure *struct {
					Message string `xml:"message,attr"`
				} `xml:"failure"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	// Wait for test/short to pass (it takes a few seconds; test/long's
	// traffic lasts a minute), then kill the runner.
	var rep report
	deadline := time.Now().Add(45 * time.Second)
	for {
		rep = report{}
		b, _ := os.ReadFile(junit)
		if xml.Unmarshal(b, &rep) == nil && len(rep.Suites) == 1 && len(rep.Suites[0].Cases) == 2 && rep.Suites[0].Cases[1].Failure == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no report with test/short passed within 45 s:\n%s", b)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	b, err := os.ReadFile(junit)
	if err != nil {
		t.Fatal(err)
	}
	rep = report{}
	if err := xml.Unmarshal(b, &rep); err != nil {
		t.Fatalf("junit after the kill: %v\n%s", err, b)
	}
	c := rep.Suites[0].Cases
	if c[0].Name != "test/long" || c[0].Failure == nil || !strings.Contains(c[0].Failure.Message, "not finished") ||
		c[1].Name != "test/short" || c[1].Failure != nil {
		t.Fatalf("junit after the kill:\n%s", b)
	}
	var res []struct {
		Name   string `json:"name"`
		Passed bool   `json:"passed"`
		Seed   uint64 `json:"seed"`
		Error  string `json:"error"`
	}
	b, err = os.ReadFile(js)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &res); err != nil || len(res) != 2 || res[0].Passed || res[0].Seed == 0 || !strings.Contains(res[0].Error, "not finished") || !res[1].Passed {
		t.Fatalf("json after the kill (%v):\n%s", err, b)
	}
}
