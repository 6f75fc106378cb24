package scenarios

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Bounds on scenario files, so a typo cannot start a run of hours.
const (
	maxDuration     = 10 * time.Minute
	maxTimeout      = 30 * time.Minute
	maxRate         = 5000
	maxConcurrency  = 1024
	maxNodes        = 7
	maxMatrixCombos = 256
	maxFileBytes    = 1 << 20
)

// Duration is a time.Duration written as "2s" or "500ms" in YAML.
type Duration time.Duration

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: duration: %w", n.Line, err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: duration %q: %w", n.Line, s, err)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as a string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// D is the duration as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Scenario is one runnable scenario (a file's document after matrix
// expansion).
type Scenario struct {
	Name        string   `yaml:"name"`
	Description string   `yaml:"description"`
	Tags        []string `yaml:"tags"`
	Topology    Topology `yaml:"topology"`
	Config      Tuning   `yaml:"config"`
	Traffic     Traffic  `yaml:"traffic"`
	Faults      []Fault  `yaml:"faults"`
	Expect      []Expect `yaml:"expect"`
	// ExpectFail lists always-on or expectation checks that MUST fail
	// (mutant scenarios proving a checker catches what it claims to); the
	// scenario passes when exactly these fail.
	ExpectFail []string `yaml:"expect_fail"`
	// Matrix is consumed by expansion; kept so KnownFields accepts it.
	Matrix map[string][]string `yaml:"matrix"`
	// Settle bounds the wait, after traffic, for in-doubt and pending
	// payments to resolve (default 10s).
	Settle Duration `yaml:"settle"`
	// Timeout bounds the whole scenario (default: 60s + duration).
	Timeout Duration `yaml:"timeout"`

	// File is where the scenario came from.
	File string `yaml:"-"`
	// Dir is the directory the scenario was loaded from (txswitch
	// scenarios run --dir), "" for the built-in definitions: the
	// reproduce command needs it to rerun the same definition.
	Dir string `yaml:"-"`
}

// Topology is the cluster a scenario runs on.
type Topology struct {
	Nodes int    `yaml:"nodes"` // default 3
	Tier  string `yaml:"tier"`  // in_process (default) | process
	// CentralDB gives the cluster a real PostgreSQL to export to (see
	// central.go; in_process tier only); its scenarios also run
	// central_exactly_once.
	CentralDB bool `yaml:"central_db"`
}

// Tuning adjusts the routing configuration and node timers for the run:
// short provider timeouts and breaker open durations make faults visible
// within a few seconds.
type Tuning struct {
	ProviderTimeout Duration `yaml:"provider_timeout"` // default 1s
	BreakerOpen     Duration `yaml:"breaker_open"`     // default 1500ms
	// BreakerFailures is the consecutive failures that open a breaker
	// (default: the shipped 5).
	BreakerFailures int      `yaml:"breaker_failures"`
	ResolveEvery    Duration `yaml:"resolve_every"` // default 200ms
	TickInterval    Duration `yaml:"tick"`          // default 100ms (elections in 1-2s)
	// AsyncComplete is when the simulated bank completes redirect
	// payments (default 150ms).
	AsyncComplete Duration `yaml:"async_complete"`
}

// Traffic is the open-loop load of a scenario.
type Traffic struct {
	Shape       string             `yaml:"shape"`
	Rate        float64            `yaml:"rate"` // arrivals per second at shape factor 1
	Duration    Duration           `yaml:"duration"`
	Concurrency int                `yaml:"concurrency"` // default 64
	Mix         map[string]float64 `yaml:"mix"`
	// Retries is how many times the client retries a write that got a
	// 503 or no answer, with the same idempotency key (default 5).
	Retries *int `yaml:"retries"`
	// Target is which nodes the client talks to: "any" (round robin over
	// running nodes, the default), "leader" or "followers".
	Target string `yaml:"target"`
}

// Fault is one entry of the fault schedule.
type Fault struct {
	Kind   string   `yaml:"kind"`
	Target string   `yaml:"target"`
	At     Duration `yaml:"at"`
	// For is how long the fault lasts; 0 means until the traffic ends.
	For Duration `yaml:"for"`
	// Kind-specific parameters (the registry says which a kind takes).
	Rate       float64  `yaml:"rate"`
	Latency    Duration `yaml:"latency"`
	Stall      Duration `yaml:"stall"`
	Delay      Duration `yaml:"delay"`
	Duplicates int      `yaml:"duplicates"`
	// Bandwidth is a link's limit in KB/s (net_bandwidth).
	Bandwidth int `yaml:"bandwidth"`
}

// Expect is one per-scenario expectation; exactly one field is set.
type Expect struct {
	BreakerOpen   *ExpectBreaker      `yaml:"breaker_open"`
	LeaderChange  *ExpectWithin       `yaml:"leader_change"`
	Availability  *ExpectAvailability `yaml:"availability"`
	SawStatus     *ExpectStatus       `yaml:"saw_status"`
	TimelineEvent *ExpectTimeline     `yaml:"timeline_event"`
	ProviderUsed  *ExpectProvider     `yaml:"provider_used"`
	FinalStatus   *ExpectFinal        `yaml:"final_status"`
	MinAcked      *ExpectCount        `yaml:"min_acked"`
	Rejected      *ExpectRejected     `yaml:"rejected"`
	MemberCount   *ExpectMembers      `yaml:"members"`
	MethodHidden  *ExpectHidden       `yaml:"method_hidden"`
	// The breadth expectations (expect.go).
	OrderStatus    *ExpectFinal     `yaml:"order_status"`
	MethodsOffered *ExpectMethods   `yaml:"methods_offered"`
	Surcharge      *ExpectSurcharge `yaml:"surcharge"`
	// Latency is the deploy gate's guard against a release that got slow
	// (the open-loop traffic shows a slow switch as latency, not as fewer
	// requests).
	Latency *ExpectLatency `yaml:"latency"`
	// Central database and disk expectations (judged in central.go, disk.go).
	ExportDrained *ExpectWithin      `yaml:"export_drained"`
	ExportLag     *ExpectExportLag   `yaml:"export_lag"`
	DiskRefused   *ExpectDiskRefused `yaml:"disk_refused"`
	CaughtUp      *ExpectWithin      `yaml:"caught_up"`
}

// ExpectLatency: the calls of Op (every call when empty) that started in
// Window were answered within P99 at the 99th percentile (latencyP99) and,
// when given, all within Max. Each attempt is a call: a request the
// client retried is judged attempt by attempt (the backoff between them
// is the client's), and its failures by availability and traffic_ran. A
// call that got no answer counts with the time its client waited. Fewer
// than MinCalls calls (default minLatencyCalls) judge nothing and fail.
type ExpectLatency struct {
	Op       string   `yaml:"op"`
	P99      Duration `yaml:"p99"`
	Max      Duration `yaml:"max"`
	Window   string   `yaml:"window"`
	MinCalls int      `yaml:"min_calls"`
}

// ExpectHidden: Method was offered before the first fault, and no
// checkout made while the breakers of all of Providers for Method were
// open (as observed just before and just after the call) offered it: a
// method with no healthy provider is hidden. A half-open breaker lets
// probes through, so the method may be offered then.
type ExpectHidden struct {
	Method    string   `yaml:"method"`
	Providers []string `yaml:"providers"`
}

// ExpectBreaker: some node saw Provider's breaker open within Within of
// the first fault on it.
type ExpectBreaker struct {
	Provider string   `yaml:"provider"`
	Within   Duration `yaml:"within"`
}

// ExpectWithin: a different leader (or the same at a higher term) was
// observed within Within of the first fault.
type ExpectWithin struct {
	Within Duration `yaml:"within"`
}

// ExpectAvailability: the share of payment attempts that succeeded
// (excluding declines, which are the issuer's answer, not an outage).
type ExpectAvailability struct {
	Min    float64 `yaml:"min"`
	Window string  `yaml:"window"` // during_faults | whole
}

// ExpectStatus: at least Min payments were acknowledged with Status, and
// each of them ended in one of ResolvedTo (when given).
type ExpectStatus struct {
	Status     string   `yaml:"status"`
	Min        int      `yaml:"min"`
	ResolvedTo []string `yaml:"resolved_to"`
}

// ExpectTimeline: the orders of Flow (or of payments acknowledged with
// Status) have a timeline event of Type; at least Min such orders.
type ExpectTimeline struct {
	Type   string `yaml:"type"`
	Flow   string `yaml:"flow"`
	Status string `yaml:"status"`
	Min    int    `yaml:"min"`
}

// ExpectProvider: at least Min payments ended with Provider (failover
// evidence), or at most Max when Max is set (-1: unset).
type ExpectProvider struct {
	Provider string `yaml:"provider"`
	Min      int    `yaml:"min"`
	Max      *int   `yaml:"max"`
	Window   string `yaml:"window"` // during_faults | whole
}

// ExpectFinal: every payment of Flow ended in one of Statuses.
type ExpectFinal struct {
	Flow     string   `yaml:"flow"`
	Statuses []string `yaml:"statuses"`
}

// ExpectCount: at least Min acknowledged payments (of Flow, if given).
type ExpectCount struct {
	Flow string `yaml:"flow"`
	Min  int    `yaml:"min"`
}

// ExpectRejected: at least Min requests were answered Status (e.g. 503 on
// the minority side, 422 for a reused key), each in the API's error
// format. Whether a refused write left no trace is judged by bad_input's
// claims and no_lost_writes, not here.
type ExpectRejected struct {
	Status int `yaml:"status"`
	Min    int `yaml:"min"`
}

// ExpectMembers: at the end the cluster has Count members.
type ExpectMembers struct {
	Count int `yaml:"count"`
}

var varRef = regexp.MustCompile(`\{([a-z_][a-z0-9_]*)\}`)

// Load reads every *.yaml file under dir of fsys, expands matrices and
// validates every scenario. Names must be unique across files.
func Load(fsys fs.FS, dir string) ([]Scenario, error) {
	return load(fsys, dir, sourceDir(fsys, dir))
}

// sourceDir is the directory to name in a reproduce command for
// scenarios loaded from dir of fsys: "" for the built-in definitions;
// for os.DirFS(root) (what txswitch scenarios run --dir passes), whose
// type is a string holding its root, the absolute root/dir; else dir.
func sourceDir(fsys fs.FS, dir string) string {
	if e, ok := fsys.(embed.FS); ok && e == Defs {
		return ""
	}
	v := reflect.ValueOf(fsys)
	if v.Kind() != reflect.String {
		return dir
	}
	d := filepath.Join(v.String(), filepath.FromSlash(dir))
	if abs, err := filepath.Abs(d); err == nil {
		d = abs
	}
	return d
}

func load(fsys fs.FS, dir, source string) ([]Scenario, error) {
	// Errors name a file as its author knows it: under the directory
	// given to --dir (source), or under dir of fsys for the built-in
	// ones; a scenario's File is its path within dir.
	shown := func(rel string) string {
		if source == "" {
			return path.Join(dir, rel)
		}
		return filepath.Join(source, filepath.FromSlash(rel))
	}
	var files []string
	err := fs.WalkDir(fsys, dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && (strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list scenario files in %s: %w", shown("."), err)
	}
	sort.Strings(files)
	var all []Scenario
	seen := map[string]string{}
	for _, f := range files {
		rel := f
		if dir != "." {
			rel = strings.TrimPrefix(f, dir+"/")
		}
		b, err := fs.ReadFile(fsys, f)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", shown(rel), err)
		}
		scs, err := Parse(shown(rel), b)
		if err != nil {
			return nil, err
		}
		for _, s := range scs {
			s.Dir, s.File = source, rel
			if prev, dup := seen[s.Name]; dup {
				return nil, fmt.Errorf("%s: scenario %q is also defined in %s", shown(rel), s.Name, prev)
			}
			seen[s.Name] = shown(rel)
			all = append(all, s)
		}
	}
	if len(all) == 0 {
		return nil, fmt.Errorf("no scenarios under %s", shown("."))
	}
	return all, nil
}

// Parse parses one file (several YAML documents separated by "---"
// lines), expands each document's matrix and validates the results.
func Parse(file string, data []byte) ([]Scenario, error) {
	if len(data) > maxFileBytes {
		return nil, fmt.Errorf("%s: larger than %d bytes", file, maxFileBytes)
	}
	var out []Scenario
	for i, doc := range splitDocs(data) {
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		scs, err := parseDoc(doc)
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", file, i+1, err)
		}
		for j := range scs {
			scs[j].File = file
		}
		out = append(out, scs...)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no scenarios", file)
	}
	return out, nil
}

// splitDocs splits a file at its document separators: a line that is
// "---" alone or followed by whitespace and at most a comment ("--- ",
// "--- # note"). A "---" line with content after it is left in place:
// the decoder then finds a second document in one piece and refuses it
// (decodeStrict), instead of merging it unseen into the first.
func splitDocs(data []byte) [][]byte {
	var docs [][]byte
	var cur []byte
	for _, line := range bytes.SplitAfter(data, []byte("\n")) {
		if isSeparator(line) {
			docs = append(docs, cur)
			cur = nil
			continue
		}
		cur = append(cur, line...)
	}
	return append(docs, cur)
}

func isSeparator(line []byte) bool {
	rest, ok := bytes.CutPrefix(bytes.TrimRight(line, "\r\n"), []byte("---"))
	if !ok {
		return false
	}
	if len(rest) == 0 {
		return true
	}
	if rest[0] != ' ' && rest[0] != '\t' {
		return false // "---x" is a plain scalar, not a marker
	}
	rest = bytes.TrimSpace(rest)
	return len(rest) == 0 || rest[0] == '#'
}

func stripComments(doc []byte) []byte {
	var out []byte
	for _, line := range bytes.SplitAfter(doc, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			out = append(out, line...)
		}
	}
	return out
}

// parseDoc expands one document. Substitution is textual ({var} in the
// raw text), so a variable can stand for a number, a name or a duration;
// the matrix itself is read from the unexpanded text first.
func parseDoc(doc []byte) ([]Scenario, error) {
	var head struct {
		Name   string    `yaml:"name"`
		Matrix yaml.Node `yaml:"matrix"`
	}
	if err := yaml.Unmarshal(doc, &head); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	matrix := map[string][]string{}
	if head.Matrix.Kind != 0 {
		if err := head.Matrix.Decode(&matrix); err != nil {
			return nil, fmt.Errorf("matrix (line %d): want a map of lists of scalars: %w", head.Matrix.Line, err)
		}
	}
	vars := make([]string, 0, len(matrix))
	for v, vals := range matrix {
		if !varRef.MatchString("{" + v + "}") {
			return nil, fmt.Errorf("matrix variable %q: want lower_snake_case", v)
		}
		if len(vals) == 0 {
			return nil, fmt.Errorf("matrix variable %q has no values: the matrix expands to nothing", v)
		}
		// Judged on the name as written: a value that happens to be part
		// of the name (p: [t] in "t/x") passed for a variable used nowhere.
		if !strings.Contains(head.Name, "{"+v+"}") {
			return nil, fmt.Errorf("name %q: the name must contain matrix variable {%s}", head.Name, v)
		}
		vars = append(vars, v)
	}
	sort.Strings(vars)
	// Every variable must appear in the name (so expanded names are
	// unique) and the text must use no variable the matrix lacks.
	body := removeMatrix(doc)
	for _, m := range varRef.FindAllSubmatch(body, -1) {
		if _, ok := matrix[string(m[1])]; !ok {
			return nil, fmt.Errorf("{%s} is used but not in the matrix", m[1])
		}
	}
	combos := [][]string{{}}
	for _, v := range vars {
		var next [][]string
		for _, c := range combos {
			for _, val := range matrix[v] {
				next = append(next, append(append([]string(nil), c...), val))
			}
		}
		combos = next
		if len(combos) > maxMatrixCombos {
			return nil, fmt.Errorf("matrix expands to more than %d scenarios", maxMatrixCombos)
		}
	}
	var out []Scenario
	for _, c := range combos {
		text := body
		for i, v := range vars {
			text = bytes.ReplaceAll(text, []byte("{"+v+"}"), []byte(c[i]))
		}
		s, err := decodeStrict(text)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", comboName(vars, c), err)
		}
		for i, v := range vars {
			if !strings.Contains(s.Name, c[i]) {
				return nil, fmt.Errorf("scenario %q: the name must contain matrix variable {%s}", s.Name, v)
			}
		}
		if err := s.validate(); err != nil {
			return nil, fmt.Errorf("scenario %q: %w", s.Name, err)
		}
		out = append(out, s)
	}
	return out, nil
}

func comboName(vars, vals []string) string {
	var parts []string
	for i, v := range vars {
		parts = append(parts, v+"="+vals[i])
	}
	if len(parts) == 0 {
		return "scenario"
	}
	return "matrix " + strings.Join(parts, ",")
}

// removeMatrix drops the top-level matrix block from the raw text: its
// values must not be substituted into themselves.
func removeMatrix(doc []byte) []byte {
	var out []byte
	skipping := false
	for _, line := range bytes.SplitAfter(doc, []byte("\n")) {
		switch {
		case bytes.HasPrefix(line, []byte("matrix:")):
			skipping = true
			continue
		case skipping && (len(bytes.TrimSpace(line)) == 0 || line[0] == ' ' || line[0] == '\t' || line[0] == '#'):
			continue
		}
		skipping = false
		out = append(out, line...)
	}
	return out
}

func decodeStrict(text []byte) (Scenario, error) {
	var s Scenario
	dec := yaml.NewDecoder(bytes.NewReader(text))
	dec.KnownFields(true)
	if err := dec.Decode(&s); err != nil {
		if errors.Is(err, io.EOF) {
			return s, errors.New("empty document")
		}
		return s, err
	}
	// One document per piece: anything after it (a second document the
	// splitter did not see, after "..." or a "--- content" line) would
	// otherwise be dropped without a word.
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		line := extra.Line
		if err != nil {
			return s, fmt.Errorf("unreadable content after the document: %w", err)
		}
		return s, fmt.Errorf("content after the document (a second YAML document, line %d of this one) without a separator line (\"---\" alone or with a comment): it would be dropped", line)
	}
	return s, nil
}
