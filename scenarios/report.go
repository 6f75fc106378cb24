package scenarios

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// maxShown bounds the violations printed per failed check.
const maxShown = 8

// ReproCommand is the one command that reruns exactly this scenario:
// the same definition (--dir when it was loaded from a directory, dir),
// the same name and the same run seed.
func ReproCommand(name, dir string, runSeed uint64) string {
	cmd := "go run ./cmd/txswitch scenarios run"
	if dir != "" {
		cmd += " --dir " + shellQuote(dir)
	}
	return fmt.Sprintf("%s --name %s --seed %d", cmd, shellQuote(name), runSeed)
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// FailureReport explains a failed scenario: each failed check with its
// evidence, and the command that reproduces it.
func FailureReport(r Result, runSeed uint64) string {
	var b strings.Builder
	fmt.Fprintf(&b, "FAIL %s (seed %d, %v)\n", r.Name, r.Seed, r.Duration.Round(time.Millisecond))
	if r.Error != "" {
		fmt.Fprintf(&b, "  error: %s\n", r.Error)
	}
	for _, c := range r.Failed() {
		if c.Passed {
			fmt.Fprintf(&b, "  check %s PASSED but this mutant scenario needs it to fail: the checker did not catch the breakage (%s)\n", c.Name, c.Note)
			continue
		}
		fmt.Fprintf(&b, "  check %s failed", c.Name)
		if c.Note != "" {
			fmt.Fprintf(&b, " (%s)", c.Note)
		}
		b.WriteString(":\n")
		for i, v := range c.Violations {
			if i == maxShown {
				fmt.Fprintf(&b, "    … and %d more\n", len(c.Violations)-maxShown)
				break
			}
			fmt.Fprintf(&b, "    - %s\n", v)
		}
	}
	fmt.Fprintf(&b, "  reproduce: %s\n", ReproCommand(r.Name, r.Dir, runSeed))
	return b.String()
}

// Summary writes the table of results.
func Summary(w io.Writer, results []Result) (passed, failed int) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RESULT\tSCENARIO\tTIME\tSEED\tFLOWS\tPAID")
	for _, r := range results {
		st := "pass"
		if r.Passed {
			passed++
		} else {
			st = "FAIL"
			failed++
		}
		fmt.Fprintf(tw, "%s\t%s\t%v\t%d\t%d\t%d\n", st, r.Name, r.Duration.Round(10*time.Millisecond), r.Seed, r.Stats.Flows, r.Stats.AckedPayments)
	}
	tw.Flush()
	fmt.Fprintf(w, "%d passed, %d failed\n", passed, failed)
	return passed, failed
}

// WriteJSON writes the results as JSON.
func WriteJSON(w io.Writer, results []Result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(results)
}

type junitSuites struct {
	XMLName xml.Name     `xml:"testsuites"`
	Suites  []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Time     float64     `xml:"time,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      float64       `xml:"time,attr"`
	Failure   *junitFailure `xml:"failure,omitempty"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Text    string `xml:",chardata"`
}

// failureMessage names the checks that decided against r: those that
// failed, and apart from them those a mutant scenario needed to fail
// that passed (its breakage went uncaught, nothing failed).
func failureMessage(r Result) string {
	var failed, uncaught []string
	for _, f := range r.Failed() {
		if f.Passed {
			uncaught = append(uncaught, f.Name)
		} else {
			failed = append(failed, f.Name)
		}
	}
	var parts []string
	if len(failed) > 0 {
		parts = append(parts, "failed checks: "+strings.Join(failed, ", "))
	}
	if len(uncaught) > 0 {
		parts = append(parts, "checks that passed but this mutant needs to fail (the breakage went uncaught): "+strings.Join(uncaught, ", "))
	}
	if len(parts) == 0 {
		// verdict also fails a mutant whose expect_fail names a check
		// that did not run.
		return "expect_fail names checks that did not run: " + strings.Join(r.ExpectFail, ", ")
	}
	return strings.Join(parts, "; ")
}

// WriteJUnit writes the results as a JUnit XML report.
func WriteJUnit(w io.Writer, results []Result, runSeed uint64) error {
	s := junitSuite{Name: "txswitch-scenarios"}
	for _, r := range results {
		c := junitCase{Name: r.Name, Classname: "scenarios." + strings.SplitN(r.Name, "/", 2)[0], Time: r.Duration.Seconds()}
		if !r.Passed {
			s.Failures++
			msg := r.Error
			if msg == "" {
				msg = failureMessage(r)
			}
			c.Failure = &junitFailure{Message: msg, Text: FailureReport(r, runSeed)}
		}
		s.Tests++
		s.Time += r.Duration.Seconds()
		s.Cases = append(s.Cases, c)
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	return enc.Encode(junitSuites{Suites: []junitSuite{s}})
}
