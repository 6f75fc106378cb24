package scenarios

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"
)

const okDoc = `name: t/{provider}/n{nodes}
tags: [smoke]
topology: {nodes: {nodes}}
traffic: {rate: 5, duration: 1s, mix: {card_pay: 1}}
faults:
  - {kind: provider_unavailable, target: "{provider}", at: 100ms, for: 200ms}
expect:
  - breaker_open: {provider: "{provider}", within: 1s}
matrix:
  provider: [psp_a, psp_b]
  nodes: [3, 5]
`

func TestParseExpandsTheMatrixWithStableNames(t *testing.T) {
	scs, err := Parse("t.yaml", []byte(okDoc))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range scs {
		names = append(names, s.Name)
	}
	// Variables vary in name order (nodes, then provider), values in file order.
	want := "t/psp_a/n3 t/psp_b/n3 t/psp_a/n5 t/psp_b/n5"
	if got := strings.Join(names, " "); got != want {
		t.Fatalf("names %q, want %q", got, want)
	}
	if scs[2].Topology.Nodes != 5 || scs[1].Faults[0].Target != "psp_b" || scs[1].Expect[0].BreakerOpen.Provider != "psp_b" {
		t.Fatalf("substitution: %+v", scs[1])
	}
	// Defaults are filled.
	if scs[0].Traffic.Concurrency != 64 || *scs[0].Traffic.Retries != 5 || scs[0].Config.ProviderTimeout == 0 || scs[0].Settle == 0 {
		t.Fatalf("defaults not filled: %+v", scs[0])
	}
}

func TestParseRejects(t *testing.T) {
	base := "name: x\ntags: [smoke]\ntraffic: {rate: 5, duration: 1s, mix: {card_pay: 1}}\n"
	cases := []struct {
		name, doc, want string
	}{
		{"unknown top-level key", base + "surprise: 1\n", "field surprise not found"},
		{"unknown nested key", "name: x\ntags: [smoke]\ntraffic: {rate: 5, duration: 1s, mix: {card_pay: 1}, burst: 2}\n", "field burst not found"},
		{"unknown tag", "name: x\ntags: [smokey]\ntraffic: {rate: 5, duration: 1s, mix: {card_pay: 1}}\n", "unknown tag"},
		{"no tags", "name: x\ntraffic: {rate: 5, duration: 1s, mix: {card_pay: 1}}\n", "no tags"},
		{"unknown flow", "name: x\ntags: [smoke]\ntraffic: {rate: 5, duration: 1s, mix: {teleport: 1}}\n", "unknown flow"},
		{"unknown shape", "name: x\ntags: [smoke]\ntraffic: {shape: zigzag, rate: 5, duration: 1s, mix: {card_pay: 1}}\n", "unknown shape"},
		{"unknown fault", base + "faults: [{kind: meteor, target: psp_a, at: 0s}]\nexpect: [{min_acked: {min: 1}}]\n", "unknown kind"},
		{"bad provider target", base + "faults: [{kind: provider_refuse, target: psp_z, at: 0s}]\nexpect: [{min_acked: {min: 1}}]\n", "want a provider"},
		{"bad node target", base + "faults: [{kind: node_stop, target: n9, at: 0s}]\nexpect: [{min_acked: {min: 1}}]\n", "want leader, follower or n1..n3"},
		{"parameter that does not apply", base + "faults: [{kind: provider_unavailable, target: psp_a, at: 0s, rate: 0.5}]\nexpect: [{min_acked: {min: 1}}]\n", "does not apply"},
		{"missing parameter", base + "faults: [{kind: provider_error_rate, target: psp_a, at: 0s}]\nexpect: [{min_acked: {min: 1}}]\n", "is required"},
		{"fault after the traffic", base + "faults: [{kind: provider_refuse, target: psp_a, at: 2s}]\nexpect: [{min_acked: {min: 1}}]\n", "not before the end"},
		{"overlapping faults on one PSP", base + "faults: [{kind: provider_unavailable, target: psp_a, at: 100ms, for: 800ms}, {kind: provider_latency, target: psp_a, at: 300ms, for: 200ms, latency: 10ms}]\nexpect: [{min_acked: {min: 1}}]\n", "change psp_a at the same time"},
		{"overlapping faults on one PSP, one until the end", base + "faults: [{kind: provider_error_rate, target: psp_b, at: 100ms, rate: 0.5}, {kind: provider_refuse, target: psp_b, at: 900ms, for: 50ms}]\nexpect: [{min_acked: {min: 1}}]\n", "change psp_b at the same time"},
		{"fault without an expectation", base + "faults: [{kind: provider_refuse, target: psp_a, at: 0s}]\n", "without an expectation"},
		{"mutant without expect_fail", base + "faults: [{kind: mutant_wipe_all, at: 0s}]\nexpect: [{min_acked: {min: 1}}]\n", "needs expect_fail"},
		{"two expectations in one entry", base + "expect: [{min_acked: {min: 1}, members: {count: 3}}]\n", "exactly one"},
		{"unknown expect_fail check", base + "faults: [{kind: mutant_wipe_all, at: 0s}]\nexpect_fail: [vibes]\n", "unknown check"},
		{"expect_fail without a mutant", base + "faults: [{kind: provider_unavailable, target: psp_c, at: 0s}]\nexpect_fail: [fault_fired]\n", "without a mutant fault"},
		{"expect_fail without faults", base + "expect_fail: [no_lost_writes]\n", "without a mutant fault"},
		{"mutant expecting fault_fired to fail", base + "faults: [{kind: mutant_wipe_all, at: 0s}]\nexpect_fail: [no_lost_writes, fault_fired]\n", "fault_fired cannot be expected to fail"},
		{"empty matrix", "name: x/{a}\ntags: [smoke]\ntraffic: {rate: 5, duration: 1s, mix: {card_pay: 1}}\nmatrix:\n  a: []\n", "expands to nothing"},
		{"variable not in the name", "name: x\ntags: [smoke]\ntopology: {nodes: {n}}\ntraffic: {rate: 5, duration: 1s, mix: {card_pay: 1}}\nmatrix:\n  n: [3, 5]\n", "must contain matrix variable"},
		{"variable used nowhere, its value in the name", "name: t/x\ntags: [smoke]\ntraffic: {rate: 5, duration: 1s, mix: {card_pay: 1}}\nmatrix:\n  p: [t]\n", "must contain matrix variable {p}"},
		{"variable not in the matrix", "name: x/{n}\ntags: [smoke]\ntraffic: {rate: 5, duration: 1s, mix: {card_pay: 1}}\n", "not in the matrix"},
		{"NaN rate", "name: x\ntags: [smoke]\ntraffic: {rate: .nan, duration: 1s, mix: {card_pay: 1}}\n", "rate NaN"},
		{"NaN fault rate", base + "faults: [{kind: provider_error_rate, target: psp_a, at: 0s, rate: .nan}]\nexpect: [{min_acked: {min: 1}}]\n", "rate NaN"},
		{"NaN availability", base + "faults: [{kind: provider_refuse, target: psp_a, at: 0s}]\nexpect: [{availability: {min: .nan}}]\n", "min NaN"},
		{"provider_used asserting nothing", base + "expect: [{provider_used: {provider: psp_a}}]\n", "would pass whatever happened"},
		{"provider_used max below min", base + "expect: [{provider_used: {provider: psp_a, min: 3, max: 1}}]\n", "want 0 <= min <= max"},
		{"provider_used negative min", base + "expect: [{provider_used: {provider: psp_a, min: -1}}]\n", "want 0 <= min <= max"},
		{"zero rate", "name: x\ntags: [smoke]\ntraffic: {rate: 0, duration: 1s, mix: {card_pay: 1}}\n", "rate"},
		{"bad duration", "name: x\ntags: [smoke]\ntraffic: {rate: 5, duration: soon, mix: {card_pay: 1}}\n", "duration"},
		{"negative settle", base + "settle: -5s\n", "settle -5s"},
		{"settle of hours", base + "settle: 100h\n", "settle 100h0m0s"},
		{"negative timeout", base + "timeout: -1s\n", "timeout -1s"},
		{"timeout of hours", base + "timeout: 100h\n", "timeout 100h0m0s"},
		{"timeout within the traffic", base + "timeout: 500ms\n", "not longer than the traffic"},
		{"bad name", "name: X Y\ntags: [smoke]\ntraffic: {rate: 5, duration: 1s, mix: {card_pay: 1}}\n", "name"},
		{"partition of two nodes", "name: x\ntags: [smoke]\ntopology: {nodes: 2}\ntraffic: {rate: 5, duration: 1s, mix: {card_pay: 1}}\nfaults: [{kind: partition, target: leader, at: 0s}]\nexpect: [{min_acked: {min: 1}}]\n", "at least 3 nodes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestLoadRejectsDuplicateNamesAcrossFiles(t *testing.T) {
	doc := "name: same\ntags: [smoke]\ntraffic: {rate: 5, duration: 1s, mix: {card_pay: 1}}\n"
	fsys := fstest.MapFS{"d/a.yaml": {Data: []byte(doc)}, "d/b.yaml": {Data: []byte(doc)}}
	if _, err := Load(fsys, "d"); err == nil || !strings.Contains(err.Error(), "also defined") {
		t.Fatalf("err %v", err)
	}
}

func TestShippedScenariosLoad(t *testing.T) {
	all, err := LoadDefault()
	if err != nil {
		t.Fatal(err)
	}
	smoke, err := Select(all, "smoke", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(smoke) < 60 {
		t.Fatalf("%d smoke scenarios, want at least 60", len(smoke))
	}
	for _, s := range all {
		if len(s.Faults) > 0 {
			for _, f := range s.Faults {
				if faultKinds[f.Kind].mutant && len(s.ExpectFail) == 0 {
					t.Errorf("%s: mutant without expect_fail", s.Name)
				}
			}
		}
	}
}

func TestSelect(t *testing.T) {
	all := []Scenario{{Name: "provider/a/n3", Tags: []string{"smoke", "chaos"}}, {Name: "provider/b/n5", Tags: []string{"chaos"}},
		{Name: "node/x", Tags: []string{"smoke"}}, {Name: "node/x/slow", Tags: []string{"smoke"}}}
	cases := []struct {
		tags, glob string
		want       int
	}{
		{"", "", 4}, {"smoke", "", 3}, {"smoke,chaos", "", 1}, {"", "provider", 2}, {"", "provider/*/n5", 1}, {"chaos", "node", 0},
		{"", "node/x", 1}, // an exact name selects just that scenario (repro commands)
		{"", "node/", 2},
	}
	for _, tc := range cases {
		got, err := Select(all, tc.tags, tc.glob)
		if err != nil || len(got) != tc.want {
			t.Errorf("Select(%q, %q) = %d (%v), want %d", tc.tags, tc.glob, len(got), err, tc.want)
		}
	}
	if _, err := Select(all, "nope", ""); err == nil {
		t.Error("an unknown tag must be refused")
	}
}

func TestSeedDependsOnlyOnRunSeedAndName(t *testing.T) {
	if Seed(1, "a") != Seed(1, "a") {
		t.Fatal("not deterministic")
	}
	if Seed(1, "a") == Seed(1, "b") || Seed(1, "a") == Seed(2, "a") {
		t.Fatal("seeds collide")
	}
}

// How closely the schedule follows its shape: TestArrivalsFollowEveryShapeOverTime.
func TestArrivalsAreDeterministic(t *testing.T) {
	tr := Traffic{Shape: "spike", Rate: 100, Duration: Duration(10e9), Mix: map[string]float64{"card_pay": 1, "cancel": 1}}
	a, b := arrivals(tr, 7), arrivals(tr, 7)
	if len(a) != len(b) || len(a) == 0 || a[len(a)/2] != b[len(b)/2] {
		t.Fatal("the same seed must give the same schedule")
	}
}

// Over many seeds, every tenth of the run gets the arrivals its shape asks
// for: the shape's rate (at least the 5 % floor) integrated over that
// tenth. The seeds are fixed, so the counts are too; the bound (5 standard
// deviations of a Poisson count) is there to say how close is close.
func TestArrivalsFollowEveryShapeOverTime(t *testing.T) {
	const (
		seeds = 100
		rate  = 20.0
		dur   = 10 * time.Second
	)
	for name, sh := range shapes {
		t.Run(name, func(t *testing.T) {
			tr := Traffic{Shape: name, Rate: rate, Duration: Duration(dur), Mix: map[string]float64{"card_pay": 1}}
			var got [10]float64
			for seed := range uint64(seeds) {
				for _, a := range arrivals(tr, seed) {
					got[int(a.at*10/dur)]++
				}
			}
			for d := range 10 {
				// The expected count: the rate integrated over the tenth.
				want := 0.0
				for i := range 100 {
					f := (float64(d) + (float64(i)+0.5)/100) / 10
					want += math.Max(rate*sh.factor(f), rate*0.05) * dur.Seconds() / 10 / 100
				}
				want *= seeds
				if diff := math.Abs(got[d] - want); diff > 5*math.Sqrt(want) {
					t.Errorf("tenth %d of the run: %.0f arrivals over %d seeds, want %.0f", d, got[d], seeds, want)
				}
			}
		})
	}
}

// central/{fault}/idle counts on the full rate coming back after the lull
// while the database is still away: every seed has arrivals there.
func TestLullEndsAtFullRate(t *testing.T) {
	tr := Traffic{Shape: "lull", Rate: 20, Duration: Duration(10 * time.Second), Mix: map[string]float64{"card_pay": 1}}
	for seed := range uint64(500) {
		n := 0
		for _, a := range arrivals(tr, seed) {
			if a.at >= 7*time.Second && a.at < 8*time.Second {
				n++
			}
		}
		if n == 0 {
			t.Fatalf("seed %d: no arrival in the second after the lull (7-8 s of 10 s at 20/s)", seed)
		}
	}
}

func TestArrivalsWithoutRateAreNone(t *testing.T) {
	for name := range shapes {
		if got := arrivals(Traffic{Shape: name, Duration: Duration(time.Second), Mix: map[string]float64{"card_pay": 1}}, 1); len(got) != 0 {
			t.Errorf("%s at rate 0: %d arrivals", name, len(got))
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(okDoc))
	f.Add([]byte("name: x\ntags: [smoke]\ntraffic: {rate: 5, duration: 1s, mix: {card_pay: 1}}\n---\nname: y\n"))
	f.Add([]byte("matrix:\n  a: [1]\nname: {a}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		scs, err := Parse("fuzz.yaml", data)
		if err == nil {
			for _, s := range scs {
				if s.Name == "" || s.Traffic.Rate <= 0 || len(s.Tags) == 0 {
					t.Fatalf("accepted an invalid scenario: %+v", s)
				}
			}
		}
	})
}

// Every document of a file is read or the file is refused: a separator
// line with trailing blanks or a comment splits like a bare "---", and a
// second document the splitter does not see is an error, not silently
// dropped (regression: "--- # note" merged the next scenario into the
// previous document, whose decoding then ignored it).
func TestParseReadsEveryDocument(t *testing.T) {
	doc := func(name string) string {
		return "name: " + name + "\ntags: [smoke]\ntraffic: {rate: 5, duration: 1s, mix: {card_pay: 1}}\n"
	}
	cases := []struct {
		name, text string
		want       string // names joined by spaces, or an error fragment after "error: "
	}{
		{"bare separator", doc("a") + "---\n" + doc("b"), "a b"},
		{"separator with a trailing blank", doc("a") + "--- \n" + doc("b"), "a b"},
		{"separator with a comment", doc("a") + "--- # the next one\n" + doc("b"), "a b"},
		{"separator with a tab and a comment", doc("a") + "---\t#x\n" + doc("b"), "a b"},
		{"CRLF separator", doc("a") + "---\r\n" + doc("b"), "a b"},
		{"leading separator and a comment-only document", "--- # header\n# only a comment\n---\n" + doc("a"), "a"},
		{"document end marker without a separator", doc("a") + "...\n" + doc("b"), "error: content after the document"},
		{"separator with content on its line", doc("a") + "--- {name: b, tags: [smoke]}\n", "error: content after the document"},
		{"unreadable document", doc("a") + "---\nname: [b\n", "error: document 2"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			scs, err := Parse("t.yaml", []byte(tc.text))
			if want, isErr := strings.CutPrefix(tc.want, "error: "); isErr {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("err %v, want one containing %q (parsed %d scenarios)", err, want, len(scs))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, s := range scs {
				names = append(names, s.Name)
			}
			if got := strings.Join(names, " "); got != tc.want {
				t.Fatalf("scenarios %q, want %q", got, tc.want)
			}
		})
	}
}

// A loader error names the file by its path under the directory given
// (two files of one name in two subdirectories were told apart by
// nothing but the base name), and a directory that cannot be read by
// its own name (not ".").
func TestLoadErrorsNameThePath(t *testing.T) {
	bad := "name: x\ntags: [smokey]\ntraffic: {rate: 5, duration: 1s, mix: {card_pay: 1}}\n"
	ok := "name: y\ntags: [smoke]\ntraffic: {rate: 5, duration: 1s, mix: {card_pay: 1}}\n"
	fsys := fstest.MapFS{"d/a/s.yaml": {Data: []byte(ok)}, "d/b/s.yaml": {Data: []byte(bad)}}
	if _, err := Load(fsys, "d"); err == nil || !strings.HasPrefix(err.Error(), "d/b/s.yaml: ") {
		t.Errorf("err %v, want it to start with d/b/s.yaml", err)
	}
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "b", "s.yaml"), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(os.DirFS(root), "."); err == nil || !strings.HasPrefix(err.Error(), filepath.Join(root, "b", "s.yaml")+": ") {
		t.Errorf("err %v, want it to start with %s", err, filepath.Join(root, "b", "s.yaml"))
	}
	missing := filepath.Join(root, "nowhere")
	if _, err := Load(os.DirFS(missing), "."); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("err %v, want it to name %s", err, missing)
	}
	scs, err := Load(fstest.MapFS{"d/a/s.yaml": {Data: []byte(ok)}}, "d")
	if err != nil {
		t.Fatal(err)
	}
	if scs[0].File != "a/s.yaml" {
		t.Errorf("File %q, want a/s.yaml", scs[0].File)
	}
}

// Provider faults on one PSP one after the other, or at once on two PSPs,
// are fine (pairs.yaml has both).
func TestParseAcceptsProviderFaultsThatDoNotOverlap(t *testing.T) {
	base := "name: x\ntags: [smoke]\ntraffic: {rate: 5, duration: 1s, mix: {card_pay: 1}}\nexpect: [{min_acked: {min: 1}}]\n"
	for _, faults := range []string{
		"faults: [{kind: provider_unavailable, target: psp_a, at: 100ms, for: 200ms}, {kind: provider_latency, target: psp_a, at: 300ms, latency: 10ms}]\n",
		"faults: [{kind: provider_unavailable, target: psp_a, at: 100ms}, {kind: provider_unavailable, target: psp_b, at: 100ms}]\n",
		"faults: [{kind: provider_unavailable, target: psp_a, at: 100ms}, {kind: mutant_double_book, target: psp_a, at: 500ms}]\nexpect_fail: [never_charged_twice]\n",
	} {
		if _, err := Parse("t.yaml", []byte(base+faults)); err != nil {
			t.Errorf("%s: %v", faults, err)
		}
	}
}
