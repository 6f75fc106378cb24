package scenarios

import (
	"bytes"
	"encoding/xml"
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
