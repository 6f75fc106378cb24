package scenarios

import (
	"bytes"
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestFailureReportShowsEvidenceAndTheReproCommand(t *testing.T) {
	r := Result{Name: "provider/x", Seed: 42, Duration: time.Second, Checks: []CheckResult{
		{Name: CheckNeverChargedTwice, Violations: []string{"payment pay_1 charged 2 times: psp_a seq 1; psp_b seq 3"}},
		{Name: CheckSettled, Passed: true},
	}}
	out := FailureReport(r, 7)
	for _, want := range []string{"FAIL provider/x (seed 42", "check never_charged_twice failed", "pay_1 charged 2 times",
		"reproduce: go run ./cmd/txswitch scenarios run --name 'provider/x' --seed 7"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "settled") {
		t.Errorf("a passing check is reported as failed:\n%s", out)
	}
	// A mutant whose check passed: the report says the breakage went uncaught.
	m := Result{Name: "mutant/x", ExpectFail: []string{CheckNeverChargedTwice}, Checks: []CheckResult{{Name: CheckNeverChargedTwice, Passed: true}}}
	if out := FailureReport(m, 1); !strings.Contains(out, "did not catch") {
		t.Errorf("uncaught mutant not reported:\n%s", out)
	}
}

func TestJUnitAndSummary(t *testing.T) {
	results := []Result{
		{Name: "a/ok", Passed: true, Duration: time.Second},
		{Name: "b/bad", Checks: []CheckResult{{Name: CheckMoneyAddsUp, Violations: []string{"order ord_1: refunded 5 > captured 1"}}}},
	}
	var buf bytes.Buffer
	if err := WriteJUnit(&buf, results, 1); err != nil {
		t.Fatal(err)
	}
	var doc junitSuites
	if err := xml.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatalf("invalid XML: %v\n%s", err, buf.String())
	}
	s := doc.Suites[0]
	if s.Tests != 2 || s.Failures != 1 || s.Cases[1].Failure == nil || !strings.Contains(s.Cases[1].Failure.Message, CheckMoneyAddsUp) {
		t.Fatalf("junit %+v", s)
	}
	buf.Reset()
	if p, f := Summary(&buf, results); p != 1 || f != 1 || !strings.Contains(buf.String(), "1 passed, 1 failed") {
		t.Fatalf("summary %d %d:\n%s", p, f, buf.String())
	}
}

// The reproduce command reruns the same definition: a scenario loaded
// from a directory (txswitch scenarios run --dir, which passes
// os.DirFS(dir)) is rerun from that directory, a built-in one without
// --dir (regression: --dir was left out, so the command ran the built-in
// scenario of that name, or none).
func TestReproCommandNamesTheDefinitionsDir(t *testing.T) {
	tmp := t.TempDir()
	doc := "name: mine/x\ntags: [smoke]\ntraffic: {rate: 5, duration: 1s, mix: {card_pay: 1}}\n"
	if err := os.WriteFile(filepath.Join(tmp, "a.yaml"), []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(tmp, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "sub", "b.yaml"), []byte(strings.Replace(doc, "mine/x", "mine/y", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	first := func(scs []Scenario, err error) Scenario {
		t.Helper()
		if err != nil || len(scs) == 0 {
			t.Fatalf("load: %v (%d scenarios)", err, len(scs))
		}
		return scs[0]
	}
	cases := []struct {
		name      string
		sc        Scenario
		want, not string
	}{
		{"built-in definition", first(LoadDefault()), "scenarios run --name '", "--dir"},
		{"loaded with --dir", first(Load(os.DirFS(tmp), ".")), "scenarios run --dir '" + tmp + "' --name 'mine/x' --seed 7", ""},
		{"loaded from a subdirectory", first(Load(os.DirFS(tmp), "sub")), "--dir '" + filepath.Join(tmp, "sub") + "' --name 'mine/y'", ""},
		{"a directory with a quote in its name", Scenario{Name: "mine/x", Dir: "/tmp/it's"}, `--dir '/tmp/it'\''s' --name 'mine/x'`, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := Result{Name: tc.sc.Name, Dir: tc.sc.Dir, Seed: 3, Checks: []CheckResult{{Name: CheckSettled, Violations: []string{"x"}}}}
			out := FailureReport(r, 7)
			if !strings.Contains(out, "  reproduce: go run ./cmd/txswitch ") || !strings.Contains(out, tc.want) {
				t.Fatalf("report lacks %q:\n%s", tc.want, out)
			}
			if tc.not != "" && strings.Contains(out, tc.not) {
				t.Fatalf("report has %q:\n%s", tc.not, out)
			}
		})
	}
}

// A mutant that went uncaught fails with its expect_fail check passed: the
// JUnit message says so instead of calling that check failed (which read
// as a real double charge or lost write in the CI's summary).
func TestJUnitMessageOfAnUncaughtMutant(t *testing.T) {
	r := Result{Name: "mutant/x", ExpectFail: []string{CheckNeverChargedTwice}, Checks: []CheckResult{
		{Name: CheckNeverChargedTwice, Passed: true}, {Name: CheckSettled, Violations: []string{"x"}}}}
	var buf bytes.Buffer
	if err := WriteJUnit(&buf, []Result{r}, 1); err != nil {
		t.Fatal(err)
	}
	var doc junitSuites
	if err := xml.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	msg := doc.Suites[0].Cases[0].Failure.Message
	want := "failed checks: settled; checks that passed but this mutant needs to fail (the breakage went uncaught): never_charged_twice"
	if msg != want {
		t.Fatalf("message %q, want %q", msg, want)
	}
}
